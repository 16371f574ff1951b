"""Wan Animate (Wan-AI, Wan 2.2 Animate 14B): a character image driven by a performance.

`vidgen control PROMPT --control POSE --face FACE --character IMAGE` animates the character with
the motion of a pose video (rendered skeletons, --control) and the expressions of a face video
(face crops, --face), one output frame per pose frame. Give --background-video and --mask too and
it replaces the person in that video instead (white = generate, black = keep, as VACE's --mask).
The pose and face videos are what Wan Animate's own preprocessing makes from a clip; vidgen does
not make them (diffusers has no preprocessor for them).

`WanAnimatePipeline` makes the video in segments of --segment-frames frames (77), each starting
from the last --segment-overlap frames (1 or 5) of the one before, and decodes each segment inside
its own call: there are no final latents to save.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from vidgen.config.kinds import InputKind, register_input
from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
    Decoding,
    Family,
    Grid,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Option,
    Previewing,
    Takes,
    option_kwargs,
    prompt_kwargs,
    sampling_kwargs,
    settings,
    shift_scheduler,
)
from vidgen.families.tiny_parts import redraw_zeros
from vidgen.families.wan import CLIP_H, FLOW_SHIFT, FOOTPRINT, UMT5_XXL, VAE_21, check_positions, wan_memory

# The inputs only Wan Animate takes, declared once: flag, reader, --help line, trust, sidecar,
# batch identity, inspect and replay all follow from these.
register_input(
    InputKind(
        "character",
        "--character",
        "image",
        "Wan Animate: the character to animate (PNG, JPEG or WebP file, or URL); letterboxed on black.",
        "IMAGE",
    )
)
register_input(
    InputKind(
        "face_video",
        "--face",
        "video",
        "Wan Animate: face crops of the performer, one per --control (pose) frame; read at their own size.",
        "VIDEO|DIR",
        own_size=True,
        frames_of="control",
    )
)
register_input(
    InputKind(
        "background_video",
        "--background-video",
        "video",
        "Wan Animate replace mode: the video whose person is replaced, one frame per --control frame (with --mask).",
        "VIDEO|DIR",
        frames_of="control",
    )
)

REPO = "Wan-AI/Wan2.2-Animate-14B-Diffusers"
_CALL = frozenset({"num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
_SEGMENT = 77
SEGMENT = Option(
    "segment_frame_length",
    "--segment-frames",
    int,
    "Wan Animate (-2): frames made per segment (4k+1; default 77, on Wan-Animate-2 81); longer videos are made "
    "segment by segment.",
    ge=5,
    le=1001,
)
OVERLAP = Option(
    "prev_segment_conditioning_frames",
    "--segment-overlap",
    int,
    "Wan Animate (-2): frames of the previous segment each segment starts from, 1 or 5 (default 1).",
    ge=1,
    le=5,
)
# Parameters: a Wan 2.1 14B transformer (40 blocks of 5120) plus the face adapter (cross-attention
# every 5th block), motion and face encoders: an estimate from the block sizes, not a file count.
_TRANSFORMER = 14.288e9 + 8 * 4 * 5120 * 5120 + 0.4e9
_SIZES = {REPO: {"transformer": _TRANSFORMER, "text_encoder": UMT5_XXL, "vae": VAE_21, "image_encoder": CLIP_H}}


def _segment(cfg: RunConfig) -> int:
    return cfg.sampling.get("segment_frame_length") or _SEGMENT


class _Segments(Memory):
    """One denoiser forward sees one segment, plus the character's latent frame, whatever the
    video's length."""

    def latent_frames(self, cfg: RunConfig, frames: int) -> int:
        return (_segment(cfg) - 1) // self.footprint.temporal + 2


def replacing(cfg: RunConfig) -> bool:
    """Replace mode: a background video (and its mask) is given."""
    return bool(cfg.inputs.get("background_video"))


