"""LTX-Video long video, a prompt per window (`LTXI2VLongMultiPromptPipeline`, LTX-Video 0.9.8).

The video is denoised in temporal windows of --temporal-tile frames that share --temporal-overlap
frames with the one before, each window seeded from the seed and its start, and fused in latent
space; with an image (i2v) the first frame holds it. Each window may have its own prompt, as in
AnimateDiff's prompt travel: `--prompt-at FRAME:TEXT` (repeatable) or `--prompt-at @FILE` (lines
of `FRAME: TEXT`), where FRAME is a frame at which a window starts (0, 56, 112, ... with the
docs' 80-frame windows overlapping by 24). A prompt holds until the next one. diffusers floors
frames, window sizes and sizes silently; vidgen refuses values off their grids before loading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    Takes,
    check_grid,
    merged,
    nearest,
    option_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.ltx import (
    DECODE_NOISE_SCALE,
    DECODE_TIMESTEP,
    GUIDANCE_RESCALE,
    LTX_13B,
    T5_XXL,
    TINY_VAE,
    VAE_PARAMS,
)

PIPELINE = "LTXI2VLongMultiPromptPipeline"
REPO = "Lightricks/LTX-Video-0.9.8-13B-distilled"
# The VAE's frames per latent frame (every LTX-Video 0.9 VAE; the tiny one is built to match).
_TEMPORAL = 8
# The pipeline's own defaults (and its docstring example's): 80-frame windows overlapping by 24.
_TILE, _OVERLAP = 80, 24
# Why most cache hooks are refused: they keep state between denoiser calls, and the windows
# are denoised one after another in one call, each with another token count.
_WINDOWS = "the cache keeps its state from one window into the next, whose token count differs"
_CALL = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})

TEMPORAL_TILE = Option(
    "temporal_tile_size",
    "--temporal-tile",
    int,
    "Frames per window of a long LTX-Video (multiples of 8; the docs: 80). Prompts change where windows start.",
    ge=8,
    le=10_000,
)
TEMPORAL_OVERLAP = Option(
    "temporal_overlap",
    "--temporal-overlap",
    int,
    "Frames each window of a long LTX-Video shares with the one before (multiples of 8; the docs: 24).",
    ge=0,
    le=10_000,
)
COND_STRENGTH = Option(
    "cond_strength",
    "--cond-strength",
    float,
    "How firmly a long LTX-Video's first frame holds the image (0 to 1; the pipeline: 0.5).",
    ge=0,
    le=1,
)


def windows(frames: int, tile: int, overlap: int) -> list[int]:
    """The frames at which the windows of a `frames`-frame video start, as the pipeline splits
    its latent frames (diffusers' split_into_temporal_windows): a latent frame k starts at 8k."""
    length = (frames - 1) // _TEMPORAL + 1
    size, shared = max(1, tile // _TEMPORAL), max(0, overlap // _TEMPORAL)
    stride = max(size - shared, 1)
    starts, start = [], 0
    while start < length:
        starts.append(start * _TEMPORAL)
        if min(start + size, length) == length:
            break
        start += stride
    return starts


def _tiling(cfg: RunConfig) -> tuple[int, int]:
    s = cfg.sampling
    tile, overlap = s.get("temporal_tile_size"), s.get("temporal_overlap")
    return (_TILE if tile is None else tile), (_OVERLAP if overlap is None else overlap)


def window_prompts(cfg: RunConfig) -> list[str] | None:
    """One prompt per window from the run's frame -> prompt map (None without one): each window
    takes the prompt given at its start frame, or the one before."""
    given = cfg.inputs.prompts
    if not given:
        return None
    prompts = dict(sorted(given.items()))
    if cfg.inputs.prompt is not None:
        prompts = {0: cfg.inputs.prompt, **prompts}
    texts: list[str] = []
    for start in windows(cfg.sampling.num_frames or 161, *_tiling(cfg)):
        texts.append(prompts.get(start, texts[-1] if texts else ""))
    return texts


class _Memory(Memory):
    def latent_frames(self, cfg: RunConfig, frames: int) -> int:
        # One window at a time, with the previous window's tail and one reference frame in front.
        tile, overlap = _tiling(cfg)
        length = (frames - 1) // _TEMPORAL + 1
        return min(length, max(1, tile // _TEMPORAL)) + overlap // _TEMPORAL + 1


class LTXLong(Family):
    name = "ltx-long"
    title = "LTX-Video long"
    # LTX-Video checkpoints say LTXPipeline (or LTXConditionPipeline) in their model_index.json.
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode(PIPELINE, REPO, _CALL, loads_from=frozenset({"LTXPipeline", "LTXConditionPipeline"})),
        "i2v": Mode(
            PIPELINE,
            REPO,
            _CALL,
            media={"image": "cond_image"},
            loads_from=frozenset({"LTXPipeline", "LTXConditionPipeline", "LTXImageToVideoPipeline"}),
        ),
    }
    # The pipeline's docstring example: 704x512, 161 frames, 8 steps without guidance, 80-frame
    # windows overlapping by 24; decode at timestep 0.05 with 0.025 noise (its defaults).
    reference = merged(
        settings(size=(512, 704), frames=161, steps=8, guidance=1.0, fps=24),
        {"sampling": {"temporal_tile_size": _TILE, "temporal_overlap": _OVERLAP, "decode_timestep": 0.05}},
    )
    options: ClassVar[tuple[Option, ...]] = (
        TEMPORAL_TILE,
        TEMPORAL_OVERLAP,
        COND_STRENGTH,
        GUIDANCE_RESCALE,
        DECODE_TIMESTEP,
        DECODE_NOISE_SCALE,
    )
    takes = Takes(
        prompts=True,
        prompts_in_call=True,
        model=frozenset({"loras"}),
        optimizations=frozenset(
            {"offload", "vae_tiling", "fp8_storage", "attention_backend", "compile", "cache", "quantize"}
        ),
        # Checked on the tiny model (tests/test_ltx_long.py): Pyramid Attention Broadcast, whose
        # skip range leaves out each window's first step (timestep 1000). Every other cache keeps
        # its state from one window into the next, whose token count differs.
        caches=frozenset({"pab"}),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=first-block": _WINDOWS + " (diffusers 0.42.1 fails on a size mismatch)",
        "optimization.cache=magcache": _WINDOWS + " (diffusers 0.42.1 fails on a size mismatch)",
        "optimization.cache=faster": "FasterCache expects video-shaped hidden states; LTX packs them into tokens",
        "optimization.cache=taylorseer": _WINDOWS + ", so its predictions would carry features across windows",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.decode_chunk_size": "the pipeline decodes every frame in 4x4 spatial tiles; use --vae-tiling",
        "optimization.attention_slicing": "LTX attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": "LTX's feed-forward layers take no chunking; use --offload group",
        "model.scheduler": "the pipeline runs LTXEulerAncestralRFScheduler on the checkpoint's schedule, as its docs",
        "inputs.conditions": "keyframes and clips run LTX-Video's condition pipeline (--preset ltx-video)",
    }
    grid = Grid(frames=_TEMPORAL, size=32)
    loading = Loading(cuda_dtype="bf16")
    # The pipeline decodes in 4x4 spatial tiles inside its own call, drawing decode noise from the
    # generator: nothing to catch on its way.
    decoding = Decoding(latents=None)
    previewing = Previewing(
        refused="it denoises one window at a time, each with the previous window's tail in front, so no step holds "
        "the whole video"
    )
    memory = _Memory(
        Footprint(
            denoiser="transformer",
            blocks=48,
            sizes={REPO: {"transformer": LTX_13B, "text_encoder": T5_XXL, "vae": VAE_PARAMS}},
            spatial=32,
            temporal=_TEMPORAL,
            patch=1,
            width=4096,
            live=10,
            decode=120,
            tiled=0.3,
        ),
    )

    def check(self, cfg: RunConfig) -> None:
        prompts = cfg.inputs.prompts or {}
        if not (cfg.inputs.prompt or "").strip() and not prompts:
            raise ConfigError(f'{self.title} needs a prompt: vidgen {cfg.mode} ... "what the video shows".')
        check_grid(self.title, cfg, self.grid)
        frames = cfg.sampling.num_frames or 161
        tile, overlap = _tiling(cfg)
        for flag, value in (("--temporal-tile", tile), ("--temporal-overlap", overlap)):
            if value % _TEMPORAL:
                # No overlap (0) is valid; a window of none is not.
                low = value // _TEMPORAL * _TEMPORAL
                near = f"{low} or {low + _TEMPORAL}" if flag == "--temporal-overlap" else nearest(value, _TEMPORAL)
                raise ConfigError(
                    f"{flag} {value} does not fit {self.title}: windows are whole latent frames of {_TEMPORAL}; "
                    f"nearest valid: {near}."
                )
        if overlap >= tile:
            raise ConfigError(
                f"--temporal-overlap {overlap} must be shorter than --temporal-tile {tile}: each window shares that "
                f"many frames with the one before; use at most {tile - _TEMPORAL}."
            )
        starts = windows(frames, tile, overlap)
        if prompts:
            _check_prompt_map(cfg, prompts, frames, starts, tile, overlap)
        elif len(parts := (cfg.inputs.prompt or "").split("|")) > len(starts):
            # diffusers splits a prompt at "|" into one per window and drops the parts past the last.
            raise ConfigError(
                f"PROMPT has {len(parts)} parts separated by '|' but the {frames} frames make {len(starts)} windows; "
                "give at most one part per window, or more --frames."
            )

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        # The pipeline's docstring swaps in the rectified-flow Euler ancestral scheduler "for
        # ComfyUI parity", keeping the checkpoint's scheduler config.
        from diffusers import LTXEulerAncestralRFScheduler

        pipe.scheduler = LTXEulerAncestralRFScheduler.from_config(pipe.scheduler.config)
        return [{"method": "scheduler = LTXEulerAncestralRFScheduler.from_config", "kwargs": {}}]

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        per_window = window_prompts(cfg)
        kwargs: dict[str, Any] = {"prompt": per_window if per_window is not None else cfg.inputs.prompt}
        if cfg.inputs.negative_prompt is not None:
            kwargs["negative_prompt"] = cfg.inputs.negative_prompt
        kwargs.update(sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling))
        kwargs.update(option_kwargs(self, cfg))
        if cfg.mode != "i2v":
            kwargs.pop("cond_strength", None)
        # The frame rate scales the model's temporal positions: the file's.
        kwargs["frame_rate"] = int(cfg.output.fps or 24)
        # The pipeline seeds each window's noise with seed + its first latent frame (its own
        # default seed is 0, whatever the generator), so the run's seed goes here too.
        kwargs["seed"] = seed
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        # Every window runs the schedule but its last timestep (diffusers loops over timesteps[:-1]).
        frames = call_kwargs.get("num_frames", 161)
        tile, overlap = call_kwargs.get("temporal_tile_size", _TILE), call_kwargs.get("temporal_overlap", _OVERLAP)
        return len(windows(frames, tile, overlap)) * max(int(call_kwargs.get("num_inference_steps", 8)) - 1, 0)

    @contextmanager
    def steps(self, pipe: Any, on_step: Callable[[], None]) -> Iterator[dict[str, Any]]:
        # No tensors for the step callback: diffusers 0.42.1 hands it the whole video's `latents`
        # and takes back what it returns as the window's packed latents, which breaks the run.
        with super().steps(pipe, on_step) as extra:
            yield {**extra, "callback_on_step_end_tensor_inputs": []}


def _check_prompt_map(
    cfg: RunConfig, prompts: dict[int, str], frames: int, starts: list[int], tile: int, overlap: int
) -> None:
    """A frame -> prompt map: ordered, inside the video, each at a window's first frame."""
    if cfg.inputs.prompt is not None and 0 in prompts:
        raise ConfigError('both PROMPT and --prompt-at "0:..." give the first prompt; drop one.')
    if cfg.inputs.prompt is None and 0 not in prompts:
        raise ConfigError('the prompts start at frame 0: add --prompt-at "0:..." or a PROMPT.')
    order = list(prompts)
    if order != sorted(order):
        raise ConfigError(
            f"--prompt-at frames are out of order ({', '.join(map(str, order))}); list them from first to last."
        )
    for frame in order:
        if frame >= frames:
            raise ConfigError(
                f"--prompt-at {frame}:... is past the last frame ({frames - 1}); use a window start below {frames} "
                "or more --frames."
            )
        if frame not in starts:
            below = max(s for s in starts if s <= frame)
            above = [s for s in starts if s > frame]
            near = f"{below} or {above[0]}" if above else str(below)
            raise ConfigError(
                f"--prompt-at {frame}:... is not where a window starts: with --temporal-tile {tile} and "
                f"--temporal-overlap {overlap} the windows of {frames} frames start at frames "
                f"{', '.join(map(str, starts))}; nearest valid: {near}."
            )


# -- tiny random-weight recipe (LTX-Video's, with a VAE that compresses 8 frames like the real one) --


def tiny() -> Any:
    from diffusers import AutoencoderKLLTXVideo, LTXI2VLongMultiPromptPipeline

    from vidgen.families.ltx import tiny_components

    parts = tiny_components()
    # Three levels that halve time and space: 8x8x8, as the windows' frame arithmetic assumes.
    scaling = (True, True, True, False)
    parts["vae"] = AutoencoderKLLTXVideo(
        **{**TINY_VAE, "spatio_temporal_scaling": scaling, "decoder_spatio_temporal_scaling": scaling}
    )
    # The checkpoint's flow-matching Euler scheduler, as the real one loads; `setup` swaps it.
    return LTXI2VLongMultiPromptPipeline(**parts)


LTXLong.tiny = {"ltx-long": tiny}

FAMILIES = (LTXLong,)
