"""What every model family provides. torch and diffusers are imported only inside methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig, SamplingConfig
from vidgen.errors import ConfigError

# Sampling fields every family maps onto its pipeline; the rest are family-specific.
COMMON_SAMPLING = frozenset(
    {"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "seed", "num_videos"}
)
# Optimization options and the config field that requests each.
OPTIMIZATIONS = ("offload", "vae_tiling", "vae_slicing", "forward_chunking", "compile")


class Family:
    name: ClassVar[str]
    title: ClassVar[str]
    # mode -> diffusers pipeline class name
    pipelines: ClassVar[dict[str, str]]
    default_repo: ClassVar[str]
    # Set when diffusers has deprecated the pipeline; shown by `vidgen models`.
    deprecated: ClassVar[str | None] = None
    # Family-specific sampling fields this family passes to its pipeline.
    extra_sampling: ClassVar[frozenset[str]] = frozenset()
    # Optimizations this family can honour (names from OPTIMIZATIONS).
    optimizations: ClassVar[frozenset[str]] = frozenset()
    # dtype that `--dtype auto` picks on CUDA (CPU always uses fp32).
    cuda_dtype: ClassVar[str] = "bf16"
    # Family defaults: the layer between the schema and presets.
    defaults: ClassVar[dict[str, Any]] = {}

    # -- checks, before any weights load ------------------------------------------------
    def check(self, cfg: RunConfig) -> None:
        """Raise ConfigError for anything the pipeline would reject or silently change."""
        if cfg.mode not in self.pipelines:
            modes = ", ".join(self.pipelines)
            raise ConfigError(f"{self.title} does not do {cfg.mode}; it does: {modes}.")

    # -- the call ----------------------------------------------------------------------
    def pipeline_class(self, mode: str) -> type:
        import diffusers

        return getattr(diffusers, self.pipelines[mode])

    def call_kwargs(self, cfg: RunConfig, seed: int) -> dict[str, Any]:
        """JSON-able arguments for the pipeline's `__call__` (the generator comes from `seed`)."""
        raise NotImplementedError

    def progress_kwargs(self, on_step: Callable[[], None]) -> dict[str, Any]:
        """Extra call arguments that report each finished denoising step."""

        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            on_step()
            return tensors

        return {"callback_on_step_end": on_step_end}

    def frames(self, output: Any) -> Any:
        """The pipeline's output as a float array (frames, height, width, channels) in [0, 1]."""
        return output.frames[0]


def prompt_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """prompt, and negative_prompt when one is set."""
    kwargs: dict[str, Any] = {"prompt": cfg.inputs.prompt}
    if cfg.inputs.negative_prompt is not None:
        kwargs["negative_prompt"] = cfg.inputs.negative_prompt
    return kwargs


def sampling_kwargs(sampling: SamplingConfig, names: tuple[str, ...]) -> dict[str, Any]:
    """The named sampling fields that are set; unset ones fall back to diffusers' defaults."""
    values = sampling.model_dump()
    return {name: values[name] for name in names if values[name] is not None}


def nearest(value: int, step: int, offset: int = 0) -> str:
    """The valid values either side of `value` on the grid step*k + offset, for error messages."""
    low = (value - offset) // step * step + offset
    return " or ".join(str(v) for v in (low, low + step) if v >= max(offset, 1))
