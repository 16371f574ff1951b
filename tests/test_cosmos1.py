"""Cosmos 1.0 Diffusion: its frame and size rules, a checkpoint of the other mode, the mode it does
not do and the options it cannot take, refused before loading with one line (exit 3); the
full-size presets plan offline; the options declared for it run on the tiny models. Text and
image to video equal plain diffusers in tests/test_reproduce.py (from the tiny presets); video to
video, which passes the clip's last 9 frames, here, against the same reproducer."""

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

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-cosmos1")
FULL = full_presets("cosmos1")


def _clip(folder: Path, count: int = 17, size: tuple[int, int] = (32, 32)) -> Path:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"f{index}.png")
    return folder


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "16"], ["--frames 16", "8k+1", "9 or 17"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (["--lora", "x.safetensors"], ["--lora", "no LoRA loader"]),
        (["--vae-tiling"], ["--vae-tiling", "never tiles"]),
        (["--compile"], ["--compile", "repeated blocks"]),
        (["--cache", "first-block"], ["--cache", "CacheMixin"]),
        (["--scheduler", "euler"], ["--scheduler", "EDM Euler"]),
        (["--model", "nvidia/Cosmos-1.0-Diffusion-7B-Video2World"], ["Video2World checkpoint", "Text2World"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*T2V, *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_wrong_mode_checkpoint_and_v2v_rules_refused(nothing_loads: None, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    one_line_error(cli("control", "a fox", "--control", "first.png", "--preset", "tiny-cosmos1"), 3, "control")
    one_line_error(
        cli(
            "i2v",
            "first.png",
            "a fox",
            "--preset",
            "tiny-cosmos1-i2v",
            "--model",
            "nvidia/Cosmos-1.0-Diffusion-14B-Text2World",
        ),
        3,
        "Text2World checkpoint",
        "Video2World",
    )
    clip = _clip(tmp_path / "clip")
    v2v = ("v2v", "clip", "a fox", "--preset", "tiny-cosmos1-v2v")
    one_line_error(cli(*v2v, "--strength", "0.5"), 3, "--strength", "last 9 frames")
    one_line_error(cli(*v2v, "--set", "sampling.num_frames=9"), 3, "num_frames=9", "nothing to predict", "17")
    _clip(tmp_path / "short", count=8)
    one_line_error(cli("v2v", "short", "a fox", "--preset", "tiny-cosmos1-v2v"), 4, "8 frame", "at least 9")
    assert files_under(tmp_path) == sorted([tmp_path / "first.png", *clip.iterdir(), *(tmp_path / "short").iterdir()])


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None, tmp_path: Path) -> None:
    from PIL import Image

    args = ["t2v", "a fox"]
    if preset.endswith("-i2v"):
        Image.new("RGB", (1280, 704), (200, 80, 40)).save(tmp_path / "first.png")
        args = ["i2v", "first.png", "a fox"]
    if preset.endswith("-v2v"):
        _clip(tmp_path / "clip", size=(1280, 704))
        args = ["v2v", "clip", "a fox"]
    result = cli(*args, "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    pipeline = "CosmosTextToWorldPipeline" if args[0] == "t2v" else "CosmosVideoToWorldPipeline"
    assert pipeline in result.stdout and "--vram 24" in result.stdout


def test_full_presets_are_the_pipelines_defaults(nothing_loads: None) -> None:
    assert len(FULL) == 6
    for name in FULL:
        data = merged_preset(str(available_presets()[name]))
        sampling = data["sampling"]
        assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (704, 1280, 121)
        assert (sampling["num_inference_steps"], sampling["guidance_scale"]) == (36, 7.0)
        assert sampling["fps"] == data["output"]["fps"] == 30
        kind = "Text2World" if data["mode"] == "t2v" else "Video2World"
        assert data["model"]["id"].endswith(kind)


@pytest.mark.pipeline
@pytest.mark.parametrize("option", [["--fp8-storage"], ["--attention-backend", "native"]])
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*T2V, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (17, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]


@pytest.mark.pipeline
def test_v2v_continues_the_clips_last_9_frames_as_plain_diffusers_does(tmp_path: Path) -> None:
    from PIL import Image

    clip = _clip(tmp_path / "clip", count=12)
    result = cli("v2v", "clip", "a red fox in snow", "--preset", "tiny-cosmos1-v2v", "--seed", "5", "--format", "png",
                 "--out", "frames/")  # fmt: skip
    ours = png_frames(result)
    data = printed_sidecar(result)
    assert ours.shape == (17, 32, 32, 3)
    assert data["inputs"]["video"]["frames_used"] == 12
    assert "last 9 frames" in data["pipeline"]["run"]
    frames = [Image.open(path).convert("RGB") for path in sorted(clip.iterdir(), key=lambda p: int(p.stem[1:]))]
    # Plain diffusers given the clip's last 9 frames; another seed, prompt and guidance differ.
    assert_reproduces(ours, data, {"video": frames[-9:]})
