"""ChronoEdit (NVIDIA): edit an image by instruction, through a short video on Wan 2.1 I2V 14B.

`ChronoEditPipeline` treats the image and its edit as the first and last frames of a clip: vidgen
writes that clip and, with --save-last-frame (on in the presets), the last frame as a PNG beside
it, named in the sidecar's `output.last_frame`: the edited image. Without --temporal-reasoning
the clip is the pipeline's five frames (it makes five whatever it is asked). With it, the model
first denoises a longer trajectory of reasoning frames; --reasoning-steps says for how many steps
(all of them, as in the diffusers docs, unless given) before it keeps only the first and last, so
the clip has --frames frames when the reasoning runs through every step and five otherwise.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
    Decoding,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    Option,
    Takes,
    option_kwargs,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.wan import CLIP_H, UMT5_XXL, VAE_21, check_positions

REPO = "nvidia/ChronoEdit-14B-Diffusers"
PIPELINE = "ChronoEditPipeline"
TEMPORAL_REASONING = Option(
    "enable_temporal_reasoning",
    "--temporal-reasoning/--no-temporal-reasoning",
    bool,
    "ChronoEdit: denoise a trajectory of reasoning frames towards the edit (a longer clip).",
)
REASONING_STEPS = Option(
    "num_temporal_reasoning_steps",
    "--reasoning-steps",
    int,
    "ChronoEdit: steps the reasoning frames are kept for (default: all; then only first and last).",
    ge=0,
    le=1000,
)
_CALL = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# The clip the pipeline makes without temporal reasoning, whatever num_frames says.
_EDIT_FRAMES = 5
# Parameter counts: ChronoEditTransformer3DModel built on the meta device with the Wan 2.1 I2V 14B
# shape it is fine-tuned from (36 input channels, CLIP image projection; not read from the
# checkpoint's config offline), and the Wan 2.1 encoders and VAE as wan.py counts them.
_SIZES = {
    REPO: {"transformer": 16.395e9, "text_encoder": UMT5_XXL, "vae": VAE_21, "image_encoder": CLIP_H},
}
_FIVE = (
    f"ChronoEdit makes {_EDIT_FRAMES} frames (the image, then its edit) without --temporal-reasoning; "
    f"use --frames {_EDIT_FRAMES}, or add --temporal-reasoning for a longer clip"
)


class ChronoEdit(Family):
    name = "chronoedit"
    title = "ChronoEdit"
    modes: ClassVar[dict[str, Mode]] = {"i2v": Mode(PIPELINE, REPO, _CALL)}
    # The diffusers docs' example: 5 frames, 50 steps, guidance 5, at most 1280x720 in the
    # image's aspect ratio, exported at 16 fps.
    reference = settings(size=(720, 1280), frames=_EDIT_FRAMES, steps=50, guidance=5.0, fps=16)
    options: ClassVar[tuple[Option, ...]] = (TEMPORAL_REASONING, REASONING_STEPS)
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "attention_backend", "fp8_storage"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache": "not checked on ChronoEdit's transformer",
        "optimization.compile": "not checked on ChronoEdit's transformer",
        "optimization.quantize": "not checked on ChronoEdit's transformer",
        "optimization.decode_chunk_size": "Wan's causal VAE decodes frame by frame already; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "it attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": "its feed-forward layers take no chunking; use --offload group",
        "model.scheduler": "ChronoEdit runs the scheduler its checkpoint ships",
        "model.loras": "not checked on ChronoEdit yet (the docs' 8-step distillation LoRA is fused)",
    }
    # The docs load the VAE and the CLIP image encoder in fp32 beside a bf16 transformer.
    loading = Loading(cuda_dtype="bf16", dtypes={"vae": "fp32", "image_encoder": "fp32"})
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=40,
            sizes=_SIZES,
            spatial=8,
            temporal=4,
            patch=2,
            width=5120,
            live=10,
            decode=120,
            tiled=0.3,
        ),
        decode_batch=4,
        sliced=False,
    )
    grid = Grid(frames=4, size=16)
    # The pipeline decodes inside its call (twice with reasoning frames): nothing to save.
    decoding = Decoding(latents=None)

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        s = cfg.sampling
        reasoning = bool(s.get("enable_temporal_reasoning"))
        if not reasoning and s.num_frames is not None and s.num_frames != _EDIT_FRAMES:
            raise ConfigError(f"--frames {s.num_frames}: {_FIVE}.")
        if not reasoning and s.get("num_temporal_reasoning_steps") is not None:
            raise ConfigError("--reasoning-steps applies with --temporal-reasoning; add it, or drop --reasoning-steps.")

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        check_positions(pipe, cfg)
        s = cfg.sampling
        steps = s.num_inference_steps or 50
        kept = s.get("num_temporal_reasoning_steps")
        # Dropping the reasoning frames mid-run trims a multistep scheduler's history
        # (`model_outputs`); a scheduler without one fails there with an AttributeError.
        trims = s.get("enable_temporal_reasoning") and kept is not None and kept < steps
        if trims and not hasattr(pipe.scheduler, "model_outputs"):
            raise ConfigError(
                f"--reasoning-steps {kept} is below --steps {steps}: diffusers' ChronoEditPipeline then drops "
                f"the reasoning frames through a multistep scheduler's history, which "
                f"{type(pipe.scheduler).__name__} has not; use --reasoning-steps {steps} (as the docs)."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {
            **prompt_kwargs(cfg),
            **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling),
            **option_kwargs(self, cfg),
        }
        if kwargs.get("enable_temporal_reasoning"):
            # The docs keep the reasoning frames for every step.
            kwargs.setdefault("num_temporal_reasoning_steps", kwargs.get("num_inference_steps", 50))
        kwargs["output_type"] = "np"
        return kwargs


# -- tiny random-weight recipe (diffusers' ChronoEdit test config, offline tokenizer) ----------


def tiny() -> Any:
    from diffusers import ChronoEditPipeline, ChronoEditTransformer3DModel, FlowMatchEulerDiscreteScheduler

    from vidgen.families.wan import TINY_TRANSFORMER, tiny_clip, tiny_wan_parts

    parts = {**tiny_wan_parts(), "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0)}
    transformer = ChronoEditTransformer3DModel(**{**TINY_TRANSFORMER, "in_channels": 36, "image_dim": 4})
    return ChronoEditPipeline(**parts, **tiny_clip(32, 8), transformer=transformer)


ChronoEdit.tiny = {"chronoedit": tiny}

FAMILIES = (ChronoEdit,)
