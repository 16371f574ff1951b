"""LTX-2 in-context control (Lightricks IC-LoRAs): a video with sound that follows control maps.

`vidgen control PROMPT --control VIDEO` runs `LTX2InContextPipeline` with an IC-LoRA: the
control video (depth, pose or edge maps, or a motion-track overlay) is encoded by the VAE and
appended to the tokens being denoised, and the LoRA has learnt to follow it. vidgen passes it as
one `LTX2ReferenceCondition(frames, strength=--reference-strength)`; the video is as long as the
control clip (8k+1 frames: the first 8k+1 are used). --preprocess canny makes edge maps from an
ordinary clip, --preprocess depth/pose run controlnet_aux's detectors, --preprocess none takes
maps as given. The IC-LoRA comes with --ic-lora (REPO:WEIGHT_FILE, folder, .safetensors file or
tiny:NAME) or from a preset per control type, which also sets the LoRA's reference downscale
factor (its file name says "ref0.5" for 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, ModelError
from vidgen.families.base import (
    Decoding,
    Enhancing,
    Generated,
    Grid,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Option,
    Previewing,
    Takes,
    option_kwargs,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.ltx import (
    DECODE_NOISE_SCALE,
    DECODE_TIMESTEP,
    GUIDANCE_RESCALE,
    check_preview,
    check_schedule,
)
from vidgen.families.ltx2 import (
    AUDIO_GUIDANCE,
    AUDIO_GUIDANCE_RESCALE,
    AUDIO_MODALITY_SCALE,
    AUDIO_STG_SCALE,
    CROSS_TIMESTEP,
    LTX2,
    MODALITY_SCALE,
    NOISE_SCALE,
    SIGMAS,
    STG_BLOCKS,
    STG_SCALE,
    audio_of,
    check_pab,
    tiny_components,
)

REPO = "diffusers/LTX-2.3-Diffusers"
PIPELINE = "LTX2InContextPipeline"
ADAPTER = "ic_lora"
IC_LORA = Option(
    "ic_lora",
    "--ic-lora",
    str,
    "LTX-2 IC-LoRA: the IC-LoRA that reads the control video (REPO:WEIGHT_FILE, folder, .safetensors or tiny:NAME).",
    setup=True,
)
IC_LORA_SCALE = Option(
    "ic_lora_scale",
    "--ic-lora-scale",
    float,
    "LTX-2 IC-LoRA: the IC-LoRA's weight (1: as trained).",
    ge=0,
    le=2,
    setup=True,
)
REFERENCE_STRENGTH = Option(
    "reference_strength",
    "--reference-strength",
    float,
    "LTX-2 IC-LoRA: how clean the control video's tokens look to the model (1: fully, 0: as noisy as the video).",
    ge=0,
    le=1,
    call=False,
)
REFERENCE_DOWNSCALE = Option(
    "reference_downscale_factor",
    "--reference-downscale",
    int,
    "LTX-2 IC-LoRA: the control video is read at 1/N of the size, as the IC-LoRA was trained ('ref0.5' files: 2).",
    ge=1,
    le=8,
)
ATTENTION_STRENGTH = Option(
    "conditioning_attention_strength",
    "--conditioning-attention",
    float,
    "LTX-2 IC-LoRA: how strongly the video and the control tokens attend to each other (1: fully, 0: not at all).",
    ge=0,
    le=1,
)
_OPTIONS = (
    IC_LORA,
    IC_LORA_SCALE,
    REFERENCE_STRENGTH,
    REFERENCE_DOWNSCALE,
    ATTENTION_STRENGTH,
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
)
# num_frames comes from the control clip (see call_kwargs), not from --frames.
_CALL = frozenset({"num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
_RUN_NOTE = (
    "LTX2InContextPipeline gets reference_conditions=[LTX2ReferenceCondition(frames=the control frames, "
    "strength=sampling.reference_strength or 1.0)]; num_frames is the control clip's length"
)


class _Reference(Memory):
    """The control video's tokens ride along with the video's: at downscale N, 1/N^2 as many more."""

    def latent_frames(self, cfg: RunConfig, frames: int) -> int:
        own = super().latent_frames(cfg, frames)
        factor = cfg.sampling.get("reference_downscale_factor") or 1
        return own + -(-own // factor**2)


class LTX2Control(LTX2):
    name = "ltx2-ic"
    title = "LTX-2 IC-LoRA"
    modes: ClassVar[dict[str, Mode]] = {
        "control": Mode(
            PIPELINE,
            REPO,
            _CALL,
            # Control maps as given unless a preset or --preprocess says how to make them.
            defaults={"inputs": {"preprocess": "none"}},
            # The control frames, wrapped in an LTX2ReferenceCondition by `call`.
            media={"control": "reference_conditions"},
            audio=True,
        ),
    }
    # LTX-2.3's reference settings (diffusers' LTX2InContextPipeline example): 768x512 at 24 fps,
    # 30 steps, guidance 3 with the pipeline's multimodal guidance defaults.
    reference = settings(size=(512, 768), steps=30, guidance=3.0, fps=24)
    options: ClassVar[tuple[Option, ...]] = _OPTIONS
    takes = Takes(
        model=frozenset({"loras"}),
        optimizations=frozenset({"offload", "vae_tiling", "fp8_storage", "attention_backend", "quantize", "cache"}),
        caches=frozenset({"taylorseer", "pab"}),
    )
    hints: ClassVar[dict[str, str]] = {
        **LTX2.hints,
        "sampling.num_frames": "the --control video sets the length (its first 8k+1 frames)",
        "inputs.conditions": "LTX-2 IC-LoRA control in vidgen takes the control video, not keyframes yet",
        "sampling.latent_upsampler": "LTX-2 IC-LoRA control runs one stage; two-stage IC-LoRA runs are not built yet",
    }
    # The control clip is cut to the 8k+1 frames the VAE encodes (9 at least).
    grid = Grid(frames=8, size=32, shortest=9)
    # No --transformer FILE: single-file loading is tested on LTX-2's own pipelines only.
    loading = Loading(cuda_dtype="bf16")
    memory = _Reference(LTX2.memory.footprint)
    previewing = Previewing(
        refused="LTX-2 IC-LoRA control's packed latents carry the control video's tokens; no preview yet"
    )

    def pipeline_name(self, cfg: RunConfig) -> str:
        return PIPELINE

    def check(self, cfg: RunConfig) -> None:
        super(LTX2, self).check(cfg)
        check_schedule(cfg, "sigmas", "--sigma")
        check_pab(cfg)
        check_preview(cfg)
        if not cfg.sampling.get("ic_lora"):
            raise ConfigError(
                f"{self.title} needs an IC-LoRA: add --ic-lora REPO:WEIGHT_FILE (or a file, folder or tiny:NAME), "
                "or use a preset such as ltx2.3-ic-union-canny."
            )
        check_ic_lora(cfg)
        factor = cfg.sampling.get("reference_downscale_factor") or 1
        for flag, value in (("--height", cfg.sampling.height), ("--width", cfg.sampling.width)):
            if value is not None and factor > 1 and value % (32 * factor):
                raise ConfigError(
                    f"{flag} {value} does not fit --reference-downscale {factor}: the reference video is read at "
                    f"1/{factor} of the size, which must stay a multiple of 32; use multiples of {32 * factor}."
                )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {
            **prompt_kwargs(cfg),
            **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling),
            **option_kwargs(self, cfg),
        }
        if kwargs.get("sigmas") is not None:
            kwargs.pop("num_inference_steps", None)
        if frames is not None:
            kwargs["num_frames"] = frames
        kwargs["frame_rate"] = float(cfg.output.fps or 24)
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        sigmas = call_kwargs.get("sigmas")
        return len(sigmas) if sigmas else int(call_kwargs.get("num_inference_steps", 0))

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        return load_ic_lora(pipe, cfg, models)

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"run": _RUN_NOTE}

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2ReferenceCondition

        strength = cfg.sampling.get("reference_strength")
        frames = media["reference_conditions"]
        media = {
            **media,
            "reference_conditions": [LTX2ReferenceCondition(frames, 1.0 if strength is None else strength)],
        }
        output = pipe(**call_kwargs, **media, **extra)
        return Generated(output.frames[0], audio_of(pipe, output))


# What --lora refuses without --allow-pickle (vidgen.models.components.PICKLE_SUFFIXES), checked
# here before anything loads; the loader checks the file itself again when it locates it.
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")


def check_ic_lora(cfg: RunConfig) -> None:
    """An IC-LoRA in a pickle file (by its name) needs --allow-pickle, as --lora does: exit 5."""
    source = cfg.sampling.get("ic_lora") or ""
    name = source if Path(source).suffix.lower() in _PICKLE_SUFFIXES else source.rpartition(":")[2]
    if Path(name).suffix.lower() in _PICKLE_SUFFIXES and not cfg.model.allow_pickle:
        raise ModelError(
            f"--ic-lora {source}: pickle weights, which can run code when loaded, are refused; use a .safetensors "
            "file, or add --allow-pickle only if you trust where it came from."
        )


def load_ic_lora(pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
    """Load the IC-LoRA once, under the adapter name diffusers' example uses, and switch it on."""
    from vidgen.config.schema import LoraConfig

    source = cfg.sampling.get("ic_lora")
    scale = cfg.sampling.get("ic_lora_scale")
    scale = 1.0 if scale is None else float(scale)
    if source.startswith("tiny:"):
        # A tiny IC-LoRA is built into the tiny-model cache like a tiny pipeline, then loaded from there.
        at, _ = models.locate(source, "IC-LoRA")
        extra = {"weight_name": TINY_WEIGHT}
    else:
        name, colon, weight = source.partition(":")
        if colon and Path(source).exists():
            name, weight = source, ""
        at, extra = models.lora(LoraConfig(source=name, weight_name=weight or None))
        if Path(at).is_dir():  # a local file's folder, recorded absolute so the sidecar works from anywhere
            at = str(Path(at).resolve())
    pipe.load_lora_weights(at, adapter_name=ADAPTER, use_safetensors=models.safetensors(), **extra)
    pipe.set_adapters(ADAPTER, scale)
    loaded = {"pretrained_model_name_or_path_or_dict": at, "adapter_name": ADAPTER, **extra}
    return [
        {"method": "load_lora_weights", "kwargs": loaded},
        {"method": "set_adapters", "kwargs": {"adapter_names": ADAPTER, "adapter_weights": scale}},
    ]


