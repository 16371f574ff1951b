"""HunyuanVideo 1.0 (Tencent) and FramePack: a 13B dual/single-stream flow transformer on the
HunyuanVideo causal VAE (4x8x8, 16 latent channels), prompted by a Llama-3 8B and a CLIP-L encoder.

Two families share this module. HunyuanVideo (text and image to video) is guidance-distilled:
its `guidance_scale` is an *embedded* guidance the transformer reads, not classifier-free
guidance; real CFG is `true_cfg_scale` with a negative prompt, a second transformer pass per step.
FramePack (lllyasviel) is long image-to-video on the same stack: the video is made in sections of
`latent_window_size` latent frames, each conditioned on a packed history of the ones before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
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
    ModelAccess,
    Option,
    Previewing,
    ScaledPreviewing,
    Takes,
    magcache_config,
    magcache_refusal,
    magcache_steps,
    magcache_wanted,
    prompt_kwargs,
    sampling_kwargs,
    settings,
    shift_scheduler,
)
from vidgen.families.wan import FLOW_SHIFT, MagCache

TRUE_CFG = Option(
    "true_cfg_scale",
    "--true-cfg",
    float,
    "Real classifier-free guidance with --negative: a second transformer pass per step (1 = off).",
    ge=1,
    le=30,
)
WINDOW = Option(
    "latent_window_size",
    "--window",
    int,
    "Latent frames per section of a long video (each makes 4x that many frames).",
    ge=1,
    le=33,
)
SAMPLING_TYPE = Option(
    "sampling_type",
    "--sampling",
    str,
    "Section order: inverted-anti-drifting (FramePackI2V_HY; end first) or vanilla (F1; start first).",
)
# --sampling value -> diffusers' FramepackSamplingType value.
SAMPLING_TYPES = {"inverted-anti-drifting": "inverted_anti_drifting", "vanilla": "vanilla"}
# The embedded guidance the distilled transformer was trained to read (the model card's examples
# use 6.0, FramePack's 10.0); outside it the output degrades to noise or saturation.
EMBEDDED_GUIDANCE = (1.0, 20.0)

# Parameter counts for the memory planner. Transformers and VAE: diffusers' classes built on the
# meta device with their default configs, which are the published ones (20 dual + 40 single
# blocks of 24x128; FramePack adds its image projection and clean-latent embedders; the VAE's
# matches the community repo's vae/config.json). Llama-3 8B without its LM head, CLIP-L's text
# tower and SigLIP so400m are the models' published sizes (not re-counted here).
_HV_TRANSFORMER = 12.82e9
_FRAMEPACK_TRANSFORMER = 12.87e9
LLAMA_8B = 7.50e9
CLIP_L = 1.23e8
HV_VAE = 2.46e8
_SIGLIP = 4.28e8  # SigLIP so400m vision tower of lllyasviel/flux_redux_bfl
_LLAVA_8B = 8.36e9  # HunyuanVideo-I2V: Llava (Llama-3 8B + CLIP-L/336 vision tower + projector)

# MagCache magnitude ratios from its authors (Zehong-Ma/MagCache@df81cb1,
# MagCache4HunyuanVideo/magcache_sample_video.py, lines 316 and 318: `[1.0] + [...]`), one per
# step of the original 50-step text-to-video run at 720x1280 and at 544x960 (129 frames, shift 7).
# The distilled model makes one transformer pass per step, so the lists are as published. Their
# residual is the first double-stream block's image input to the last single-stream block's
# image output, which is what diffusers' hook measures on transformer_blocks.0 ..
# single_transformer_blocks.39 (the single blocks return image and text apart). Threshold 0.24,
# K 6, retention 0.2: the script's own settings. diffusers resamples the list to the run's steps.
MAG_RATIOS: dict[str, dict[tuple[int, int], MagCache]] = {
    "hunyuanvideo-community/HunyuanVideo": {
        (720, 1280): MagCache(
            modes=("t2v",),
            threshold=0.24,
            max_skip_steps=6,
            retention_ratio=0.2,
            ratios=(
                1.0,
                1.0754,
                1.27807,
                1.11596,
                1.09504,
                1.05188,
                1.00844,
                1.05779,
                1.00657,
                1.04142,
                1.03101,
                1.00679,
                1.02556,
                1.00908,
                1.06949,
                1.05438,
                1.02214,
                1.02321,
                1.03019,
                1.00779,
                1.03381,
                1.01886,
                1.01161,
                1.02968,
                1.00544,
                1.02822,
                1.00689,
                1.02119,
                1.0105,
                1.01044,
                1.01572,
                1.02972,
                1.0094,
                1.02368,
                1.0226,
                0.98965,
                1.01588,
                1.02146,
                1.0018,
                1.01687,
                0.99436,
                1.00283,
                1.01139,
                0.97122,
                0.98251,
                0.94513,
                0.97656,
                0.90943,
                0.85703,
                0.75456,
            ),
        ),
        (544, 960): MagCache(
            modes=("t2v",),
            threshold=0.24,
            max_skip_steps=6,
            retention_ratio=0.2,
            ratios=(
                1.0,
                1.06971,
                1.29073,
                1.11245,
                1.09596,
                1.05233,
                1.01415,
                1.05672,
                1.00848,
                1.03632,
                1.02974,
                1.00984,
                1.03028,
                1.00681,
                1.06614,
                1.05022,
                1.02592,
                1.01776,
                1.02985,
                1.00726,
                1.03727,
                1.01502,
                1.00992,
                1.03371,
                0.9976,
                1.02742,
                1.0093,
                1.01869,
                1.00815,
                1.01461,
                1.01152,
                1.03082,
                1.0061,
                1.02162,
                1.01999,
                0.99063,
                1.01186,
                1.0217,
                0.99947,
                1.01711,
                0.9904,
                1.00258,
                1.00878,
                0.97039,
                0.97686,
                0.94315,
                0.97728,
                0.91154,
                0.86139,
                0.76592,
            ),
        ),
    }
}


def mag_curve(cfg: RunConfig) -> tuple[tuple[int, int], MagCache]:
    """The published ratio curve calibrated nearest the run's size (by pixel count)."""
    import math

    curves = MAG_RATIOS[cfg.model.id or ""]
    pixels = (cfg.sampling.height or 720) * (cfg.sampling.width or 1280)
    size = min(curves, key=lambda key: abs(math.log(key[0] * key[1] / pixels)))
    return size, curves[size]


