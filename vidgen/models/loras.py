"""LoRAs: where a --lora comes from, whether it fits the model, loading it, and its sidecar record.

Community LoRAs ship in several key layouts (listed below). The LoRA loader of each diffusers
pipeline converts some of them to its own layout (`lora_state_dict`), then loads whatever keys
name a layer of the denoiser and only warns about the rest: a LoRA made for another model loads
partly or not at all, and the video silently comes out without it. vidgen runs the same
converter on the file's header first (no tensor is read but the few scalar alphas), counts the
denoiser layers the LoRA targets and finds with the right sizes, and refuses a LoRA that does
not fit in one line (exit 5), before the pipeline loads where the file is on this machine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen.config.schema import LoraConfig, RunConfig
from vidgen.core.errors import ModelError, is_oom, out_of_memory
from vidgen.families import base
from vidgen.families.base import Family
from vidgen.models import skeleton
from vidgen.models.components import (
    PICKLE_SUFFIXES,
    SAFE_SUFFIXES,
    check_file,
    load_failures,
    safetensors_header,
    safetensors_only,
    weights_record,
)

# The key layouts a LoRA file can come in, as the sidecar and `vidgen inspect` name them:
#   diffusers  keys under transformer. (or unet.) with lora_A/lora_B, as diffusers and PEFT save them
#   kohya      lora_unet_... keys with lora_down/lora_up/alpha (kohya sd-scripts, musubi-tuner)
#   comfyui    keys under diffusion_model. with lora_down/lora_up or lora_A/lora_B
#   lightx2v   keys under diffusion_model. with .diff/.diff_b tensors beside the pairs (Lightning, lightx2v)
#   original   the original model's key names, without a prefix
# The layouts each diffusers 0.42 LoRA loader converts (loaders/lora_pipeline.py, `lora_state_dict`),
# to tell "diffusers cannot read this layout for this model" from "made for another model".
CONVERTS = {
    "WanLoraLoaderMixin": ("diffusers", "comfyui", "lightx2v", "kohya"),
    "SkyReelsV2LoraLoaderMixin": ("diffusers", "comfyui", "lightx2v", "kohya"),
    "LTXVideoLoraLoaderMixin": ("diffusers", "comfyui"),
    "LTX2LoraLoaderMixin": ("diffusers", "comfyui"),
    "HunyuanVideoLoraLoaderMixin": ("diffusers", "comfyui", "original"),
}
# A LoRA fits when it finds at least this share of the layers it targets, every one with the
# sizes it was trained for. A LoRA for this architecture finds all of them; the margin lets
# through the odd extra layer a trainer adds (an embedding the diffusers model splits or names
# otherwise), while a LoRA for a sibling model (an image-to-video one on text-to-video Wan: 2 of
# every 12 layers attend to the image, 83 % found) or another model finds fewer. A size mismatch
# always refuses: such a layer belongs to a model of another width, and PEFT fails on it anyway.
MIN_MATCHED = 0.9

# What diffusers' loaders hand to PEFT for one layer: its low-rank pair, bias, DoRA magnitude.
_LOADED = (".lora_A.weight", ".lora_B.weight", ".lora_B.bias", ".lora_magnitude_vector")
# What community files carry per layer; left after conversion, no loader of that model reads it.
_UNREAD = (".lora_down.weight", ".lora_up.weight", ".lora_mid.weight", ".alpha", ".diff", ".diff_b", ".dora_scale")
# The prefixes diffusers saves a pipeline's LoRA components under.
_COMPONENT_PREFIXES = ("transformer.", "transformer_2.", "unet.", "text_encoder.", "text_encoder_2.", "connectors.")
# safetensors dtypes -> torch dtype names, for the meta tensors the converters run on.
_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


def detect_layout(keys: Iterable[str]) -> str:
    """The layout of a LoRA file with these tensor names (diffusers, kohya, comfyui, lightx2v or
    original; see the table at the top of this module)."""
    names = [key for key in keys if key != "__metadata__"]
    if any(key.startswith("lora_unet_") for key in names):
        return "kohya"
    if any(key.startswith("diffusion_model.") for key in names):
        return "lightx2v" if any(key.endswith((".diff", ".diff_b")) for key in names) else "comfyui"
    if any(key.startswith(_COMPONENT_PREFIXES) for key in names):
        return "diffusers"
    return "original"


# -- the file and what diffusers makes of it --------------------------------------------------


@dataclass
class Targets:
    """What a LoRA file holds for one denoiser, once its pipeline's converter has run."""

    layout: str
    tensors: int  # tensors in the file
    # layer name (under the denoiser) -> {suffix: shape} of the tensors diffusers loads into it
    layers: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    # layers the LoRA names that diffusers will not load: under no component prefix, or with
    # tensors no converter of this model turned into a pair
    unread: set[str] = field(default_factory=set)
    # the kinds of tensor left unconverted under the prefix (".alpha", ".lora_down.weight")
    leftover: set[str] = field(default_factory=set)

    @property
    def modules(self) -> int:
        return len(self.layers) + len(self.unread)


