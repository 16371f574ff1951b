"""LTX and LTX-2 final latents: --save-latents keeps them (LTX-2: the video's and the sound's),
a decode that runs out of memory keeps them, and `vidgen decode` makes the same video and sound.

LTX 0.9.1+ draws its decode noise from the generator after denoising; vidgen catches the latents
where they reach `vae.decode` (noise mixed in, with the decode timestep), so decoding them again
needs no generator. The tiny LTX VAE is timestep-aware and the tiny preset sets the 0.9.1+ decode
timestep and noise, so that path runs here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, files_under, one_line_error, png_frames, printed_sidecar, sidecar
from test_ltx2 import streams

# Most tests here run a tiny pipeline: their tier unless marked otherwise (see conftest.py).
DEFAULT_TIER = "pipeline"

DRUMMER = ("t2v", "a drummer on a rooftop", "--preset", "tiny-ltx2")
FOX = ("t2v", "a fox in the snow", "--preset", "tiny-ltx")


def test_ltx_decode_of_saved_latents_equals_the_run_with_decode_noise(tmp_path: Path) -> None:
    made = cli(*FOX, "--seed", "3", "--format", "png", "--out", "run/", "--save-latents")
    run = png_frames(made)
    data = printed_sidecar(made)
    assert data["pipeline"]["call_kwargs"]["decode_timestep"] == 0.05
    saved = Path(data["output"]["latents"]["path"])
    # The latents were caught at vae.decode: its timestep argument is saved beside them.
    from safetensors import safe_open

    with safe_open(str(saved), framework="pt") as handle:
        info = json.loads(handle.metadata()["vidgen"])
        timestep = handle.get_tensor("tensor.latents.0")
    assert info["decode_args"] == [{"tensor": "latents.0"}] and timestep.tolist() == pytest.approx([0.05])
    result = cli("decode", str(saved), "--format", "png", "--out", "again/")
    assert printed_sidecar(result)["pipeline"]["decode"]["method"] == "vae.decode"
    assert np.array_equal(run, png_frames(result))
    # Not vacuous: another seed decodes to other frames.
    other = png_frames(cli(*FOX, "--seed", "4", "--format", "png", "--out", "other/"))
    assert np.abs(other.astype(int) - run.astype(int)).max() > 1


def test_ltx2_save_latents_keeps_both_and_decode_reproduces_frames_and_sound(tmp_path: Path) -> None:
    made = cli(*DRUMMER, "--seed", "3", "--out", "drum.mp4", "--save-latents")
    assert made.exit_code == 0, made.stderr
    data = sidecar(tmp_path / "drum.json")
    record = data["output"]["latents"]
    assert record["tensors"] == {"audio_latents": [1, 2, 9, 2]}
    result = cli("decode", "drum.latents.safetensors", "--out", "again.mp4")
    assert result.exit_code == 0, result.stderr
    again = sidecar(tmp_path / "again.json")
    # The raw sound before AAC is the same, and the file carries it.
    assert again["output"]["audio"] == data["output"]["audio"]
    assert streams(tmp_path / "again.mp4")["audio"]["codec"] == "aac"
    assert np.array_equal(decode(tmp_path / "drum.mp4")[0], decode(tmp_path / "again.mp4")[0])
    # Another seed: other sound, other frames.
    assert cli(*DRUMMER, "--seed", "4", "--out", "other.mp4").exit_code == 0
    other = sidecar(tmp_path / "other.json")
    assert other["output"]["audio"]["raw_sha256"] != data["output"]["audio"]["raw_sha256"]
    assert not np.array_equal(decode(tmp_path / "other.mp4")[0], decode(tmp_path / "drum.mp4")[0])
    # --no-audio on decode drops the sound; gif cannot hold it.
    assert cli("decode", "drum.latents.safetensors", "--out", "silent.mp4", "--no-audio").exit_code == 0
    assert (
        set(streams(tmp_path / "silent.mp4")) == {"video"}
        and "audio" not in sidecar(tmp_path / "silent.json")["output"]
    )
    before = files_under(tmp_path)
    one_line_error(cli("decode", "drum.latents.safetensors", "--format", "gif"), 3, "--no-audio")
    assert files_under(tmp_path) == before


def test_ltx2_decode_out_of_memory_keeps_the_sound_for_vidgen_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidgen.run import runner

    assert cli(*DRUMMER, "--seed", "7", "--out", "whole.mp4").exit_code == 0
    monkeypatch.setenv("VIDGEN_TEST_OOM", "decode")
    monkeypatch.setattr(runner, "_injected", {})
    result = cli(*DRUMMER, "--seed", "7", "--out", "cut.mp4")
    one_line_error(result, 6, "during decode", "vidgen decode")
    assert not (tmp_path / "cut.mp4").exists()
    monkeypatch.delenv("VIDGEN_TEST_OOM")
    # The video decode failed, yet the sound's latents (unpacked before it) were kept too.
    assert cli("decode", "cut.latents.safetensors").exit_code == 0
    whole, cut = sidecar(tmp_path / "whole.json"), sidecar(tmp_path / "cut.json")
    assert cut["output"]["audio"]["raw_sha256"] == whole["output"]["audio"]["raw_sha256"]
    assert np.array_equal(decode(tmp_path / "whole.mp4")[0], decode(tmp_path / "cut.mp4")[0])


def test_ltx_upscale_decode_repeats_the_resize(tmp_path: Path) -> None:
    args = ("t2v", "a fox", "--preset", "tiny-ltx-upscale", "--format", "png")
    made = cli(*args, "--seed", "2", "--out", "run/", "--save-latents")
    run = png_frames(made)
    # Stage 2 made 128x128 (its latents are what was saved); the recipe resizes to 96x96.
    assert run.shape[1:3] == (96, 96)
    saved = printed_sidecar(made)["output"]["latents"]
    assert saved["shape"][-2:] == [32, 32]
    again = png_frames(cli("decode", saved["path"], "--format", "png", "--out", "again/"))
    assert np.array_equal(run, again)
    assert not np.array_equal(run, png_frames(cli(*args, "--seed", "3", "--out", "other/")))


def test_damaged_tensor_references_are_refused(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    assert cli(*DRUMMER, "--seed", "1", "--out", "drum.mp4", "--save-latents").exit_code == 0
    source = tmp_path / "drum.latents.safetensors"
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        info = json.loads(handle.metadata()["vidgen"])
    tensors = load_file(str(source))
    cases = {
        "missing.safetensors": ({**info, "tensors": ["audio_latents", "nope"]}, tensors),
        "args.safetensors": ({**info, "decode_args": [{"tensor": "elsewhere"}]}, tensors),
        "ints.safetensors": (info, {**tensors, "tensor.audio_latents": torch.zeros(2, dtype=torch.int64)}),
    }
    for name, (meta, data) in cases.items():
        save_file(data, str(tmp_path / name), metadata={"vidgen": json.dumps(meta)})
        before = files_under(tmp_path)
        one_line_error(cli("decode", name), 4, "damaged")
        assert files_under(tmp_path) == before


def test_ltx2_two_stage_saves_the_stage_2_latents_and_decodes_them(tmp_path: Path) -> None:
    args = ("t2v", "a drummer", "--preset", "tiny-ltx2-two-stage")
    assert cli(*args, "--seed", "2", "--out", "two.mp4", "--save-latents").exit_code == 0
    data = sidecar(tmp_path / "two.json")
    # Stage 2's latents, at the full size (the tiny VAE halves each side).
    assert data["output"]["latents"]["shape"][-2:] == [data["output"]["height"] // 2, data["output"]["width"] // 2]
    assert cli("decode", "two.latents.safetensors", "--out", "again.mp4").exit_code == 0
    again = sidecar(tmp_path / "again.json")
    assert again["output"]["audio"]["raw_sha256"] == data["output"]["audio"]["raw_sha256"]
    assert (again["output"]["width"], again["output"]["height"]) == (data["output"]["width"], data["output"]["height"])
    assert np.array_equal(decode(tmp_path / "two.mp4")[0], decode(tmp_path / "again.mp4")[0])


@pytest.mark.unit
@pytest.mark.parametrize(
    ("preset", "params"),
    [
        ("ltx2-two-stage", 497_867_904),
        ("ltx-video-0.9.7-distilled-upscale", 126_250_624),
        ("ltx-video-0.9.8-13b-distilled-upscale", 126_250_624),
    ],
)
def test_memory_plan_counts_the_latent_upsampler(tmp_path: Path, preset: str, params: int) -> None:
    args = ("t2v", "x", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24", "--json")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    weights = json.loads(result.stdout)["memory"]["weights_bytes"]
    assert weights["latent_upsampler"] == params * 2  # bf16
    # A one-stage run loads no upsampler.
    plain = json.loads(cli(*args[:3], "ltx2" if "ltx2" in preset else "ltx-video", *args[4:]).stdout)
    assert "latent_upsampler" not in plain["memory"]["weights_bytes"]


@pytest.mark.unit
def test_memory_plan_of_the_ltx_upscale_recipe_works_at_the_refinement_size(tmp_path: Path) -> None:
    # 768x512 asked: stage 1 at 512x320 (2/3, floored to 32), refinement and decode at 1024x640.
    size = ("--width", "768", "--height", "512", "--frames", "97", "--vae-tiling", "--dry-run", "--json")
    phases = {}
    for preset in ("ltx-video-0.9.7-distilled-upscale", "ltx-video-0.9.7-distilled"):
        result = cli("t2v", "x", "--preset", preset, *size)
        assert result.exit_code == 0, result.stderr
        phases[preset] = json.loads(result.stdout)["memory"]["phases_bytes"]
    ratio = phases["ltx-video-0.9.7-distilled-upscale"]["decode"] / phases["ltx-video-0.9.7-distilled"]["decode"]
    assert ratio == pytest.approx(1024 * 640 / (768 * 512))


@pytest.mark.unit
def test_memory_plan_of_ltx_2_3_counts_its_own_parts(tmp_path: Path) -> None:
    # Counted on the meta device from diffusers' 2.3 configs: transformer plus connectors is the
    # published "22B"; 2.0's parts would undercount the connectors and overcount the VAE.
    args = ("t2v", "x", "--dry-run", "--memory", "auto", "--vram", "24", "--json")
    weights = {}
    for preset in ("ltx2.3", "ltx2"):
        result = cli(*args, "--preset", preset)
        assert result.exit_code == 0, result.stderr
        weights[preset] = json.loads(result.stdout)["memory"]["weights_bytes"]
    new = weights["ltx2.3"]
    assert (new["transformer"] + new["connectors"]) / 2 == pytest.approx(22.16e9, rel=1e-3)
    assert new["connectors"] > weights["ltx2"]["connectors"] and new["vae"] < weights["ltx2"]["vae"]
