"""SkyReels-V1 (HunyuanVideo fine-tune, image to video) and the tiny HunyuanVideo-I2V: their frame
and size rules, the mode SkyReels-V1 does not do and the cache hooks their pipelines cannot run,
refused before loading with one line (exit 3); the full-size presets plan offline; true CFG runs
two passes a step; the options declared run on the tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli, decode, files_under, full_presets, one_line_error, sidecar

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

SKY = ("i2v", "first.png", "a red fox in snow", "--preset", "tiny-skyreels-v1")
HV_I2V = ("i2v", "first.png", "a red fox in snow", "--preset", "tiny-hunyuanvideo-i2v")
FULL = full_presets("skyreels-v1")


@pytest.fixture(autouse=True)
def first(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 80, 40)).save("first.png")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ([*SKY, "--frames", "10"], ["--frames 10", "4k+1", "9 or 13"]),
        ([*SKY, "--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        ([*SKY, "--width", "20"], ["--width 20", "multiples of 16", "16 or 32"]),
        ([*SKY, "--guidance", "25"], ["--guidance 25", "embedded"]),
        ([*SKY, "--cache", "first-block"], ["--cache first-block", "cache context"]),
        ([*SKY, "--cache", "taylorseer"], ["--cache taylorseer", "cache context"]),
        ([*SKY, "--cache", "faster"], ["--cache faster"]),
        ([*SKY, "--forward-chunking"], ["--forward-chunking"]),
        ([*SKY, "--last-image", "first.png"], ["--last-image"]),
        # The preset's negative prompt is read only with real CFG.
        ([*SKY, "--true-cfg", "1"], ["--negative", "--true-cfg"]),
        (["t2v", "a fox", "--preset", "tiny-skyreels-v1"], ["not `vidgen t2v`"]),
        ([*HV_I2V, "--cache", "first-block"], ["--cache first-block", "HunyuanVideo i2v", "cache context"]),
        ([*HV_I2V, "--cache", "taylorseer"], ["--cache taylorseer", "cache context"]),
        (["i2v", "first.png", "x", "--preset", "tiny-framepack", "--cache", "first-block"], ["cache context"]),
        ([*HV_I2V, "--frames", "11"], ["--frames 11", "9 or 13"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*args), 3, *needles)
    assert files_under(tmp_path) == [tmp_path / "first.png"]


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    result = cli("i2v", "first.png", "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "HunyuanSkyreelsImageToVideoPipeline" in result.stdout and "--vram 24" in result.stdout
    # The transformer checkpoint alone is published; the rest is HunyuanVideo's, priced from sizes.
    assert "transformer 23.9" in result.stdout and "text_encoder 14.0" in result.stdout, result.stdout


def test_full_preset_is_the_model_card(nothing_loads: None) -> None:
    assert FULL == ["skyreels-v1-i2v"]
    data = merged_preset(str(available_presets()["skyreels-v1-i2v"]))
    sampling = data["sampling"]
    assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (544, 960, 97)
    assert (sampling["guidance_scale"], sampling["true_cfg_scale"], data["output"]["fps"]) == (1.0, 6.0, 24)
    assert data["model"]["id"] == "Skywork/SkyReels-V1-Hunyuan-I2V" and data["inputs"]["negative_prompt"]


@pytest.mark.pipeline
@pytest.mark.parametrize(
    "option", [["--cache", "pab"], ["--attention-backend", "native"], ["--fp8-storage"], ["--vae-tiling"]]
)
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*SKY, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 16, 16)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]
    call = record["pipeline"]["call_kwargs"]
    assert record["pipeline"]["class"] == "HunyuanSkyreelsImageToVideoPipeline"
    assert call["true_cfg_scale"] == 4.0 and call["negative_prompt"] == "blurry"


@pytest.mark.pipeline
def test_true_cfg_counts_both_passes(tmp_path: Path) -> None:
    result = cli(*SKY, "--progress", "json", "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr
    steps = sum(1 for line in result.stderr.splitlines() if json.loads(line)["event"] == "step")
    assert steps == 2 * 2  # two steps, each a prompt pass and a negative pass


@pytest.mark.pipeline
def test_hunyuanvideo_i2v_keeps_every_frame_and_the_image_conditions_it(tmp_path: Path) -> None:
    from PIL import Image

    result = cli(*HV_I2V, "--seed", "1", "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr
    frames = decode(Path("a.mp4"))[0]
    # The 16-channel checkpoint replaces the first frame's tokens: no frame is dropped.
    assert frames.shape[:3] == (9, 16, 16)
    Image.new("RGB", (16, 16), (20, 200, 40)).save("other.png")
    other = cli("i2v", "other.png", *HV_I2V[2:], "--seed", "1", "--out", "b.mp4")
    assert other.exit_code == 0, other.stderr
    assert abs(decode(Path("b.mp4"))[0].astype(int) - frames.astype(int)).max() > 8
