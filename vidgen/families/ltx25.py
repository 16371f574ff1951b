"""LTX-2.5 DFR (Lightricks): one Diffusion Fidelity Rendering pass, video with sound.

`LTX2DFRPipeline` denoises the video together with keyframe "slots" (single-frame latents at
segment borders the model places itself) on a fixed distilled schedule, without classifier-free
guidance: one transformer call per sigma. vidgen runs one pass at the size asked for, with text
(t2v) or a first frame (i2v, as an `LTX2VideoCondition` at frame 0), and muxes the sound as
LTX-2 does. The steps are the schedule's sigmas (--sigma, repeatable; the docs' eight by default);
there is no --steps, --guidance or --negative-prompt. The docs' full 1080p recipe (a half-size
pass, the latent upsampler, a full-size pass with an IC-LoRA reference, temporal refine rounds)
is several calls and not built here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
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
_CALL = frozenset({"num_frames", "height", "width", "max_sequence_length"})
_OPTIONS = (SIGMAS, NOISE_SCALE, CROSS_TIMESTEP, DECODE_TIMESTEP, DECODE_NOISE_SCALE, IMAGE_CRF)
# Parameter counts. LTX-2.5's configs are gated (not verified here): the transformer, connectors
# and VAEs are taken as LTX-2.3's (the same 22B classes built on the meta device in ltx2.py; the
# keyframe-slot embedding adds a few thousand), the text encoder as 12B (Lightricks ships
# "gemma4-12b-with-proj"; Gemma 3 12B's published size stands in).
_SIZES = {REPO: {"text_encoder": GEMMA3_12B, **LTX23_PARTS}}
_I2V_NOTE = (
    "the i2v image goes to LTX2DFRPipeline as conditions=[LTX2VideoCondition(frames=image, index=0, strength=1.0, "
    "crf=sampling.image_crf or 18)]"
)


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
        )
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
        sigmas = cfg.sampling.get("sigmas")
        if sigmas is not None and not sigmas:
            raise ConfigError("--sigma needs at least one sigma; drop it for the docs' eight.")
        if sigmas and any(not 0 < s <= 1 for s in sigmas):
            raise ConfigError(f"--sigma {sigmas}: each sigma lies in (0, 1], highest first (the pipeline adds 0).")

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
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return len(call_kwargs["sigmas"])

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        return []

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"run": _I2V_NOTE} if cfg.mode == "i2v" else {}

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        media = dict(media)
        if "image" in media:
            from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

            crf = cfg.sampling.get("image_crf")
            image = media.pop("image")
            media["conditions"] = [
                LTX2VideoCondition(frames=image, index=0, strength=1.0, crf=IMAGE_CRF_25 if crf is None else crf)
            ]
        output = pipe(**call_kwargs, **media, **extra)
        return Generated(output.frames[0], audio_of(pipe, output))


# -- tiny random-weight recipe: LTX-2's tiny parts with the keyframe-slot embedding -------------


def tiny() -> Any:
    from diffusers import LTX2DFRPipeline

    return LTX2DFRPipeline(**tiny_components(use_keyframes_abs_pos_embedding=True))


LTX25DFR.tiny = {"ltx25-dfr": tiny}

FAMILIES = (LTX25DFR,)
