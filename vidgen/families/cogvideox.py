"""CogVideoX (THUDM / zai-org): a 3D transformer and a causal 3D VAE; text, image and video to video."""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    SDPA_SLICING,
    Family,
    Footprint,
    Grid,
    prompt_kwargs,
    sampling_kwargs,
)

_T2V = frozenset(
    {
        "num_frames",
        "num_inference_steps",
        "guidance_scale",
        "height",
        "width",
        "max_sequence_length",
        "use_dynamic_cfg",
        "eta",
    }
)
# Video-to-video takes its length from the input video and adds how far to move from it.
_V2V = (_T2V - {"num_frames"}) | {"strength"}
_T5_XXL = 4.76e9  # the T5 v1.1 XXL encoder every CogVideoX uses
_SIZES = {
    "THUDM/CogVideoX-2b": {"transformer": 1.69e9, "text_encoder": _T5_XXL, "vae": 2.16e8},
    **{
        repo: {"transformer": 5.57e9, "text_encoder": _T5_XXL, "vae": 2.16e8}
        for repo in (
            "THUDM/CogVideoX-5b",
            "THUDM/CogVideoX-5b-I2V",
            "THUDM/CogVideoX1.5-5B",
            "THUDM/CogVideoX1.5-5B-I2V",
        )
    },
}


