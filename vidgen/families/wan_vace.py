"""Wan VACE and Wan 2.1 video-to-video: editing videos on the Wan stack.

- VACE (`WanVACEPipeline`, `vidgen control`): a Wan transformer with extra VACE blocks that read a
  control video (pose, depth or edge maps, or a plain video to inpaint or outpaint), a mask of
  what to generate (white) and what to keep (black), and reference images of a subject or style.
  Wan 2.1 VACE 1.3B / 14B, and Wan 2.2 VACE-Fun A14B with two experts.
- Video-to-video (`WanVideoToVideoPipeline`, `vidgen v2v`): the Wan 2.1 text-to-video weights
  re-noise the input video by --strength and denoise it towards the prompt.

Both build on the Wan 2.1 family's parts (wan.py): its VAE, text encoder, schedulers, frame and size
rules and optimizations hold unchanged; what differs is declared here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, InputError
from vidgen.families.base import (
    Enhancing,
    Family,
    Mode,
    ModelAccess,
    Option,
    Postprocess,
    merged,
    option_kwargs,
    prompt_kwargs,
    sampling_kwargs,
    settings,
    shift_scheduler,
)
from vidgen.families.wan import (
    FLOW_SHIFT,
    FOOTPRINT,
    GUIDANCE_2,
    NEGATIVE,
    TINY_TRANSFORMER,
    UMT5_XXL,
    VAE_21,
    Wan,
    check_positions,
    tiny_transformer,
    tiny_wan_parts,
    wan_memory,
)

# The input video sets the length (VACE takes --frames only without one); --control-scale sets
# the shared control strength field, which WanVACEPipeline calls `conditioning_scale`.
_CONTROL = frozenset(
    {"num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length", "controlnet_conditioning_scale"}
)
# WanVACEPipeline regenerates every pixel: the pixels a black mask keeps are context for the
# model, not copied, and come back changed (a trained model: close; the tiny one: not at all).
# vidgen pastes them back after decoding, as inpainting tools do, unless told not to.
KEEP_UNMASKED = Option(
    "keep_unmasked",
    "--keep-unmasked/--no-keep-unmasked",
    bool,
    "With --mask: paste the --control pixels back where the mask is black (grey blends); "
    "--no-keep-unmasked keeps what VACE made there. Default: on.",
    call=False,
)
_V2V = frozenset({"num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length", "strength"})
_VACE_13B = "Wan-AI/Wan2.1-VACE-1.3B-diffusers"
_VACE_14B = "Wan-AI/Wan2.1-VACE-14B-diffusers"
# A conversion of alibaba-pai/Wan2.2-VACE-Fun-A14B by a diffusers maintainer (diffusers PR #12324);
# the authors publish no diffusers-format repo.
_VACE_22 = "linoyts/Wan2.2-VACE-Fun-14B-diffusers"
# Parameters: the Wan transformer plus one VACE block per vace layer (15 of 30 blocks on 1.3B,
# 8 of 40 on 14B), each the size of a transformer block. Estimates from the block sizes.
_VACE_13B_PARAMS = 1.419e9 * (1 + 15 / 30)
_VACE_14B_PARAMS = 14.288e9 * (1 + 8 / 40)


# Why --cache magcache is refused on VACE and video-to-video.
_NO_MAGCACHE = (
    "no MagCache ratios are published for VACE or video-to-video, and measuring them "
    "(--cache magcache:calibrate) is not checked on their partial schedules and control blocks"
)

# -- what the editing pipelines share: the input video sets the length, on Wan's 4k+1 grid -----

_FRAMES = 81  # Wan 2.1's reference length: --max-frames of an input video, VACE's --frames without one
# Wan 2.1's reference settings (wan.py), less --frames: the input video sets the length.
_REFERENCE = merged(
    settings(size=(480, 832), steps=50, guidance=5.0, fps=16, flow_shift=3.0),
    {"inputs": {"negative_prompt": NEGATIVE, "max_frames": _FRAMES}},
)
# No published MagCache ratios for these checkpoints; the Wan caches otherwise apply.
_TAKES = replace(Wan.takes, caches=frozenset({"first-block", "pab", "taylorseer"}))
_HINTS = {**Wan.hints, "optimization.cache=magcache": _NO_MAGCACHE}


def _placed(cfg: RunConfig, frames: int | None) -> RunConfig:
    """The run with the frames the model will place (input frames plus one latent frame per
    reference image), for Wan's position check."""
    if not frames:
        return cfg
    refs = len(cfg.inputs.reference_images or [])
    sampling = cfg.sampling.model_copy(update={"num_frames": frames + 4 * refs})
    return cfg.model_copy(update={"sampling": sampling})


# -- --keep-unmasked: the kept pixels pasted back after decoding ---------------------------


def _keeps(cfg: RunConfig) -> bool:
    return bool(cfg.inputs.mask) and cfg.sampling.get("keep_unmasked") is not False


