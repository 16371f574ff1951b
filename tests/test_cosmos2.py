"""Cosmos Predict 2 Video2World: its frame and size rules, the modes it does not do and the options
it cannot take, refused before loading with one line (exit 3); the full-size presets plan
offline; the options declared for it run on the tiny model. Image to video equals plain diffusers
in tests/test_reproduce.py (from the tiny preset); video to video, which passes the clip's last 5
frames, here, against the same reproducer (another seed, prompt and guidance differing)."""

from __future__ import annotations

from pathlib import Path

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

I2V = ("i2v", "first.png", "a red fox in snow", "--preset", "tiny-cosmos2")
FULL = full_presets("cosmos2")


@pytest.fixture
def first(tmp_path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save(tmp_path / "first.png")
    return tmp_path / "first.png"


def _clip(folder: Path, count: int = 9, size: tuple[int, int] = (32, 32)) -> Path:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"f{index}.png")
    return folder


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "8"], ["--frames 8", "4k+1", "5 or 9"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (["--lora", "x.safetensors"], ["--lora", "no LoRA loader"]),
        (["--compile"], ["--compile", "repeated blocks"]),
        (["--cache", "first-block"], ["--cache", "CacheMixin"]),
        (["--quantize", "int8"], ["--quantize", "--fp8-storage"]),
        (["--scheduler", "euler"], ["--scheduler", "flow-matching Euler"]),
    ],
)
def test_refused_before_loading(
    args: list[str], needles: list[str], first: Path, nothing_loads: None, tmp_path: Path
) -> None:
    one_line_error(cli(*I2V, *args), 3, *needles)
    assert files_under(tmp_path) == [first]


def test_wrong_modes_and_v2v_rules_refused(first: Path, nothing_loads: None, tmp_path: Path) -> None:
    # No video from text alone: the pipeline always starts from an image or a clip.
    one_line_error(cli("t2v", "a fox", "--preset", "tiny-cosmos2"), 3, "t2v")
    one_line_error(cli("control", "a fox", "--control", "first.png", "--preset", "tiny-cosmos2"), 3, "control")
    clip = _clip(tmp_path / "clip")
    v2v = ("v2v", "clip", "a fox", "--preset", "tiny-cosmos2-v2v")
    one_line_error(cli(*v2v, "--strength", "0.5"), 3, "--strength", "last 5 frames")
    one_line_error(cli(*v2v, "--set", "sampling.num_frames=5"), 3, "num_frames=5", "nothing to predict", "9")
    assert files_under(tmp_path) == sorted([first, *clip.iterdir()])


def test_a_clip_shorter_than_5_frames_is_refused(nothing_loads: None, tmp_path: Path) -> None:
    _clip(tmp_path / "short", count=4)
    one_line_error(cli("v2v", "short", "a fox", "--preset", "tiny-cosmos2-v2v"), 4, "4 frame", "at least 5")


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None, tmp_path: Path) -> None:
    from PIL import Image

    if preset.endswith("-v2v"):
        _clip(tmp_path / "clip", size=(1280, 704))
        args = ["v2v", "clip", "a fox"]
    else:
        Image.new("RGB", (1280, 704), (200, 80, 40)).save(tmp_path / "first.png")
        args = ["i2v", "first.png", "a fox"]
    result = cli(*args, "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "Cosmos2VideoToWorldPipeline" in result.stdout and "--vram 24" in result.stdout


def test_full_presets_are_the_pipelines_defaults(nothing_loads: None) -> None:
    assert FULL == ["cosmos-predict2-14b", "cosmos-predict2-14b-v2v", "cosmos-predict2-2b", "cosmos-predict2-2b-v2v"]
    for name in FULL:
        data = merged_preset(str(available_presets()[name]))
        sampling = data["sampling"]
        assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (704, 1280, 93)
        assert (sampling["num_inference_steps"], sampling["guidance_scale"]) == (35, 7.0)
        assert sampling["fps"] == data["output"]["fps"] == 16


@pytest.mark.pipeline
@pytest.mark.parametrize("option", [["--fp8-storage"], ["--vae-tiling"], ["--attention-backend", "native"]])
def test_declared_options_run_on_the_tiny_model(option: list[str], first: Path, tmp_path: Path) -> None:
    result = cli(*I2V, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]


@pytest.mark.pipeline
def test_v2v_continues_the_clips_last_5_frames_as_plain_diffusers_does(tmp_path: Path) -> None:
    from PIL import Image

    clip = _clip(tmp_path / "clip", count=11)
    result = cli("v2v", "clip", "a red fox in snow", "--preset", "tiny-cosmos2-v2v", "--seed", "5", "--format", "png",
                 "--out", "frames/")  # fmt: skip
    ours = png_frames(result)
    data = printed_sidecar(result)
    assert ours.shape == (9, 32, 32, 3)
    assert data["inputs"]["video"]["frames_used"] == 11
    assert "last 5 frames" in data["pipeline"]["run"]
    frames = [Image.open(path).convert("RGB") for path in sorted(clip.iterdir(), key=lambda p: int(p.stem[1:]))]
    # Plain diffusers given the clip's last 5 frames; another seed, prompt and guidance differ.
    assert_reproduces(ours, data, {"video": frames[-5:]})
    # The frames before them play no part; the last ones do.
    altered = tmp_path / "altered"
    altered.mkdir()
    for index, frame in enumerate(frames):
        Image.fromarray((255 - np.asarray(frame)) if index < 6 else np.asarray(frame)).save(altered / f"f{index}.png")
    same = png_frames(cli("v2v", "altered", "a red fox in snow", "--preset", "tiny-cosmos2-v2v", "--seed", "5",
                          "--format", "png", "--out", "same/"))  # fmt: skip
    assert np.array_equal(same, ours)
