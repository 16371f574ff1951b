"""Wan VACE and Wan 2.1 video-to-video: editing videos on the Wan stack.

- VACE (`WanVACEPipeline`, `vidgen control`): a Wan transformer with extra VACE blocks that read a
  control video (pose, depth or edge maps, or a plain video to inpaint or outpaint), a mask of
  what to generate (white) and what to keep (black), and reference images of a subject or style.
  Wan 2.1 VACE 1.3B / 14B, and Wan 2.2 VACE-Fun A14B with two experts.
- Video-to-video (`WanVideoToVideoPipeline`, `vidgen v2v`): the Wan 2.1 text-to-video weights
  re-noise the input video by --strength and denoise it towards the prompt.

Both build on the Wan 2.1 family (wan.py): its VAE, text encoder, schedulers, frame and size
rules and optimizations hold unchanged; what differs is declared here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, InputError
from vidgen.families.base import Option, option_kwargs, prompt_kwargs, sampling_kwargs
from vidgen.families.wan import _TRANSFORMER, _UMT5_XXL, _VAE_21, FLOW_SHIFT, GUIDANCE_2, Wan, _parts, _transformer

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


class _WanEditing(Wan):
    """What the editing pipelines share: the input video sets the length, on Wan's 4k+1 grid."""

    extra_inputs = frozenset()
    # No published MagCache ratios for these checkpoints; the Wan caches otherwise apply.
    caches = frozenset({"first-block", "pab", "taylorseer"})
    hints: ClassVar[dict[str, str]] = {**Wan.hints, "optimization.cache=magcache": _NO_MAGCACHE}
    frame_rule = "4k+1 frames"

    def usable_frames(self, count: int) -> int:
        # The largest 4k+1 that fits: other lengths decode to a different frame count, and one
        # frame is an image, not a video to edit.
        usable = (count - 1) // 4 * 4 + 1
        return usable if usable > 1 else 0

    def defaults(self, mode: str) -> dict[str, Any]:
        data = super().defaults(mode)
        data["sampling"].pop("num_frames")
        data["inputs"]["max_frames"] = self.frames_default
        return data

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        # Wan's position check, for the frames the model will place (input frames plus one
        # latent frame per reference image).
        if frames:
            refs = len(cfg.inputs.reference_images or [])
            sampling = cfg.sampling.model_copy(update={"num_frames": frames + 4 * refs})
            cfg = cfg.model_copy(update={"sampling": sampling})
        super().check_loaded(pipe, cfg, frames)


class WanVACE(_WanEditing):
    name = "wan-vace"
    title = "Wan VACE"
    pipelines: ClassVar[dict[str, str]] = {"control": "WanVACEPipeline"}
    repos: ClassVar[dict[str, str]] = {"control": _VACE_13B}
    extra_inputs = frozenset({"mask", "reference_images"})
    # Without --control VACE makes --frames frames from the references (or the prompt alone).
    optional_inputs = frozenset({"control"})
    sampling: ClassVar[dict[str, frozenset[str]]] = {"control": _CONTROL | {"num_frames"}}
    media_args: ClassVar[dict[str, dict[str, str]]] = {"control": {"control": "video"}}
    options: ClassVar[tuple[Option, ...]] = (*Wan.options, KEEP_UNMASKED)
    hints: ClassVar[dict[str, str]] = {
        **_WanEditing.hints,
        "model.controlnet": "VACE's control blocks are part of the checkpoint",
    }
    footprint = replace(
        Wan.footprint,
        sizes={
            _VACE_13B: {"transformer": _VACE_13B_PARAMS, "text_encoder": _UMT5_XXL, "vae": _VAE_21},
            _VACE_14B: {"transformer": _VACE_14B_PARAMS, "text_encoder": _UMT5_XXL, "vae": _VAE_21},
        },
    )

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
        super().check_loaded(pipe, cfg, frames or cfg.sampling.num_frames or self.frames_default)

    def defaults(self, mode: str) -> dict[str, Any]:
        data = super().defaults(mode)
        data["inputs"]["preprocess"] = "none"
        data["sampling"]["controlnet_conditioning_scale"] = 1.0
        return data

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {
            **prompt_kwargs(cfg),
            **sampling_kwargs(cfg.sampling, self.sampling[cfg.mode] - {"controlnet_conditioning_scale"}),
            **option_kwargs(self, cfg),
        }
        if cfg.sampling.controlnet_conditioning_scale is not None:
            kwargs["conditioning_scale"] = cfg.sampling.controlnet_conditioning_scale
        # The pipeline makes num_frames frames whatever the video's length (it only warns), so
        # vidgen passes the input's own count; without a control video, --frames (default 81).
        kwargs["num_frames"] = frames or cfg.sampling.num_frames or self.frames_default
        kwargs["output_type"] = "np"
        return kwargs

    def latent_call(
        self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any
    ) -> Any:
        latents = super().latent_call(pipe, cfg, call_kwargs, media, **extra)
        # The reference images ride in front as one latent frame each; the pipeline drops them
        # before decoding with output "np", its latent output keeps them (pipeline_wan_vace.py).
        return latents[:, :, len(media.get("reference_images") or []) :]

    # -- --keep-unmasked: the kept pixels pasted back after decoding ---------------------------
    def _keeps(self, cfg: RunConfig) -> bool:
        return bool(cfg.inputs.mask) and cfg.sampling.get("keep_unmasked") is not False

    def postprocess_inputs(self, cfg: RunConfig, media: dict[str, Any]) -> dict[str, Any]:
        if not (self._keeps(cfg) and "video" in media and "mask" in media):
            return {}
        import numpy as np

        # Exactly what the pipeline was given: the control frames (after --preprocess and
        # --resize) and the mask at the run's size.
        video = np.stack([np.asarray(frame.convert("RGB"), dtype=np.uint8) for frame in media["video"]])
        mask = np.stack([np.asarray(frame.convert("L"), dtype=np.uint8) for frame in media["mask"]])
        return {"video": video, "mask": mask}

    def postprocess(self, frames: Any, kept: dict[str, Any]) -> Any:
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

    def postprocess_record(self, cfg: RunConfig) -> dict[str, Any] | None:
        if not self._keeps(cfg):
            return None
        return {
            "step": "keep_unmasked",
            # Repeat it on plain diffusers' output_type="np" frames (floats in [0, 1]), before
            # they are rounded to 8 bits; the pipeline arguments named are the media_kwargs'.
            "frames": "frames * m + video / 255 * (1 - m), m = mask / 255 (per pixel, the mask as 8-bit grey)",
            "video": "video",
            "mask": "mask",
        }


