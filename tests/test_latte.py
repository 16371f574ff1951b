"""Latte: its frame count (the transformer's 16 temporal positions) and size rules, the modes it
does not do and the options it cannot take, refused before loading with one line (exit 3); the
full-size preset plans offline; the frame count reaches the pipeline as `video_length`; the
options declared for it run on the tiny model; saved latents decode to the same frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, files_under, full_presets, one_line_error, png_frames, printed_sidecar, sidecar

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-latte")
FULL = full_presets("latte")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "17"], ["--frames 17", "16 frames exactly", "use --frames 16"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (["--cache", "first-block"], ["--cache first-block", "not register"]),
        (["--attention-backend", "native"], ["--attention-backend", "SDPA itself"]),
        (["--vae-slicing"], ["--vae-slicing", "--decode-chunk"]),
        (["--compile"], ["--compile", "repeated blocks"]),
        (["--lora", "x.safetensors"], ["--lora", "no adapters"]),
        (["--scheduler", "euler"], ["--scheduler"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*T2V, *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_wrong_modes_refused(nothing_loads: None, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    one_line_error(cli("i2v", "first.png", "a fox", "--preset", "tiny-latte"), 3, "not `vidgen i2v`")
    one_line_error(cli("v2v", "clip.mp4", "a fox", "--preset", "tiny-latte"), 3, "not `vidgen v2v`")
    assert files_under(tmp_path) == [tmp_path / "first.png"]


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    result = cli("t2v", "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "LattePipeline" in result.stdout and "--vram 24" in result.stdout


def test_full_preset_is_the_pipeline_default(nothing_loads: None) -> None:
    assert FULL == ["latte-1"]
    data = merged_preset(str(available_presets()["latte-1"]))
    sampling = data["sampling"]
    assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (512, 512, 16)
    assert (sampling["num_inference_steps"], sampling["guidance_scale"], data["output"]["fps"]) == (50, 7.5, 8)


@pytest.mark.pipeline
@pytest.mark.parametrize(
    "option",
    [
        ["--cache", "pab"],
        ["--cache", "faster"],
        ["--cache", "taylorseer"],
        ["--fp8-storage"],
        ["--vae-tiling"],
        ["--decode-chunk", "4"],
    ],
)
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*T2V, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (16, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    call = record["pipeline"]["call_kwargs"]
    assert call["video_length"] == 16 and "num_frames" not in call and call["clean_caption"] is False
    if option[0] == "--decode-chunk":
        assert call["decode_chunk_size"] == 4
    else:
        assert record["optimizations"]["applied"], record["optimizations"]


@pytest.mark.pipeline
def test_saved_latents_decode_to_the_same_frames_and_previews_run(tmp_path: Path) -> None:
    made = cli(*T2V, "--seed", "3", "--format", "png", "--out", "run/", "--save-latents", "--live-preview-every", "1")
    assert "previews stopped" not in made.stderr
    run = png_frames(made)
    shown = printed_sidecar(made)["output"]["live_preview"]
    assert shown["decoder"] == "vae" and "stopped" not in shown
    saved = Path(printed_sidecar(made)["output"]["latents"]["path"])
    result = cli("decode", str(saved), "--format", "png", "--out", "again/")
    assert np.array_equal(run, png_frames(result))
    # Not vacuous: another seed decodes to other frames.
    other = png_frames(cli(*T2V, "--seed", "4", "--format", "png", "--out", "other/"))
    assert np.abs(other.astype(int) - run.astype(int)).max() > 1
