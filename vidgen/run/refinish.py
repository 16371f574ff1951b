"""`vidgen interpolate CLIP` and `vidgen upscale CLIP`: one finishing step on a clip on disk.

The clip's frames, rate and sound are read back with the bundled ffmpeg. When vidgen made the
clip, its sidecar (beside it or inside it) is carried into the new one with the step added to
both its chain (`finish`) and its config (`output.finish`), so `vidgen replay` redoes the
generation and the whole chain; a clip from elsewhere gets a sidecar that records where it came
from (`finished_from`: path and sha256) and the step.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidgen import __version__
from vidgen.core.errors import InputError, WriteError
from vidgen.core.progress import NullProgress, Progress
from vidgen.io import media, outputs, sidecar
from vidgen.run import finish

log = logging.getLogger("vidgen")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class Request:
    """One step on one clip, as the command line asked for it."""

    source: Path
    step: Any  # config.schema.FinishStep
    out: str | None
    overwrite: bool
    allow_pickle: bool
    device: str
    crf: int | None = None
    codec: str | None = None
    format: str | None = None  # mp4, webm, gif, webp, png; default: --out's suffix, else the clip's
    vram: float | None = None  # GiB the step must fit in (upscale: chooses the tile when --tile is not given)


@dataclass
class Done:
    record: dict[str, Any]
    path: Path
    sidecar: Path


def check_clip(source: Path) -> media.Probe:
    """The clip's header, or InputError (exit 4): missing, a folder, an image, no video."""
    if not source.exists():
        raise InputError(f"{source} does not exist.")
    if not source.is_file():
        raise InputError(f"{source} is not a video file (a folder, device or pipe); pass a clip vidgen can read.")
    if source.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"{source} is an image, not a clip; interpolate and upscale take a video (mp4, webm, gif).")
    probe = media.probe(source)
    if probe is None:
        raise InputError(f"{source} holds no video stream; pass a clip.")
    return probe


def target(request: Request, label: str) -> tuple[Path, Path]:
    """Where the new clip and its sidecar go: --out (a file, or a folder for the default name),
    else beside the clip as NAME-LABEL.EXT. Never over an existing file without --overwrite."""
    source = request.source
    fmt = output_format(request)
    default = source.with_name(f"{source.stem}-{label}" + ("" if fmt == "png" else f".{fmt}"))
    path = Path(request.out) if request.out else default
    if request.out and (path.is_dir() or request.out.endswith(("/", "\\"))):
        path = path / default.name
    if path.resolve() == source.resolve():
        raise WriteError(f"{path} is the clip being read; choose another --out.")
    side = outputs.beside("sidecar", path)
    media.check_name(path)
    if not request.overwrite:
        for existing in (path, side):
            if existing.exists():
                raise WriteError(f"{existing} already exists; pass --overwrite or choose another --out.")
    return path, side


def output_format(request: Request) -> str:
    """--format, else the suffix of --out, else the clip's own format (mp4 for others)."""
    for candidate in (request.format, Path(request.out or "").suffix, request.source.suffix):
        name = (candidate or "").lower().lstrip(".")
        if name in outputs.FORMATS:
            return name
    return "mp4"


def read(source: Path, probe: media.Probe, fps_hint: float | None) -> finish.Clip:
    """The clip's frames (uint8), rate and sound."""
    import numpy as np

    from vidgen.families.base import Audio

    frames = np.stack(list(media.frames(source)))
    fps = probe.fps or fps_hint
    if not fps:
        raise InputError(f"{source} does not say its frame rate; vidgen cannot retime it.")
    sound = media.read_audio(source)
    audio = Audio(sound[0], sound[1]) if sound is not None else None
    return finish.Clip(frames, float(fps), audio)


def recorded(source: Path) -> dict[str, Any] | None:
    """The sidecar of a clip vidgen made (beside it, or inside it), else None."""
    try:
        data = sidecar.read(source)
    except InputError:
        return None
    return data if isinstance(data.get("config"), dict) else None


def plan(request: Request) -> tuple[finish.Step, dict[str, Any], media.Probe]:
    """The checked step and its price on this clip, before any frame is read."""
    probe = check_clip(request.source)
    step = _prepare(request)
    _fit_tile(request, step, probe)
    count = _count(request.source)
    fps = probe.fps or 8.0
    priced = finish.price([step], count, probe.height, probe.width, fps)[0]
    return step, priced, probe


def _prepare(request: Request) -> finish.Step:
    """The step with its weights checked; their messages name this command's --model."""
    return finish.prepare([request.step], request.allow_pickle, "--model")[0]


