"""LTX-2.5 DFR (Lightricks): one Diffusion Fidelity Rendering pass, video with sound.

`LTX2DFRPipeline` denoises the video together with keyframe "slots" (single-frame latents at
segment borders the model places itself) on a fixed distilled schedule, without classifier-free
guidance: one transformer call per sigma. vidgen runs one pass at the size asked for, with text
(t2v) or a first frame (i2v, as an `LTX2VideoCondition` at frame 0), and muxes the sound as
LTX-2 does. The steps are the schedule's sigmas (--sigma, repeatable; the docs' eight by default);
there is no --steps, --guidance or --negative-prompt.

--refine-rounds N adds the docs' temporal refine: the pass runs to latents at (frames - 1) / 2^N + 1
frames and fps / 2^N, then `LTX2DFRTemporalRefinePipeline` (an x2 temporal latent upsampler, given
with --temporal-upsampler, and an ancestral re-denoise tiled on the keyframe seams) runs N times,
each round doubling the frames and the frame rate, and the canvas is trimmed and decoded as the
docs decode it; the sound is the pass's. So --frames and --fps stay the video's. The docs' spatial
stages (the latent upsampler, a full-size pass with the detailing IC-LoRA) are not built here.

--diffusion-decoder SOURCE decodes the video with LTX-2.5's diffusion decoder instead of the VAE's
convolutional one, as diffusers' docs chain it: the pass (or the last refine round) runs to latents,
the canvas is trimmed, and `LTX2VideoDiffusionDecodePipeline` denoises the pixels with the run's
generator, continued (denormalize=False: latent output is already denormalized); the sound is the
pass's, through the audio VAE and vocoder.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, ModelError
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
    Audio,
    Enhancing,
    Footprint,
    Generated,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Option,
    Previewing,
    Takes,
    option_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.ltx import DECODE_NOISE_SCALE, DECODE_TIMESTEP
from vidgen.families.ltx2 import (
    CROSS_TIMESTEP,
    GEMMA3_12B,
    IMAGE_CRF,
    LTX2,
    LTX23_PARTS,
    NOISE_SCALE,
    SIGMAS,
    audio_of,
    tiny_components,
)

REPO = "Lightricks/LTX-2.5-Diffusers"
PIPELINE = "LTX2DFRPipeline"
# diffusers.pipelines.ltx2.utils.DISTILLED_SIGMA_VALUES: the pipeline's default schedule.
DISTILLED_SIGMAS = [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875]
# diffusers.pipelines.ltx2.utils.LTX2_5_IMAGE_CRF: the CRF LTX-2.5 was trained with (33 before it).
IMAGE_CRF_25 = 18
# diffusers.pipelines.ltx2.utils.TEMPORAL_ROUND_DISTILLED_SIGMA_VALUES: each refine round's schedule.
TEMPORAL_SIGMAS = DISTILLED_SIGMAS[4:]
# LTXEulerAncestralRFScheduler's eta for the rounds (diffusers' TEMPORAL_ANCESTRAL_ETA); the pipeline
# refuses a deterministic step, which would only return a softer canvas.
TEMPORAL_ETA = 0.5
MAX_ROUNDS = 3
REFINE_ROUNDS = Option(
    "refine_rounds",
    "--refine-rounds",
    int,
    "Temporal refine rounds after the pass, each doubling frames and frame rate (needs --temporal-upsampler).",
    ge=0,
    le=MAX_ROUNDS,
    call=False,
)
REFINE_SIGMAS = Option(
    "refine_sigmas",
    "--refine-sigma",
    list[float],
    "One sigma of each temporal refine round's schedule (repeatable; the docs' four by default).",
    call=False,
)
TEMPORAL_UPSAMPLER = Option(
    "temporal_upsampler",
    "--temporal-upsampler",
    str,
    "x2 temporal latent upsampler for --refine-rounds (converted folder, REPO[/SUBFOLDER] or tiny:NAME).",
    setup=True,
)
_REFINE_ONLY = (REFINE_SIGMAS, TEMPORAL_UPSAMPLER)
DIFFUSION_DECODER = Option(
    "diffusion_decoder",
    "--diffusion-decoder",
    str,
    "Decode with LTX-2.5's diffusion decoder instead of the VAE (converted folder, REPO[/SUBFOLDER] or tiny:NAME).",
    setup=True,
)
# Parameters of LTX2VideoDiffusionDecoderModel() with its default config built on the meta device;
# the docs load it from Lightricks/LTX-2.5-Diffusers, subfolder diffusion_decoder (gated: not verified).
DIFFUSION_DECODER_PARAMS = 417_133_616
# Parameters of LTX2LatentUpsamplerModel(mid_channels=1024, temporal_upsample=True) built on the meta
# device: LTX-2.3's published temporal upsampler config; LTX-2.5's is not published (not verified).
TEMPORAL_UPSAMPLER_PARAMS = 516_740_224
_CALL = frozenset({"num_frames", "height", "width", "max_sequence_length"})
_OPTIONS = (
    SIGMAS,
    NOISE_SCALE,
    CROSS_TIMESTEP,
    DECODE_TIMESTEP,
    DECODE_NOISE_SCALE,
    IMAGE_CRF,
    REFINE_ROUNDS,
    REFINE_SIGMAS,
    TEMPORAL_UPSAMPLER,
    DIFFUSION_DECODER,
)
# Parameter counts. LTX-2.5's configs are gated (not verified here): the transformer, connectors
# and VAEs are taken as LTX-2.3's (the same 22B classes built on the meta device in ltx2.py; the
# keyframe-slot embedding adds a few thousand), the text encoder as 12B (Lightricks ships
# "gemma4-12b-with-proj"; Gemma 3 12B's published size stands in).
_SIZES = {REPO: {"text_encoder": GEMMA3_12B, **LTX23_PARTS}}
_I2V_NOTE = (
    "the i2v image goes to LTX2DFRPipeline as conditions=[LTX2VideoCondition(frames=image, index=0, strength=1.0, "
    "crf=sampling.image_crf or 18)]"
)
_REFINE_NOTE = (
    "temporal refine, as in diffusers' LTX-2.5 docs: pipeline.stages lists the calls (the pass with "
    "output_type='latent' at (frames - 1) / 2^N + 1 frames and fps / 2^N; N rounds of temporal_pipe "
    "(pipeline.setup), each on the previous call's frames, keyframes and keyframe_positions with stage 1's "
    "audio; then trim_canvas and vae.decode at timestep 0 (no decode noise), and stage 1's sound cut to the "
    "video's length), all with the one generator seeded once"
)


_DECODER_NOTE = (
    "diffusion decode, as in diffusers' LTX-2.5 docs: pipeline.stages lists the calls (the video to latents, "
    "then trim_canvas and decode_pipe, an LTX2VideoDiffusionDecodePipeline built in pipeline.setup, with the "
    "same generator, continued; the sound from the pass's audio latents, cut to the video's length)"
)


def temporal_models(cfg: RunConfig) -> dict[str, tuple[str, float | None]]:
    """The temporal latent upsampler of a refine run and the diffusion decoder, for the memory
    planner (Memory.extra)."""
    models: dict[str, tuple[str, float | None]] = {}
    if source := cfg.sampling.get("temporal_upsampler"):
        models["temporal_latent_upsampler"] = (source, TEMPORAL_UPSAMPLER_PARAMS)
    if source := cfg.sampling.get("diffusion_decoder"):
        models["diffusion_decoder"] = (source, DIFFUSION_DECODER_PARAMS)
    return models


class LTX25DFR(LTX2):
    name = "ltx25-dfr"
    title = "LTX-2.5 DFR"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode(
            PIPELINE,
            REPO,
            _CALL,
            options=frozenset(option.field for option in _OPTIONS if option is not IMAGE_CRF),
            audio=True,
        ),
        "i2v": Mode(PIPELINE, REPO, _CALL, audio=True),
    }
    # The pipeline's docstring example: 1216x704, 121 frames at 24 fps, the distilled schedule.
    reference = settings(size=(704, 1216), frames=121, fps=24, sigmas=DISTILLED_SIGMAS)
    options: ClassVar[tuple[Option, ...]] = _OPTIONS
    enhancing = Enhancing()
    takes = Takes(
        model=frozenset({"loras"}),
        optimizations=frozenset({"offload", "vae_tiling", "attention_backend", "fp8_storage", "quantize", "cache"}),
        # One transformer pass per step, so PAB needs none of LTX-2's guidance conditions.
        caches=frozenset({"pab"}),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        **LTX2.hints,
        "optimization.cache=faster": "FasterCache needs classifier-free guidance; LTX-2.5 DFR has none",
        "optimization.cache=taylorseer": "LTX2DFRPipeline calls its transformer outside a cache_context (diffusers "
        "0.42.1), which TaylorSeer's hook needs",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "sampling.num_inference_steps": "LTX-2.5 DFR runs a fixed distilled schedule: one step per --sigma",
        "sampling.guidance_scale": "LTX-2.5 DFR is distilled and runs without classifier-free guidance",
        "inputs.negative_prompt": "LTX-2.5 DFR runs without classifier-free guidance, so no negative prompt",
        "inputs.conditions": "LTX-2.5 DFR in vidgen takes a first frame (i2v), not keyframes or clips yet",
    }
    # No --transformer FILE: no single-file LTX-2.5 checkpoint is tested here.
    loading = Loading(cuda_dtype="bf16")
    previewing = Previewing(
        refused="LTX-2.5 DFR's packed latents carry its keyframe slots after the video's tokens; no preview yet"
    )
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=48,
            sizes=_SIZES,
            spatial=32,
            temporal=8,
            patch=1,
            width=4096,
            live=10,
            decode=120,
            tiled=0.3,
        ),
        extra=temporal_models,
    )

    def pipeline_name(self, cfg: RunConfig) -> str:
        return PIPELINE

    def check(self, cfg: RunConfig) -> None:
        super(LTX2, self).check(cfg)
        if cfg.inputs.negative_prompt is not None:
            raise ConfigError(f"--negative-prompt: {self.hints['inputs.negative_prompt']}; drop it.")
        frames = cfg.sampling.num_frames
        if frames is not None and frames < 9:
            raise ConfigError(f"--frames {frames}: the DFR canvas needs at least 9 frames (8k+1); try --frames 9.")
        for field, flag in (("sigmas", "--sigma"), ("refine_sigmas", "--refine-sigma")):
            sigmas = cfg.sampling.get(field)
            if sigmas is not None and not sigmas:
                raise ConfigError(f"{flag} needs at least one sigma; drop it for the docs' schedule.")
            if sigmas and any(not 0 < s <= 1 for s in sigmas):
                raise ConfigError(f"{flag} {sigmas}: each sigma lies in (0, 1], highest first (the pipeline adds 0).")
        check_refine(cfg)
        check_decoder(cfg)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {
            "prompt": cfg.inputs.prompt,
            **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling),
            **option_kwargs(self, cfg),
        }
        # The image's CRF goes into its condition (see `call`), not to the pipeline.
        kwargs.pop("image_crf", None)
        kwargs.setdefault("sigmas", list(DISTILLED_SIGMAS))
        kwargs["frame_rate"] = float(cfg.output.fps or 24)
        kwargs["output_type"] = "np"
        rounds = cfg.sampling.get("refine_rounds") or 0
        if rounds and kwargs.get("num_frames") is not None:
            # The pass makes the video at 1 / 2^N of its frames and frame rate; the rounds double both.
            kwargs["num_frames"] = (kwargs["num_frames"] - 1) // 2**rounds + 1
            kwargs["frame_rate"] /= 2**rounds
            kwargs["output_type"] = "latent"
        if cfg.sampling.get("diffusion_decoder"):
            kwargs["output_type"] = "latent"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        rounds = cfg.sampling.get("refine_rounds") or 0
        if not rounds:
            return len(call_kwargs["sigmas"])
        sigmas = len(cfg.sampling.get("refine_sigmas") or TEMPORAL_SIGMAS)
        return len(call_kwargs["sigmas"]) + sigmas * sum(refine_tiles(call_kwargs.get("num_frames") or 121, rounds))

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        calls = setup_refine(pipe, cfg, models) if cfg.sampling.get("refine_rounds") else []
        return calls + (setup_decoder(pipe, cfg, models) if cfg.sampling.get("diffusion_decoder") else [])

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        refining = bool(cfg.sampling.get("refine_rounds"))
        notes = [_REFINE_NOTE] if refining else []
        if cfg.sampling.get("diffusion_decoder"):
            notes.append(_DECODER_NOTE)
        if cfg.mode == "i2v":
            notes.append(_I2V_NOTE + (", the same to each round" if refining else ""))
        stages: dict[str, Any] = {}
        if call_kwargs is not None and refining:
            stages = refine_record(cfg, call_kwargs)
        elif call_kwargs is not None and cfg.sampling.get("diffusion_decoder"):
            stages = decoder_record(call_kwargs)
        return {"run": "; ".join(notes), **stages} if notes else {}

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        media = dict(media)
        if "image" in media:
            from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

            crf = cfg.sampling.get("image_crf")
            image = media.pop("image")
            media["conditions"] = [
                LTX2VideoCondition(frames=image, index=0, strength=1.0, crf=IMAGE_CRF_25 if crf is None else crf)
            ]
        if cfg.sampling.get("refine_rounds"):
            return refine(pipe, cfg, call_kwargs, media, **extra)
        if cfg.sampling.get("diffusion_decoder"):
            out = pipe(**call_kwargs, **media, **extra)
            frames, fps = call_kwargs.get("num_frames") or 121, call_kwargs["frame_rate"]
            return finish(pipe, out.frames, out.audio, frames, fps, extra.get("generator"))
        output = pipe(**call_kwargs, **media, **extra)
        return Generated(output.frames[0], audio_of(pipe, output))


# -- temporal refine (diffusers' LTX-2.5 docs: LTX2DFRTemporalRefinePipeline, once per round) --------


def check_refine(cfg: RunConfig) -> None:
    """The refine options go together, on frame counts the rounds can halve back onto the grid."""
    rounds = cfg.sampling.get("refine_rounds") or 0
    if not rounds:
        for option in _REFINE_ONLY:
            if cfg.sampling.get(option.field) is not None:
                raise ConfigError(f"{option.flag} applies to temporal refine runs; add --refine-rounds 1, or drop it.")
        return
    if not cfg.sampling.get("temporal_upsampler"):
        raise ConfigError(
            f"--refine-rounds {rounds} needs --temporal-upsampler: LTX-2.5's x2 temporal latent upsampler is not in "
            "Lightricks/LTX-2.5-Diffusers' model_index.json; convert it with diffusers' LTX-2 conversion script "
            "(--temporal_latent_upsampler) and give its folder."
        )
    frames = cfg.sampling.num_frames
    step = 8 * 2**rounds
    if frames is not None and ((frames - 1) % step or frames < step + 1):
        lower = max((frames - 1) // step, 1) * step + 1
        nearest = f"{lower}" if frames < lower else f"{lower} or {lower + step}"
        raise ConfigError(
            f"--frames {frames}: with --refine-rounds {rounds} the pass makes (frames - 1) / {2**rounds} + 1 frames, "
            f"at least 9 and 8k+1, so the video has {step}k+1 frames; try --frames {nearest}."
        )
    for option in (DECODE_TIMESTEP, DECODE_NOISE_SCALE):
        if cfg.sampling.get(option.field) is not None:
            raise ConfigError(
                f"{option.flag} is not used with --refine-rounds: the refined canvas is decoded as diffusers' docs "
                "decode it, at timestep 0 without decode noise; drop it."
            )


def refine_tiles(frames: int, rounds: int, ratio: int = 8) -> list[int]:
    """How many tiles each round denoises (for the progress bar), from diffusers' own layout
    functions, for the published VAE's temporal ratio of 8."""
    from diffusers.pipelines.ltx2.dfr_layout import resolve_canvas, temporal_tile_plan

    canvas, _, positions = resolve_canvas(frames, ratio)
    counts = []
    for index in range(1, rounds + 1):
        seams = [2 * position for position in positions]
        canvas = 2 * (canvas - 1) + 1
        tiles = temporal_tile_plan(seams, canvas, 2**index, ratio)
        counts.append(len(tiles))
        positions = sorted(set(seams) | {slot for tile in tiles for slot in tile.slots})
    return counts


