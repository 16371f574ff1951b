"""Wan-Animate-2 (Wan-AI, Wan 2.2 Animate-2 14B): a character image driven by a raw video.

`vidgen control PROMPT --control DRIVING --character IMAGE` animates the character with the
motion of the driving video as it is: a clip of the performer, no pose skeletons or face crops
(the model reads the motion itself). The character is letterboxed on black to --height x
--width (800x640 by default), and the driving frames to the same size; one output frame per
driving frame.

It is vidgen's first diffusers ModularPipeline: built from the blocks named here
(`WanAnimate2Blocks`, or `WanAnimate2DistilledBlocks` for the few-step checkpoint), its
components loaded from the model's own folder or repo (see `families.base.Modular`). It takes
no guidance_scale: --guidance replaces its guider (classifier-free guidance at 3 on the base
checkpoint; the distilled one runs without). It makes the video in segments of --segment-frames
(81) that overlap by --segment-overlap (1) and decodes each inside its loop, since the next
segment starts from the last one's decoded frames: there are no final latents to save.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, InputError
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
    Decoding,
    Family,
    Grid,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Modular,
    Option,
    Previewing,
    Takes,
    option_kwargs,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.tiny_parts import redraw_zeros
from vidgen.families.wan import CLIP_H, FOOTPRINT, UMT5_XXL, VAE_21, wan_memory
from vidgen.families.wan_animate import OVERLAP, SEGMENT

BASE = "Wan-AI/Wan2.2-Animate-2-14B-Diffusers"
DISTILLED = "Wan-AI/Wan2.2-Animate-2-14B-Distilled-Diffusers"
# Passed to the call; guidance_scale is set on the guider (setup), never passed.
_CALL = frozenset({"num_inference_steps", "height", "width", "max_sequence_length"})
_SEGMENT = 81
_OVERLAP = 1
# The transformer counted on the meta device from WanAnimate2Transformer3DModel's defaults (the
# published 14B shape: 40 blocks of 5120, the CLIP projection): 16.39e9, as Wan 2.1 I2V 14B.
_TRANSFORMER = 16.395e9
_PARTS = {"transformer": _TRANSFORMER, "text_encoder": UMT5_XXL, "vae": VAE_21, "image_encoder": CLIP_H}
_SIZES = {BASE: _PARTS, DISTILLED: _PARTS}
# The base checkpoint's guider (diffusers' WanAnimate2 blocks: ClassifierFreeGuidance at 3).
_GUIDANCE = 3.0


def _segment(cfg: RunConfig) -> int:
    return cfg.sampling.get("segment_frame_length") or _SEGMENT


def _overlap(cfg: RunConfig) -> int:
    return cfg.sampling.get("prev_segment_conditioning_frames") or _OVERLAP


def padding(frames: int, segment: int, overlap: int) -> int:
    """The mirrored frames the pipeline adds to fill the last segment (diffusers'
    WanAnimate2ProcessVideosInputStep), mirrored from the video's own last frames."""
    step = segment - overlap
    leftover = (frames - overlap) % step if frames > overlap else 0
    return step - leftover if leftover else 0


def segments(frames: int, segment: int, overlap: int) -> int:
    """How many segments the pipeline makes of a `frames`-frame driving video."""
    step = segment - overlap
    return (frames + padding(frames, segment, overlap) - overlap + step - 1) // step


class _Segments(Memory):
    """One forward sees a segment and the character's latent frame, beside the reference pass's
    K/V cache (the driving segment's keys and values in every block), whatever the length."""

    def latent_frames(self, cfg: RunConfig, frames: int) -> int:
        fp = self.footprint
        latent = (_segment(cfg) - 1) // fp.temporal + 1
        # The cache: two tensors of a segment's tokens per block, held through every step; the
        # planner counts `live` tensors per latent frame (twice when guided), so it is added as
        # that many latent frames.
        cached = latent * 2 * fp.blocks // (fp.live * (2 if self.guided(cfg) else 1))
        return latent + 1 + cached


def passes(cfg: RunConfig) -> int:
    """Transformer passes per step: the base guider runs an unguided pass unless guidance is 1."""
    guidance = cfg.sampling.guidance_scale
    return 1 if guidance is not None and guidance <= 1.0 else 2