class CogVideoX(Family):
    name = "cogvideox"
    title = "CogVideoX"
    pipelines: ClassVar[dict[str, str]] = {
        "t2v": "CogVideoXPipeline",
        "i2v": "CogVideoXImageToVideoPipeline",
        "v2v": "CogVideoXVideoToVideoPipeline",
    }
    # Video-to-video runs the text-to-video weights through a different pipeline.
    repos: ClassVar[dict[str, str]] = {
        "t2v": "THUDM/CogVideoX-5b",
        "i2v": "THUDM/CogVideoX-5b-I2V",
        "v2v": "THUDM/CogVideoX-5b",
    }
    sampling: ClassVar[dict[str, frozenset[str]]] = {"t2v": _T2V, "i2v": _T2V, "v2v": _V2V}
    optimizations = frozenset({"offload", "vae_tiling", "vae_slicing", "fp8_storage", "compile", "cache", "quantize"})
    hints: ClassVar[dict[str, str]] = {
        "optimization.attention_slicing": SDPA_SLICING,
        "sampling.num_frames": "in v2v the input video sets the length; use --max-frames",
        "optimization.decode_chunk_size": "CogVideoX's VAE decodes in tiles; use --vae-tiling",
    }
    cuda_dtype = "bf16"
    # Calibrated on diffusers' CogVideoX-2b table (49 frames, 720x480): 33 GB plain, 19 GB model
    # offload, 11 GB with tiling too, under 4 GB sequential.
    footprint = Footprint(
        denoiser="transformer",
        blocks=42,
        sizes=_SIZES,
        temporal=4,
        patch=2,
        width=3072,
        live=10,
        decode=546,
        tiled=0.19,
    )
    # The causal VAE compresses 4 frames into one latent; the transformer patches 2x2 latents.
    grid = Grid(frames=8, size=16)
    size = (480, 720)
    frames_default = 49
    fps = 8

    def defaults(self, mode: str) -> dict[str, Any]:
        sampling: dict[str, Any] = {
            "height": self.size[0],
            "width": self.size[1],
            "num_inference_steps": 50,
            "guidance_scale": 6.0,
            "max_sequence_length": 226,
        }
        inputs: dict[str, Any] = {}
        if mode == "v2v":
            sampling["strength"] = 0.8
            inputs["max_frames"] = self.frames_default
        else:
            sampling["num_frames"] = self.frames_default
        return {
            "model": {"id": self.repos.get(mode)},
            "inputs": inputs,
            "sampling": sampling,
            "output": {"fps": self.fps},
        }

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        s = cfg.sampling
        if cfg.optimization.cache == "faster" and s.guidance_scale is not None and s.guidance_scale <= 1:
            # FasterCache reuses the unguided half of the batch; without guidance diffusers 0.42.1
            # crashes in it even when told the model is guidance-distilled.
            raise ConfigError("--cache faster needs --guidance above 1 (it reuses the unguided pass); use --cache pab.")

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        config = pipe.transformer.config
        s = cfg.sampling
        # CogVideoX-5b-I2V learned its position embeddings for one size and cannot make another.
        if getattr(config, "use_learned_positional_embeddings", False):
            scale = pipe.vae_scale_factor_spatial
            fixed = (config.sample_height * scale, config.sample_width * scale)
            if (s.height, s.width) != fixed:
                raise ConfigError(
                    f"{cfg.model.id} only makes {fixed[1]}x{fixed[0]} videos (its position embeddings are "
                    f"learned for that size); use --width {fixed[1]} --height {fixed[0]}."
                )

    @property
    def frame_rule(self) -> str:  # type: ignore[override]
        return f"{self.grid.frames}k+1 frames"

    def usable_frames(self, count: int) -> int:
        # The largest 8k+1 that fits: other lengths decode to a different frame count.
        step = self.grid.frames
        usable = (count - 1) // step * step + 1
        return usable if usable > 1 else 0

    def quantized_components(self, mode: str) -> list[str]:
        # The T5-XXL encoder is nearly as large as the 5B transformer.
        return ["transformer", "text_encoder"]

    def decode_frames(self, cfg: RunConfig, frames: int) -> int:
        # The causal VAE decodes the whole clip (batching latent frames inside); slicing splits
        # only a batch of videos, and vidgen makes one per call.
        return frames

    # The pipeline stops at its final latents and the family decodes them (see latent_call).
    latents = "latent"

    def latent_call(
        self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any
    ) -> Any:
        latents = super().latent_call(pipe, cfg, call_kwargs, media, **extra)
        # CogVideoX 1.5 pads the latent frames to its two-frame temporal patches and, with output
        # "np", drops the padding before decoding (pipeline_cogvideox.py); the latent output
        # keeps it, so it is dropped here, where diffusers would.
        patch = pipe.transformer.config.patch_size_t
        if patch is None or "num_frames" not in call_kwargs:
            return latents
        frames = (call_kwargs["num_frames"] - 1) // pipe.vae_scale_factor_temporal + 1
        return latents[:, (patch - frames % patch) % patch :]

    def decode_video(self, pipe: Any, latents: Any) -> Any:
        import torch
        from diffusers.utils.torch_utils import get_module_execution_device

        with torch.no_grad():
            video = pipe.decode_latents(latents.to(get_module_execution_device(pipe.vae), pipe.vae.dtype))
            return pipe.video_processor.postprocess_video(video=video, output_type="np")[0]

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.sampling[cfg.mode])}
        # One video per call: CogVideoX ignores num_videos_per_prompt (diffusers #13622),
        # so vidgen loops over seeds instead.
        kwargs["num_videos_per_prompt"] = 1
        kwargs["output_type"] = "np"
        return kwargs


class CogVideoX15(CogVideoX):
    name = "cogvideox1.5"
    title = "CogVideoX 1.5"
    # diffusers' video-to-video pipeline predates 1.5's two-frame temporal patches.
    pipelines: ClassVar[dict[str, str]] = {
        "t2v": "CogVideoXPipeline",
        "i2v": "CogVideoXImageToVideoPipeline",
    }
    repos: ClassVar[dict[str, str]] = {"t2v": "THUDM/CogVideoX1.5-5B", "i2v": "THUDM/CogVideoX1.5-5B-I2V"}
    sampling: ClassVar[dict[str, frozenset[str]]] = {"t2v": _T2V, "i2v": _T2V}
    # 1.5 patches two latent frames at a time, so its grid is 16k+1.
    grid = Grid(frames=16, size=16)
    size = (768, 1360)
    frames_default = 81
    fps = 16


FAMILIES = (CogVideoX, CogVideoX15)
