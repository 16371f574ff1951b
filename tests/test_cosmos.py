"""Cosmos Predict 2.5: its frame and size rules, the mode it does not do and the options it cannot
take, refused before loading with one line (exit 3); the full-size presets plan offline; the
options declared for it run on the tiny model; the tiny model's pass-through guardrail is the only
one that is not NVIDIA's; a LoRA loads. Parity with plain diffusers (t2v and v2v, another seed,
prompt and guidance differing) is in tests/test_reproduce.py, from the tiny presets; i2v's is
here, against both the call vidgen makes and the pipeline's own Image2World path."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import (
    assert_reproduces,
    cli,
    decode,
    files_under,
    full_presets,
    one_line_error,
    png_frames,
    printed_sidecar,
    sidecar,
)

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-cosmos")
FULL = full_presets("cosmos")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "8"], ["--frames 8", "4k+1", "5 or 9"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (["--attention-slicing"], ["--attention-slicing", "--attention-backend"]),
        (["--compile"], ["--compile", "repeated blocks"]),
        (["--cache", "first-block"], ["--cache", "CacheMixin"]),
        (["--quantize", "int8"], ["--quantize", "--fp8-storage"]),
        (["--vae-slicing"], ["--vae-slicing", "--vae-tiling"]),
        (["--scheduler", "euler"], ["--scheduler", "UniPC"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*T2V, *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_wrong_mode_and_v2v_strength_refused(nothing_loads: None, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    one_line_error(
        cli("control", "a fox", "--control", "first.png", "--preset", "tiny-cosmos"), 3, "not `vidgen control`"
    )
    (tmp_path / "clip").mkdir()
    for index in range(9):
        Image.new("RGB", (32, 32), (index * 20, 80, 40)).save(tmp_path / "clip" / f"f{index}.png")
    one_line_error(
        cli("v2v", "clip", "a fox", "--preset", "tiny-cosmos-v2v", "--strength", "0.5"), 3, "--strength", "last frames"
    )
    assert files_under(tmp_path) == sorted([tmp_path / "first.png", *(tmp_path / "clip").iterdir()])


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None, tmp_path: Path) -> None:
    from PIL import Image

    args = ["t2v", "a fox"]
    if preset.endswith("-i2v"):
        Image.new("RGB", (1280, 704), (200, 80, 40)).save(tmp_path / "first.png")
        args = ["i2v", "first.png", "a fox"]
    if preset.endswith("-v2v"):
        (tmp_path / "clip").mkdir()
        for index in range(9):
            Image.new("RGB", (1280, 704), (index * 20, 80, 40)).save(tmp_path / "clip" / f"f{index}.png")
        args = ["v2v", "clip", "a fox"]
    result = cli(*args, "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "Cosmos2_5_PredictBasePipeline" in result.stdout and "--vram 24" in result.stdout


def test_full_presets_are_the_docs_example(nothing_loads: None) -> None:
    assert FULL == ["cosmos-predict2.5-2b", "cosmos-predict2.5-2b-i2v", "cosmos-predict2.5-2b-v2v"]
    for name in FULL:
        data = merged_preset(str(available_presets()[name]))
        sampling = data["sampling"]
        assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (704, 1280, 93)
        assert (sampling["num_inference_steps"], sampling["guidance_scale"], data["output"]["fps"]) == (36, 7.0, 16)
        assert data["model"]["revision"] == "diffusers/base/post-trained"


@pytest.mark.pipeline
@pytest.mark.parametrize("option", [["--fp8-storage"], ["--vae-tiling"], ["--attention-backend", "native"]])
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*T2V, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]


@pytest.mark.pipeline
def test_only_the_tiny_model_carries_the_pass_through_guardrail(tmp_path: Path) -> None:
    result = cli(*T2V, "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr
    folder = Path(sidecar(tmp_path / "a.json")["model"]["path"])
    index = json.loads((folder / "model_index.json").read_text())
    assert index["safety_checker"] == ["vidgen.families.cosmos", "TinyGuardrail"]
    # The real pipeline builds NVIDIA's guardrail when none is given, and refuses to run without one.
    import diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict as predict

    assert "CosmosSafetyChecker()" in Path(predict.__file__).read_text()


def _lora(path: Path) -> Path:
    """A PEFT LoRA on the tiny Cosmos transformer's attention, saved as diffusers saves LoRAs."""
    import torch
    from diffusers import Cosmos2_5_PredictBasePipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from vidgen.families.cosmos import tiny_predict25

    transformer = tiny_predict25().transformer
    torch.manual_seed(1)
    transformer.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    )
    path.mkdir()
    Cosmos2_5_PredictBasePipeline.save_lora_weights(
        path, transformer_lora_layers=get_peft_model_state_dict(transformer)
    )
    return path / "pytorch_lora_weights.safetensors"