# The section order each released checkpoint was trained for (diffusers' FramePack docs).
CHECKPOINT_SAMPLING = {
    "lllyasviel/FramePackI2V_HY": "inverted-anti-drifting",
    "lllyasviel/FramePack_F1_I2V_HY_20250503": "vanilla",
}
# Presets whose checkpoint can end on a given frame (--last-image): inverted anti-drifting only.
LAST_IMAGE_PRESETS = ("framepack", "tiny-framepack")
# FramePack's latent frames per section when --window is not given (diffusers' example).
WINDOW_DEFAULT = 9
# The released FramePack checkpoints are transformers only; diffusers' example loads them into
# the HunyuanVideo pipeline with the SigLIP encoder of FLUX Redux.
BASE_REPO = "hunyuanvideo-community/HunyuanVideo"
IMAGE_ENCODER_REPO = "lllyasviel/flux_redux_bfl"

SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# The model card: bf16 transformer, fp16 text encoders and VAE (the VAE was trained in fp16). The
# fp16 pins are the half-precision recipe; an fp32 run (the CPU) keeps everything fp32.
_HALF_DTYPES = {"text_encoder": "fp16", "text_encoder_2": "fp16", "vae": "fp16"}
FOOTPRINT = Footprint(
    denoiser="transformer",
    blocks=60,  # 20 dual-stream + 40 single-stream blocks
    sizes={
        "hunyuanvideo-community/HunyuanVideo": {
            "transformer": _HV_TRANSFORMER,
            "text_encoder": LLAMA_8B,
            "text_encoder_2": CLIP_L,
            "vae": HV_VAE,
        },
        "hunyuanvideo-community/HunyuanVideo-I2V": {
            "transformer": _HV_TRANSFORMER,
            "text_encoder": _LLAVA_8B,
            "text_encoder_2": CLIP_L,
            "vae": HV_VAE,
        },
    },
    spatial=8,
    temporal=4,
    patch=2,
    width=3072,
    live=10,
    decode=120,
    tiled=0.3,
    # The embedded guidance is one pass; true CFG (a second pass) is priced by `passes`.
    guided=False,
)