class WanVACE22(WanVACE):
    name = "wan2.2-vace"
    title = "Wan 2.2 VACE-Fun A14B"
    repos: ClassVar[dict[str, str]] = {"control": _VACE_22}
    options: ClassVar[tuple[Option, ...]] = (FLOW_SHIFT, GUIDANCE_2, KEEP_UNMASKED)
    denoisers: ClassVar[tuple[str, ...]] = ("transformer", "transformer_2")
    footprint = replace(
        Wan.footprint,
        sizes={
            _VACE_22: {
                "transformer": _VACE_14B_PARAMS,
                "transformer_2": _VACE_14B_PARAMS,
                "text_encoder": _UMT5_XXL,
                "vae": _VAE_21,
            }
        },
    )
    steps_default = 40

    def defaults(self, mode: str) -> dict[str, Any]:
        data = super().defaults(mode)
        # VACE-Fun A14B is trained on Wan 2.2 T2V A14B: its settings (guidance 4.0 high-noise /
        # 3.0 low-noise, shift 12), 81 frames at 16 fps.
        data["sampling"].update({"guidance_scale": 4.0, "guidance_scale_2": 3.0, "flow_shift": 12.0})
        return data

    def matches(self, index: dict[str, Any]) -> bool:
        return index.get("boundary_ratio") is not None


class WanV2V(_WanEditing):
    name = "wan-v2v"
    title = "Wan 2.1 video-to-video"
    pipelines: ClassVar[dict[str, str]] = {"v2v": "WanVideoToVideoPipeline"}
    # Video-to-video runs the text-to-video weights through another pipeline.
    repos: ClassVar[dict[str, str]] = {"v2v": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"}
    sampling: ClassVar[dict[str, frozenset[str]]] = {"v2v": _V2V}
    loads_from = frozenset({"WanPipeline"})
    hints: ClassVar[dict[str, str]] = {
        **_WanEditing.hints,
        "sampling.num_frames": "in v2v the input video sets the length; use --max-frames",
    }
    footprint = replace(
        Wan.footprint,
        sizes={
            repo: Wan.footprint.sizes[repo]
            for repo in ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "Wan-AI/Wan2.1-T2V-14B-Diffusers")
        },
    )

    def defaults(self, mode: str) -> dict[str, Any]:
        data = super().defaults(mode)
        data["sampling"]["strength"] = 0.8  # diffusers' default
        return data


# -- tiny random-weight recipes (diffusers' own Wan VACE / v2v test configs) -------------------


def _vace_transformer() -> Any:
    from diffusers import WanVACETransformer3DModel

    # VACE blocks after transformer blocks 0 and 2; the control stream is 96 channels: 16 inactive
    # + 16 reactive latents and 64 (8x8) mask channels.
    return WanVACETransformer3DModel(**{**_TRANSFORMER, "num_layers": 3, "vace_layers": [0, 2], "vace_in_channels": 96})


def tiny_vace() -> Any:
    from diffusers import WanVACEPipeline

    return WanVACEPipeline(**_parts(), transformer=_vace_transformer())


def tiny_vace22() -> Any:
    from diffusers import WanVACEPipeline

    return WanVACEPipeline(
        **_parts(12.0), transformer=_vace_transformer(), transformer_2=_vace_transformer(), boundary_ratio=0.875
    )


def tiny_v2v() -> Any:
    from diffusers import WanVideoToVideoPipeline

    return WanVideoToVideoPipeline(**_parts(), transformer=_transformer())


WanVACE.tiny = {"wan-vace": tiny_vace}
WanVACE22.tiny = {"wan22-vace": tiny_vace22}
WanV2V.tiny = {"wan-v2v": tiny_v2v}

FAMILIES = (WanVACE, WanVACE22, WanV2V)
