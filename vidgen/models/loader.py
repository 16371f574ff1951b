"""From a resolved config to a loaded, optimized pipeline: model resolution, device, dtype."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, ModelError, is_oom, out_of_memory
from vidgen.families import base
from vidgen.families.base import Family
from vidgen.models import checkpoints, components, loras, optimize, skeleton, tiny

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class Loaded:
    pipe: Any
    family: Family
    device: str
    dtype: str
    model: dict[str, Any]  # ids, resolved path and revision, component classes
    optimizations: dict[str, Any]  # requested, applied, the calls made (see optimize.apply)
    seconds: float
    setup: list[dict[str, Any]]  # pipeline methods called after loading, for the sidecar


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
    return family.loading.cuda_dtype if device.startswith("cuda") else "fp32"


def locate(
    model_id: str,
    build: bool = True,
    *,
    single_file: bool = False,
    allow_pickle: bool = False,
    marker: str = "model_index.json",
    what: str = "model",
) -> tuple[str, str]:
    """(kind, where) for a model id: kind is tiny, dir, file or hub. With build=False nothing is
    built or loaded, so a bad id fails before any work (used by --dry-run too).

    `single_file` allows one original-format checkpoint file (checked for pickles here);
    `marker` is the file a folder must hold (config.json for a single model)."""
    if model_id.startswith(tiny.PREFIX):
        name = model_id[len(tiny.PREFIX) :]
        known = tiny.builders()
        if name not in known:
            raise ModelError(f"there is no tiny model '{name}'; tiny models exist for: {', '.join(known)}.")
        return "tiny", str(tiny.ensure(name)) if build else model_id
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / marker).is_file():
            raise ModelError(f"{what} {model_id} is a folder but not a diffusers one (no {marker}).")
        return "dir", str(path.resolve())
    looks_like_file = path.suffix.lower() in components.PICKLE_SUFFIXES + components.SAFE_SUFFIXES
    if path.is_file() or looks_like_file:
        if not single_file:
            raise ModelError(
                f"{model_id} is a single file; this family loads a diffusers folder or a Hub repo id (owner/name)."
            )
        components.check_file(path, "checkpoint" if what == "model" else what, allow_pickle, model_id)
        return "file", str(path.resolve())
    if model_id.startswith((".", "/", "~")) or not _HUB_ID.match(model_id):
        raise ModelError(f"{what} {model_id} is neither an existing folder nor a Hub repo id (owner/name).")
    return "hub", model_id


def locate_all(cfg: RunConfig, family: Family, build: bool = True) -> dict[str, tuple[str, str]]:
    """Where the base model and every extra component of the run come from."""
    model_id = cfg.model.id or family.modes[cfg.mode].repo
    allow = cfg.model.allow_pickle
    marker = index_file(family)
    found = {
        "model": locate(model_id, build, single_file=family.loading.single_file, allow_pickle=allow, marker=marker)
    }
    for field in family.loading.components:
        value = getattr(cfg.model, field)
        if field == "controlnet" and value in components.CONTROLNETS:
            value = components.CONTROLNETS[value]
        if value:
            label = field.replace("_", " ")
            value = components.hub_revision(value)[0]
            found[field] = locate(value, build, single_file=True, allow_pickle=allow, marker="config.json", what=label)
    if cfg.model.base_config:
        if found["model"][0] != "file":
            raise ConfigError("--base-config describes a single-file --model; this --model is not a file.")
        found["base_config"] = locate(cfg.model.base_config, build, what="base config")
    for lora in cfg.model.loras or []:
        loras.locate_lora(lora, allow)
    for name, (source, _) in family.memory.extra_models(cfg).items():
        locate_subfolder(source, build, name.replace("_", " "))
    # Component files (--transformer FILE): read and checked against the model now, where the
    # model's configs are on disk, so a wrong file fails before any weights load.
    files = checkpoints.read_requested(cfg, family, download=False)
    checkpoints.check_options(cfg, files)
    checkpoints.plan(cfg, files, *found["model"], model_id, download=False)
    return found


def index_file(family: Family) -> str:
    """The file that makes a folder or repo a model of this family's kind of pipeline."""
    return components.INDEX_FILES[1] if base.modular(family) else components.INDEX_FILES[0]