# -- LTX-2 HDR (LTX2HDRPipeline with the HDR IC-LoRA): an SDR clip made HDR ------------------------

HDR_REPO = "diffusers/LTX-2.3-Distilled-Diffusers"
HDR_PIPELINE = "LTX2HDRPipeline"
# diffusers.pipelines.ltx2.utils.DISTILLED_SIGMA_VALUES: the distilled model's eight steps.
DISTILLED_SIGMAS = [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875]
_HDR_OPTIONS = (IC_LORA, IC_LORA_SCALE, REFERENCE_STRENGTH, REFERENCE_DOWNSCALE, SIGMAS, NOISE_SCALE)
_HDR_CALL = frozenset({"guidance_scale", "height", "width", "max_sequence_length"})
_HDR_NOTE = (
    "LTX2HDRPipeline gets reference_conditions=[LTX2HDRReferenceCondition(frames=the input clip's frames, "
    "strength=sampling.reference_strength or 1.0)] and returns linear HDR frames (output_type='pt'), written "
    "as HDR10 (output.hdr; raw_sha256 hashes the float32 frames); the SDR poster and previews clip them at 1 "
    "and apply the sRGB curve, as diffusers' encode_hdr_tensor_to_mp4 does"
)


def sdr(linear: Any) -> Any:
    """Linear HDR frames as SDR: clipped at the reference white, then the sRGB curve (diffusers'
    encode_hdr_tensor_to_mp4 with its default tone map)."""
    import numpy as np

    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