def _fit_tile(request: Request, step: finish.Step, probe: media.Probe) -> None:
    """A per-frame upscale without --tile, given --vram or run on a GPU: the largest tile whose
    weights and working memory fit that many GiB (or the GPU's free memory), less headroom."""
    from vidgen.run import memory

    if step.name != "upscale" or step.diffusion or step.spec.tile is not None:
        return
    if request.vram is not None:
        budget, where = request.vram * memory.GIB, f"--vram {request.vram:g}"
    elif request.device.startswith("cuda"):
        budget, where = memory.free_memory(request.device), f"free memory on {request.device}"
    else:
        return
    tile, fits = finish.fitting_tile(step, probe.height, probe.width, budget * memory.HEADROOM)
    step.spec = step.spec.model_copy(update={"tile": tile})
    if not fits:
        log.warning("upscaling is estimated above %s even in %d-pixel tiles; it may run out of memory", where, tile)


def _count(source: Path) -> int:
    """The clip's frame count (decoded: headers of some formats do not say)."""
    count = 0
    for _ in media.frames(source):
        count += 1
    return count


def label(step: finish.Step, fps: float) -> str:
    """The default name's tag: x2 or 24fps (interpolate), up4 (upscale)."""
    if step.name == "upscale":
        return f"up{step.weights.arch.scale}"
    target_fps = step.target_fps(fps)
    ratio = target_fps / fps
    return f"x{ratio:g}" if float(ratio).is_integer() else f"{target_fps:g}fps"


def run(request: Request, progress: Progress | None = None) -> Done:
    """Read the clip, run the step, write the new clip and its sidecar."""
    progress = progress or NullProgress()
    probe = check_clip(request.source)
    step = _prepare(request)
    _fit_tile(request, step, probe)
    path, side = target(request, label(step, probe.fps or 8.0))
    data = recorded(request.source)
    fps_hint = (data or {}).get("output", {}).get("fps") if data else None
    clip = read(request.source, probe, fps_hint)
    seed = data.get("seed") if data and isinstance(data.get("seed"), int) else None
    made, records = finish.run([step], clip, request.device, progress, seed=seed)
    record = _record(request, data, records, clip, step)
    fmt = output_format(request)
    codec, crf = media.encoding(fmt, request.codec, request.crf)
    progress.phase("encode")
    try:
        record["output"] = media.write(
            made.frames,
            path,
            fmt=fmt,
            fps=int(round(made.fps)),
            codec=codec,
            crf=crf,
            metadata=sidecar.compact(record),
            overwrite=request.overwrite,
            on_frame=progress.frames,
            audio=made.audio,
        )
        record["timings"]["finish"] = round(sum(step["seconds"] for step in record["finish"]), 4)
        media.write_text(sidecar.dumps(record), side, overwrite=request.overwrite)
    except BaseException:
        if path.exists() and not side.exists():
            path.unlink(missing_ok=True)  # the clip and its sidecar appear together or not at all
        raise
    return Done(record, path, side)


def _record(
    request: Request, data: dict[str, Any] | None, records: list[dict[str, Any]], clip: finish.Clip, step: finish.Step
) -> dict[str, Any]:
    """The new clip's sidecar: the clip's own with this step added (chain and config), or a
    fresh one saying what clip it was made from."""
    versions, device = sidecar.environment(request.device)
    made_from = {"path": str(request.source), "sha256": media.sha256(request.source)}
    if data is None:
        return {
            "vidgen_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "finished_from": made_from,
            "finish": records,
            "model": {"files": finish.files_record(records)},
            "versions": versions,
            "device": device,
            "timings": {},
            "peak_memory_bytes": records[-1]["peak_memory_bytes"],
        }
    record = copy.deepcopy(data)
    record.pop("output", None)
    chain = [*(record.get("finish") or []), *records]
    record["finish"] = chain
    config = record["config"]
    output = config.setdefault("output", {})
    output["finish"] = [*(output.get("finish") or []), step.spec.model_dump(mode="json", exclude_none=True)]
    record.setdefault("sources", {})["output.finish"] = f"cli:vidgen {step.name}"
    model = record.setdefault("model", {})
    model["files"] = {**(model.get("files") or {}), **finish.files_record(chain)}
    record["finished_from"] = made_from
    record["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    record["timings"] = {**(record.get("timings") or {})}
    record["peak_memory_bytes"] = max(record.get("peak_memory_bytes") or 0, records[-1]["peak_memory_bytes"])
    record.pop("writer", None)
    record.pop("replay_of", None)
    return record
