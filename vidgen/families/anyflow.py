"""AnyFlow (NVIDIA, NUS ShowLab): Wan 2.1 1.3B and 14B distilled into flow maps, so one
checkpoint samples in any number of steps (1, 2, 4, 8, ...), with classifier-free guidance fused
into the weights (guidance 1); on the Wan 2.1 VAE (4x8x8, 16 latent channels), prompted by UMT5.

Two pipelines: `AnyFlowPipeline` denoises the whole clip at once (text to video); the causal
`AnyFlowFARPipeline` makes it chunk by chunk of latent frames (text and image to video). FAR's
chunks must add up to the clip's latent frames; its transformer's default is the released
81-frame schedule (1, 3, 3, 3, 3, 3, 3, 2), so vidgen passes the same pattern for the length asked
(a first chunk of one latent frame, then threes, then what is left) and records it. Its `video`
argument is a tensor of frames (batch, frames, channels, height, width) in [0, 1]: image-to-video
passes the image as a one-frame video of that shape, and video-to-video continues a clip: its
frames are the first ones of the output (through the VAE) and the chunks after them are made. The
clip must fill whole chunks (1 latent frame, then threes: 12k+1 frames; a longer clip is cut to that
with a note), else the pipeline would keep a chunk's unfilled latent frames as zeros. diffusers
floors off-grid frame counts with a warning; vidgen refuses them, and sizes off 16, before loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    NO_FORWARD_CHUNKING,
    ONE_VIDEO_PER_CALL,
    Caught,
    Decoding,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    Previewing,
    Takes,
    halved,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.tiny_parts import redraw_zeros
from vidgen.families.wan import UMT5_XXL, VAE_21, tiny_wan_parts

_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
T2V = "nvidia/AnyFlow-Wan2.1-T2V-1.3B-Diffusers"
T2V_14B = "nvidia/AnyFlow-Wan2.1-T2V-14B-Diffusers"
FAR = "nvidia/AnyFlow-FAR-Wan2.1-1.3B-Diffusers"
FAR_14B = "nvidia/AnyFlow-FAR-Wan2.1-14B-Diffusers"
# Parameter counts for the memory planner: AnyFlowTransformer3DModel / AnyFlowFARTransformer3DModel
# built on the meta device with Wan 2.1's published 1.3B (12 heads, 30 blocks, ffn 8960) and 14B
# (40 heads, 40 blocks, ffn 13824) shapes: 1.422B / 14.316B (FAR: 1.422B / 14.317B). The 14B
# repos' own configs were not read (not verified); UMT5-XXL and the Wan 2.1 VAE as in wan.py.
_SMALL = {"transformer": 1.422e9, "text_encoder": UMT5_XXL, "vae": VAE_21}
_LARGE = {"transformer": 14.317e9, "text_encoder": UMT5_XXL, "vae": VAE_21}
_SIZES = {T2V: _SMALL, FAR: _SMALL, T2V_14B: _LARGE, FAR_14B: _LARGE}
# The 14B checkpoints (a marker in the model id -> the Footprint fields that differ).
_SHAPES = {"14b": {"blocks": 40, "width": 5120}}
# Image-to-video keeps the image's latent frame and makes the ones after it.
_I2V_SHORTEST = 5
# What FAR's first chunks are (the released schedule): one latent frame, then threes.
_FIRST_CHUNK, _CHUNK = 1, 3


@dataclass(frozen=True)
class ChunkGrid(Grid):
    """FAR's grid: output frames on 4k+1, input clips of whole chunks (12k+1 frames: one latent
    frame, then threes of four frames each)."""

    def usable(self, count: int) -> int:
        step = self.frames * _CHUNK if self.frames else 1
        usable = (count - 1) // step * step + 1 if count >= 1 else 0
        return usable if usable >= self.shortest else 0


def context_chunks(clip_frames: int) -> int:
    """How many of FAR's chunks a `clip_frames`-frame clip (12k+1) fills."""
    latent = (clip_frames - 1) // 4 + 1
    return 1 + (latent - _FIRST_CHUNK) // _CHUNK


def passes(cfg: RunConfig) -> int:
    """Transformer passes per step: a second, unguided one only when guidance is above 1."""
    guidance = cfg.sampling.guidance_scale
    return 2 if guidance is not None and guidance > 1.0 else 1


