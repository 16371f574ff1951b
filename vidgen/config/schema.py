"""The validated description of one run.

Field names under `sampling` are the names of diffusers' `__call__` arguments, so a sidecar
reads like the diffusers documentation and a family's call kwargs are mostly a pass-through.
`None` means "not set here": a lower layer (family defaults) or diffusers' own default applies.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from vidgen.config.kinds import BUILTIN, INPUT_KINDS, OUTPUT_KINDS, InputKind, OutputKind

Mode = Literal["t2v", "i2v", "v2v", "animate", "control"]
DType = Literal["auto", "fp32", "fp16", "bf16"]
Offload = Literal["none", "model", "sequential", "group"]
Format = Literal["mp4", "webm", "gif", "webp", "png"]
Resize = Literal["fit", "crop", "pad"]
Scheduler = Literal["ddim", "euler", "euler-a", "dpm++", "lcm", "unipc"]

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_THRESHOLD = r"(0(\.\d+)?|1(\.0+)?|\.\d+)"
_CACHE = re.compile(rf"^(first-block(:{_THRESHOLD})?|pab|faster|taylorseer|magcache(:(calibrate|{_THRESHOLD}))?)$")


class _Section(BaseModel):
    # Unknown keys are errors: a typo in a preset must fail, not be ignored.
    model_config = ConfigDict(extra="forbid")


class LoraConfig(_Section):
    source: str = Field(description="Hub repo id, LoRA folder, or .safetensors file")
    scale: float = Field(1.0, ge=-10, le=10)
    # The adapter name diffusers registers it under; derived from the source when not given.
    name: str | None = None
    # The file inside a Hub repo or folder that holds several LoRAs (e.g. sub/lora_high.safetensors).
    weight_name: str | None = None
    # Which denoiser of a two-expert model (Wan 2.2 A14B) gets it: the high-noise `transformer`,
    # the low-noise `transformer_2`, or both (None: every denoiser the model has).
    expert: Literal["high", "low", "both"] | None = None


class ConditionConfig(_Section):
    """One conditioning item (diffusers' LTXVideoCondition): an image or a video placed at a
    frame of the output, pulled towards with `strength` (1 = fully)."""

    image: str | None = None
    video: str | None = None
    frame_index: int = Field(0, ge=0, le=10_000)
    strength: float = Field(1.0, ge=0, le=1)


class ModelConfig(_Section):
    family: str | None = None
    id: str | None = Field(None, description="Hub repo id, local diffusers folder, single file, or tiny:<name>")
    revision: str | None = None
    variant: str | None = None
    dtype: DType = "auto"
    allow_pickle: bool = False
    # Components and loading options some families take (each family lists the ones it uses).
    motion_adapter: str | None = None
    # Where a single-file checkpoint's configs come from: a diffusers folder or Hub id.
    base_config: str | None = None
    scheduler: Scheduler | None = None
    # Scheduler config overrides, e.g. {timestep_spacing: linspace}; applied with from_config.
    scheduler_options: dict[str, Any] | None = None
    loras: list[LoraConfig] | None = None
    # ControlNet: Hub id, diffusers folder, or canny / pose / depth for the standard SD 1.5 ones.
    controlnet: str | None = None
    # A denoiser from one file instead of the model's own (GGUF, safetensors in diffusers,
    # original or ComfyUI layout, scaled fp8): a path or REPO[@REVISION]:PATH on the Hub.
    transformer: str | None = None
    # The second expert of a two-expert model (Wan 2.2 A14B's low-noise transformer_2).
    transformer_2: str | None = None
    # The text encoder from one file (GGUF, or safetensors in transformers' names, scaled fp8
    # included): a path or REPO[@REVISION]:PATH. transformers dequantizes a GGUF file whole.
    text_encoder: str | None = None
    # The instruct LLM --enhance-prompt runs: a Hub id, a local transformers folder or tiny:llm
    # (None: the family's default; LTX-2 enhances with its own Gemma text encoder).
    enhancer: str | None = None
    # The tiny decoder of --live-preview (TAEHV weights): a path or REPO[@REVISION]:PATH.
    preview_decoder: str | None = None


def _declared_extras(cls: type[BaseModel], data: Any, handler: Any, adapters: Any) -> Any:
    """Validate the keys a section does not declare against `adapters` (fields registered by
    families and input kinds); any other unknown key is still an error, as with extra="forbid"."""
    if not isinstance(data, dict):
        return handler(data)
    clean, errors = dict(data), []
    for key, value in data.items():
        if key in cls.model_fields:
            continue
        adapter = adapters.get(key)
        if adapter is None:
            errors.append(InitErrorDetails(type="extra_forbidden", loc=(key,), input=value))
            continue
        try:
            clean[key] = adapter.validate_python(value)
        except ValidationError as exc:
            for err in exc.errors():
                kind = PydanticCustomError(err["type"], err["msg"])
                errors.append(InitErrorDetails(type=kind, loc=(key, *err["loc"]), input=value))
    if errors:
        raise ValidationError.from_exception_data(cls.__name__, errors)
    return handler(clean)


def _kind_type(kind: InputKind) -> Any:
    return list[str] | None if kind.many else str | None


class _KindFields:
    """Validators of the input kinds declared after this module (by a family's module), looked
    up in the kinds table when a config is validated, so declaring a kind is all it takes."""

    def __init__(self) -> None:
        self._made: dict[str, TypeAdapter[Any]] = {}

    def get(self, name: str) -> TypeAdapter[Any] | None:
        kind = INPUT_KINDS.get(name)
        if kind is None:
            return None
        if name not in self._made:
            self._made[name] = TypeAdapter(_kind_type(kind))
        return self._made[name]


KIND_FIELDS = _KindFields()


class _InputsBase(_Section):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="wrap")
    @classmethod
    def _kind_fields(cls, data: Any, handler: Any) -> Any:
        return _declared_extras(cls, data, handler, KIND_FIELDS)

    def get(self, name: str) -> Any:
        """A field's value, input kinds declared by families included (None when not set)."""
        return getattr(self, name, None)

    prompt: str | None = None
    # Prompt travel: frame index -> prompt, interpolated between keyframes (AnimateDiff FreeNoise).
    prompts: dict[int, str] | None = None
    negative_prompt: str | None = None
    # How an input image or frame is brought to the model's size (None: crop).
    resize: Resize | None = None
    # What transparent pixels are composited on, and what `pad` fills with (None: white).
    background: str | None = None
    # v2v: resample the input to this frame rate before taking frames (None: the output fps).
    input_fps: float | None = Field(None, gt=0, le=240)
    max_frames: int | None = Field(None, ge=1, le=10_000)
    # control: how to turn the control frames into control maps (none: they already are
    # edge/pose/depth/segmentation maps; blur: a Gaussian blur of the frames).
    preprocess: Literal["none", "canny", "pose", "depth", "blur"] | None = None
    canny_low: int | None = Field(None, ge=0, le=255)
    canny_high: int | None = Field(None, ge=0, le=255)
    # Keyframes and conditioning clips (--keyframe, --condition-video), beside the i2v image.
    conditions: list[ConditionConfig] | None = None
    # --enhance-prompt: an instruct LLM rewrites the prompt into a detailed one before the video
    # model sees it (model.enhancer picks the LLM). The typed prompt stays here; the sidecar's
    # prompt_enhancement block holds what the LLM wrote.
    enhance_prompt: bool | None = None
    # The LLM's seed (None: the run's seed), its sampling temperature (None: 0.7; 0: greedy) and
    # how many tokens it may write (None: 512), so the rewrite is repeatable and bounded.
    enhancer_seed: int | None = Field(None, ge=0, lt=2**63)
    enhancer_temperature: float | None = Field(None, ge=0, le=2)
    enhancer_max_new_tokens: int | None = Field(None, ge=1, le=2048)


# The file inputs (image, video, control frames, mask, reference images) are the input kinds of
# vidgen/config/kinds.py, declared there once; each is a field of this section.
InputsConfig = create_model(
    "InputsConfig",
    __base__=_InputsBase,
    **{kind.field: (_kind_type(kind), Field(None, description=kind.help)) for kind in BUILTIN},
)


# Sampling fields that model families declare for themselves (families/base.py `Option`):
# name -> validator. Filled by the families registry at import; config never imports families.
FAMILY_FIELDS: dict[str, TypeAdapter[Any]] = {}
FAMILY_TYPES: dict[str, Any] = {}


def register_sampling_field(name: str, annotation: Any) -> None:
    """Make `sampling.<name>` a valid config field, validated by `annotation`."""
    if name in SamplingConfig.model_fields:
        raise ValueError(f"sampling.{name} is a shared field; a family cannot declare it again")
    FAMILY_FIELDS[name] = TypeAdapter(annotation)
    FAMILY_TYPES[name] = annotation


class SamplingConfig(_Section):
    # Family-declared fields arrive as extras and are validated against FAMILY_FIELDS below;
    # any other unknown key is still an error, as with extra="forbid".
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="wrap")
    @classmethod
    def _family_fields(cls, data: Any, handler: Any) -> Any:
        return _declared_extras(cls, data, handler, FAMILY_FIELDS)

    def get(self, name: str) -> Any:
        """A field's value, family-declared ones included (None when not set)."""
        return getattr(self, name, None)

    num_frames: int | None = Field(None, ge=1, le=10_000)
    num_inference_steps: int | None = Field(None, ge=1, le=1000)
    guidance_scale: float | None = Field(None, ge=0, le=100)
    height: int | None = Field(None, ge=8, le=8192)
    width: int | None = Field(None, ge=8, le=8192)
    seed: int | None = Field(None, ge=0, lt=2**63)
    num_videos: int = Field(1, ge=1, le=10_000)
    # Fields only some families take; each family lists the ones it accepts.
    max_sequence_length: int | None = Field(None, ge=1, le=4096)
    use_dynamic_cfg: bool | None = None
    eta: float | None = Field(None, ge=0, le=1)
    # Stable Video Diffusion micro-conditions; `fps` is the frame rate the model is conditioned
    # on, not the output file's (that is output.fps).
    motion_bucket_id: int | None = Field(None, ge=0, le=1023)
    noise_aug_strength: float | None = Field(None, ge=0, le=10)
    fps: int | None = Field(None, ge=1, le=240)
    min_guidance_scale: float | None = Field(None, ge=0, le=100)
    max_guidance_scale: float | None = Field(None, ge=0, le=100)
    # I2VGen-XL's frame-rate micro-condition.
    target_fps: int | None = Field(None, ge=1, le=240)
    # Video-to-video: how far to move away from the input (1 = ignore it).
    strength: float | None = Field(None, gt=0, le=1)
    # AnimateDiff FreeNoise (long videos, prompt travel): frames per window and window step.
    context_length: int | None = Field(None, ge=1, le=1024)
    context_stride: int | None = Field(None, ge=1, le=1024)
    # AnimateDiff FreeInit: re-noising iterations for temporal consistency (each one is a full run).
    free_init_iters: int | None = Field(None, ge=1, le=10)
    free_init_method: Literal["butterworth", "ideal", "gaussian", "box"] | None = None
    # ControlNet strength; Text2Video-Zero's motion field and timesteps; InstructPix2Pix's pull
    # towards the input frames.
    controlnet_conditioning_scale: float | None = Field(None, ge=0, le=5)
    motion_field_strength_x: float | None = Field(None, ge=-1000, le=1000)
    motion_field_strength_y: float | None = Field(None, ge=-1000, le=1000)
    t0: int | None = Field(None, ge=0, le=1000)
    t1: int | None = Field(None, ge=0, le=1000)
    image_guidance_scale: float | None = Field(None, ge=0, le=100)
    # Cross-frame attention runs: frames per call after the first-frame anchor (None: all at once).
    chunk: int | None = Field(None, ge=1, le=10_000)
    # Accepted so it can be refused with the reason: every CLIP text encoder crashes with it
    # under transformers 5 (diffusers #14124).
    clip_skip: int | None = Field(None, ge=0, le=12)


class OptimizationConfig(_Section):
    device: str = "auto"
    # auto: vidgen picks offload and decode options that fit the GPU's free memory (or
    # vram_gb); manual: exactly the options below.
    memory: Literal["manual", "auto"] = "manual"
    # Plan for a card with this much memory instead of the one in the machine (GiB).
    vram_gb: float | None = Field(None, gt=0, le=4096)
    offload: Offload = "none"
    # Group offloading only: move one block or one leaf layer at a time (None: block), and
    # overlap transfers with compute on a CUDA stream.
    offload_type: Literal["block", "leaf"] | None = None
    offload_stream: bool = False
    vae_tiling: bool = False
    vae_slicing: bool = False
    forward_chunking: bool = False
    # Frames the VAE decodes at once (SVD, I2VGen-XL): lower uses less memory.
    decode_chunk_size: int | None = Field(None, ge=1, le=10_000)
    attention_slicing: bool = False
    # Store the denoiser's weights in float8 and upcast each layer as it runs (layerwise casting).
    fp8_storage: bool = False
    # A diffusers attention backend (flash, sage, native...), for families that dispatch through it.
    attention_backend: str | None = None
    compile: bool = False
    # Reuse transformer outputs across steps: first-block[:THRESHOLD], pab, faster, taylorseer,
    # magcache[:THRESHOLD] or magcache:calibrate (measure the ratios below for this checkpoint).
    cache: str | None = None
    # MagCache's magnitude ratios, one per step (resampled to the run's steps), as a
    # --cache magcache:calibrate run records them; None: the checkpoint's published ones.
    mag_ratios: list[float] | None = Field(None, min_length=2, max_length=1000)
    # Load the denoiser (and a large text encoder) quantized.
    quantize: Literal["int8", "fp8", "nf4"] | None = None
    # On out-of-memory, retry the same seed with the next cheaper plan until one fits.
    oom_retry: bool = False
    # One video split over this many GPUs (context parallelism, one process per GPU), how
    # (ulysses splits heads, ring splits the sequence, unified both) and, for unified, the ring's size.
    gpus: int = Field(1, ge=1, le=1024)
    context_parallel: Literal["ulysses", "ring", "unified"] = "ulysses"
    ring_degree: int | None = Field(None, ge=1, le=1024)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("cache")
    @classmethod
    def _cache(cls, value: str | None) -> str | None:
        if value is not None and not _CACHE.match(value):
            raise ValueError(
                "must be first-block, first-block:THRESHOLD (e.g. first-block:0.1), pab, faster, taylorseer, "
                "magcache, magcache:THRESHOLD or magcache:calibrate"
            )
        return value

    @field_validator("mag_ratios")
    @classmethod
    def _mag_ratios(cls, value: list[float] | None) -> list[float] | None:
        # Ratios of consecutive residual magnitudes: near 1, never zero, negative or unbounded.
        if value is not None and not all(0 < ratio <= 10 for ratio in value):
            raise ValueError("must be magnitude ratios between 0 and 10 (as --cache magcache:calibrate records them)")
        return value


FINISH_BY = re.compile(r"^(x?(?P<factor>[0-9]{1,2})|(?P<fps>[0-9]{1,3}) ?fps)$")


class FinishStep(_Section):
    """One step of the finishing chain run on the video after it is generated, in order
    (--interpolate then --upscale; `vidgen interpolate`/`upscale` append to a clip's chain)."""

    step: Literal["interpolate", "upscale"]
    model: str = Field(description="weights file or REPO[@REV]:PATH (RIFE IFNet, or a Real-ESRGAN network)")
    # interpolate: x2 and x4 (the frame count's factor, fps multiplied) or a target rate, 32fps.
    by: str | None = None
    # upscale: input pixels a side per tile (0: whole frames), so big frames fit memory.
    tile: int | None = Field(None, ge=0, le=8192)
    # upscale with a Kandinsky6SRPipeline (a diffusion model): its factor (2, 2.25, 4), steps and
    # the seed of its noise (default: the run's seed, else 0).
    scale: Literal[2.0, 2.25, 4.0] | None = None
    steps: int | None = Field(None, ge=1, le=100)
    seed: int | None = Field(None, ge=0, lt=2**63)

    @field_validator("by")
    @classmethod
    def _by(cls, value: str | None) -> str | None:
        if value is not None and not FINISH_BY.match(value.strip().lower()):
            raise ValueError("must be a factor (2, x2, 4) or a target frame rate (32fps)")
        return value.strip().lower() if value is not None else None


class _OutputBase(_Section):
    path: str = "outputs/{mode}-{slug}-{seed}.{ext}"
    format: Format | None = None
    fps: int | None = Field(None, ge=1, le=240)
    crf: int | None = Field(None, ge=0, le=63)
    codec: str | None = None
    overwrite: bool = False
    # The sound of families that make it (LTX-2): None keeps it, False drops it (--no-audio).
    audio: bool | None = None
    # Interpolation and upscaling after the generation (--interpolate, --upscale), in order.
    finish: list[FinishStep] | None = Field(None, max_length=8)


# A file rewritten during denoising at most this many steps apart (more than any run takes).
MAX_EVERY = 1000


def _every(value: Any) -> int | str | None:
    """Steps between rewrites of an `every` output kind: 1 to MAX_EVERY, or "auto"."""
    if value is None or value == "auto":
        return value
    try:
        steps = int(value) if not isinstance(value, bool | float) else None
    except (TypeError, ValueError):
        steps = None
    if steps is None or not 1 <= steps <= MAX_EVERY:
        raise ValueError(f"must be auto or a whole number of steps from 1 to {MAX_EVERY}")
    return steps


def _switch_field(kind: OutputKind) -> tuple[Any, Any]:
    """An output kind's switch: on/off, or for a file rewritten during the run (`every`) the
    steps between writes (None: off)."""
    if kind.every is not None:
        # "auto": the bare flag's interval, kept within a share of the run's time.
        return Annotated[int | str | None, BeforeValidator(_every)], Field(None, description=kind.help)
    return bool, Field(False, description=kind.help)


# The files written beside the video on request (--save-control, --save-latents, --preview,
# --live-preview) are the output kinds of vidgen/config/kinds.py; each switch is a field here.
OutputConfig = create_model(
    "OutputConfig",
    __base__=_OutputBase,
    **{kind.switch: _switch_field(kind) for kind in OUTPUT_KINDS.values() if kind.switch},
)


class RunConfig(_Section):
    mode: Mode
    model: ModelConfig = ModelConfig()
    inputs: InputsConfig = InputsConfig()
    sampling: SamplingConfig = SamplingConfig()
    optimization: OptimizationConfig = OptimizationConfig()
    output: OutputConfig = OutputConfig()


def field_type(path: str) -> Any:
    """The annotation of the config field at `path` (`mode`, or SECTION.FIELD, family-declared
    fields and input kinds included); None for an unknown path or one inside a field's value."""
    parts = path.split(".")
    if len(parts) == 1:
        field = RunConfig.model_fields.get(parts[0])
        return field.annotation if field is not None else None
    section = RunConfig.model_fields.get(parts[0])
    model = section.annotation if section is not None and len(parts) == 2 else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    if parts[1] in model.model_fields:
        return model.model_fields[parts[1]].annotation
    if parts[0] == "sampling":
        return FAMILY_TYPES.get(parts[1])
    kind = INPUT_KINDS.get(parts[1]) if parts[0] == "inputs" else None
    return _kind_type(kind) if kind is not None else None


def scalar_type(annotation: Any) -> Any:
    """int, float, bool or str for a field holding one of them (optional or constrained), "choice"
    for a Literal; None for lists, mappings, sections and unknown fields."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return scalar_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return scalar_type(inner[0]) if len(inner) == 1 else None
    if origin is Literal:
        return "choice"
    return annotation if annotation in (int, float, bool, str) else None
