"""Parts loaded beside a pipeline's own weights: extra models (a motion adapter), the scheduler
and LoRAs. Each is located like a model (tiny name, folder, Hub id, single file), loaded, and
described for the sidecar with enough detail (paths, hashes, options) to load it again.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from vidgen.config import settings
from vidgen.config.schema import LoraConfig, RunConfig
from vidgen.core import hashes
from vidgen.core.errors import ModelError, is_oom, out_of_memory
from vidgen.families.base import Family

# --controlnet short names: the standard SD 1.5 ControlNets (lllyasviel's v1.0 releases).
CONTROLNETS = {
    "canny": "lllyasviel/sd-controlnet-canny",
    "pose": "lllyasviel/sd-controlnet-openpose",
    "depth": "lllyasviel/sd-controlnet-depth",
}
# Weight files that are Python pickles: loading one can run arbitrary code.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
SAFE_SUFFIXES = (".safetensors",)


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


def load_model(cls: Any, kind: str, where: str, cfg: RunConfig, torch_dtype: Any) -> Any:
    """An extra model (e.g. MotionAdapter) from a folder, Hub id or single original-format file."""
    if kind == "file":
        return cls.from_single_file(where, dtype=torch_dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "use_safetensors": safetensors_only(cfg)}
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


# -- LoRAs ----------------------------------------------------------------------------------


def _adapter_name(lora: LoraConfig, index: int) -> str:
    if lora.name:
        return lora.name
    stem = Path(lora.source.rstrip("/")).stem
    return re.sub(r"[^A-Za-z0-9_]", "_", stem) or f"lora{index}"


def locate_lora(lora: LoraConfig, allow_pickle: bool) -> tuple[str, dict[str, Any]]:
    """(what to pass to load_lora_weights, its extra kwargs); local files are checked here."""
    path = Path(lora.source).expanduser()
    named = {"weight_name": lora.weight_name} if lora.weight_name else {}
    if lora.weight_name and (".." in Path(lora.weight_name).parts or Path(lora.weight_name).is_absolute()):
        raise ModelError(f"LoRA weight_name {lora.weight_name} must be a file inside {lora.source}.")
    if path.is_dir():
        if lora.weight_name:
            check_file(path / lora.weight_name, "LoRA", allow_pickle, f"{lora.source}/{lora.weight_name}")
        return str(path), named
    # Any existing file is checked (diffusers would load `sub/lora.dat` as a file, pickle or not).
    exists = path.exists() or path.is_symlink()
    if exists or path.suffix.lower() in PICKLE_SUFFIXES + SAFE_SUFFIXES or lora.source.startswith((".", "/", "~")):
        check_file(path, "LoRA", allow_pickle, lora.source)
        return str(path.parent), {"weight_name": path.name}
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", lora.source):
        raise ModelError(f"LoRA {lora.source} is neither a file, a folder nor a Hub repo id (owner/name).")
    if lora.weight_name and Path(lora.weight_name).suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        check_file(Path(lora.weight_name), "LoRA", False, f"{lora.source}/{lora.weight_name}")
    return lora.source, named


def _local_folder(where: str) -> Path:
    """A LoRA folder, or the cached snapshot of a Hub LoRA (so its files can be hashed)."""
    if Path(where).is_dir():
        return Path(where)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(where, local_files_only=True))
    except Exception:  # loaded fine; the hash is best effort
        return Path(where)


# A LoRA's expert -> the denoisers of a two-expert model it loads into.
_EXPERTS = {"high": ("transformer",), "low": ("transformer_2",), "both": ("transformer", "transformer_2")}


def _targets(lora: LoraConfig, denoisers: tuple[str, ...]) -> tuple[str, ...]:
    """The denoisers a LoRA goes into: every one the model has unless it names an expert."""
    if len(denoisers) < 2:
        return denoisers[:1]
    return _EXPERTS[lora.expert] if lora.expert else denoisers


def load_loras(pipe: Any, cfg: RunConfig, denoisers: tuple[str, ...] = ("transformer",)) -> list[dict[str, Any]]:
    """Load every --lora as a named adapter with its scale, into each denoiser it targets
    (`denoisers`: those the loaded model has); returns their sidecar records."""
    loras = cfg.model.loras or []
    if not loras:
        return []
    records, names, weights = [], [], []
    for index, lora in enumerate(loras, start=1):
        base = _adapter_name(lora, index)
        if base in names:
            base = f"{base}_{index}"
        where, extra = locate_lora(lora, cfg.model.allow_pickle)
        targets = _targets(lora, denoisers)
        try:
            for target in targets:
                # Wan's loader puts a LoRA into the low-noise expert when asked to, under its own name.
                into = {"load_into_transformer_2": True} if target == "transformer_2" else {}
                name = base if target == targets[0] else f"{base}_{target}"
                if hasattr(pipe, "load_lora_weights"):
                    pipe.load_lora_weights(
                        where, adapter_name=name, use_safetensors=safetensors_only(cfg), **extra, **into
                    )
                else:
                    _into_denoiser(getattr(pipe, target), lora, where, name, cfg, extra)
                names.append(name)
                weights.append(lora.scale)
        except load_failures() as exc:
            if is_oom(exc):
                out_of_memory(f"the process ran out of memory while loading LoRA {lora.source}.", "load")
            lines = [line.strip() for line in str(exc).strip().splitlines()] or [type(exc).__name__]
            # peft names the layers a LoRA for another architecture targets and this model lacks.
            mismatch = [line for line in lines if line.startswith("size mismatch")] or [
                "its target layers are not in this model" for line in lines if "not found in the base model" in line
            ]
            if mismatch:
                detail = mismatch[0].removesuffix(".")
                raise ModelError(
                    f"LoRA {lora.source} does not fit this model ({detail}); it was made for another base model."
                ) from None
            first = lines[0]
            raise ModelError(f"could not load LoRA {lora.source}: {first}") from None
        folder = Path(where) if Path(where).is_dir() else _local_folder(where)
        local = folder / extra["weight_name"] if "weight_name" in extra else folder
        records.append(
            {
                "source": lora.source,
                "name": base,
                "scale": lora.scale,
                "path": str(local.resolve()) if local.exists() else None,
                **(weights_record(local) if local.exists() else {"sha256": None}),
                **({"into": list(targets)} if len(denoisers) > 1 else {}),
            }
        )
    if hasattr(pipe, "set_adapters"):
        pipe.set_adapters(names, adapter_weights=weights)
    else:
        getattr(pipe, denoisers[0]).set_adapters(names, weights=weights)
    return records


def _into_denoiser(model: Any, lora: LoraConfig, where: str, name: str, cfg: RunConfig, extra: dict[str, Any]) -> None:
    """A LoRA for a pipeline without a LoRA loader (HunyuanVideo-1.5): straight into its denoiser,
    from diffusers-format keys ("transformer." prefix). A LoRA none of whose keys name one of the
    denoiser's layers was made for another model; diffusers would only warn and load nothing."""
    before = {key for key in model.state_dict() if "lora_" in key}
    model.load_lora_adapter(
        where, adapter_name=name, prefix="transformer", use_safetensors=safetensors_only(cfg), **extra
    )
    if not any("lora_" in key and key not in before for key in model.state_dict()):
        if name in getattr(model, "peft_config", {}):
            model.delete_adapters(name)
        raise ModelError(
            f"LoRA {lora.source} does not fit this model (none of its layers are in its {type(model).__name__}); "
            "it was made for another base model."
        )
