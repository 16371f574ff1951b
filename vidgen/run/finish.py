"""Finishing a clip: frame interpolation and upscaling, step by step, recorded and resumable.

A chain is the config's `output.finish` list, run in order on the generated frames (or on a
clip given to `vidgen interpolate` / `vidgen upscale`). Every step is checked before anything
runs (its weights file against its network, its factor against the clip), priced for
--dry-run, and recorded in the sidecar's `finish` list: the model file and its sha256, the
factor, the settings, frames and size before and after, seconds and peak memory.

After the generation and after each step, the clip so far is kept in NAME.finish.safetensors
(lossless uint8 frames, the sound, and the sidecar record so far); a rerun of the same command
whose chain was stopped starts after the last finished step, without generating again. The
file goes once the video and its sidecar are written.

Sound keeps its duration: interpolation adds frames within the same time (the frame rate
rises), upscaling changes only the size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen.core.errors import ConfigError, InputError, ModelError, is_oom, out_of_memory
from vidgen.core.limits import MAX_FRAMES, MAX_SIDE
from vidgen.core.progress import NullProgress, Progress
from vidgen.models import finishers

log = logging.getLogger("vidgen")

MAX_FACTOR = 16
FORMAT = "vidgen-finish-1"


@dataclass
class Clip:
    """Frames as uint8 (frames, height, width, 3), their rate, and the sound if any
    (families.base.Audio: float samples (channels, n) and a rate)."""

    frames: Any
    fps: float
    audio: Any = None

    @property
    def shape(self) -> tuple[int, int, int]:
        count, height, width = self.frames.shape[:3]
        return int(count), int(height), int(width)


@dataclass
class Step:
    """A step of the chain with its checked weights file."""

    spec: Any  # config.schema.FinishStep
    weights: finishers.Weights

    @property
    def name(self) -> str:
        return self.spec.step

    @property
    def diffusion(self) -> bool:
        """A diffusion super-resolution pipeline (Kandinsky6SRPipeline), not a per-frame network."""
        return self.weights.format == "diffusers"

    @property
    def scale(self) -> float:
        """The upscale factor: the pipeline's chosen one, or the network's own."""
        return float(self.spec.scale or 2) if self.diffusion else float(self.weights.arch.scale)

    @property
    def tile(self) -> int:
        """A per-frame upscale's tile side in input pixels (0: whole frames): the step's own, else
        512, or whole frames for a spandrel network that tiles badly or by itself."""
        if self.spec.tile is not None:
            return int(self.spec.tile)
        return 0 if getattr(self.weights.arch, "tiling", "supported") != "supported" else DEFAULT_TILE

    @property
    def overlap(self) -> int:
        """Input pixels added on every side of a tile and cropped off: Real-ESRGAN's 16 (wider
        than SRVGG's reach), spandrel's networks their Arch's."""
        return 16 if self.weights.arch.kind in ("srvgg", "rrdb") else int(self.weights.arch.reach)

    def label(self, fps: float) -> str:
        if self.name == "upscale":
            return f"upscale x{_num(self.scale)}" + (" (Kandinsky6SRPipeline)" if self.diffusion else "")
        factor, target = _by(self.spec.by)
        how = f"x{factor}" if factor else f"to {target}fps"
        return f"interpolate {how} ({_num(fps)} -> {_num(self.target_fps(fps))} fps)"

    def target_fps(self, fps: float) -> float:
        """interpolate: the rate of the clip it makes from one at `fps`."""
        match = _by(self.spec.by)
        return fps * match[0] if match[0] else float(match[1])


def _by(by: str | None) -> tuple[int, int]:
    """(factor, 0) or (0, target fps) of an interpolate step's `by` (default x2)."""
    from vidgen.config.schema import FINISH_BY

    match = FINISH_BY.match((by or "x2").strip().lower())
    assert match is not None  # the schema checked it
    return (int(match["factor"]), 0) if match["factor"] else (0, int(match["fps"]))