def header_tensors(path: Path, shown: str) -> dict[str, Any]:
    """A safetensors LoRA as the converters take it, from its header: meta tensors of each
    tensor's shape and dtype, and the real value of every one-element tensor (the alphas a
    converter folds into the pairs). Reads a few bytes, however large the file."""
    import torch
    from safetensors import safe_open

    header = safetensors_header(path, "LoRA", shown)
    tensors: dict[str, Any] = {}
    scalars = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        dtype = getattr(torch, _DTYPES.get(info["dtype"], "float32"))
        if math.prod(info["shape"]) <= 1:
            scalars.append(key)
        else:
            tensors[key] = torch.empty(info["shape"], dtype=dtype, device="meta")
    try:
        if scalars:
            with safe_open(str(path), framework="pt") as handle:
                tensors.update({key: handle.get_tensor(key) for key in scalars})
    except load_failures() as exc:  # a dtype safetensors does not know, bytes it cannot read
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"could not load LoRA {shown}: {first}") from None
    return tensors


def converted(pipe_class: type, path: Path, tensors: dict[str, Any]) -> dict[str, Any]:
    """The LoRA in diffusers' layout, as `pipe_class.load_lora_weights` converts it (unchanged
    for a pipeline without a LoRA loader). A converter step that meta tensors cannot take is
    run again on the real tensors, so an error raised here is the converter's own."""
    convert = getattr(pipe_class, "lora_state_dict", None)
    if convert is None:
        return dict(tensors)
    try:
        out = convert(dict(tensors))
    except Exception:  # the converters fail in many ways; the real run says which
        from safetensors.torch import load_file

        out = convert(load_file(str(path)))
    return out[0] if isinstance(out, tuple) else out  # the UNet loaders add network alphas


def targets(pipe_class: type, path: Path, shown: str, prefix: str = "transformer") -> Targets:
    """The layers a LoRA file targets in the denoiser diffusers loads keys under `prefix.` into.
    Keys for the pipeline's other LoRA components (text encoders, LTX-2's connectors) are left
    out; any other key names a layer this denoiser will not get. A file the converter cannot
    read is refused here (exit 5): it is in a layout this model's loader does not know."""
    tensors = header_tensors(path, shown)
    layout = detect_layout(tensors)
    try:
        state = converted(pipe_class, path, tensors)
    except Exception as exc:  # whatever the converter raised, diffusers cannot read it
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(
            f"LoRA {shown} ({layout} layout) cannot be read by {pipe_class.__name__}'s LoRA loader ({detail}); "
            f"{_layout_hint(pipe_class, layout, set())}"
        ) from None
    others = tuple(f"{name}." for name in getattr(pipe_class, "_lora_loadable_modules", ()) if name != prefix)
    found = Targets(layout, len(tensors))
    for key, tensor in state.items():
        layer, loaded = _split(key)
        if layer is None or key.startswith(others):
            continue
        under = layer.startswith(f"{prefix}.")
        name = layer.removeprefix(f"{prefix}.")
        if loaded and under:
            found.layers.setdefault(name, {})[key[len(layer) + 1 :]] = tuple(tensor.shape)
        else:
            found.unread.add(name)
            if under:
                found.leftover.add(key[len(layer) :])
    # A layer with a tensor no loader reads (an alpha diffusers' layout has no place for) makes
    # diffusers refuse the whole file: it counts as a layer this model does not get.
    for name in found.unread & set(found.layers):
        del found.layers[name]
    return found