def chunk_partition(frames: int) -> list[int]:
    """FAR's chunks (latent frames each) for a `frames`-frame clip, in the released pattern."""
    latent = (frames - 1) // 4 + 1
    rest = latent - _FIRST_CHUNK
    return [_FIRST_CHUNK] + [_CHUNK] * (rest // _CHUNK) + ([rest % _CHUNK] if rest % _CHUNK else [])


def _memory() -> Memory:
    footprint = Footprint(
        denoiser="transformer",
        blocks=30,
        sizes=_SIZES,
        spatial=8,
        temporal=4,
        patch=2,
        width=1536,
        live=10,
        decode=120,
        tiled=0.3,
    )
    # The causal VAE decodes one latent frame (4 video frames) at a time with a feature cache.
    return Memory(footprint, decode_batch=4, sliced=False, passes=passes, shapes=_SHAPES)


_HINTS = {
    "optimization.cache": "AnyFlow's transformers have no cache hooks in diffusers (no CacheMixin)",
    "optimization.attention_slicing": "it attends through diffusers' dispatcher; pick --attention-backend",
    "optimization.decode_chunk_size": "its VAE decodes one latent frame at a time already; use --vae-tiling",
    "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
    "optimization.forward_chunking": NO_FORWARD_CHUNKING,
    "optimization.compile": "not checked on AnyFlow's transformers",
    "optimization.quantize": "not checked on AnyFlow's transformers; use --fp8-storage",
    "model.scheduler": "AnyFlow samples with its flow-map Euler scheduler, which steps to a target timestep",
    "model.loras": "not checked on AnyFlow yet",
}


class _Previewing(Previewing):
    """Previews of the step callback's latents, which AnyFlow keeps as (batch, frames, channels,
    height, width): brought to the VAE's layout before the family's decode."""

    def decode(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], latents: Any) -> Any:
        return self.family.decode(pipe, cfg, Caught(halved(self.latents(pipe, cfg, call_kwargs, latents))))


class AnyFlow(Family):
    name = "anyflow"
    title = "AnyFlow"
    modes: ClassVar[dict[str, Mode]] = {"t2v": Mode("AnyFlowPipeline", T2V, _SAMPLING)}
    # The diffusers docs' example: 4 steps, 33 frames, exported at 16 fps; the pipeline's 832x480 and
    # guidance 1 (classifier-free guidance is fused into the weights).
    reference = settings(size=(480, 832), frames=33, steps=4, guidance=1.0, fps=16)
    # Checked on the tiny model (tests/test_anyflow.py): the attention dispatcher, fp8 storage and
    # VAE tiling. Offload needs CUDA (the pipeline declares its model offload order).
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "attention_backend", "fp8_storage"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = _HINTS
    loading = Loading(cuda_dtype="bf16")
    memory = _memory()
    grid = Grid(frames=4, size=16)
    # Latent output, decoded as the pipeline does (the Wan VAE's per-channel statistics).
    decoding = Decoding(latents="latent")
    # The step callback gets its latents as (batch, frames, channels, height, width).
    previewing = _Previewing(tae="taew2_1.safetensors", layout="ntchw")

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0))

    tiny: ClassVar[dict[str, Any]] = {}


def image_video(image: Any) -> Any:
    """An image, or a clip (a list of frames), as the video FAR's `video` takes: (1, frames, 3,
    height, width) in [0, 1]."""
    import numpy as np
    import torch

    frames = image if isinstance(image, list) else [image]
    pixels = np.stack([np.asarray(frame.convert("RGB"), dtype=np.float32) for frame in frames]) / 255.0
    return torch.from_numpy(pixels).permute(0, 3, 1, 2)[None]


