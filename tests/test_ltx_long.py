"""LTX-Video long (LTXI2VLongMultiPromptPipeline): a prompt per window from --prompt-at or a
prompts file, equal to plain diffusers from the sidecar and reproduced by `replay`; prompts off the
windows, out of range or out of order, off-grid frames, sizes and windows, a wrong mode and
options it cannot take refused before loading with one line (exit 3); every full-size preset
plans offline; the options declared for it run on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, decode, files_under, full_presets, one_line_error, sidecar

from vidgen import families
from vidgen.config import available_presets, resolve
from vidgen.config.layers import Layer, merged_preset
from vidgen.families.ltx_long import windows

DEFAULT_TIER = "pipeline"

TINY = ("--preset", "tiny-ltx-long")
# The tiny preset's 41 frames in 24-frame windows overlapping by 8 start at frames 0, 16 and 32.
TRAVEL = ("--prompt-at", "0:a red fox", "--prompt-at", "16:a blue dog", "--prompt-at", "32:the cat")
FULL = full_presets("ltx-long")


def _frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


def _run(*args: str, out: str = "frames/") -> tuple[np.ndarray, dict]:
    result = cli(*args, "--seed", "5", "--format", "png", "--out", out)
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    return _frames(folder), sidecar(folder.with_name(folder.name + ".json"))


@pytest.mark.unit
def test_windows_start_where_the_pipeline_splits_them() -> None:
    from diffusers.pipelines.ltx.pipeline_ltx_i2v_long_multi_prompt import split_into_temporal_windows

    for frames, tile, overlap in [(161, 80, 24), (41, 24, 8), (257, 64, 16), (9, 80, 24), (121, 16, 8)]:
        latent = (frames - 1) // 8 + 1
        theirs = split_into_temporal_windows(latent, tile // 8, overlap // 8, 8)
        assert windows(frames, tile, overlap) == [start * 8 for start, _ in theirs]
    assert windows(161, 80, 24) == [0, 56, 112]


def test_a_prompt_per_window_equals_plain_diffusers_from_its_sidecar(tmp_path: Path) -> None:
    ours, data = _run("t2v", *TINY, *TRAVEL)
    call = data["pipeline"]["call_kwargs"]
    assert call["prompt"] == ["a red fox", "a blue dog", "the cat"]
    assert call["seed"] == 5 and data["inputs"]["prompts"] == {"0": "a red fox", "16": "a blue dog", "32": "the cat"}
    assert data["pipeline"]["media_kwargs"] == {}
    assert_reproduces(ours, data)
    # The last window's prompt reaches the pipeline: another one there changes the frames.
    other, _ = _run("t2v", *TINY, *TRAVEL[:4], "--prompt-at", "32:a green horse", out="other/")
    assert np.abs(ours.astype(int) - other.astype(int)).max() > 1


def test_i2v_holds_the_image_and_replay_reproduces(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    ours, data = _run("i2v", "first.png", "a red fox", *TINY, "--prompt-at", "32:the cat", "--cond-strength", "0.8")
    call = data["pipeline"]["call_kwargs"]
    assert call["prompt"] == ["a red fox", "a red fox", "the cat"] and call["cond_strength"] == 0.8
    assert list(data["pipeline"]["media_kwargs"]) == ["cond_image"]
    assert_reproduces(ours, data)
    sidecar_path = next(Path("frames").glob("*.json"))
    again = cli("replay", str(sidecar_path), "--allow-inputs", "--out", "again/")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(_frames(Path(again.stdout.strip())), ours)


def test_a_prompts_file_is_the_same_as_the_flags(tmp_path: Path, nothing_loads: None) -> None:
    Path("travel.txt").write_text("# AnimateDiff-style prompt travel\n0: a red fox\n\n16: a blue dog\n32: the cat\n")
    flags = cli("t2v", *TINY, *TRAVEL, "--seed", "1", "--dry-run", "--json")
    filed = cli("t2v", *TINY, "--prompt-at", "@travel.txt", "--seed", "1", "--dry-run", "--json")
    assert flags.exit_code == filed.exit_code == 0, filed.stderr
    assert "a blue dog" in filed.stdout
    assert json.loads(flags.stdout) == json.loads(filed.stdout)
    one_line_error(cli("t2v", *TINY, "--prompt-at", "@missing.txt"), 4, "missing.txt")


@pytest.mark.unit
def test_the_window_prompts_follow_the_map() -> None:
    asked = Layer("cli", {"inputs": {"prompt": "a fox", "prompts": {112: "a dog"}}})
    config = resolve("t2v", ["ltx-video-0.9.8-13b-distilled-long"], [asked], families.defaults_layer).config
    kwargs = families.get("ltx-long").call_kwargs(config, seed=7)
    assert kwargs["prompt"] == ["a fox", "a fox", "a dog"]
    assert (kwargs["seed"], kwargs["frame_rate"], kwargs["temporal_tile_size"], kwargs["temporal_overlap"]) == (
        7,
        24,
        80,
        24,
    )
    assert "cond_strength" not in kwargs and kwargs["output_type"] == "np"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--prompt-at", "0:a fox", "--prompt-at", "20:a dog"], ["--prompt-at 20", "0, 16, 32", "16 or 32"]),
        (["--prompt-at", "0:a fox", "--prompt-at", "48:a dog"], ["--prompt-at 48", "past the last frame (40)"]),
        (["--prompt-at", "0:a fox", "--prompt-at", "32:a dog", "--prompt-at", "16:a cat"], ["out of order"]),
        (["a fox", "--prompt-at", "0:a dog"], ["PROMPT", "0:"]),
        (["--prompt-at", "16:a dog"], ["frame 0"]),
        (["--prompt-at", "x:a dog"], ["FRAME:TEXT"]),
        (["a | b | c | d"], ["4 parts", "3 windows"]),
        (["a fox", "--temporal-tile", "20"], ["--temporal-tile 20", "16 or 24"]),
        (["a fox", "--temporal-overlap", "4"], ["--temporal-overlap 4", "0 or 8"]),
        (["a fox", "--temporal-overlap", "24"], ["--temporal-overlap 24", "shorter than --temporal-tile 24"]),
        (["a fox", "--frames", "40"], ["--frames 40", "8k+1", "33 or 41"]),
        (["a fox", "--height", "48"], ["--height 48", "multiples of 32", "32 or 64"]),
        (["a fox", "--live-preview"], ["--live-preview", "one window at a time"]),
        (["a fox", "--cache", "first-block"], ["--cache first-block", "pab", "one window into the next"]),
        (["a fox", "--cache", "taylorseer"], ["--cache taylorseer", "pab"]),
        (["a fox", "--vae-slicing"], ["--vae-slicing", "--vae-tiling"]),
        (["a fox", "--scheduler", "euler"], ["--scheduler"]),
        (["a fox", "--keyframe", "0:first.png"], ["--keyframe"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("t2v", *args, *TINY), 3, *needles)
    assert files_under(tmp_path) == []


@pytest.mark.unit
def test_wrong_mode_and_a_family_without_prompt_travel_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("v2v", "clip.mp4", "a fox", *TINY), 3, "does not do v2v", "t2v, i2v")
    one_line_error(cli("t2v", "a fox", "--preset", "tiny-ltx", "--prompt-at", "8:a dog"), 3, "--prompt-at")
    one_line_error(cli("t2v", "a fox", "--preset", "tiny-ltx", "--temporal-tile", "16"), 3, "--temporal-tile")
    assert files_under(tmp_path) == []


@pytest.mark.unit
@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    result = cli("t2v", "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "LTXI2VLongMultiPromptPipeline" in result.stdout and "--vram 24" in result.stdout


@pytest.mark.unit
def test_full_presets_are_the_pipeline_docs(nothing_loads: None) -> None:
    assert FULL == ["ltx-video-0.9.8-13b-distilled-long"]
    data = merged_preset(str(available_presets()[FULL[0]]))
    s = data["sampling"]
    assert data["model"]["id"] == "Lightricks/LTX-Video-0.9.8-13B-distilled"
    assert (s["height"], s["width"], s["num_frames"], s["num_inference_steps"], s["guidance_scale"]) == (
        512,
        704,
        161,
        8,
        1.0,
    )
    assert (s["temporal_tile_size"], s["temporal_overlap"]) == (80, 24)


@pytest.mark.parametrize(
    "option",
    [
        ["--cache", "pab"],
        ["--attention-backend", "native"],
        ["--vae-tiling"],
        ["--fp8-storage"],
        ["--quantize", "int8"],
    ],
)
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli("t2v", "a red fox", *TINY, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (41, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]


def _lora(path: Path) -> Path:
    """A PEFT LoRA on the tiny LTX transformer's attention, saved as diffusers saves LoRAs."""
    import torch
    from diffusers import LTXI2VLongMultiPromptPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from vidgen.families.ltx_long import tiny

    transformer = tiny().transformer
    torch.manual_seed(1)
    transformer.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    )
    path.mkdir()
    LTXI2VLongMultiPromptPipeline.save_lora_weights(
        path, transformer_lora_layers=get_peft_model_state_dict(transformer)
    )
    return path / "pytorch_lora_weights.safetensors"


def test_lora_changes_the_output(tmp_path: Path) -> None:
    lora = _lora(tmp_path / "lora")
    plain, _ = _run("t2v", "a red fox", *TINY)
    with_lora, data = _run("t2v", "a red fox", *TINY, "--lora", f"{lora}:0.8", out="lora/")
    (record,) = data["model"]["loras"]
    assert (record["scale"], record["matched"]) == (0.8, record["modules"])
    assert np.abs(plain.astype(int) - with_lora.astype(int)).max() > 2
