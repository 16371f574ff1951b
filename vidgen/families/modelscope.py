"""ModelScope text-to-video (damo-vilab): a 3D UNet on Stable Diffusion components.

diffusers deprecated TextToVideoSDPipeline (it moved to `diffusers.pipelines.deprecated` and
gets no fixes after 0.33.1); it still imports from the top level, which is what vidgen uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.errors import ConfigError
from vidgen.families.base import Family, nearest, prompt_kwargs, sampling_kwargs

_CALL_FIELDS = ("num_frames", "num_inference_steps", "guidance_scale", "height", "width", "eta")


class ModelScope(Family):
    name = "modelscope"
    title = "ModelScope T2V"
    pipelines: ClassVar[dict[str, str]] = {"t2v": "TextToVideoSDPipeline"}
    default_repo = "ali-vilab/text-to-video-ms-1.7b"
    deprecated = "deprecated in diffusers (no fixes after 0.33.1)"
    extra_sampling = frozenset({"eta"})
    optimizations = frozenset({"offload", "vae_tiling", "vae_slicing", "forward_chunking", "compile"})
    cuda_dtype = "fp16"
    defaults: ClassVar[dict[str, Any]] = {
        "model": {"id": "ali-vilab/text-to-video-ms-1.7b"},
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
        for flag, value in (("--height", cfg.sampling.height), ("--width", cfg.sampling.width)):
            if value is not None and value % 8:
                raise ConfigError(
                    f"{flag} {value} does not fit {self.title}: sizes must be multiples of 8; "
                    f"nearest valid: {nearest(value, 8)}."
                )

    def call_kwargs(self, cfg: RunConfig, seed: int) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, _CALL_FIELDS)}
        kwargs["output_type"] = "np"
        return kwargs

    def progress_kwargs(self, on_step: Callable[[], None]) -> dict[str, Any]:
        # This deprecated pipeline predates callback_on_step_end and only has the legacy hook.
        return {"callback": lambda step, timestep, latents: on_step(), "callback_steps": 1}
