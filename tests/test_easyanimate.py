"""EasyAnimate V5.1: its frame and size rules, the modes it does not do and the options it cannot
take, refused before loading with one line (exit 3); the full-size preset plans offline; a
negative prompt is always passed (diffusers fails without one when guiding); the options declared
for it run on the tiny model; saved latents decode to the same frames; previews decode. Image-to-
video and first/last frame (the inpaint pipeline's video and mask built from the images) equal
plain diffusers from the sidecar."""

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
    sidecar_media,
)

from vidgen import families
from vidgen.config import available_presets, resolve
from vidgen.config.layers import Layer, merged_preset

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-easyanimate")
FULL = full_presets("easyanimate")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "10"], ["--frames 10", "4k+1", "9 or 13"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (["--cache", "pab"], ["--cache", "CacheMixin"]),
        (["--attention-backend", "native"], ["--attention-backend", "SDPA itself"]),
        (["--compile"], ["--compile", "repeated blocks"]),
        (["--lora", "x.safetensors"], ["--lora", "no adapters"]),
        (["--vae-slicing"], ["--vae-slicing", "--vae-tiling"]),
        (["--scheduler", "euler"], ["--scheduler"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*T2V, *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_wrong_modes_refused(nothing_loads: None, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    one_line_error(cli("i2v", "first.png", "a fox", "--preset", "tiny-easyanimate"), 3, "not `vidgen i2v`")
    one_line_error(cli("v2v", "clip.mp4", "a fox", "--preset", "tiny-easyanimate"), 3, "not `vidgen v2v`")
    one_line_error(
        cli("i2v", "first.png", "a fox", "--preset", "tiny-easyanimate-i2v", "--frames", "1"),
        3,
        "--frames 1",
        "at least 5",
    )
    one_line_error(
        cli("i2v", "first.png", "a fox", "--preset", "tiny-easyanimate-i2v", "--frames", "10"), 3, "4k+1", "9 or 13"
    )
    assert files_under(tmp_path) == [tmp_path / "first.png"]


def test_a_negative_prompt_is_always_passed() -> None:
    family = families.get("easyanimate")
    cleared = Layer("cli", {"inputs": {"prompt": "a fox", "negative_prompt": None}})
    config = resolve("t2v", ["tiny-easyanimate"], [cleared], families.defaults_layer).config
    assert family.call_kwargs(config, seed=0)["negative_prompt"] == ""
    asked = Layer("cli", {"inputs": {"prompt": "a fox"}})
    config = resolve("t2v", ["easyanimate-v5.1-12b"], [asked], families.defaults_layer).config
    assert family.call_kwargs(config, seed=0)["negative_prompt"] == "bad detailed"


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    from PIL import Image

    Image.new("RGB", (576, 448), (200, 80, 40)).save("first.png")
    args = ["i2v", "first.png"] if "i2v" in preset else ["t2v"]
    result = cli(*args, "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "EasyAnimate" in result.stdout and "--vram 24" in result.stdout


def test_full_preset_is_the_docs_example(nothing_loads: None) -> None:
    assert FULL == ["easyanimate-v5.1-12b", "easyanimate-v5.1-12b-i2v"]
    data = merged_preset(str(available_presets()["easyanimate-v5.1-12b-i2v"]))
    sampling = data["sampling"]
    assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (448, 576, 49)
    assert (sampling["num_inference_steps"], sampling["guidance_scale"], data["output"]["fps"]) == (50, 5.0, 8)
    data = merged_preset(str(available_presets()["easyanimate-v5.1-12b"]))
    sampling = data["sampling"]
    assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (512, 512, 49)
    assert (sampling["num_inference_steps"], sampling["guidance_scale"], data["output"]["fps"]) == (50, 6.0, 8)


@pytest.mark.pipeline
@pytest.mark.parametrize("option", [["--fp8-storage"], ["--vae-tiling"]])
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*T2V, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 32, 32)
    assert sidecar(video.with_suffix(".json"))["optimizations"]["applied"]


@pytest.mark.pipeline
def test_saved_latents_decode_to_the_same_frames_and_previews_run(tmp_path: Path) -> None:
    made = cli(*T2V, "--seed", "3", "--format", "png", "--out", "run/", "--save-latents", "--live-preview-every", "1")
    assert "previews stopped" not in made.stderr
    run = png_frames(made)
    shown = printed_sidecar(made)["output"]["live_preview"]
    assert shown["decoder"] == "vae" and "stopped" not in shown
    saved = Path(printed_sidecar(made)["output"]["latents"]["path"])
    result = cli("decode", str(saved), "--format", "png", "--out", "again/")
    assert printed_sidecar(result)["pipeline"]["decode"]["method"] == "vae.decode"
    assert np.array_equal(run, png_frames(result))
    # Not vacuous: another seed decodes to other frames.
    other = png_frames(cli(*T2V, "--seed", "4", "--format", "png", "--out", "other/"))
    assert np.abs(other.astype(int) - run.astype(int)).max() > 1


@pytest.mark.pipeline
@pytest.mark.parametrize("last", [False, True])
def test_image_and_first_last_frame_equal_plain_diffusers(last: bool, tmp_path: Path) -> None:
    from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    Image.new("RGB", (32, 32), (30, 90, 220)).save("last.png")
    args = ["i2v", "first.png", "a red fox in snow", "--preset", "tiny-easyanimate-i2v", "--seed", "5"]
    made = cli(*args, *(["--last-image", "last.png"] if last else []), "--format", "png", "--out", "frames/")
    assert made.exit_code == 0, made.stderr
    ours = png_frames(made)
    data = printed_sidecar(made)
    assert data["pipeline"]["class"] == "EasyAnimateInpaintPipeline"
    assert "get_image_to_video_latent" in data["pipeline"]["run"]
    media = sidecar_media(data)
    call = data["pipeline"]["call_kwargs"]
    video, mask = get_image_to_video_latent(
        [media["image"]], media.get("last_image"), call["num_frames"], (call["height"], call["width"])
    )
    # The mask keeps the image's frame (and the last image's) and makes the rest.
    assert float(mask[0, 0, 0].max()) == 0 and float(mask[0, 0, 1].min()) == 255
    assert (float(mask[0, 0, -1].max()) == 0) is last
    assert_reproduces(ours, data, {"video": video, "mask_video": mask})


@pytest.mark.pipeline
def test_a_vae_config_without_cache_mag_vae_is_refused_before_denoising(tmp_path: Path) -> None:
    import json
    import shutil

    from PIL import Image

    from vidgen.models import tiny

    model = tmp_path / "inp"
    shutil.copytree(tiny.ensure("easyanimate-inpaint"), model)
    config = model / "vae" / "config.json"
    data = json.loads(config.read_text())
    assert data.pop("cache_mag_vae") is True  # the tiny model keeps it, as V5.1's VAE configs do
    config.write_text(json.dumps(data))
    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    args = ("i2v", "first.png", "a fox", "--preset", "tiny-easyanimate-i2v", "--model", str(model), "--out", "a/")
    one_line_error(cli(*args), 3, "cache_mag_vae", "EasyAnimateInpaintPipeline")
    assert not (tmp_path / "a").exists()
