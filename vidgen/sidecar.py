"""The JSON sidecar: how an output was made, complete enough to repeat it with plain diffusers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidgen.errors import InputError

KEYS = (
    "vidgen_version",
    "created_at",
    "config",
    "sources",
    "seed",
    "model",
    "pipeline",
    "inputs",
    "versions",
    "device",
    "optimizations",
    "timings",
    "peak_memory_bytes",
    "output",
)
# What goes into the container's metadata: enough to inspect and replay a bare video file.
COMPACT_KEYS = ("vidgen_version", "created_at", "config", "seed", "model", "pipeline", "inputs", "versions")


def dumps(sidecar: dict[str, Any]) -> str:
    return json.dumps(sidecar, indent=2, sort_keys=False) + "\n"


def compact(sidecar: dict[str, Any]) -> str:
    return json.dumps({key: sidecar[key] for key in COMPACT_KEYS if key in sidecar}, separators=(",", ":"))


def read(path: Path) -> dict[str, Any]:
    """A sidecar from its JSON file, or from a video: the sidecar beside it, else its metadata."""
    from vidgen import media, outputs

    if not path.exists():
        raise InputError(f"{path} does not exist.")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not a readable vidgen sidecar ({exc}).") from None
        if not isinstance(data, dict) or "vidgen_version" not in data:
            raise InputError(f"{path} is JSON but not a vidgen sidecar (no vidgen_version).")
        return data
    beside = outputs.sidecar_path(path)
    if beside.is_file():
        return read(beside)
    embedded = None if path.is_dir() else media.embedded_metadata(path)
    if embedded is None:
        raise InputError(f"{path} has no sidecar beside it and no vidgen metadata inside; pass the .json sidecar.")
    embedded["output"] = {"path": str(path), "note": "read from the container metadata; the sidecar was not found"}
    return embedded
