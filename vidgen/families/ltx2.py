"""LTX-2 (Lightricks): video with sound from one audio-video transformer.

`LTX2Pipeline` (text to video+audio) and `LTX2ImageToVideoPipeline` (image to video+audio)
return the frames and a stereo waveform at the vocoder's sample rate; vidgen muxes the sound
into the mp4 (AAC) or webm (Opus) it writes, or drops it with --no-audio. The guidance knobs keep
diffusers' names: classifier-free (`guidance_scale`), spatio-temporal (`stg_scale`), cross-modal
(`modality_scale`) and the rescale, each with an `audio_` twin for the sound.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, ModelError
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
    Audio,
    Catch,
    Caught,
    Decoding,
    Enhancing,
    Family,
    Footprint,
    Generated,
    Grid,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Option,
    Takes,
    check_multiple,
    option_kwargs,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.ltx import (
    DECODE_NOISE_SCALE,
    DECODE_TIMESTEP,
    GUIDANCE_RESCALE,
    LATENT_UPSAMPLER,
    STAGE_2_GUIDANCE,
    PackedPreviewing,
    check_conditions,
    check_preview,
    check_schedule,
    decode_vae,
    load_upsampler,
    upsampler_models,
)

STG_SCALE = Option(
    "stg_scale",
    "--stg-scale",
    float,
    "Spatio-temporal guidance of the video (0 turns it off).",
    ge=0,
    le=100,
)
MODALITY_SCALE = Option(
    "modality_scale",
    "--modality-scale",
    float,
    "Cross-modal guidance: how strongly the video follows the sound (1 turns it off).",
    ge=0,
    le=100,
)
AUDIO_GUIDANCE = Option(
    "audio_guidance_scale", "--audio-guidance", float, "Classifier-free guidance of the sound.", ge=0, le=100
)
AUDIO_STG_SCALE = Option(
    "audio_stg_scale", "--audio-stg-scale", float, "Spatio-temporal guidance of the sound (0: off).", ge=0, le=100
)
AUDIO_MODALITY_SCALE = Option(
    "audio_modality_scale",
    "--audio-modality-scale",
    float,
    "Cross-modal guidance: how strongly the sound follows the video (1: off).",
    ge=0,
    le=100,
)
AUDIO_GUIDANCE_RESCALE = Option(
    "audio_guidance_rescale",
    "--audio-guidance-rescale",
    float,
    "Rescale of the sound's guided prediction against over-exposure (0: off).",
    ge=0,
    le=1,
)
STG_BLOCKS = Option(
    "spatio_temporal_guidance_blocks",
    "--stg-block",
    list[int],
    "Transformer block skipped for spatio-temporal guidance (repeatable).",
)
CROSS_TIMESTEP = Option(
    "use_cross_timestep",
    "--cross-timestep/--no-cross-timestep",
    bool,
    "Condition each modality's cross-attention on the other's timestep (LTX-2.3+).",
)
NOISE_SCALE = Option(
    "noise_scale",
    "--noise-scale",
    float,
    "Noise mixed into given latents before denoising (two-stage refinement).",
    ge=0,
    le=1,
)
SIGMAS = Option(
    "sigmas",
    "--sigma",
    list[float],
    "One sigma of a fixed schedule (repeatable; distilled checkpoints), instead of --steps.",
)
IMAGE_CRF = Option(
    "image_crf",
    "--image-crf",
    int,
    "H.264 CRF the input image is re-compressed with, as in training (0: none).",
    ge=0,
    le=51,
)
STAGE_2_SIGMAS = Option(
    "stage_2_sigmas",
    "--stage-2-sigma",
    list[float],
    "One sigma of the refinement stage's fixed schedule (repeatable; two-stage runs).",
)
STAGE_2_LORA = Option(
    "stage_2_lora",
    "--stage-2-lora",
    str,
    "LoRA on for the refinement stage only: REPO:WEIGHT_FILE, folder or .safetensors file.",
    setup=True,
)
# diffusers.pipelines.ltx2.utils.STAGE_2_DISTILLED_SIGMA_VALUES: the docs' refinement schedule.
STAGE_2_DISTILLED_SIGMAS = [0.909375, 0.725, 0.421875]
STAGE_2_ADAPTER = "stage_2_distilled"
_STAGE_2_ONLY = (STAGE_2_SIGMAS, STAGE_2_GUIDANCE, STAGE_2_LORA)
_CALL = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# Parameter counts. The transformer's: LTX2VideoTransformer3DModel built on the meta device from
# Lightricks/LTX-2's transformer/config.json (48 layers, 32x128 video heads, 32x64 audio heads).
# The VAEs, vocoder and connectors: diffusers' default configs, which follow that checkpoint.
# Gemma 3 12B: the published size of google/gemma-3-12b (text and vision towers; the repo ships both).
_LTX2_19B = 18.876e9
GEMMA3_12B = 12.19e9
_PARTS = {"vae": 1.222e9, "audio_vae": 0.053e9, "vocoder": 0.056e9, "connectors": 1.431e9}
# LTX-2.3 ("22B": transformer plus connectors): the same classes built on the meta device from the
# 2.3 configs in diffusers' LTX-2 conversion recipe (gated attention and cross-attention modulation;
# 8-layer per-modality connectors; a smaller VAE; the 48 kHz vocoder with bandwidth extension).
LTX23_PARTS = {
    "transformer": 18.989e9,
    "connectors": 3.172e9,
    "vae": 0.726e9,
    "audio_vae": 0.053e9,
    "vocoder": 0.129e9,
}


# How `call` differs from one plain pipeline call, for the sidecar.
_CONDITIONS_NOTE = (
    "LTX2ConditionPipeline gets conditions=[LTX2VideoCondition(frames, index, strength, crf)]: the i2v "
    "image first (index 0, strength 1), then each inputs.conditions item in order (frames: the image, or "
    "the clip's frames; index: its frame_index; crf: sampling.image_crf)"
)
_TWO_STAGE_NOTE = (
    "two stages, as in diffusers' LTX-2 docs: pipeline.stages lists the three calls (stage 1 at half size "
    "with output_type='latent'; LTX2LatentUpsamplePipeline on its video latents; stage 2 at full size on "
    "the upsampled video latents and stage 1's audio latents, with the stage-2 scheduler and LoRA from "
    "pipeline.setup), all with the one generator seeded once"
)
_OPTIONS = (
    STG_SCALE,
    MODALITY_SCALE,
    GUIDANCE_RESCALE,
    AUDIO_GUIDANCE,
    AUDIO_STG_SCALE,
    AUDIO_MODALITY_SCALE,
    AUDIO_GUIDANCE_RESCALE,
    STG_BLOCKS,
    CROSS_TIMESTEP,
    DECODE_TIMESTEP,
    DECODE_NOISE_SCALE,
    NOISE_SCALE,
    SIGMAS,
    IMAGE_CRF,
    LATENT_UPSAMPLER,
    STAGE_2_SIGMAS,
    STAGE_2_GUIDANCE,
    STAGE_2_LORA,
)
# Keyframes and clips (LTX2ConditionPipeline) in text- and image-to-video.
_CONDITIONS = frozenset({"conditions"})
_FPS = 24


class LTX2(Family):
    name = "ltx2"
    title = "LTX-2"
    # Only image-to-video re-compresses an input image (IMAGE_CRF).
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode(
            "LTX2Pipeline",
            "Lightricks/LTX-2",
            _CALL,
            inputs=_CONDITIONS,
            options=frozenset(option.field for option in _OPTIONS if option is not IMAGE_CRF),
            audio=True,
        ),
        "i2v": Mode("LTX2ImageToVideoPipeline", "Lightricks/LTX-2", _CALL, inputs=_CONDITIONS, audio=True),
    }
    # Reference settings (diffusers ltx2.md): 768x512, 121 frames at 24 fps, 30 steps, the
    # pipeline's own multimodal guidance defaults.
    reference = settings(size=(512, 768), frames=121, steps=30, guidance=3.0, fps=_FPS)
    options: ClassVar[tuple[Option, ...]] = _OPTIONS
    # --enhance-prompt runs diffusers' LTX2Pipeline.enhance_prompt on the pipeline's own Gemma
    # (LTX-2.5's dedicated prompt_enhancer where the model has one); an --enhancer LLM gets
    # Lightricks' text-to-video system prompt.
    enhancing = Enhancing(
        "ltx2",
        pipeline=lambda pipe, prompt, asked, media: enhance_with_gemma(pipe, prompt, asked, first_image(media)),
        needs=frozenset({"text_encoder", "tokenizer", "processor", "prompt_enhancer"}),
        requires=frozenset({"text_encoder", "processor"}),
    )
    takes = Takes(
        model=frozenset({"loras"}),
        optimizations=frozenset(
            {"offload", "vae_tiling", "fp8_storage", "attention_backend", "compile", "cache", "quantize"}
        ),
        # What diffusers 0.42.1 runs on the LTX-2 transformer (checked on the tiny model).
        caches=frozenset({"taylorseer", "pab"}),
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=first-block": "diffusers 0.42.1 has no LTX2VideoTransformerBlock in its block registry",
        "optimization.cache=magcache": "diffusers 0.42.1 has no LTX2VideoTransformerBlock in its block registry",
        "optimization.cache=faster": "FasterCache expects video-shaped hidden states; LTX-2 packs them into tokens",
        "optimization.decode_chunk_size": "LTX-2's VAE decodes the whole clip; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "LTX-2 attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": "LTX-2's feed-forward layers take no chunking; use --offload group",
    }
    # Both latents are caught on their way to the decoders: the video's at `vae.decode` (after the
    # decode noise, as for LTX), the sound's as `_unpack_audio_latents` returns them, which the
    # pipeline does before the video decode, so a video decode that fails still keeps the sound.
    # TAELTX2 (taeltx_2; taeltx2_3 for LTX-2.3) decodes the video latents, once unpacked.
    previewing = PackedPreviewing(tae="taeltx_2.safetensors or taeltx2_3.safetensors")
    decoding = Decoding(
        latents="caught",
        catches={
            "latents": Catch("vae.decode"),
            "audio_latents": Catch("_unpack_audio_latents", take="result", decodes=False),
        },
        needs=frozenset({"vae", "audio_vae", "vocoder"}),
    )
    # Frames 8k+1 and sizes multiples of 32; a --condition-video clip is passed on whole
    # (LTX2ConditionPipeline trims it to its frame grid itself).
    grid = Grid(frames=8, size=32, shortest=1, any_clip=True)
    loading = Loading(cuda_dtype="bf16", files=("transformer",))
    # A two-stage run loads its latent upsampler beside the pipeline.
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=48,
            sizes={
                "Lightricks/LTX-2": {"transformer": _LTX2_19B, "text_encoder": GEMMA3_12B, **_PARTS},
                **dict.fromkeys(
                    ("diffusers/LTX-2.3-Diffusers", "diffusers/LTX-2.3-Distilled-Diffusers"),
                    {"text_encoder": GEMMA3_12B, **LTX23_PARTS},
                ),
            },
            spatial=32,
            temporal=8,
            patch=1,
            width=4096,
            live=10,
            decode=120,
            tiled=0.3,
            # Classifier-free guidance batches the unguided pass with the guided one; STG and cross-modal
            # guidance run their own passes after it (batch 1), so the guided pass sets the peak.
            guided=True,
        ),
        extra=upsampler_models,
    )

    def pipeline_name(self, cfg: RunConfig) -> str:
        return "LTX2ConditionPipeline" if cfg.inputs.conditions else self.modes[cfg.mode].pipeline

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        check_conditions(cfg)
        check_schedule(cfg, "sigmas", "--sigma")
        check_two_stage(self.title, cfg)
        check_pab(cfg)
        check_preview(cfg)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {
            **prompt_kwargs(cfg),
            **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling),
            **option_kwargs(self, cfg),
        }
        if cfg.inputs.conditions:
            # The condition pipeline takes the CRF per condition (see `call`), not as an argument.
            kwargs.pop("image_crf", None)
        if kwargs.get("sigmas") is not None:
            # A fixed schedule sets the step count; the docs warn that passing both costs quality.
            kwargs.pop("num_inference_steps", None)
        # The stage options shape the two-stage calls (see two_stage_calls); no pipeline argument.
        for option in _STAGE_2_ONLY:
            kwargs.pop(option.field, None)
        # The frame rate feeds the model's temporal positions and the sound's length: the file's.
        kwargs["frame_rate"] = float(cfg.output.fps or _FPS)
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        if cfg.sampling.get("latent_upsampler"):
            first, _, second = two_stage_calls(cfg, call_kwargs)
            steps = len(first["sigmas"]) if first.get("sigmas") else int(first.get("num_inference_steps", 0))
            return steps + len(second["sigmas"])
        sigmas = call_kwargs.get("sigmas")
        return len(sigmas) if sigmas else super().step_count(cfg, call_kwargs, media)

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        source = cfg.sampling.get("latent_upsampler")
        return setup_two_stage(pipe, cfg, models) if source else []

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if cfg.sampling.get("latent_upsampler"):
            run = (
                f"{_TWO_STAGE_NOTE}; {_CONDITIONS_NOTE}, the same to both stages"
                if cfg.inputs.conditions
                else _TWO_STAGE_NOTE
            )
            stages = {} if call_kwargs is None else two_stage_record(cfg, call_kwargs)
            return {"run": run, **stages}
        return {"run": _CONDITIONS_NOTE} if cfg.inputs.conditions else {}

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        frames = decode_vae(pipe, caught.latents, caught.args, caught.kwargs)
        if "audio_latents" not in caught.tensors:
            return frames
        # As the pipelines finish: the audio VAE makes a mel spectrogram, the vocoder the waveform.
        audio_latents = caught.tensors["audio_latents"].to(pipe.audio_vae.dtype)
        mel = pipe.audio_vae.decode(audio_latents, return_dict=False)[0]
        waveform = pipe.vocoder(mel)
        samples = waveform[0].float().cpu().numpy()
        return Generated(frames, Audio(samples=samples, sample_rate=int(pipe.vocoder.config.output_sampling_rate)))

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        if "conditions" in media:
            media = condition_objects(media, cfg)
        if cfg.sampling.get("latent_upsampler"):
            return two_stage(pipe, cfg, call_kwargs, media, **extra)
        output = pipe(**call_kwargs, **media, **extra)
        return Generated(output.frames[0], audio_of(pipe, output))


# -- prompt enhancement (diffusers' LTX2Pipeline.enhance_prompt) ---------------------------------


def first_image(media: dict[str, Any]) -> Any:
    """The picture the enhancer looks at, as the condition pipeline picks it: the i2v image, else
    the first keyframe (or a clip's first frame); None for a run from text alone."""
    if media.get("image") is not None:
        return media["image"]
    for item in media.get("conditions") or []:
        if isinstance(item, list):
            return item[0] if item else None
        return item
    return None


def enhance_with_gemma(pipe: Any, prompt: str, asked: dict[str, Any], image: Any) -> tuple[str, dict[str, Any]]:
    """Rewrite `prompt` with diffusers' `enhance_prompt` on the loaded pipeline: its dedicated
    prompt_enhancer (LTX-2.5, Gemma 4, with the LTX-2.5 system prompts and greedy decoding) or its
    Gemma 3 text encoder (LTX-2.0/2.3, sampled at temperature 0.7), looking at `image` when there
    is one. `asked` may set the seed, temperature and token budget; the rest are diffusers' own."""
    from diffusers.pipelines.ltx2 import utils

    if getattr(pipe, "processor", None) is None:
        raise ModelError(
            "this LTX-2 model has no `processor` component, which diffusers' enhance_prompt needs to read the "
            "prompt with its Gemma; pick an LLM with --enhancer (e.g. Qwen/Qwen2.5-7B-Instruct, or tiny:llm offline)."
        )
    dedicated = getattr(pipe, "prompt_enhancer", None) is not None
    recipe = utils.GEMMA4_PROMPT_ENHANCEMENT_CONFIG if dedicated else utils.GEMMA3_PROMPT_ENHANCEMENT_CONFIG
    kind = "i2v" if image is not None else "t2v"
    name = f"ltx2.5-{kind}" if dedicated else f"ltx2-{kind}"
    constant = f"LTX2_5_{kind.upper()}_DEFAULT_SYSTEM_PROMPT" if dedicated else f"{kind.upper()}_DEFAULT_SYSTEM_PROMPT"
    generation = dict(recipe.generation_kwargs)
    temperature = asked.get("temperature")
    if temperature is not None:
        generation.pop("temperature", None)
        generation.update({"do_sample": temperature > 0, **({"temperature": temperature} if temperature > 0 else {})})
    max_new_tokens = asked.get("max_new_tokens") or recipe.max_new_tokens
    system = getattr(utils, constant)
    text = pipe.enhance_prompt(
        prompt=prompt,
        system_prompt=system,
        max_new_tokens=max_new_tokens,
        seed=asked["seed"],
        generation_kwargs=generation,
        image=image,
    )[0]
    model = pipe.prompt_enhancer if dedicated else pipe.text_encoder
    record = {
        "enhancer": {
            "id": "pipeline",
            "component": "prompt_enhancer" if dedicated else "text_encoder",
            "class": type(model).__name__,
            "method": f"{type(pipe).__name__}.enhance_prompt",
            "looked_at_image": image is not None,
        },
        "system_prompt": {"name": name, "source": f"diffusers.pipelines.ltx2.utils.{constant}", "text": system},
        "generation": {"max_new_tokens": max_new_tokens, **generation},
    }
    return text, record


# -- two stages (diffusers ltx2.md "Two-stages Generation") --------------------------------------


# LTX2Pipeline's defaults in diffusers 0.42.1, which apply when the run leaves them unset.
_PIPELINE_GUIDANCE = {"stg_scale": 1.0, "audio_stg_scale": 1.0, "modality_scale": 3.0, "audio_modality_scale": 3.0}


def check_pab(cfg: RunConfig) -> None:
    """Pyramid attention broadcast needs LTX-2's guidance in one transformer pass: spatio-temporal
    and cross-modal guidance run extra passes of another batch size, and PAB hands them the
    attention output it kept from the main pass (a shape error on every step it skips; seen with
    diffusers 0.42.1). Classifier-free guidance batches with the main pass and is fine."""
    if (cfg.optimization.cache or "").partition(":")[0] != "pab":
        return
    value = {name: _given(cfg.sampling.get(name), default) for name, default in _PIPELINE_GUIDANCE.items()}
    if (
        value["stg_scale"] > 0
        or value["audio_stg_scale"] > 0
        or value["modality_scale"] > 1
        or (value["audio_modality_scale"] > 1)
    ):
        raise ConfigError(
            "--cache pab on LTX-2 needs guidance in one pass: spatio-temporal and cross-modal guidance run extra "
            "passes that PAB would hand the wrong attention output; add --stg-scale 0 --audio-stg-scale 0 "
            "--modality-scale 1 --audio-modality-scale 1, or use --cache taylorseer."
        )


def _given(value: Any, default: float) -> float:
    return default if value is None else float(value)


def check_two_stage(title: str, cfg: RunConfig) -> None:
    """The two-stage options go together, at sizes stage 1 can halve onto the VAE's grid."""
    if not cfg.sampling.get("latent_upsampler"):
        for option in _STAGE_2_ONLY:
            if cfg.sampling.get(option.field) is not None:
                raise ConfigError(
                    f"{option.flag} applies to two-stage runs; add --latent-upsampler (or --preset ltx2-two-stage), "
                    "or drop it."
                )
        return
    # Stage 1 runs at half the size, which must itself be a multiple of the VAE's 32.
    check_multiple(f"{title} two-stage (stage 1 runs at half size)", cfg, 64)
    if cfg.sampling.get("stage_2_lora") and cfg.model.loras:
        raise ConfigError("--lora does not combine with --stage-2-lora yet (both switch adapters); drop one.")
    sigmas = cfg.sampling.get("stage_2_sigmas")
    if sigmas is not None and not sigmas:
        raise ConfigError("--stage-2-sigma needs at least one sigma; drop it for the docs' schedule.")


def setup_two_stage(pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
    """Load the latent upsampler (and the stage-2 LoRA) once, beside the pipeline, and the
    stage-2 scheduler the docs switch to: the refinement sigmas used as given."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2LatentUpsamplePipeline
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    from vidgen.config.schema import LoraConfig

    calls = load_upsampler(pipe, cfg, models, LTX2LatentUpsamplerModel, LTX2LatentUpsamplePipeline)
    shifts = {"use_dynamic_shifting": False, "shift_terminal": None}
    pipe.vidgen_stage_2_scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, **shifts)
    calls.append({"method": "stage_2_scheduler = FlowMatchEulerDiscreteScheduler.from_config", "kwargs": shifts})
    lora = cfg.sampling.get("stage_2_lora")
    if lora:
        # REPO:WEIGHT_FILE names one file of a Hub repo (the docs' distilled LoRA in Lightricks/LTX-2).
        name, _, weight = lora.partition(":")
        config = LoraConfig(source=name, weight_name=weight or None)
        # Checked as --lora is: safetensors only unless --allow-pickle was typed.
        at, extra = models.lora(config)
        safe = models.safetensors()
        pipe.load_lora_weights(at, adapter_name=STAGE_2_ADAPTER, use_safetensors=safe, **extra)
        pipe.set_adapters(STAGE_2_ADAPTER, 1.0)
        calls += [
            {
                "method": "load_lora_weights",
                "kwargs": {"pretrained_model_name_or_path_or_dict": at, "adapter_name": STAGE_2_ADAPTER, **extra},
            },
            {"method": "set_adapters", "kwargs": {"adapter_names": STAGE_2_ADAPTER, "adapter_weights": 1.0}},
        ]
    return calls


def two_stage_calls(
    cfg: RunConfig, call_kwargs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The JSON-able arguments of the three calls, from the run's own: stage 1 at half size with
    the run's schedule and guidance; the upsampler; stage 2 at full size with the refinement
    sigmas (noise added at the first of them) and its guidance. Everything else goes to both."""
    common = {k: v for k, v in call_kwargs.items() if k != "noise_scale"}
    first = {
        **common,
        "height": call_kwargs["height"] // 2,
        "width": call_kwargs["width"] // 2,
        "output_type": "latent",
        "return_dict": False,
    }
    sigmas = list(cfg.sampling.get("stage_2_sigmas") or STAGE_2_DISTILLED_SIGMAS)
    guidance = cfg.sampling.get("stage_2_guidance_scale")
    second = {k: v for k, v in common.items() if k not in ("num_inference_steps", "sigmas", "guidance_scale")}
    second.update(
        sigmas=sigmas,
        noise_scale=call_kwargs.get("noise_scale", sigmas[0]),
        guidance_scale=1.0 if guidance is None else guidance,
    )
    return first, {"output_type": "latent", "return_dict": False}, second


def two_stage_record(cfg: RunConfig, call_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The three calls of a two-stage run, for the sidecar's `pipeline.stages`."""
    first, upsample, second = two_stage_calls(cfg, call_kwargs)
    lora = bool(cfg.sampling.get("stage_2_lora"))
    return {
        "stages": [
            {
                "call": "pipe",
                **({"before": ["pipe.disable_lora()"]} if lora else {}),
                "call_kwargs": first,
                "returns": "video_latents, audio_latents (return_dict=False)",
            },
            {
                "call": "upsample_pipe",
                "call_kwargs": {**upsample, "latents": "video_latents"},
                "returns": "upscaled_video_latents",
            },
            {
                "call": "pipe",
                "before": [*(["pipe.enable_lora()"] if lora else []), "pipe.scheduler = stage_2_scheduler"],
                "call_kwargs": {**second, "latents": "upscaled_video_latents", "audio_latents": "audio_latents"},
                "after": ["pipe.scheduler = the first scheduler"],
            },
        ]
    }


def two_stage(pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Generated:
    """Stage 1, the upsampler, stage 2: one video, with the models loaded once."""
    from diffusers.utils.torch_utils import get_module_execution_device

    first, upsample, second = two_stage_calls(cfg, call_kwargs)
    lora = bool(cfg.sampling.get("stage_2_lora"))
    if lora:
        pipe.disable_lora()
    video_latents, audio_latents = pipe(**first, **media, **extra)
    upsample_pipe = pipe.vidgen_upsample
    # The upsampler is small: it runs where the VAE runs (offload hooks move the VAE itself).
    upsample_pipe.latent_upsampler.to(get_module_execution_device(pipe.vae))
    upscaled = upsample_pipe(latents=video_latents, **upsample)[0]
    scheduler = pipe.scheduler
    pipe.scheduler = pipe.vidgen_stage_2_scheduler
    if lora:
        pipe.enable_lora()
    try:
        output = pipe(**second, latents=upscaled, audio_latents=audio_latents, **media, **extra)
    finally:
        pipe.scheduler = scheduler
    return Generated(output.frames[0], audio_of(pipe, output))


def condition_objects(media: dict[str, Any], cfg: RunConfig) -> dict[str, Any]:
    """The i2v image and the prepared keyframes and clips as LTX2VideoCondition objects."""
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    crf = cfg.sampling.get("image_crf")
    rest = {k: v for k, v in media.items() if k not in ("image", "conditions")}
    places = [(c.frame_index, c.strength) for c in cfg.inputs.conditions or []]
    items = ([media["image"]] if "image" in media else []) + list(media["conditions"])
    if "image" in media:
        places.insert(0, (0, 1.0))
    conditions = [
        LTX2VideoCondition(frames=item, index=index, strength=strength, crf=crf)
        for item, (index, strength) in zip(items, places, strict=True)
    ]
    return {**rest, "conditions": conditions}


def audio_of(pipe: Any, output: Any) -> Audio:
    """The first video's waveform (channels, samples) at the vocoder's output rate."""
    samples = output.audio[0].float().cpu().numpy()
    return Audio(samples=samples, sample_rate=int(pipe.vocoder.config.output_sampling_rate))


# -- tiny random-weight recipe (after diffusers' tests/pipelines/ltx2, offline tokenizer) ------

_TEXT_HIDDEN = 32  # must equal the connectors' heads x head_dim (4 x 8)
_TEXT_LAYERS = 2
TINY_LTX2_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (8,),
    "decoder_block_out_channels": (8,),
    "layers_per_block": (1,),
    "decoder_layers_per_block": (1, 1),
    "spatio_temporal_scaling": (True,),
    "decoder_spatio_temporal_scaling": (True,),
    "decoder_inject_noise": (False, False),
    "downsample_type": ("spatial",),
    "upsample_residual": (False,),
    "upsample_factor": (1,),
    "timestep_conditioning": False,
    "patch_size": 1,
    "patch_size_t": 1,
    "encoder_causal": True,
    "decoder_causal": False,
}


def _gemma3(vocab_size: int) -> Any:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    text = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=32,
        num_hidden_layers=_TEXT_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        sliding_window=16,
        max_position_embeddings=256,
    )
    vision = SiglipVisionConfig(
        hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=4
    )
    return Gemma3ForConditionalGeneration(
        Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
    ).eval()


def tiny_components(**transformer: Any) -> dict[str, Any]:
    """The tiny LTX-2 pipeline's components; `transformer` overrides the transformer's config
    (LTX-2.5 DFR's keyframe slots need use_keyframes_abs_pos_embedding=True)."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    from vidgen.families import tiny_parts

    tokenizer = tiny_parts.gemma_tokenizer()
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=_TEXT_HIDDEN,
        rope_double_precision=False,
        rope_type="split",
        **transformer,
    )
    connectors = LTX2TextConnectors(
        caption_channels=_TEXT_HIDDEN,
        text_proj_in_factor=_TEXT_LAYERS + 1,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
    )
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )
    # 160 output samples per mel frame (the hop length), so the sound lasts as long as the
    # video, as with the real vocoder; diffusers' test vocoder makes a few milliseconds.
    vocoder = LTX2Vocoder(
        in_channels=2 * 8,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[20, 32],
        upsample_factors=[10, 16],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000,
    )
    return {
        "transformer": transformer,
        "vae": AutoencoderKLLTX2Video(**TINY_LTX2_VAE),
        "audio_vae": audio_vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "text_encoder": _gemma3(len(tokenizer)),
        "tokenizer": tokenizer,
        "connectors": connectors,
        "vocoder": vocoder,
    }


def tiny_t2av() -> Any:
    from diffusers import LTX2Pipeline

    return LTX2Pipeline(**tiny_components())


def tiny_i2av() -> Any:
    from diffusers import LTX2ImageToVideoPipeline

    return LTX2ImageToVideoPipeline(**tiny_components())


def tiny_upsampler() -> Any:
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    # x2 in space like the published one; 32 channels is GroupNorm(32)'s least.
    return LTX2LatentUpsamplerModel(in_channels=4, mid_channels=32, num_blocks_per_stage=1)


LTX2.tiny = {"ltx2": tiny_t2av, "ltx2-i2v": tiny_i2av, "ltx2-upsampler": tiny_upsampler}

FAMILIES = (LTX2,)
