"""LTX-2.5 DFR temporal refine (--refine-rounds) on the tiny model: the pass, the rounds of
LTX2DFRTemporalRefinePipeline and the docs' decode equal plain diffusers doing the same calls
from the sidecar (another seed and another prompt differ), in t2v and i2v (the image conditions
every round), with one and two rounds; the video has the frames and frame rate asked for, with
the pass's sound; the final latents are kept and decode again; bad combinations are refused
before loading; the full preset with rounds plans offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import Made, cli, decode, files_under, one_line_error, sidecar, varied
from test_ltx2 import raw_sha256, streams
from test_ltx25 import _png

DEFAULT_TIER = "pipeline"

REFINE = ("--preset", "tiny-ltx25-dfr-refine")
DRUMMER = ("t2v", "a drummer on a rooftop", *REFINE)
OTHER_PROMPT = "a blue rocket launching in space"
_PIPES: dict[str, object] = {}
# Arguments the sidecar describes rather than states: the previous call's outputs and what the
# canvas they cover makes of them (see _plain_chain).
_DESCRIBED = ("latents", "keyframes_latents", "keyframe_positions", "audio_latents", "num_frames", "source_seconds")


def _pipes(data: dict) -> tuple:
    """The DFR pipeline from the model folder and the refine pipeline on its components, as
    diffusers' LTX-2.5 docs build them, from what the sidecar's setup records."""
    from diffusers import LTX2DFRPipeline, LTX2DFRTemporalRefinePipeline, LTXEulerAncestralRFScheduler
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

    setup = {step["method"]: step["kwargs"] for step in data["pipeline"]["setup"]}
    upsampler = setup["temporal_latent_upsampler = LTX2LatentUpsamplerModel.from_pretrained"]
    key = data["model"]["path"] + upsampler["pretrained_model_name_or_path"]
    if key not in _PIPES:
        _PIPES.clear()
        pipe = LTX2DFRPipeline.from_pretrained(data["model"]["path"])
        built = setup["temporal_pipe = LTX2DFRTemporalRefinePipeline"]
        assert built["scheduler"] == "LTXEulerAncestralRFScheduler(eta=0.5)"
        temporal = LTX2DFRTemporalRefinePipeline(
            scheduler=LTXEulerAncestralRFScheduler(eta=0.5),
            vae=pipe.vae,
            audio_vae=pipe.audio_vae,
            text_encoder=pipe.text_encoder,
            tokenizer=pipe.tokenizer,
            connectors=pipe.connectors,
            transformer=pipe.transformer,
            vocoder=pipe.vocoder,
            temporal_latent_upsampler=LTX2LatentUpsamplerModel.from_pretrained(
                upsampler["pretrained_model_name_or_path"]
            ),
        )
        for each in (pipe, temporal):
            each.set_progress_bar_config(disable=True)
        _PIPES[key] = (pipe, temporal)
    return _PIPES[key]


def _plain_chain(data: dict, media: dict | None = None, **change) -> Made:
    """The docs' recipe with plain diffusers from the sidecar: the pass to latents, each round on
    the previous call's frames, keyframes and positions with the pass's audio (num_frames: the
    canvas those latents cover; source_seconds: the pass's canvas over its frame rate), then
    trim_canvas, vae.decode and the pass's sound cut to the video's length."""
    import torch
    from diffusers.pipelines.ltx2.utils import trim_canvas

    data = varied(data, **change)
    media = media or {}
    pipe, temporal = _pipes(data)
    first, *rounds, last = data["pipeline"]["stages"]
    assert (first["call"], last["call"]) == ("pipe", "decode") and {r["call"] for r in rounds} == {"temporal_pipe"}
    generator = torch.Generator(data["pipeline"]["generator"]["device"]).manual_seed(data["seed"])
    stage_1 = out = pipe(**first["call_kwargs"], **media, generator=generator)
    ratio = pipe.vae.temporal_compression_ratio
    seconds = ((stage_1.frames.shape[2] - 1) * ratio + 1) / first["call_kwargs"]["frame_rate"]
    for stage in rounds:
        kwargs = {k: v for k, v in stage["call_kwargs"].items() if k not in _DESCRIBED}
        out = temporal(
            **kwargs,
            latents=out.frames,
            keyframes_latents=out.keyframes,
            keyframe_positions=out.keyframe_positions,
            audio_latents=stage_1.audio,
            num_frames=(out.frames.shape[2] - 1) * ratio + 1,
            source_seconds=seconds,
            **media,
            generator=generator,
        )
    frames, fps = last["call_kwargs"]["frames"], last["call_kwargs"]["fps"]
    assert frames == (first["call_kwargs"]["num_frames"] - 1) * 2 ** len(rounds) + 1
    assert fps == first["call_kwargs"]["frame_rate"] * 2 ** len(rounds)
    with torch.no_grad():
        latents = trim_canvas(out.frames, frames, ratio)
        video = pipe.vae.decode(latents, None, return_dict=False)[0]
        video = pipe.video_processor.postprocess_video(video, output_type="np")[0]
        audio = pipe.vocoder(pipe.audio_vae.decode(stage_1.audio, return_dict=False)[0])
        audio = audio[..., : round(frames / fps * pipe.vocoder.config.output_sampling_rate)]
    return Made((np.clip(video, 0, 1) * 255).round().astype(np.uint8), audio[0].float().numpy())


def _assert_chain(ours: np.ndarray, data: dict, media: dict | None = None) -> Made:
    theirs = _plain_chain(data, media)
    assert ours.shape == theirs.frames.shape
    assert np.abs(ours.astype(int) - theirs.frames.astype(int)).max() <= 1 and ours.std() > 0
    assert raw_sha256(theirs.audio) == data["output"]["audio"]["raw_sha256"]
    for change in ({"seed": data["seed"] + 1}, {"prompt": OTHER_PROMPT}):
        other = _plain_chain(data, media, **change).frames
        assert np.abs(ours.astype(int) - other.astype(int)).max() > 1, f"{change} made the same frames"
    return theirs


def test_one_round_equals_plain_diffusers_and_doubles_frames_and_fps(tmp_path: Path) -> None:
    frames, data = _png(*DRUMMER, "--seed", "3")
    assert frames.shape == (17, 32, 32, 3) and data["output"]["fps"] == 48
    pipeline = data["pipeline"]
    assert pipeline["class"] == "LTX2DFRPipeline" and "temporal refine" in pipeline["run"]
    # The pass runs at half the frames and the frame rate, to latents; the round at its rate.
    call = pipeline["call_kwargs"]
    assert (call["num_frames"], call["frame_rate"], call["output_type"]) == (9, 24.0, "latent")
    (round_1,) = [stage["call_kwargs"] for stage in pipeline["stages"] if stage["call"] == "temporal_pipe"]
    assert (round_1["round_index"], round_1["frame_rate"], round_1["condition_num_frames"]) == (1, 24.0, 9)
    assert round_1["sigmas"] == [0.909375, 0.421875]
    _assert_chain(frames, data)


def test_the_mp4_has_the_frames_fps_and_the_pass_sound(tmp_path: Path) -> None:
    result = cli(*DRUMMER, "--seed", "3", "--out", "drum.mp4")
    assert result.exit_code == 0, result.stderr
    found = streams(tmp_path / "drum.mp4")
    assert found["video"]["frames"] == 17 and found["audio"]["codec"] == "aac"
    audio = sidecar(tmp_path / "drum.json")["output"]["audio"]
    # The pass's sound, cut to the video's 17 frames at 48 fps.
    assert abs(audio["duration"] - 17 / 48) < 0.03


def test_two_rounds_of_i2v_condition_every_round_and_equal_plain_diffusers(tmp_path: Path) -> None:
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    args = ("i2v", "first.png", "a drummer", *REFINE, "--refine-rounds", "2", "--frames", "33", "--fps", "96")
    frames, data = _png(*args, "--image-crf", "0", "--seed", "4")
    assert frames.shape[0] == 33 and data["output"]["fps"] == 96
    rounds = [stage["call_kwargs"] for stage in data["pipeline"]["stages"] if stage["call"] == "temporal_pipe"]
    # Each round's input frame rate is the one before it doubled; conditions keep the pass's frames.
    assert [(r["round_index"], r["frame_rate"], r["condition_num_frames"]) for r in rounds] == [
        (1, 24.0, 9),
        (2, 48.0, 9),
    ]
    assert "the same to each round" in data["pipeline"]["run"]
    condition = LTX2VideoCondition(frames=Image.open("first.png").convert("RGB"), index=0, strength=1.0, crf=0)
    _assert_chain(frames, data, {"conditions": [condition]})


def test_saved_latents_are_the_refined_canvas_and_decode_to_the_same_video(tmp_path: Path) -> None:
    assert cli(*DRUMMER, "--seed", "2", "--out", "r.mp4", "--save-latents").exit_code == 0
    data = sidecar(tmp_path / "r.json")
    # The trimmed canvas of 17 frames (the tiny VAE halves time: 9 latent frames).
    assert data["output"]["latents"]["shape"][2] == 9
    assert cli("decode", "r.latents.safetensors", "--out", "again.mp4").exit_code == 0
    again = sidecar(tmp_path / "again.json")
    assert again["output"]["audio"]["raw_sha256"] == data["output"]["audio"]["raw_sha256"]
    assert np.array_equal(decode(tmp_path / "r.mp4")[0], decode(tmp_path / "again.mp4")[0])


def test_a_decode_out_of_memory_keeps_the_refined_latents_for_vidgen_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidgen.run import runner

    assert cli(*DRUMMER, "--seed", "7", "--out", "whole.mp4").exit_code == 0
    monkeypatch.setenv("VIDGEN_TEST_OOM", "decode")
    monkeypatch.setattr(runner, "_injected", {})
    one_line_error(cli(*DRUMMER, "--seed", "7", "--out", "cut.mp4"), 6, "during decode", "vidgen decode")
    assert not (tmp_path / "cut.mp4").exists()
    monkeypatch.delenv("VIDGEN_TEST_OOM")
    # The pass and the round are not run again: the refined canvas and the pass's sound were kept.
    assert cli("decode", "cut.latents.safetensors").exit_code == 0
    whole, cut = sidecar(tmp_path / "whole.json"), sidecar(tmp_path / "cut.json")
    assert cut["output"]["audio"]["raw_sha256"] == whole["output"]["audio"]["raw_sha256"]
    assert np.array_equal(decode(tmp_path / "whole.mp4")[0], decode(tmp_path / "cut.mp4")[0])


def test_replay_makes_the_same_video(tmp_path: Path) -> None:
    frames, data = _png(*DRUMMER, "--seed", "5")
    result = cli("replay", str(next(tmp_path.rglob("*.json"))), "--out", "again/")
    assert result.exit_code == 0, result.stderr
    from PIL import Image

    folder = Path(result.stdout.strip())
    again = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    assert np.array_equal(frames, again)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "25"], ["--frames 25", "--refine-rounds 1", "16k+1", "17 or 33"]),
        (["--frames", "9"], ["--frames 9", "16k+1", "try --frames 17"]),
        (["--refine-rounds", "2", "--frames", "49"], ["--frames 49", "32k+1", "33 or 65"]),
        (["--refine-rounds", "4"], ["--refine-rounds"]),
        (["--refine-rounds", "0"], ["--refine-sigma applies to temporal refine runs"]),
        (["--refine-sigma", "1.5"], ["--refine-sigma", "(0, 1]"]),
        (["--decode-timestep", "0.05"], ["--decode-timestep is not used with --refine-rounds"]),
        (["--live-preview"], ["--live-preview"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*DRUMMER, *args), 3, *needles)
    assert files_under(tmp_path) == []


@pytest.mark.unit
def test_refine_options_need_rounds(nothing_loads: None, tmp_path: Path) -> None:
    plain = ("t2v", "a fox", "--preset", "tiny-ltx25-dfr")
    one_line_error(cli(*plain, "--temporal-upsampler", "tiny:ltx25-temporal-upsampler"), 3, "--refine-rounds 1")
    one_line_error(cli(*plain, "--refine-sigma", "0.5"), 3, "--refine-sigma applies to temporal refine runs")
    needs = ("--refine-rounds 1 needs --temporal-upsampler", "model_index.json", "convert")
    one_line_error(cli(*plain, "--refine-rounds", "1", "--frames", "17"), 3, *needs)
    one_line_error(cli("t2v", "a fox", "--preset", "tiny-ltx2", "--refine-rounds", "1"), 3, "--refine-rounds")
    assert files_under(tmp_path) == []


@pytest.mark.unit
def test_full_preset_with_rounds_plans_offline(nothing_loads: None) -> None:
    args = ("--refine-rounds", "1", "--temporal-upsampler", "tiny:ltx25-temporal-upsampler")
    result = cli(
        "t2v", "a fox", "--preset", "ltx2.5-dfr", *args, "--frames", "241", "--fps", "48", "--dry-run",
        "--memory", "auto", "--vram", "24",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "temporal_pipe" in result.stdout and "temporal_latent_upsampler" in result.stdout
    assert '"num_frames": 121' in result.stdout and "trim_canvas(out.frames, 241" in result.stdout


@pytest.mark.unit
def test_schedule_and_tiles_are_diffusers_own(nothing_loads: None) -> None:
    from diffusers.pipelines.ltx2.utils import TEMPORAL_ROUND_DISTILLED_SIGMA_VALUES

    from vidgen.families.ltx25 import TEMPORAL_SIGMAS, refine_tiles

    assert TEMPORAL_SIGMAS == TEMPORAL_ROUND_DISTILLED_SIGMA_VALUES
    # The docs' 121 frames: one tile per keyframe segment in round 1, more as rounds add slots.
    counts = refine_tiles(121, 2)
    assert len(counts) == 2 and all(count >= 1 for count in counts)


@pytest.mark.parametrize(
    "option",
    [
        ["--vae-tiling"],
        ["--attention-backend", "native"],
        ["--quantize", "int8"],
        ["--cache", "pab"],
        ["--fp8-storage"],
    ],
)
def test_declared_options_run_with_rounds(option: list[str], tmp_path: Path) -> None:
    result = cli(*DRUMMER, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (17, 32, 32)
    assert sidecar(video.with_suffix(".json"))["optimizations"]["applied"]


def test_a_spatial_upsampler_given_as_the_temporal_one_is_refused(tmp_path: Path) -> None:
    one_line_error(
        cli(*DRUMMER, "--temporal-upsampler", "tiny:ltx2-upsampler"), 5, "not a temporal x2 latent upsampler"
    )
    assert not list(tmp_path.rglob("*.mp4"))


def test_a_lora_on_the_pass_is_on_in_the_rounds_too(tmp_path: Path) -> None:
    from test_ltx25 import _lora

    lora = _lora(tmp_path / "lora")
    plain, _ = _png(*DRUMMER, "--seed", "2")
    # The refine pipeline shares the pass's transformer, adapters included.
    result = cli(*DRUMMER, "--seed", "2", "--lora", f"{lora}:0.8", "--format", "png", "--out", "lora/")
    assert result.exit_code == 0, result.stderr
    from PIL import Image

    folder = Path(result.stdout.strip())
    with_lora = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    (record,) = sidecar(folder.with_name(folder.name + ".json"))["model"]["loras"]
    assert record["matched"] == record["modules"]
    assert with_lora.shape == plain.shape and np.abs(plain.astype(int) - with_lora.astype(int)).max() > 2