# Cache hooks that keep their state per denoiser call context, and the pipelines of diffusers
# 0.42.1 that call the transformer without one (only the text-to-video pipeline opens
# `cache_context`): there they fail with "No cache context is set" (probed on the tiny models).
CONTEXT_CACHES = ("first-block", "taylorseer")
NO_CACHE_CONTEXT = "its diffusers pipeline calls the transformer without a cache context, which that hook needs"


def check_cache_context(title: str, cfg: RunConfig, pipeline: str) -> None:
    """Refuse a cache hook that needs a cache context on a pipeline that opens none."""
    kind = (cfg.optimization.cache or "").partition(":")[0]
    if kind in CONTEXT_CACHES and pipeline != "HunyuanVideoPipeline":
        raise ConfigError(
            f"--cache {kind} does not run on {title} {cfg.mode}: {NO_CACHE_CONTEXT}; use --cache pab or magcache."
        )


def passes(cfg: RunConfig) -> int:
    """Transformer passes per step: two with real CFG (the negative prompt's pass)."""
    true_cfg = cfg.sampling.get("true_cfg_scale")
    return 2 if true_cfg and true_cfg > 1 and cfg.inputs.negative_prompt is not None else 1


def published_ratios(cfg: RunConfig) -> bool:
    """Whether the authors' MagCache ratios cover the run's checkpoint and mode."""
    curves = MAG_RATIOS.get(cfg.model.id or "")
    return curves is not None and any(cfg.mode in curve.modes for curve in curves.values())


def _check_magcache(title: str, cfg: RunConfig) -> None:
    """--cache magcache needs one transformer pass per step and, unless ratios are given or
    measured, the authors' published ones for the checkpoint."""
    if passes(cfg) > 1:
        # MagCache counts one transformer pass per step; true CFG runs two, each its own residual.
        raise ConfigError(
            "--cache magcache counts one transformer pass per step, and --true-cfg runs two (the negative "
            "prompt's). Drop --true-cfg or use --cache taylorseer."
        )
    if magcache_wanted(cfg) == "published" and not published_ratios(cfg):
        raise magcache_refusal(title, cfg, f"they are for: {', '.join(f'{repo} (t2v)' for repo in MAG_RATIOS)}")


