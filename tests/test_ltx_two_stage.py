"""LTX-2 two-stage runs and the LTX-Video upscale recipe on tiny models: a smaller stage 1, the
latent upsampler, a refinement at the larger size, in one command, each equal to plain diffusers
doing the same three calls as the docs write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli, files_under, one_line_error, sidecar
from test_ltx2 import raw_sha256, streams

TWO_STAGE = ("t2v", "a drummer on a rooftop", "--preset", "tiny-ltx2-two-stage")


def plain_two_stage(
    data: dict, seed: int | None = None, lora: str | None = None, media: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (uint8) and raw audio from plain diffusers, written as diffusers' ltx2.md does it,
    with the values the sidecar records: stage 1, LTX2LatentUpsamplePipeline, stage 2. With
    `lora`, the stage-2 LoRA is loaded after stage 1, as the docs do."""
    import diffusers
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2LatentUpsamplePipeline
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    pipe = getattr(diffusers, data["pipeline"]["class"]).from_pretrained(data["model"]["path"], dtype=torch.float32)
    setup = {step["method"]: dict(step["kwargs"]) for step in data["pipeline"]["setup"]}
    upsampler_kwargs = setup["latent_upsampler = LTX2LatentUpsamplerModel.from_pretrained"]
    where = upsampler_kwargs.pop("pretrained_model_name_or_path")
    upsampler_kwargs.pop("torch_dtype")
    latent_upsampler = LTX2LatentUpsamplerModel.from_pretrained(where, torch_dtype=torch.float32, **upsampler_kwargs)
    upsample_pipe = LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=latent_upsampler)
    first, upsample, second = (stage["call_kwargs"] for stage in data["pipeline"]["stages"])
    generator = torch.Generator(data["pipeline"]["generator"]["device"]).manual_seed(
        data["seed"] if seed is None else seed
    )
    media = media or {}
    video_latent, audio_latent = pipe(**first, **media, generator=generator)
    assert upsample["latents"] == "video_latents"
    upscaled = upsample_pipe(latents=video_latent, output_type="latent", return_dict=False)[0]
    if lora:
        pipe.load_lora_weights(lora, adapter_name="stage_2_distilled")
        pipe.set_adapters("stage_2_distilled", 1.0)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        pipe.scheduler.config, **setup["stage_2_scheduler = FlowMatchEulerDiscreteScheduler.from_config"]
    )
    named = {k: v for k, v in second.items() if k not in ("latents", "audio_latents")}
    out = pipe(**named, latents=upscaled, audio_latents=audio_latent, **media, generator=generator)
    frames = (np.clip(np.asarray(out.frames[0]), 0, 1) * 255).round().astype(np.uint8)
    return frames, out.audio[0].float().numpy()


