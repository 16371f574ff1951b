"""AnimateDiff video-to-video ControlNet: `vidgen v2v VIDEO PROMPT` with control maps drawn from
VIDEO (--preprocess canny) or given (--control). The tiny model equals plain diffusers from the
sidecar, and another seed, prompt or control differs; a control clip of another length, no
control at all, the wrong mode and options it cannot take are refused before loading; the
full-size preset plans offline."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, files_under, one_line_error, plain_diffusers, sidecar

V2V = ("v2v", "clip", "a red fox in snow", "--preset", "tiny-animatediff-v2v-controlnet")


def _clip(folder: str, count: int, size: tuple[int, int] = (32, 32), seed: int = 0) -> str:
    """Frames with a few bright squares on noise (so canny finds edges), named f0..fN."""
    from PIL import Image, ImageDraw

    Path(folder).mkdir()
    rng = np.random.default_rng(seed)
    for index in range(count):
        image = Image.fromarray(rng.integers(0, 120, (size[1], size[0], 3), dtype=np.uint8))
        ImageDraw.Draw(image).rectangle((4 + index, 6, 16 + index, 20), fill=(250, 250, 250))
        image.save(Path(folder) / f"f{index}.png")
    return folder


def _frames(folder: Path) -> list:
    from PIL import Image

    files = sorted(folder.iterdir(), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
    return [Image.open(p).convert("RGB") for p in files]


def _canny(frames: list, low: int = 100, high: int = 200) -> list:
    import cv2
    from PIL import Image

    return [Image.fromarray(np.stack([cv2.Canny(np.asarray(f), low, high)] * 3, axis=-1)) for f in frames]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--preprocess", "none"], ["needs control maps", "--preprocess canny", "--control CONTROL"]),
        (["--control", "short"], ["--control short gives 5 frame(s)", "VIDEO", "one frame per"]),
        (["--height", "36"], ["--height 36", "multiples of 8"]),
        (["--attention-slicing"], ["--attention-slicing"]),
        (["--quantize", "int8"], ["--quantize", "--fp8-storage"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    _clip("clip", 8)
    _clip("short", 5)
    one_line_error(cli(*V2V, *args), 4 if "short" in args else 3, *needles)
    assert not [p for p in files_under(tmp_path) if p.suffix != ".png"]


def test_wrong_mode_refused(nothing_loads: None, tmp_path: Path) -> None:
    _clip("clip", 8)
    preset = "tiny-animatediff-v2v-controlnet"
    one_line_error(cli("control", "a fox", "--control", "clip", "--preset", preset), 3, "not `vidgen control`")
    # Plain AnimateDiff video-to-video takes no control.
    one_line_error(cli("v2v", "clip", "a fox", "--preset", "tiny-animatediff-v2v", "--control", "clip"), 3, "--control")


def test_full_preset_plans_offline(nothing_loads: None, tmp_path: Path) -> None:
    _clip("clip", 16, (512, 512))
    args = ("v2v", "clip", "a fox", "--preset", "animatediff-v2v-controlnet")
    result = cli(*args, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "AnimateDiffVideoToVideoControlNetPipeline" in result.stdout and "--vram 24" in result.stdout
    assert "controlnet 0.7" in result.stdout  # lllyasviel/sd-controlnet-canny's published size


@pytest.mark.pipeline
def test_tiny_equals_plain_diffusers_and_the_control_matters(tmp_path: Path) -> None:
    clip = _clip("clip", 8)
    result = cli(*V2V, "--seed", "5", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    ours = np.stack([np.asarray(image) for image in _frames(folder)])
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert ours.shape == (8, 32, 32, 3)
    assert data["pipeline"]["class"] == "AnimateDiffVideoToVideoControlNetPipeline"
    assert data["inputs"]["control"]["from"] == "inputs.video"
    video = _frames(Path(clip))
    # The control maps as the diffusers ControlNet guide makes them: OpenCV canny, 100/200.
    media = {"video": video, "conditioning_frames": _canny(video)}
    digest = __import__("hashlib").sha256()
    for image in media["conditioning_frames"]:
        digest.update(image.tobytes())
    assert digest.hexdigest() == data["inputs"]["control"]["prepared"]["sha256"]
    assert_reproduces(ours, data, media)
    # Every pixel an edge instead of the clip's edges.
    white = [image.point(lambda _: 255) for image in media["conditioning_frames"]]
    other = plain_diffusers(data, {**media, "conditioning_frames": white}).frames
    assert np.abs(ours.astype(int) - other.astype(int)).max() > 1


@pytest.mark.pipeline
def test_a_given_control_clip_and_freenoise(tmp_path: Path) -> None:
    _clip("clip", 8)
    _clip("edges", 8, seed=3)
    args = ("--control", "edges", "--preprocess", "none", "--context-length", "4", "--out", "a/")
    result = cli(*V2V, *args)
    assert result.exit_code == 0, result.stderr
    record = sidecar(Path(result.stdout.strip()).with_suffix(".json"))
    assert record["inputs"]["control"]["path"] == "edges"
    assert record["pipeline"]["setup"][0]["method"] == "enable_free_noise"