class _KeepUnmasked(Postprocess):
    def inputs(self, cfg: RunConfig, media: dict[str, Any]) -> dict[str, Any]:
        if not (_keeps(cfg) and "video" in media and "mask" in media):
            return {}
        import numpy as np

        # Exactly what the pipeline was given: the control frames (after --preprocess and
        # --resize) and the mask at the run's size.
        video = np.stack([np.asarray(frame.convert("RGB"), dtype=np.uint8) for frame in media["video"]])
        mask = np.stack([np.asarray(frame.convert("L"), dtype=np.uint8) for frame in media["mask"]])
        return {"video": video, "mask": mask}

    def apply(self, frames: Any, kept: dict[str, Any]) -> Any:
        import numpy as np

        frames = np.asarray(frames, dtype=np.float32)
        video, mask = kept.get("video"), kept.get("mask")
        # The arrays may come from a latents file: they must fit the decoded frames exactly.
        if video is None or mask is None or video.shape != frames.shape or mask.shape != frames.shape[:3]:
            shapes = [None if a is None else list(a.shape) for a in (video, mask)]
            raise InputError(
                f"the kept input pixels {shapes} do not fit the decoded frames {list(frames.shape)}; "
                "the latents file is damaged."
            )
        # White (1) = generated, black (0) = the input; grey blends linearly. The model itself
        # reads the mask as on/off at 0.5; the blend softens the seam of a feathered mask.
        weight = mask.astype(np.float32)[..., None] / 255.0
        return frames * weight + video.astype(np.float32) / 255.0 * (1.0 - weight)

    def record(self, cfg: RunConfig) -> dict[str, Any] | None:
        if not _keeps(cfg):
            return None
        return {
            "step": "keep_unmasked",
            # Repeat it on plain diffusers' output_type="np" frames (floats in [0, 1]), before
            # they are rounded to 8 bits; the pipeline arguments named are the media_kwargs'.
            "frames": "frames * m + video / 255 * (1 - m), m = mask / 255 (per pixel, the mask as 8-bit grey)",
            "video": "video",
            "mask": "mask",
        }


class WanVACE(Family):
    name = "wan-vace"
    title = "Wan VACE"
    # Wan's own prompt extender's system prompts (wan/utils/prompt_extend.py).
    enhancing = Enhancing("wan")
    modes: ClassVar[dict[str, Mode]] = {
        "control": Mode(
            "WanVACEPipeline",
            _VACE_13B,
            _CONTROL | {"num_frames"},
            inputs=frozenset({"mask", "reference_images"}),
            # Without --control VACE makes --frames frames from the references (or the prompt alone).
            optional=frozenset({"control"}),
            media={"control": "video"},
            defaults=merged({"inputs": {"preprocess": "none"}}, settings(controlnet_conditioning_scale=1.0)),
        )
    }
    reference = _REFERENCE
    options: ClassVar[tuple[Option, ...]] = (FLOW_SHIFT, KEEP_UNMASKED)
    grid = Wan.grid
    takes = _TAKES
    hints: ClassVar[dict[str, str]] = {**_HINTS, "model.controlnet": "VACE's control blocks are part of the checkpoint"}
    loading = Wan.loading
    memory = wan_memory(
        replace(
            FOOTPRINT,
            sizes={
                _VACE_13B: {"transformer": _VACE_13B_PARAMS, "text_encoder": UMT5_XXL, "vae": VAE_21},
                _VACE_14B: {"transformer": _VACE_14B_PARAMS, "text_encoder": UMT5_XXL, "vae": VAE_21},
            },
        )
    )
    decoding = Wan.decoding
    # The reference images are the first latent frames while it denoises: previews show them first.
    previewing = Wan.previewing
    postprocess = _KeepUnmasked()

    def matches(self, index: dict[str, Any]) -> bool:
        # Wan 2.1 VACE, as Wan 2.1 itself: one transformer on the Wan 2.1 VAE.
        return index.get("boundary_ratio") is None and not index.get("expand_timesteps")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        if cfg.inputs.control and cfg.sampling.num_frames is not None:
            raise ConfigError(
                "--frames sets the length of a VACE video made without --control; with --control the control "
                "video sets it (use --max-frames to take fewer of its frames)."
            )
        if not cfg.inputs.control:
            for given, flag in ((cfg.inputs.mask, "--mask"), (cfg.output.save_control, "--save-control")):
                if given:
                    raise ConfigError(f"{flag} works on the --control video; give --control VIDEO|DIR too.")
        keep = cfg.sampling.get("keep_unmasked")
        if keep is not None and not cfg.inputs.mask:
            flag = "--keep-unmasked" if keep else "--no-keep-unmasked"
            raise ConfigError(f"{flag} says what happens where a --mask is black; give --mask too, or drop {flag}.")

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        check_positions(pipe, _placed(cfg, frames or cfg.sampling.num_frames or _FRAMES))

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        return shift_scheduler(pipe, cfg)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {
            **prompt_kwargs(cfg),
            **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling - {"controlnet_conditioning_scale"}),
            **option_kwargs(self, cfg),
        }
        if cfg.sampling.controlnet_conditioning_scale is not None:
            kwargs["conditioning_scale"] = cfg.sampling.controlnet_conditioning_scale
        # The pipeline makes num_frames frames whatever the video's length (it only warns), so
        # vidgen passes the input's own count; without a control video, --frames (default 81).
        kwargs["num_frames"] = frames or cfg.sampling.num_frames or _FRAMES
        kwargs["output_type"] = "np"
        return kwargs

    def latent_call(
        self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any
    ) -> Any:
        latents = super().latent_call(pipe, cfg, call_kwargs, media, **extra)
        # The reference images ride in front as one latent frame each; the pipeline drops them
        # before decoding with output "np", its latent output keeps them (pipeline_wan_vace.py).
        return latents[:, :, len(media.get("reference_images") or []) :]