def check_early(cfg: RunConfig, family: Family, found: dict[str, tuple[str, str]]) -> None:
    """The family's checks of the loaded model, run now on the model's config files where they
    are on disk (a folder, a cached Hub model, a tiny model built before), so a size beyond the
    transformer's position table fails before any weights load. A check that needs more than
    the configs runs after loading only, as before."""
    kind, where = found["model"]
    # The folder's configs are the model's own only when no part comes from elsewhere (a motion
    # adapter, a ControlNet, FramePack's transformer) and the model is a folder, not one file.
    if kind == "file" or family.loading.components or family.loading.assemble:
        return
    if kind == "tiny" and where.startswith(tiny.PREFIX):
        # Built on first use, by loading; once built, its configs are read like any folder's.
        where = str(tiny.folder(where.removeprefix(tiny.PREFIX)))
    folder = skeleton.pipeline_folder(where, kind, cfg.model.revision)
    if folder is None or not (folder / "model_index.json").is_file():
        return
    try:
        family.check_loaded(skeleton.Configs(folder), cfg)
    except (AttributeError, TypeError, KeyError, ValueError):
        return  # the check needs the loaded model; it runs after loading


def locate_subfolder(source: str, build: bool, what: str) -> tuple[str, dict[str, Any]]:
    """(what to pass to from_pretrained, its subfolder kwargs) for a model loaded beside the
    pipeline: tiny:NAME, a local folder with config.json, or a Hub repo with the subfolder after
    it (Lightricks/LTX-2/latent_upsampler)."""
    if source.startswith(tiny.PREFIX) or Path(source).expanduser().is_dir():
        return locate(source, build, marker="config.json", what=what)[1], {}
    parts = source.split("/")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w.-]+)*", source) or source.startswith((".", "~")):
        raise ModelError(
            f"{what} {source} is neither an existing folder, tiny:NAME, nor a Hub repo id "
            "(owner/name, then the subfolder if any)."
        )
    if any(part in (".", "..") for part in parts[2:]):
        raise ModelError(f"{what} {source}: the subfolder after the repo id must stay inside the repo.")
    repo = "/".join(parts[:2])
    _, where = locate(repo, build, marker="config.json", what=what)
    return where, ({"subfolder": "/".join(parts[2:])} if len(parts) > 2 else {})


