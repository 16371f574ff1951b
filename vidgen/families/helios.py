"""Helios (PKU-Yuan group): a 14B autoregressive video model on Wan 2.1's VAE and UMT5 encoder that
makes long videos chunk by chunk, each chunk conditioned on a compressed history of the ones
before it; text, image (i2v) and video (v2v: continue a clip) to video, one model for all three.

A chunk is 9 latent frames, 33 video frames; diffusers makes ceil(--frames / 33) chunks and trims
their frames to 4k+1, so the frame counts Helios makes are 33, 65, 97, 129, 165, ... and vidgen
refuses any other before loading rather than hand back a different length. A v2v run returns the
continuation only, from the clip's last whole 33-frame chunks.

Every chunk runs inside one pipeline call. With --save-latents (or --oom-retry) vidgen keeps each
finished chunk's latents beside the output (vidgen/families/resume.py, as SkyReels-V2 DF's
windows); a rerun after a crash replays the finished chunks and computes only the rest, so it makes
the frames of an uninterrupted run.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    NO_FORWARD_CHUNKING,
    ONE_VIDEO_PER_CALL,
    Caught,
    Decoding,
    Family,
    Grid,
    Loading,
    Memory,
    Mode,
    Option,
    Previewing,
    Takes,
    decode_normalised,
    merged,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.resume import kept_latents
from vidgen.families.wan import FOOTPRINT, UMT5_XXL, VAE_21, tiny_wan_parts

_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# Latent frames per chunk (the pipeline's default, passed explicitly: the frame rule depends on it),
# and the video frames the Wan VAE decodes them to.
CHUNK = 9
CHUNK_FRAMES = (CHUNK - 1) * 4 + 1
BASE = "BestWishYsh/Helios-Base"
MID = "BestWishYsh/Helios-Mid"
DISTILLED = "BestWishYsh/Helios-Distilled"
# The diffusers docs' negative prompt (English, unlike Wan's).
NEGATIVE = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly "
    "drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy "
    "background, three legs, many people in the background, walking backwards"
)
# The transformer: diffusers' HeliosTransformer3DModel built on the meta device with its default
# config (40 blocks of width 5120, Wan 2.1 14B's shape plus the history patch embeddings),
# 14.312B; the docstrings' checkpoints are all this model. UMT5-XXL and the Wan 2.1 VAE as in wan.py.
_TRANSFORMER = 14.312e9
_PARTS = {"transformer": _TRANSFORMER, "text_encoder": UMT5_XXL, "vae": VAE_21}


def chunks_of(frames: int) -> int:
    """The chunks diffusers runs for `num_frames=frames`."""
    return max(1, math.ceil(frames / CHUNK_FRAMES))


def made(chunks: int) -> int:
    """The frames `chunks` chunks decode to, trimmed to 4k+1 as the pipeline trims them."""
    return (chunks * CHUNK_FRAMES - 1) // 4 * 4 + 1


def nearest_made(frames: int) -> str:
    """The frame counts Helios makes either side of `frames`, for messages."""
    chunks = chunks_of(frames)
    near = {made(c) for c in (chunks - 1, chunks, chunks + 1) if c >= 1}
    below, above = [n for n in near if n < frames], [n for n in near if n > frames]
    return " or ".join(str(n) for n in ([max(below)] if below else []) + ([min(above)] if above else []))


class _ChunkMemory(Memory):
    """One denoiser forward sees one chunk and its compressed history, however long the video;
    the decoded video stays on the device until the end."""

    def latent_frames(self, cfg: RunConfig, frames: int) -> int:
        # 9 new latent frames, the image/first-frame prefix and the 1x history (2), and the 2x and
        # 4x compressed histories (2 and 16 frames at 1/8 and 1/64 of the tokens each).
        return CHUNK + 3

    def decode_frames(self, cfg: RunConfig, frames: int) -> int:
        # Frame by frame like Wan, plus the decoded video (3 float32 values per pixel) it keeps.
        return 4 + math.ceil(frames * 3 * 4 / (self.footprint.decode * 2))


class Helios(Family):
    name = "helios"
    title = "Helios"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("HeliosPipeline", BASE, _SAMPLING),
        "i2v": Mode("HeliosPipeline", BASE, _SAMPLING),
        "v2v": Mode("HeliosPipeline", BASE, _SAMPLING),
    }
    # The diffusers docs' Helios-Base examples: 640x384, num_frames 99 (3 chunks: 97 frames),
    # 50 steps, guidance 5, 24 fps.
    reference = merged(
        settings(size=(384, 640), frames=97, steps=50, guidance=5.0, fps=24, max_sequence_length=512),
        {"inputs": {"negative_prompt": NEGATIVE}},
    )
    # Checked on the tiny model (tests/test_helios.py): the attention dispatcher, fp8 storage, int8
    # quantization, VAE tiling, and the PAB and TaylorSeer cache hooks (a cached run does not
    # resume: skipped denoiser calls would leave the hooks' state behind). Offload needs CUDA.
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "attention_backend", "fp8_storage", "cache", "quantize"}),
        caches=frozenset({"pab", "taylorseer"}),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=first-block": "diffusers 0.42.1 does not register Helios' transformer block for it",
        "optimization.cache=magcache": "diffusers 0.42.1 does not register Helios' transformer block for it",
        "optimization.cache=faster": "FasterCache assumes a batched guided pass, which Helios does not run "
        "(diffusers 0.42.1 fails in it)",
        "optimization.attention_slicing": "pick --attention-backend",
        "optimization.decode_chunk_size": "its VAE decodes each chunk frame by frame already; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "not checked on Helios yet",
        "model.scheduler": "Helios runs the HeliosScheduler its checkpoint ships",
        "model.loras": "not checked on Helios yet",
    }
    # The diffusers docs load the VAE in fp32 and the rest in bf16.
    loading = Loading(cuda_dtype="bf16", dtypes={"vae": "fp32"})
    memory = _ChunkMemory(replace(FOOTPRINT, sizes={BASE: _PARTS}), decode_batch=4, sliced=False)
    grid = Grid(size=16, shortest=CHUNK_FRAMES, any_clip=True, note=f"at least {CHUNK_FRAMES} frames")
    decoding = Decoding(latents="latent", resumable=True)
    previewing = Previewing(
        refused="Helios denoises one chunk at a time beside chunks it has already decoded, so no step holds "
        "an estimate of the video to show."
    )

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        frames = cfg.sampling.num_frames
        if frames is not None and made(chunks_of(frames)) != frames:
            raise ConfigError(
                f"--frames {frames} does not fit {self.title}: it makes chunks of {CHUNK_FRAMES} frames trimmed to "
                f"4k+1 (33, 65, 97, 129, ...); nearest valid: {nearest_made(frames)}."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        kwargs["num_latent_frames_per_chunk"] = CHUNK
        kwargs["output_type"] = "np"
        return kwargs

    def chunk_steps(self, pipe: Any, call_kwargs: dict[str, Any]) -> list[int]:
        """Step callbacks in each chunk."""
        return [int(call_kwargs.get("num_inference_steps", 50))] * chunks_of(call_kwargs["num_frames"])

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 50)) * chunks_of(call_kwargs["num_frames"])

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if call_kwargs is None:
            return {}
        count = chunks_of(call_kwargs["num_frames"])
        after = " after the clip" if cfg.mode == "v2v" else ""
        return {
            "chunks": {
                "summary": f"{count} chunk(s) of {CHUNK_FRAMES} frames{after}, trimmed to {made(count)} frames",
                "chunks": count,
                "frames_per_chunk": CHUNK_FRAMES,
            }
        }

    def latent_call(
        self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any
    ) -> Any:
        with _no_chunk_decode(pipe):
            latents = kept_latents(pipe, cfg, call_kwargs, media, extra, self.chunk_steps(pipe, call_kwargs), "chunks")
        # The latents it returns start with the image's (i2v) or the clip's (v2v); the video is the chunks'.
        return latents[:, :, -CHUNK * chunks_of(call_kwargs["num_frames"]) :]

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        import torch

        # As the pipeline decodes: each chunk's latents on their own, joined, trimmed to 4k+1.
        video = torch.cat([decode_normalised(pipe, chunk) for chunk in caught.latents.split(CHUNK, dim=2)], dim=2)
        video = video[:, :, : (video.shape[2] - 1) // 4 * 4 + 1]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


# -- Helios-Mid and Helios-Distilled: the pyramid pipeline ---------------------------------------

AMPLIFY = Option(
    "is_amplify_first_chunk",
    "--amplify-first-chunk/--no-amplify-first-chunk",
    bool,
    "Helios-Distilled: run the first chunk with twice the steps (the docs' setting), for a steadier start.",
)
# Pyramid stages: each chunk is denoised at 1/4, 1/2, then full latent size (the checkpoints'
# HeliosScheduler / HeliosDMDScheduler are built for 3).
STAGES = 3


class HeliosPyramid(Helios):
    """Helios-Mid (CFG-Zero*) and Helios-Distilled (x0-prediction, DMD) through the pyramid pipeline:
    --steps is the steps of each of the 3 stages (the call's `pyramid_num_inference_steps_list`)."""

    name = "helios-pyramid"
    title = "Helios pyramid"
    modes: ClassVar[dict[str, Mode]] = {
        mode: Mode("HeliosPyramidPipeline", MID, _SAMPLING) for mode in ("t2v", "i2v", "v2v")
    }
    # The diffusers docs' Helios-Mid examples: 20 steps per stage, guidance 5 with CFG-Zero*'s zero
    # init (the pipeline's defaults); Helios-Distilled's preset sets its own.
    reference = merged(Helios.reference, settings(steps=20))
    options: ClassVar[tuple[Option, ...]] = (AMPLIFY,)
    memory = _ChunkMemory(replace(FOOTPRINT, sizes={MID: _PARTS, DISTILLED: _PARTS}), decode_batch=4, sliced=False)
    # The first stage works at a quarter of the latent size, in 2x2 patches: 8 x 4 x 2 pixels.
    grid = Grid(size=64, shortest=CHUNK_FRAMES, any_clip=True, note=f"at least {CHUNK_FRAMES} frames")

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        distilled = bool(pipe.config.get("is_distilled"))
        if cfg.sampling.get("is_amplify_first_chunk") and not distilled:
            raise ConfigError(
                f"--amplify-first-chunk is for the step-distilled Helios-Distilled; {cfg.model.id} is not distilled, "
                "so the pipeline would ignore it: drop it."
            )
        guidance = cfg.sampling.guidance_scale
        if distilled and guidance is not None and guidance > 1:
            raise ConfigError(
                f"--guidance {guidance:g} would be ignored: {cfg.model.id} is step-distilled and runs without "
                "guidance; use --guidance 1."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = super().call_kwargs(cfg, seed, frames)
        kwargs["pyramid_num_inference_steps_list"] = [int(kwargs.pop("num_inference_steps", 20))] * STAGES
        if cfg.sampling.get("is_amplify_first_chunk") is not None:
            kwargs["is_amplify_first_chunk"] = cfg.sampling.get("is_amplify_first_chunk")
        return kwargs

    def _steps(self, call_kwargs: dict[str, Any]) -> list[int]:
        stages = sum(call_kwargs["pyramid_num_inference_steps_list"])
        counts = [stages] * chunks_of(call_kwargs["num_frames"])
        # Helios-Distilled's scheduler runs each stage of the first chunk with twice the steps
        # (only the distilled model takes the option: check_loaded).
        counts[0] *= 2 if call_kwargs.get("is_amplify_first_chunk") else 1
        return counts

    def chunk_steps(self, pipe: Any, call_kwargs: dict[str, Any]) -> list[int]:
        return self._steps(call_kwargs)

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return sum(self._steps(call_kwargs))


@contextmanager
def _no_chunk_decode(pipe: Any) -> Any:
    """The pipeline decodes each chunk as it finishes and, asked for latents, throws those frames
    away; vidgen decodes the latents it returns once, as the pipeline does (`decode`). The VAE is
    not random, so skipping that first decode changes nothing else."""
    import torch

    def skipped(latents: Any, return_dict: bool = True) -> Any:
        return (torch.zeros(latents.shape[0], 3, 1, 1, 1, dtype=latents.dtype, device=latents.device),)

    pipe.vae.decode = skipped
    try:
        yield
    finally:
        del pipe.vae.decode


# -- tiny random-weight recipe (diffusers' Helios test config on vidgen's tiny Wan parts) ----------


def _tiny_transformer() -> Any:
    from diffusers import HeliosTransformer3DModel

    return HeliosTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        rope_dim=(4, 4, 4),
    )


def tiny_helios() -> Any:
    from diffusers import HeliosPipeline, HeliosScheduler

    parts = tiny_wan_parts()
    # A one-stage HeliosScheduler with dynamic shifting, as diffusers' tests build it.
    parts["scheduler"] = HeliosScheduler(stage_range=[0, 1], stages=1, use_dynamic_shifting=True)
    return HeliosPipeline(**parts, transformer=_tiny_transformer())


def _tiny_pyramid(distilled: bool) -> Any:
    from diffusers import HeliosDMDScheduler, HeliosPyramidPipeline, HeliosScheduler

    parts = tiny_wan_parts()
    # Three stages, as the checkpoints: Helios-Mid's UniPC-style HeliosScheduler with CFG-Zero*,
    # Helios-Distilled's DMD scheduler.
    scheduler = HeliosDMDScheduler if distilled else HeliosScheduler
    parts["scheduler"] = scheduler(use_dynamic_shifting=True)
    return HeliosPyramidPipeline(
        **parts, transformer=_tiny_transformer(), is_cfg_zero_star=not distilled, is_distilled=distilled
    )


def tiny_pyramid() -> Any:
    return _tiny_pyramid(distilled=False)


def tiny_distilled() -> Any:
    return _tiny_pyramid(distilled=True)


Helios.tiny = {"helios": tiny_helios}
HeliosPyramid.tiny = {"helios-pyramid": tiny_pyramid, "helios-distilled": tiny_distilled}

FAMILIES = (Helios, HeliosPyramid)
