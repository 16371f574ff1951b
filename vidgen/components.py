"""Parts loaded beside a pipeline's own weights: extra models (a motion adapter), the scheduler
and LoRAs. Each is located like a model (tiny name, folder, Hub id, single file), loaded, and
described for the sidecar with enough detail (paths, hashes, options) to load it again.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from vidgen.config.schema import LoraConfig, RunConfig
from vidgen.errors import ModelError, OutOfMemory
from vidgen.runner import is_oom

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "lcm": "LCMScheduler",
}
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
    """sha256 of a file, or of a folder's weight files in name order."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in SAFE_SUFFIXES)
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


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


# -- extra models ---------------------------------------------------------------------------


def load_model(cls: Any, kind: str, where: str, cfg: RunConfig, torch_dtype: Any) -> Any:
    """An extra model (e.g. MotionAdapter) from a folder, Hub id or single original-format file."""
    if kind == "file":
        return cls.from_single_file(where, dtype=torch_dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "use_safetensors": safetensors_only(cfg)}
    return cls.from_pretrained(where, **kwargs)


# -- scheduler ------------------------------------------------------------------------------


def apply_scheduler(pipe: Any, cfg: RunConfig) -> dict[str, Any]:
    """Swap or reconfigure the scheduler; returns {class, options} for the sidecar."""
    import diffusers

    name = cfg.model.scheduler
    options = dict(cfg.model.scheduler_options or {})
    if name is None and not options:
        return {"class": type(pipe.scheduler).__name__, "options": {}}
    cls = getattr(diffusers, SCHEDULERS[name]) if name else type(pipe.scheduler)
    unknown = sorted(set(options) - set(cls.from_config(pipe.scheduler.config).config))
    if unknown:
        from vidgen.errors import ConfigError

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
    if path.is_dir():
        return str(path), {}
    # Any existing file is checked (diffusers would load `sub/lora.dat` as a file, pickle or not).
    exists = path.exists() or path.is_symlink()
    if exists or path.suffix.lower() in PICKLE_SUFFIXES + SAFE_SUFFIXES or lora.source.startswith((".", "/", "~")):
        check_file(path, "LoRA", allow_pickle, lora.source)
        return str(path.parent), {"weight_name": path.name}
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", lora.source):
        raise ModelError(f"LoRA {lora.source} is neither a file, a folder nor a Hub repo id (owner/name).")
    return lora.source, {}


def _local_folder(where: str) -> Path:
    """A LoRA folder, or the cached snapshot of a Hub LoRA (so its files can be hashed)."""
    if Path(where).is_dir():
        return Path(where)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(where, local_files_only=True))
    except Exception:  # loaded fine; the hash is best effort
        return Path(where)


def load_loras(pipe: Any, cfg: RunConfig) -> list[dict[str, Any]]:
    """Load every --lora as a named adapter with its scale; returns their sidecar records."""
    loras = cfg.model.loras or []
    if not loras:
        return []
    records, names = [], []
    for index, lora in enumerate(loras, start=1):
        name = _adapter_name(lora, index)
        if name in names:
            name = f"{name}_{index}"
        where, extra = locate_lora(lora, cfg.model.allow_pickle)
        try:
            pipe.load_lora_weights(where, adapter_name=name, use_safetensors=safetensors_only(cfg), **extra)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            if is_oom(exc):
                raise OutOfMemory(f"the process ran out of memory while loading LoRA {lora.source}.", "load") from None
            lines = [line.strip() for line in str(exc).strip().splitlines()] or [type(exc).__name__]
            mismatch = [line for line in lines if line.startswith("size mismatch")]
            if mismatch:
                detail = mismatch[0].removesuffix(".")
                raise ModelError(
                    f"LoRA {lora.source} does not fit this model ({detail}); it was made for another base model."
                ) from None
            first = lines[0]
            raise ModelError(f"could not load LoRA {lora.source}: {first}") from None
        names.append(name)
        local = Path(where) / extra["weight_name"] if "weight_name" in extra else _local_folder(where)
        records.append(
            {
                "source": lora.source,
                "name": name,
                "scale": lora.scale,
                "path": str(local.resolve()) if local.exists() else None,
                "sha256": file_sha256(local) if local.exists() else None,
            }
        )
    pipe.set_adapters(names, adapter_weights=[lora.scale for lora in loras])
    return records