class Access:
    """The loader's side of `families.base.ModelAccess`: what a family's setup may load, under
    the run's rules."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def locate(self, source: str, what: str) -> tuple[str, dict[str, Any]]:
        return locate_subfolder(source, True, what)

    def safetensors(self) -> bool | None:
        return components.safetensors_only(self.cfg)

    def lora(self, config: Any) -> tuple[str, dict[str, Any]]:
        return loras.locate_lora(config, self.cfg.model.allow_pickle)


def model_index(model_id: str, revision: str | None = None) -> dict[str, Any] | None:
    """A model's model_index.json (its pipeline class and registered settings), or a modular
    model's modular_model_index.json, from a local folder, the Hugging Face cache, or the Hub
    unless offline; None where neither can be read."""
    import json

    path = Path(model_id).expanduser()
    found: str | None = None
    if path.is_dir():
        found = next((str(path / name) for name in components.INDEX_FILES if (path / name).is_file()), None)
    elif _HUB_ID.match(model_id) and not model_id.startswith((".", "/", "~")):
        found = next((hit for name in components.INDEX_FILES if (hit := _hub_file(model_id, name, revision))), None)
    if found is None:
        return None
    try:
        data = json.loads(Path(found).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _hub_file(model_id: str, name: str, revision: str | None) -> str | None:
    """A small file of a Hub repo: from the cache, else downloaded unless offline; None if neither."""
    import os

    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model_id, name, revision=revision)
        if isinstance(cached, str):
            return cached
        if os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false"):
            return hf_hub_download(model_id, name, revision=revision)
    except Exception:  # not a valid id, gated, missing or unreachable: locating it says why, later
        return None
    return None


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


def _check_hub(model_id: str, marker: str, revision: str | None, family: Family, mode: str) -> None:
    """A Hub model that is neither cached nor reachable fails now, in one line: huggingface_hub
    would first retry each of its files for about 30 s and print a warning per retry."""
    from huggingface_hub import constants, get_session, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(model_id, marker, revision=revision), str):
            return
    except Exception:  # an odd revision or cache: loading it says why
        return
    if not constants.HF_HUB_OFFLINE:
        try:
            get_session().head(constants.ENDPOINT, timeout=5)
            return  # reachable: from_pretrained downloads it
        except Exception:  # no route, no DNS, a proxy that refuses: the Hub cannot be reached
            pass
    raise ModelError(
        f"{model_id} is not in the Hugging Face cache and the Hub cannot be reached; "
        f"connect to the network to download it, or try {_tiny_preset(family, mode)}, which needs no download."
    )


def _load_error(model_id: str, kind: str, exc: Exception, family: Family, mode: str) -> ModelError:
    """What a failed load means for the user; an allocation failure is raised as exit 6 here."""
    if is_oom(exc):  # torch's CPU allocator raises a RuntimeError: exit 6, not a model error
        out_of_memory(f"the process ran out of memory while loading {model_id}.", "load")
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
    offline = any(word in text.lower() for word in ("offline", "outgoing traffic", "connect", "not fully cached"))
    if kind == "file" and offline:
        return ModelError(
            f"{model_id} is a single-file checkpoint whose configs come from the Hub, which cannot be reached; "
            "pass --base-config DIR (a diffusers folder of the same architecture) to load it offline."
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


# on_component(name, class name, index, count): a pipeline component begins to load.
OnComponent = Callable[[str, str, int, int], None]


@contextmanager
def _announcing(on_component: OnComponent | None, offset: int = 0) -> Iterator[None]:
    """Report each component as diffusers' from_pretrained reaches it. diffusers walks the
    components through `diffusers.utils.logging.tqdm` (looked up at call time), so a wrapper
    there sees each (name, (library, class)) pair just before it loads; nothing else changes."""
    if on_component is None:
        yield
        return
    from diffusers.utils import logging as dlogging

    original = dlogging.tqdm

    def walk(iterable: Any = None, *args: Any, **kwargs: Any) -> Any:
        items = list(iterable) if iterable is not None else []
        for index, item in enumerate(items):
            try:
                name, (_, class_name) = item
            except (TypeError, ValueError):  # another use of diffusers' tqdm: pass it through
                yield item
                continue
            on_component(str(name), str(class_name), offset + index + 1, offset + len(items))
            yield item

    class _Walker:
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("desc") == "Loading pipeline components...":
                return walk(*args, **kwargs)
            return original(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(original, name)

    dlogging.tqdm = _Walker()
    try:
        yield
    finally:
        dlogging.tqdm = original


def load(
    cfg: RunConfig, family: Family, device: str, decode_only: bool = False, on_component: OnComponent | None = None
) -> Loaded:
    """Load the pipeline the config names and apply its optimizations once. `decode_only`
    loads the VAE alone (for `vidgen decode`): no denoiser, encoders, adapters or LoRAs.
    `on_component` hears each component as it begins to load (for progress)."""
    import torch

    from vidgen.core.libs import quiet

    quiet()
    model_id = cfg.model.id or family.modes[cfg.mode].repo
    # Importing the pipeline module is library start-up, not model loading: keep it off the clock.
    cls = base.pipeline_class(family, cfg.mode, cfg)
    start = time.perf_counter()
    found = locate_all(cfg, family)
    kind, where = found["model"]
    for field, (part_kind, part_where) in found.items():
        if part_kind == "hub":
            revision = cfg.model.revision if field == "model" else component_revision(cfg, field)
            marker = index_file(family) if field == "model" else "config.json"
            _check_hub(part_where, marker, revision, family, cfg.mode)
    if not decode_only:
        # A LoRA for another model is refused now, not after the pipeline has loaded.
        loras.check_before_load(cfg, family, cls, found)
    dtype = resolve_dtype(cfg.model.dtype, family, device)
    torch_dtype = getattr(torch, DTYPES[dtype])
    # Components the family always runs in their own precision (Wan's VAE in fp32).
    pinned = base.component_dtypes(family, dtype)
    dtypes = {"default": dtype, **pinned} if pinned else None
    load_dtype = {k: getattr(torch, DTYPES[v]) for k, v in dtypes.items()} if dtypes else torch_dtype
    kwargs: dict[str, Any] = {"dtype": load_dtype, **family.loading.from_pretrained}
    extra: dict[str, dict[str, Any]] = {}  # what the sidecar records of the extra models
    if decode_only:
        kwargs.update(decode_components(family, cls))
    else:
        files = checkpoints.plan(cfg, checkpoints.read_requested(cfg, family, download=True), kind, where, model_id)
        _load_files(files, load_dtype, on_component, kwargs, extra)
        _load_extra_models(cfg, family, found, torch_dtype, on_component, kwargs, extra)
    if kind == "file":
        load_from, quantization = cls.from_single_file, None
        # A checkpoint as model sites ship it; its configs come from --base-config (or the Hub).
        if "base_config" in found:
            kwargs["config"] = found["base_config"][1]
    else:
        load_from = cls.from_pretrained
        where, quantization = _pretrained_kwargs(cfg, family, kind, where, torch_dtype, decode_only, kwargs, extra)
    try:
        if base.modular(family) and kind != "file":
            pipe, extra["modular"] = _load_modular(family, cfg, where, kwargs, on_component)
        else:
            with _announcing(on_component):
                pipe = load_from(where, **kwargs)
    except components.load_failures() as exc:
        raise _load_error(model_id, kind, exc, family, cfg.mode) from None
    pipe.set_progress_bar_config(disable=True)
    path, revision = (where, None) if kind != "hub" else _hub_snapshot(model_id, cfg.model.revision)
    scheduler, lora_records, setup = (None, [], []) if decode_only else _set_up(pipe, cfg, family, path)
    denoisers = () if decode_only else present_denoisers(pipe, family)
    optimizations = optimize.apply(
        pipe, cfg.optimization, device, dtype, denoisers, lambda spec: family.cache_config(pipe, cfg, spec)
    )
    if quantization is not None:
        optimizations["calls"].insert(0, {"method": "from_pretrained", "kwargs": {"quantization_config": quantization}})
        optimizations["applied"].insert(0, f"quantize={cfg.optimization.quantize}")
    if kind == "file":
        extra["checkpoint"] = components.weights_record(Path(where))
    model = {
        "family": family.name,
        "id": model_id,
        "source": kind,
        "path": path,
        "revision": revision or cfg.model.revision,
    }
    model.update(_model_record(cfg, family, pipe, extra, dtypes, denoisers, scheduler, lora_records, kind))
    seconds = round(time.perf_counter() - start, 4)
    return Loaded(pipe, family, device, dtype, model, optimizations, seconds, setup)


def load_parts(cfg: RunConfig, family: Family, device: str, parts: frozenset[str]) -> Any:
    """The model's pipeline with only `parts` loaded (the rest left out), on `device`: what
    --dry-run --enhance-prompt needs of a pipeline that rewrites prompts with its own text
    encoder (LTX-2). No LoRAs, setup or memory options: none of them acts on these parts."""
    import torch

    from vidgen.core.libs import quiet

    quiet()
    model_id = cfg.model.id or family.modes[cfg.mode].repo
    cls = base.pipeline_class(family, cfg.mode, cfg)
    kind, where = locate_all(cfg, family)["model"]
    if kind == "hub":
        _check_hub(where, "model_index.json", cfg.model.revision, family, cfg.mode)
    torch_dtype = getattr(torch, DTYPES[resolve_dtype(cfg.model.dtype, family, device)])
    kwargs: dict[str, Any] = {"dtype": torch_dtype, **family.loading.from_pretrained}
    kwargs.update(decode_components(family, cls, parts))
    requested = checkpoints.read_requested(cfg, family, download=True)
    files = [file for file in checkpoints.plan(cfg, requested, kind, where, model_id) if file.component in parts]
    _load_files(files, torch_dtype, None, kwargs, {})
    if kind == "file":
        load_from = cls.from_single_file
        if cfg.model.base_config:
            kwargs["config"] = locate(cfg.model.base_config, what="base config")[1]
    else:
        load_from = cls.from_pretrained
        where, _ = _pretrained_kwargs(cfg, family, kind, where, torch_dtype, True, kwargs, {})
    try:
        pipe = load_from(where, **kwargs)
    except components.load_failures() as exc:
        raise _load_error(model_id, kind, exc, family, cfg.mode) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _load_modular(
    family: Family, cfg: RunConfig, where: str, kwargs: dict[str, Any], on_component: OnComponent | None
) -> tuple[Any, dict[str, Any]]:
    """A ModularPipeline and its sidecar record: the blocks the family names (pruned to the
    mode's workflow), their component specs read from the model's modular_model_index.json, and
    every component loaded from the model itself, each from its own subfolder. The index is
    data: a spec naming another repo or folder is not followed. diffusers' load_components
    logs a component that fails and goes on; here a missing component fails the load."""
    import diffusers

    spec = family.loading.modular
    assert spec is not None
    blocks = getattr(diffusers, spec.blocks)()
    workflow = base.workflow(family, cfg)
    if workflow is not None:
        blocks = blocks.get_workflow(workflow)
    pipe = blocks.init_pipeline(where)
    names = sorted(
        name
        for name, each in pipe._component_specs.items()
        if each.default_creation_method == "from_pretrained" and getattr(pipe, name, None) is None
    )
    load = {
        "names": names,
        "pretrained_model_name_or_path": where,
        "subfolder": {name: name for name in names},
        **{key: value for key, value in kwargs.items() if key in ("revision", "variant", "use_safetensors")},
    }
    for index, name in enumerate(names):
        if on_component is not None:
            on_component(name, getattr(pipe._component_specs[name].type_hint, "__name__", name), index + 1, len(names))
    pipe.load_components(**load, dtype=kwargs["dtype"])
    for name in names:
        if getattr(pipe, name, None) is None:
            # Loaded again on its own, so its own error (a missing folder, a gated file) is the message.
            dtype = kwargs["dtype"]
            dtype = dtype.get(name, dtype["default"]) if isinstance(dtype, dict) else dtype
            options = {key: value for key, value in load.items() if key not in ("names", "subfolder")}
            pipe._component_specs[name].load(**options, subfolder=name, dtype=dtype)
            raise ModelError(f"{where}: the {name} of this {family.title} model did not load.")
    # The pipeline's own setting reaches its top blocks only; the denoise loops sit deeper.
    pending = [pipe.blocks]
    while pending:
        block = pending.pop()
        if hasattr(block, "set_progress_bar_config"):
            block.set_progress_bar_config(disable=True)
        pending.extend((getattr(block, "sub_blocks", None) or {}).values())
        _silence_tqdm(type(block).__module__)
    # How plain diffusers makes the same pipeline: these blocks, init_pipeline(path),
    # load_components(**load_components, dtype=the model's dtypes), then a call asking for `output`.
    record = {"blocks": spec.blocks, "workflow": workflow, "load_components": load, "output": spec.output}
    return pipe, record


def _silence_tqdm(module_name: str) -> None:
    """Some blocks draw their own tqdm bar whatever the progress-bar setting (Wan-Animate-2's
    segment loop, diffusers 0.42.1), over vidgen's progress line: their module's `tqdm` becomes
    a disabled one. Only the bar changes; nothing a block computes does."""
    import functools
    import sys

    module = sys.modules.get(module_name)
    bar = getattr(module, "tqdm", None)
    if bar is not None and isinstance(bar, type):
        module.tqdm = functools.partial(bar, disable=True)  # type: ignore[union-attr]


def _load_files(
    files: list[checkpoints.Planned],
    load_dtype: Any,
    on_component: OnComponent | None,
    kwargs: dict[str, Any],
    extra: dict[str, dict[str, Any]],
) -> None:
    """Load each component that comes from one file (--transformer FILE, --text-encoder FILE)
    into `kwargs`, where from_pretrained takes it instead of the model's own, in the dtype the
    pipeline would give it (`load_dtype`: one torch dtype, or component -> dtype with a
    default), and record the files for the sidecar."""
    for planned in files:
        if on_component is not None:
            on_component(planned.component, planned.class_name, 0, 0)  # loaded on its own, first
        dtype = load_dtype.get(planned.component, load_dtype["default"]) if isinstance(load_dtype, dict) else load_dtype
        try:
            kwargs[planned.component] = checkpoints.load(
                planned.checkpoint, planned.class_name, planned.config_folder, dtype, planned.library
            )
        except components.load_failures() as exc:
            if is_oom(exc):
                out_of_memory(f"the process ran out of memory while loading {planned.checkpoint.source}.", "load")
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            what = checkpoints.flag(planned.component)
            raise ModelError(f"could not load {what} {planned.checkpoint.source}: {first}") from None
        record = planned.checkpoint.record(components.file_sha256(planned.checkpoint.path))
        extra.setdefault("files", {})[planned.component] = record


def _load_extra_models(
    cfg: RunConfig,
    family: Family,
    found: dict[str, tuple[str, str]],
    torch_dtype: Any,
    on_component: OnComponent | None,
    kwargs: dict[str, Any],
    extra: dict[str, dict[str, Any]],
) -> None:
    """Load the models the family takes beside the pipeline's own folder (a motion adapter, a
    ControlNet) into `kwargs`, and describe each in `extra` for the sidecar."""
    for field, class_name in family.loading.components.items():
        if field not in found:
            continue
        import diffusers

        part_kind, part_where = found[field]
        part_id = getattr(cfg.model, field)
        part_id = components.CONTROLNETS.get(part_id, part_id) if field == "controlnet" else part_id
        revision = component_revision(cfg, field)
        if on_component is not None:
            on_component(field, class_name, 0, 0)  # loaded on its own, before the pipeline
        try:
            kwargs[field] = components.load_model(
                getattr(diffusers, class_name), part_kind, part_where, cfg, torch_dtype, revision
            )
        except components.load_failures() as exc:
            raise _load_error(part_id, part_kind, exc, family, cfg.mode) from None
        path = _hub_snapshot(part_where, revision)[0] if part_kind == "hub" else part_where
        extra[field] = {"id": part_id, "source": part_kind, "path": path}
        if revision is not None:
            extra[field]["revision"] = revision
        if part_kind == "file":
            extra[field].update(components.weights_record(Path(part_where)))


def _pretrained_kwargs(
    cfg: RunConfig,
    family: Family,
    kind: str,
    where: str,
    torch_dtype: Any,
    decode_only: bool,
    kwargs: dict[str, Any],
    extra: dict[str, dict[str, Any]],
) -> tuple[str, dict[str, Any] | None]:
    """Add what from_pretrained takes beyond the dtype to `kwargs` for a model of `kind` (hub,
    dir or tiny) at `where`; returns where to load from
    (the base pipeline's folder when the family assembles one) and --quantize's description
    for the sidecar (None without it)."""
    quantization = None
    kwargs["use_safetensors"] = components.safetensors_only(cfg)
    if cfg.optimization.quantize and not decode_only:
        config, quantization = optimize.quantization_config(
            cfg.optimization, base.quantized_components(family), torch_dtype
        )
        kwargs["quantization_config"] = config
    if cfg.model.revision:
        kwargs["revision"] = cfg.model.revision
    if cfg.model.variant:
        kwargs["variant"] = cfg.model.variant
    if not decode_only:
        # A checkpoint that ships only some components (FramePack's transformer) is loaded
        # into the base pipeline the family names.
        assembled = family.loading.assemble(cfg.mode, kind, where, torch_dtype) if family.loading.assemble else None
        if assembled is not None:
            where, parts, extra["assembled"] = assembled
            kwargs.update(parts)
    return where, quantization


def _set_up(pipe: Any, cfg: RunConfig, family: Family, path: str) -> tuple[Any, list[Any], list[dict[str, Any]]]:
    """(scheduler record, LoRA records, setup calls) of a pipeline that will denoise: the
    family's repairs of the loaded model, then the scheduler, the LoRAs and the family's setup."""
    repairs = family.loading.repair(pipe, path) if family.loading.repair else []
    scheduler = components.apply_scheduler(pipe, cfg, family)
    records = loras.load_loras(pipe, cfg, present_denoisers(pipe, family))
    return scheduler, records, repairs + family.setup(pipe, cfg, Access(cfg))


def _model_record(
    cfg: RunConfig,
    family: Family,
    pipe: Any,
    extra: dict[str, dict[str, Any]],
    dtypes: dict[str, str] | None,
    denoisers: tuple[str, ...],
    scheduler: Any,
    loras: list[Any],
    kind: str,
) -> dict[str, Any]:
    """The sidecar's `model` section after its id and source: variant, component classes, the
    extra models, and what loading needed beyond the defaults."""
    model: dict[str, Any] = {
        "variant": cfg.model.variant,
        "components": {
            name: type(component).__name__
            for name, component in pipe.components.items()
            if component is not None and not isinstance(component, (str, int, float, bool))
        },
    }
    model.update(extra)
    if family.loading.from_pretrained:
        # What from_pretrained needs besides the dtype, so plain diffusers can load it the same way.
        model["from_pretrained"] = family.loading.from_pretrained
    if dtypes:
        # The precision of each component this model has, where the family pins one.
        model["dtypes"] = {k: v for k, v in dtypes.items() if k == "default" or pipe.components.get(k) is not None}
    if len(denoisers) > 1:
        model["denoisers"] = list(denoisers)
    if family.takes.model:
        model["scheduler"] = scheduler
    if loras:
        model["loras"] = loras
    if kind == "tiny":
        model["tiny_version"] = tiny.TINY_VERSION
    return model


def decode_components(family: Family, pipe_class: type, needs: frozenset[str] | None = None) -> dict[str, None]:
    """from_pretrained arguments that leave out everything but what `vidgen decode` needs
    (Decoding.needs: the VAE, and for sound the audio decoder and vocoder), or `needs`."""
    import inspect

    names = inspect.signature(pipe_class.__init__).parameters
    wanted = family.decoding.needs if needs is None else needs
    keep = {"self", "scheduler", "kwargs", "args", "force_zeros_for_empty_prompt", *wanted}
    # Optional components (Wan's transformer_2, image_encoder) would load unless left out too.
    optional = set(getattr(pipe_class, "_optional_components", ()))
    return {
        name: None
        for name, p in names.items()
        if name not in keep and (p.default is inspect.Parameter.empty or name in optional)
    }


def present_denoisers(pipe: Any, family: Family) -> tuple[str, ...]:
    """The family's denoisers that this model has (a Wan 2.1 folder has no transformer_2)."""
    return tuple(name for name in base.denoisers(family) if getattr(pipe, name, None) is not None)


def component_revision(cfg: RunConfig, field: str) -> str | None:
    """The Hub revision an extra model is typed with (--controlnet REPO@REVISION), if any."""
    value = getattr(cfg.model, field, None)
    return components.hub_revision(value)[1] if isinstance(value, str) else None
