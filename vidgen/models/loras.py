"""LoRAs: where a --lora comes from, loading it as a named adapter into the denoisers it
targets, and its sidecar record (source, scale, path, sha256, the experts it went into)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vidgen.config.schema import LoraConfig, RunConfig
from vidgen.core.errors import ModelError, is_oom, out_of_memory
from vidgen.models.components import (
    PICKLE_SUFFIXES,
    SAFE_SUFFIXES,
    check_file,
    file_sha256,
    load_failures,
    safetensors_only,
)


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
                "sha256": file_sha256(local) if local.exists() else None,
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
