"""Stable Video Diffusion (Stability AI): animates one image with a spatio-temporal UNet; no text."""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    SDPA_SLICING,
    Caught,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    Previewing,
    Takes,
    halved,
    merged,
    sampling_kwargs,
    settings,
)

_SAMPLING = frozenset(
    {
        "num_frames",
        "num_inference_steps",
        "height",
        "width",
        "motion_bucket_id",
        "noise_aug_strength",
        "fps",
        "min_guidance_scale",
        "max_guidance_scale",
    }
)


class _Previewing(Previewing):
    def decode(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], latents: Any) -> Any:
        # Its temporal VAE decodes knowing the frame count (frames first: dimension 1).
        return self.family.decode(pipe, cfg, Caught(halved(latents), [latents.shape[1]]))


class StableVideoDiffusion(Family):
    name = "svd"
    title = "Stable Video Diffusion"
    modes: ClassVar[dict[str, Mode]] = {
        "i2v": Mode("StableVideoDiffusionPipeline", "stabilityai/stable-video-diffusion-img2vid-xt", _SAMPLING)
    }
    # diffusers' __call__ defaults, written out so the sidecar shows the values used (its `fps`
    # conditioning field beside the output's frame rate).
    reference = merged(
        settings(
            size=(576, 1024),
            frames=25,
            steps=25,
            fps=7,
            min_guidance_scale=1.0,
            max_guidance_scale=3.0,
            motion_bucket_id=127,
            noise_aug_strength=0.02,
        ),
        {"sampling": {"fps": 7}},
    )
    # Its temporal VAE has no tiling or slicing; decode_chunk_size is how it saves memory.
    takes = Takes(
        text=False,
        optimizations=frozenset(
            {"offload", "forward_chunking", "decode_chunk_size", "fp8_storage", "compile", "quantize"}
        ),
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.attention_slicing": SDPA_SLICING,
        "sampling.guidance_scale": "SVD ramps guidance across the frames; use --min-guidance and --max-guidance",
        "optimization.vae_tiling": "SVD's VAE saves memory by decoding fewer frames at once; use --decode-chunk",
        "optimization.vae_slicing": "SVD's VAE saves memory by decoding fewer frames at once; use --decode-chunk",
    }
    loading = Loading(cuda_dtype="fp16")
    # diffusers' SVD guide: model offload, forward chunking and decode_chunk_size=2 fit 25
    # frames at 1024x576 in under 8 GB; decoding all 25 at once needs far more (diffusers #6385).
    # decode_chunk_size defaults to every frame at once.
    memory = Memory(
        Footprint(
            denoiser="unet",
            blocks=16,
            sizes=dict.fromkeys(
                ("stabilityai/stable-video-diffusion-img2vid-xt", "stabilityai/stable-video-diffusion-img2vid"),
                {"unet": 1.525e9, "image_encoder": 6.32e8, "vae": 9.8e7},
            ),
            decode=1000,
        ),
    )
    # The UNet's VAE works on multiples of 8 pixels.
    grid = Grid(size=8)
    # Frames first, as its UNet takes them; no TAEHV weights are published for SVD's VAE.
    previewing = _Previewing(layout="ntchw")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        s = cfg.sampling
        if None not in (s.min_guidance_scale, s.max_guidance_scale) and s.min_guidance_scale > s.max_guidance_scale:
            raise ConfigError(
                f"--min-guidance {s.min_guidance_scale} is above --max-guidance {s.max_guidance_scale}; "
                "guidance ramps up from the first frame to the last."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = sampling_kwargs(cfg.sampling, _SAMPLING)
        if cfg.optimization.decode_chunk_size is not None:
            kwargs["decode_chunk_size"] = cfg.optimization.decode_chunk_size
        kwargs["output_type"] = "np"
        return kwargs


FAMILIES = (StableVideoDiffusion,)
