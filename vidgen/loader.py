"""From a resolved config to a loaded, optimized pipeline: model resolution, device, dtype."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen import optimize, tiny
from vidgen.config.schema import RunConfig
from vidgen.errors import ConfigError, ModelError
from vidgen.families.base import Family

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class Loaded:
    pipe: Any
    family: Family
    device: str
    dtype: str
    model: dict[str, Any]  # ids, resolved path and revision, component classes
    optimizations: dict[str, Any]
    seconds: float


def resolve_device(requested: str) -> str:
    """`auto` is the first CUDA device when there is one, else the CPU."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {requested} was asked for, but torch sees no CUDA device; use --device cpu.")
        index = int(requested.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    return requested


def resolve_dtype(requested: str, family: Family, device: str) -> str:
    """`auto` is the family's reference precision on CUDA and fp32 on CPU (fp16 is slow there)."""
    if requested != "auto":
        return requested
    return family.cuda_dtype if device.startswith("cuda") else "fp32"


def locate(model_id: str, build: bool = True) -> tuple[str, str]:
    """(kind, where) for a model id: kind is tiny, dir or hub. With build=False nothing is
    built or loaded, so a bad id fails before any work (used by --dry-run too)."""
    if model_id.startswith(tiny.PREFIX):
        name = model_id[len(tiny.PREFIX) :]
        if name not in tiny.BUILDERS:
            raise ModelError(f"there is no tiny model '{name}'; tiny models exist for: {', '.join(tiny.BUILDERS)}.")
        return "tiny", str(tiny.ensure(name)) if build else model_id
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(f"{model_id} is a folder but not a diffusers pipeline (no model_index.json).")
        return "dir", str(path.resolve())
    if path.is_file():
        raise ModelError(
            f"{model_id} is a single file; this family loads a diffusers folder or a Hub repo id (owner/name)."
        )
    if model_id.startswith((".", "/", "~")) or not _HUB_ID.match(model_id):
        raise ModelError(f"model {model_id} is neither an existing folder nor a Hub repo id (owner/name).")
    return "hub", model_id


def _hub_snapshot(model_id: str, revision: str | None) -> tuple[str | None, str | None]:
    """The cached snapshot folder and its commit hash, after a successful load."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(model_id, revision=revision, local_files_only=True)
        return folder, Path(folder).name
    except Exception:  # the load worked; provenance is best effort
        return None, None


def _tiny_preset(family: Family, mode: str) -> str:
    """The shipped tiny preset for a family and mode, to suggest when a real model is unavailable."""
    from vidgen.config import available_presets
    from vidgen.config.layers import merged_preset

    for name, path in available_presets().items():
        data = merged_preset(str(path))
        model = data.get("model") or {}
        if data.get("mode") == mode and model.get("family") == family.name and str(model.get("id")).startswith("tiny:"):
            return f"--preset {name}"
    return "a tiny preset (`vidgen presets list`)"


def _load_error(model_id: str, kind: str, exc: Exception, family: Family, mode: str) -> ModelError:
    text = str(exc)
    if kind == "hub" and ("gated" in text.lower() or "401" in text or "403" in text):
        return ModelError(
            f"{model_id} is gated on the Hugging Face Hub: accept its license at https://huggingface.co/{model_id} "
            "and log in with `hf auth login`."
        )
    if kind == "hub" and ("not fully cached" in text or "offline" in text.lower() or "connect" in text.lower()):
        return ModelError(
            f"{model_id} is not in the Hugging Face cache and the Hub cannot be reached; "
            f"connect to the network to download it, or try {_tiny_preset(family, mode)}, which needs no download."
        )
    if "safetensors" in text.lower():
        return ModelError(
            f"{model_id} has no safetensors weights and pickle files are refused; "
            "pass --allow-pickle only if you trust its source."
        )
    missing = re.search(r"expected \[(.*?)\], but only \{(.*?)\} were passed", text)
    if missing:
        # from_pretrained on a folder or repo made for another pipeline.
        expected, passed = (set(re.findall(r"'(\w+)'", group)) for group in missing.groups())
        lacks = ", ".join(sorted(expected - passed))
        return ModelError(
            f"{model_id} is not a {family.title} {mode} model: it has no {lacks}; check --model and --preset."
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return ModelError(f"could not load {model_id}: {first}")


def load(cfg: RunConfig, family: Family, device: str) -> Loaded:
    """Load the pipeline the config names and apply its optimizations once."""
    import torch

    from vidgen.libs import quiet

    quiet()
    model_id = cfg.model.id or family.repos[cfg.mode]
    # Importing the pipeline module is library start-up, not model loading: keep it off the clock.
    cls = family.pipeline_class(cfg.mode)
    start = time.perf_counter()
    kind, where = locate(model_id)
    dtype = resolve_dtype(cfg.model.dtype, family, device)
    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, DTYPES[dtype]),
        "use_safetensors": not cfg.model.allow_pickle,
    }
    if cfg.model.revision:
        kwargs["revision"] = cfg.model.revision
    if cfg.model.variant:
        kwargs["variant"] = cfg.model.variant
    try:
        pipe = cls.from_pretrained(where, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _load_error(model_id, kind, exc, family, cfg.mode) from None
    pipe.set_progress_bar_config(disable=True)
    optimizations = optimize.apply(pipe, cfg.optimization, device)
    path, revision = (where, None) if kind != "hub" else _hub_snapshot(model_id, cfg.model.revision)
    model = {
        "family": family.name,
        "id": model_id,
        "source": kind,
        "path": path,
        "revision": revision or cfg.model.revision,
        "variant": cfg.model.variant,
        "components": {
            name: type(component).__name__
            for name, component in pipe.components.items()
            if component is not None and not isinstance(component, (str, int, float, bool))
        },
    }
    if kind == "tiny":
        model["tiny_version"] = tiny.TINY_VERSION
    return Loaded(pipe, family, device, dtype, model, optimizations, round(time.perf_counter() - start, 4))