def _split(key: str) -> tuple[str | None, bool]:
    """(layer, whether diffusers loads this tensor) for a LoRA key; (None, False) for a key
    that is no LoRA tensor at all."""
    for suffix in _LOADED:
        if key.endswith(suffix):
            return key[: -len(suffix)], True
    for suffix in _UNREAD:
        if key.endswith(suffix):
            return key[: -len(suffix)], False
    return None, False


def _layout_hint(pipe_class: type, layout: str, leftover: set[str]) -> str:
    """Why a LoRA in `layout` failed for `pipe_class`: a layout its loader does not convert,
    tensors of that layout it leaves unconverted, or (neither) a LoRA made for another model."""
    loader = next((c.__name__ for c in pipe_class.__mro__ if c.__name__ in CONVERTS), None)
    takes = CONVERTS.get(loader or "", ("diffusers",) if getattr(pipe_class, "lora_state_dict", None) is None else ())
    if takes and layout not in takes:
        return f"diffusers converts only the {', '.join(takes)} layouts for {pipe_class.__name__}, not {layout}."
    if leftover:
        kinds = ", ".join(sorted(leftover))
        return f"diffusers does not convert its {kinds} tensors for {pipe_class.__name__}; it cannot load this file."
    return "it was made for another base model."


# -- fitting a model --------------------------------------------------------------------------


@dataclass
class Fit:
    """How a LoRA's targets meet one denoiser."""

    targets: Targets
    matched: int  # target layers the denoiser has, with the sizes the LoRA was trained for
    misfit: str | None = None  # the first layer whose sizes differ, described


def layer_sizes(model: Any) -> dict[str, tuple[int, int]]:
    """(out, in) of every layer of `model` a LoRA can adapt (linear and convolution layers,
    also once PEFT wraps them), by name. Works on a meta model and on a quantized one, whose
    packed weights have other shapes than the layer."""
    import torch

    sizes: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        layer = getattr(module, "base_layer", module)
        if isinstance(layer, torch.nn.Linear):
            sizes[name] = (layer.out_features, layer.in_features)
        elif isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            sizes[name] = (layer.out_channels, layer.in_channels)
    return sizes


def fit(found: Targets, sizes: dict[str, tuple[int, int]]) -> Fit:
    """Count the LoRA's layers that `sizes` (a denoiser's layer_sizes) has at the right sizes."""
    matched, misfit = 0, None
    for name, parts in found.layers.items():
        size = sizes.get(name)
        if size is None:
            continue
        down, up = parts.get("lora_A.weight"), parts.get("lora_B.weight")
        wanted = (up[0] if up else size[0], down[1] if down and len(down) > 1 else size[1])
        if wanted != size:
            misfit = misfit or f"{name} is {size[1]} -> {size[0]} here, {wanted[1]} -> {wanted[0]} in the LoRA"
            continue
        matched += 1
    return Fit(found, matched, misfit)


def check_fit(result: Fit, shown: str, denoiser: str, pipe_class: type) -> None:
    """Refuse a LoRA that does not fit (see MIN_MATCHED), naming the counts and its layout."""
    found = result.targets
    if not found.modules:
        return  # no LoRA pairs at all (LoKr, a full checkpoint): diffusers says what it is
    counts = f"matches {result.matched} of {found.modules} layers of this model's {denoiser} ({found.layout} layout)"
    if result.misfit:
        raise ModelError(f"LoRA {shown} {counts}: {result.misfit}; it was made for another base model.")
    if result.matched < MIN_MATCHED * found.modules:
        raise ModelError(f"LoRA {shown} {counts}; {_layout_hint(pipe_class, found.layout, found.leftover)}")


# -- locating ---------------------------------------------------------------------------------


