"""I2VGen-XL (Alibaba): image plus prompt to video with a 3D UNet.

diffusers deprecated I2VGenXLPipeline (no fixes after 0.33.1); it still imports from the top
level, which is what vidgen uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.families.base import (
    SDPA_SLICING,
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

_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "target_fps", "eta"})


class I2VGenXL(Family):
    name = "i2vgen-xl"
    title = "I2VGen-XL"
    modes: ClassVar[dict[str, Mode]] = {
        # prepare_image_latents calls `latent_dist.sample()` without the generator (diffusers
        # 0.42.1), so the same seed gave different videos until the global RNG was seeded too.
        "i2v": Mode("I2VGenXLPipeline", "ali-vilab/i2vgen-xl", _SAMPLING, seeds_global_rng=True)
    }
    deprecated = "deprecated in diffusers (no fixes after 0.33.1)"
    # The model card: fewer than 50 DDIM steps gives bad results.
    reference = settings(size=(704, 1280), frames=16, steps=50, guidance=9.0, fps=16, target_fps=16)
    takes = Takes(
        optimizations=frozenset(
            {
                "offload",
                "vae_tiling",
                "vae_slicing",
                "forward_chunking",
                "decode_chunk_size",
                "fp8_storage",
                "compile",
                "quantize",
            }
        )
    )
    hints: ClassVar[dict[str, str]] = {"optimization.attention_slicing": SDPA_SLICING}
    loading = Loading(cuda_dtype="fp16")
    # The pipeline decodes one frame at a time unless decode_chunk_size says otherwise.
    memory = Memory(
        Footprint(
            denoiser="unet",
            blocks=16,
            sizes={
                "ali-vilab/i2vgen-xl": {"unet": 1.42e9, "text_encoder": 3.54e8, "image_encoder": 6.32e8, "vae": 8.37e7}
            },
        ),
        decode_batch=1,
        sliced=False,
    )
    # The UNet's VAE works on multiples of 8 pixels.
    grid = Grid(size=8)
    # Its UNet steps the frames as a batch of images; no TAEHV weights are published for its VAE.
    previewing = Previewing(layout="frames")

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, _SAMPLING)}
        if cfg.optimization.decode_chunk_size is not None:
            kwargs["decode_chunk_size"] = cfg.optimization.decode_chunk_size
        # The pipeline defaults to clip_skip=1, and with transformers 5 any clip_skip crashes:
        # CLIPTextModel lost its .text_model submodule (diffusers #14124). None skips no layers.
        kwargs["clip_skip"] = None
        kwargs["output_type"] = "np"
        return kwargs

    @contextmanager
    def steps(self, pipe: Any, on_step: Callable[[], None]) -> Iterator[dict[str, Any]]:
        # This pipeline has no step callback at all; the UNet runs once per step (both
        # guidance branches in one batch), so a forward hook counts the steps.
        handle = pipe.unet.register_forward_hook(lambda module, args, output: on_step())
        try:
            yield {}
        finally:
            handle.remove()


FAMILIES = (I2VGenXL,)