def _png_frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_two_stage_equals_plain_diffusers_doing_the_three_calls(tmp_path: Path) -> None:
    result = cli(*TWO_STAGE, "--seed", "5", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    stages = data["pipeline"]["stages"]
    # Stage 1 at half size to latents, the upsampler, stage 2 at the full size with the docs' sigmas.
    assert [s["call"] for s in stages] == ["pipe", "upsample_pipe", "pipe"]
    assert (stages[0]["call_kwargs"]["height"], stages[0]["call_kwargs"]["width"]) == (32, 32)
    assert stages[0]["call_kwargs"]["output_type"] == "latent"
    assert stages[2]["call_kwargs"]["sigmas"] == [0.909375, 0.725, 0.421875]
    assert stages[2]["call_kwargs"]["noise_scale"] == 0.909375 and stages[2]["call_kwargs"]["guidance_scale"] == 1.0
    ours = _png_frames(folder)
    assert ours.shape[1:3] == (64, 64)  # the full size
    assert data["output"]["width"] == 64 and data["output"]["height"] == 64
    frames, audio = plain_two_stage(data)
    assert abs(len(ours) - len(frames)) <= 0 and ours.shape == frames.shape
    assert np.abs(ours.astype(int) - frames.astype(int)).max() <= 1
    assert raw_sha256(audio) == data["output"]["audio"]["raw_sha256"]
    # Not a vacuous comparison: the frames carry signal, and another seed differs.
    assert ours.std() > 0
    other_frames, other_audio = plain_two_stage(data, seed=6)
    assert np.abs(ours.astype(int) - other_frames.astype(int)).max() > 1
    assert raw_sha256(other_audio) != data["output"]["audio"]["raw_sha256"]


def test_two_stage_mp4_is_full_size_with_sound(tmp_path: Path) -> None:
    result = cli(*TWO_STAGE, "--seed", "2", "--out", "drum.mp4")
    assert result.exit_code == 0, result.stderr
    found = streams(tmp_path / "drum.mp4")
    assert found["video"]["codec"] == "h264" and found["video"]["frames"] == 9
    assert found["audio"]["codec"] == "aac"
    import av

    with av.open(str(tmp_path / "drum.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 64)
    shown = cli("inspect", "drum.mp4")
    assert shown.exit_code == 0
    assert "pipe 32x32 2 steps guidance 3.0 -> upsample_pipe -> pipe 64x64 3 steps guidance 1.0" in shown.stdout


def test_two_stage_i2v_equals_plain_diffusers(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 80, 40)).save("first.png")
    args = ("i2v", "first.png", "a drummer", "--preset", "tiny-ltx2-two-stage", "--format", "png")
    result = cli(*args, "--seed", "3", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["class"] == "LTX2ImageToVideoPipeline"
    media = {"image": Image.open("first.png").convert("RGB")}
    ours = _png_frames(folder)
    frames, audio = plain_two_stage(data, media=media)
    assert np.abs(ours.astype(int) - frames.astype(int)).max() <= 1
    assert raw_sha256(audio) == data["output"]["audio"]["raw_sha256"]
    other, _ = plain_two_stage(data, seed=4, media=media)
    assert np.abs(ours.astype(int) - other.astype(int)).max() > 1


def test_stage_2_lora_is_on_for_stage_2_only(tmp_path: Path) -> None:
    """A tiny LoRA switched on for the refinement alone equals the docs' order: load it after stage 1."""
    lora = _tiny_lora(tmp_path / "lora")
    args = (*TWO_STAGE, "--stage-2-lora", str(lora / "pytorch_lora_weights.safetensors"), "--format", "png")
    result = cli(*args, "--seed", "5", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["stages"][0]["before"] == ["pipe.disable_lora()"]
    ours = _png_frames(folder)
    frames, audio = plain_two_stage(data, lora=str(lora))
    assert np.abs(ours.astype(int) - frames.astype(int)).max() <= 1
    assert raw_sha256(audio) == data["output"]["audio"]["raw_sha256"]
    # The LoRA changes the video: without it, plain diffusers makes another one.
    without, _ = plain_two_stage(data)
    assert np.abs(ours.astype(int) - without.astype(int)).max() > 1


def _tiny_lora(folder: Path) -> Path:
    """A random LoRA on the tiny LTX-2 transformer's attention, saved as diffusers saves one."""
    import torch
    from diffusers import LTX2Pipeline
    from peft import LoraConfig, get_peft_model_state_dict

    from vidgen.models import tiny

    pipe = LTX2Pipeline.from_pretrained(tiny.ensure("ltx2"), dtype=torch.float32)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for name, param in pipe.transformer.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    LTX2Pipeline.save_lora_weights(folder, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer))
    return folder


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ((*TWO_STAGE, "--width", "96"), ("--width 96", "two-stage", "multiples of 64", "64 or 128")),
        ((*TWO_STAGE, "--height", "32"), ("--height 32", "multiples of 64")),
        (("t2v", "a drummer", "--preset", "tiny-ltx2", "--stage-2-sigma", "0.5"), ("--stage-2-sigma", "two-stage")),
        (
            ("t2v", "a drummer", "--preset", "tiny-ltx2", "--stage-2-lora", "x.safetensors"),
            ("--stage-2-lora", "--latent-upsampler"),
        ),
        # Keyframes go to both stages now; one past the last frame is still refused.
        ((*TWO_STAGE, "--keyframe", "99:last.png"), ("--keyframe", "99")),
        ((*TWO_STAGE, "--stage-2-lora", "a/b:x.safetensors", "--lora", "c/d"), ("--lora", "--stage-2-lora")),
    ],
)
def test_two_stage_bad_input_is_refused_before_loading(tmp_path: Path, args: tuple, needles: tuple) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64)).save("last.png")
    before = files_under(tmp_path)
    one_line_error(cli(*args), 3, *needles)
    assert files_under(tmp_path) == before


# -- LTX-Video 0.9.x: the upscale recipe (diffusers ltx_video.md) ---------------------------------

UPSCALE = ("t2v", "a fox in snow", "--preset", "tiny-ltx-upscale")


def plain_upscale(data: dict, media: dict | None = None, seed: int | None = None) -> np.ndarray:
    """Frames (uint8) from plain diffusers, as ltx_video.md writes the distilled upscale recipe:
    stage 1 to latents, LTXLatentUpsamplePipeline, stage 2 with a generator seeded afresh, resize."""
    import torch
    from diffusers import LTXConditionPipeline, LTXLatentUpsamplePipeline
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    pipeline = LTXConditionPipeline.from_pretrained(data["model"]["path"], dtype=torch.float32)
    setup = {step["method"]: dict(step["kwargs"]) for step in data["pipeline"]["setup"]}
    upsampler_kwargs = setup["latent_upsampler = LTXLatentUpsamplerModel.from_pretrained"]
    upsampler = LTXLatentUpsamplerModel.from_pretrained(upsampler_kwargs["pretrained_model_name_or_path"])
    pipe_upsample = LTXLatentUpsamplePipeline(vae=pipeline.vae, latent_upsampler=upsampler)
    first, upsample, second = (stage["call_kwargs"] for stage in data["pipeline"]["stages"])
    seed = data["seed"] if seed is None else seed
    media = media or {}
    latents = pipeline(**first, **media, generator=torch.Generator().manual_seed(seed)).frames
    named = {k: v for k, v in upsample.items() if k != "latents"}
    upscaled_latents = pipe_upsample(latents=latents, **named).frames
    named = {k: v for k, v in second.items() if k != "latents"}
    video = pipeline(**named, latents=upscaled_latents, **media, generator=torch.Generator().manual_seed(seed))
    frames = video.frames[0]
    resize = data["pipeline"]["stages"][2]["then"]["resize"]
    if resize:
        frames = [frame.resize(tuple(resize)) for frame in frames]
    return np.stack([np.asarray(frame) for frame in frames])


