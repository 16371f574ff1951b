"""Parts loaded beside a pipeline's own weights: extra models (a motion adapter) and the
scheduler, with the checks every weights file passes (safetensors, headers, hashes). Each part is
located like a model (tiny name, folder, Hub id, single file), loaded, and described for the
sidecar with enough detail (paths, hashes, options) to load it again. LoRAs are in `loras`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vidgen.config import settings
from vidgen.config.schema import RunConfig
from vidgen.core import hashes
from vidgen.core.errors import ModelError
from vidgen.families.base import Family

# --controlnet short names: the standard SD 1.5 ControlNets (lllyasviel's v1.0 releases).
CONTROLNETS = {
    "canny": "lllyasviel/sd-controlnet-canny",
    "pose": "lllyasviel/sd-controlnet-openpose",
    "depth": "lllyasviel/sd-controlnet-depth",
}
# Weight files that are Python pickles: loading one can run arbitrary code.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
# The files that name a model's pipeline class: a DiffusionPipeline's, then a ModularPipeline's.
INDEX_FILES = ("model_index.json", "modular_model_index.json")
SAFE_SUFFIXES = (".safetensors",)


def hub_revision(ref: str) -> tuple[str, str | None]:
    """(id, revision) of an extra model typed as REPO@REVISION: a branch, tag or commit of a Hub
    repo (Cosmos Transfer 2.5 keeps each ControlNet on its own branch of one repo). A local path,
    a tiny name or a plain id has no revision."""
    if "@" not in ref or ref.startswith(("tiny:", ".", "/", "~")) or Path(ref).expanduser().exists():
        return ref, None
    repo, _, revision = ref.partition("@")
    if not revision:
        raise ModelError(f"{ref}: name the branch, tag or commit after the @ (REPO@REVISION), or drop the @.")
    return repo, revision


def safetensors_only(cfg: RunConfig) -> bool | None:
    """diffusers' use_safetensors: True refuses pickles; None (with --allow-pickle) prefers
    safetensors and falls back to pickles. False would refuse safetensors files instead."""
    return True if not cfg.model.allow_pickle else None


def file_sha256(path: Path) -> str:
    """sha256 of a weights file; of a folder, the sha256 of its weight files' relative paths and
    sha256s, one `PATH HASH` line each in path order. Each file's hash comes through the hash
    cache in vidgen's cache folder (see vidgen/core/hashes.py), so a file already hashed at its
    current size and mtime is not read again."""
    cache = settings.cache_dir()
    if not path.is_dir():
        return hashes.sha256(path, cache)
    lines = "".join(f"{name} {hashes.sha256(file, cache)}\n" for name, file in _weight_files(path))
    return hashlib.sha256(lines.encode("utf-8", errors="surrogateescape")).hexdigest()


def _weight_files(folder: Path) -> list[tuple[str, Path]]:
    """(relative path, file) of each weights file in a folder, at any depth, in path order."""
    found = (p for p in folder.rglob("*") if p.suffix in SAFE_SUFFIXES and p.is_file())
    return sorted((p.relative_to(folder).as_posix(), p) for p in found)


def weights_record(path: Path) -> dict[str, Any]:
    """What a sidecar records of a weights file or folder beside its path: its sha256 (see
    file_sha256) and its size in bytes (a folder's weight files together)."""
    files = [file for _, file in _weight_files(path)] if path.is_dir() else [path]
    return {"sha256": file_sha256(path), "bytes": sum(file.stat().st_size for file in files)}


def check_file(path: Path, what: str, allow_pickle: bool, shown: str | None = None) -> None:
    """A weights file must exist and be safetensors, unless pickles are explicitly allowed.
    `shown` is the name as the user typed it, for messages."""
    name = shown or str(path)
    if not path.is_file():
        raise ModelError(f"{what} {name} does not exist; check the path.")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise ModelError(
            f"{what} {name} is a pickle file ({suffix}), which can run code when loaded; "
            "use a .safetensors file, or pass --allow-pickle only if you trust its source."
        )
    if suffix not in PICKLE_SUFFIXES + SAFE_SUFFIXES:
        raise ModelError(f"{what} {name} is not a weights file; use a .safetensors file.")
    if suffix in SAFE_SUFFIXES:
        safetensors_header(path, what, name)


# diffusers and safetensors refuse headers above 100 MB; real ones are a few hundred KB.
MAX_HEADER_BYTES = 100_000_000


def safetensors_header(path: Path, what: str, shown: str | None = None) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked without reading any tensor: 8 bytes of
    length, a JSON object of that length, every tensor's dtype, shape and byte range inside the
    file. Anything else under a .safetensors name (random bytes, a truncated download, a pickle
    renamed) is a ModelError naming the file, before a loader meets it."""
    import json
    import struct

    name = shown or str(path)
    bad = f"{what} {name} is not a safetensors file"
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            (length,) = struct.unpack("<Q", head) if len(head) == 8 else (-1,)
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise ModelError(f"{bad} (its header is unreadable); is it the right file, downloaded whole?")
            header = json.loads(handle.read(length))
    except OSError as exc:
        raise ModelError(f"cannot read {what} {name}: {exc.strerror or exc}.") from None
    except (ValueError, RecursionError):  # not JSON, or not UTF-8
        raise ModelError(f"{bad} (its header is not JSON); is it the right file, downloaded whole?") from None
    data = size - 8 - length
    for key, info in header.items() if isinstance(header, dict) else [("", None)]:
        if key == "__metadata__":
            continue
        ok = isinstance(info, dict) and isinstance(info.get("dtype"), str) and isinstance(info.get("shape"), list)
        offsets = info.get("data_offsets") if ok else None
        if not (
            ok
            and all(isinstance(n, int) and n >= 0 for n in info["shape"])
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(n, int) for n in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data
        ):
            raise ModelError(f"{bad} (its header does not describe the tensors in it); is it damaged or truncated?")
    return header


def load_failures() -> tuple[type[BaseException], ...]:
    """What loading weights raises for a file or folder it cannot use: missing or unreadable
    files, configs that do not fit, safetensors it cannot parse, pickles that do not unpickle.
    Every loader vidgen calls (pipelines, extra models, LoRAs) turns these into a ModelError
    (an allocation failure among them into exit 6), never an internal error."""
    import pickle
    import zipfile

    from safetensors import SafetensorError

    unusable = (SafetensorError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError)
    return (OSError, ValueError, RuntimeError, *unusable)


# -- extra models ---------------------------------------------------------------------------


def load_model(cls: Any, kind: str, where: str, cfg: RunConfig, torch_dtype: Any, revision: str | None = None) -> Any:
    """An extra model (e.g. MotionAdapter) from a folder, Hub id (at `revision`) or single
    original-format file."""
    if kind == "file":
        return cls.from_single_file(where, dtype=torch_dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "use_safetensors": safetensors_only(cfg)}
    if revision is not None:
        kwargs["revision"] = revision
    return cls.from_pretrained(where, **kwargs)


# -- scheduler ------------------------------------------------------------------------------


def apply_scheduler(pipe: Any, cfg: RunConfig, family: Family) -> dict[str, Any]:
    """Swap or reconfigure the scheduler (--scheduler names and their settings come from the
    family); returns {class, options} for the sidecar."""
    import diffusers

    name = cfg.model.scheduler
    options = dict(cfg.model.scheduler_options or {})
    if name is None and not options:
        return {"class": type(pipe.scheduler).__name__, "options": {}}
    if name:
        # What the family's schedulers need (flow-matching prediction), under the user's options.
        options = {**family.takes.scheduler_kwargs.get(name, {}), **options}
    cls = getattr(diffusers, family.takes.schedulers[name]) if name else type(pipe.scheduler)
    unknown = sorted(set(options) - set(cls.from_config(pipe.scheduler.config).config))
    if unknown:
        from vidgen.core.errors import ConfigError

        raise ConfigError(
            f"model.scheduler_options: {cls.__name__} has no option {unknown[0]}; "
            "see its documentation in diffusers for the options it takes."
        )
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **options)
    return {"class": cls.__name__, "options": options}