def adapter_name(lora: LoraConfig, index: int) -> str:
    """The adapter name of a LoRA: its --lora name, else its file or repo name."""
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


def _local_folder(where: str) -> Path | None:
    """A LoRA folder, or the cached snapshot of a Hub LoRA; None for one not downloaded yet."""
    if Path(where).is_dir():
        return Path(where)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(where, local_files_only=True))
    except Exception:  # not cached (or unreadable): nothing local to read yet
        return None


def lora_file(where: str, extra: dict[str, Any]) -> Path | None:
    """The local file diffusers reads for a located LoRA: the named one, or the one it picks in
    a folder or cached Hub snapshot; None where there is none on this machine yet."""
    folder = _local_folder(where)
    if folder is None:
        return None
    name = extra.get("weight_name")
    if name is None:
        try:  # diffusers' own choice in a folder, so the file checked is the file loaded
            from diffusers.loaders.lora_base import _best_guess_weight_name

            name = _best_guess_weight_name(str(folder), local_files_only=True)
        except (ImportError, ValueError, OSError):
            return None
    path = folder / name if name else None
    return path if path is not None and path.is_file() else None


# A LoRA's expert -> the denoisers of a two-expert model it loads into.
_EXPERTS = {"high": ("transformer",), "low": ("transformer_2",), "both": ("transformer", "transformer_2")}


def _into(lora: LoraConfig, denoisers: tuple[str, ...]) -> tuple[str, ...]:
    """The denoisers a LoRA goes into: every one the model has unless it names an expert."""
    if len(denoisers) < 2:
        return denoisers[:1]
    return _EXPERTS[lora.expert] if lora.expert else denoisers


def _checked_here(denoiser: str) -> bool:
    """Whether a LoRA for `denoiser` is held to MIN_MATCHED. A UNet's is not: AnimateDiff
    assembles its UNet with the motion modules at load time, and Stable Diffusion LoRAs come in
    older layouts diffusers rewrites inside its loader; its own errors say what does not fit."""
    return denoiser.startswith("transformer")


# -- before the pipeline loads ----------------------------------------------------------------


def check_before_load(cfg: RunConfig, family: Family, pipe_class: type, found: dict[str, tuple[str, str]]) -> None:
    """Refuse, before any weights load, a --lora that does not fit the model's denoiser: its
    layers are counted against the denoiser built from its config on the meta device. A LoRA
    or model config not on this machine yet (a Hub download) is checked after loading instead."""
    loras = cfg.model.loras or []
    kind, where = found["model"]
    if kind == "file" and "base_config" in found:  # a checkpoint file takes its configs from there
        kind, where = found["base_config"]
    folder = skeleton.pipeline_folder(where, kind, cfg.model.revision) if loras else None
    if folder is None:
        return
    present = tuple(name for name in base.denoisers(family) if skeleton.component_class(folder, name))
    sizes: dict[str, dict[str, tuple[int, int]]] = {}
    for lora in loras:
        denoiser = next(iter(_into(lora, present)), None)
        path = _safetensors(lora_file(*locate_lora(lora, cfg.model.allow_pickle)))
        if denoiser is None or path is None or not _checked_here(denoiser):
            continue
        if denoiser not in sizes:
            config = skeleton.config_folder(where, kind, denoiser, cfg.model.revision)
            class_name = skeleton.component_class(folder, denoiser)
            if config is None or class_name is None:
                continue
            sizes[denoiser] = layer_sizes(skeleton.meta_model(class_name, config))
        result = fit(targets(pipe_class, path, lora.source), sizes[denoiser])
        check_fit(result, lora.source, denoiser, pipe_class)


def _safetensors(path: Path | None) -> Path | None:
    """`path` if it is a safetensors file: a pickle's keys are not read without unpickling it."""
    return path if path is not None and path.suffix.lower() in SAFE_SUFFIXES else None


# -- loading ----------------------------------------------------------------------------------


