"""What every model family provides. torch and diffusers are imported only inside methods."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Protocol

from vidgen.config.kinds import main_input
from vidgen.config.schema import RunConfig, SamplingConfig
from vidgen.core.errors import ConfigError

# Sampling fields vidgen itself consumes (seeds and how many videos), whatever the family.
VIDGEN_SAMPLING = frozenset({"seed", "num_videos"})
# Input settings each mode reads beside its main input file (config/kinds.py: i2v's IMAGE, v2v's
# VIDEO, control's --control) and the prompts of families that take text.
MODE_INPUTS: dict[str, frozenset[str]] = {
    "t2v": frozenset(),
    "i2v": frozenset({"resize", "background"}),
    "v2v": frozenset({"resize", "background", "input_fps", "max_frames"}),
    "control": frozenset({"preprocess", "canny_low", "canny_high", "resize", "background", "input_fps", "max_frames"}),
    "animate": frozenset(),
}
# --enhance-prompt and the LLM's settings: inputs of every family that takes text.
ENHANCE_INPUTS = frozenset({"enhance_prompt", "enhancer_seed", "enhancer_temperature", "enhancer_max_new_tokens"})
TEXT_INPUTS = frozenset({"prompt", "negative_prompt"}) | ENHANCE_INPUTS
# Why --attention-slicing is refused where diffusers' slicing would not touch the attention.
SDPA_SLICING = "its attention runs through PyTorch SDPA, already memory-efficient; diffusers' slicing would do nothing"
# Why --vae-slicing is refused: slicing splits a batch of videos, and a call makes one.
ONE_VIDEO_PER_CALL = "vidgen makes one video per call, so there is no batch to slice; use --vae-tiling"
# Why --forward-chunking is refused where the denoiser's feed-forward layers have no chunk hook.
NO_FORWARD_CHUNKING = "its feed-forward layers take no chunking; use --offload model"
# `model` fields only some families use.
MODEL_OPTIONS = (
    "motion_adapter",
    "base_config",
    "scheduler",
    "scheduler_options",
    "loras",
    "controlnet",
    "transformer",
    "transformer_2",
    "text_encoder",
)
# --scheduler name -> diffusers class, for the UNet (epsilon / v-prediction) families.
UNET_SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "lcm": "LCMScheduler",
}
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
class Option:
    """A sampling option that families declare for themselves.

    It becomes the config field `sampling.<field>` (diffusers' name for it), the flag on every
    command whose families take it, its --help line, its range check, and the refusal message on
    families that do not take it. Families that share an option declare the same `Option`.
    """

    field: str
    flag: str
    type: type
    help: str
    ge: float | None = None
    le: float | None = None
    # Applied once to the loaded pipeline (e.g. the scheduler's shift) rather than passed to its
    # __call__: batch jobs that differ in it cannot share a pipeline.
    setup: bool = False
    # False: vidgen acts on it itself (Wan VACE's --keep-unmasked, a step after decoding), so it
    # is never passed to the pipeline.
    call: bool = True

    @property
    def path(self) -> str:
        return f"sampling.{self.field}"

    def annotation(self) -> Any:
        """The pydantic type that validates the field."""
        from pydantic import Field

        return Annotated[self.type | None, Field(ge=self.ge, le=self.le)]


@dataclass(frozen=True)
class Grid:
    """The frame counts and sizes a family's VAE and patching can make: `frames`k+1 frames (None:
    any) and sizes that are multiples of `size`. Checked before loading, never silently rounded.
    The same rule says how many frames of an input video (v2v) the model can take."""

    frames: int | None = None
    size: int | None = None
    # The shortest input clip that is still a video to the family (one frame is an image to most;
    # LTX conditions on single frames too).
    shortest: int = 2
    # Input clips of any length from `shortest` on (SkyReels-V2 DF, Helios and Cosmos continue
    # from a clip's last frames rather than encoding it on the grid), and the rule in words where
    # it is not `frames`k+1.
    any_clip: bool = False
    note: str | None = None

    @property
    def rule(self) -> str:
        """How many input frames v2v can take, for messages."""
        if self.note:
            return self.note
        return f"{self.frames}k+1 frames" if self.frames else "any number of frames"

    def usable(self, count: int) -> int:
        """How many of `count` input video frames the model can take (the largest on the grid); 0
        if too few."""
        if self.any_clip:
            return count if count >= self.shortest else 0
        if not self.frames:
            return count
        usable = (count - 1) // self.frames * self.frames + 1 if count >= 1 else 0
        return usable if usable >= self.shortest else 0

    @property
    def min_frames(self) -> int:
        """The shortest usable input length."""
        return next(n for n in range(1, 10_000) if self.usable(n))


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


@dataclass(frozen=True)
class Catch:
    """Where a pipeline hands a final tensor over: `target`, a method reached from the pipeline
    by a dotted path ("decode_latents", "vae.decode"), called once per run (the last call
    counts). `take` is "arg" (its first argument) or "result" (what it returns); `decodes` marks
    a call that starts the decode, so an error from then on is a decode failure whose latents
    are saved."""

    target: str
    take: str = "arg"
    decodes: bool = True


class ModelAccess(Protocol):
    """What the loader lends `Family.setup` for loading more models beside the pipeline (LTX's
    latent upsampler, LTX-2's stage-2 LoRA). Families sit below the loader, so they locate and
    check files only through this: the same rules (tiny models, safetensors unless
    --allow-pickle typed) as every other component."""

    def locate(self, source: str, what: str) -> tuple[str, dict[str, Any]]:
        """(what to pass to from_pretrained, its subfolder kwargs) for tiny:NAME, a local
        diffusers folder, or a Hub repo id with an optional subfolder after it."""
        ...

    def safetensors(self) -> bool | None:
        """The use_safetensors argument this run loads with."""
        ...

    def lora(self, config: Any) -> tuple[str, dict[str, Any]]:
        """(where, load_lora_weights kwargs) for a LoRA, checked as --lora is."""
        ...


@dataclass
class Caught:
    """Final latents on their way to the VAE, for `Family.decode`: the decode call's other
    arguments (caught latents keep them) and the other caught tensors (LTX-2's audio latents),
    all on the VAE's device."""

    latents: Any
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, Any] = field(default_factory=dict)


@dataclass
class Audio:
    """Sound a family makes with its video: float samples in [-1, 1], shaped (channels,
    samples), at `sample_rate` Hz. The output layer muxes it (vidgen/media.py); a family only
    returns it."""

    samples: Any
    sample_rate: int


@dataclass
class Generated:
    """What `Family.call` returns when the pipeline makes more than frames: the float frames
    (frames, height, width, 3) and the sound that goes with them."""

    frames: Any
    audio: Audio | None = None
    # HDR families (Mode.hdr): the linear frames (scene light, Rec.709 primaries, 1.0 = the SDR
    # white, values above it kept), which the output layer writes as HDR10; `frames` is then
    # their SDR rendering (clipped, sRGB) for previews, posters and the last frame.
    hdr: Any = None


@dataclass(frozen=True)
class Mode:
    """One thing a family does (t2v, i2v, v2v, control, animate): the diffusers pipeline that does
    it and everything the config layer needs to know about it, as data."""

    # The diffusers pipeline class, and the Hub repo used when no preset or --model names one.
    pipeline: str
    repo: str
    # The shared `sampling` fields passed to the pipeline (the family's own Options come on top).
    sampling: frozenset[str] = frozenset()
    # Inputs beyond the mode's own (MODE_INPUTS and its main input) that the family reads, e.g.
    # last_image; a family's own input kinds (config/kinds.py register_input) are named here too.
    inputs: frozenset[str] = frozenset()
    # Inputs of `inputs` the family cannot do without (Wan Animate's character and face video,
    # SparseCtrl's keyframes): a run without one is refused before anything is read, naming its flag.
    requires: frozenset[str] = frozenset()
    # Inputs the mode usually requires that this family can do without (Wan VACE makes a video
    # from reference images or the prompt alone when no --control is given).
    optional: frozenset[str] = frozenset()
    # prepared input name -> the pipeline argument it is passed as, where they differ.
    media: dict[str, str] = field(default_factory=dict)
    # Which of the family's Options this mode takes, by field (None: all of them).
    options: frozenset[str] | None = None
    # `model` options (MODEL_OPTIONS) of this mode, when they differ from the family's Takes.model.
    model: frozenset[str] | None = None
    # The reference settings of this mode, over the family's `reference` (a nested config dict).
    defaults: dict[str, Any] = field(default_factory=dict)
    # model_index.json pipeline classes whose checkpoints this mode also runs, through its own
    # pipeline (Wan video-to-video runs the WanPipeline text-to-video weights).
    loads_from: frozenset[str] = frozenset()
    # Whether the pipeline makes sound with the video (`call` returns Generated with its Audio).
    audio: bool = False
    # Whether it makes HDR video (`call` returns Generated with `hdr`): written as HDR10 mp4 only.
    hdr: bool = False
    # Set when the pipeline draws some noise from torch's global RNG instead of `generator`;
    # vidgen then also seeds the global RNG (restoring it afterwards) so seeds reproduce.
    seeds_global_rng: bool = False
    # Whether the pipeline declares the order `--offload model` moves its models in.
    model_offload: bool = True
    # Whether accelerate's per-layer hooks (`--offload sequential`) can run its denoiser.
    sequential_offload: bool = True


@dataclass(frozen=True)
class Takes:
    """What a family accepts beyond its modes: the options the registry checks, with the
    refusal messages derived from these sets."""

    # Whether the family is steered by a text prompt.
    text: bool = True
    # Whether `inputs.prompts` (a frame -> prompt map, prompt travel) is understood, and whether
    # the family turns it into call arguments itself (LTX-Video long's prompt per window) rather
    # than the pipeline taking the map beside them (AnimateDiff's prompt travel).
    prompts: bool = False
    prompts_in_call: bool = False
    # `model` fields beyond id/revision/variant/dtype that this family uses (MODEL_OPTIONS).
    model: frozenset[str] = frozenset()
    # Optimizations this family can honour (names from OPTIMIZATIONS).
    optimizations: frozenset[str] = frozenset()
    # Cache hooks (--cache NAME) the family's denoiser runs; hints give the reason others are refused.
    caches: frozenset[str] = frozenset({"first-block", "pab", "faster"})
    # --scheduler names -> diffusers scheduler class, and the config each needs beside the model's.
    schedulers: dict[str, str] = field(default_factory=lambda: dict(UNET_SCHEDULERS))
    scheduler_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Modular:
    """A family whose pipeline is a diffusers ModularPipeline (blocks, not a DiffusionPipeline):
    vidgen builds `blocks` (a diffusers blocks class, chosen here and never read from the model)
    pruned to the mode's `workflows` entry, loads every component from the model's own folder or
    repo (a modular_model_index.json that names other places is not followed: files are data),
    and asks the call for `output`. The call takes no step callback: progress counts the
    scheduler's steps (`modular_steps`)."""

    blocks: str
    # The output(s) the call asks for; several (MiniMax-H3's videos, audio and sampling_rate)
    # come back by name, and that family's `call` picks them apart.
    output: str | tuple[str, ...] = "videos"
    # The scheduler component whose `step` marks a denoising step (MiniMax-H3 has one for sound too).
    stepper: str = "scheduler"
    # mode -> the blocks' workflow it runs (MiniMax-H3's t2va, fl2va); absent: all blocks.
    workflows: dict[str, str] = field(default_factory=dict)
    # input field -> the workflow a run given that input runs instead, as the blocks' own trigger
    # inputs choose (MiniMax-H3's --reference runs ref2va, on another transformer).
    triggers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Loading:
    """How the family's pipelines load: dtypes, denoisers, extra components and what
    from_pretrained needs beyond the model's folder."""

    # dtype that `--dtype auto` picks on CUDA (CPU always uses fp32).
    cuda_dtype: str = "bf16"
    # component -> dtype it always loads in, whatever --dtype sets for the rest (Wan's VAE runs in
    # fp32 as its model cards recommend); `half_dtypes` only pin in a half-precision run
    # (HunyuanVideo's fp16 encoders: an fp32 run keeps everything fp32).
    dtypes: dict[str, str] = field(default_factory=dict)
    half_dtypes: dict[str, str] = field(default_factory=dict)
    # Pipeline components that denoise; the denoiser options (fp8 storage, compile, caches,
    # attention backend, quantization, LoRA) act on each the loaded model has. Empty: the
    # footprint's one denoiser.
    denoisers: tuple[str, ...] = ()
    # Components --quantize loads quantized besides the denoisers (encoders as large as them).
    quantize_also: tuple[str, ...] = ()
    # model field -> diffusers model class loaded from it and passed to the pipeline.
    components: dict[str, str] = field(default_factory=dict)
    # Whether --model may be a single original-format checkpoint file.
    single_file: bool = False
    # Components that may come from one file instead of the model's folder: the denoisers
    # (--transformer FILE, --transformer-2 FILE: GGUF or safetensors in any layout diffusers'
    # converters map) and the text encoder (--text-encoder FILE: GGUF where transformers reads
    # its architecture, or safetensors in transformers' names). Declare only what is tested.
    files: tuple[str, ...] = ()
    # Extra from_pretrained / from_single_file arguments (e.g. components left out).
    from_pretrained: dict[str, Any] = field(default_factory=dict)
    # Sampling fields (shared schema ones) that shape the loaded pipeline, like setup Options:
    # batch jobs that differ in one cannot share a pipeline.
    setup_fields: frozenset[str] = frozenset()
    # Hook, one family: for a checkpoint that is not a whole pipeline (FramePack's transformer
    # repo), (mode, kind, where, dtype) -> (the pipeline folder or repo to load, the components
    # loaded from elsewhere, their record for the sidecar); None: `where` is the whole pipeline.
    # Kept as code: which parts come from where, in which dtype, is the family's own recipe.
    assemble: Callable[[str, str, str, Any], tuple[str, dict[str, Any], Any] | None] | None = None
    # Hook, one family: work around an upstream loading bug right after loading, from the model's
    # local folder (pipe, folder) -> calls for the sidecar's pipeline.setup. Kept as code: each
    # upstream bug is its own repair (AnimateDiff SDXL's add_embedding).
    repair: Callable[[Any, str | None], list[dict[str, Any]]] | None = None
    # Hook, one family: models of the family's own that run on the inputs before the pipeline
    # loads, after --dry-run has shown its plan: (config, prepared inputs by name, device, dtype
    # "fp32"/"bf16"/...) -> pipeline arguments that join the call's media (replacing any of the
    # same name). It first checks what running needs beyond planning (packages, files), so an
    # input those models refuse (ConsisID's photo without a face) stops the run before the
    # pipeline's weights load. Kept as code: the models and what they make are the family's own.
    prepare: Callable[[RunConfig, dict[str, Any], str, str], dict[str, Any]] | None = None
    # Set for a modular pipeline (see `Modular`): how it is built, loaded and called.
    modular: Modular | None = None


@dataclass(frozen=True)
class Enhancing:
    """How --enhance-prompt rewrites this family's prompts.

    `prompts` names the system prompts an LLM gets (vidgen/families/system_prompts.py): those
    the model's authors publish ("wan"), else vidgen's "generic" one."""

    prompts: str = "generic"
    # Hook, one family: the pipeline rewrites prompts with its own text encoder (LTX-2, through
    # diffusers' enhance_prompt), so that is the default enhancer: (loaded pipeline, prompt, what
    # the config asks: seed, temperature, max_new_tokens, the prepared inputs by name) -> (the
    # rewrite, its record: enhancer, system prompt, generation settings). Kept as code: it is the
    # pipeline's own method with the family's choice of system prompt and decoding.
    pipeline: Callable[[Any, str, dict[str, Any], dict[str, Any]], tuple[str, dict[str, Any]]] | None = None
    # The components `pipeline` uses (a --dry-run loads only these), and those a model must have
    # for it (looked up in its model_index.json before anything loads).
    needs: frozenset[str] = frozenset()
    requires: frozenset[str] = frozenset()


class Part:
    """A part of a family that computes from the run (memory, postprocessing). `family` is the
    family it belongs to, set when the family is made, for parts whose numbers depend on the
    family's own options (SkyReels-V2 DF's windows)."""

    family: Any = None

    def bound(self, family: Any) -> Part:
        import copy

        part = copy.copy(self)
        part.family = family
        return part


class Memory(Part):
    """What the memory planner (vidgen/run/memory.py) knows about a family's models and runs.

    Data covers most families; a family whose runs change shape (windows, sections, a refinement
    size, checkpoints of several sizes) subclasses it beside itself and overrides one method.
    """

    def __init__(
        self,
        footprint: Footprint,
        *,
        decode_batch: int | None = None,
        sliced: bool = True,
        extra: Callable[[RunConfig], dict[str, tuple[str, float | None]]] | None = None,
        passes: Callable[[RunConfig], int] | None = None,
        shapes: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.footprint = footprint
        # Frames the VAE decodes at once by default (None: every frame), --decode-chunk replacing
        # it where the family takes that; `sliced`: --vae-slicing makes it one frame at a time.
        self.decode_batch = decode_batch
        self.sliced = sliced
        # Models loaded beside the pipeline (LTX's latent upsampler): component -> (where it comes
        # from, as given; its published parameter count, None when not known).
        self.extra = extra
        # Denoiser passes per step (two with real CFG), where the family decides it in code.
        self.passes = passes
        # Checkpoints of another shape than the footprint's: a marker found in the lower-case
        # model id -> the Footprint fields that differ (SkyReels-V2's 1.3B checkpoints).
        self.shapes = shapes or {}

    def sized(self, cfg: RunConfig) -> Footprint:
        """The footprint of the run's checkpoint (see `shapes`)."""
        model = (cfg.model.id or "").lower()
        for marker, changes in self.shapes.items():
            if marker in model:
                return replace(self.footprint, **changes)
        return self.footprint

    def extra_models(self, cfg: RunConfig) -> dict[str, tuple[str, float | None]]:
        """Models the run loads beside the pipeline, for the planner (counted from the weights
        instead when they are on disk) and for the loader to locate."""
        return self.extra(cfg) if self.extra is not None else {}

    def working_size(self, cfg: RunConfig) -> tuple[int, int]:
        """(height, width) the largest denoising pass and the decode work at: the size asked for
        (LTX's upscale recipe refines at another)."""
        return cfg.sampling.height or 512, cfg.sampling.width or 512

    def latent_frames(self, cfg: RunConfig, frames: int) -> int:
        """Latent frames one denoiser forward sees for a `frames`-frame video: all of them, unless
        the family makes a long video window by window or section by section."""
        return (frames - 1) // self.footprint.temporal + 1

    def guided(self, cfg: RunConfig) -> bool:
        """Whether the denoiser runs a second (unguided) pass per step."""
        if self.passes is not None:
            return self.passes(cfg) > 1
        s = cfg.sampling
        return self.footprint.guided and (s.guidance_scale is None or s.guidance_scale > 1)

    def decode_frames(self, cfg: RunConfig, frames: int) -> int:
        """How many of `frames` output frames the VAE decodes at once with these options."""
        if self.sliced and cfg.optimization.vae_slicing:
            return 1
        return min(cfg.optimization.decode_chunk_size or self.decode_batch or frames, frames)


@dataclass(frozen=True)
class Decoding:
    """How the final latents reach the VAE, so they can be saved (--save-latents), kept when the
    decode fails, and decoded again by `vidgen decode`."""

    # "latent": the pipeline runs with output_type="latent" and the family decodes (`decode`),
    #           exactly as the pipeline would have;
    # "caught": they are caught on their way into the VAE (`catches`): UNet-era pipelines, whose
    #           latent output skips steps such as trimming padded frames, and pipelines that draw
    #           decode noise from the generator after denoising (LTX);
    # None: the pipeline decodes inside its own steps; nothing to save.
    latents: str | None = "caught"
    # name -> where the pipeline hands that tensor to the VAE, for "caught": "latents" is the
    # video's; others (LTX-2's "audio_latents") are saved beside it and given to `decode` by name.
    catches: dict[str, Catch] = field(default_factory=lambda: {"latents": Catch("decode_latents")})
    # Components `vidgen decode` loads (the rest are left out): the VAE, and for sound the audio
    # decoder and vocoder.
    needs: frozenset[str] = frozenset({"vae"})
    # Whether a run denoises in windows whose latents it can keep as they finish (--save-latents,
    # --oom-retry): `latent_call` then gets `checkpoint` (vidgen.run.latents.Checkpoint) and a
    # rerun resumes.
    resumable: bool = False


class Previewing(Part):
    """What --live-preview shows of a run while it denoises.

    Each step, the scheduler's estimate of the clean latents (or, where it keeps none, the
    current noisy latents) is brought to (batch, channels, frames, height, width) in the
    denoiser's own latent space by `latents`, then decoded by a tiny TAEHV decoder
    (--preview-decoder) or, without one, by the family's own VAE at reduced size (`decode`).
    A family whose latents need more (LTX's tokens) subclasses it beside itself."""

    def __init__(self, tae: str | None = None, layout: str = "ncthw", refused: str | None = None) -> None:
        # The TAEHV weights published for this family's latents (github.com/madebyollin/taehv, in
        # its safetensors/ folder), named in messages; None: none are, so --preview-decoder is refused.
        self.tae = tae
        # How the scheduler's latents are laid out: "ncthw" (Wan, HunyuanVideo, AnimateDiff),
        # "ntchw" (CogVideoX, SVD), "frames" (one video's frames as the batch of 2-D latents:
        # ModelScope and I2VGen-XL step them so), or "packed" tokens the family unpacks (LTX).
        self.layout = layout
        # Why no preview can be shown of this family's runs (None: it can); --live-preview is then
        # refused before loading.
        self.refused = refused

    def latents(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], latents: Any) -> Any:
        """The scheduler's latents (as `layout` says) as (batch, channels, frames, height,
        width) in the denoiser's latent space, what a TAEHV decoder takes."""
        if self.layout == "frames":
            latents = latents.unsqueeze(0)  # (frames, C, H, W) -> (1, frames, C, H, W)
        if self.layout in ("ntchw", "frames"):
            return latents.permute(0, 2, 1, 3, 4)
        return latents

    def decode(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], latents: Any) -> Any:
        """Float frames (frames, height, width, 3) of the scheduler's latents decoded by the
        family's own VAE as `Family.decode` does, at half the latent size where that is large
        (see PREVIEW_HALVES_FROM): the preview without a tiny decoder."""
        if self.layout == "frames":
            latents = self.latents(pipe, cfg, call_kwargs, latents)  # as the pipeline decodes the video
        return self.family.decode(pipe, cfg, Caught(halved(latents)))