class HunyuanVideo(Family):
    name = "hunyuanvideo"
    title = "HunyuanVideo"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("HunyuanVideoPipeline", "hunyuanvideo-community/HunyuanVideo", SAMPLING),
        "i2v": Mode("HunyuanVideoImageToVideoPipeline", "hunyuanvideo-community/HunyuanVideo-I2V", SAMPLING),
    }
    # The model card's reference: 720x1280, 129 frames, 50 steps, embedded guidance 6, shift 7, 24 fps.
    reference = settings(size=(720, 1280), frames=129, steps=50, guidance=6.0, fps=24)
    options: ClassVar[tuple[Option, ...]] = (FLOW_SHIFT, TRUE_CFG)
    # What diffusers 0.42.1 runs on the HunyuanVideo transformer (its blocks are registered for
    # first-block; the tiny-model probes ran each). MagCache with the authors' ratios (MAG_RATIOS).
    takes = Takes(
        model=frozenset({"loras"}),
        optimizations=frozenset(
            {"offload", "vae_tiling", "fp8_storage", "attention_backend", "compile", "cache", "quantize"}
        ),
        caches=frozenset({"first-block", "pab", "taylorseer", "magcache"}),
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=faster": "FasterCache assumes a batched guided pass, and true CFG runs two passes",
        "optimization.decode_chunk_size": "the causal VAE decodes frame by frame already; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "it attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": "its feed-forward layers take no chunking; use --offload group",
    }
    # The Llama-3 8B text encoder is as large as half the transformer; it may come from one file
    # too (a Llama GGUF for text-to-video; transformers reads no GGUF for image-to-video's LLaVA).
    loading = Loading(
        cuda_dtype="bf16",
        half_dtypes=_HALF_DTYPES,
        quantize_also=("text_encoder",),
        files=("transformer", "text_encoder"),
    )
    # The causal VAE decodes a few latent frames at a time with a feature cache.
    memory = Memory(FOOTPRINT, decode_batch=4, sliced=False, passes=passes)
    grid = Grid(frames=4, size=16)
    decoding = Decoding(latents=None)  # the pipeline decodes inside its own steps
    previewing = ScaledPreviewing(tae="taehv.safetensors")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        s = cfg.sampling
        low, high = EMBEDDED_GUIDANCE
        if s.guidance_scale is not None and not low <= s.guidance_scale <= high:
            raise ConfigError(
                f"--guidance {s.guidance_scale:g} is out of range for {self.title}: it is the embedded (distilled) "
                f"guidance, {low:g} to {high:g}; for real classifier-free guidance use --true-cfg with --negative."
            )
        true_cfg = s.get("true_cfg_scale")
        negative = cfg.inputs.negative_prompt
        if true_cfg is not None and true_cfg > 1 and negative is None:
            raise ConfigError(
                f"--true-cfg {true_cfg:g} guides away from a negative prompt, and none is set; add --negative "
                '"what to avoid" (or drop --true-cfg).'
            )
        if negative is not None and not (true_cfg and true_cfg > 1):
            raise ConfigError(
                f"--negative is only read by {self.title} with real classifier-free guidance; add --true-cfg "
                "(e.g. --true-cfg 4) or drop --negative."
            )
        if magcache_wanted(cfg) is not None:
            _check_magcache(self.title, cfg)
        check_cache_context(self.title, cfg, self.modes[cfg.mode].pipeline)

    def cache_config(self, pipe: Any, cfg: RunConfig, spec: str) -> tuple[Any, dict[str, Any]] | None:
        if spec.partition(":")[0] != "magcache":
            return None
        if not published_ratios(cfg):
            return magcache_config(cfg, spec, magcache_steps(self, cfg))
        (height, width), published = mag_curve(cfg)
        where = f"MAG_RATIOS[{cfg.model.id!r}][({height}, {width})]"
        return magcache_config(cfg, spec, magcache_steps(self, cfg), published, where)

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        # --flow-shift rebuilds the flow-matching scheduler with the new shift, as on Wan.
        return shift_scheduler(pipe, cfg)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        true_cfg = cfg.sampling.get("true_cfg_scale")
        if true_cfg is not None:
            kwargs["true_cfg_scale"] = true_cfg
        kwargs["output_type"] = "np"
        return kwargs

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        config = pipe.transformer.config
        if (
            cfg.mode == "i2v"
            and getattr(config, "image_condition_type", None) == "latent_concat"
            and cfg.sampling.num_frames
        ):
            # A latent-concat I2V transformer (hunyuanvideo-community/HunyuanVideo-I2V-33ch; the
            # 16-channel HunyuanVideo-I2V replaces tokens and keeps every frame) drops the
            # image's own latent frame, 4 frames, from the video: ask for 4 more so the video has
            # --frames. The kwargs are the ones the sidecar records, so a rerun passes the same.
            call_kwargs["num_frames"] = cfg.sampling.num_frames + 4
        return super().call(pipe, cfg, call_kwargs, media, **extra)

    # -- progress: one tick per transformer pass ------------------------------------------
    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0)) * passes(cfg)

    @contextmanager
    def steps(self, pipe: Any, on_step: Callable[[], None]) -> Iterator[dict[str, Any]]:
        with transformer_passes(pipe, on_step):
            yield {}

    tiny: ClassVar[dict[str, Any]] = {}  # filled below, after the recipes


@contextmanager
def transformer_passes(pipe: Any, on_pass: Callable[[], None]) -> Iterator[None]:
    """Report every forward of the transformer: with true CFG, sections or a guider, a step is
    more than one pass, and the pass is what takes the time (and what the progress total counts)."""
    handle = pipe.transformer.register_forward_hook(lambda module, args, output: on_pass())
    try:
        yield
    finally:
        handle.remove()


def window(cfg: RunConfig) -> int:
    """FramePack's latent frames per section."""
    return int(cfg.sampling.get("latent_window_size") or WINDOW_DEFAULT)


