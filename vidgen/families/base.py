"""What every model family provides. torch and diffusers are imported only inside methods."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig, SamplingConfig
from vidgen.errors import ConfigError

# Sampling fields vidgen itself consumes (seeds and how many videos), whatever the family.
VIDGEN_SAMPLING = frozenset({"seed", "num_videos"})
# Input fields each mode reads, besides the prompts of families that take text.
MODE_INPUTS: dict[str, frozenset[str]] = {
    "t2v": frozenset(),
    "i2v": frozenset({"image", "resize", "background"}),
    "v2v": frozenset({"video", "resize", "background", "input_fps", "max_frames"}),
    "control": frozenset(
        {"control", "preprocess", "canny_low", "canny_high", "resize", "background", "input_fps", "max_frames"}
    ),
    "animate": frozenset(),
}
TEXT_INPUTS = frozenset({"prompt", "negative_prompt"})
# Why --attention-slicing is refused where diffusers' slicing would not touch the attention.
SDPA_SLICING = "its attention runs through PyTorch SDPA, already memory-efficient; diffusers' slicing would do nothing"
# `model` fields only some families use.
MODEL_OPTIONS = ("motion_adapter", "base_config", "scheduler", "scheduler_options", "loras", "controlnet")
# Optimization options a family may or may not honour (config field names under `optimization`).
OPTIMIZATIONS = (
    "offload",
    "vae_tiling",
    "vae_slicing",
    "forward_chunking",
    "decode_chunk_size",
    "attention_slicing",
    "fp8_storage",
    "attention_backend",
    "compile",
    "cache",
    "quantize",
)


@dataclass(frozen=True)
class Footprint:
    """What the memory planner (vidgen/memory.py) knows about a family's models.

    Activation and decode figures are calibrated against diffusers' published measurements
    (CogVideoX-2b, SVD-XT; see benchmarks/README.md): estimates, not guarantees.
    """

    # The pipeline component that denoises, and how many repeated blocks it has (group offload
    # keeps about two of them on the GPU).
    denoiser: str
    blocks: int
    # Published checkpoints: repo -> component -> parameters, used when the weights are not on
    # disk (a --dry-run of a model never downloaded).
    sizes: dict[str, dict[str, float]] = field(default_factory=dict)
    # Latent grid: pixels per latent pixel, frames per latent frame, latent pixels per token.
    spatial: int = 8
    temporal: int = 1
    patch: int = 1
    # Channels (UNet first level) or hidden size (transformer) of the tokens, and how many
    # tensors of that size are alive at the peak of one denoiser forward.
    width: int = 320
    live: float = 8.0
    # VAE decode working set: values per output pixel, per frame decoded at once.
    decode: float = 1000.0
    # Share of that working set left when --vae-tiling decodes in tiles.
    tiled: float = 0.2
    # Whether the pipeline runs the denoiser on a guided and an unguided batch (CFG).
    guided: bool = True


class Family:
    name: ClassVar[str]
    title: ClassVar[str]
    # mode -> diffusers pipeline class name
    pipelines: ClassVar[dict[str, str]]
    # mode -> the Hub repo used when no preset or --model names one
    repos: ClassVar[dict[str, str]]
    # Set when diffusers has deprecated the pipeline; shown by `vidgen models`.
    deprecated: ClassVar[str | None] = None
    # Whether the family is steered by a text prompt.
    text: ClassVar[bool] = True
    # mode -> the `sampling` fields this family passes to its pipeline.
    sampling: ClassVar[dict[str, frozenset[str]]]
    # Optimizations this family can honour (names from OPTIMIZATIONS).
    optimizations: ClassVar[frozenset[str]] = frozenset()
    # Whether `inputs.prompts` (a frame -> prompt map) is understood.
    prompt_travel: ClassVar[bool] = False
    # Whether --model may be a single original-format checkpoint file.
    single_file: ClassVar[bool] = False
    # model field -> diffusers model class loaded from it and passed to the pipeline.
    components: ClassVar[dict[str, str]] = {}
    # `model` fields beyond id/revision/variant/dtype that this family uses (names from MODEL_OPTIONS).
    model_options: ClassVar[frozenset[str]] = frozenset()
    # mode -> {prepared input name (image, video, control) -> the pipeline argument it is passed as}
    media_args: ClassVar[dict[str, dict[str, str]]] = {}
    # config path -> what to use instead, added to the error when that field is refused.
    hints: ClassVar[dict[str, str]] = {}
    # Set when the pipeline draws some noise from torch's global RNG instead of `generator`;
    # vidgen then also seeds the global RNG (restoring it afterwards) so seeds reproduce.
    seeds_global_rng: ClassVar[bool] = False
    # dtype that `--dtype auto` picks on CUDA (CPU always uses fp32).
    cuda_dtype: ClassVar[str] = "bf16"
    # Sizes and activation shape for the memory planner.
    footprint: ClassVar[Footprint]
    # Whether the pipeline decodes through `pipe.decode_latents`, so the final latents can be
    # saved (--save-latents) and decoded again by `vidgen decode`.
    latents: ClassVar[bool] = True

    # -- configuration ----------------------------------------------------------------
    def defaults(self, mode: str) -> dict[str, Any]:
        """The layer between the schema and presets: the reference settings for `mode`."""
        return {}

    def accepts(self, mode: str) -> frozenset[str]:
        """Config paths under inputs and sampling that this family uses in `mode`."""
        inputs = MODE_INPUTS.get(mode, frozenset()) | (TEXT_INPUTS if self.text else frozenset())
        if self.prompt_travel:
            inputs |= {"prompts"}
        sampling = self.sampling.get(mode, frozenset()) | VIDGEN_SAMPLING
        return frozenset(
            {f"inputs.{name}" for name in inputs}
            | {f"sampling.{name}" for name in sampling}
            | {f"model.{name}" for name in self.model_fields(mode)}
        )

    def model_fields(self, mode: str) -> frozenset[str]:
        """The `model` options (from MODEL_OPTIONS) this family uses in `mode`."""
        return self.model_options

    # -- checks ------------------------------------------------------------------------
    def check(self, cfg: RunConfig) -> None:
        """Raise ConfigError for anything the pipeline would reject or silently change.

        Runs before any weights load. Field-by-field acceptance is checked by the registry,
        which knows which other families take a refused field.
        """
        if self.text and not cfg.inputs.prompt:
            raise ConfigError(f'{self.title} needs a prompt: vidgen {cfg.mode} ... "what the video shows".')

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        """Rules that depend on the loaded model's own config; runs before denoising.
        `frames` is the input video's frame count in v2v."""

    def repair(self, pipe: Any, folder: str | None) -> list[dict[str, Any]]:
        """Work around an upstream loading bug right after loading, from the model's local
        `folder`; returns what was done, for the sidecar's `pipeline.setup`."""
        return []

    def setup(self, pipe: Any, cfg: RunConfig) -> list[dict[str, Any]]:
        """Switch on pipeline features the config asks for, once after loading; returns the
        calls made ({method, kwargs}) so the sidecar can repeat them."""
        return []

    # How many input frames v2v can take, for messages (see usable_frames).
    frame_rule: ClassVar[str] = "any number of frames"

    def usable_frames(self, count: int) -> int:
        """How many of `count` input video frames the model can take (v2v); 0 if too few."""
        return count

    @property
    def min_frames(self) -> int:
        return next(n for n in range(1, 10_000) if self.usable_frames(n))

    def model_offload(self, mode: str) -> bool:
        """Whether the pipeline declares the order `--offload model` moves its models in."""
        return True

    def quantized_components(self, mode: str) -> list[str]:
        """The components --quantize loads quantized: the denoiser, where the weights are."""
        return [self.footprint.denoiser]

    def decode_frames(self, cfg: RunConfig, frames: int) -> int:
        """How many of `frames` output frames the VAE decodes at once with these options."""
        # Most VAEs here decode the frames as one image batch, which --vae-slicing splits.
        return 1 if cfg.optimization.vae_slicing else frames

    # -- the call ----------------------------------------------------------------------
    def pipeline_class(self, mode: str) -> type:
        import diffusers

        return getattr(diffusers, self.pipelines[mode])

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        """JSON-able arguments for the pipeline's `__call__`. The generator comes from `seed`;
        the input image or video is passed beside these (see `inputs.prepare`), and `frames`
        is its frame count where there is one."""
        raise NotImplementedError

    def run_note(self, cfg: RunConfig) -> str | None:
        """How `call` differs from one plain pipeline call, for the sidecar (None: it does not)."""
        return None

    def load_kwargs(self, mode: str) -> dict[str, Any]:
        """Extra from_pretrained / from_single_file arguments (e.g. components to leave out)."""
        return {}

    def media_arg(self, mode: str, name: str) -> str:
        """The pipeline argument a prepared input is passed as."""
        return self.media_args.get(mode, {}).get(name, name)

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        """Run the pipeline once and return its frames (float, frames x height x width x 3).
        `extra` holds the generator and the step-callback arguments."""
        return self.frames(pipe(**call_kwargs, **media, **extra))

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        """How many denoising steps the call will report, for the progress bar."""
        steps = int(call_kwargs.get("num_inference_steps", 0))
        if "strength" in call_kwargs:
            # Video-to-video skips the first (1 - strength) of the schedule, as diffusers does.
            return min(int(steps * call_kwargs["strength"]), steps)
        return steps

    @contextmanager
    def steps(self, pipe: Any, on_step: Callable[[], None]) -> Iterator[dict[str, Any]]:
        """Extra call arguments that report each finished denoising step."""

        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            on_step()
            return tensors

        yield {"callback_on_step_end": on_step_end}

    def decode(self, pipe: Any, latents: Any, args: list[Any], kwargs: dict[str, Any], chunk: int | None) -> Any:
        """Decode saved final latents as the pipeline would have: `decode_latents` with the
        arguments it got (`chunk` replacing its decode_chunk_size), then the video processor."""
        import inspect

        bound = inspect.signature(pipe.decode_latents).bind(latents, *args, **kwargs)
        if chunk is not None and "decode_chunk_size" in inspect.signature(pipe.decode_latents).parameters:
            bound.arguments["decode_chunk_size"] = chunk
        decoded = pipe.decode_latents(*bound.args, **bound.kwargs)
        return pipe.video_processor.postprocess_video(video=decoded, output_type="np")[0]

    def decode_components(self, pipe_class: type) -> dict[str, None]:
        """from_pretrained arguments that leave out everything but the VAE (for `vidgen decode`)."""
        import inspect

        names = inspect.signature(pipe_class.__init__).parameters
        keep = {"self", "vae", "scheduler", "kwargs", "args", "force_zeros_for_empty_prompt"}
        return {name: None for name, p in names.items() if name not in keep and p.default is inspect.Parameter.empty}

    def frames(self, output: Any) -> Any:
        """The pipeline's output as a float array (frames, height, width, channels) in [0, 1]."""
        return output.frames[0]


