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


# -- replay -----------------------------------------------------------------------------------


def replay_config(data: dict[str, Any], overwrite: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The recorded run as one complete config, and warnings about what may make it differ.

    The config is pinned to what actually ran: the effective seed (one video), the exact Hub
    revision, and local inputs and models found again by their absolute paths when the relative
    ones no longer resolve (replay from another folder). The output gets a new name beside the
    original (`NAME-replay.EXT`, then -replay2, ...).
    """
    import copy

    config = copy.deepcopy(data["config"])
    config["sampling"]["seed"] = data["seed"]
    config["sampling"]["num_videos"] = 1
    model = data.get("model") or {}
    if model.get("source") == "hub" and model.get("revision") and not config["model"].get("revision"):
        config["model"]["revision"] = model["revision"]
    model_id = config["model"].get("id") or ""
    if model.get("source") in ("dir", "file") and not Path(model_id).expanduser().exists() and model.get("path"):
        config["model"]["id"] = model["path"]
    recorded = data.get("inputs") or {}
    for name in ("image", "last_image", "video", "control"):
        ref = config["inputs"].get(name)
        where = (recorded.get(name) or {}).get("resolved_path")
        if ref and not ref.startswith(("http://", "https://")) and not Path(ref).expanduser().exists() and where:
            config["inputs"][name] = where
    config["output"]["path"] = str(_replay_name(data, config))
    config["output"]["overwrite"] = overwrite
    return config, _drift(data)


def _replay_name(data: dict[str, Any], config: dict[str, Any]) -> Path:
    original = Path((data.get("output") or {}).get("path") or config["output"]["path"])
    for index in range(1, 1000):
        suffix = "-replay" if index == 1 else f"-replay{index}"
        candidate = original.with_name(f"{original.stem}{suffix}{original.suffix}")
        if not candidate.exists():
            return candidate
    return original.with_name(f"{original.stem}-replay{original.suffix}")


def _drift(data: dict[str, Any]) -> list[str]:
    """Differences between the recording machine's software and this one's."""
    from importlib.metadata import PackageNotFoundError, version

    from vidgen import tiny

    notes = []
    for package in ("diffusers", "torch", "transformers"):
        then = (data.get("versions") or {}).get(package)
        try:
            now = version(package)
        except PackageNotFoundError:
            now = None
        if then and now and then != now:
            notes.append(f"{package} was {then} for the original run and is {now} here; frames may differ.")
    model = data.get("model") or {}
    if model.get("tiny_version") not in (None, tiny.TINY_VERSION):
        notes.append("the tiny model was built by another vidgen version; frames will differ.")
    return notes


def changed_inputs(data: dict[str, Any], prepared: dict[str, Any], config_inputs: dict[str, Any]) -> list[str]:
    """Inputs whose prepared pixels differ from the recording (the file changed), among those
    the replay did not point elsewhere on purpose."""
    recorded = data.get("inputs") or {}
    changed = []
    for name, now in prepared.items():
        then = (recorded.get(name) or {}).get("prepared", {}).get("sha256")
        if name in ("image", "last_image", "video", "control") and then and now["prepared"]["sha256"] != then:
            same_source = config_inputs.get(name) in (recorded[name].get("path"), recorded[name].get("resolved_path"))
            if same_source:
                changed.append(recorded[name].get("path") or name)
    return changed
