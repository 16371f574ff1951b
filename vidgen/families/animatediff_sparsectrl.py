"""AnimateDiff SparseCtrl: a text-to-video AnimateDiff run steered by a few keyframes.

`vidgen animate PROMPT --keyframe 0:first.png --keyframe 15:last.png`: each image is placed at
its frame (diffusers' `conditioning_frames` and `controlnet_frame_indices`) and a
SparseControlNetModel pulls the video through them; frames without a keyframe are free. The
scribble model takes line drawings (white lines on black), the RGB model ordinary pictures,
which its pipeline encodes with the VAE. Same motion adapter, base models and FreeInit as
AnimateDiff; diffusers' SparseCtrl pipeline has no FreeNoise, so no prompt travel or windows.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.animatediff import MODEL_FIELDS, SAMPLING, SD15_BASE, SETUP_FIELDS, SIZES, AnimateDiff
from vidgen.families.base import SDPA_SLICING, Footprint, Loading, Memory, Mode, Takes, merged, settings
from vidgen.families.tiny_parts import redraw_zeros

SCRIBBLE = "guoyww/animatediff-sparsectrl-scribble"
RGB = "guoyww/animatediff-sparsectrl-rgb"
# The v3 motion adapter SparseCtrl was trained with (the diffusers SparseCtrl examples').
ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-3"
# Published sizes: each repo's diffusion_pytorch_model.fp16.safetensors (rgb 994 MB, scribble
# 996 MB as the original mm_sd15_v3_sparsectrl_*.safetensors) at 2 bytes a parameter.
_SPARSE_SIZES = {**SIZES, RGB: {"controlnet": 4.97e8}, SCRIBBLE: {"controlnet": 4.98e8}}
# FreeNoise (context windows) is not in diffusers' SparseCtrl pipeline; FreeInit is.
_NO_FREE_NOISE = frozenset({"context_length", "context_stride"})
_STANDARD_CONTROLNETS = ("canny", "pose", "depth")


class AnimateDiffSparseCtrl(AnimateDiff):
    name = "animatediff-sparsectrl"
    title = "AnimateDiff SparseCtrl"
    modes: ClassVar[dict[str, Mode]] = {
        "animate": Mode(
            "AnimateDiffSparseControlNetPipeline",
            SD15_BASE,
            (SAMPLING - _NO_FREE_NOISE) | {"num_frames", "controlnet_conditioning_scale"},
            # The keyframes (--keyframe FRAME:IMAGE), read at the run's size, go in as the
            # pipeline's conditioning_frames; their frames are the call's controlnet_frame_indices.
            inputs=frozenset({"conditions"}),
            requires=frozenset({"conditions"}),
            media={"conditions": "conditioning_frames"},
            model=MODEL_FIELDS | {"controlnet"},
            defaults={"model": {"controlnet": SCRIBBLE}, "sampling": {"controlnet_conditioning_scale": 1.0}},
            # The RGB model's keyframes are VAE-encoded with a sample of the posterior drawn from
            # torch's global RNG (diffusers 0.42.1 passes no generator to retrieve_latents there).
            seeds_global_rng=True,
        )
    }
    # The diffusers SparseCtrl example: v1-5-3 adapter, 25 steps, ControlNet scale 1; AnimateDiff's
    # 16 frames at 512x512, guidance 7.5 (the pipeline's default), 8 fps.
    reference = merged({"model": {"motion_adapter": ADAPTER}}, settings(size=(512, 512), frames=16, steps=25, fps=8))
    takes = Takes(
        model=MODEL_FIELDS | {"controlnet"},
        optimizations=frozenset({"offload", "vae_tiling", "vae_slicing", "forward_chunking", "fp8_storage", "compile"}),
    )
    hints: ClassVar[dict[str, str]] = {
        **AnimateDiff.hints,
        "sampling.context_length": "diffusers' SparseCtrl pipeline has no FreeNoise (context windows)",
        "sampling.context_stride": "diffusers' SparseCtrl pipeline has no FreeNoise (context windows)",
        "inputs.prompts": "prompt travel needs FreeNoise, which diffusers' SparseCtrl pipeline lacks",
        "optimization.decode_chunk_size": "its pipeline decodes every frame in one VAE call; use --vae-slicing",
        "optimization.attention_slicing": SDPA_SLICING,
    }
    loading = Loading(
        cuda_dtype="fp16",
        single_file=True,
        components={"motion_adapter": "MotionAdapter", "controlnet": "SparseControlNetModel"},
        setup_fields=SETUP_FIELDS - _NO_FREE_NOISE,
    )
    memory = Memory(Footprint(denoiser="unet", blocks=16, sizes=_SPARSE_SIZES), sliced=True)

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        if cfg.model.controlnet in _STANDARD_CONTROLNETS:
            raise ConfigError(
                f"--controlnet {cfg.model.controlnet} is a per-frame SD 1.5 ControlNet; SparseCtrl needs a "
                f"SparseControlNetModel: {SCRIBBLE} (line drawings) or {RGB} (pictures)."
            )
        conditions = cfg.inputs.conditions or []  # at least one: the mode requires them
        frames = cfg.sampling.num_frames
        seen: set[int] = set()
        for condition in conditions:
            if condition.video or not condition.image:
                raise ConfigError(
                    f"{self.title} takes keyframe images (--keyframe FRAME:IMAGE), not clips (--condition-video)."
                )
            what = f"--keyframe {condition.frame_index}:{condition.image}"
            if condition.strength != 1.0:
                raise ConfigError(
                    f"{what}:{condition.strength}: SparseCtrl has no per-keyframe strength; drop it and set "
                    "--control-scale for all keyframes."
                )
            if frames is not None and condition.frame_index >= frames:
                raise ConfigError(
                    f"{what} is past the last frame: the video has {frames} frames (0 to {frames - 1}); "
                    f"use a frame below {frames} or more --frames."
                )
            if condition.frame_index in seen:
                raise ConfigError(f"{what}: two keyframes at frame {condition.frame_index}; give one image a frame.")
            seen.add(condition.frame_index)

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        super().check_loaded(pipe, cfg, frames)
        # The ControlNet has motion modules of its own, with their own longest sequence.
        limit = pipe.controlnet.config.motion_max_seq_length
        count = cfg.sampling.num_frames
        if count is not None and count > limit:
            raise ConfigError(f"--frames {count}: this SparseCtrl model handles at most {limit} frames at once.")

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = super().call_kwargs(cfg, seed, frames)
        # In the order given, as the keyframe images are passed.
        kwargs["controlnet_frame_indices"] = [condition.frame_index for condition in cfg.inputs.conditions or []]
        return kwargs

    tiny: ClassVar[dict[str, Any]] = {}


# -- tiny random-weight recipe (matches vidgen/models/tiny.py's SD 1.5 base and motion adapter) ----


def _tiny(conditioning_channels: int, simplified: bool) -> Any:
    """A SparseControlNetModel for the tiny SD 1.5 base: its two levels of 8 channels, the motion
    adapter's temporal heads. The scribble model sees images (3 channels, its own conditioning
    encoder), the RGB one VAE latents (4 channels, the simplified embedding), as diffusers'
    converter script builds them."""
    from diffusers import SparseControlNetModel

    model = SparseControlNetModel(
        conditioning_channels=conditioning_channels,
        use_simplified_condition_embedding=simplified,
        block_out_channels=(8, 8),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
        cross_attention_dim=8,
        attention_head_dim=2,
        conditioning_embedding_out_channels=(8, 8),
        norm_num_groups=2,
        motion_num_attention_heads=4,
        motion_max_seq_length=32,
    )
    # Its output convolutions start at zero (as in training), so the keyframes would change
    # nothing: they, and every other all-zero tensor, are drawn at random instead.
    redraw_zeros(model)
    return model.eval()


AnimateDiffSparseCtrl.tiny = {
    "sparsectrl-scribble": lambda: _tiny(3, simplified=False),
    "sparsectrl-rgb": lambda: _tiny(4, simplified=True),
}

FAMILIES = (AnimateDiffSparseCtrl,)