class AnyFlowFAR(Family):
    name = "anyflow-far"
    title = "AnyFlow FAR"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("AnyFlowFARPipeline", FAR, _SAMPLING),
        # The image goes to the pipeline's `video` (as a one-frame tensor, see `call`).
        "i2v": Mode("AnyFlowFARPipeline", FAR, _SAMPLING, media={"image": "video"}),
        # The clip goes to `video` too (as a tensor); the output continues it to --frames. 37 frames
        # by default: the first 10 of the 21 latent frames of the released 81-frame schedule.
        "v2v": Mode("AnyFlowFARPipeline", FAR, _SAMPLING, defaults={"inputs": {"max_frames": 37}}),
    }
    # The diffusers docs' examples: 4 steps, 81 frames (the released chunk schedule's length),
    # exported at 16 fps; the pipeline's 832x480 and guidance 1 (fused into the weights).
    reference = settings(size=(480, 832), frames=81, steps=4, guidance=1.0, fps=16)
    # Checked on the tiny model (tests/test_anyflow.py): fp8 storage and VAE tiling. Offload needs
    # CUDA. Its attention runs diffusers' flex backend with a causal block mask of its own.
    takes = Takes(optimizations=frozenset({"offload", "vae_tiling", "fp8_storage"}), caches=frozenset(), schedulers={})
    hints: ClassVar[dict[str, str]] = {
        **_HINTS,
        "optimization.attention_backend": "AnyFlow FAR attends with flex attention and its causal chunk mask",
        "optimization.attention_slicing": "AnyFlow FAR attends with flex attention and its causal chunk mask",
    }
    loading = Loading(cuda_dtype="bf16")
    memory = _memory()
    grid = ChunkGrid(frames=4, size=16, shortest=13, note="12k+1 frames (whole FAR chunks)")
    decoding = Decoding(latents="latent")
    # Each step denoises one chunk, so no step holds the whole video.
    previewing = Previewing(refused="AnyFlow FAR denoises chunk by chunk: no step holds the whole video")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        frames = cfg.sampling.num_frames
        if cfg.mode == "i2v" and frames is not None and frames < _I2V_SHORTEST:
            raise ConfigError(
                f"--frames {frames} is too short for {self.title} image-to-video: it needs at least {_I2V_SHORTEST} "
                f"frames (4k+1), the image's latent frame and one more; nearest valid: {_I2V_SHORTEST}."
            )

    def check_frames(self, cfg: RunConfig, frames: int) -> None:
        total = cfg.sampling.num_frames
        if cfg.mode == "v2v" and total is not None and total <= frames:
            longer = frames + 4 * _CHUNK
            raise ConfigError(
                f"--frames {total}: the output continues the {frames}-frame input clip, so it must be longer; "
                f"use --frames {longer} (one more chunk) or more, or a shorter clip (--max-frames)."
            )

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if cfg.mode == "v2v":
            return {"run": "video: the clip as a tensor (1, frames, 3, height, width) of its pixels / 255"}
        if cfg.mode != "i2v":
            return {}
        return {"run": "video: the image as a tensor (1, 1, 3, height, width) of its pixels / 255"}

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        kwargs["chunk_partition"] = chunk_partition(kwargs.get("num_frames", 81))
        kwargs["output_type"] = "np"
        return kwargs

    def _media(self, media: dict[str, Any]) -> dict[str, Any]:
        return {**media, "video": image_video(media["video"])} if "video" in media else media

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        return super().call(pipe, cfg, call_kwargs, self._media(media), **extra)

    def latent_call(
        self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any
    ) -> Any:
        return super().latent_call(pipe, cfg, call_kwargs, self._media(media), **extra)

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        # Steps call back in every chunk but the image's (context chunks only fill the KV cache).
        chunks = len(call_kwargs.get("chunk_partition") or chunk_partition(81))
        clip = (media or {}).get("video")
        context = context_chunks(len(clip)) if isinstance(clip, list) else 1 if cfg.mode != "t2v" else 0
        return max(chunks - context, 1) * int(call_kwargs.get("num_inference_steps", 0))

    tiny: ClassVar[dict[str, Any]] = {}


# -- tiny random-weight recipes (after diffusers' own AnyFlow tests, offline tokenizer) ------------


def _tiny(far: bool) -> Any:
    from diffusers import (
        AnyFlowFARPipeline,
        AnyFlowFARTransformer3DModel,
        AnyFlowPipeline,
        AnyFlowTransformer3DModel,
        FlowMapEulerDiscreteScheduler,
    )

    shape = {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 12,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 32,  # the tiny UMT5's d_model
        "freq_dim": 256,
        "ffn_dim": 32,
        "num_layers": 2,
        "cross_attn_norm": True,
        "rope_max_seq_len": 32,
        "gate_value": 0.25,
        "deltatime_type": "r",
    }
    if far:
        transformer = AnyFlowFARTransformer3DModel(compressed_patch_size=(1, 4, 4), full_chunk_limit=3, **shape)
    else:
        transformer = AnyFlowTransformer3DModel(**shape)
    # Zero-initialised tensors (the blocks' norm biases) are drawn at random, so every part counts.
    redraw_zeros(transformer)
    parts = tiny_wan_parts()
    # The flow-map scheduler the AnyFlow repos ship (diffusers' tests: shift 5).
    parts["scheduler"] = FlowMapEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    pipeline = AnyFlowFARPipeline if far else AnyFlowPipeline
    return pipeline(transformer=transformer.eval(), **parts)


def tiny_t2v() -> Any:
    return _tiny(far=False)


def tiny_far() -> Any:
    return _tiny(far=True)


AnyFlow.tiny = {"anyflow": tiny_t2v}
AnyFlowFAR.tiny = {"anyflow-far": tiny_far}

FAMILIES = (AnyFlow, AnyFlowFAR)