def _num(value: float) -> str:
    return f"{value:g}"


def _rate(value: float) -> int | float:
    """A frame rate as the sidecar writes it: whole numbers without a decimal point."""
    return int(value) if float(value).is_integer() else round(float(value), 4)


def prepare(specs: list[Any] | None, allow_pickle: bool, flag: str | None = None) -> list[Step]:
    """Each step's weights file, found and checked against its network (exit 5 for a missing
    file, a pickle without --allow-pickle, or weights of another architecture). `flag`: the
    option that named the files, when not the generation commands' own."""
    steps = [Step(spec, finishers.read(spec.step, spec.model, allow_pickle, flag)) for spec in specs or []]
    for index, step in enumerate(steps, start=1):
        extra = [name for name in ("scale", "steps", "seed") if getattr(step.spec, name) is not None]
        if extra and not step.diffusion:
            raise ConfigError(
                f"finish step {index}: {', '.join(extra)} apply to a Kandinsky6SRPipeline upscale, and "
                f"{step.spec.model} is a per-frame network (its file sets the factor)."
            )
    return steps


def shapes(steps: list[Step], frames: int, height: int, width: int, fps: float) -> list[dict[str, Any]]:
    """What each step makes from the clip before it, checked: a factor the model cannot do, a
    clip too short to interpolate or a result past vidgen's limits is refused (exit 3 or 4)."""
    out = []
    for index, step in enumerate(steps, start=1):
        before = {"frames": frames, "height": height, "width": width, "fps": fps}
        where = f"finish step {index} ({step.name})"
        if step.name == "interpolate":
            if frames < 2:
                raise InputError(f"{where}: a clip of {frames} frame(s) has nothing to interpolate between.")
            factor, target = _by(step.spec.by)
            if factor and not 2 <= factor <= MAX_FACTOR:
                raise ConfigError(f"{where}: x{factor} is not a factor RIFE makes; use 2 to {MAX_FACTOR}.")
            new_fps = step.target_fps(fps)
            if target and not fps < target <= fps * MAX_FACTOR:
                raise ConfigError(
                    f"{where}: --interpolate {target}fps from a {_num(fps)} fps clip is not more frames; give a rate "
                    f"above {_num(fps)} and at most {_num(fps * MAX_FACTOR)}."
                )
            from vidgen.models import rife

            frames = len(rife.times(frames, fps, new_fps))
            fps = new_fps
        elif step.diffusion:
            if frames % 4 != 1:
                raise ConfigError(f"{where}: Kandinsky6SRPipeline takes 4k+1 frames, and the clip has {frames}.")
            if height % 16 or width % 16:
                raise ConfigError(
                    f"{where}: Kandinsky6SRPipeline needs sides divisible by 16; the clip is {width}x{height}."
                )
            if step.scale == 2.25:  # a 1.125x pre-upscale to the nearest multiple of the VAE's 16, then x2
                height, width = round(height * 1.125 / 16) * 16, round(width * 1.125 / 16) * 16
            least = step.weights.arch.smallest(height, width, step.scale)
            if height < least[0] or width < least[1]:
                raise ConfigError(
                    f"{where}: {step.spec.model} needs frames of at least {least[1]}x{least[0]} for "
                    f"x{_num(step.scale)} (its tiles), and the clip is {width}x{height}."
                )
            path = 2 if step.scale == 2.25 else int(step.scale)
            height, width = height * path, width * path
        else:
            arch = step.weights.arch
            unit = 4 // arch.scale if arch.kind == "rrdb" else 1
            if height % unit or width % unit:
                raise ConfigError(
                    f"{where}: {step.spec.model} is an x{arch.scale} model that needs frame sides divisible by {unit}, "
                    f"and the clip is {width}x{height}."
                )
            height, width = height * arch.scale, width * arch.scale
        if frames > MAX_FRAMES or max(height, width) > MAX_SIDE:
            raise ConfigError(
                f"{where} would make {frames} frames of {width}x{height}, past vidgen's limits "
                f"({MAX_FRAMES} frames, {MAX_SIDE} pixels a side)."
            )
        out.append({"step": step.name, "before": before, "after": {"frames": frames, "height": height, "width": width,
                                                                     "fps": fps}})  # fmt: skip
    return out


