"""Kandinsky 5.0 Video: its frame, size and length rules and the options it cannot take, refused
before loading with one line (exit 3); every full-size preset plans offline; the tiny image-to-
video run and the options declared for it (checked on the tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli, decode, files_under, full_presets, one_line_error, sidecar

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-kandinsky5")
FULL = full_presets("kandinsky5")


def _image(size: tuple[int, int] = (32, 32)) -> str:
    from PIL import Image

    Image.new("RGB", size, (200, 80, 40)).save("first.png")
    return "first.png"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "6"], ["--frames 6", "4k+1", "5 or 9"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (["--cache", "pab"], ["--cache pab", "taylorseer"]),
        (["--cache", "first-block"], ["--cache first-block", "visual_transformer_blocks"]),
        (["--attention-slicing"], ["--attention-slicing", "--attention-backend"]),
        (["--scheduler", "euler"], ["--scheduler"]),
        (["--set", "sampling.max_sequence_length=2000"], ["max_sequence_length=2000", "at most 1024"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*T2V, *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_wrong_mode_and_short_i2v_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("v2v", "clip.mp4", "a fox", "--preset", "tiny-kandinsky5"), 3, "not `vidgen v2v`")
    image = _image()
    one_line_error(
        cli("i2v", image, "a fox", "--preset", "tiny-kandinsky5-i2v", "--frames", "9"), 3, "--frames 9", "at least 17"
    )
    assert files_under(tmp_path) == [tmp_path / "first.png"]


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    args = ["i2v", _image()] if "i2v" in preset else ["t2v"]
    result = cli(*args, "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "Kandinsky5" in result.stdout and "--vram 24" in result.stdout


def test_full_presets_are_the_model_cards(nothing_loads: None) -> None:
    assert {"kandinsky5-lite", "kandinsky5-lite-10s", "kandinsky5-lite-distilled", "kandinsky5-pro-i2v"} <= set(FULL)
    distilled = merged_preset(str(available_presets()["kandinsky5-lite-distilled"]))["sampling"]
    assert (distilled["num_inference_steps"], distilled["guidance_scale"]) == (16, 1.0)
    assert merged_preset(str(available_presets()["kandinsky5-lite-10s"]))["sampling"]["num_frames"] == 241


@pytest.mark.pipeline
@pytest.mark.parametrize(
    "option", [["--cache", "taylorseer"], ["--attention-backend", "native"], ["--vae-tiling"], ["--fp8-storage"]]
)
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*T2V, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (5, 32, 32)
    applied = sidecar(video.with_suffix(".json"))["optimizations"]
    assert applied, applied