def load_loras(pipe: Any, cfg: RunConfig, denoisers: tuple[str, ...] = ("transformer",)) -> list[dict[str, Any]]:
    """Load every --lora as a named adapter with its scale, into each denoiser it targets
    (`denoisers`: those the loaded model has); returns their sidecar records."""
    loras = cfg.model.loras or []
    if not loras:
        return []
    records, names, weights = [], [], []
    for index, lora in enumerate(loras, start=1):
        name = adapter_name(lora, index)
        if name in names:
            name = f"{name}_{index}"
        where, extra = locate_lora(lora, cfg.model.allow_pickle)
        into = _into(lora, denoisers)
        loaded = _load_one(pipe, cfg, lora, name, where, extra, into)
        names += loaded
        weights += [lora.scale] * len(loaded)
        records.append(_record(pipe, lora, name, where, extra, into, len(denoisers) > 1))
    if hasattr(pipe, "set_adapters"):
        pipe.set_adapters(names, adapter_weights=weights)
    else:
        getattr(pipe, denoisers[0]).set_adapters(names, weights=weights)
    return records


def _load_one(
    pipe: Any, cfg: RunConfig, lora: LoraConfig, name: str, where: str, extra: dict[str, Any], into: tuple[str, ...]
) -> list[str]:
    """Load one LoRA into each of `into`; returns the adapter names it got (one per denoiser)."""
    names = []
    try:
        for target in into:
            # Wan's loader puts a LoRA into the low-noise expert when asked to, under its own name.
            expert = {"load_into_transformer_2": True} if target == "transformer_2" else {}
            adapter = name if target == into[0] else f"{name}_{target}"
            if hasattr(pipe, "load_lora_weights"):
                pipe.load_lora_weights(
                    where, adapter_name=adapter, use_safetensors=safetensors_only(cfg), **extra, **expert
                )
            else:
                _into_denoiser(getattr(pipe, target), where, adapter, cfg, extra)
            names.append(adapter)
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
        raise ModelError(f"could not load LoRA {lora.source}: {lines[0]}") from None
    return names


def _into_denoiser(model: Any, where: str, name: str, cfg: RunConfig, extra: dict[str, Any]) -> None:
    """A LoRA for a pipeline without a LoRA loader (HunyuanVideo-1.5): straight into its
    denoiser, from diffusers-layout keys ("transformer." prefix)."""
    model.load_lora_adapter(
        where, adapter_name=name, prefix="transformer", use_safetensors=safetensors_only(cfg), **extra
    )


def _record(
    pipe: Any,
    lora: LoraConfig,
    name: str,
    where: str,
    extra: dict[str, Any],
    into: tuple[str, ...],
    experts: bool,
) -> dict[str, Any]:
    """A loaded LoRA's sidecar record: where it came from, its hash, its layout, and how many of
    the layers it targets took it. A LoRA found to fit too few layers only now (one downloaded
    while loading) is refused here, as it would have been before loading."""
    folder = _local_folder(where) or Path(where)
    local = folder / extra["weight_name"] if "weight_name" in extra else folder
    record: dict[str, Any] = {
        "source": lora.source,
        "name": name,
        "scale": lora.scale,
        "path": str(local.resolve()) if local.exists() else None,
        **(weights_record(local) if local.exists() else {"sha256": None}),
        **({"into": list(into)} if experts else {}),
    }
    path = _safetensors(lora_file(where, extra))
    if path is None:
        return record
    checked = _checked_here(into[0])
    try:
        found = targets(type(pipe), path, lora.source, "transformer" if checked else "unet")
    except ModelError:
        if checked:
            raise
        return {**record, "layout": detect_layout(header_tensors(path, lora.source))}
    denoiser = getattr(pipe, into[0])
    # The layers that really took the adapter: what PEFT made of the file, not a prediction.
    took = sum(1 for layer in found.layers if name in getattr(_submodule(denoiser, layer), "lora_A", {}))
    if checked:
        check_fit(Fit(found, took), lora.source, into[0], type(pipe))
    return {**record, "layout": found.layout, "tensors": found.tensors, "modules": found.modules, "matched": took}


def _submodule(model: Any, name: str) -> Any:
    """The layer `name` of `model`, or None where it has none."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None
