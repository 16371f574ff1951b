"""Text2Video-Zero (Picsart): video from a plain Stable Diffusion 1.5 model, with no training.

Three uses, as in the diffusers guide:
- t2v: `TextToVideoZeroPipeline`, motion from a warped shared latent (deprecated upstream).
- control: `StableDiffusionControlNetPipeline` with cross-frame attention (every frame attends
  to the first frame's keys and values) and one initial latent shared by all frames.
- v2v: `StableDiffusionInstructPix2PixPipeline` with the same cross-frame attention, editing a
  video by instruction.
Long inputs run in chunks that each start with the first frame again, so it stays the anchor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    Decoding,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Previewing,
    Takes,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)

_COMMON = frozenset({"num_inference_steps", "guidance_scale", "height", "width", "eta"})
_T2V = _COMMON | {"num_frames", "motion_field_strength_x", "motion_field_strength_y", "t0", "t1"}
_CONTROL = _COMMON | {"controlnet_conditioning_scale", "chunk"}
_V2V = _COMMON | {"image_guidance_scale", "chunk"}
# Not __call__ arguments: vidgen's own chunking.
_VIDGEN = frozenset({"chunk"})
# The processor's batch: the guidance branches each frame batch is split into (uncond, cond;
# InstructPix2Pix adds an image-only branch).
CROSS_FRAME_BATCH = {"control": 2, "v2v": 3}
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def chunks(cfg: RunConfig, count: int) -> list[list[int]]:
    """Frame indices per call: every call after the first starts with frame 0, the anchor."""
    size = cfg.sampling.chunk or count
    return [([0] if start else []) + list(range(start, min(start + size, count))) for start in range(0, count, size)]


class TextToVideoZero(Family):
    name = "text2video-zero"
    title = "Text2Video-Zero"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode(
            "TextToVideoZeroPipeline",
            SD15,
            _T2V,
            # TextToVideoZeroPipeline sets no model_cpu_offload_seq, so diffusers refuses it.
            model_offload=False,
            # diffusers' defaults, written out so the sidecar shows what ran.
            defaults=settings(frames=8, motion_field_strength_x=12, motion_field_strength_y=12, t0=44, t1=47),
        ),
        "control": Mode(
            "StableDiffusionControlNetPipeline",
            SD15,
            _CONTROL,
            media={"control": "image"},
            model=frozenset({"controlnet"}),
            defaults={
                "model": {"controlnet": "canny"},
                "sampling": {"controlnet_conditioning_scale": 1.0},
                "inputs": {"max_frames": 8, "preprocess": "none"},
            },
        ),
        "v2v": Mode(
            "StableDiffusionInstructPix2PixPipeline",
            "timbrooks/instruct-pix2pix",
            _V2V,
            media={"video": "image"},
            defaults={"sampling": {"image_guidance_scale": 1.5}, "inputs": {"max_frames": 8}},
        ),
    }
    deprecated = "t2v uses TextToVideoZeroPipeline, deprecated in diffusers (no fixes after 0.33.1)"
    reference = settings(size=(512, 512), steps=50, guidance=7.5, fps=4)
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "vae_slicing", "fp8_storage", "compile", "quantize"})
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.attention_slicing": "slicing would replace the cross-frame attention processors that make "
        "the frames agree"
    }
    loading = Loading(
        cuda_dtype="fp16",
        components={"controlnet": "ControlNetModel"},
        # The SD safety checker blacks out single frames without saying so, which breaks a
        # video; the video pipelines (AnimateDiff, CogVideoX) have none either.
        from_pretrained={"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False},
    )
    # Chunked cross-frame runs decode once per chunk, and the control and pix2pix pipelines
    # decode inside their own call: there is no single latent video to keep.
    decoding = Decoding(latents=None)
    previewing = Previewing(
        refused="it denoises its first frame alone and again for the motion field before the frames together, and "
        "its control and pix2pix runs denoise chunks of frames in separate calls: no step holds the video."
    )
    memory = Memory(
        Footprint(
            denoiser="unet",
            blocks=16,
            sizes={
                SD15: {"unet": 8.6e8, "text_encoder": 1.23e8, "vae": 8.37e7},
                "timbrooks/instruct-pix2pix": {"unet": 8.6e8, "text_encoder": 1.23e8, "vae": 8.37e7},
                **dict.fromkeys(
                    (
                        "lllyasviel/sd-controlnet-canny",
                        "lllyasviel/sd-controlnet-openpose",
                        "lllyasviel/sd-controlnet-depth",
                    ),
                    {"controlnet": 3.61e8},
                ),
            },
        )
    )
    # The UNet's VAE works on multiples of 8 pixels.
    grid = Grid(size=8)

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        if cfg.optimization.offload == "model" and not self.modes[cfg.mode].model_offload:
            raise ConfigError(
                "--offload model needs the pipeline's model order, which TextToVideoZeroPipeline does not declare; "
                "use --offload group or --offload sequential."
            )
        s = cfg.sampling
        if cfg.mode == "t2v" and s.num_inference_steps is not None:
            t0, t1 = s.t0 if s.t0 is not None else 44, s.t1 if s.t1 is not None else 47
            if not t0 <= t1 < s.num_inference_steps:
                raise ConfigError(
                    f"--steps {s.num_inference_steps} with --t0 {t0} --t1 {t1} does not fit {self.title}: it needs "
                    f"t0 <= t1 < steps (t1 indexes the schedule from its end); use --steps {t1 + 1} or more, "
                    f"or lower --t1 and --t0."
                )

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        """Cross-frame attention on the UNet (and the ControlNet): each frame attends to the
        first frame's keys and values, which is what keeps identity across frames."""
        if cfg.mode not in CROSS_FRAME_BATCH:
            return []
        from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
            CrossFrameAttnProcessor,
        )

        batch = CROSS_FRAME_BATCH[cfg.mode]
        calls = []
        for module in ("unet", "controlnet"):
            if getattr(pipe, module, None) is not None:
                getattr(pipe, module).set_attn_processor(CrossFrameAttnProcessor(batch_size=batch))
                processor = f"CrossFrameAttnProcessor(batch_size={batch})"
                calls.append({"method": f"{module}.set_attn_processor", "kwargs": {"processor": processor}})
        return calls

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if cfg.mode == "t2v":
            return {}
        chunk = f"chunks of {cfg.sampling.chunk} frames, each after the first led by frame 0 again (dropped)"
        return {
            "run": "prompt and negative_prompt repeated per frame; latents: one randn_tensor((1, latent_channels, "
            "height/8, width/8)) from the generator, repeated for every frame; "
            + (chunk if cfg.sampling.chunk else "all frames in one call")
        }

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling - _VIDGEN)}
        if "num_frames" in kwargs:
            kwargs["video_length"] = kwargs.pop("num_frames")  # this pipeline's name for it
        kwargs["output_type"] = "np"
        return kwargs

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        if cfg.mode == "t2v":
            return pipe(**call_kwargs, **extra).images
        import numpy as np
        from diffusers.utils.torch_utils import randn_tensor

        frames = media["image"]
        generator = extra.pop("generator")
        scale = pipe.vae_scale_factor
        shape = (1, pipe.vae.config.latent_channels, call_kwargs["height"] // scale, call_kwargs["width"] // scale)
        # One initial latent for every frame: with cross-frame attention this is what makes the
        # frames one scene (the diffusers Text2Video-Zero recipe).
        latent = randn_tensor(shape, generator=generator, device=pipe.device, dtype=pipe.unet.dtype)
        kwargs = dict(call_kwargs)
        prompt = kwargs.pop("prompt")
        negative = kwargs.pop("negative_prompt", None)
        outputs = []
        for ids in chunks(cfg, len(frames)):
            count = len(ids)
            out = pipe(
                prompt=[prompt] * count,
                negative_prompt=[negative] * count if negative is not None else None,
                image=[frames[i] for i in ids],
                latents=latent.repeat(count, 1, 1, 1),
                **kwargs,
                **extra,
            )
            images = np.asarray(out.images)
            outputs.append(images[1:] if outputs else images)  # drop the repeated anchor
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        steps = int(call_kwargs.get("num_inference_steps", 0))
        if cfg.mode == "t2v":
            # Three denoising passes: T..t1 (first frame), t1..t0 (for the motion field), t1..0 (all).
            return steps + call_kwargs.get("t1", 47) - call_kwargs.get("t0", 44)
        frames = len((media or {}).get("image", [])) or 1
        return steps * len(chunks(cfg, frames))

    @contextmanager
    def steps(self, pipe: Any, on_step: Callable[[], None]) -> Iterator[dict[str, Any]]:
        if type(pipe).__name__ == "TextToVideoZeroPipeline":
            # This deprecated pipeline only has the legacy per-step callback.
            yield {"callback": lambda step, timestep, latents: on_step(), "callback_steps": 1}
        else:
            with super().steps(pipe, on_step) as kwargs:
                yield kwargs


FAMILIES = (TextToVideoZero,)
