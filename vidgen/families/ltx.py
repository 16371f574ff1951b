"""LTX-Video 0.9.x (Lightricks): a small, fast video transformer on a 32x-compressing VAE.

Text to video (`LTXPipeline`), image to video (`LTXImageToVideoPipeline`) and, when the run
names keyframes (--keyframe FRAME:IMAGE[:STRENGTH]) or conditioning clips (--condition-video
VIDEO[:FRAME]), the condition pipeline (`LTXConditionPipeline`), which places each image or clip
at its frame. Frames are 8k+1 and sizes multiples of 32; the pipelines would floor both silently,
so vidgen refuses other values before loading.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
    Catch,
    Caught,
    Decoding,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Option,
    Previewing,
    Takes,
    halved,
    magcache_refusal,
    magcache_wanted,
    option_kwargs,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)

GUIDANCE_RESCALE = Option(
    "guidance_rescale",
    "--guidance-rescale",
    float,
    "Rescale of the guided prediction against over-exposure (0: off).",
    ge=0,
    le=1,
)
DECODE_TIMESTEP = Option(
    "decode_timestep",
    "--decode-timestep",
    float,
    "Timestep the VAE decodes at (timestep-aware VAEs, LTX 0.9.1+: 0.05).",
    ge=0,
    le=1,
)
DECODE_NOISE_SCALE = Option(
    "decode_noise_scale",
    "--decode-noise-scale",
    float,
    "Noise added to the latents before decoding (default: the decode timestep).",
    ge=0,
    le=1,
)
TIMESTEPS = Option(
    "timesteps",
    "--timestep",
    list[float],
    "One timestep of a fixed schedule (repeatable; distilled checkpoints), instead of --steps.",
)
IMAGE_COND_NOISE_SCALE = Option(
    "image_cond_noise_scale",
    "--image-cond-noise-scale",
    float,
    "Noise on keyframe and clip conditions (LTX 0.9.1+: 0.025); with --keyframe or --condition-video.",
    ge=0,
    le=1,
)
LATENT_UPSAMPLER = Option(
    "latent_upsampler",
    "--latent-upsampler",
    str,
    "Latent upsampler (REPO[/SUBFOLDER], folder or tiny:NAME): make it smaller, x2, refine.",
    setup=True,
)
STAGE_2_GUIDANCE = Option(
    "stage_2_guidance_scale",
    "--stage-2-guidance",
    float,
    "Classifier-free guidance of the refinement stage (two-stage runs).",
    ge=0,
    le=100,
)
STAGE_2_TIMESTEPS = Option(
    "stage_2_timesteps",
    "--stage-2-timestep",
    list[float],
    "One timestep of the refinement stage's fixed schedule (repeatable; two-stage runs).",
)
STAGE_2_STRENGTH = Option(
    "stage_2_denoise_strength",
    "--stage-2-strength",
    float,
    "Share of the refinement schedule that runs (two-stage runs; the docs: 0.999).",
    ge=0,
    le=1,
)
ADAIN_FACTOR = Option(
    "adain_factor",
    "--adain-factor",
    float,
    "How far the upsampled latents take the statistics of stage 1's (two-stage runs).",
    ge=0,
    le=1,
)
TONE_MAP = Option(
    "tone_map_compression_ratio",
    "--tone-map",
    float,
    "Tone-map compression of the upsampled latents (two-stage runs; LTX 0.9.8: 0.6).",
    ge=0,
    le=1,
)
# diffusers ltx_video.md: stage 1 at 2/3 of the size (floored to the VAE's 32), x2 in latents,
# refined with these timesteps at 0.999 strength, then resized to the size asked for.
DOWNSCALE = 2 / 3
STAGE_2_DISTILLED_TIMESTEPS = [1000.0, 909.0, 725.0, 421.0, 0.0]
_UPSCALE_ONLY = (STAGE_2_TIMESTEPS, STAGE_2_STRENGTH, ADAIN_FACTOR, TONE_MAP, STAGE_2_GUIDANCE)
_CALL = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# Parameter counts: the transformers built on the meta device from the repos' transformer/config.json
# (2B: 28 layers of 32x64 heads; 13B: 48 layers of 32x128), the VAE from diffusers' default config.
T5_XXL = 4.762e9  # google/t5-v1_1-xxl encoder, in every LTX-Video repo
VAE_PARAMS = 0.419e9
LTX_2B, LTX_13B = 1.923e9, 13.043e9
CONDITION_PIPELINE = "LTXConditionPipeline"
_CONDITIONS = frozenset({"conditions"})
_FPS = 24


# Latent upsamplers' parameters, counted on the meta device from the configs in diffusers'
# scripts/convert_ltx_to_diffusers.py (0.9.7 and 0.9.8: in 128, mid 512, 4 blocks per stage, 3-D)
# and scripts/convert_ltx2_to_diffusers.py (2.0: in 128, mid 1024, 4 blocks, rational resampler).
UPSAMPLER_PARAMS = {
    "Lightricks/ltxv-spatial-upscaler-0.9.7/latent_upsampler": 126_250_624,
    "a-r-r-o-w/LTX-0.9.8-Latent-Upsampler": 126_250_624,
    "Lightricks/LTX-2/latent_upsampler": 497_867_904,
}


def upsampler_models(cfg: RunConfig) -> dict[str, tuple[str, float | None]]:
    """The latent upsampler of a two-stage run, for the memory planner (Memory.extra)."""
    source = cfg.sampling.get("latent_upsampler")
    return {"latent_upsampler": (source, UPSAMPLER_PARAMS.get(source))} if source else {}


# How `call` differs from one plain pipeline call, for the sidecar.
_UPSCALE_NOTE = (
    "two stages, as in diffusers' LTX-Video docs: pipeline.stages lists the three calls (stage 1 at 2/3 "
    "of the size, floored to multiples of 32, with output_type='latent'; LTXLatentUpsamplePipeline on its "
    "latents; stage 2 at twice stage 1's size on the upsampled latents with a generator seeded afresh "
    "with the seed), then each frame resized to the size asked for (PIL's resize) where it differs; "
    "images and clips go to both stages as LTXConditionPipeline lists"
)
_CONDITIONS_NOTE = (
    "LTXConditionPipeline gets image= and video= as parallel lists beside frame_index and strength: "
    "the i2v image first, then each inputs.conditions item in order (an image in `image` with None in "
    "`video`, a clip's frames in `video` with None in `image`)"
)


class PackedPreviewing(Previewing):
    """Previews of the LTX pipelines' token latents: unpacked onto the video's latent grid, and
    decoded by their VAE as they decode (`preview_vae`)."""

    def __init__(self, tae: str | None = None) -> None:
        super().__init__(tae, layout="packed")

    def latents(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], latents: Any) -> Any:
        return unpacked(pipe, call_kwargs, latents)

    def decode(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], latents: Any) -> Any:
        return preview_vae(pipe, call_kwargs, halved(unpacked(pipe, call_kwargs, latents)))


class _Memory(Memory):
    def working_size(self, cfg: RunConfig) -> tuple[int, int]:
        # The upscale recipe refines (and decodes) at twice stage 1's floored 2/3 size, then resizes.
        if not cfg.sampling.get("latent_upsampler"):
            return super().working_size(cfg)
        second = upscale_calls(cfg, self.family.call_kwargs(cfg, 0))[2]
        return second["height"], second["width"]


class LTX(Family):
    name = "ltx"
    title = "LTX-Video"
    # Keyframes and clips also steer text-to-video (e.g. extending a clip).
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("LTXPipeline", "Lightricks/LTX-Video", _CALL, inputs=_CONDITIONS),
        "i2v": Mode("LTXImageToVideoPipeline", "Lightricks/LTX-Video", _CALL, inputs=_CONDITIONS),
    }
    # Reference settings (diffusers ltx_video.md): 768x512, 161 frames at 24 fps, 50 steps.
    reference = settings(size=(512, 768), frames=161, steps=50, guidance=3.0, fps=_FPS)
    options: ClassVar[tuple[Option, ...]] = (
        GUIDANCE_RESCALE,
        DECODE_TIMESTEP,
        DECODE_NOISE_SCALE,
        TIMESTEPS,
        IMAGE_COND_NOISE_SCALE,
        LATENT_UPSAMPLER,
        STAGE_2_TIMESTEPS,
        STAGE_2_STRENGTH,
        STAGE_2_GUIDANCE,
        ADAIN_FACTOR,
        TONE_MAP,
    )
    takes = Takes(
        model=frozenset({"loras"}),
        optimizations=frozenset(
            {"offload", "vae_tiling", "fp8_storage", "attention_backend", "compile", "cache", "quantize"}
        ),
        # What diffusers 0.42.1 runs on the LTX transformer (checked on the tiny model).
        # MagCache: diffusers registers LTX's block; no ratios are published, so a run measures them
        # (--cache magcache:calibrate) and later runs pass them (--mag-ratios).
        caches=frozenset({"first-block", "pab", "taylorseer", "magcache"}),
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=faster": "FasterCache expects video-shaped hidden states; LTX packs them into tokens",
        "optimization.decode_chunk_size": "LTX's VAE decodes the whole clip; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "LTX attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": "LTX's feed-forward layers take no chunking; use --offload group",
    }
    # Caught at the VAE: LTX 0.9.1+ draws its decode noise from the generator after denoising and
    # mixes it in first, so what reaches `vae.decode` (with its timestep) decodes without one.
    decoding = Decoding(latents="caught", catches={"latents": Catch("vae.decode")})
    # No TAEHV weights are published for LTX-Video 0.9's VAE; its own VAE decodes the previews.
    previewing = PackedPreviewing()
    # 8k+1 frames, sizes multiples of 32; an input clip of one frame still conditions.
    grid = Grid(frames=8, size=32, shortest=1)
    # The T5-XXL encoder also from one file (t5-v1_1-xxl encoder GGUFs, ComfyUI's t5xxl files).
    loading = Loading(cuda_dtype="bf16", files=("transformer", "text_encoder"))
    # The upscale recipe loads its latent upsampler beside the pipeline and refines at another size.
    memory = _Memory(
        Footprint(
            denoiser="transformer",
            blocks=28,
            sizes={
                **dict.fromkeys(
                    ("Lightricks/LTX-Video", "Lightricks/LTX-Video-0.9.5", "Lightricks/LTX-Video-0.9.7-distilled"),
                    {"transformer": LTX_2B, "text_encoder": T5_XXL, "vae": VAE_PARAMS},
                ),
                "Lightricks/LTX-Video-0.9.8-13B-distilled": {
                    "transformer": LTX_13B,
                    "text_encoder": T5_XXL,
                    "vae": VAE_PARAMS,
                },
            },
            spatial=32,
            temporal=8,
            patch=1,
            width=2048,
            live=10,
            decode=120,
            tiled=0.3,
        ),
        extra=upsampler_models,
    )

    def pipeline_name(self, cfg: RunConfig) -> str:
        # Stage 2 of the upscale recipe refines given latents, which only the condition pipeline takes.
        upscale = cfg.sampling.get("latent_upsampler")
        return CONDITION_PIPELINE if cfg.inputs.conditions or upscale else self.modes[cfg.mode].pipeline

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        check_conditions(cfg)
        check_schedule(cfg, "timesteps", "--timestep")
        check_upscale(cfg)
        check_preview(cfg)
        wanted = magcache_wanted(cfg)
        if wanted == "published":
            raise magcache_refusal(self.title, cfg, "their authors publish none for LTX-Video")
        if wanted and cfg.sampling.get("latent_upsampler"):
            # One cache counts the steps of one call; the recipe's two calls have their own schedules.
            raise ConfigError("--cache magcache does not combine with the two-stage recipe; use --cache first-block.")
        if cfg.sampling.get("image_cond_noise_scale") is not None and not (
            cfg.inputs.conditions or cfg.sampling.get("latent_upsampler")
        ):
            raise ConfigError(
                "--image-cond-noise-scale applies to keyframes and clips (LTXConditionPipeline); "
                "add --keyframe or --condition-video, or drop it."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {
            **prompt_kwargs(cfg),
            **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling),
            **option_kwargs(self, cfg),
        }
        if kwargs.get("timesteps") is not None:
            # A fixed schedule sets the step count.
            kwargs.pop("num_inference_steps", None)
        # The frame rate scales the model's temporal positions: the file's.
        kwargs["frame_rate"] = int(cfg.output.fps or _FPS)
        conditions = cfg.inputs.conditions or []
        if conditions or (cfg.mode == "i2v" and cfg.sampling.get("latent_upsampler")):
            # The condition pipeline takes parallel lists: the i2v image first (at frame 0).
            first = [(0, 1.0)] if cfg.mode == "i2v" else []
            placed = first + [(c.frame_index, c.strength) for c in conditions]
            kwargs["frame_index"] = [frame for frame, _ in placed]
            kwargs["strength"] = [strength for _, strength in placed]
        # The stage options shape the three calls (see upscale_calls); they are no pipeline argument.
        for option in _UPSCALE_ONLY:
            kwargs.pop(option.field, None)
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        # `strength` here is each condition's pull, not a video-to-video strength: every step runs.
        if cfg.sampling.get("latent_upsampler"):
            first, _, second, _ = upscale_calls(cfg, call_kwargs)
            schedule = second["timesteps"]
            return _steps(first) + min(int(len(schedule) * second["denoise_strength"]), len(schedule))
        return _steps(call_kwargs)

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        source = cfg.sampling.get("latent_upsampler")
        return setup_upscale(pipe, cfg, models) if source else []

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if cfg.sampling.get("latent_upsampler"):
            stages = {} if call_kwargs is None else upscale_record(cfg, call_kwargs)
            return {"run": _UPSCALE_NOTE, **stages}
        return {"run": _CONDITIONS_NOTE} if cfg.inputs.conditions else {}

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        frames = decode_vae(pipe, caught.latents, caught.args, caught.kwargs)
        if cfg.sampling.get("latent_upsampler"):
            # The upscale recipe's stage 2 returns PIL frames, resized when it overshoots the size.
            size = upscale_calls(cfg, self.call_kwargs(cfg, 0))[3]
            return finish_upscale(pipe.video_processor.numpy_to_pil(frames), size)
        return frames

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        upscale = cfg.sampling.get("latent_upsampler")
        if "conditions" in media or (upscale and "image" in media):
            media = condition_lists({**media, "conditions": media.get("conditions", [])})
        if upscale:
            return upscale_run(pipe, cfg, call_kwargs, media, **extra)
        return pipe(**call_kwargs, **media, **extra).frames[0]


# -- the upscale recipe (diffusers ltx_video.md, LTX-Video 0.9.7/0.9.8) --------------------------


def decode_vae(pipe: Any, latents: Any, args: list[Any] | None, kwargs: dict[str, Any] | None) -> Any:
    """Caught latents -> float frames, as the LTX pipelines finish: `vae.decode` with the
    arguments it got (the decode timestep), then the video processor."""
    video = pipe.vae.decode(latents, *(args or []), **(kwargs or {}))[0]
    return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def check_preview(cfg: RunConfig) -> None:
    """--live-preview follows one denoising call; the two-stage recipes make two, at two sizes."""
    if cfg.output.live_preview and cfg.sampling.get("latent_upsampler"):
        raise ConfigError(
            "--live-preview is not available with --latent-upsampler: the two stages denoise at two sizes, one after "
            "the other; preview the first stage alone (without the upsampler), or drop --live-preview."
        )


def unpacked(pipe: Any, call_kwargs: dict[str, Any], latents: Any) -> Any:
    """LTX's token latents (batch, tokens, features) as (batch, channels, frames, height, width)
    on the call's latent grid, as the pipelines unpack them before decoding; keyframe and clip
    tokens, which the condition pipelines put in front, are left out."""
    frames = (call_kwargs["num_frames"] - 1) // pipe.vae_temporal_compression_ratio + 1
    height = call_kwargs["height"] // pipe.vae_spatial_compression_ratio
    width = call_kwargs["width"] // pipe.vae_spatial_compression_ratio
    patch, patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    tokens = (frames // patch_t) * (height // patch) * (width // patch)
    return pipe._unpack_latents(latents[:, -tokens:], frames, height, width, patch, patch_t)


def preview_vae(pipe: Any, call_kwargs: dict[str, Any], latents: Any) -> Any:
    """Float frames of denoiser-space latents (batch, channels, frames, height, width) through the
    LTX VAE as the pipelines decode, at the run's decode timestep but without the decode noise
    (drawn from the run's generator, which a preview must leave alone)."""
    import torch

    vae = pipe.vae
    latents = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    timestep = None
    if vae.config.timestep_conditioning:
        decode_timestep = call_kwargs.get("decode_timestep", 0.0)
        timestep = torch.tensor([decode_timestep], device=latents.device, dtype=vae.dtype)
    video = vae.decode(latents.to(vae.dtype), timestep, return_dict=False)[0]
    return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def check_upscale(cfg: RunConfig) -> None:
    if not cfg.sampling.get("latent_upsampler"):
        for option in _UPSCALE_ONLY:
            if cfg.sampling.get(option.field) is not None:
                raise ConfigError(
                    f"{option.flag} applies to two-stage runs; add --latent-upsampler "
                    "(or --preset ltx-video-0.9.7-distilled-upscale), or drop it."
                )
        return
    height, width = cfg.sampling.height, cfg.sampling.width
    for flag, value in (("--height", height), ("--width", width)):
        if value is not None and int(value * DOWNSCALE) < 32:
            raise ConfigError(
                f"{flag} {value} is too small for the upscale recipe: stage 1 runs at 2/3 of it, which must be at "
                "least 32; use 48 or more."
            )
    if cfg.sampling.get("stage_2_timesteps") == []:
        raise ConfigError("--stage-2-timestep needs at least one timestep; drop it for the docs' schedule.")


def upscale_calls(
    cfg: RunConfig, call_kwargs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], tuple[int, int] | None]:
    """The JSON-able arguments of the three calls, from the run's one-call arguments and its
    stage options, and the final resize (width, height), None when stage 2 makes the size asked for."""
    s = cfg.sampling
    common = {k: v for k, v in call_kwargs.items() if k != "output_type"}
    height, width = call_kwargs["height"], call_kwargs["width"]
    # Floored to the VAE's 32 (every LTX-Video checkpoint's; the tiny one's 4 divides it), as the docs do.
    small = (int(height * DOWNSCALE) // 32 * 32, int(width * DOWNSCALE) // 32 * 32)
    first = {**common, "height": small[0], "width": small[1], "output_type": "latent"}
    upsample = {key: s.get(key) for key in ("adain_factor", "tone_map_compression_ratio") if s.get(key) is not None}
    upsample["output_type"] = "latent"
    second = {k: v for k, v in common.items() if k not in ("num_inference_steps", "timesteps")}
    second.update(
        height=small[0] * 2,
        width=small[1] * 2,
        timesteps=list(s.get("stage_2_timesteps") or STAGE_2_DISTILLED_TIMESTEPS),
        denoise_strength=_given(s.get("stage_2_denoise_strength"), 0.999),
        guidance_scale=_given(s.get("stage_2_guidance_scale"), common.get("guidance_scale", 3.0)),
        output_type="pil",
    )
    size = None if (second["height"], second["width"]) == (height, width) else (width, height)
    return first, upsample, second, size


def upscale_record(cfg: RunConfig, call_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The three calls of a two-stage run, for the sidecar's `pipeline.stages`."""
    first, upsample, second, size = upscale_calls(cfg, call_kwargs)
    return {
        "stages": [
            {"call": "pipe", "call_kwargs": first, "returns": "latents (.frames)"},
            {
                "call": "upsample_pipe",
                "call_kwargs": {**upsample, "latents": "latents"},
                "returns": "upscaled_latents (.frames)",
            },
            {
                "call": "pipe",
                "generator": "a new one, seeded with the seed",
                "call_kwargs": {**second, "latents": "upscaled_latents"},
                "then": {"resize": list(size) if size else None, "how": "PIL Image.resize((width, height))"},
            },
        ]
    }


def setup_upscale(pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
    """Load the latent upsampler once, beside the pipeline (sharing its VAE)."""
    from diffusers import LTXLatentUpsamplePipeline
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    return load_upsampler(pipe, cfg, models, LTXLatentUpsamplerModel, LTXLatentUpsamplePipeline)


def load_upsampler(pipe: Any, cfg: RunConfig, models: ModelAccess, model: type, pipeline: type) -> list[dict[str, Any]]:
    """The --latent-upsampler model and its upsample pipeline (on the pipeline's VAE), kept as
    `pipe.vidgen_upsample`; returns the calls for the sidecar's pipeline.setup."""
    where, sub = models.locate(cfg.sampling.get("latent_upsampler"), what="latent upsampler")
    # Files are data: a preset's upsampler loads as safetensors only, unless --allow-pickle.
    safe = models.safetensors()
    upsampler = model.from_pretrained(where, torch_dtype=pipe.vae.dtype, use_safetensors=safe, **sub)
    # An attribute of the loaded pipeline, not a registered component: DiffusionPipeline.components
    # must list exactly its __init__ arguments.
    pipe.vidgen_upsample = pipeline(vae=pipe.vae, latent_upsampler=upsampler)
    pipe.vidgen_upsample.set_progress_bar_config(disable=True)
    kwargs = {"pretrained_model_name_or_path": where, **sub, "torch_dtype": str(pipe.vae.dtype)}
    return [
        {
            "method": f"latent_upsampler = {model.__name__}.from_pretrained",
            "kwargs": {**kwargs, "use_safetensors": safe},
        },
        {
            "method": f"upsample_pipe = {pipeline.__name__}",
            "kwargs": {"vae": "pipe.vae", "latent_upsampler": "latent_upsampler"},
        },
    ]


def _steps(call_kwargs: dict[str, Any]) -> int:
    timesteps = call_kwargs.get("timesteps")
    return len(timesteps) if timesteps else int(call_kwargs.get("num_inference_steps", 0))


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def upscale_run(pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
    """Stage 1, the upsampler, stage 2, the resize: one video, with the models loaded once."""
    import torch
    from diffusers.utils.torch_utils import get_module_execution_device

    first, upsample, second, size = upscale_calls(cfg, call_kwargs)
    generator = extra.pop("generator")
    latents = pipe(**first, **media, generator=generator, **extra).frames
    upsample_pipe = pipe.vidgen_upsample
    upsample_pipe.latent_upsampler.to(get_module_execution_device(pipe.vae))
    upscaled = upsample_pipe(latents=latents, **upsample).frames
    # The docs seed each stage's generator afresh with the same seed.
    again = torch.Generator(device=generator.device).manual_seed(generator.initial_seed())
    frames = pipe(**second, latents=upscaled, **media, generator=again, **extra).frames[0]
    return finish_upscale(frames, size)


def finish_upscale(frames: list[Any], size: tuple[int, int] | None) -> Any:
    """Stage 2's PIL frames, resized to the size asked for when stage 2 made another, as floats."""
    import numpy as np

    if size is not None:
        frames = [frame.resize(size) for frame in frames]
    return np.stack([np.asarray(frame, dtype=np.float32) / 255 for frame in frames])


def check_schedule(cfg: RunConfig, field: str, flag: str) -> None:
    """A fixed schedule (`field`: sigmas or timesteps) sets the step count; a different --steps
    would be ignored, so it is refused."""
    schedule = cfg.sampling.get(field)
    steps = cfg.sampling.num_inference_steps
    if schedule and steps is not None and steps != len(schedule):
        raise ConfigError(
            f"--steps {steps} disagrees with the fixed schedule of {len(schedule)} {flag} values, which sets the step "
            f"count; use --steps {len(schedule)} or drop the schedule."
        )


def check_conditions(cfg: RunConfig) -> None:
    """Each keyframe or clip names one image or one video, at a frame inside the video."""
    frames = cfg.sampling.num_frames
    for condition in cfg.inputs.conditions or []:
        if bool(condition.image) == bool(condition.video):
            raise ConfigError("each inputs.conditions item names one image or one video, not both or neither.")
        if condition.image:
            what = f"--keyframe {condition.frame_index}:{condition.image}"
        else:
            what = f"--condition-video {condition.video}:{condition.frame_index}"
        if frames is not None and condition.frame_index >= frames:
            raise ConfigError(
                f"{what} is past the last frame: the video has {frames} frames (0 to {frames - 1}); "
                f"use a frame below {frames} or more --frames."
            )


def condition_lists(media: dict[str, Any]) -> dict[str, Any]:
    """The i2v image and the prepared conditions as the condition pipeline's parallel `image`
    and `video` lists. Both lists are always passed: given `image` alone, diffusers 0.42.1 pairs
    it with `video=[None]` and zips the conditions down to the first."""
    rest = {k: v for k, v in media.items() if k not in ("image", "conditions")}
    items = ([media["image"]] if "image" in media else []) + list(media["conditions"])
    images = [None if isinstance(item, list) else item for item in items]
    videos = [item if isinstance(item, list) else None for item in items]
    return {**rest, "image": images, "video": videos}


# -- tiny random-weight recipe (after diffusers' tests/pipelines/ltx, offline tokenizer) --------

TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 8,
    "block_out_channels": (8, 8, 8, 8),
    "decoder_block_out_channels": (8, 8, 8, 8),
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1, 1),
    "spatio_temporal_scaling": (True, True, False, False),
    "decoder_spatio_temporal_scaling": (True, True, False, False),
    "decoder_inject_noise": (False, False, False, False, False),
    "upsample_residual": (False, False, False, False),
    "upsample_factor": (1, 1, 1, 1),
    # Timestep-aware like the 0.9.1+ VAEs, so the decode noise drawn after denoising is exercised.
    "timestep_conditioning": True,
    "patch_size": 1,
    "patch_size_t": 1,
    "encoder_causal": True,
    "decoder_causal": False,
}


def tiny_components() -> dict[str, Any]:
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    from vidgen.families.tiny_parts import t5_encoder, t5_tokenizer

    tokenizer = t5_tokenizer()
    # Two blocks, so first-block caching has a block after the first to skip.
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=32,
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": t5_encoder(tokenizer),
        "vae": AutoencoderKLLTXVideo(**TINY_VAE),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "transformer": transformer,
    }


def tiny_t2v() -> Any:
    from diffusers import LTXPipeline

    # The same components serve LTXImageToVideoPipeline and LTXConditionPipeline.
    return LTXPipeline(**tiny_components())


def tiny_upsampler() -> Any:
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    # x2 in space like the published one; 32 channels is GroupNorm(32)'s least.
    return LTXLatentUpsamplerModel(
        in_channels=8, mid_channels=32, num_blocks_per_stage=1, dims=3, spatial_upsample=True, temporal_upsample=False
    )


LTX.tiny = {"ltx": tiny_t2v, "ltx-upsampler": tiny_upsampler}

FAMILIES = (LTX,)