def sections(cfg: RunConfig) -> int:
    """How many sections make --frames: each adds 4 x window frames to the first image."""
    return max(1, ((cfg.sampling.num_frames or 1) - 1) // (4 * window(cfg)))


class _FramePackMemory(Memory):
    """FramePack's forward sees one section, not the video, so its activations follow --window
    rather than --frames."""

    def latent_frames(self, cfg: RunConfig, frames: int) -> int:
        # A forward sees one section, not the video: the first image, the window and the packed
        # history (1 latent frame as is; 2 at 1/8 and 16 at 1/64 of the tokens), about window + 3.
        return window(cfg) + 3


def assemble_framepack(mode: str, kind: str, where: str, dtype: Any) -> tuple[str, dict[str, Any], Any] | None:
    """A FramePack transformer checkpoint in the HunyuanVideo pipeline, with FLUX Redux's SigLIP
    image encoder (diffusers' example); None for a whole pipeline folder (the tiny model)."""
    from pathlib import Path

    if kind in ("dir", "tiny") and (Path(where) / "model_index.json").is_file():
        return None
    import torch
    from diffusers import HunyuanVideoFramepackTransformer3DModel
    from transformers import SiglipImageProcessor, SiglipVisionModel

    encoder_dtype = torch.float32 if dtype == torch.float32 else torch.float16
    parts = {
        "transformer": HunyuanVideoFramepackTransformer3DModel.from_pretrained(
            where, dtype=dtype, use_safetensors=True
        ),
        "image_encoder": SiglipVisionModel.from_pretrained(
            IMAGE_ENCODER_REPO, subfolder="image_encoder", dtype=encoder_dtype, use_safetensors=True
        ),
        "feature_extractor": SiglipImageProcessor.from_pretrained(IMAGE_ENCODER_REPO, subfolder="feature_extractor"),
    }
    record = {
        "pipeline_from": BASE_REPO,
        "transformer": where,
        "image_encoder": f"{IMAGE_ENCODER_REPO} (subfolder image_encoder)",
        "feature_extractor": f"{IMAGE_ENCODER_REPO} (subfolder feature_extractor)",
    }
    return BASE_REPO, parts, record


class FramePack(HunyuanVideo):
    name = "framepack"
    title = "FramePack"
    previewing = Previewing(
        refused="it denoises the video one section at a time, each conditioned on the sections already made, so no "
        "step holds the video to show."
    )
    modes: ClassVar[dict[str, Mode]] = {
        "i2v": Mode(
            "HunyuanVideoFramepackPipeline",
            "lllyasviel/FramePackI2V_HY",
            SAMPLING,
            inputs=frozenset({"last_image"}),
            media={"image": "image", "last_image": "last_image"},
        )
    }
    # diffusers' FramePack example: 832x480, 30 steps, embedded guidance 9, window 9, 30 fps.
    reference = settings(
        size=(832, 480),
        frames=109,
        steps=30,
        guidance=9.0,
        fps=30,
        latent_window_size=WINDOW_DEFAULT,
        sampling_type="inverted-anti-drifting",
    )
    options: ClassVar[tuple[Option, ...]] = (FLOW_SHIFT, TRUE_CFG, WINDOW, SAMPLING_TYPE)
    # FramePack's transformer has no repeated-block list for regional compile, and its sections
    # re-enter the transformer with new shapes. First-block and TaylorSeer need a cache context
    # its pipeline does not open.
    takes = replace(HunyuanVideo.takes, caches=frozenset({"pab"}))
    hints: ClassVar[dict[str, str]] = {
        **HunyuanVideo.hints,
        **{f"optimization.cache={kind}": NO_CACHE_CONTEXT for kind in CONTEXT_CACHES},
        # MagCache counts one schedule per run; FramePack runs a whole schedule per section.
        "optimization.cache=magcache": "FramePack runs a full schedule per section, which MagCache's step count "
        "does not follow",
    }
    loading = replace(
        HunyuanVideo.loading,
        half_dtypes={**_HALF_DTYPES, "image_encoder": "fp16"},
        assemble=assemble_framepack,
        files=(),  # diffusers has no single-file loader for FramePack's transformer
    )
    # As HunyuanVideo's; one section's window plus its packed history (1 + 2 + 16 latent frames,
    # the longer ones downsampled) is what the transformer sees (see _FramePackMemory).
    memory = _FramePackMemory(
        replace(
            FOOTPRINT,
            sizes=dict.fromkeys(
                ("lllyasviel/FramePackI2V_HY", "lllyasviel/FramePack_F1_I2V_HY_20250503"),
                {
                    "transformer": _FRAMEPACK_TRANSFORMER,
                    "text_encoder": LLAMA_8B,
                    "text_encoder_2": CLIP_L,
                    "vae": HV_VAE,
                    "image_encoder": _SIGLIP,
                },
            ),
        ),
        decode_batch=4,
        sliced=False,
        passes=passes,
    )
    # Frames follow the window (see check); sizes are on the 16-pixel grid.
    grid = Grid(size=16)

    def check(self, cfg: RunConfig) -> None:
        kind = cfg.sampling.get("sampling_type")
        if kind is not None and kind not in SAMPLING_TYPES:
            raise ConfigError(f"--sampling {kind} is not a FramePack section order; use {' or '.join(SAMPLING_TYPES)}.")
        trained = CHECKPOINT_SAMPLING.get(cfg.model.id or "")
        if kind is not None and trained is not None and kind != trained:
            raise ConfigError(
                f"--sampling {kind} does not fit {cfg.model.id}, which was trained for --sampling {trained}."
            )
        frames, latent_window = cfg.sampling.num_frames, window(cfg)
        # diffusers makes ceil(num_frames / ((window-1)*4+1)) sections of 4*window frames plus the
        # first image, whatever num_frames says: vidgen takes the length it will really make.
        if frames is not None and ((frames - 1) % (4 * latent_window) or frames == 1):
            step = 4 * latent_window
            low = (frames - 1) // step * step + 1
            valid = " or ".join(str(v) for v in (low, low + step) if v > 1)
            # Or keep the length and change the window: the nearest one that divides it.
            fits = [w for w in range(1, WINDOW.le + 1) if frames > 1 and (frames - 1) % (4 * w) == 0]
            other = f", or keep it with --window {min(fits, key=lambda w: abs(w - latent_window))}" if fits else ""
            raise ConfigError(
                f"--frames {frames} does not fit FramePack with --window {latent_window}: it makes {step}k+1 frames "
                f"(k sections of 4x{latent_window}); nearest valid: {valid}{other}."
            )
        super().check(cfg)
        if cfg.inputs.last_image and not cfg.inputs.image:
            raise ConfigError("--last-image is the frame the video ends on; give the first frame as IMAGE too.")
        if cfg.inputs.last_image and kind == "vanilla":
            raise ConfigError(
                "--last-image needs the inverted anti-drifting section order (it makes the end first), and "
                f"--sampling vanilla (FramePack F1) starts from the first image; use one of the presets "
                f"{', '.join(LAST_IMAGE_PRESETS)}."
            )

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        # Every section runs the whole schedule.
        return super().step_count(cfg, call_kwargs, media) * sections(cfg)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = super().call_kwargs(cfg, seed, frames)
        latent_window = window(cfg)
        # The num_frames that makes exactly this many sections (diffusers counts sections of
        # (window-1)*4+1 frames and then makes 4*window per section).
        kwargs["num_frames"] = sections(cfg) * ((latent_window - 1) * 4 + 1)
        kwargs["latent_window_size"] = latent_window
        kind = cfg.sampling.get("sampling_type")
        if kind is not None:
            kwargs["sampling_type"] = SAMPLING_TYPES[kind]
        return kwargs


# -- tiny random-weight recipes (after diffusers' own HunyuanVideo tests; offline tokenizers) ----

_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


def llama_tokenizer() -> Any:
    """A character-level Llama tokenizer. It needs a pad token: the pipeline pads to max length."""
    from transformers import LlamaTokenizer

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "\u2581": 4}
    for char in _CHARS + "<>|_":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault("\u2581" + char, len(vocab))
    return LlamaTokenizer(vocab=vocab, merges=[], pad_token="<pad>")


