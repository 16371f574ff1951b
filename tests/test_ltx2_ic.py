"""LTX-2 in-context control (LTX2InContextPipeline with an IC-LoRA) on `vidgen control`, on the
tiny model and a tiny random IC-LoRA: video with sound equal to plain diffusers from the sidecar
(another seed, another prompt and another control video differ, and so does the run without the
LoRA); edge maps made from a clip; control clips that are too short, empty or off the size grid,
and the options it cannot take, refused before loading; every full preset plans offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_reproduces,
    cli,
    files_under,
    full_presets,
    one_line_error,
    plain_diffusers,
    png_frames,
    printed_sidecar,
    random_frames,
    sidecar_media,
)
from test_ltx2 import raw_sha256

DEFAULT_TIER = "pipeline"

TINY = ("--preset", "tiny-ltx2-ic")
FULL = full_presets("ltx2-ic")


def _references(frames: list, strength: float = 1.0) -> dict:
    from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2ReferenceCondition

    return {"reference_conditions": [LTX2ReferenceCondition(frames=frames, strength=strength)]}


def test_control_equals_plain_diffusers_and_follows_the_control_video(tmp_path: Path) -> None:
    result = cli("control", "a dancer", *TINY, "--control", random_frames("maps", 11), "--seed", "3", 
                 "--format", "png", "--out", "out/")  # fmt: skip
    ours = png_frames(result)
    data = printed_sidecar(result)
    pipeline = data["pipeline"]
    assert pipeline["class"] == "LTX2InContextPipeline"
    assert pipeline["media_kwargs"] == {"reference_conditions": "inputs.control"}
    assert "LTX2ReferenceCondition(frames=the control frames" in pipeline["run"]
    # The first 8k+1 of the clip's 11 frames make the video's length.
    assert ours.shape == (9, 32, 32, 3) and pipeline["call_kwargs"]["num_frames"] == 9
    assert [step["method"] for step in pipeline["setup"]] == ["load_lora_weights", "set_adapters"]
    assert pipeline["setup"][0]["kwargs"]["adapter_name"] == "ic_lora"
    media = _references(sidecar_media(data)["reference_conditions"])  # read again, hashes checked
    # Equal to plain diffusers with the IC-LoRA loaded as diffusers' example loads it; another seed
    # and another prompt differ.
    made = assert_reproduces(ours, data, media)
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"]
    # Another control video changes the frames.
    from PIL import Image

    other = [Image.open(p).convert("RGB") for p in sorted(Path(random_frames("other", 9, seed=7)).iterdir())]
    assert np.abs(plain_diffusers(data, _references(other)).frames.astype(int) - ours.astype(int)).max() > 1
    # So does the same run without the IC-LoRA (it is switched on with weight 0).
    unweighted = cli("control", "a dancer", *TINY, "--control", "maps", "--seed", "3", "--ic-lora-scale", "0",
                     "--format", "png", "--out", "off/")  # fmt: skip
    assert np.abs(png_frames(unweighted).astype(int) - ours.astype(int)).max() > 1


def test_reference_strength_and_attention_reach_the_pipeline(tmp_path: Path) -> None:
    args = ("--reference-strength", "0.5", "--conditioning-attention", "0.5", "--seed", "4")
    result = cli("control", "a dancer", *TINY, "--control", random_frames("maps", 9), *args, "--format", "png",
                 "--out", "out/")  # fmt: skip
    ours = png_frames(result)
    data = printed_sidecar(result)
    assert data["pipeline"]["call_kwargs"]["conditioning_attention_strength"] == 0.5
    assert data["config"]["sampling"]["reference_strength"] == 0.5
    frames = sidecar_media(data)["reference_conditions"]
    assert_reproduces(ours, data, _references(frames, 0.5))


def test_preprocess_canny_makes_edge_maps_from_a_clip(tmp_path: Path) -> None:
    clip = random_frames("clip", 9)
    result = cli("control", "a dancer", *TINY, "--control", clip, "--preprocess", "canny", "--seed", "1",
                 "--out", "edges.mp4")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = printed_sidecar(result)
    assert data["config"]["inputs"]["preprocess"] == "canny"
    assert data["inputs"]["control"]["frames_used"] == 9


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "17"], ["--frames", "the --control video sets the length"]),
        (["--height", "40"], ["--height 40", "multiples of 32", "32 or 64"]),
        (["--reference-downscale", "2"], ["--reference-downscale 2", "multiples of 64"]),
        (["--ic-lora", ""], ["needs an IC-LoRA", "--ic-lora"]),
        (["--reference-strength", "1.5"], ["--reference-strength"]),
        (["--conditioning-attention", "-1"], ["--conditioning-attention"]),
        (["--set", "sampling.latent_upsampler=tiny:ltx2-upsampler"], ["latent-upsampler", "one stage"]),
        (["--live-preview"], ["--live-preview", "control video's tokens"]),
        (["--format", "gif"], ["gif has no audio track", "--no-audio"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("control", "a dancer", *TINY, "--control", random_frames("maps", 9), *args), 3, *needles)
    assert [p for p in files_under(tmp_path) if p.parent.name != "maps"] == []


@pytest.mark.unit
@pytest.mark.parametrize(
    ("count", "needles"),
    [(0, ["--control empty", "no frames"]), (5, ["--control empty gives 5 frame(s)", "at least 9"])],
)
def test_short_or_empty_control_refused(count: int, needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    random_frames("empty", count)
    one_line_error(cli("control", "a dancer", *TINY, "--control", "empty"), 4, *needles)
    assert [p for p in files_under(tmp_path) if p.parent.name != "empty"] == []


@pytest.mark.unit
def test_other_modes_refused(nothing_loads: None) -> None:
    one_line_error(cli("t2v", "a fox", *TINY), 3, "tiny-ltx2-ic is for `vidgen control`")


@pytest.mark.unit
@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None, tmp_path: Path) -> None:
    # Depth and pose maps are given as they are: the detectors need controlnet_aux and its weights.
    maps = random_frames("maps", 9)
    result = cli("control", "a dancer", "--preset", preset, "--control", maps, "--preprocess", "none",
                 "--dry-run", "--memory", "auto", "--vram", "24")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "LTX2InContextPipeline" in result.stdout and "--vram 24" in result.stdout


def test_saved_latents_decode_to_the_same_frames_and_sound(tmp_path: Path) -> None:
    args = ("control", "a dancer", *TINY, "--control", random_frames("maps", 9), "--seed", "2", "--format", "png")
    made = cli(*args, "--save-latents", "--out", "run/")
    ours = png_frames(made)
    latents = Path(made.stdout.strip()).with_suffix(".latents.safetensors")
    again = cli("decode", str(latents), "--format", "png", "--out", "again/")
    assert np.abs(png_frames(again).astype(int) - ours.astype(int)).max() == 0
    sound = printed_sidecar(again)["output"]["audio"]["raw_sha256"]
    assert sound == printed_sidecar(made)["output"]["audio"]["raw_sha256"]


def test_ic_lora_from_a_local_file(tmp_path: Path) -> None:
    """--ic-lora FILE: a .safetensors file loads as the tiny one does (the same weights, the same frames)."""
    import shutil

    made = cli("control", "a dancer", *TINY, "--control", random_frames("maps", 9), "--seed", "5", "--format", "png",
               "--out", "tiny/")  # fmt: skip
    folder = Path(printed_sidecar(made)["pipeline"]["setup"][0]["kwargs"]["pretrained_model_name_or_path_or_dict"])
    shutil.copy(folder / "tiny_ic_lora.safetensors", "mine.safetensors")
    result = cli("control", "a dancer", *TINY, "--control", "maps", "--seed", "5", "--ic-lora", "mine.safetensors",
                 "--format", "png", "--out", "mine/")  # fmt: skip
    setup = printed_sidecar(result)["pipeline"]["setup"][0]["kwargs"]
    assert (
        setup["weight_name"] == "mine.safetensors" and Path(setup["pretrained_model_name_or_path_or_dict"]) == tmp_path
    )
    assert np.array_equal(png_frames(result), png_frames(made))


@pytest.mark.unit
@pytest.mark.parametrize("source", ["style.bin", "owner/repo:weights.ckpt"])
def test_pickle_ic_lora_refused_before_loading(source: str, nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("control", "a dancer", *TINY, "--control", random_frames("maps", 9), "--ic-lora", source), 5,
                   f"--ic-lora {source}", "--allow-pickle")  # fmt: skip