@pytest.mark.pipeline
def test_lora_changes_the_output(tmp_path: Path) -> None:
    lora = _lora(tmp_path / "lora")
    assert cli(*T2V, "--seed", "2", "--out", "plain.mp4").exit_code == 0
    result = cli(*T2V, "--seed", "2", "--lora", f"{lora}:0.8", "--out", "lora.mp4")
    assert result.exit_code == 0, result.stderr
    (record,) = sidecar(tmp_path / "lora.json")["model"]["loras"]
    assert (record["scale"], record["matched"]) == (0.8, record["modules"])
    plain, with_lora = decode(tmp_path / "plain.mp4")[0], decode(tmp_path / "lora.mp4")[0]
    assert np.abs(plain.astype(int) - with_lora.astype(int)).max() > 2


@pytest.mark.pipeline
def test_i2v_equals_plain_diffusers_and_the_pipelines_image2world_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import torch
    from diffusers import Cosmos2_5_PredictBasePipeline
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save("first.png")
    result = cli("i2v", "first.png", "a red fox in snow", "--preset", "tiny-cosmos-i2v", "--seed", "5", "--format",
                 "png", "--out", "frames/")  # fmt: skip
    ours = png_frames(result)
    data = printed_sidecar(result)
    assert data["pipeline"]["call_kwargs"]["num_latent_conditional_frames"] == 1
    assert "one-frame clip" in data["pipeline"]["run"]
    image = Image.open("first.png").convert("RGB")
    # Plain diffusers called as the sidecar says (video=[image]); another seed and prompt differ.
    assert_reproduces(ours, data, {"video": [image]})
    # The pipeline's own Image2World path (image=) makes the same frames. It converts the image
    # with torchvision's to_tensor, and no torchvision build exists for this CPU torch: the module
    # gets that one function (a PIL image as float CHW in 0-1, as torchvision documents it).
    import diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict as predict

    def to_tensor(picture: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)

    functional = SimpleNamespace(to_tensor=to_tensor)
    monkeypatch.setattr(predict, "torchvision", SimpleNamespace(transforms=SimpleNamespace(functional=functional)),
                        raising=False)  # fmt: skip
    pipe = Cosmos2_5_PredictBasePipeline.from_pretrained(data["model"]["path"])
    pipe.set_progress_bar_config(disable=True)
    kwargs = {k: v for k, v in data["pipeline"]["call_kwargs"].items() if k != "num_latent_conditional_frames"}
    with torch.inference_mode():
        frames = pipe(image=image, **kwargs, generator=torch.Generator("cpu").manual_seed(5)).frames[0]
    image2world = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    assert np.abs(ours.astype(int) - image2world.astype(int)).max() <= 1
    # The image matters: another one makes other frames.
    Image.fromarray(255 - pixels).save("other.png")
    other = png_frames(cli("i2v", "other.png", "a red fox in snow", "--preset", "tiny-cosmos-i2v", "--seed", "5",
                           "--format", "png", "--out", "other/"))  # fmt: skip
    assert np.abs(other.astype(int) - ours.astype(int)).max() > 1
