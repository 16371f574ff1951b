"""LTX-2.5's diffusion decoder (--diffusion-decoder) on the tiny model: the DFR pass to latents,
trim_canvas and LTX2VideoDiffusionDecodePipeline with the run's generator equal plain diffusers
doing the same calls from the sidecar (another seed and another prompt differ), with the pass's
sound; after temporal refine rounds too; what it replaces or cannot keep is refused before
loading, as is the option on a family without one; the full preset plans offline with the
decoder's weights counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import Made, cli, files_under, one_line_error, varied
from test_ltx2 import raw_sha256
from test_ltx25 import _png

DEFAULT_TIER = "pipeline"

DECODE = ("--preset", "tiny-ltx25-dfr-diffusion-decode")
DRUMMER = ("t2v", "a drummer on a rooftop", *DECODE)
OTHER_PROMPT = "a blue rocket launching in space"
_PIPES: dict[str, object] = {}


def _pipes(data: dict) -> tuple:
    """The DFR pipeline from the model folder and the decode pipeline as diffusers' LTX-2.5 docs
    build it (the decoder from its folder, the pass's scheduler), from the sidecar's setup."""
    from diffusers import LTX2DFRPipeline, LTX2VideoDiffusionDecodePipeline, LTX2VideoDiffusionDecoderModel

    setup = {step["method"]: step["kwargs"] for step in data["pipeline"]["setup"]}
    where = setup["diffusion_decoder = LTX2VideoDiffusionDecoderModel.from_pretrained"]
    assert setup["decode_pipe = LTX2VideoDiffusionDecodePipeline"]["scheduler"] == "pipe.scheduler"
    key = data["model"]["path"] + where["pretrained_model_name_or_path"]
    if key not in _PIPES:
        _PIPES.clear()
        pipe = LTX2DFRPipeline.from_pretrained(data["model"]["path"])
        decoder = LTX2VideoDiffusionDecoderModel.from_pretrained(where["pretrained_model_name_or_path"])
        decode_pipe = LTX2VideoDiffusionDecodePipeline(diffusion_decoder=decoder, scheduler=pipe.scheduler)
        pipe.set_progress_bar_config(disable=True)
        _PIPES[key] = (pipe, decode_pipe)
    return _PIPES[key]


def _plain(data: dict, **change) -> Made:
    """The docs' recipe with plain diffusers: the pass with output_type='latent', trim_canvas,
    decode_pipe with the same generator and denormalize=False; the sound from the pass's audio
    latents through the audio VAE and vocoder, cut to the video's length."""
    import torch
    from diffusers.pipelines.ltx2.utils import trim_canvas

    data = varied(data, **change)
    pipe, decode_pipe = _pipes(data)
    first, last = data["pipeline"]["stages"]
    assert (first["call"], last["call"]) == ("pipe", "decode") and first["call_kwargs"]["output_type"] == "latent"
    generator = torch.Generator(data["pipeline"]["generator"]["device"]).manual_seed(data["seed"])
    out = pipe(**first["call_kwargs"], generator=generator)
    frames, fps = last["call_kwargs"]["frames"], last["call_kwargs"]["fps"]
    latents = trim_canvas(out.frames, frames, pipe.vae.temporal_compression_ratio)
    video = decode_pipe(latents, generator=generator, output_type="np", denormalize=False, return_dict=False)[0][0]
    with torch.no_grad():
        audio = pipe.vocoder(pipe.audio_vae.decode(out.audio, return_dict=False)[0])
    audio = audio[..., : round(frames / fps * pipe.vocoder.config.output_sampling_rate)]
    return Made((np.clip(video, 0, 1) * 255).round().astype(np.uint8), audio[0].float().numpy())


def test_equals_plain_diffusers_with_the_pass_sound(tmp_path: Path) -> None:
    ours, data = _png(*DRUMMER, "--seed", "3")
    assert ours.shape == (9, 32, 32, 3) and ours.std() > 0
    pipeline = data["pipeline"]
    assert pipeline["class"] == "LTX2DFRPipeline" and "diffusion decode" in pipeline["run"]
    assert any("decode_pipe(latents" in step for step in pipeline["stages"][-1]["steps"])
    theirs = _plain(data)
    assert np.abs(ours.astype(int) - theirs.frames.astype(int)).max() <= 1
    assert raw_sha256(theirs.audio) == data["output"]["audio"]["raw_sha256"]
    for change in ({"seed": data["seed"] + 1}, {"prompt": OTHER_PROMPT}):
        other = _plain(data, **change).frames
        assert np.abs(ours.astype(int) - other.astype(int)).max() > 1, f"{change} made the same frames"
    # The convolutional VAE makes another video from the same latents.
    vae, _ = _png("t2v", "a drummer on a rooftop", "--preset", "tiny-ltx25-dfr", "--seed", "3", "--overwrite")
    assert np.abs(ours.astype(int) - vae.astype(int)).max() > 1


def test_after_temporal_refine_the_last_round_is_diffusion_decoded(tmp_path: Path) -> None:
    refine = ("--preset", "tiny-ltx25-dfr-refine", "--diffusion-decoder", "tiny:ltx25-diffusion-decoder")
    ours, data = _png("t2v", "a drummer on a rooftop", *refine, "--seed", "3")
    assert ours.shape == (17, 32, 32, 3) and data["output"]["fps"] == 48
    run = data["pipeline"]["run"]
    assert "temporal refine" in run and "diffusion decode" in run
    assert [stage["call"] for stage in data["pipeline"]["stages"]] == ["pipe", "temporal_pipe", "decode"]
    assert any("decode_pipe(latents" in step for step in data["pipeline"]["stages"][-1]["steps"])
    vae, _ = _png("t2v", "a drummer on a rooftop", "--preset", "tiny-ltx25-dfr-refine", "--seed", "3", "--overwrite")
    assert vae.shape == ours.shape and np.abs(ours.astype(int) - vae.astype(int)).max() > 1


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--decode-timestep", "0.05"], ["--decode-timestep is not used with --diffusion-decoder"]),
        (["--decode-noise-scale", "0.025"], ["--decode-noise-scale is not used with --diffusion-decoder"]),
        (["--save-latents"], ["--save-latents", "--diffusion-decoder"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*DRUMMER, *args), 3, *needles)
    assert files_under(tmp_path) == []


@pytest.mark.unit
def test_families_without_one_refuse_it(nothing_loads: None, tmp_path: Path) -> None:
    decoder = ("--diffusion-decoder", "tiny:ltx25-diffusion-decoder")
    for preset in ("tiny-ltx2", "tiny-ltx"):
        one_line_error(cli("t2v", "a fox", "--preset", preset, *decoder), 3, "--diffusion-decoder", "LTX-2.5 DFR")
    assert files_under(tmp_path) == []


@pytest.mark.unit
def test_full_preset_plans_offline_with_the_decoder_counted(nothing_loads: None) -> None:
    result = cli(
        "t2v", "a fox", "--preset", "ltx2.5-dfr-diffusion-decode", "--dry-run", "--memory", "auto", "--vram", "24"
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "diffusion_decoder 0.8" in result.stdout and '"output_type": "latent"' in result.stdout
    assert "decode_pipe(latents" in result.stdout
