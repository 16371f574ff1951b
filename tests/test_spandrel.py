"""Upscaling with the architectures spandrel loads (SPAN here; SwinIR, HAT, DAT, ... the same way).

spandrel is real and runs for real; what cannot run here is torchvision, which spandrel imports
at import time for two models vidgen never runs (tests/stand_ins/README.md). So every run that
uses spandrel is a `vidgen` (or plain-spandrel) subprocess with the stand-in on PYTHONPATH, and
this test process never imports spandrel itself. "The library called directly" is spandrel's own
file loading (ModelLoader.load_from_file) and its model called on each frame.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, files_under, one_line_error, png_frames, printed_sidecar, sidecar

DEFAULT_TIER = "pipeline"

STAND_INS = Path(__file__).parent / "stand_ins"
ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("spandrel") is None,
    reason="spandrel is not installed (pip install --no-deps spandrel==0.4.2 einops: .ci/run does)",
)


class Ran:
    """A subprocess's result with CliRunner's names, for conftest's checks."""

    def __init__(self, done: subprocess.CompletedProcess) -> None:
        self.exit_code, self.stdout, self.stderr = done.returncode, done.stdout, done.stderr


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(STAND_INS), str(ROOT)])}


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr
    return done.stdout


def vidgen(*args: str) -> Ran:
    return Ran(subprocess.run([sys.executable, "-m", "vidgen", *args], capture_output=True, text=True, env=_env()))


def _span(path: Path, seed: int = 0, upscale: int = 2, pickle: bool = False) -> Path:
    """Random weights of spandrel's SPAN network (narrow), saved as a ComfyUI user's file is."""
    _python(
        f"""
import torch
from spandrel.architectures.SPAN import SPAN
torch.manual_seed({seed})
model = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale={upscale})
state = {{k: v.contiguous() for k, v in model.state_dict().items()}}
if {pickle}:
    torch.save({{"params_ema": state}}, {str(path)!r})
else:
    from safetensors.torch import save_file
    save_file(state, {str(path)!r})
"""
    )
    return path


def _direct(weights: Path, frames: np.ndarray, tmp_path: Path) -> np.ndarray:
    """spandrel called directly: its own loader, its model on each frame (0-1 floats, RGB)."""
    np.save(tmp_path / "in.npy", frames)
    _python(
        f"""
import numpy as np, torch, spandrel
model = spandrel.ModelLoader().load_from_file({str(weights)!r}).eval()
frames = np.load({str(tmp_path / "in.npy")!r})
out = []
with torch.inference_mode():
    for frame in frames:
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0
        out.append((model(x)[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
np.save({str(tmp_path / "out.npy")!r}, np.stack(out))
"""
    )
    return np.load(tmp_path / "out.npy")


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def _clip(tmp_path: Path) -> np.ndarray:
    made = cli("t2v", "a fox in the snow", "--preset", "tiny-cogvideox", "--seed", "3", "--out", "clip.mp4")
    assert made.exit_code == 0, made.stderr
    return decode(tmp_path / "clip.mp4")[0]


def test_vidgen_upscale_with_a_spandrel_model_equals_spandrel_called_directly(tmp_path: Path) -> None:
    weights = _span(tmp_path / "span-x2.safetensors")
    source = _clip(tmp_path)
    done = vidgen("upscale", "clip.mp4", "--model", str(weights), "--format", "png", "--out", "up/")
    assert done.exit_code == 0, done.stderr
    ours = png_frames(done)
    assert ours.shape == (9, 32, 32, 3)
    _close(ours, _direct(weights, source, tmp_path))
    step = printed_sidecar(done)["finish"][0]
    assert step["model"]["architecture"] == "SPAN (spandrel)" and step["model"]["library"].startswith("spandrel ")
    assert step["factor"] == "x2" and step["settings"] == {"tile": 512, "overlap": 32}
    # In tiles of 8 pixels (32 of overlap: wider than SPAN's reach) the frames join without a seam.
    tiled = vidgen("upscale", "clip.mp4", "--model", str(weights), "--tile", "8", "--format", "png", "--out", "t/")
    _close(png_frames(tiled), ours)
    # Other weights make other frames: the comparison can fail.
    other = _span(tmp_path / "span-other.safetensors", seed=1)
    done = vidgen("upscale", "clip.mp4", "--model", str(other), "--format", "png", "--out", "other/")
    assert np.abs(png_frames(done).astype(int) - ours.astype(int)).max() > 1


def test_a_generation_upscaled_by_spandrel_records_the_chain_and_replays(tmp_path: Path) -> None:
    weights = _span(tmp_path / "span-x2.safetensors")
    made = vidgen("t2v", "a fox in the snow", "--preset", "tiny-cogvideox", "--seed", "3", "--out", "fox.mp4",
                  "--upscale", str(weights))  # fmt: skip
    assert made.exit_code == 0, made.stderr
    data = sidecar(tmp_path / "fox.json")
    assert data["finish"][0]["model"]["architecture"] == "SPAN (spandrel)"
    recorded = data["config"]["output"]["finish"][0]
    assert (recorded["step"], recorded["model"]) == ("upscale", str(weights))
    again = vidgen("replay", "fox.json")
    assert again.exit_code == 0, again.stderr
    assert decode(tmp_path / "fox-replay.mp4")[0].shape == (9, 32, 32, 3)
    planned = vidgen("t2v", "a fox", "--preset", "tiny-cogvideox", "--upscale", str(weights), "--dry-run", "--json")
    row = json.loads(planned.stdout)["finish"][0]
    assert row["size"] == ["16x16", "32x32"] and row["working_bytes"] > 0


def test_spandrel_files_that_are_no_upscaler_or_a_pickle_are_refused(tmp_path: Path) -> None:
    _clip(tmp_path)
    before = files_under(tmp_path)
    restore = _span(tmp_path / "span-x1.safetensors", upscale=1)
    one_line_error(vidgen("upscale", "clip.mp4", "--model", str(restore)), 5, "not a super-resolution one")
    pickled = _span(tmp_path / "span.pth", pickle=True)
    one_line_error(vidgen("upscale", "clip.mp4", "--model", str(pickled)), 5, "--allow-pickle")
    from vidgen.models import finishers

    rife = finishers.save_tiny("interpolate", tmp_path / "rife.safetensors")
    one_line_error(vidgen("upscale", "clip.mp4", "--model", str(rife)), 5, "not weights of a network vidgen or")
    assert files_under(tmp_path) == sorted([*before, restore, pickled, rife])
    # A pickle with --allow-pickle is read with weights_only=True, its params_ema unnested.
    done = vidgen("upscale", "clip.mp4", "--model", str(pickled), "--allow-pickle", "--out", "p.mp4")
    assert done.exit_code == 0, done.stderr
    assert sidecar(tmp_path / "p.json")["finish"][0]["model"]["format"] == "pickle"


def test_without_a_usable_spandrel_a_non_esrgan_file_says_what_to_install(tmp_path: Path) -> None:
    # This process has no torchvision stand-in: spandrel (installed) cannot import, as on a CPU
    # machine with torch 2.13.0; a machine without spandrel gets the same line with the install.
    weights = _span(tmp_path / "span-x2.safetensors")
    error = one_line_error(cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--upscale", str(weights)), 5,
                           "load through spandrel")  # fmt: skip
    assert "torchvision" in error or "pip install 'vidgen[spandrel]'" in error
    assert files_under(tmp_path) == [weights]