class ScaledPreviewing(Previewing):
    """Previews of the HunyuanVideo 1.0 and 1.5 pipelines, which decode inside their own call:
    their VAE takes the latents divided by its scaling factor."""

    def decode(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], latents: Any) -> Any:
        vae = pipe.vae
        video = vae.decode(halved(latents).to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


# The full VAE decodes previews at half the latent size once both sides have at least this many
# latent pixels (a real model's 60x104 -> 30x52); tiny models' few pixels are decoded as they are.
PREVIEW_HALVES_FROM = 16


class Postprocess(Part):
    """A family's last step on the decoded frames (Wan VACE pastes the pixels its mask keeps back
    in). The inputs it needs are saved in the latents file, so `vidgen decode` repeats it."""

    def inputs(self, cfg: RunConfig, media: dict[str, Any]) -> dict[str, Any]:
        """What `apply` needs from the prepared inputs (`media`, by pipeline argument), as uint8
        arrays. Empty: the decoded frames are the video."""
        return {}

    def apply(self, frames: Any, kept: dict[str, Any]) -> Any:
        """The step on the decoded float frames, given `inputs`' arrays: from this run, or read
        back from a latents file (data: check their shapes). Called only when `kept` is not empty."""
        return frames

    def record(self, cfg: RunConfig) -> dict[str, Any] | None:
        """How `apply` changes the frames, for the sidecar's `pipeline.postprocess`, so plain
        diffusers plus that step repeats the run (None: it does not run)."""
        return None


def settings(
    size: tuple[int, int] | None = None,
    frames: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    fps: int | None = None,
    **sampling: Any,
) -> dict[str, Any]:
    """Reference settings (a model card's or diffusers' docs') as the nested config
    dict the defaults layer holds: size (height, width), frames, steps, guidance, fps and any
    other sampling fields."""
    values = {
        **({"height": size[0], "width": size[1]} if size else {}),
        "num_frames": frames,
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        **sampling,
    }
    data: dict[str, Any] = {"sampling": {k: v for k, v in values.items() if v is not None}}
    if fps is not None:
        data["output"] = {"fps": fps}
    return data


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts merged left to right (later values win; dicts merge key by key)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = dict(value) if isinstance(value, dict) else value
    return out


class Family:
    """A model family: its modes and parts as data, and the few hooks only code can express.

    Declarations (class attributes) say what the family is; the methods below are the steps of
    a run that differ between pipelines (checks, call arguments, the call, decoding).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    # Set when diffusers has deprecated the pipeline; shown by `vidgen models`.
    deprecated: ClassVar[str | None] = None
    # mode -> what the family does in it (pipeline, repo, inputs, defaults).
    modes: ClassVar[dict[str, Mode]]
    # The reference settings every mode starts from (see `settings()`); each Mode adds its own.
    reference: ClassVar[dict[str, Any]] = {}
    # Sampling options this family owns (beyond the shared schema fields a Mode lists).
    options: ClassVar[tuple[Option, ...]] = ()
    # Frame and size rules, checked before loading; also how many frames a v2v input gives.
    grid: ClassVar[Grid] = Grid()
    takes: ClassVar[Takes] = Takes()
    loading: ClassVar[Loading] = Loading()
    memory: Memory
    decoding: ClassVar[Decoding] = Decoding()
    previewing: Previewing = Previewing()
    postprocess: Postprocess | None = None
    # config path -> what to use instead, added to the error when that field is refused.
    hints: ClassVar[dict[str, str]] = {}
    # name -> builder of a tiny random-weight pipeline of this family (see vidgen/models/tiny.py).
    tiny: ClassVar[dict[str, Callable[[], Any]]] = {}
    # What --enhance-prompt runs for this family (see `Enhancing`).
    enhancing: ClassVar[Enhancing] = Enhancing()

    def __init__(self) -> None:
        self.memory = type(self).memory.bound(self)  # type: ignore[assignment]
        self.previewing = type(self).previewing.bound(self)  # type: ignore[assignment]
        if type(self).postprocess is not None:
            self.postprocess = type(self).postprocess.bound(self)  # type: ignore[assignment,union-attr]

    # -- configuration ----------------------------------------------------------------
    def defaults(self, mode: str) -> dict[str, Any]:
        """The layer between the schema and presets: the mode's repo, the family's reference
        settings, then the mode's own."""
        spec = self.modes[mode]
        return merged({"model": {"id": spec.repo}}, self.reference, spec.defaults)

    def accepts(self, mode: str) -> frozenset[str]:
        """Config paths under inputs, sampling and model that this family uses in `mode`."""
        spec = self.modes.get(mode)
        if spec is None:
            return frozenset({f"sampling.{name}" for name in VIDGEN_SAMPLING})
        main = main_input(mode)
        inputs = MODE_INPUTS.get(mode, frozenset()) | spec.inputs | (TEXT_INPUTS if self.takes.text else frozenset())
        inputs |= {main.field} if main is not None else frozenset()
        if self.takes.prompts:
            inputs |= {"prompts"}
        sampling = spec.sampling | VIDGEN_SAMPLING | {option.field for option in mode_options(self, mode)}
        model = (self.takes.model if spec.model is None else spec.model) | set(self.loading.files)
        return frozenset(
            {f"inputs.{name}" for name in inputs}
            | {f"sampling.{name}" for name in sampling}
            | {f"model.{name}" for name in model}
        )

    def matches(self, index: dict[str, Any]) -> bool:
        """Whether a model whose model_index.json is `index` (its pipeline class is one of this
        family's) is this family's rather than a sibling's (Wan 2.1 / 2.2 A14B / TI2V-5B)."""
        return True

    # -- checks ------------------------------------------------------------------------
    def check(self, cfg: RunConfig) -> None:
        """Raise ConfigError for anything the pipeline would reject or silently change.

        Runs before any weights load. Field-by-field acceptance is checked by the registry,
        which knows which other families take a refused field.
        """
        if self.takes.text and not (cfg.inputs.prompt or "").strip():  # "   " says nothing either
            raise ConfigError(f'{self.title} needs a prompt: vidgen {cfg.mode} ... "what the video shows".')
        check_grid(self.title, cfg, self.grid)

    def check_frames(self, cfg: RunConfig, frames: int) -> None:
        """Rules on the input video's (or control video's) frame count beyond `grid`, which
        depend on the run's options; runs once the inputs are read, before anything loads.
        Raise InputError for a video that does not fit."""

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        """Rules that depend on the loaded model's own config; runs before denoising.
        `frames` is the input video's frame count in v2v."""

    # -- loading -----------------------------------------------------------------------
    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        """Switch on pipeline features the config asks for, once after loading; returns the
        calls made ({method, kwargs}) so the sidecar can repeat them. `models` loads anything
        more the features need."""
        return []

    def cache_config(self, pipe: Any, cfg: RunConfig, spec: str) -> tuple[Any, dict[str, Any]] | None:
        """(diffusers cache config, how the sidecar shows it) for a --cache kind whose settings are
        the family's or the checkpoint's own; None: vidgen's generic settings for that kind.
        MagCache runs on the ratios of --mag-ratios or measures them (magcache:calibrate);
        families with published ratios pass theirs to `magcache_config`."""
        if spec.partition(":")[0] == "magcache":
            return magcache_config(cfg, spec, magcache_steps(self, cfg))
        return None

    # -- the call ----------------------------------------------------------------------
    def pipeline_name(self, cfg: RunConfig) -> str:
        """The diffusers pipeline class that runs `cfg`: the mode's, unless the family switches
        pipelines on its inputs (LTX-Video's keyframes run its condition pipeline)."""
        return self.modes[cfg.mode].pipeline

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        """JSON-able arguments for the pipeline's `__call__`. The generator comes from `seed`;
        the input image or video is passed beside these (see `inputs.prepare`), and `frames`
        is its frame count where there is one."""
        raise NotImplementedError

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """More about the call for the sidecar's `pipeline` block: "run", how `call` differs
        from one plain pipeline call (absent: it does not), and anything else the family adds
        (e.g. a long video's windows; needs `call_kwargs`)."""
        return {}

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        """Run the pipeline once and return its frames (float, frames x height x width x 3), or
        `Generated` (frames and audio) for families that make sound. `extra` holds the generator
        and the step-callback arguments."""
        modular = self.loading.modular
        if modular is not None:
            # A ModularPipeline returns the outputs it is asked for, one video per call.
            return pipe(**call_kwargs, **media, **extra, output=modular.output)[0]
        return pipe(**call_kwargs, **media, **extra).frames[0]

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
        if self.loading.modular is not None:
            with modular_steps(getattr(pipe, self.loading.modular.stepper), on_step):
                yield {}
            return

        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            on_step()
            return tensors

        yield {"callback_on_step_end": on_step_end}

    # -- latents -----------------------------------------------------------------------
    def latent_call(
        self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any
    ) -> Any:
        """Run the pipeline once with output_type="latent"; returns its final latents (families
        whose decoding.latents is "latent")."""
        return pipe(**{**call_kwargs, "output_type": "latent"}, **media, **extra).frames

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        """Decode final latents as the pipeline would have, for the run `cfg` with this command's
        decode options. Latent-output families: the Wan-style VAE with per-channel latent
        statistics (`decode_normalised`). Caught latents: `decode_latents` with the arguments it
        got (--decode-chunk replacing its decode_chunk_size), then the video processor. Returns
        frames, or `Generated` with sound."""
        import inspect

        if self.decoding.latents == "latent":
            video = decode_normalised(pipe, caught.latents)
            return pipe.video_processor.postprocess_video(video, output_type="np")[0]
        chunk = cfg.optimization.decode_chunk_size
        bound = inspect.signature(pipe.decode_latents).bind(caught.latents, *caught.args, **caught.kwargs)
        if chunk is not None and "decode_chunk_size" in inspect.signature(pipe.decode_latents).parameters:
            bound.arguments["decode_chunk_size"] = chunk
        decoded = pipe.decode_latents(*bound.args, **bound.kwargs)
        return pipe.video_processor.postprocess_video(video=decoded, output_type="np")[0]


@contextmanager
def modular_steps(scheduler: Any, on_step: Callable[[], None]) -> Iterator[None]:
    """Report each denoising step of a ModularPipeline, which takes no callback_on_step_end: its
    denoise loops call `scheduler.step` once per step (the guider has already combined the
    guided and unguided passes), so the scheduler instance's `step` is wrapped for the call and
    restored after. The stop check and progress then run between steps, as elsewhere."""
    original = scheduler.step

    def step(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        on_step()
        return out

    scheduler.step = step
    try:
        yield
    finally:
        del scheduler.step  # the class's own method again


def workflow(family: Family, cfg: RunConfig) -> str | None:
    """The modular workflow a run runs: the one its inputs trigger, else its mode's (None: not
    a modular family, or all its blocks). It decides which components load, so a batch groups
    jobs by it."""
    spec = family.loading.modular
    if spec is None:
        return None
    given = next((name for name in spec.triggers if cfg.inputs.get(name)), None)
    return spec.triggers[given] if given is not None else spec.workflows.get(cfg.mode)


def workflow_components(family: Family, cfg: RunConfig) -> frozenset[str] | None:
    """The components a modular run's workflow loads (None: not modular, or all its blocks'):
    a model that holds two transformer partitions (MiniMax-H3) loads and plans one."""
    name = workflow(family, cfg)
    if name is None:
        return None
    from vidgen.core.libs import quiet

    quiet()  # before diffusers' modular blocks import torchao, which warns on a CPU build
    import diffusers

    assert family.loading.modular is not None
    blocks = getattr(diffusers, family.loading.modular.blocks)().get_workflow(name)
    return frozenset(spec.name for spec in blocks.expected_components)


def modular(family: Family) -> bool:
    """Whether the family's pipeline is a diffusers ModularPipeline."""
    return family.loading.modular is not None


def halved(latents: Any) -> Any:
    """Latents whose last two dimensions (height, width) are halved by averaging 2x2 pixels,
    when both are at least PREVIEW_HALVES_FROM; others as they are. Any leading layout."""
    import torch.nn.functional as F

    height, width = latents.shape[-2:]
    if min(height, width) < PREVIEW_HALVES_FROM:
        return latents
    flat = latents.reshape(-1, 1, height, width)
    pooled = F.avg_pool2d(flat.float(), 2, ceil_mode=True).to(latents.dtype)
    return pooled.reshape(*latents.shape[:-2], *pooled.shape[-2:])


# -- derived from the declarations (no family overrides these) -----------------------------


def mode_options(family: Family, mode: str) -> tuple[Option, ...]:
    """The family's own options that `mode` takes."""
    spec = family.modes.get(mode)
    if spec is None:
        return ()
    if spec.options is None:
        return family.options
    return tuple(option for option in family.options if option.field in spec.options)


def denoisers(family: Family) -> tuple[str, ...]:
    """The pipeline components that denoise: Loading.denoisers, or the footprint's one."""
    return family.loading.denoisers or (family.memory.footprint.denoiser,)


def quantized_components(family: Family) -> list[str]:
    """The components --quantize loads quantized: the denoisers, and any encoder as large."""
    return [*denoisers(family), *family.loading.quantize_also]


def component_dtypes(family: Family, dtype: str) -> dict[str, str]:
    """component -> dtype it loads in when the run's dtype is `dtype`."""
    half = family.loading.half_dtypes if dtype != "fp32" else {}
    return {**family.loading.dtypes, **half}


def pipeline_class(family: Family, mode: str, cfg: RunConfig | None = None) -> type:
    """The diffusers class that runs `cfg` (or `mode`'s pipeline)."""
    import diffusers

    return getattr(diffusers, family.pipeline_name(cfg) if cfg is not None else family.modes[mode].pipeline)


def context_parallel(family: Family, mode: str) -> bool:
    """Whether `--gpus N` can split this family's `mode` over GPUs: every denoiser its pipeline
    takes is a diffusers model class with a context-parallel plan (`_cp_plan`). Derived from the
    pipeline's own annotations, so a family declares nothing for it."""
    return _context_parallel(family.modes[mode].pipeline, denoisers(family)) if mode in family.modes else False


def media_arg(family: Family, mode: str, name: str) -> str:
    """The pipeline argument a prepared input is passed as."""
    spec = family.modes.get(mode)
    return spec.media.get(name, name) if spec is not None else name


def magcache_steps(family: Family, cfg: RunConfig) -> int:
    """Transformer passes of one run, which MagCache counts as its steps."""
    return family.step_count(cfg, family.call_kwargs(cfg, 0))


def run_note(family: Family, cfg: RunConfig) -> str | None:
    """How the family's call differs from one plain pipeline call (None: it does not)."""
    return family.record(cfg).get("run")


def pipeline_record(family: Family, cfg: RunConfig, call_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What the family adds to the sidecar's `pipeline` block besides its run note."""
    return {key: value for key, value in family.record(cfg, call_kwargs).items() if key != "run"}


@functools.cache
def _context_parallel(pipeline: str, denoisers: tuple[str, ...]) -> bool:
    import inspect
    import typing

    import diffusers

    from vidgen.core.libs import quiet

    quiet()  # importing a pipeline class is library start-up: its warnings are not the user's
    init = getattr(diffusers, pipeline).__init__
    try:  # annotations written as strings (PEP 563) resolve here
        hints = typing.get_type_hints(init)
    except Exception:  # a name the module cannot resolve: the signature's own objects
        hints = {name: param.annotation for name, param in inspect.signature(init).parameters.items()}
    classes = [
        kind
        for name in denoisers
        if name in hints
        for kind in (typing.get_args(hints[name]) or (hints[name],))
        if isinstance(kind, type) and kind is not type(None)
    ]
    return bool(classes) and all(getattr(kind, "_cp_plan", None) is not None for kind in classes)


def prompt_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """prompt, and negative_prompt when one is set."""
    kwargs: dict[str, Any] = {"prompt": cfg.inputs.prompt}
    if cfg.inputs.negative_prompt is not None:
        kwargs["negative_prompt"] = cfg.inputs.negative_prompt
    return kwargs


def sampling_kwargs(sampling: SamplingConfig, names: frozenset[str] | tuple[str, ...]) -> dict[str, Any]:
    """The named sampling fields that are set; unset ones fall back to diffusers' defaults."""
    values = sampling.model_dump()
    return {
        name: values[name] for name in sorted(names) if name not in VIDGEN_SAMPLING and values.get(name) is not None
    }


def option_kwargs(family: Family, cfg: RunConfig) -> dict[str, Any]:
    """The family's own call-time options (not the setup ones) that are set."""
    names = [option.field for option in mode_options(family, cfg.mode) if not option.setup and option.call]
    return sampling_kwargs(cfg.sampling, tuple(names))


def shift_scheduler(pipe: Any, cfg: RunConfig) -> list[dict[str, Any]]:
    """--flow-shift on the pipeline's flow-matching scheduler, as a setup call for the sidecar."""
    shift = cfg.sampling.get("flow_shift")
    if shift is None:
        return []
    # FlowMatchEuler calls it `shift`; UniPC and DPM-Solver with flow sigmas `flow_shift`.
    cls = type(pipe.scheduler)
    key = "shift" if "shift" in cls.from_config(pipe.scheduler.config).config else "flow_shift"
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **{key: shift})
    return [{"method": f"scheduler = {cls.__name__}.from_config", "kwargs": {key: shift}}]


def check_grid(title: str, cfg: RunConfig, grid: Grid) -> None:
    """Frames on the `grid.frames`k+1 grid and sizes multiples of `grid.size`."""
    frames = cfg.sampling.num_frames
    # Off-grid frame counts decode to a different length than asked for (diffusers rounds with a
    # warning), so they are refused rather than recorded wrongly in the sidecar.
    if grid.frames and frames is not None and (frames - 1) % grid.frames:
        raise ConfigError(
            f"--frames {frames} does not fit {title}: it needs {grid.frames}k+1 frames; "
            f"nearest valid: {nearest(frames, grid.frames, 1)}."
        )
    if grid.size:
        check_multiple(title, cfg, grid.size)


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


# diffusers' MagCacheConfig defaults (0.42.1), for ratios without an author's settings.
MAGCACHE_DEFAULTS = {"threshold": 0.06, "max_skip_steps": 3, "retention_ratio": 0.2}


def magcache_wanted(cfg: RunConfig) -> str | None:
    """What --cache magcache runs on: "calibrate" (measuring), "given" (--mag-ratios),
    "published" (the family's own, if it has them), or None without MagCache."""
    kind, _, how = (cfg.optimization.cache or "").partition(":")
    if kind != "magcache":
        return None
    if how == "calibrate":
        return "calibrate"
    return "given" if cfg.optimization.mag_ratios is not None else "published"


def magcache_config(
    cfg: RunConfig, spec: str, steps: int, published: Any = None, where: str = ""
) -> tuple[Any, dict[str, Any]]:
    """(MagCacheConfig, how the sidecar shows it) for --cache magcache[:THRESHOLD|:calibrate].
    Calibration skips nothing and measures the ratios (vidgen keeps them for the sidecar); else
    the ratios are --mag-ratios', or `published` (an entry with ratios, threshold,
    max_skip_steps and retention_ratio; shown as `where`). MagCache counts `steps` per run and
    resamples the ratios to it."""
    from diffusers import MagCacheConfig

    how = spec.partition(":")[2]
    if how == "calibrate":
        kwargs: dict[str, Any] = {"calibrate": True, "num_inference_steps": steps}
        return MagCacheConfig(**kwargs), kwargs
    given = cfg.optimization.mag_ratios
    settings = dict(MAGCACHE_DEFAULTS)
    if published is not None:
        settings = {name: getattr(published, name) for name in MAGCACHE_DEFAULTS}
    if how:
        settings["threshold"] = float(how)
    kwargs = {**settings, "num_inference_steps": steps}
    if given is not None:
        return MagCacheConfig(mag_ratios=list(given), **kwargs), {**kwargs, "mag_ratios": list(given)}
    if published is None:
        raise ConfigError(
            "--cache magcache needs ratios: --mag-ratios, or measure them with --cache magcache:calibrate."
        )
    shown = {**kwargs, "mag_ratios": f"{where} ({len(published.ratios)} values)"}
    return MagCacheConfig(mag_ratios=list(published.ratios), **kwargs), shown


def magcache_refusal(title: str, cfg: RunConfig, published_for: str) -> ConfigError:
    """The refusal for --cache magcache where no published ratios fit the run."""
    return ConfigError(
        f"--cache magcache needs magnitude ratios measured on the checkpoint, and none are published for "
        f"{cfg.model.id} {cfg.mode} ({published_for}); measure them once with --cache magcache:calibrate, then "
        "pass --mag-ratios CALIBRATION_SIDECAR.json, or use --cache taylorseer."
    )


def decode_normalised(pipe: Any, latents: Any) -> Any:
    """The VAE's decoded video tensor for latents normalised per channel (the Wan-style VAE's
    latents_mean / latents_std), as diffusers' pipeline_wan.py decodes them."""
    import torch
    from diffusers.utils.torch_utils import get_module_execution_device

    vae = pipe.vae
    with torch.no_grad():
        latents = latents.to(get_module_execution_device(vae), dtype=vae.dtype)
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
        std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
        return vae.decode(latents / std + mean, return_dict=False)[0]
