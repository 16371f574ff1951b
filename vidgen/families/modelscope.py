"""ModelScope text-to-video (damo-vilab): a 3D UNet on Stable Diffusion components.

diffusers deprecated TextToVideoSDPipeline (it moved to `diffusers.pipelines.deprecated` and
gets no fixes after 0.33.1); it still imports from the top level, which is what vidgen uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.families.base import (
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    Previewing,
    Takes,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)


class ModelScope(Family):
    name = "modelscope"
    title = "ModelScope T2V"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode(
            "TextToVideoSDPipeline",
            "ali-vilab/text-to-video-ms-1.7b",
            frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "eta"}),
        )
    }
    deprecated = "deprecated in diffusers (no fixes after 0.33.1)"
    reference = settings(size=(256, 256), frames=16, steps=50, guidance=9.0, fps=8)
    takes = Takes(
        optimizations=frozenset(
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
    )
    loading = Loading(cuda_dtype="fp16")
    memory = Memory(
        Footprint(
            denoiser="unet",
            blocks=16,
            sizes={"ali-vilab/text-to-video-ms-1.7b": {"unet": 1.41e9, "text_encoder": 3.54e8, "vae": 8.37e7}},
        )
    )
    # The UNet's VAE works on multiples of 8 pixels.
    grid = Grid(size=8)
    # Its UNet steps the frames as a batch of images; no TAEHV weights are published for its VAE.
    previewing = Previewing(layout="frames")

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes["t2v"].sampling)}
        kwargs["output_type"] = "np"
        return kwargs

    @contextmanager
    def steps(self, pipe: Any, on_step: Callable[[], None]) -> Iterator[dict[str, Any]]:
        # This deprecated pipeline predates callback_on_step_end and only has the legacy hook.
        yield {"callback": lambda step, timestep, latents: on_step(), "callback_steps": 1}


FAMILIES = (ModelScope,)
