"""Motif-Video: its frame and size rules, the mode it does not do and the options it cannot take,
refused before loading with one line (exit 3); --guidance replaces the guider; every full-size
preset plans offline; the options declared for it run on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli, decode, files_under, full_presets, one_line_error, sidecar

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-motif-video")
FULL = full_presets("motif-video")


def _image(size: tuple[int, int] = (32, 32)) -> str:
    from PIL import Image

    Image.new("RGB", size, (200, 80, 40)).save("first.png")
    return "first.png"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "10"], ["--frames 10", "4k+1", "9 or 13"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (["--guidance", "0.5"], ["--guidance 0.5", "its guider takes 1"]),
        (["--cache", "first-block"], ["--cache first-block", "taylorseer"]),
        (["--cache", "faster"], ["--cache faster", "two passes"]),
        (["--compile"], ["--compile", "not checked"]),
        (["--attention-slicing"], ["--attention-slicing", "--attention-backend"]),
        (["--scheduler", "euler"], ["--scheduler"]),
        (["--lora", "style.safetensors"], ["--lora", "no LoRA loader"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*T2V, *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_wrong_mode_and_short_i2v_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("v2v", "clip.mp4", "a fox", "--preset", "tiny-motif-video"), 3, "not `vidgen v2v`")
    image = _image()
    one_line_error(cli("i2v", image, "a fox", "--preset", "tiny-motif-video"), 3, "not `vidgen i2v`")
    one_line_error(
        cli("i2v", image, "a fox", "--preset", "tiny-motif-video-i2v", "--frames", "1"), 3, "--frames 1", "at least 5"
    )
    assert files_under(tmp_path) == [tmp_path / "first.png"]


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    args = ["i2v", _image()] if "i2v" in preset else ["t2v"]
    result = cli(*args, "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "MotifVideo" in result.stdout and "--vram 24" in result.stdout


def test_full_presets_are_the_model_card(nothing_loads: None) -> None:
    assert FULL == ["motif-video-2b", "motif-video-2b-i2v"]
    data = merged_preset(str(available_presets()["motif-video-2b"]))
    sampling = data["sampling"]
    assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (736, 1280, 121)
    assert (sampling["num_inference_steps"], data["output"]["fps"]) == (50, 24)
    # The guidance is the checkpoint guider's own unless --guidance replaces it.
    assert "guidance_scale" not in sampling


@pytest.mark.pipeline
@pytest.mark.parametrize(
    "option",
    [
        ["--attention-backend", "native"],
        ["--vae-tiling"],
        ["--fp8-storage"],
        ["--cache", "pab"],
        ["--cache", "taylorseer"],
    ],
)
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*T2V, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]
    assert "guidance_scale" not in record["pipeline"]["call_kwargs"]


@pytest.mark.pipeline
def test_guidance_replaces_the_guider_and_i2v_runs(tmp_path: Path) -> None:
    result = cli(
        "i2v", _image(), "a red fox in snow", "--preset", "tiny-motif-video-i2v", "--guidance", "3", "--out", "a/"
    )
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["pipeline"]["setup"] == [{"method": "guider = guider.new", "kwargs": {"guidance_scale": 3.0}}]
    assert record["pipeline"]["class"] == "MotifVideoImage2VideoPipeline"