class LTX2HDR(LTX2):
    """Shares LTX-2 IC-LoRA control's rules and loading (copied below rather than inherited:
    family chains stay two deep)."""

    name = "ltx2-hdr"
    title = "LTX-2 HDR"
    modes: ClassVar[dict[str, Mode]] = {
        "v2v": Mode(
            HDR_PIPELINE,
            HDR_REPO,
            _HDR_CALL,
            media={"video": "reference_conditions"},
            hdr=True,
        ),
    }
    # The LTX2HDRPipeline example: 768x512 at 24 fps, the distilled schedule, guidance 1.
    reference = settings(size=(512, 768), guidance=1.0, fps=24, sigmas=DISTILLED_SIGMAS)
    options: ClassVar[tuple[Option, ...]] = _HDR_OPTIONS
    enhancing = Enhancing()
    hints: ClassVar[dict[str, str]] = {
        **LTX2Control.hints,
        "sampling.num_frames": "the input clip sets the length (its first 8k+1 frames)",
        "sampling.num_inference_steps": "LTX-2 HDR runs the distilled schedule: one step per --sigma",
        "sampling.strength": "LTX-2 HDR keeps the clip whole; --reference-strength sets how closely",
    }
    takes = LTX2Control.takes
    grid = LTX2Control.grid
    loading = LTX2Control.loading
    memory = LTX2Control.memory
    check = LTX2Control.check
    step_count = LTX2Control.step_count
    setup = LTX2Control.setup
    decoding = Decoding(latents=None)
    previewing = Previewing(refused="LTX-2 HDR's packed latents carry the input clip's tokens; no preview yet")

    def pipeline_name(self, cfg: RunConfig) -> str:
        return HDR_PIPELINE

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"run": _HDR_NOTE}

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = LTX2Control.call_kwargs(self, cfg, seed, frames)
        kwargs.setdefault("sigmas", list(DISTILLED_SIGMAS))
        kwargs["output_type"] = "pt"
        return kwargs

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        from diffusers.pipelines.ltx2.pipeline_ltx2_hdr_lora import LTX2HDRReferenceCondition

        strength = cfg.sampling.get("reference_strength")
        frames = media["reference_conditions"]
        reference = LTX2HDRReferenceCondition(frames, 1.0 if strength is None else strength)
        output = pipe(**call_kwargs, **{**media, "reference_conditions": [reference]}, **extra)
        linear = output.frames[0].float().cpu().numpy()
        return Generated(sdr(linear), hdr=linear)