def prompt_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """prompt, and negative_prompt when one is set."""
    kwargs: dict[str, Any] = {"prompt": cfg.inputs.prompt}
    if cfg.inputs.negative_prompt is not None:
        kwargs["negative_prompt"] = cfg.inputs.negative_prompt
    return kwargs


def sampling_kwargs(sampling: SamplingConfig, names: frozenset[str] | tuple[str, ...]) -> dict[str, Any]:
    """The named sampling fields that are set; unset ones fall back to diffusers' defaults."""
    values = sampling.model_dump()
    return {name: values[name] for name in sorted(names) if name not in VIDGEN_SAMPLING and values[name] is not None}


def check_multiple(title: str, cfg: RunConfig, step: int) -> None:
    """Height and width must be multiples of `step` (the VAE and patch grid)."""
    for flag, value in (("--height", cfg.sampling.height), ("--width", cfg.sampling.width)):
        if value is not None and value % step:
            raise ConfigError(
                f"{flag} {value} does not fit {title}: sizes must be multiples of {step}; "
                f"nearest valid: {nearest(value, step)}."
            )


def nearest(value: int, step: int, offset: int = 0) -> str:
    """The valid values either side of `value` on the grid step*k + offset, for error messages."""
    low = (value - offset) // step * step + offset
    return " or ".join(str(v) for v in (low, low + step) if v >= max(offset, 1))