def price(steps: list[Step], frames: int, height: int, width: int, fps: float) -> list[dict[str, Any]]:
    """--dry-run: each step's result and its cost: the weights' size and the working memory
    of one frame (or one tile) at float32, the largest of which the step needs at once."""
    rows = []
    for step, shape in zip(steps, shapes(steps, frames, height, width, fps), strict=True):
        before, after = shape["before"], shape["after"]
        weights = step.weights.record("")["bytes"]
        if step.diffusion:
            # The VAE's and the transformer's activations over one 128-pixel tile of the whole clip.
            working = before["frames"] * after["height"] * after["width"] * 4 * 64
            runs = (step.spec.steps or 4) * max(1, (after["height"] // 128) * (after["width"] // 128))
        elif step.name == "interpolate":
            side_h, side_w = -(-before["height"] // 128) * 128, -(-before["width"] // 128) * 128
            # Two frames, their features and flows at full size, a few times over.
            working = side_h * side_w * 4 * (6 + 4 * step.weights.arch.head + 40)
            runs = after["frames"] - before["frames"]
        else:
            arch = step.weights.arch
            tile = step.tile
            th = min(before["height"], tile + 2 * step.overlap) if tile else before["height"]
            tw = min(before["width"], tile + 2 * step.overlap) if tile else before["width"]
            working = arch.working_bytes(th, tw)
            runs = before["frames"]
        rows.append(
            {
                "step": step.name,
                "label": step.label(before["fps"]),
                "model": step.spec.model,
                **({"tile": step.tile} if step.name == "upscale" and not step.diffusion else {}),
                "frames": [before["frames"], after["frames"]],
                "size": [f"{before['width']}x{before['height']}", f"{after['width']}x{after['height']}"],
                "fps": [before["fps"], after["fps"]],
                "network_runs": runs,
                "weights_bytes": weights,
                "working_bytes": int(working),
            }
        )
    return rows


DEFAULT_TILE = 512
# Tile sides --memory auto tries, fastest first (0: whole frames, no overlap to compute twice).
TILES = (0, 1024, 768, 512, 384, 256, 192, 128, 96, 64)


def fitting_tile(step: Step, height: int, width: int, room: float) -> tuple[int, bool]:
    """The largest tile (whole frames first) of a per-frame upscale of frames this size whose
    weights and working memory fit in `room` bytes, and whether it fits; the smallest tile
    when none does."""
    weights = step.weights.record("")["bytes"]
    arch = step.weights.arch
    for tile in TILES:
        if tile and tile >= max(height, width):
            continue  # a tile as large as the frame is the whole frame
        th = min(height, tile + 2 * step.overlap) if tile else height
        tw = min(width, tile + 2 * step.overlap) if tile else width
        if weights + arch.working_bytes(th, tw) <= room:
            return tile, True
    return TILES[-1], False


def run(
    steps: list[Step],
    clip: Clip,
    device: str,
    progress: Progress | None = None,
    store: Store | None = None,
    done: list[dict[str, Any]] | None = None,
    base: dict[str, Any] | None = None,
    seed: int | None = None,
) -> tuple[Clip, list[dict[str, Any]]]:
    """Run the steps after the `done` ones (their records) on `clip`, keeping the clip after
    each in `store` with `base` (the sidecar record so far). The records of all steps. `seed`:
    a stochastic step's seed when the step names none (the run's)."""
    progress = progress or NullProgress()
    records = list(done or [])
    count, height, width = clip.shape
    shapes(steps[len(records) :], count, height, width, clip.fps)  # checked again on what is there
    for index in range(len(records), len(steps)):
        step = steps[index]
        label = step.label(clip.fps)
        progress.phase(label)
        log.info("finish %d/%d: %s with %s", index + 1, len(steps), label, step.spec.model)
        try:
            clip, record = _one(step, clip, device, progress, seed)
        except Exception as exc:
            if not is_oom(exc):
                raise
            kept = f"; the clip before it is kept in {store.path.name}, so rerunning resumes there" if store else ""
            hint = " with a smaller --upscale-tile" if step.name == "upscale" else " on a smaller clip"
            out_of_memory(f"finish step {index + 1} ({label}) ran out of memory{kept}; try it{hint}.", label)
        records.append(record)
        if store is not None and index + 1 < len(steps):
            store.save(clip, base or {}, records)
        test_kill(index + 1)
    return clip, records


def _diffusion(step: Step, model: Any, clip: Clip, device: str, seed: int, progress: Progress) -> Any:
    """Kandinsky6SRPipeline on the whole clip: its tiles, steps and noise, seeded."""
    import numpy as np
    import torch

    from vidgen.io.media import to_uint8

    steps = step.spec.steps or 4
    progress.start(1, step.label(clip.fps))
    generator = torch.Generator(device=device).manual_seed(seed)
    video = clip.frames.astype(np.float32) / 255.0
    with torch.inference_mode():
        out = model(video=[video], resolution_scale=step.scale, num_inference_steps=steps, generator=generator,
                    output_type="np").frames[0]  # fmt: skip
    progress.advance()
    return to_uint8(np.asarray(out, dtype=np.float32))


def _one(
    step: Step, clip: Clip, device: str, progress: Progress, seed: int | None = None
) -> tuple[Clip, dict[str, Any]]:
    import numpy as np

    from vidgen.models import rife, upscalers
    from vidgen.run.runner import inject_oom, peak_memory, reset_peak

    reset_peak(device)
    inject_oom("finish")
    start = time.perf_counter()
    sha = finishers.sha256(step.weights)
    model = finishers.load(step.weights, device)
    count, height, width = clip.shape
    settings: dict[str, Any] = {}
    if step.name == "interpolate":
        target = step.target_fps(clip.fps)
        plan = rife.times(count, clip.fps, target)
        progress.start(len(plan), step.label(clip.fps))
        made: list[Any] = []
        pending: dict[int, list[float]] = {}
        for source, frac in plan:
            if frac:
                pending.setdefault(source, []).append(frac)
        cache: dict[int, list[Any]] = {}
        for source, frac in plan:
            if not frac:
                made.append(clip.frames[source])  # the original frame, kept as it is
            else:
                if source not in cache:
                    cache.clear()
                    cache[source] = rife.interpolate_pair(
                        model, clip.frames[source], clip.frames[source + 1], pending[source], device
                    )
                made.append(cache[source][pending[source].index(frac)])
            progress.advance()
        frames = np.stack(made)
        settings = {"by": step.spec.by or "x2", "times": "source frames kept; new ones at even steps between"}
        result = Clip(frames, target, clip.audio)
        factor = f"x{_num(target / clip.fps)}" if target % clip.fps == 0 else f"{_num(clip.fps)}->{_num(target)} fps"
    elif step.diffusion:
        used = step.spec.seed if step.spec.seed is not None else (seed or 0)
        result = Clip(_diffusion(step, model, clip, device, used, progress), clip.fps, clip.audio)
        settings = {"scale": step.scale, "steps": step.spec.steps or 4, "seed": used}
        factor = f"x{_num(step.scale)}"
    else:
        arch = step.weights.arch
        tile, overlap = step.tile, step.overlap
        progress.start(count, step.label(clip.fps))
        made = []
        for frame in clip.frames:
            made.append(upscalers.upscale_frame(model, arch, frame, device, tile=tile, overlap=overlap))
            progress.advance()
        result = Clip(np.stack(made), clip.fps, clip.audio)
        settings = {"tile": tile, "overlap": overlap}
        factor = f"x{arch.scale}"
    progress.stop()
    del model
    seconds = time.perf_counter() - start
    after = result.shape
    record = {
        "step": step.name,
        "model": step.weights.record(sha),
        "factor": factor,
        "settings": settings,
        "frames": [count, after[0]],
        "size": [f"{width}x{height}", f"{after[2]}x{after[1]}"],
        "fps": [_rate(clip.fps), _rate(result.fps)],
        "seconds": round(seconds, 4),
        "seconds_per_frame": round(seconds / max(1, after[0]), 5),
        "peak_memory_bytes": peak_memory(device),
        "device": device,
    }
    return result, record


def test_kill(done: int) -> None:
    """Test hook: VIDGEN_TEST_KILL_FINISH=N SIGKILLs the process once step N is kept, so a
    test can rerun a chain killed between steps."""
    if os.environ.get("VIDGEN_TEST_KILL_FINISH") == str(done):
        os.kill(os.getpid(), signal.SIGKILL)


# -- keeping the clip between steps ----------------------------------------------------------


@dataclass
class Store:
    """NAME.finish.safetensors: the clip after the last finished step of the chain for the run
    `key` (a hash of its config, seed and source), with the sidecar record so far."""

    path: Path
    key: str
    kept: dict[str, Any] = field(default_factory=dict)

    def save(self, clip: Clip, base: dict[str, Any], records: list[dict[str, Any]]) -> None:
        import numpy as np
        import torch
        from safetensors.torch import save

        from vidgen.io import media

        tensors = {"frames": torch.from_numpy(np.ascontiguousarray(clip.frames))}
        meta = {"format": FORMAT, "key": self.key, "fps": repr(float(clip.fps)), "record": json.dumps(base),
                "finish": json.dumps(records)}  # fmt: skip
        if clip.audio is not None:
            tensors["audio"] = torch.from_numpy(np.ascontiguousarray(clip.audio.samples, dtype=np.float32))
            meta["sample_rate"] = str(int(clip.audio.sample_rate))
        data = save(tensors, meta)
        media.replace_file(self.path, lambda stream: stream.write(data))

    def load(self) -> tuple[Clip, dict[str, Any], list[dict[str, Any]]] | None:
        """The kept clip, the record and the step records, if the file is this run's."""
        if not self.path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="np") as handle:
                meta = handle.metadata() or {}
                if meta.get("format") != FORMAT or meta.get("key") != self.key:
                    return None
                frames = handle.get_tensor("frames")
                audio = None
                if "audio" in handle.keys():  # noqa: SIM118 (not iterable)
                    from vidgen.families.base import Audio

                    audio = Audio(handle.get_tensor("audio"), int(meta["sample_rate"]))
            return Clip(frames, float(meta["fps"]), audio), json.loads(meta["record"]), json.loads(meta["finish"])
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            log.warning("%s cannot be read (%s); the chain starts again.", self.path, exc)
            return None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def key(*parts: Any) -> str:
    """The identity of a chain's run: a hash of what decides its frames."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()


def files_record(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The sidecar's `model.files` entries of the chain's weights (a replay checks them again):
    `finish-1-interpolate`, `finish-2-upscale`, ..."""
    return {f"finish-{i}-{r['step']}": r["model"] for i, r in enumerate(records, start=1)}


def check_weights_unchanged(steps: list[Step], records: list[dict[str, Any]]) -> None:
    """A resumed chain must use the files its finished steps used: a step whose file changed
    since would record one file and have run another."""
    for step, record in zip(steps, records, strict=False):
        if finishers.sha256(step.weights) != record["model"]["sha256"]:
            raise ModelError(
                f"{step.spec.model} changed since the kept steps of this chain ran; remove the .finish.safetensors "
                "file to start the chain again."
            )
