"""LTX-Video 0.9.x (Lightricks): a small, fast video transformer on a 32x-compressing VAE.

Text to video (`LTXPipeline`), image to video (`LTXImageToVideoPipeline`) and, when the run
names keyframes (--keyframe FRAME:IMAGE[:STRENGTH]) or conditioning clips (--condition-video
VIDEO[:FRAME]), the condition pipeline (`LTXConditionPipeline`), which places each image or clip
at its frame. Frames are 8k+1 and sizes multiples of 32; the pipelines would floor both silently,
so vidgen refuses other values before loading.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.errors import ConfigError
from vidgen.families.base import (
    Family,
    Footprint,
    Grid,
    Option,
    option_kwargs,
    prompt_kwargs,
    sampling_kwargs,
)

GUIDANCE_RESCALE = Option(
    "guidance_rescale",
    "--guidance-rescale",
    float,
    "Rescale of the guided prediction against over-exposure (0: off).",
    ge=0,
    le=1,
)
DECODE_TIMESTEP = Option(
    "decode_timestep",
    "--decode-timestep",
    float,
    "Timestep the VAE decodes at (timestep-aware VAEs, LTX 0.9.1+: 0.05).",
    ge=0,
    le=1,
)
DECODE_NOISE_SCALE = Option(
    "decode_noise_scale",
    "--decode-noise-scale",
    float,
    "Noise added to the latents before decoding (default: the decode timestep).",
    ge=0,
    le=1,
)
TIMESTEPS = Option(
    "timesteps",
    "--timestep",
    list[float],
    "One timestep of a fixed schedule (repeatable; distilled checkpoints), instead of --steps.",
)
IMAGE_COND_NOISE_SCALE = Option(
    "image_cond_noise_scale",
    "--image-cond-noise-scale",
    float,
    "Noise on keyframe and clip conditions (LTX 0.9.1+: 0.025); with --keyframe or --condition-video.",
    ge=0,
    le=1,
)
_CALL = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# Parameter counts: the transformers built on the meta device from the repos' transformer/config.json
# (2B: 28 layers of 32x64 heads; 13B: 48 layers of 32x128), the VAE from diffusers' default config.
_T5_XXL = 4.762e9  # google/t5-v1_1-xxl encoder, in every LTX-Video repo
_VAE = 0.419e9
_LTX_2B, _LTX_13B = 1.923e9, 13.043e9
CONDITION_PIPELINE = "LTXConditionPipeline"


class LTX(Family):
    name = "ltx"
    title = "LTX-Video"
    pipelines: ClassVar[dict[str, str]] = {"t2v": "LTXPipeline", "i2v": "LTXImageToVideoPipeline"}
    repos: ClassVar[dict[str, str]] = dict.fromkeys(("t2v", "i2v"), "Lightricks/LTX-Video")
    sampling: ClassVar[dict[str, frozenset[str]]] = {"t2v": _CALL, "i2v": _CALL}
    options: ClassVar[tuple[Option, ...]] = (
        GUIDANCE_RESCALE,
        DECODE_TIMESTEP,
        DECODE_NOISE_SCALE,
        TIMESTEPS,
        IMAGE_COND_NOISE_SCALE,
    )
    extra_inputs = frozenset({"conditions"})
    model_options = frozenset({"loras"})
    optimizations = frozenset(
        {"offload", "vae_tiling", "fp8_storage", "attention_backend", "compile", "cache", "quantize"}
    )
    # What diffusers 0.42.1 runs on the LTX transformer (checked on the tiny model).
    caches = frozenset({"first-block", "pab", "taylorseer"})
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=faster": "FasterCache expects video-shaped hidden states; LTX packs them into tokens",
        "optimization.cache=magcache": "MagCache needs magnitude ratios calibrated for the checkpoint; none published",
        "optimization.decode_chunk_size": "LTX's VAE decodes the whole clip; use --vae-tiling",
        "optimization.vae_slicing": "vidgen makes one video per call, so there is no batch to slice; use --vae-tiling",
        "optimization.attention_slicing": "LTX attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": "LTX's feed-forward layers take no chunking; use --offload group",
    }
    latents = None
    grid = Grid(frames=8, size=32)
    frame_rule = "8k+1 frames"
    cuda_dtype = "bf16"
    footprint = Footprint(
        denoiser="transformer",
        blocks=28,
        sizes={
            **dict.fromkeys(
                ("Lightricks/LTX-Video", "Lightricks/LTX-Video-0.9.5", "Lightricks/LTX-Video-0.9.7-distilled"),
                {"transformer": _LTX_2B, "text_encoder": _T5_XXL, "vae": _VAE},
            ),
            "Lightricks/LTX-Video-0.9.8-13B-distilled": {"transformer": _LTX_13B, "text_encoder": _T5_XXL, "vae": _VAE},
        },
        spatial=32,
        temporal=8,
        patch=1,
        width=2048,
        live=10,
        decode=120,
        tiled=0.3,
    )
    # Reference settings (diffusers ltx_video.md): 768x512, 161 frames at 24 fps, 50 steps.
    size = (512, 768)
    frames_default = 161
    fps = 24
    steps_default = 50

    def accepts(self, mode: str) -> frozenset[str]:
        # Keyframes and clips also steer text-to-video (e.g. extending a clip).
        return super().accepts(mode) | {"inputs.conditions"}

    def pipeline_name(self, cfg: RunConfig) -> str:
        return CONDITION_PIPELINE if cfg.inputs.conditions else self.pipelines[cfg.mode]

    def defaults(self, mode: str) -> dict[str, Any]:
        return {
            "model": {"id": self.repos[mode]},
            "sampling": {
                "height": self.size[0],
                "width": self.size[1],
                "num_frames": self.frames_default,
                "num_inference_steps": self.steps_default,
                "guidance_scale": 3.0,
            },
            "output": {"fps": self.fps},
        }

    def usable_frames(self, count: int) -> int:
        return (count - 1) // 8 * 8 + 1 if count >= 1 else 0

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        check_conditions(cfg)
        check_schedule(cfg, "timesteps", "--timestep")
        if cfg.sampling.get("image_cond_noise_scale") is not None and not cfg.inputs.conditions:
            raise ConfigError(
                "--image-cond-noise-scale applies to keyframes and clips (LTXConditionPipeline); "
                "add --keyframe or --condition-video, or drop it."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {
            **prompt_kwargs(cfg),
            **sampling_kwargs(cfg.sampling, self.sampling[cfg.mode]),
            **option_kwargs(self, cfg),
        }
        if kwargs.get("timesteps") is not None:
            # A fixed schedule sets the step count.
            kwargs.pop("num_inference_steps", None)
        # The frame rate scales the model's temporal positions: the file's.
        kwargs["frame_rate"] = int(cfg.output.fps or self.fps)
        conditions = cfg.inputs.conditions or []
        if conditions:
            # The condition pipeline takes parallel lists: the i2v image first (at frame 0).
            first = [(0, 1.0)] if cfg.mode == "i2v" else []
            placed = first + [(c.frame_index, c.strength) for c in conditions]
            kwargs["frame_index"] = [frame for frame, _ in placed]
            kwargs["strength"] = [strength for _, strength in placed]
        kwargs["output_type"] = "np"
        return kwargs

    def run_note(self, cfg: RunConfig) -> str | None:
        if not cfg.inputs.conditions:
            return None
        return (
            "LTXConditionPipeline gets image= and video= as parallel lists beside frame_index and strength: "
            "the i2v image first, then each inputs.conditions item in order (an image in `image` with None in "
            "`video`, a clip's frames in `video` with None in `image`)"
        )

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        # `strength` here is each condition's pull, not a video-to-video strength: every step runs.
        timesteps = call_kwargs.get("timesteps")
        return len(timesteps) if timesteps else int(call_kwargs.get("num_inference_steps", 0))

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        if "conditions" in media:
            media = condition_lists(media)
        return pipe(**call_kwargs, **media, **extra).frames[0]


def check_schedule(cfg: RunConfig, field: str, flag: str) -> None:
    """A fixed schedule (`field`: sigmas or timesteps) sets the step count; a different --steps
    would be ignored, so it is refused."""
    schedule = cfg.sampling.get(field)
    steps = cfg.sampling.num_inference_steps
    if schedule and steps is not None and steps != len(schedule):
        raise ConfigError(
            f"--steps {steps} disagrees with the fixed schedule of {len(schedule)} {flag} values, which sets the step "
            f"count; use --steps {len(schedule)} or drop the schedule."
        )


def check_conditions(cfg: RunConfig) -> None:
    """Each keyframe or clip names one image or one video, at a frame inside the video."""
    frames = cfg.sampling.num_frames
    for condition in cfg.inputs.conditions or []:
        if bool(condition.image) == bool(condition.video):
            raise ConfigError("each inputs.conditions item names one image or one video, not both or neither.")
        if condition.image:
            what = f"--keyframe {condition.frame_index}:{condition.image}"
        else:
            what = f"--condition-video {condition.video}:{condition.frame_index}"
        if frames is not None and condition.frame_index >= frames:
            raise ConfigError(
                f"{what} is past the last frame: the video has {frames} frames (0 to {frames - 1}); "
                f"use a frame below {frames} or more --frames."
            )


def condition_lists(media: dict[str, Any]) -> dict[str, Any]:
    """The i2v image and the prepared conditions as the condition pipeline's parallel `image`
    and `video` lists. Both lists are always passed: given `image` alone, diffusers 0.42.1 pairs
    it with `video=[None]` and zips the conditions down to the first."""
    rest = {k: v for k, v in media.items() if k not in ("image", "conditions")}
    items = ([media["image"]] if "image" in media else []) + list(media["conditions"])
    images = [None if isinstance(item, list) else item for item in items]
    videos = [item if isinstance(item, list) else None for item in items]
    return {**rest, "image": images, "video": videos}


# -- tiny random-weight recipe (after diffusers' tests/pipelines/ltx, offline tokenizer) --------

_TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 8,
    "block_out_channels": (8, 8, 8, 8),
    "decoder_block_out_channels": (8, 8, 8, 8),
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1, 1),
    "spatio_temporal_scaling": (True, True, False, False),
    "decoder_spatio_temporal_scaling": (True, True, False, False),
    "decoder_inject_noise": (False, False, False, False, False),
    "upsample_residual": (False, False, False, False),
    "upsample_factor": (1, 1, 1, 1),
    "timestep_conditioning": False,
    "patch_size": 1,
    "patch_size_t": 1,
    "encoder_causal": True,
    "decoder_causal": False,
}


def _parts() -> dict[str, Any]:
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    from vidgen.tiny import t5_encoder, t5_tokenizer

    tokenizer = t5_tokenizer()
    # Two blocks, so first-block caching has a block after the first to skip.
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=32,
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": t5_encoder(tokenizer),
        "vae": AutoencoderKLLTXVideo(**_TINY_VAE),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "transformer": transformer,
    }


def tiny_t2v() -> Any:
    from diffusers import LTXPipeline

    # The same components serve LTXImageToVideoPipeline and LTXConditionPipeline.
    return LTXPipeline(**_parts())


LTX.tiny = {"ltx": tiny_t2v}

FAMILIES = (LTX,)