class WanVACE22(WanVACE):
    name = "wan2.2-vace"
    title = "Wan 2.2 VACE-Fun A14B"
    modes: ClassVar[dict[str, Mode]] = {"control": replace(WanVACE.modes["control"], repo=_VACE_22)}
    # VACE-Fun A14B is trained on Wan 2.2 T2V A14B: its settings (guidance 4.0 high-noise /
    # 3.0 low-noise, shift 12), 81 frames at 16 fps.
    reference = merged(_REFERENCE, settings(steps=40, guidance=4.0, guidance_scale_2=3.0, flow_shift=12.0))
    options: ClassVar[tuple[Option, ...]] = (FLOW_SHIFT, GUIDANCE_2, KEEP_UNMASKED)
    loading = replace(
        Wan.loading, denoisers=("transformer", "transformer_2"), files=("transformer", "transformer_2", "text_encoder")
    )
    memory = wan_memory(
        replace(
            FOOTPRINT,
            sizes={
                _VACE_22: {
                    "transformer": _VACE_14B_PARAMS,
                    "transformer_2": _VACE_14B_PARAMS,
                    "text_encoder": UMT5_XXL,
                    "vae": VAE_21,
                }
            },
        )
    )

    def matches(self, index: dict[str, Any]) -> bool:
        return index.get("boundary_ratio") is not None


class WanV2V(Wan):
    name = "wan-v2v"
    title = "Wan 2.1 video-to-video"
    # Video-to-video runs the text-to-video weights through another pipeline.
    modes: ClassVar[dict[str, Mode]] = {
        "v2v": Mode(
            "WanVideoToVideoPipeline",
            "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            _V2V,
            loads_from=frozenset({"WanPipeline"}),
            defaults=settings(strength=0.8),  # diffusers' default
        )
    }
    reference = _REFERENCE
    takes = _TAKES
    hints: ClassVar[dict[str, str]] = {
        **_HINTS,
        "sampling.num_frames": "in v2v the input video sets the length; use --max-frames",
    }
    memory = wan_memory(
        replace(
            FOOTPRINT,
            sizes={
                repo: FOOTPRINT.sizes[repo]
                for repo in ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "Wan-AI/Wan2.1-T2V-14B-Diffusers")
            },
        )
    )

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        super().check_loaded(pipe, _placed(cfg, frames), frames)


# -- tiny random-weight recipes (diffusers' own Wan VACE / v2v test configs) -------------------


def _vace_transformer() -> Any:
    from diffusers import WanVACETransformer3DModel

    # VACE blocks after transformer blocks 0 and 2; the control stream is 96 channels: 16 inactive
    # + 16 reactive latents and 64 (8x8) mask channels.
    return WanVACETransformer3DModel(
        **{**TINY_TRANSFORMER, "num_layers": 3, "vace_layers": [0, 2], "vace_in_channels": 96}
    )


def tiny_vace() -> Any:
    from diffusers import WanVACEPipeline

    return WanVACEPipeline(**tiny_wan_parts(), transformer=_vace_transformer())


def tiny_vace22() -> Any:
    from diffusers import WanVACEPipeline

    return WanVACEPipeline(
        **tiny_wan_parts(12.0), transformer=_vace_transformer(), transformer_2=_vace_transformer(), boundary_ratio=0.875
    )


def tiny_v2v() -> Any:
    from diffusers import WanVideoToVideoPipeline

    return WanVideoToVideoPipeline(**tiny_wan_parts(), transformer=tiny_transformer())


WanVACE.tiny = {"wan-vace": tiny_vace}
WanVACE22.tiny = {"wan22-vace": tiny_vace22}
WanV2V.tiny = {"wan-v2v": tiny_v2v}

FAMILIES = (WanVACE, WanVACE22, WanV2V)
