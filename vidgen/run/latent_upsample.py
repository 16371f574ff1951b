"""`vidgen upscale NAME.latents.safetensors`: LTX's and LTX-2's latent upsamplers on saved latents.

A latents file holds the latents as they reached `vae.decode` (denormalized, LTX's decode noise
mixed in). The family's latent upsampler (LTXLatentUpsamplerModel, LTX2LatentUpsamplerModel)
runs on exactly those, as LTXLatentUpsamplePipeline and LTX2LatentUpsamplePipeline run it on
denormalized latents, doubling height and width; the VAE then decodes them with the recorded
decode arguments. LTX-2's sound comes from its own latents, untouched. This is the upsampler
alone, without LTX's second denoising pass over the upsampled latents (the two-stage presets do
that during a run).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any

from vidgen.core.errors import ConfigError

# family -> (module, class) of its latent upsampler in diffusers.
MODELS = {
    "ltx": ("diffusers.pipelines.ltx.modeling_latent_upsampler", "LTXLatentUpsamplerModel"),
    "ltx2": ("diffusers.pipelines.ltx2.latent_upsampler", "LTX2LatentUpsamplerModel"),
}


@dataclass
class Upsample:
    """A loaded latent upsampler, called on the latents before the decode."""

    source: str
    where: str
    class_name: str
    model: Any
    seconds: float = 0.0

    def __call__(self, latents: Any) -> Any:
        import torch

        start = time.perf_counter()
        self.model.to(latents.device)
        with torch.inference_mode():
            out = self.model(latents.to(self.model.dtype)).to(latents.dtype)
        self.seconds = time.perf_counter() - start
        return out

    def record(self, before: list[int], frames: Any, seconds: float, peak: int, device: str) -> dict[str, Any]:
        """The sidecar's `finish` step: latent shape before and after, frames and size decoded."""
        count, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
        return {
            "step": "upscale",
            "model": {"source": self.source, "path": self.where, "architecture": self.class_name},
            "factor": "x2",
            "settings": {"latents": True, "latent_shape": list(before), "second_pass": False},
            "frames": [count, count],
            "size": [f"{width // 2}x{height // 2}", f"{width}x{height}"],
            "seconds": round(self.seconds, 4),
            "decode_seconds": round(seconds, 4),
            "peak_memory_bytes": peak,
            "device": device,
        }


def load(family: Any, cfg: Any, pipe: Any, source: str) -> Upsample:
    """The family's latent upsampler from `source` (REPO[/SUBFOLDER], a folder or tiny:NAME),
    safetensors unless --allow-pickle; ConfigError for a family without one."""
    from vidgen.models.loader import Access

    if family.name not in MODELS:
        raise ConfigError(
            f"{family.title} latents have no latent upsampler; `vidgen upscale` on a latents file takes LTX and "
            "LTX-2 latents (upscale the decoded clip with a per-frame model instead)."
        )
    module, name = MODELS[family.name]
    model_class = getattr(importlib.import_module(module), name)
    access = Access(cfg)
    where, sub = access.locate(source, what="latent upsampler")
    model = model_class.from_pretrained(where, torch_dtype=pipe.vae.dtype, use_safetensors=access.safetensors(), **sub)
    return Upsample(source, str(where), name, model.eval())
