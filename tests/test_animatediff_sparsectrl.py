"""AnimateDiff SparseCtrl: keyframes (--keyframe FRAME:IMAGE) on `vidgen animate`. Both tiny
models (scribble: images through the ControlNet's own encoder; RGB: images through the VAE)
equal plain diffusers from the sidecar, and another seed, prompt or keyframe image differs;
keyframes it cannot place, options it cannot take and the wrong mode are refused before
loading; every full-size preset plans offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, files_under, full_presets, one_line_error, plain_diffusers, sidecar

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

TINY = ("animate", "a red fox in snow", "--preset", "tiny-animatediff-sparsectrl")
FULL = full_presets("animatediff-sparsectrl")


def _keyframe(name: str, color: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> str:
    """A picture with a bright square on a plain ground, at the run's size."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).rectangle((4, 4, 18, 18), fill=(250, 250, 250))
    image.save(name)
    return name


def _png_frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ([], ["needs at least one --keyframe", "vidgen animate -h"]),
        (["--keyframe", "8:k0.png"], ["--keyframe 8:k0.png", "past the last frame", "8 frames (0 to 7)"]),
        (["--keyframe", "0:k0.png", "--keyframe", "0:k7.png"], ["two keyframes at frame 0"]),
        (["--keyframe", "0:k0.png:0.5"], ["no per-keyframe strength", "--control-scale"]),
        (["--keyframe", "0:k0.png", "--controlnet", "canny"], ["--controlnet canny", "SparseControlNetModel"]),
        (["--keyframe", "0:k0.png", "--context-length", "8"], ["--context-length", "FreeNoise"]),
        (["--keyframe", "0:k0.png", "--prompt-at", "4:a wolf"], ["--prompt-at", "FreeNoise"]),
        (["--keyframe", "0:k0.png", "--decode-chunk", "4"], ["--decode-chunk", "one VAE call"]),
        (["--keyframe", "0:k0.png", "--height", "36"], ["--height 36", "multiples of 8", "32 or 40"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    _keyframe("k0.png", (200, 80, 40))
    _keyframe("k7.png", (20, 160, 220))
    one_line_error(cli(*TINY, *args), 3, *needles)
    assert sorted(p.name for p in files_under(tmp_path)) == ["k0.png", "k7.png"]


def test_wrong_mode_and_keyframes_elsewhere_refused(nothing_loads: None, tmp_path: Path) -> None:
    _keyframe("k0.png", (200, 80, 40))
    preset = "tiny-animatediff-sparsectrl"
    one_line_error(cli("t2v", "a fox", "--preset", preset, "--keyframe", "0:k0.png"), 3, "not `vidgen t2v`")
    # Plain AnimateDiff has no keyframes: the refusal names the family that does.
    one_line_error(cli("animate", "a fox", "--preset", "tiny-animatediff", "--keyframe", "0:k0.png"), 3, "--keyframe")
    assert files_under(tmp_path) == [tmp_path / "k0.png"]


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    _keyframe("k0.png", (200, 80, 40), (512, 512))
    args = ("animate", "a fox", "--preset", preset, "--keyframe", "0:k0.png")
    result = cli(*args, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "AnimateDiffSparseControlNetPipeline" in result.stdout and "--vram 24" in result.stdout
    assert "controlnet 0.9" in result.stdout  # the published SparseCtrl weights, counted


def test_full_presets_are_the_docs_example(nothing_loads: None) -> None:
    assert FULL == ["animatediff-sparsectrl-rgb", "animatediff-sparsectrl-scribble"]
    for name, controlnet in zip(FULL, ("rgb", "scribble"), strict=True):
        data = merged_preset(str(available_presets()[name]))
        assert data["model"]["controlnet"] == f"guoyww/animatediff-sparsectrl-{controlnet}"
        assert data["model"]["motion_adapter"] == "guoyww/animatediff-motion-adapter-v1-5-3"
        assert data["model"]["scheduler"] == "dpm++"
        assert data["model"]["scheduler_options"]["use_karras_sigmas"] is True


@pytest.mark.pipeline
@pytest.mark.parametrize("preset", ["tiny-animatediff-sparsectrl", "tiny-animatediff-sparsectrl-rgb"])
def test_tiny_equals_plain_diffusers_and_keyframes_matter(preset: str, tmp_path: Path) -> None:
    from PIL import Image

    first, last = _keyframe("k0.png", (200, 80, 40)), _keyframe("k5.png", (20, 160, 220))
    args = ("animate", "a red fox in snow", "--preset", preset, "--keyframe", f"0:{first}", "--keyframe", f"5:{last}")
    result = cli(*args, "--seed", "5", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    ours = _png_frames(folder)
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert ours.shape == (8, 32, 32, 3)
    assert data["pipeline"]["call_kwargs"]["controlnet_frame_indices"] == [0, 5]
    assert data["pipeline"]["media_kwargs"] == {"conditioning_frames": "inputs.conditions"}
    assert data["model"]["components"]["controlnet"] == "SparseControlNetModel"
    # The keyframes are at the run's size already, so the pipeline got the files' own pixels.
    media = {"conditioning_frames": [Image.open(p).convert("RGB") for p in (first, last)]}
    assert [c["prepared"]["sha256"] for c in data["inputs"]["conditions"]] == [
        __import__("hashlib").sha256(image.tobytes()).hexdigest() for image in media["conditioning_frames"]
    ]
    assert_reproduces(ours, data, media)
    # Another keyframe image (the same frames) changes the video.
    other = {"conditioning_frames": [Image.new("RGB", (32, 32), (0, 0, 0)), media["conditioning_frames"][1]]}
    assert np.abs(ours.astype(int) - plain_diffusers(data, other).frames.astype(int)).max() > 1


@pytest.mark.pipeline
@pytest.mark.parametrize("option", [["--vae-slicing"], ["--fp8-storage"], ["--free-init", "2"]])
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    _keyframe("k0.png", (200, 80, 40))
    result = cli(*TINY, "--keyframe", "0:k0.png", "--frames", "4", "--steps", "1", *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    record = sidecar(Path(result.stdout.strip()).with_suffix(".json"))
    assert record["pipeline"]["call_kwargs"]["controlnet_frame_indices"] == [0]
