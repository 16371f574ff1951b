"""ChronoEdit (ChronoEditPipeline) on the tiny model: an image edited by instruction, the clip and
its last frame as NAME.last.png (named in the sidecar), equal to plain diffusers from the sidecar
(another seed and another instruction differ); temporal reasoning's longer clip; the frame rules
of both ways, a wrong mode and options it cannot take refused before loading (a reasoning
schedule the loaded scheduler cannot trim, before denoising); the full presets plan offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, decode, files_under, full_presets, one_line_error, sidecar

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

DEFAULT_TIER = "pipeline"

TINY = ("--preset", "tiny-chronoedit")
FULL = full_presets("chronoedit")


def _photo() -> str:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("photo.png")
    return "photo.png"


def _png(*args: str) -> tuple[np.ndarray, dict, Path]:
    from PIL import Image

    result = cli(*args, "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    return frames, sidecar(folder.with_name(folder.name + ".json")), folder


def test_edit_writes_the_clip_and_its_last_frame_equal_to_plain_diffusers(tmp_path: Path) -> None:
    from PIL import Image

    photo = _photo()
    result = cli("i2v", photo, "make it night", *TINY, "--seed", "3", "--out", "edit.mp4")
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "edit.json")
    assert data["pipeline"]["class"] == "ChronoEditPipeline" and data["output"]["frames"] == 5
    assert data["output"]["last_frame"] == "edit.last.png" and (tmp_path / "edit.last.png").is_file()
    assert decode(tmp_path / "edit.mp4")[0].shape == (5, 32, 32, 3)
    # Lossless frames: the last one is the PNG beside them, and all equal plain diffusers'.
    frames, data, folder = _png("i2v", photo, "make it night", *TINY, "--seed", "3")
    last = folder.with_name(folder.name + ".last.png")
    assert data["output"]["last_frame"] == last.name
    assert np.array_equal(np.asarray(Image.open(last).convert("RGB")), frames[-1])
    assert_reproduces(frames, data, {"image": Image.open(photo).convert("RGB")})


def test_temporal_reasoning_makes_the_longer_clip_equal_to_plain_diffusers(tmp_path: Path) -> None:
    from PIL import Image

    photo = _photo()
    frames, data, _ = _png("i2v", photo, "make it night", *TINY, "--temporal-reasoning", "--frames", "9", "--seed", "4")
    call = data["pipeline"]["call_kwargs"]
    assert call["enable_temporal_reasoning"] is True and call["num_temporal_reasoning_steps"] == 2
    assert frames.shape[0] == 9
    assert_reproduces(frames, data, {"image": Image.open(photo).convert("RGB")})


def test_a_reasoning_schedule_the_scheduler_cannot_trim_is_refused_before_denoising(tmp_path: Path) -> None:
    args = ("i2v", _photo(), "make it night", *TINY, "--temporal-reasoning", "--frames", "9", "--reasoning-steps", "1")
    one_line_error(cli(*args), 3, "--reasoning-steps 1", "FlowMatchEulerDiscreteScheduler", "--reasoning-steps 2")
    assert files_under(tmp_path) == [tmp_path / "photo.png"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "9"], ["--frames 9", "5 frames", "--temporal-reasoning"]),
        (["--reasoning-steps", "3"], ["--reasoning-steps", "--temporal-reasoning"]),
        (["--temporal-reasoning", "--frames", "10"], ["--frames 10", "4k+1", "9 or 13"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--cache", "taylorseer"], ["--cache", "not checked on ChronoEdit"]),
        (["--scheduler", "euler"], ["--scheduler"]),
        (["--vae-slicing"], ["--vae-slicing"]),
        (["--live-preview"], ["--live-preview"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("i2v", _photo(), "make it night", *TINY, *args), 3, *needles)
    assert files_under(tmp_path) == [tmp_path / "photo.png"]


@pytest.mark.unit
def test_wrong_mode_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("t2v", "make it night", *TINY), 3, "is for `vidgen i2v`, not `vidgen t2v`")
    assert files_under(tmp_path) == []


@pytest.mark.unit
@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    result = cli("i2v", _photo(), "make it night", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "ChronoEditPipeline" in result.stdout and "--vram 24" in result.stdout


@pytest.mark.unit
def test_full_presets_are_the_docs(nothing_loads: None) -> None:
    assert FULL == ["chronoedit-14b", "chronoedit-14b-reasoning"]
    plain = merged_preset(str(available_presets()["chronoedit-14b"]))
    assert plain["model"]["id"] == "nvidia/ChronoEdit-14B-Diffusers" and plain["output"]["save_last_frame"] is True
    s = plain["sampling"]
    assert (s["num_frames"], s["num_inference_steps"], s["guidance_scale"]) == (5, 50, 5.0)
    reasoning = merged_preset(str(available_presets()["chronoedit-14b-reasoning"]))["sampling"]
    assert (reasoning["num_frames"], reasoning["enable_temporal_reasoning"]) == (29, True)
    assert reasoning["num_temporal_reasoning_steps"] == 50


@pytest.mark.parametrize("option", [["--attention-backend", "native"], ["--vae-tiling"], ["--fp8-storage"]])
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli("i2v", _photo(), "make it night", *TINY, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (5, 32, 32)
    assert sidecar(video.with_suffix(".json"))["optimizations"]["applied"]
