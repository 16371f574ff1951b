"""PIA (AnimateDiff image to video): its size rule, the modes and options it does not take, refused
before loading with one line (exit 3); the full-size preset plans offline; --motion-scale reaches
the pipeline and changes the frames; the options declared run on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, files_under, one_line_error, sidecar

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

PIA = ("i2v", "first.png", "a red fox in snow", "--preset", "tiny-pia")


@pytest.fixture(autouse=True)
def first(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ([*PIA, "--height", "36"], ["--height 36", "multiples of 8", "32 or 40"]),
        ([*PIA, "--frames", "1"], ["--frames 1", "2 frames or more"]),
        ([*PIA, "--motion-scale", "9"], ["motion_scale", "less than or equal to 8"]),
        ([*PIA, "--decode-chunk", "2"], ["--decode-chunk", "--vae-slicing"]),
        ([*PIA, "--cache", "pab"], ["--cache is not used by PIA"]),
        ([*PIA, "--quantize", "int8"], ["--quantize", "--fp8-storage"]),
        ([*PIA, "--set", "sampling.context_length=8"], ["--context-length", "not used by PIA"]),
        ([*PIA, "--set", "sampling.free_init_iters=2"], ["FreeInit", "timestep_spacing=trailing"]),
        (["animate", "a fox", "--preset", "tiny-pia"], ["not `vidgen animate`"]),
        (["t2v", "a fox", "--model", "tiny:sd15", "--set", "model.family=pia"], ["PIA", "i2v"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*args), 3, *needles)
    assert files_under(tmp_path) == [tmp_path / "first.png"]


def test_full_preset_plans_offline_and_is_the_docs_example(nothing_loads: None) -> None:
    result = cli("i2v", "first.png", "a cat", "--preset", "pia", "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "PIAPipeline" in result.stdout and "motion_adapter 0.8" in result.stdout, result.stdout
    data = merged_preset(str(available_presets()["pia"]))
    assert data["model"]["motion_adapter"] == "openmmlab/PIA-condition-adapter"
    assert (data["model"]["id"], data["model"]["scheduler"]) == ("SG161222/Realistic_Vision_V6.0_B1_noVAE", "euler")
    sampling = data["sampling"]
    assert (sampling["height"], sampling["width"], sampling["num_frames"], sampling["guidance_scale"]) == (
        512,
        512,
        16,
        7.5,
    )


@pytest.mark.pipeline
def test_motion_scale_reaches_the_pipeline_and_changes_the_frames(tmp_path: Path) -> None:
    # Curves 0 and 2 differ from the second frame on (1.0, 0.9 ... against 1.0, 0.8 ...).
    runs = [cli(*PIA, "--seed", "2", "--motion-scale", scale, "--out", f"{scale}.mp4") for scale in ("0", "2")]
    for result in runs:
        assert result.exit_code == 0, result.stderr
    assert sidecar(Path("2.json"))["pipeline"]["call_kwargs"]["motion_scale"] == 2
    small, large = (decode(Path(f"{scale}.mp4"))[0].astype(int) for scale in ("0", "2"))
    assert small.shape[:3] == (8, 32, 32)
    assert np.abs(small - large).max() > 2


@pytest.mark.pipeline
@pytest.mark.parametrize(
    ("option", "shows"),
    [
        (["--vae-slicing"], "applied"),
        (["--fp8-storage"], "applied"),
        (["--scheduler", "ddim", "--set", "sampling.free_init_iters=2"], "enable_free_init"),
        (["--set", "sampling.strength=0.6"], "strength"),
    ],
)
def test_declared_options_run_on_the_tiny_model(option: list[str], shows: str, tmp_path: Path) -> None:
    result = cli(*PIA, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (8, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["pipeline"]["class"] == "PIAPipeline"
    if shows == "applied":
        assert record["optimizations"]["applied"], record["optimizations"]
    elif shows == "strength":
        assert record["pipeline"]["call_kwargs"]["strength"] == 0.6
    else:
        assert record["pipeline"]["setup"] == [{"method": "enable_free_init", "kwargs": {"num_iters": 2}}]