def tiny_encoders() -> dict[str, Any]:
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    from vidgen.families.tiny_parts import clip_tokenizer

    tokenizer, tokenizer_2 = llama_tokenizer(), clip_tokenizer()
    # hidden_size 16 = the transformer's text_embed_dim; CLIP's 8 = its pooled_projection_dim.
    llama = LlamaConfig(
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        hidden_size=16,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),
        hidden_act="gelu",
    )
    clip = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=8,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer_2),
        projection_dim=32,
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": LlamaModel(llama).eval(),
        "tokenizer_2": tokenizer_2,
        "text_encoder_2": CLIPTextModel(clip).eval(),
    }


def tiny_vae() -> Any:
    from diffusers import AutoencoderKLHunyuanVideo

    return AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )


TINY_TRANSFORMER = {
    "in_channels": 4,
    "out_channels": 4,
    "num_attention_heads": 2,
    "attention_head_dim": 10,
    # Two blocks of each kind: first-block caching needs more than one.
    "num_layers": 2,
    "num_single_layers": 2,
    "num_refiner_layers": 1,
    "patch_size": 1,
    "patch_size_t": 1,
    "guidance_embeds": True,
    "text_embed_dim": 16,
    "pooled_projection_dim": 8,
    "rope_axes_dim": (2, 4, 4),
}


