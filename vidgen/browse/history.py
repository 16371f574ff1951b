"""How long decoding and encoding took on earlier runs of the same model, mode, size, steps and
device, so a run's ETA can count the phases still to come after denoising: they have no steps
to extrapolate from. Kept in `$VIDGEN_CACHE/timings.json`; losing it costs only an estimate."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from vidgen.config.settings import cache_dir

# Enough for every model and size a user runs in a while; the oldest entries go first.
MAX_ENTRIES = 200
# Never read a file this program did not write at this size (it is data, nothing more).
MAX_BYTES = 256 * 1024


def _path() -> Path:
    return cache_dir() / "timings.json"


def key(
    model: str, mode: str, device: str, width: int | None, height: int | None, frames: int | None, steps: int
) -> str:
    return f"{model}|{mode}|{device}|{width}x{height}x{frames}|{steps}"


def _load() -> dict[str, dict[str, float]]:
    path = _path()
    try:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: {p: float(s) for p, s in v.items() if isinstance(s, (int, float)) and s >= 0}
        for k, v in data.items()
        if isinstance(k, str) and isinstance(v, dict)
    }


def expected(name: str) -> dict[str, float]:
    """The seconds each phase took last time for this key ({} when never seen)."""
    return _load().get(name, {})


def remember(name: str, timings: dict[str, Any]) -> None:
    """Record this run's phase times; best effort (a read-only cache only loses the estimate)."""
    phases = {p: round(float(timings[p]), 3) for p in ("denoise", "decode", "encode") if p in timings}
    if not phases:
        return
    data = _load()
    data.pop(name, None)
    data[name] = phases  # newest last: the trim below drops the oldest
    data = dict(list(data.items())[-MAX_ENTRIES:])
    path = _path()
    temp = path.with_name(f".timings.{os.getpid()}.part")
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(temp, path)
    with contextlib.suppress(OSError):
        temp.unlink(missing_ok=True)