# -- tiny random-weight recipe: the tiny LTX-2 pipeline and a random IC-LoRA for its transformer ---

TINY_WEIGHT = "tiny_ic_lora.safetensors"


class TinyLora:
    """Random LoRA weights on the tiny LTX-2 transformer's attention, saved as diffusers saves a
    real LoRA (plus a config.json that marks the folder complete in the tiny-model cache)."""

    def __init__(self, layers: dict[str, Any]) -> None:
        self.layers = layers

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True) -> None:
        from diffusers import LTX2InContextPipeline

        LTX2InContextPipeline.save_lora_weights(
            str(folder), transformer_lora_layers=self.layers, weight_name=TINY_WEIGHT, safe_serialization=True
        )
        Path(folder, "config.json").write_text(json.dumps({"kind": "LoRA", "weight_name": TINY_WEIGHT}) + "\n")


def tiny_ic() -> Any:
    from diffusers import LTX2InContextPipeline

    return LTX2InContextPipeline(**tiny_components())


def tiny_ic_lora() -> TinyLora:
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = tiny_components()["transformer"]
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    # PEFT starts lora_B at zero (a LoRA that changes nothing); random B makes it matter.
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    return TinyLora(get_peft_model_state_dict(transformer))


def tiny_hdr() -> Any:
    from diffusers import LTX2HDRPipeline

    return LTX2HDRPipeline(**tiny_components())


LTX2Control.tiny = {"ltx2-ic": tiny_ic, "ltx2-ic-lora": tiny_ic_lora}
LTX2HDR.tiny = {"ltx2-hdr": tiny_hdr}

FAMILIES = (LTX2Control, LTX2HDR)