def tiny_t2v() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

    return HunyuanVideoPipeline(
        **tiny_encoders(),
        transformer=HunyuanVideoTransformer3DModel(**TINY_TRANSFORMER),
        vae=tiny_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )


def llava_tokenizer() -> Any:
    """The Llama tokenizer with the Llama-3 chat markers and Llava's image token as single tokens:
    the I2V pipeline finds the assistant header by its id and expands `<image>` into the vision
    tower's features, so both must be one token each, as in the real vocabulary."""
    from transformers import AddedToken

    tokenizer = llama_tokenizer()
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>"]}
    )
    # The role names and blank lines one token each, as Llama-3 reads them, so the image token
    # sits where the template's image_emb_start expects it.
    tokenizer.add_tokens([AddedToken(word, normalized=False) for word in ("system", "user", "assistant", "\n\n", "\n")])
    return tokenizer


def tiny_i2v() -> Any:
    """HunyuanVideo-I2V: a Llava text encoder (Llama + CLIP vision tower) reads the prompt with the
    image; the transformer replaces the first latent frame's tokens with the image's
    (`token_replace`, the hunyuanvideo-community/HunyuanVideo-I2V checkpoint's kind)."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoImageToVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from vidgen.families.tiny_parts import clip_image_processor

    tokenizer = llava_tokenizer()
    text = LlamaConfig(
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        hidden_size=16,  # the transformer's text_embed_dim
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),
        hidden_act="gelu",
    )
    # 336-pixel images in 14-pixel patches: the 576 image features the pipeline's default
    # template expects (image_emb_len), as Llava's CLIP-L/336 gives them.
    vision = CLIPVisionConfig(
        hidden_size=8, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=336, patch_size=14
    )
    llava = LlavaConfig(
        vision_config=vision,
        text_config=text,
        pad_token_id=0,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    encoders = tiny_encoders()
    return HunyuanVideoImageToVideoPipeline(
        text_encoder=LlavaForConditionalGeneration(llava).eval(),
        tokenizer=tokenizer,
        transformer=HunyuanVideoTransformer3DModel(**TINY_TRANSFORMER, image_condition_type="token_replace"),
        vae=tiny_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=encoders["text_encoder_2"],
        tokenizer_2=encoders["tokenizer_2"],
        image_processor=clip_image_processor(336),
    )


def tiny_framepack() -> Any:
    """FramePack: the packed-history transformer, a SigLIP image encoder (hidden 32 = image_proj_dim)."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoFramepackPipeline,
        HunyuanVideoFramepackTransformer3DModel,
    )

    from vidgen.families.tiny_parts import siglip_vision

    transformer = HunyuanVideoFramepackTransformer3DModel(
        **{**TINY_TRANSFORMER, "patch_size": 2},
        image_condition_type=None,
        has_image_proj=True,
        image_proj_dim=32,
        has_clean_x_embedder=True,
    )
    vision = siglip_vision(hidden_size=32, intermediate_size=37)
    return HunyuanVideoFramepackPipeline(
        **tiny_encoders(),
        transformer=transformer,
        vae=tiny_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        **vision,
    )


HunyuanVideo.tiny = {"hunyuanvideo": tiny_t2v, "hunyuanvideo-i2v": tiny_i2v}
FramePack.tiny = {"framepack": tiny_framepack}

FAMILIES = (HunyuanVideo, FramePack)
