"""A model's layers without its weights: built on the meta device from its config.json, so a
file meant for it (a single-file checkpoint, a LoRA) is checked against the model's real
layer names and shapes before anything loads. Nothing here reads a weight or the network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidgen.core.errors import ModelError


def component_class(folder: Path, component: str) -> str | None:
    """The class a pipeline folder's model_index.json names for `component` (None when the
    folder has no such component, e.g. a Wan 2.1 folder's transformer_2)."""
    entry = _entry(folder, component)
    return entry[1] if entry else None


def component_library(folder: Path, component: str) -> str | None:
    """The library of `component`'s class (diffusers, transformers), as model_index.json names it."""
    entry = _entry(folder, component)
    return entry[0] if entry else None


def _entry(folder: Path, component: str) -> tuple[str, str] | None:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entry = index.get(component) if isinstance(index, dict) else None
    if isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry):
        return entry[0], entry[1]
    return None


def config_folder(where: str, kind: str, component: str, revision: str | None = None) -> Path | None:
    """The folder holding `component`'s config.json for a model located as (kind, where):
    a local or tiny folder's subfolder, or the cached Hub snapshot's (None when not cached;
    nothing is downloaded here)."""
    if kind in ("dir", "tiny"):
        folder = Path(where) / component
        return folder if (folder / "config.json").is_file() else None
    if kind == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(where, f"{component}/config.json", revision=revision)
        except Exception:  # an odd id or revision: loading it later says why
            return None
        return Path(found).parent if isinstance(found, str) else None
    return None


def pipeline_folder(where: str, kind: str, revision: str | None = None) -> Path | None:
    """The local folder of a pipeline located as (kind, where): itself, or the cached snapshot."""
    if kind in ("dir", "tiny"):
        return Path(where)
    if kind == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(where, "model_index.json", revision=revision)
        except Exception:  # not cached or unreadable: nothing to check against yet
            return None
        return Path(found).parent if isinstance(found, str) else None
    return None


def meta_model(class_name: str, config: Path | dict[str, Any]) -> Any:
    """The diffusers model `class_name` built from `config` (a folder with config.json, or the
    config itself) on the meta device: its module tree and parameter shapes, no memory."""
    import diffusers
    import torch

    cls = getattr(diffusers, class_name, None)
    if cls is None:
        raise ModelError(f"diffusers has no model class {class_name}; is diffusers up to date?")
    try:
        loaded = cls.load_config(str(config)) if isinstance(config, Path) else dict(config)
        with torch.device("meta"):
            return cls.from_config(loaded)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"cannot read the {class_name} config at {config}: {str(exc).splitlines()[0]}") from None


def meta_encoder(class_name: str, config: Path) -> Any:
    """The transformers model `class_name` (a text encoder) built from the config.json in
    `config` on the meta device: its module tree, parameter shapes and tied weights, no memory."""
    import torch
    import transformers

    cls = getattr(transformers, class_name, None)
    if cls is None:
        raise ModelError(f"transformers has no model class {class_name}; is transformers up to date?")
    try:
        loaded = transformers.AutoConfig.from_pretrained(str(config))
        with torch.device("meta"):
            return cls(loaded)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"cannot read the {class_name} config at {config}: {str(exc).splitlines()[0]}") from None


def shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Every parameter and persistent buffer of a (meta) model: name -> shape."""
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


class Configs:
    """A pipeline folder's component configs, read from its config.json files, standing in for
    the loaded pipeline where a check needs only `pipe.<component>.config` (a family's
    check_loaded, run before loading when the configs are on disk). A component without a
    config, or anything else a check asks for, raises AttributeError."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def __getattr__(self, name: str) -> Any:
        from types import SimpleNamespace

        if name.startswith("_"):
            raise AttributeError(name)
        try:
            config = json.loads((self._folder / name / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise AttributeError(name) from None
        if not isinstance(config, dict):
            raise AttributeError(name)
        return SimpleNamespace(config=SimpleNamespace(**{k: v for k, v in config.items() if k.isidentifier()}))