class WanAnimate2(Family):
    name = "wan-animate-2"
    title = "Wan-Animate-2"
    modes: ClassVar[dict[str, Mode]] = {
        "control": Mode(
            "WanAnimate2ModularPipeline",
            BASE,
            _CALL | {"guidance_scale"},
            inputs=frozenset({"character"}),
            requires=frozenset({"character"}),
            media={"control": "driving_video", "character": "image"},
            # The driving video is a raw clip; the character and the clip are letterboxed on black,
            # as the pipeline's own processor fills them (so it passes them through unchanged).
            defaults={"inputs": {"preprocess": "none", "resize": "pad", "background": "black"}},
            # A ModularPipeline has no enable_model_cpu_offload, and accelerate's per-layer hooks
            # cannot carry the transformer's K/V cache object: --offload group.
            model_offload=False,
            sequential_offload=False,
        )
    }
    # diffusers' docs: 800x640 (by area), 40 steps, its guider's CFG 3, 81-frame segments
    # overlapping by 1, written at 24 fps; Wan's 512-token prompts.
    reference = settings(size=(800, 640), steps=40, guidance=_GUIDANCE, fps=24, max_sequence_length=512)
    options: ClassVar[tuple[Option, ...]] = (SEGMENT, OVERLAP)
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "fp8_storage", "compile"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "sampling.num_frames": "the --control (driving) video sets the length",
        "optimization.cache": "not checked on Wan-Animate-2's segment loop yet",
        "optimization.attention_backend": "its in-context attention runs on the flex backend only",
        "optimization.quantize": "not checked on Wan-Animate-2 yet; use --fp8-storage",
        "optimization.decode_chunk_size": "the Wan VAE decodes frame by frame already; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "its attention runs on the flex backend; diffusers' slicing does not apply",
        "optimization.forward_chunking": "its feed-forward layers take no chunking; use --offload group",
        "model.scheduler": "Wan-Animate-2 runs the scheduler its checkpoint ships",
        "model.loras": "not checked on Wan-Animate-2 yet",
        "inputs.reference_images": "Wan-Animate-2 takes one character image: --character IMAGE",
        "inputs.face_video": "Wan-Animate-2 reads the face from the driving video itself: drop --face",
        "inputs.background_video": "Wan-Animate-2 animates the character only; replacing a person is Wan Animate's",
        "inputs.mask": "Wan-Animate-2 animates the character only; replacing a person is Wan Animate's",
    }
    # As Wan: the VAE and the CLIP image encoder in fp32 beside a bf16 transformer. The guidance
    # is set on the guider once after loading, so jobs that differ in it cannot share a pipeline.
    loading = Loading(
        cuda_dtype="bf16",
        dtypes={"vae": "fp32", "image_encoder": "fp32"},
        setup_fields=frozenset({"guidance_scale"}),
        modular=Modular("WanAnimate2Blocks"),
    )
    memory = wan_memory(replace(FOOTPRINT, sizes=_SIZES), part=_Segments, passes=passes)
    # Any length the segments can mirror-pad (see check_frames); the Wan 2.1 VAE and 2x2 patches:
    # sizes in multiples of 16.
    grid = Grid(frames=1, size=16, shortest=2, note="any number of frames, at least 2")
    # Each segment is decoded inside the loop: the next one starts from its decoded frames.
    decoding = Decoding(latents=None)
    previewing = Previewing(refused="Wan-Animate-2 denoises segment by segment and decodes each inside its loop")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        if (cfg.inputs.preprocess or "none") != "none":
            raise ConfigError(
                f"--preprocess {cfg.inputs.preprocess} does not fit {self.title}: --control is the raw driving "
                "video; drop --preprocess."
            )
        offload = cfg.optimization.offload
        if offload in ("model", "sequential"):
            why = (
                "a modular pipeline has no model offload"
                if offload == "model"
                else "accelerate's per-layer hooks fail on its transformer's K/V cache"
            )
            raise ConfigError(f"--offload {offload} does not fit {self.title}: {why}; use --offload group.")
        segment, overlap = _segment(cfg), _overlap(cfg)
        if (segment - 1) % 4:
            low = (segment - 1) // 4 * 4 + 1
            raise ConfigError(
                f"--segment-frames {segment} does not fit {self.title}: it needs 4k+1 frames; "
                f"nearest valid: {max(low, 5)} or {low + 4}."
            )
        if overlap not in (1, 5) or overlap >= segment:
            raise ConfigError(
                f"--segment-overlap {overlap} does not fit {self.title}: it takes 1 or 5, fewer than --segment-frames."
            )
        guidance = cfg.sampling.guidance_scale
        if guidance is not None and guidance < 1:
            raise ConfigError(
                f"--guidance {guidance:g} is out of range for {self.title}: its guider takes 1 (no guidance) or "
                f"more; the model card uses {_GUIDANCE:g}."
            )

    def check_frames(self, cfg: RunConfig, frames: int) -> None:
        segment, overlap = _segment(cfg), _overlap(cfg)
        if frames <= overlap:
            raise InputError(
                f"the driving video gives {frames} frame(s); {self.title} needs more than --segment-overlap {overlap}."
            )
        # The pipeline fills the last segment with the video's own last frames, mirrored; a
        # video shorter than that fill breaks inside the pipeline (diffusers 0.42.1).
        fill = padding(frames, segment, overlap)
        if fill > frames:
            shortest = next(n for n in range(frames, 10 * segment) if padding(n, segment, overlap) <= n)
            raise InputError(
                f"the driving video gives {frames} frames, too few for --segment-frames {segment}: {self.title} "
                f"fills the last segment with {fill} of the video's own frames; give at least {shortest} frames "
                "or a smaller --segment-frames."
            )

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        guidance = cfg.sampling.guidance_scale
        if guidance is None or guidance == pipe.guider.config.get("guidance_scale"):
            return []
        pipe.guider = pipe.guider.new(guidance_scale=guidance)
        return [{"method": "guider = guider.new", "kwargs": {"guidance_scale": guidance}}]

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, _CALL), **option_kwargs(self, cfg)}
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        steps = int(call_kwargs.get("num_inference_steps", 0))
        driving = (media or {}).get("driving_video")
        if not driving:
            return steps
        segment = call_kwargs.get("segment_frame_length", _SEGMENT)
        return steps * segments(len(driving), segment, call_kwargs.get("prev_segment_conditioning_frames", _OVERLAP))

    tiny: ClassVar[dict[str, Any]] = {}


