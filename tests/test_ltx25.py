"""LTX-2.5 DFR (one LTX2DFRPipeline pass) on the tiny model: video with sound equal to plain
diffusers from the sidecar (another seed and another prompt differ), i2v's first frame as a
condition; off-grid frames and sizes, the knobs DFR has no use for (steps, guidance, a negative
prompt), a wrong mode and options it cannot take refused before loading; the full preset plans
offline; the options declared for it run on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, decode, files_under, full_presets, one_line_error, sidecar
from test_ltx2 import raw_sha256, streams

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

DEFAULT_TIER = "pipeline"

TINY = ("--preset", "tiny-ltx25-dfr")
DRUMMER = ("t2v", "a drummer on a rooftop", *TINY)
FULL = full_presets("ltx25-dfr")


def _png(*args: str) -> tuple[np.ndarray, dict]:
    from PIL import Image

    result = cli(*args, "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    return frames, sidecar(folder.with_name(folder.name + ".json"))


def test_t2v_writes_sound_and_equals_plain_diffusers(tmp_path: Path) -> None:
    result = cli(*DRUMMER, "--seed", "3", "--out", "drum.mp4")
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "drum.json")
    call = data["pipeline"]["call_kwargs"]
    assert data["pipeline"]["class"] == "LTX2DFRPipeline" and data["pipeline"]["setup"] == []
    assert call["sigmas"] == [0.909375, 0.421875] and call["frame_rate"] == 24.0
    assert not {"num_inference_steps", "guidance_scale", "negative_prompt"} & set(call)
    audio = data["output"]["audio"]
    assert audio["codec"] == "aac" and audio["sample_rate"] == 16000 and audio["channels"] == 2
    # DFR trims the sound to the frames asked for (9 at 24 fps), give or take a mel hop.
    assert abs(audio["duration"] - 9 / 24) < 0.06
    found = streams(tmp_path / "drum.mp4")
    assert found["video"]["frames"] == 9 and found["audio"]["codec"] == "aac"
    ours, _ = decode(tmp_path / "drum.mp4")
    assert ours.shape == (9, 32, 32, 3)
    # The frames (lossless png) and the raw sound equal plain diffusers'; another seed and another
    # prompt change them.
    frames, data = _png(*DRUMMER, "--seed", "3")
    made = assert_reproduces(frames, data)
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"] == audio["raw_sha256"]
    assert np.abs(made.audio).max() > 0


def test_i2v_puts_the_image_at_frame_0_as_a_condition(tmp_path: Path) -> None:
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    frames, data = _png("i2v", "first.png", "a drummer", *TINY, "--image-crf", "0", "--seed", "4")
    assert data["pipeline"]["class"] == "LTX2DFRPipeline" and "image_crf" not in data["pipeline"]["call_kwargs"]
    assert "LTX2VideoCondition(frames=image, index=0" in data["pipeline"]["run"]
    image = Image.open("first.png").convert("RGB")
    condition = LTX2VideoCondition(frames=image, index=0, strength=1.0, crf=0)
    made = assert_reproduces(frames, data, {"conditions": [condition]})
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "100"], ["--frames 100", "8k+1", "97 or 105"]),
        (["--frames", "1"], ["--frames 1", "at least 9"]),
        (["--width", "700"], ["--width 700", "multiples of 32", "672 or 704"]),
        (["--steps", "4"], ["--steps", "--sigma"]),
        (["--guidance", "3"], ["--guidance", "without classifier-free guidance"]),
        (["--negative", "blurry"], ["no negative prompt"]),
        (["--sigma", "1.5"], ["--sigma", "(0, 1]"]),
        (["--stg-scale", "1"], ["--stg-scale"]),
        (["--live-preview"], ["--live-preview", "keyframe slots"]),
        (["--cache", "first-block"], ["--cache first-block", "it takes: pab"]),
        (["--cache", "faster"], ["--cache faster", "classifier-free guidance"]),
        (["--cache", "taylorseer"], ["--cache taylorseer", "cache_context"]),
        (["--vae-slicing"], ["--vae-slicing"]),
        (["--scheduler", "euler"], ["--scheduler"]),
        (["--latent-upsampler", "tiny:ltx2-upsampler"], ["--latent-upsampler"]),
        (["--set", "sampling.image_crf=0"], ["--image-crf is not used by LTX-2.5 DFR t2v", "i2v"]),
        (["--format", "gif"], ["gif has no audio track", "--no-audio"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*DRUMMER, *args), 3, *needles)
    assert files_under(tmp_path) == []


@pytest.mark.unit
def test_wrong_mode_and_keyframes_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("v2v", "clip.mp4", "a fox", *TINY), 3, "does not do v2v", "t2v, i2v")
    one_line_error(cli(*DRUMMER, "--keyframe", "8:last.png"), 3, "--keyframe")
    assert files_under(tmp_path) == []


@pytest.mark.unit
@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    result = cli("t2v", "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "LTX2DFRPipeline" in result.stdout and "--vram 24" in result.stdout


@pytest.mark.unit
def test_full_preset_is_the_pipeline_docs(nothing_loads: None) -> None:
    from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES, LTX2_5_IMAGE_CRF

    from vidgen.families.ltx25 import DISTILLED_SIGMAS, IMAGE_CRF_25

    assert DISTILLED_SIGMAS == DISTILLED_SIGMA_VALUES and IMAGE_CRF_25 == LTX2_5_IMAGE_CRF
    assert FULL == ["ltx2.5-dfr", "ltx2.5-dfr-diffusion-decode"]
    data = merged_preset(str(available_presets()[FULL[0]]))
    s = data["sampling"]
    assert data["model"]["id"] == "Lightricks/LTX-2.5-Diffusers"
    assert (s["height"], s["width"], s["num_frames"], s["sigmas"]) == (704, 1216, 121, DISTILLED_SIGMAS)


@pytest.mark.parametrize(
    "option",
    [
        ["--cache", "pab"],
        ["--attention-backend", "native"],
        ["--vae-tiling"],
        ["--fp8-storage"],
        ["--quantize", "int8"],
        ["--no-cross-timestep", "--noise-scale", "0.8", "--decode-timestep", "0.05"],
    ],
)
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*DRUMMER, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    if option[0].startswith("--no-cross"):
        call = record["pipeline"]["call_kwargs"]
        assert call["use_cross_timestep"] is False and call["noise_scale"] == 0.8 and call["decode_timestep"] == 0.05
    else:
        assert record["optimizations"]["applied"], record["optimizations"]


def _lora(path: Path) -> Path:
    """A PEFT LoRA on the tiny LTX-2.5 transformer's attention, saved as diffusers saves LoRAs."""
    import torch
    from diffusers import LTX2DFRPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from vidgen.families.ltx25 import tiny

    transformer = tiny().transformer
    torch.manual_seed(1)
    transformer.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    )
    path.mkdir()
    LTX2DFRPipeline.save_lora_weights(path, transformer_lora_layers=get_peft_model_state_dict(transformer))
    return path / "pytorch_lora_weights.safetensors"


def test_a_lora_changes_the_output(tmp_path: Path) -> None:
    lora = _lora(tmp_path / "lora")
    plain, _ = _png(*DRUMMER, "--seed", "2")
    result = cli(*DRUMMER, "--seed", "2", "--lora", f"{lora}:0.8", "--format", "png", "--out", "lora/")
    assert result.exit_code == 0, result.stderr
    from PIL import Image

    folder = Path(result.stdout.strip())
    with_lora = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    (record,) = sidecar(folder.with_name(folder.name + ".json"))["model"]["loras"]
    assert (record["scale"], record["matched"]) == (0.8, record["modules"])
    assert np.abs(plain.astype(int) - with_lora.astype(int)).max() > 2