def test_ltx_upscale_equals_plain_diffusers_doing_the_docs_calls(tmp_path: Path) -> None:
    result = cli(*UPSCALE, "--seed", "5", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["class"] == "LTXConditionPipeline"
    first, upsample, second = (stage["call_kwargs"] for stage in data["pipeline"]["stages"])
    # 2/3 of 96 is 64; twice that is refined, then resized to the 96x96 asked for.
    assert (first["height"], first["width"], first["output_type"]) == (64, 64, "latent")
    assert upsample["adain_factor"] == 1.0
    assert (second["height"], second["width"]) == (128, 128)
    assert second["timesteps"] == [1000, 909, 725, 421, 0] and second["denoise_strength"] == 0.999
    ours = _png_frames(folder)
    assert ours.shape == (9, 96, 96, 3)
    theirs = plain_upscale(data)
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert ours.std() > 0
    assert np.abs(ours.astype(int) - plain_upscale(data, seed=6).astype(int)).max() > 1


def test_ltx_upscale_i2v_conditions_both_stages_on_the_image(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (96, 96), (200, 80, 40)).save("first.png")
    args = ("i2v", "first.png", "it melts", "--preset", "tiny-ltx-upscale", "--format", "png")
    result = cli(*args, "--seed", "3", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    first = data["pipeline"]["stages"][0]["call_kwargs"]
    assert first["frame_index"] == [0] and first["strength"] == [1.0]
    media = {"image": [Image.open("first.png").convert("RGB")], "video": [None]}
    theirs = plain_upscale(data, media)
    ours = _png_frames(folder)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert np.abs(ours.astype(int) - plain_upscale(data, media, seed=4).astype(int)).max() > 1


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        ((*UPSCALE, "--width", "32"), 3, ("--width 32", "too small", "48")),
        ((*UPSCALE, "--width", "100"), 3, ("--width 100", "multiples of 32")),
        (("t2v", "a fox", "--preset", "tiny-ltx", "--adain-factor", "1"), 3, ("--adain-factor", "--latent-upsampler")),
        # A model that is not there: exit 5 (DESIGN.md section 5), before anything loads.
        ((*UPSCALE, "--latent-upsampler", "tiny:nothing"), 5, ("no tiny model 'nothing'", "ltx-upsampler")),
        ((*TWO_STAGE, "--latent-upsampler", "https://x/y"), 5, ("https://x/y", "Hub repo id")),
        ((*TWO_STAGE, "--latent-upsampler", "a/b/../c"), 5, ("a/b/../c", "inside the repo")),
    ],
)
def test_ltx_upscale_bad_input_is_refused_before_loading(
    tmp_path: Path, args: tuple, code: int, needles: tuple
) -> None:
    before = files_under(tmp_path)
    one_line_error(cli(*args), code, *needles)
    assert files_under(tmp_path) == before


def test_two_stage_keyframes_condition_both_stages_equal_to_plain_diffusers(tmp_path: Path) -> None:
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 80, 40)).save("first.png")
    Image.new("RGB", (64, 64), (30, 90, 220)).save("last.png")
    args = ("i2v", "first.png", "a drummer", "--preset", "tiny-ltx2-two-stage", "--keyframe", "8:last.png:0.9")
    result = cli(*args, "--image-crf", "0", "--seed", "3", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["class"] == "LTX2ConditionPipeline" and len(data["pipeline"]["stages"]) == 3
    assert "the same to both stages" in data["pipeline"]["run"]

    def conditions() -> dict:
        return {
            "conditions": [
                LTX2VideoCondition(frames=Image.open("first.png").convert("RGB"), index=0, strength=1.0, crf=0),
                LTX2VideoCondition(frames=Image.open("last.png").convert("RGB"), index=8, strength=0.9, crf=0),
            ]
        }

    ours = _png_frames(folder)
    frames, audio = plain_two_stage(data, media=conditions())
    assert np.abs(ours.astype(int) - frames.astype(int)).max() <= 1
    assert raw_sha256(audio) == data["output"]["audio"]["raw_sha256"]
    other, _ = plain_two_stage(data, seed=4, media=conditions())
    assert np.abs(ours.astype(int) - other.astype(int)).max() > 1
