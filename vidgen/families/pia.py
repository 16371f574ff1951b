"""PIA (Personalized Image Animator, OpenMMLab): AnimateDiff for image to video. A condition
motion adapter (openmmlab/PIA-condition-adapter) turns any Stable Diffusion 1.5 checkpoint into
an image animator: its UNet reads the image's latents and a per-frame affinity mask beside the
noise (9 input channels), and `--motion-scale` picks the mask's curve (small, moderate or large
motion, a loop, or style transfer). diffusers keeps `PIAPipeline` among its deprecated pipelines
(runnable, no longer tested upstream).
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.animatediff import MODEL_FIELDS, SD15_SIZES, AnimateDiff
from vidgen.families.base import (
    SDPA_SLICING,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    Option,
    Takes,
    merged,
    settings,
)

MOTION_SCALE = Option(
    "motion_scale",
    "--motion-scale",
    int,
    "PIA's motion curve: 0-2 small, moderate, large motion; 3-5 a loop; 6-8 style transfer (small to large).",
    ge=0,
    le=8,
)
BASE = "SG161222/Realistic_Vision_V6.0_B1_noVAE"
ADAPTER = "openmmlab/PIA-condition-adapter"
# Schedulers whose FreeInit re-noising needs the last training timestep in the schedule.
EULER = ("euler", "euler-a")
# The negative prompt of diffusers' PIA example.
NEGATIVE = "wrong white balance, dark, sketches, worst quality, low quality, deformed, distorted"
# FreeNoise is not in PIAPipeline (no prompt travel, no windows); FreeInit is.
_SAMPLING = frozenset(
    {"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "eta", "strength"}
    | {"free_init_iters", "free_init_method"}
)
# Parameters for the memory planner: the base is SD 1.5-shaped (animatediff.py); the adapter's
# motion modules as v1-5-2's (published 4.53e8; PIA's conv_in adds 0.03M) - not re-counted here.
_SIZES = {BASE: SD15_SIZES, ADAPTER: {"motion_adapter": 4.53e8}}


class PIA(AnimateDiff):
    name = "pia"
    title = "PIA"
    modes: ClassVar[dict[str, Mode]] = {"i2v": Mode("PIAPipeline", BASE, _SAMPLING, defaults=settings(frames=16))}
    # diffusers' PIA example: the condition adapter on Realistic Vision 6, Euler, 512x512 (the
    # example resizes its image to that), 16 frames, its negative prompt; the pipeline's own 50
    # steps and guidance 7.5. AnimateDiff's 8 fps.
    reference = merged(
        {"model": {"motion_adapter": ADAPTER, "scheduler": "euler"}, "inputs": {"negative_prompt": NEGATIVE}},
        settings(size=(512, 512), steps=50, guidance=7.5, fps=8),
    )
    options: ClassVar[tuple[Option, ...]] = (MOTION_SCALE,)
    # As AnimateDiff's, less what PIAPipeline lacks: FreeNoise (prompt travel) and decode chunks
    # (its decode_latents decodes every frame in one call; --vae-slicing splits it per frame).
    takes = Takes(
        model=MODEL_FIELDS,
        optimizations=frozenset({"offload", "vae_tiling", "vae_slicing", "forward_chunking", "fp8_storage", "compile"}),
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.attention_slicing": SDPA_SLICING,
        "optimization.decode_chunk_size": "PIAPipeline decodes every frame in one call; use --vae-slicing",
        "optimization.quantize": "its motion UNet is assembled from the base UNet after loading, which a "
        "quantized UNet cannot be; use --fp8-storage",
        "inputs.prompts": "PIAPipeline has no FreeNoise, which prompt travel needs; use vidgen animate",
    }
    loading = Loading(
        cuda_dtype="fp16",
        single_file=True,
        components={"motion_adapter": "MotionAdapter"},
        setup_fields=frozenset({"free_init_iters", "free_init_method"}),
    )
    memory = Memory(Footprint(denoiser="unet", blocks=16, sizes=_SIZES), decode_batch=16)
    grid = Grid(size=8)

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        frames = cfg.sampling.num_frames
        if frames is not None and frames < 2:
            raise ConfigError(f"--frames {frames} is not a video: PIA animates the image into 2 frames or more.")
        spacing = (cfg.model.scheduler_options or {}).get("timestep_spacing")
        if cfg.sampling.free_init_iters and cfg.model.scheduler in EULER and spacing not in ("linspace", "trailing"):
            # FreeInit re-noises to the last training timestep, which Euler then looks up in its
            # schedule; the base checkpoints' "leading" spacing never reaches it (IndexError).
            raise ConfigError(
                f"FreeInit with --scheduler {cfg.model.scheduler} needs a schedule that starts at the last training "
                "timestep: add --set model.scheduler_options.timestep_spacing=trailing, or use --scheduler ddim."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = super().call_kwargs(cfg, seed, frames)
        scale = cfg.sampling.get("motion_scale")
        if scale is not None:
            kwargs["motion_scale"] = scale
        return kwargs

    tiny: ClassVar[dict[str, Any]] = {}


def tiny_adapter() -> Any:
    """The tiny AnimateDiff motion adapter's shape with PIA's 9-channel conv_in (noise, image
    latents and the affinity mask), for the tiny SD 1.5 base (tiny:sd15)."""
    from diffusers import MotionAdapter

    return MotionAdapter(
        block_out_channels=(8, 8),
        motion_layers_per_block=2,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
        conv_in_channels=9,
    )


PIA.tiny = {"pia-adapter": tiny_adapter}

FAMILIES = (PIA,)
