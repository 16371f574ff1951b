"""Allegro: the frames and sizes its tiled VAE covers exactly, the modes it does not do and the
options it cannot take, refused before loading with one line (exit 3); the full-size preset plans
offline; the VAE's tiling is always on (recorded for plain diffusers); the options declared for it
run on the tiny model; saved latents decode to the same frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, files_under, full_presets, one_line_error, png_frames, printed_sidecar, sidecar

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-allegro")
FULL = full_presets("allegro")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "25"], ["--frames 25", "16k+8", "24 or 40"]),
        (["--frames", "9"], ["--frames 9", "at least 24", "nearest valid: 24."]),
        (["--height", "136"], ["--height 136", "tiles of 128", "128 or 144"]),
        (["--width", "144"], ["--width 144", "sharing 80", "128 or 176"]),
        (["--cache", "first-block"], ["--cache first-block", "not register"]),
        (["--attention-backend", "native"], ["--attention-backend", "SDPA itself"]),
        (["--vae-tiling"], ["--vae-tiling", "always"]),
        (["--compile"], ["--compile", "repeated blocks"]),
        (["--live-preview"], ["--live-preview", "whole tiles"]),
        (["--lora", "x.safetensors"], ["--lora", "no adapters"]),
        (["--scheduler", "euler"], ["--scheduler"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*T2V, *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_full_size_rules_follow_its_320_pixel_tiles(nothing_loads: None) -> None:
    one_line_error(cli("t2v", "a fox", "--preset", "allegro", "--height", "480"), 3, "--height 480", "320 or 720")
    one_line_error(cli("t2v", "a fox", "--preset", "allegro", "--width", "1024"), 3, "--width 1024", "800 or 1040")
    one_line_error(cli("t2v", "a fox", "--preset", "allegro", "--frames", "81"), 3, "--frames 81", "72 or 88")


def test_wrong_modes_refused(nothing_loads: None, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (128, 128), (200, 80, 40)).save("first.png")
    one_line_error(cli("i2v", "first.png", "a fox", "--preset", "tiny-allegro"), 3, "not `vidgen i2v`")
    one_line_error(cli("v2v", "clip.mp4", "a fox", "--preset", "tiny-allegro"), 3, "not `vidgen v2v`")
    assert files_under(tmp_path) == [tmp_path / "first.png"]


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    result = cli("t2v", "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "AllegroPipeline" in result.stdout and "--vram 24" in result.stdout


def test_full_preset_is_the_model_card(nothing_loads: None) -> None:
    assert FULL == ["allegro"]
    data = merged_preset(str(available_presets()["allegro"]))
    sampling = data["sampling"]
    assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (720, 1280, 88)
    assert (sampling["num_inference_steps"], sampling["guidance_scale"], data["output"]["fps"]) == (100, 7.5, 15)


@pytest.mark.pipeline
@pytest.mark.parametrize(
    "option", [["--cache", "pab"], ["--cache", "faster"], ["--cache", "taylorseer"], ["--fp8-storage"]]
)
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*T2V, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (24, 128, 128)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]
    assert record["pipeline"]["setup"] == [{"method": "vae.enable_tiling", "kwargs": {}}]
    assert record["pipeline"]["call_kwargs"]["clean_caption"] is False


@pytest.mark.pipeline
def test_saved_latents_decode_to_the_same_frames(tmp_path: Path) -> None:
    made = cli(*T2V, "--seed", "3", "--format", "png", "--out", "run/", "--save-latents")
    run = png_frames(made)
    saved = Path(printed_sidecar(made)["output"]["latents"]["path"])
    result = cli("decode", str(saved), "--format", "png", "--out", "again/")
    assert np.array_equal(run, png_frames(result))
    # Not vacuous: another seed decodes to other frames.
    other = png_frames(cli(*T2V, "--seed", "4", "--format", "png", "--out", "other/"))
    assert np.abs(other.astype(int) - run.astype(int)).max() > 1
