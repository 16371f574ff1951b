"""ModelScope text-to-video (damo-vilab): a 3D UNet on Stable Diffusion components.

diffusers deprecated TextToVideoSDPipeline (it moved to `diffusers.pipelines.deprecated` and
gets no fixes after 0.33.1); it still imports from the top level, which is what vidgen uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.families.base import Family, Footprint, check_multiple, prompt_kwargs, sampling_kwargs


class ModelScope(Family):
    name = "modelscope"
    title = "ModelScope T2V"
    pipelines: ClassVar[dict[str, str]] = {"t2v": "TextToVideoSDPipeline"}
    repos: ClassVar[dict[str, str]] = {"t2v": "ali-vilab/text-to-video-ms-1.7b"}
    deprecated = "deprecated in diffusers (no fixes after 0.33.1)"
    sampling: ClassVar[dict[str, frozenset[str]]] = {
        "t2v": frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "eta"})
    }
    optimizations = frozenset(
        {
            "offload",
            "vae_tiling",
            "vae_slicing",
            "forward_chunking",
            "attention_slicing",
            "fp8_storage",
            "compile",
            "quantize",
        }
    )
    cuda_dtype = "fp16"
    footprint = Footprint(
        denoiser="unet",
        blocks=16,
        sizes={"ali-vilab/text-to-video-ms-1.7b": {"unet": 1.41e9, "text_encoder": 3.54e8, "vae": 8.37e7}},
    )

    def defaults(self, mode: str) -> dict[str, Any]:
        return {
            "model": {"id": self.repos["t2v"]},
            "sampling": {
                "num_frames": 16,
                "height": 256,
                "width": 256,
                "num_inference_steps": 50,
                "guidance_scale": 9.0,
            },
            "output": {"fps": 8},
        }

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        check_multiple(self.title, cfg, 8)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.sampling["t2v"])}
        kwargs["output_type"] = "np"
        return kwargs

    @contextmanager
    def steps(self, pipe: Any, on_step: Callable[[], None]) -> Iterator[dict[str, Any]]:
        # This deprecated pipeline predates callback_on_step_end and only has the legacy hook.
        yield {"callback": lambda step, timestep, latents: on_step(), "callback_steps": 1}


FAMILIES = (ModelScope,)