def setup_refine(pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
    """Load the temporal upsampler once, beside the pipeline, and the refine pipeline on the
    pass's own components with the ancestral scheduler the rounds need (kept as
    `pipe.vidgen_temporal`); returns the calls for the sidecar's pipeline.setup."""
    from diffusers import LTX2DFRTemporalRefinePipeline, LTXEulerAncestralRFScheduler
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    where, sub = models.locate(cfg.sampling.get("temporal_upsampler"), what="temporal latent upsampler")
    # Files are data: the upsampler loads as safetensors only, unless --allow-pickle.
    safe = models.safetensors()
    upsampler = LTX2LatentUpsamplerModel.from_pretrained(where, torch_dtype=pipe.vae.dtype, use_safetensors=safe, **sub)
    if not upsampler.config.temporal_upsample or upsampler.config.spatial_upsample:
        raise ModelError(
            f"--temporal-upsampler {cfg.sampling.get('temporal_upsampler')} is not a temporal x2 latent upsampler "
            "(its config sets spatial_upsample or not temporal_upsample); give the temporal one."
        )
    shared = ("vae", "audio_vae", "text_encoder", "tokenizer", "connectors", "transformer", "vocoder")
    # An attribute of the loaded pipeline, not a registered component (as LTX's upsample pipeline).
    pipe.vidgen_temporal = LTX2DFRTemporalRefinePipeline(
        scheduler=LTXEulerAncestralRFScheduler(eta=TEMPORAL_ETA),
        **{name: getattr(pipe, name) for name in shared},
        temporal_latent_upsampler=upsampler,
    )
    pipe.vidgen_temporal.set_progress_bar_config(disable=True)
    kwargs = {"pretrained_model_name_or_path": where, **sub, "torch_dtype": str(pipe.vae.dtype)}
    return [
        {
            "method": "temporal_latent_upsampler = LTX2LatentUpsamplerModel.from_pretrained",
            "kwargs": {**kwargs, "use_safetensors": safe},
        },
        {
            "method": "temporal_pipe = LTX2DFRTemporalRefinePipeline",
            "kwargs": {
                "scheduler": f"LTXEulerAncestralRFScheduler(eta={TEMPORAL_ETA})",
                **{name: f"pipe.{name}" for name in shared},
                "temporal_latent_upsampler": "temporal_latent_upsampler",
            },
        },
    ]


def refine_calls(cfg: RunConfig, call_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON-able arguments of each round: the pass's prompt, size, text length and
    cross-timestep, the round's sigmas, the input's frame rate (the pass's, doubled per round),
    the request's frame count for the conditions. The canvas-dependent ones (num_frames,
    source_seconds) are filled in at run time from the latents, as the docs do."""
    rounds = cfg.sampling.get("refine_rounds")
    sigmas = list(cfg.sampling.get("refine_sigmas") or TEMPORAL_SIGMAS)
    keep = ("prompt", "height", "width", "max_sequence_length", "use_cross_timestep")
    common = {k: call_kwargs[k] for k in keep if k in call_kwargs}
    return [
        {
            **common,
            "frame_rate": call_kwargs["frame_rate"] * 2 ** (index - 1),
            "condition_num_frames": call_kwargs["num_frames"],
            "round_index": index,
            "sigmas": sigmas,
            "output_type": "latent",
        }
        for index in range(1, rounds + 1)
    ]


def refine_record(cfg: RunConfig, call_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The calls of a refine run, for the sidecar's `pipeline.stages`."""
    rounds = cfg.sampling.get("refine_rounds")
    frames = (call_kwargs["num_frames"] - 1) * 2**rounds + 1
    fps = call_kwargs["frame_rate"] * 2**rounds
    stages: list[dict[str, Any]] = [{"call": "pipe", "call_kwargs": call_kwargs, "returns": "out (return_dict=True)"}]
    for kwargs in refine_calls(cfg, call_kwargs):
        stages.append(
            {
                "call": "temporal_pipe",
                "call_kwargs": {
                    **kwargs,
                    "latents": "out.frames",
                    "keyframes_latents": "out.keyframes",
                    "keyframe_positions": "out.keyframe_positions",
                    "audio_latents": "stage 1's out.audio",
                    "num_frames": "(out.frames.shape[2] - 1) * vae.temporal_compression_ratio + 1",
                    "source_seconds": "stage 1's canvas frames / stage 1's frame_rate",
                },
                "returns": "out (return_dict=True)",
            }
        )
    stages.append(
        {
            "call": "decode",
            # The video's frames and frame rate: what the trim keeps and the sound is cut to.
            "call_kwargs": {"frames": frames, "fps": fps},
            "steps": finish_steps(frames, fps, "stage 1's out.audio", bool(cfg.sampling.get("diffusion_decoder"))),
        }
    )
    return {"stages": stages}


def refine(pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Generated:
    """The pass, the refine rounds, the decode: one video, with the models loaded once."""
    from diffusers.utils.torch_utils import get_module_execution_device

    temporal = pipe.vidgen_temporal
    # The upsampler is small and no offload hook owns it (it is not the pass's component): it
    # runs where the VAE runs, as LTX-2's spatial upsampler does in a two-stage run.
    temporal.temporal_latent_upsampler.to(get_module_execution_device(pipe.vae))
    ratio = pipe.vae.temporal_compression_ratio
    first = pipe(**call_kwargs, **media, **extra)
    out = first
    canvas = (first.frames.shape[2] - 1) * ratio + 1
    seconds = canvas / call_kwargs["frame_rate"]
    for kwargs in refine_calls(cfg, call_kwargs):
        out = temporal(
            **kwargs,
            latents=out.frames,
            keyframes_latents=out.keyframes,
            keyframe_positions=out.keyframe_positions,
            audio_latents=first.audio,
            num_frames=(out.frames.shape[2] - 1) * ratio + 1,
            source_seconds=seconds,
            **media,
            **extra,
        )
    rounds = cfg.sampling.get("refine_rounds")
    frames = (call_kwargs["num_frames"] - 1) * 2**rounds + 1
    fps = call_kwargs["frame_rate"] * 2**rounds
    return finish(pipe, out.frames, first.audio, frames, fps, extra.get("generator"))


def finish_steps(frames: int, fps: float, audio: str, diffusion: bool) -> list[str]:
    """The decode after a latent-output call, as the sidecar's last stage lists it."""
    video = (
        ["decode_pipe(latents, generator=the run's generator, continued, output_type='np', denormalize=False)"]
        if diffusion
        else [
            "vae.decode(latents, timestep=zeros if vae.config.timestep_conditioning else None)",
            "video_processor.postprocess_video(output_type='np')",
        ]
    )
    return [
        f"latents = trim_canvas(out.frames, {frames}, vae.temporal_compression_ratio)",
        *video,
        f"audio = vocoder(audio_vae.decode({audio})), its first round({frames} / {fps} x "
        "the vocoder's output_sampling_rate) samples",
    ]


def finish(pipe: Any, latents: Any, audio_latents: Any, frames: int, fps: float, generator: Any) -> Generated:
    """Trim the canvas to the video's frames and decode it (with the diffusion decoder when one
    was set up, else the VAE at timestep 0 as the refine docs do), and the sound cut to its length."""
    import torch
    from diffusers.pipelines.ltx2.utils import trim_canvas
    from diffusers.utils.torch_utils import get_module_execution_device

    decoder = getattr(pipe, "vidgen_decoder", None)
    # Outside the pipelines' own no_grad: the decode the docs write after the latent-output call.
    with torch.no_grad():
        latents = trim_canvas(latents, frames, pipe.vae.temporal_compression_ratio)
        if decoder is not None:
            # No offload hook owns the decoder (it is not the pass's component): it runs where the VAE runs.
            decoder.diffusion_decoder.to(get_module_execution_device(pipe.vae))
            video = decoder(latents, generator=generator, output_type="np", denormalize=False, return_dict=False)[0]
        else:
            timestep = None
            if pipe.vae.config.timestep_conditioning:
                timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=pipe.vae.dtype)
            video = pipe.vae.decode(latents.to(pipe.vae.dtype), timestep, return_dict=False)[0]
            video = pipe.video_processor.postprocess_video(video, output_type="np")
        rate = pipe.vocoder.config.output_sampling_rate
        audio = pipe.vocoder(pipe.audio_vae.decode(audio_latents.to(pipe.audio_vae.dtype), return_dict=False)[0])
        audio = audio[..., : min(audio.shape[-1], round(frames / fps * rate))]
    return Generated(video[0], Audio(samples=audio[0].float().cpu().numpy(), sample_rate=int(rate)))


# -- diffusion decode (diffusers' LTX-2.5 docs: LTX2VideoDiffusionDecodePipeline on latent output) ---


def check_decoder(cfg: RunConfig) -> None:
    """What the diffusion decoder replaces cannot be asked for beside it."""
    if not cfg.sampling.get("diffusion_decoder"):
        return
    for option in (DECODE_TIMESTEP, DECODE_NOISE_SCALE):
        if cfg.sampling.get(option.field) is not None:
            raise ConfigError(
                f"{option.flag} is not used with --diffusion-decoder: the VAE's decode noise does not reach the "
                "diffusion decoder, which draws its own; drop it."
            )
    if cfg.output.save_latents:
        raise ConfigError(
            "--save-latents is not supported with --diffusion-decoder yet (vidgen decode decodes with the VAE); "
            "drop one of them."
        )


def setup_decoder(pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
    """Load the diffusion decoder once, beside the pipeline, and its decode pipeline with the
    pass's scheduler as the docs build it (kept as `pipe.vidgen_decoder`); returns the calls for
    the sidecar's pipeline.setup."""
    from diffusers import LTX2VideoDiffusionDecodePipeline, LTX2VideoDiffusionDecoderModel

    source = cfg.sampling.get("diffusion_decoder")
    where, sub = models.locate(source, what="diffusion decoder")
    # Files are data: the decoder loads as safetensors only, unless --allow-pickle.
    safe = models.safetensors()
    decoder = LTX2VideoDiffusionDecoderModel.from_pretrained(
        where, torch_dtype=pipe.vae.dtype, use_safetensors=safe, **sub
    )
    channels = pipe.vae.config.latent_channels
    if decoder.config.latent_channels != channels:
        raise ModelError(
            f"--diffusion-decoder {source} takes {decoder.config.latent_channels} latent channels and this VAE makes "
            f"{channels}; give the diffusion decoder of this model."
        )
    calls: list[dict[str, Any]] = [
        {
            "method": "diffusion_decoder = LTX2VideoDiffusionDecoderModel.from_pretrained",
            "kwargs": {
                "pretrained_model_name_or_path": where,
                **sub,
                "torch_dtype": str(pipe.vae.dtype),
                "use_safetensors": safe,
            },
        }
    ]
    if cfg.optimization.vae_tiling:
        # The docs' way to keep a large decode in memory; tiles are denoised apart, so not the untiled result.
        decoder.enable_tiling()
        calls.append({"method": "diffusion_decoder.enable_tiling", "kwargs": {}})
    # An attribute of the loaded pipeline, not a registered component (as the temporal refine pipeline).
    pipe.vidgen_decoder = LTX2VideoDiffusionDecodePipeline(diffusion_decoder=decoder, scheduler=pipe.scheduler)
    pipe.vidgen_decoder.set_progress_bar_config(disable=True)
    calls.append(
        {
            "method": "decode_pipe = LTX2VideoDiffusionDecodePipeline",
            "kwargs": {"diffusion_decoder": "diffusion_decoder", "scheduler": "pipe.scheduler"},
        }
    )
    return calls


def decoder_record(call_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The calls of a diffusion-decoded run, for the sidecar's `pipeline.stages`."""
    frames, fps = call_kwargs.get("num_frames") or 121, call_kwargs["frame_rate"]
    return {
        "stages": [
            {"call": "pipe", "call_kwargs": call_kwargs, "returns": "out (return_dict=True)"},
            {
                "call": "decode",
                "call_kwargs": {"frames": frames, "fps": fps},
                "steps": finish_steps(frames, fps, "out.audio", True),
            },
        ]
    }


# -- tiny random-weight recipe: LTX-2's tiny parts with the keyframe-slot embedding -------------


def tiny() -> Any:
    from diffusers import LTX2DFRPipeline

    return LTX2DFRPipeline(**tiny_components(use_keyframes_abs_pos_embedding=True))


def tiny_temporal_upsampler() -> Any:
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    # x2 in time like the published one; 32 channels is GroupNorm(32)'s least.
    return LTX2LatentUpsamplerModel(
        in_channels=4, mid_channels=32, num_blocks_per_stage=1, spatial_upsample=False, temporal_upsample=True
    )


def tiny_diffusion_decoder() -> Any:
    import torch
    from diffusers import LTX2VideoDiffusionDecoderModel

    # The tiny VAE's latent space: 4 channels, x2 in space (patch 2) and time (one temporal stride).
    decoder = LTX2VideoDiffusionDecoderModel(
        latent_channels=4,
        patch_size=2,
        decoder_head_dim=8,
        decoder_stage_channels=(16, 16, 16, 16, 16),
        decoder_stage_depths=(1, 1, 1, 1, 1),
        decoder_stage_kernels=((3, 3, 3),) * 4,
        decoder_upsample_strides=((1, 1, 1), (2, 1, 1), (1, 1, 1), (1, 1, 1)),
        decoder_upsample_channel_reductions=(1, 1, 1, 1),
        decoder_stage5_kernel=(3, 3, 3),
        decoder_t_emb_dim=16,
        spatial_compression_ratio=2,
        temporal_compression_ratio=2,
    )
    # AdaLN-zero starts its modulation at zero, which would leave the latents' context unused:
    # re-randomised so the decoded video depends on what was generated (and so on the prompt).
    with torch.no_grad():
        for parameter in decoder.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.5)
        # Random weights let the noise it denoises drown the context; a louder context projection makes
        # another prompt's latents decode to another video, as trained weights do.
        for block in decoder.decoder.diff_blocks:
            block.context_proj.weight.mul_(20)
    return decoder


LTX25DFR.tiny = {
    "ltx25-dfr": tiny,
    "ltx25-temporal-upsampler": tiny_temporal_upsampler,
    "ltx25-diffusion-decoder": tiny_diffusion_decoder,
}

FAMILIES = (LTX25DFR,)
