"""SANA-Video: its frame and size rules, the mode it does not do and the options it cannot take,
refused before loading with one line (exit 3); the size passes through unbinned; every full-size
preset plans offline; the options declared for it run on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli, decode, files_under, full_presets, one_line_error, sidecar

from vidgen import families
from vidgen.config import available_presets, resolve
from vidgen.config.layers import Layer, merged_preset

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-sana-video")
FULL = full_presets("sana-video")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "10"], ["--frames 10", "4k+1", "9 or 13"]),
        (["--height", "48"], ["--height 48", "multiples of 32", "32 or 64"]),
        (["--width", "40"], ["--width 40", "multiples of 32", "32 or 64"]),
        (["--cache", "first-block"], ["--cache", "CacheMixin"]),
        (["--compile"], ["--compile", "repeated blocks"]),
        (["--attention-slicing"], ["--attention-slicing", "--attention-backend"]),
        (["--quantize", "int8"], ["--quantize", "--fp8-storage"]),
        (["--scheduler", "euler"], ["--scheduler"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*T2V, *args), 3, *needles)
    assert files_under(tmp_path) == []


def _image(size: tuple[int, int] = (32, 32)) -> str:
    from PIL import Image

    Image.new("RGB", size, (200, 80, 40)).save("first.png")
    return "first.png"


def test_wrong_mode_and_short_i2v_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("v2v", "clip.mp4", "a fox", "--preset", "tiny-sana-video"), 3, "not `vidgen v2v`")
    image = _image()
    one_line_error(cli("i2v", image, "a fox", "--preset", "tiny-sana-video"), 3, "not `vidgen i2v`")
    one_line_error(
        cli("i2v", image, "a fox", "--preset", "tiny-sana-video-i2v", "--frames", "1"), 3, "--frames 1", "at least 5"
    )
    one_line_error(
        cli("i2v", image, "a fox", "--preset", "tiny-sana-video-i2v", "--flow-shift", "8"), 3, "--flow-shift"
    )
    assert files_under(tmp_path) == [tmp_path / "first.png"]


def test_the_size_and_frames_pass_through_unbinned() -> None:
    asked = Layer("cli", {"inputs": {"prompt": "a fox"}, "sampling": {"height": 512, "width": 512, "num_frames": 33}})
    config = resolve("t2v", ["sana-video-2b-480p"], [asked], families.defaults_layer).config
    kwargs = families.get("sana-video").call_kwargs(config, seed=0)
    assert (kwargs["height"], kwargs["width"], kwargs["frames"]) == (512, 512, 33)
    assert kwargs["use_resolution_binning"] is False and "num_frames" not in kwargs


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    args = ["i2v", _image()] if "i2v" in preset else ["t2v"]
    result = cli(*args, "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "Sana" in result.stdout and "--vram 24" in result.stdout


def test_full_presets_are_the_model_card(nothing_loads: None) -> None:
    assert FULL == ["sana-video-2b-480p", "sana-video-2b-480p-i2v"]
    data = merged_preset(str(available_presets()["sana-video-2b-480p"]))
    sampling = data["sampling"]
    assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (480, 832, 81)
    assert (sampling["num_inference_steps"], sampling["guidance_scale"], data["output"]["fps"]) == (50, 6.0, 16)


@pytest.mark.pipeline
@pytest.mark.parametrize("option", [["--attention-backend", "native"], ["--vae-tiling"], ["--fp8-storage"]])
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*T2V, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]
    call = record["pipeline"]["call_kwargs"]
    assert call["frames"] == 9 and "num_frames" not in call and call["use_resolution_binning"] is False


@pytest.mark.pipeline
def test_i2v_swaps_in_the_docs_scheduler(tmp_path: Path) -> None:
    result = cli("i2v", _image(), "a red fox in snow", "--preset", "tiny-sana-video-i2v", "--vae-tiling", "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["pipeline"]["setup"] == [
        {"method": "scheduler = FlowMatchEulerDiscreteScheduler.from_config", "kwargs": {}}
    ]
