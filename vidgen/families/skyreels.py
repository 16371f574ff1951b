"""SkyReels-V2 (Skywork): Wan 2.1's architecture, retrained, with diffusion forcing for long videos.

Two families share this module. SkyReels-V2 (t2v, i2v) is a Wan-style model with its own shift and
guidance. SkyReels-V2 DF (diffusion forcing) denoises each latent frame on its own schedule, so a
video longer than the model's window is made window by window, each conditioned on the last
frames of the one before (`--window`, `--overlap`), synchronously or asynchronously (`--ar-step`,
`--causal-block`); it also starts from an image (i2v) or extends a clip (v2v `--extend`).

diffusers runs every window inside one pipeline call. With --save-latents (or --oom-retry), vidgen
keeps each finished window's latents beside the output while the call runs; a rerun of the same
command after a crash, or the retry after an out-of-memory, replays the finished windows from that
file (their denoiser calls skipped, every random draw repeated) and computes only the rest, so it
makes the same frames (vidgen/families/resume.py, shared with Helios' chunks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    Caught,
    Decoding,
    Enhancing,
    Grid,
    Memory,
    Mode,
    Option,
    Previewing,
    decode_normalised,
    merged,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.resume import kept_latents
from vidgen.families.wan import (
    CLIP_H,
    FLOW_SHIFT,
    FOOTPRINT,
    NEGATIVE,
    TINY_TRANSFORMER,
    UMT5_XXL,
    VAE_21,
    Wan,
    check_positions,
    clip_last_image,
    tiny_clip,
    tiny_wan_parts,
    wan_memory,
)

WINDOW = Option(
    "base_num_frames",
    "--window",
    int,
    "Frames per diffusion-forcing window (4k+1; the model's base length: 97 at 540P, 121 at 720P). "
    "Longer --frames run several windows.",
    ge=5,
    le=1001,
)
OVERLAP = Option(
    "overlap_history",
    "--overlap",
    int,
    "Frames each window carries over from the one before (4k+1; 17 or 37 recommended).",
    ge=1,
    le=1001,
)
AR_STEP = Option(
    "ar_step",
    "--ar-step",
    int,
    "Asynchronous diffusion forcing: each causal block lags the one before by this many steps "
    "(0: synchronous; 5 is slower but more consistent).",
    ge=0,
    le=100,
)
CAUSAL_BLOCK = Option(
    "causal_block_size",
    "--causal-block",
    int,
    "Latent frames denoised together in asynchronous mode (default: 5 with --ar-step, else 1).",
    ge=1,
    le=64,
)
ADDNOISE = Option(
    "addnoise_condition",
    "--addnoise-condition",
    float,
    "Noise added to the frames a window carries over, for smoother joins (20 recommended; above 50 drifts).",
    ge=0,
    le=1000,
)
EXTEND = Option(
    "extend",
    "--extend",
    int,
    "Frames to add after the input clip (a multiple of 4); the output holds the clip, then them.",
    ge=4,
    le=10_000,
)
_CALL = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# The frames each published DF checkpoint was trained on: a longer window leaves what it learned.
BASE_FRAMES = {
    "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers": 97,
    "Skywork/SkyReels-V2-DF-14B-540P-Diffusers": 97,
    "Skywork/SkyReels-V2-DF-14B-720P-Diffusers": 121,
    "tiny:skyreels-df": 17,
}
# 1.3B: 30 blocks of width 1536; 14B: 40 blocks of width 5120 (the Wan 2.1 shapes).
_T_13B, _T_14B = 1.419e9, 14.288e9
_I2V_13B, _I2V_14B = 1.56e9, 16.39e9  # + the image projection and per-block image attention


def _latent(frames: int) -> int:
    """Latent frames of `frames` video frames (the Wan VAE: the first alone, then 4 per latent)."""
    return (frames - 1) // 4 + 1


def _pixel(latent: int) -> int:
    return (latent - 1) * 4 + 1


@dataclass(frozen=True)
class Window:
    """One diffusion-forcing window: its latent frames, how many of them come in ready (the
    carried-over history, or the first image's latent), and the video frames it adds."""

    latent: int
    ready: int
    new_frames: int


def window_plan(mode: str, frames: int, window: int, overlap: int | None, last_image: bool = False) -> list[Window]:
    """The windows diffusers 0.42.1 runs for `frames` output frames (for v2v: the frames it decodes,
    the carried-over clip frames included), exactly as its pipelines count them."""
    total, base = _latent(frames), _latent(window)
    if mode != "v2v" and frames <= window:
        # One window; with a last image the i2v pipeline appends that image's latent to it.
        return [Window(total + (1 if last_image else 0), 1 if mode == "i2v" else 0, frames)]
    ov = _latent(overlap or 0)
    count = 1 + (total - base - 1) // (base - ov) + 1
    plan = []
    for index in range(count):
        if index == 0 and mode != "v2v":
            # The first window starts from noise (t2v) or from the image's latent (i2v).
            plan.append(Window(base, 1 if mode == "i2v" else 0, _pixel(base)))
            continue
        finished = index * (base - ov) + ov
        latent = min(total - finished + ov, base)
        # Each window adds 4 frames per latent frame beyond the history it carries over (for v2v's
        # first window that history is the clip's last frames, which vidgen does not repeat).
        plan.append(Window(latent, ov, 4 * (latent - ov)))
    return plan


def steps_of(plan: list[Window], steps: int, ar_step: int, block: int) -> list[int]:
    """How many denoising iterations (step callbacks) each window runs: the rows of diffusers'
    diffusion-forcing timestep matrix (`generate_timestep_matrix`), counted as it builds them.
    Each block of frames advances one step per row once the block before it is `ar_step` ahead
    (or done); blocks that come in ready (the history) do not move."""
    counts = []
    last = steps  # a block at `last` is fully denoised
    for window in plan:
        blocks = window.latent // block
        row = [last + 1 if index < window.ready // block else 0 for index in range(blocks)]
        rows = 0
        while not all(value >= last for value in row):
            new: list[int] = []
            for index in range(blocks):
                if index == 0 or row[index - 1] >= last:
                    new.append(row[index] + 1)
                else:
                    new.append(new[index - 1] - ar_step)
            row = [min(max(value, 0), last + 1) for value in new]
            rows += 1
        counts.append(rows)
    return counts


# -- the window plan of a run ------------------------------------------------------------------

# DF's defaults: a window of the 540P checkpoints' base length, the history it carries over,
# and the frames v2v adds after a clip.
_WINDOW, _OVERLAP, _EXTEND = 97, 17, 80


def _window(cfg: RunConfig) -> int:
    return cfg.sampling.get("base_num_frames") or _WINDOW


def _overlap(cfg: RunConfig) -> int:
    return cfg.sampling.get("overlap_history") or _OVERLAP


def _block(cfg: RunConfig) -> int:
    s = cfg.sampling
    return s.get("causal_block_size") or (5 if s.get("ar_step") else 1)


def _frames_of(cfg: RunConfig) -> int:
    """The frames the pipeline generates: --frames (one window without it), or for v2v the
    added frames plus the carried-over clip frames that it decodes again."""
    s = cfg.sampling
    if cfg.mode == "v2v":
        return (s.get("extend") or _EXTEND) + _overlap(cfg)
    return s.num_frames or _window(cfg)


def _long(cfg: RunConfig) -> bool:
    return cfg.mode == "v2v" or _frames_of(cfg) > _window(cfg)


def _plan(cfg: RunConfig) -> list[Window]:
    return window_plan(cfg.mode, _frames_of(cfg), _window(cfg), _overlap(cfg), bool(cfg.inputs.last_image))


def _widest(cfg: RunConfig) -> int:
    """Latent frames of the run's longest window: all one denoiser forward sees."""
    return max(w.latent for w in _plan(cfg))


def _windows(cfg: RunConfig, call_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The window plan, for the sidecar: what each window denoises and adds."""
    plan = _plan(cfg)
    steps = int(call_kwargs.get("num_inference_steps", 50))
    counts = steps_of(plan, steps, call_kwargs["ar_step"], call_kwargs["causal_block_size"])
    windows = []
    start = 0
    for window, steps in zip(plan, counts, strict=True):
        windows.append({"latent_frames": window.latent, "history_latent_frames": window.ready,
                        "new_frames": window.new_frames, "first_new_frame": start, "steps": steps})  # fmt: skip
        start += window.new_frames
    after = " after the clip" if cfg.mode == "v2v" else ""
    spans = ", ".join(f"{w['first_new_frame']}-{w['first_new_frame'] + w['new_frames'] - 1}" for w in windows)
    mode = "asynchronous" if call_kwargs["ar_step"] else "synchronous"
    return {
        "summary": f"{len(windows)} {mode} window(s) of at most {_window(cfg)} frames adding frames "
        f"{spans}{after} ({sum(counts)} denoising steps in all)",
        "mode": mode,
        "window_frames": _window(cfg),
        "overlap_frames": _overlap(cfg) if _long(cfg) else 0,
        "windows": windows,
    }


def _full_windows(cfg: RunConfig, frames: int) -> bool:
    if (frames - 1) % 4:
        return False
    if frames <= _window(cfg):
        return True  # one window
    plan = window_plan("i2v", frames, _window(cfg), _overlap(cfg))
    return plan[-1].latent == plan[0].latent


def _check_blocks(cfg: RunConfig, block: int) -> None:
    """Every window, and the history it carries, must be whole causal blocks: diffusers
    leaves the frames of a partial block undenoised, or trims the history with a warning."""
    if block == 1:
        return
    overlap = _overlap(cfg)
    if _long(cfg) and _latent(overlap) % block:
        raise ConfigError(
            f"--overlap {overlap} is {_latent(overlap)} latent frames, not whole blocks of --causal-block {block}; "
            f"nearest valid: {_near(overlap, lambda v: (v - 1) % 4 == 0 and _latent(v) % block == 0)}."
        )
    for window in _plan(cfg):
        if window.latent % block:
            name = "--extend" if cfg.mode == "v2v" else "--frames"
            given = cfg.sampling.get("extend") if cfg.mode == "v2v" else _frames_of(cfg)
            raise ConfigError(
                f"{name} {given} with --window {_window(cfg)} makes a window of {window.latent} latent "
                f"frames, not whole blocks of --causal-block {block}; nearest valid {name}: "
                f"{_near(int(given or 0), lambda v, n=name: _blocks_fit(cfg, n, v, block))}."
            )


def _blocks_fit(cfg: RunConfig, name: str, value: int, block: int) -> bool:
    key = "extend" if name == "--extend" else "num_frames"
    if value < 1 or (value - (0 if key == "extend" else 1)) % 4:
        return False
    trial = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={key: value})})
    return all(w.latent % block == 0 for w in _plan(trial))


# -- the parts ---------------------------------------------------------------------------------


# The 1.3B checkpoints (and the tiny ones, planned like them) are 30 blocks of width 1536; the
# 14B ones Wan 14B's 40 of 5120.
_SHAPES = dict.fromkeys(("1.3b", "tiny:"), {"blocks": 30, "width": 1536})


class _WindowMemory(Memory):
    """Diffusion forcing: the denoiser sees one window at a time, and the decoded video grows."""

    def latent_frames(self, cfg: RunConfig, frames: int) -> int:
        # One denoiser forward sees one window, however long the video.
        return _widest(cfg)

    def decode_frames(self, cfg: RunConfig, frames: int) -> int:
        # Frame by frame like Wan, but the decoded video (3 float32 values per pixel) stays on the
        # device until the end, and a long video's outgrows the VAE's working set.
        total = _frames_of(cfg) + (frames if cfg.mode == "v2v" else 0)
        return 4 + math.ceil(total * 3 * 4 / (self.footprint.decode * 2))


_LAST_IMAGE = frozenset({"last_image"})


class SkyReels(Wan):
    name = "skyreels"
    title = "SkyReels-V2"
    # Skywork's model, trained on its own captions: vidgen's generic prompts, not Wan's.
    enhancing = Enhancing()
    # The SkyReels-V2 model cards: 544x960, 97 frames at 24 fps; guidance 6 and shift 8 for
    # text-to-video, 5 and 5 for image-to-video.
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode(
            "SkyReelsV2Pipeline",
            "Skywork/SkyReels-V2-T2V-14B-540P-Diffusers",
            _CALL,
            defaults=settings(guidance=6.0, flow_shift=8.0),
        ),
        "i2v": Mode(
            "SkyReelsV2ImageToVideoPipeline",
            "Skywork/SkyReels-V2-I2V-14B-540P-Diffusers",
            _CALL,
            inputs=_LAST_IMAGE,
            defaults=settings(guidance=5.0, flow_shift=5.0),
        ),
    }
    reference = merged(
        settings(size=(544, 960), frames=97, steps=50, fps=24), {"inputs": {"negative_prompt": NEGATIVE}}
    )
    # SkyReels-V2's transformer block is not registered with diffusers' block-level cache hooks
    # (first-block, MagCache); TaylorSeer and PAB run (checked on the tiny models).
    takes = replace(Wan.takes, caches=frozenset({"taylorseer", "pab"}))
    hints: ClassVar[dict[str, str]] = {
        **Wan.hints,
        "optimization.cache=first-block": "diffusers 0.42.1 does not register SkyReels-V2's block for it",
        "optimization.cache=magcache": "diffusers 0.42.1 does not register SkyReels-V2's block for it",
        "optimization.cache=faster": "FasterCache assumes a batched guided pass, which SkyReels-V2 does not run",
    }
    memory = wan_memory(
        replace(
            FOOTPRINT,
            sizes={
                **dict.fromkeys(
                    ("Skywork/SkyReels-V2-T2V-14B-540P-Diffusers", "Skywork/SkyReels-V2-T2V-14B-720P-Diffusers"),
                    {"transformer": _T_14B, "text_encoder": UMT5_XXL, "vae": VAE_21},
                ),
                "Skywork/SkyReels-V2-I2V-1.3B-540P-Diffusers": {
                    "transformer": _I2V_13B,
                    "text_encoder": UMT5_XXL,
                    "vae": VAE_21,
                    "image_encoder": CLIP_H,
                },
                **dict.fromkeys(
                    ("Skywork/SkyReels-V2-I2V-14B-540P-Diffusers", "Skywork/SkyReels-V2-I2V-14B-720P-Diffusers"),
                    {"transformer": _I2V_14B, "text_encoder": UMT5_XXL, "vae": VAE_21, "image_encoder": CLIP_H},
                ),
            },
        ),
        shapes=_SHAPES,
    )

    def matches(self, index: dict[str, Any]) -> bool:
        return True

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        # The published SkyReels-V2 I2V checkpoints learned positions for one CLIP image, like
        # Wan 2.1 I2V; the DF models end on a last image through its latent instead.
        if cfg.inputs.last_image and not clip_last_image(pipe):
            raise ConfigError(
                f"--last-image needs a first-last-frame model, and {cfg.model.id} is image-to-video only; the "
                "SkyReels-V2 DF presets (e.g. skyreels-v2-df-1.3b, tiny-skyreels-df) end on --last-image."
            )
        check_positions(pipe, cfg)


_DF = "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"
_DF_OPTIONS = (FLOW_SHIFT, WINDOW, OVERLAP, AR_STEP, CAUSAL_BLOCK, ADDNOISE, EXTEND)
# --extend is v2v's alone.
_MAKING = frozenset(option.field for option in _DF_OPTIONS if option is not EXTEND)


class SkyReelsDF(Wan):
    name = "skyreels-df"
    title = "SkyReels-V2 DF"
    # Skywork's model, trained on its own captions: vidgen's generic prompts, not Wan's.
    enhancing = Enhancing()
    # addnoise_condition draws its noise with torch.randn_like, from the global RNG.
    # The image (and last image) become latent frames; there is no CLIP image encoder.
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode(
            "SkyReelsV2DiffusionForcingPipeline",
            _DF,
            _CALL,
            options=_MAKING,
            seeds_global_rng=True,
            defaults=settings(guidance=6.0, flow_shift=8.0),
        ),
        "i2v": Mode(
            "SkyReelsV2DiffusionForcingImageToVideoPipeline",
            _DF,
            _CALL,
            inputs=_LAST_IMAGE,
            options=_MAKING,
            seeds_global_rng=True,
            defaults=settings(guidance=5.0, flow_shift=5.0),
        ),
        # Extending a clip counts the frames it adds (--extend), not the frames it makes, and
        # continues text-to-video: guidance 6, shift 8. --last-image is taken here as well, so that
        # Wan's check says it needs a first frame (IMAGE).
        "v2v": Mode(
            "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
            _DF,
            _CALL - {"num_frames"},
            inputs=_LAST_IMAGE,
            seeds_global_rng=True,
            defaults=settings(guidance=6.0, flow_shift=8.0, extend=_EXTEND),
        ),
    }
    # SkyReels-V2's size and frame rate; without --frames a run makes one window (num_frames
    # follows --window).
    reference = merged(
        settings(
            size=(544, 960),
            steps=30,
            fps=24,
            base_num_frames=_WINDOW,
            overlap_history=_OVERLAP,
            ar_step=0,
            addnoise_condition=20.0,
        ),
        {"inputs": {"negative_prompt": NEGATIVE}},
    )
    options: ClassVar[tuple[Option, ...]] = _DF_OPTIONS
    takes = replace(
        Wan.takes,
        # Diffusion forcing passes a timestep per frame, which PAB's step check cannot take.
        caches=frozenset({"taylorseer"}),
        # Each frame keeps its own copy of the scheduler; only UniPC (the checkpoints' own) is checked.
        schedulers={"unipc": "UniPCMultistepScheduler"},
    )
    hints: ClassVar[dict[str, str]] = {
        **SkyReels.hints,
        "optimization.cache=pab": "diffusion forcing passes a timestep per frame, which PAB cannot take",
        "sampling.num_frames": "extending a clip takes --extend N, the frames to add",
    }
    grid = Grid(
        frames=4,
        size=16,
        shortest=1,
        any_clip=True,
        note="any number of frames (it continues from the last --overlap of them)",
    )
    memory = wan_memory(
        replace(
            FOOTPRINT,
            sizes={
                _DF: {"transformer": _T_13B, "text_encoder": UMT5_XXL, "vae": VAE_21},
                **dict.fromkeys(
                    ("Skywork/SkyReels-V2-DF-14B-540P-Diffusers", "Skywork/SkyReels-V2-DF-14B-720P-Diffusers"),
                    {"transformer": _T_14B, "text_encoder": UMT5_XXL, "vae": VAE_21},
                ),
            },
        ),
        _WindowMemory,
        shapes=_SHAPES,
    )
    decoding = Decoding(latents="latent", resumable=True)
    previewing = Previewing(
        refused="diffusion forcing denoises each window's frames at different noise levels, with a fresh copy of the "
        "scheduler at every step, so no step holds one estimate of the video to show."
    )

    def matches(self, index: dict[str, Any]) -> bool:
        return True

    # -- checks ---------------------------------------------------------------------------
    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        s = cfg.sampling
        window, overlap, block = _window(cfg), _overlap(cfg), _block(cfg)
        for flag, value in (("--window", window), ("--overlap", overlap)):
            if (value - 1) % 4:
                raise ConfigError(
                    f"{flag} {value} does not fit {self.title}: it needs 4k+1 frames; "
                    f"nearest valid: {_near(value, lambda v: (v - 1) % 4 == 0)}."
                )
        base = BASE_FRAMES.get(cfg.model.id or "")
        if base is not None and window > base:
            raise ConfigError(
                f"--window {window} is longer than the {base} frames {cfg.model.id} was trained on; use "
                f"--window {base} or less (for a longer video raise --frames: it runs more windows)."
            )
        extend = s.get("extend")
        if extend is not None and extend % 4:
            raise ConfigError(
                f"--extend {extend} does not fit {self.title}: it adds 4 frames per latent frame; "
                f"nearest valid: {_near(extend, lambda v: v % 4 == 0 and v >= 4)}."
            )
        if _long(cfg) and overlap >= window:
            raise ConfigError(
                f"--overlap {overlap} must be shorter than --window {window}: each window carries over that many "
                f"frames and adds the rest; try --overlap {max(1, min(17, window - 8) // 4 * 4 + 1)}."
            )
        if cfg.mode == "v2v" and cfg.output.save_latents:
            # `vidgen decode` makes a video from the latents alone, and an extended clip's video
            # starts with the input clip's frames, which they do not hold.
            raise ConfigError(
                "--save-latents is not available when extending a clip: the latents hold only the new frames, "
                "not the clip the video starts with. --oom-retry also keeps the finished windows, and a rerun "
                "with it resumes from them."
            )
        if s.get("causal_block_size") and not s.get("ar_step"):
            raise ConfigError(
                "--causal-block sizes the blocks of asynchronous mode; give --ar-step too (5 recommended)."
            )
        _check_blocks(cfg, block)
        if cfg.inputs.last_image and _long(cfg):
            # diffusers 0.42.1 appends the last image's latent with the history's length, not its own:
            # a shape error in the last window.
            raise ConfigError(
                f"--last-image works within one window of {self.title} (diffusers 0.42.1 fails on it across "
                f"windows): use --frames {window} or fewer, or drop --last-image."
            )
        plan = _plan(cfg)
        if cfg.mode == "i2v" and len(plan) > 1 and plan[-1].latent != plan[0].latent:
            # diffusers 0.42.1 sizes every image-to-video window's schedule by the first one: a
            # shorter last window fails with an index error.
            raise ConfigError(
                f"--frames {_frames_of(cfg)} leaves a last window shorter than --window {window}, which "
                f"{self.title} image-to-video cannot run in diffusers 0.42.1; use --frames "
                f"{_near(_frames_of(cfg), lambda v: _full_windows(cfg, v))}."
            )

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        # The transformer sees one window at a time: its position table bounds the window.
        # (Diffusion forcing conditions on the last image's latent; every DF checkpoint takes it.)
        window = cfg.model_copy(
            update={"sampling": cfg.sampling.model_copy(update={"num_frames": _pixel(_widest(cfg))})}
        )
        check_positions(pipe, window)
        if cfg.mode == "v2v" and frames is not None and frames < _overlap(cfg):
            raise ConfigError(
                f"the input clip has {frames} frames and --overlap {_overlap(cfg)} continues from its last "
                f"{_overlap(cfg)}; use a longer clip or a smaller --overlap (4k+1)."
            )

    # -- the call ---------------------------------------------------------------------------
    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        s = cfg.sampling
        kwargs: dict[str, Any] = {**prompt_kwargs(cfg), **sampling_kwargs(s, self.modes[cfg.mode].sampling)}
        kwargs["num_frames"] = _frames_of(cfg)
        kwargs["base_num_frames"] = _window(cfg)
        if _long(cfg):
            # The pipeline reads the history length only when there is more than one window.
            kwargs["overlap_history"] = _overlap(cfg)
        kwargs["ar_step"] = s.get("ar_step") or 0
        # Always explicit: the pipeline writes a given block size into the transformer's config,
        # where it would stay for the next call on the same loaded model.
        kwargs["causal_block_size"] = _block(cfg)
        if s.get("addnoise_condition") is not None:
            kwargs["addnoise_condition"] = s.get("addnoise_condition")
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        steps = int(call_kwargs.get("num_inference_steps", 50))
        return sum(steps_of(_plan(cfg), steps, call_kwargs["ar_step"], call_kwargs["causal_block_size"]))

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {}
        if cfg.mode == "v2v":
            record["run"] = (
                f"the pipeline returns the input clip, then the last {_overlap(cfg)} clip frames decoded again "
                f"from their latents, then the new frames; vidgen drops that repeat, so the video is the clip "
                f"followed by {_frames_of(cfg) - _overlap(cfg)} new frames"
            )
        if call_kwargs is not None:
            record["windows"] = _windows(cfg, call_kwargs)
        return record

    def latent_call(
        self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any
    ) -> Any:
        steps = int(call_kwargs.get("num_inference_steps", 50))
        counts = steps_of(_plan(cfg), steps, call_kwargs["ar_step"], call_kwargs["causal_block_size"])
        latents = kept_latents(pipe, cfg, call_kwargs, media, extra, counts)
        if cfg.inputs.last_image:
            # The pipeline decodes without the appended last-image latent; the latents it returns keep it.
            latents = latents[:, :, :-1]
        if cfg.mode == "v2v":
            # What the pipeline joins in front of the decoded frames: the clip, preprocessed as it does.
            video = pipe.video_processor.preprocess_video(
                media["video"], height=call_kwargs["height"], width=call_kwargs["width"]
            )
            pipe._vidgen_clip = (video, _overlap(cfg))
        return latents

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        clip = pipe.__dict__.pop("_vidgen_clip", None)
        if clip is None:
            return super().decode(pipe, cfg, caught)
        import numpy as np
        import torch

        video, overlap = clip
        # As the pipeline decodes (pipeline_skyreels_v2_diffusion_forcing_v2v.py), then without the
        # carried-over frames decoded a second time.
        generated = decode_normalised(pipe, caught.latents)
        video = video.to(generated.device, torch.float32)
        joined = torch.cat([video, generated.to(video.dtype)], dim=2)
        frames = pipe.video_processor.postprocess_video(joined, output_type="np")[0]
        clip_frames = video.shape[2]
        return np.concatenate([frames[:clip_frames], frames[clip_frames + overlap :]])


def _near(value: int, valid: Callable[[int], bool]) -> str:
    """The valid values nearest `value` either side, for error messages."""
    found = []
    for direction in (-1, 1):
        candidate = value + direction
        while 1 <= candidate <= value + 10_000 and not valid(candidate):
            candidate += direction
        if candidate >= 1 and valid(candidate):
            found.append(candidate)
    return " or ".join(str(v) for v in sorted(set(found))) or "none"


# -- tiny random-weight recipes (diffusers' SkyReels-V2 test configs on the tiny Wan parts) ---------


def _skyreels_transformer(**changes: Any) -> Any:
    from diffusers import SkyReelsV2Transformer3DModel

    return SkyReelsV2Transformer3DModel(**{**TINY_TRANSFORMER, **changes})


def tiny_t2v() -> Any:
    from diffusers import SkyReelsV2Pipeline

    return SkyReelsV2Pipeline(**tiny_wan_parts(8.0), transformer=_skyreels_transformer())


def tiny_i2v() -> Any:
    from diffusers import SkyReelsV2ImageToVideoPipeline

    transformer = _skyreels_transformer(in_channels=36, image_dim=4)
    # 17 CLIP tokens, as tiny Wan i2v (wan.tiny_i2v says why).
    return SkyReelsV2ImageToVideoPipeline(**tiny_wan_parts(5.0), **tiny_clip(32, 8), transformer=transformer)


def tiny_df() -> Any:
    from diffusers import SkyReelsV2DiffusionForcingPipeline

    return SkyReelsV2DiffusionForcingPipeline(**tiny_wan_parts(8.0), transformer=_skyreels_transformer())


SkyReels.tiny = {"skyreels": tiny_t2v, "skyreels-i2v": tiny_i2v}
SkyReelsDF.tiny = {"skyreels-df": tiny_df}

FAMILIES = (SkyReels, SkyReelsDF)