class WanAnimate2Distilled(WanAnimate2):
    name = "wan-animate-2-distilled"
    title = "Wan-Animate-2 Distilled"
    modes: ClassVar[dict[str, Mode]] = {
        # No guidance_scale: the distilled checkpoint's guider is pinned to 1.
        "control": replace(
            WanAnimate2.modes["control"], pipeline="WanAnimate2DistilledModularPipeline", repo=DISTILLED, sampling=_CALL
        )
    }
    # diffusers' docs: the base settings, 10 steps without guidance (its guider is pinned to 1).
    reference = settings(size=(800, 640), steps=10, fps=24, max_sequence_length=512)
    hints: ClassVar[dict[str, str]] = {
        **WanAnimate2.hints,
        "sampling.guidance_scale": "the distilled checkpoint samples without guidance (its guider is pinned to 1)",
    }
    loading = replace(WanAnimate2.loading, setup_fields=frozenset(), modular=Modular("WanAnimate2DistilledBlocks"))
    memory = wan_memory(replace(FOOTPRINT, sizes=_SIZES, guided=False), part=_Segments)


def _tiny(blocks: str) -> Any:
    """Wan-Animate-2 at a tiny scale: a two-block transformer of width 24, the tiny Wan 2.1 parts
    (UMT5, VAE) and a two-layer CLIP vision tower of the real width (1280: the transformer's
    image projection is fixed) at 224 px with 32 px patches."""
    import diffusers
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanAnimate2Transformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from vidgen.families.tiny_parts import ModularSaved
    from vidgen.families.wan import tiny_wan_parts

    torch.manual_seed(0)
    parts = tiny_wan_parts()
    transformer = WanAnimate2Transformer3DModel(
        patch_size=(1, 2, 2),
        text_len=16,
        in_dim=36,
        dim=24,
        ffn_dim=32,
        freq_dim=256,
        text_dim=32,
        out_dim=16,
        num_heads=2,
        num_layers=2,
    )
    # Zero-initialised output layers (as in training) would make every prompt and video alike:
    # drawn at random instead.
    redraw_zeros(transformer)
    clip = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=1280,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=224,
            intermediate_size=16,
            patch_size=32,
        )
    ).eval()
    pipe = getattr(diffusers, blocks)().init_pipeline()
    pipe.update_components(
        transformer=transformer.eval(),
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        image_encoder=clip,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
    )
    return ModularSaved(pipe)


def tiny_animate2() -> Any:
    return _tiny("WanAnimate2Blocks")


def tiny_animate2_distilled() -> Any:
    return _tiny("WanAnimate2DistilledBlocks")


WanAnimate2.tiny = {"wan-animate-2": tiny_animate2}
WanAnimate2Distilled.tiny = {"wan-animate-2-distilled": tiny_animate2_distilled}

FAMILIES = (WanAnimate2, WanAnimate2Distilled)