class WanAnimate(Family):
    name = "wan-animate"
    title = "Wan Animate"
    modes: ClassVar[dict[str, Mode]] = {
        "control": Mode(
            "WanAnimatePipeline",
            REPO,
            _CALL,
            inputs=frozenset({"character", "face_video", "background_video", "mask"}),
            requires=frozenset({"character", "face_video"}),
            media={"control": "pose_video", "mask": "mask_video", "character": "image"},
            # The pose video is rendered already; the character is letterboxed on black, as the
            # pipeline's own image processor fills it.
            defaults={"inputs": {"preprocess": "none", "resize": "pad", "background": "black"}},
        )
    }
    # The diffusers example: 720x1280 (the pipeline's default), 20 steps, guidance 1 (no CFG),
    # 77-frame segments overlapping by 1, written at 30 fps; Wan's 512-token prompts.
    reference = settings(size=(720, 1280), steps=20, guidance=1.0, fps=30, max_sequence_length=512)
    options: ClassVar[tuple[Option, ...]] = (FLOW_SHIFT, SEGMENT, OVERLAP)
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "fp8_storage", "attention_backend"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "sampling.num_frames": "the --control (pose) video sets the length",
        "optimization.cache": "not checked on Wan Animate's segment loop yet",
        "optimization.compile": "not checked on Wan Animate yet",
        "optimization.quantize": "not checked on Wan Animate yet; use --fp8-storage",
        "optimization.decode_chunk_size": "the Wan VAE decodes frame by frame already; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "it attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": "its feed-forward layers take no chunking; use --offload group",
        "model.scheduler": "Wan Animate ships UniPC with flow sigmas; --flow-shift sets its shift",
        "model.loras": "not checked on Wan Animate yet",
        "inputs.reference_images": "Wan Animate takes one character image: --character IMAGE",
    }
    # As Wan: the VAE and the CLIP image encoder in fp32 beside a bf16 transformer.
    loading = Loading(cuda_dtype="bf16", dtypes={"vae": "fp32", "image_encoder": "fp32"})
    memory = wan_memory(replace(FOOTPRINT, sizes=_SIZES), part=_Segments)
    # Any length from 2 frames (a segment starts from one frame of the one before); the Wan 2.1 VAE
    # and 2x2 patches: sizes in multiples of 16.
    grid = Grid(frames=1, size=16, shortest=2, note="any number of frames, at least 2")
    # Each segment is decoded inside the pipeline's call.
    decoding = Decoding(latents=None)
    previewing = Previewing(refused="Wan Animate denoises segment by segment and decodes each inside its own call")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        if replacing(cfg) != bool(cfg.inputs.mask):
            given, missing = ("--background-video", "--mask") if replacing(cfg) else ("--mask", "--background-video")
            raise ConfigError(
                f"{given} asks Wan Animate to replace a person in a video, which needs {missing} too; "
                "give both, or neither to animate the character alone."
            )
        if (cfg.inputs.preprocess or "none") != "none":
            raise ConfigError(
                f"--preprocess {cfg.inputs.preprocess} does not fit Wan Animate: --control is its rendered pose video; "
                "drop --preprocess."
            )
        segment = cfg.sampling.get("segment_frame_length")
        if segment is not None and (segment - 1) % 4:
            low = (segment - 1) // 4 * 4 + 1
            raise ConfigError(
                f"--segment-frames {segment} does not fit Wan Animate: it needs 4k+1 frames; "
                f"nearest valid: {max(low, 5)} or {low + 4}."
            )
        overlap = cfg.sampling.get("prev_segment_conditioning_frames")
        if overlap is not None and overlap not in (1, 5):
            raise ConfigError(f"--segment-overlap {overlap} does not fit Wan Animate: it takes 1 or 5.")

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        # One forward places a segment and the character's latent frame.
        sampling = cfg.sampling.model_copy(update={"num_frames": _segment(cfg) + 4})
        check_positions(pipe, cfg.model_copy(update={"sampling": sampling}))

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        return shift_scheduler(pipe, cfg)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, _CALL), **option_kwargs(self, cfg)}
        kwargs["mode"] = "replace" if replacing(cfg) else "animate"
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        steps = int(call_kwargs.get("num_inference_steps", 0))
        pose = (media or {}).get("pose_video")
        if not pose:
            return steps
        # The pipeline's own segment count: the pose frames after the first overlap, in segments
        # of (segment - overlap) new frames, the last one padded.
        segment = call_kwargs.get("segment_frame_length", _SEGMENT)
        overlap = call_kwargs.get("prev_segment_conditioning_frames", 1)
        new = segment - overlap
        return steps * max(1, -(-(len(pose) - overlap) // new))

    tiny: ClassVar[dict[str, Any]] = {}


def tiny_animate() -> Any:
    """Wan Animate at a tiny scale: the tiny Wan transformer's shape with a 16-pixel face motion
    encoder, a face adapter on every block, the tiny CLIP image encoder and the Wan 2.1 parts."""
    from diffusers import WanAnimatePipeline, WanAnimateTransformer3DModel

    from vidgen.families.wan import tiny_clip, tiny_wan_parts

    transformer = WanAnimateTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,
        latent_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        image_dim=4,
        rope_max_seq_len=32,
        motion_encoder_channel_sizes={"16": 8, "8": 8, "4": 8},
        motion_encoder_size=16,
        motion_style_dim=8,
        motion_dim=4,
        motion_encoder_dim=8,
        face_encoder_hidden_dim=8,
        face_encoder_num_heads=2,
        inject_face_latents_blocks=1,
    )
    # Zero-initialised layers (the face adapter's output projections, as in training) would let
    # the face video change nothing: they are drawn at random instead.
    redraw_zeros(transformer)
    return WanAnimatePipeline(**tiny_wan_parts(5.0), **tiny_clip(32, 8), transformer=transformer.eval())


WanAnimate.tiny = {"wan-animate": tiny_animate}

FAMILIES = (WanAnimate,)
