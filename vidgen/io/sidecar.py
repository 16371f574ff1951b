"""The JSON sidecar: how an output was made, complete enough to repeat it with plain diffusers."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidgen import __version__
from vidgen.core.errors import InputError
from vidgen.core.limits import MAX_DEPTH, MAX_SIDECAR_BYTES, depth, read_text

KEYS = (
    "vidgen_version",
    "created_at",
    "config",
    "sources",
    "seed",
    "model",
    "pipeline",
    "inputs",
    "prompt_enhancement",
    "versions",
    "device",
    "optimizations",
    "timings",
    "peak_memory_bytes",
    "output",
)
# What goes into the container's metadata: enough to inspect and replay a bare video file.
COMPACT_KEYS = (
    "vidgen_version",
    "created_at",
    "config",
    "seed",
    "model",
    "pipeline",
    "inputs",
    "prompt_enhancement",
    "versions",
    "writer",
    "batch",
)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux: platform's answer is the best there is
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(versions, device) blocks of the sidecar."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {"python": platform.python_version(), "vidgen": __version__}
    for package in ("torch", "diffusers", "transformers", "accelerate", "numpy", "imageio-ffmpeg"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    versions["cuda"] = torch.version.cuda
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info = {"type": "cuda", "name": props.name, "vram_bytes": int(props.total_memory)}
    else:
        info = {"type": "cpu", "name": _cpu_name(), "vram_bytes": None}
    return versions, info


def record(
    resolved: Any,
    seed: int | None,
    loaded: Any,
    environment: tuple[dict[str, Any], dict[str, Any]],
    *,
    pipeline: dict[str, Any],
    made_from: dict[str, Any],
    optimizations: dict[str, Any],
    timings: dict[str, float],
    peak_memory_bytes: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A sidecar, in KEYS order, for a generation or a `vidgen decode`; `made_from` holds what
    the video was made from (`inputs`, or `decoded_from` for a decode). `output` is added once
    the file is written."""
    versions, device = environment
    return {
        "vidgen_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": resolved.config.model_dump(mode="json"),
        "sources": resolved.sources,
        "seed": seed,
        "model": {**loaded.model, "dtype": loaded.dtype},
        "pipeline": pipeline,
        **made_from,
        "versions": versions,
        "device": device,
        "optimizations": optimizations,
        "timings": timings,
        "peak_memory_bytes": peak_memory_bytes,
        **(extra or {}),
    }


def dumps(sidecar: dict[str, Any]) -> str:
    return json.dumps(sidecar, indent=2, sort_keys=False) + "\n"


def compact(sidecar: dict[str, Any]) -> str:
    return json.dumps({key: sidecar[key] for key in COMPACT_KEYS if key in sidecar}, separators=(",", ":"))


_NUMBER = (int, float)
# The fields `inspect` and `replay` read, and the JSON type each must have; null is allowed
# wherever a field may be unset, and "*" stands for every key of a mapping. Types are checked,
# not values or completeness: a sidecar of another vidgen version reads; one whose fields have
# the wrong types (edited, or made by something else) is refused in one line, not half-shown.
SHAPE: dict[str, Any] = {
    "vidgen_version": str,
    "created_at": str,
    "seed": int,
    "peak_memory_bytes": _NUMBER,
    **dict.fromkeys(("config", "sources", "model", "pipeline", "inputs", "versions", "device"), dict),
    **dict.fromkeys(("optimizations", "timings", "output", "writer", "batch", "replay_of", "decoded_from"), dict),
    **dict.fromkeys(("config.model", "config.inputs", "config.sampling", "config.optimization"), dict),
    "config.output": dict,
    "config.mode": str,
    **dict.fromkeys(("config.inputs.prompt", "config.inputs.negative_prompt", "config.inputs.resize"), str),
    "config.inputs.prompts": dict,
    "config.inputs.conditions": list,
    "config.inputs.conditions.*": dict,
    **dict.fromkeys(("config.sampling.num_frames", "config.sampling.num_inference_steps", "config.sampling.seed"), int),
    **dict.fromkeys(("config.sampling.width", "config.sampling.height", "config.sampling.num_videos"), int),
    "config.sampling.guidance_scale": _NUMBER,
    **dict.fromkeys(("config.model.id", "config.model.family", "config.model.revision"), str),
    **dict.fromkeys(("config.model.motion_adapter", "config.model.controlnet", "config.model.base_config"), str),
    "config.model.allow_pickle": bool,
    "config.model.loras": list,
    "config.model.loras.*": dict,
    "config.model.scheduler_options": dict,
    "config.output.format": str,
    "config.inputs.enhance_prompt": bool,
    "config.inputs.enhancer_seed": int,
    "config.model.enhancer": str,
    # --enhance-prompt: what the LLM was asked and wrote; a replay reuses `enhanced_prompt`.
    "prompt_enhancement": dict,
    **dict.fromkeys(("prompt_enhancement.prompt", "prompt_enhancement.enhanced_prompt"), str),
    **dict.fromkeys(("prompt_enhancement.enhancer", "prompt_enhancement.system_prompt"), dict),
    **dict.fromkeys(("prompt_enhancement.request", "prompt_enhancement.generation"), dict),
    **dict.fromkeys(("prompt_enhancement.enhancer.id", "prompt_enhancement.enhancer.revision"), str),
    **dict.fromkeys(("prompt_enhancement.enhancer.path", "prompt_enhancement.enhancer.sha256"), str),
    "prompt_enhancement.system_prompt.name": str,
    "prompt_enhancement.seed": int,
    **dict.fromkeys(("model.id", "model.family", "model.source", "model.path", "model.revision"), str),
    "model.dtype": str,
    **dict.fromkeys(("model.scheduler", "model.checkpoint", "model.motion_adapter", "model.controlnet"), dict),
    **dict.fromkeys(("model.base_config", "model.loras.*", "model.files", "model.files.*"), dict),
    "model.loras": list,
    # The weights files a replay checks again, and what `inspect` shows of them.
    **dict.fromkeys(("model.checkpoint.sha256", "model.motion_adapter.sha256", "model.controlnet.sha256"), str),
    **dict.fromkeys(("model.loras.*.source", "model.loras.*.path", "model.loras.*.sha256"), str),
    **dict.fromkeys(("model.files.*.source", "model.files.*.path", "model.files.*.sha256"), str),
    **dict.fromkeys(("model.files.*.repo", "model.files.*.revision", "model.files.*.format"), str),
    **dict.fromkeys(("model.files.*.quant", "model.files.*.layout"), str),
    **dict.fromkeys(("model.files.*.bytes", "model.files.*.tensors", "model.loras.*.bytes"), int),
    **dict.fromkeys(("model.checkpoint.bytes", "model.motion_adapter.bytes", "model.controlnet.bytes"), int),
    "model.loras.*.layout": str,
    **dict.fromkeys(("model.loras.*.tensors", "model.loras.*.modules", "model.loras.*.matched"), int),
    "pipeline.class": str,
    **dict.fromkeys(("pipeline.call_kwargs", "pipeline.windows"), dict),
    **dict.fromkeys(("pipeline.setup", "pipeline.stages"), list),
    **dict.fromkeys(("pipeline.setup.*", "pipeline.stages.*"), dict),
    "inputs.*": (dict, list),  # a list: LTX keyframes and clips
    **dict.fromkeys(("output.path", "output.format", "output.codec", "output.sha256"), str),
    **dict.fromkeys(("output.frames", "output.width", "output.height"), int),
    "output.fps": _NUMBER,
    "output.audio": dict,
    "output.live_preview": dict,
    "config.model.preview_decoder": str,
    "optimizations.applied": list,
    "timings.*": (int, float, str),
    "versions.*": str,
    # The finishing chain (--interpolate, --upscale) and the clip a later step was run on.
    "finish": list,
    "finish.*": dict,
    **dict.fromkeys(("finish.*.step", "finish.*.factor", "finish.*.device"), str),
    **dict.fromkeys(("finish.*.model", "finish.*.settings"), dict),
    **dict.fromkeys(("finish.*.frames", "finish.*.size", "finish.*.fps"), list),
    **dict.fromkeys(("finish.*.seconds", "finish.*.peak_memory_bytes"), _NUMBER),
    **dict.fromkeys(("finish.*.model.source", "finish.*.model.sha256", "finish.*.model.architecture"), str),
    "finished_from": dict,
    **dict.fromkeys(("finished_from.path", "finished_from.sha256"), str),
    "config.output.finish": list,
    "config.output.finish.*": dict,
}
_JSON_TYPES = {dict: "a mapping", list: "a list", str: "text", int: "a whole number", float: "a number"}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return next((name for kind, name in _JSON_TYPES.items() if isinstance(value, kind)), type(value).__name__)


def check_shape(data: dict[str, Any], source: str) -> dict[str, Any]:
    """`data` if every field of SHAPE it has is of its type; else InputError naming the first
    field that is not (exit 4): what a command reads from a file is checked before it is used."""
    stack: list[tuple[str, str, Any]] = [(key, key, value) for key, value in data.items()]
    while stack:
        path, pattern, value = stack.pop(0)
        wanted = SHAPE.get(pattern)
        if wanted is None or value is None:
            continue
        kinds = wanted if isinstance(wanted, tuple) else (wanted,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = dict.fromkeys(_JSON_TYPES.get(kind, "true/false") for kind in kinds)
            if "a number" in names:
                names.pop("a whole number", None)  # a number covers it
            expected = " or ".join(names)
            raise InputError(
                f"{source}: {path} is {_json_type(value)}, not {expected}; this is not a sidecar vidgen wrote "
                "(or it was edited), so it is not shown."
            )
        if isinstance(value, dict):
            stack += [(f"{path}.{key}", f"{pattern}.{key}", inner) for key, inner in value.items()]
            stack += [(f"{path}.{key}", f"{pattern}.*", inner) for key, inner in value.items()]
        elif isinstance(value, list):
            stack += [(f"{path}[{index}]", f"{pattern}.*", inner) for index, inner in enumerate(value)]
    return data


def read(path: Path) -> dict[str, Any]:
    """A sidecar from its JSON file, or from a video: the sidecar beside it, else its metadata."""
    from vidgen.io import media, outputs

    if not path.exists():
        raise InputError(f"{path} does not exist.")
    if path.suffix.lower() == ".json":
        return parse(read_text(path, MAX_SIDECAR_BYTES, "sidecar", InputError), str(path))
    beside = outputs.beside("sidecar", path)
    if beside.is_file():
        data = read(beside)
        if _describes(data, path):
            return data
        # clip.mp4 and clip.webm share clip.json: this one describes the other file.
    if not path.is_dir() and not path.is_file():
        raise InputError(f"{path} is not a regular file (a device, pipe or socket); pass a video or its sidecar.")
    embedded = media.embedded_metadata(path)
    if embedded is None:
        raise InputError(f"{path} has no sidecar beside it and no vidgen metadata inside; pass the .json sidecar.")
    if depth(embedded) > MAX_DEPTH:
        raise InputError(f"{path}: its metadata nests deeper than {MAX_DEPTH} levels; it is not vidgen's.")
    check_shape(embedded, str(path))
    embedded["output"] = {"path": str(path), "note": "read from the container metadata; the sidecar was not found"}
    return embedded


def _describes(data: dict[str, Any], path: Path) -> bool:
    """Whether a sidecar beside `path` is about `path`: its recorded file name, then its hash.
    Older sidecars without an `output` block are trusted as before."""
    from vidgen.io import media

    output = data.get("output")
    if not isinstance(output, dict) or not isinstance(output.get("path"), str):
        return True
    if Path(output["path"]).name != path.name:
        return False
    recorded = output.get("sha256")
    return not isinstance(recorded, str) or path.is_dir() or media.sha256(path) == recorded


def parse(text: str, source: str) -> dict[str, Any]:
    """A sidecar from its JSON text; InputError when it is not one (or nests absurdly deep)."""
    deep = InputError(f"{source} nests deeper than {MAX_DEPTH} levels; it is not a vidgen sidecar.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source} is not a readable vidgen sidecar ({exc}).") from None
    except RecursionError:
        raise deep from None
    if depth(data) > MAX_DEPTH:
        raise deep
    if not isinstance(data, dict) or "vidgen_version" not in data:
        raise InputError(f"{source} is JSON but not a vidgen sidecar (no vidgen_version).")
    return check_shape(data, source)


# -- replay -----------------------------------------------------------------------------------


def replay_config(
    data: dict[str, Any], source: Path, overwrite: bool = False, out_given: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The recorded run as one complete config, and warnings about what may make it differ.

    The config is pinned to what actually ran: the effective seed (one video), the exact Hub
    revision, and local inputs and models found again by their absolute paths when the relative
    ones no longer resolve (replay from another folder). The output gets a new name beside
    `source`, the file being replayed (`NAME-replay.EXT`, then -replay2, ...): never a path
    read from the file, which could point anywhere.
    """
    import copy

    from vidgen.config.kinds import input_fields

    try:
        config = copy.deepcopy(data["config"])
        config["sampling"]["seed"] = data["seed"]
        config["sampling"]["num_videos"] = 1
        config.setdefault("output", {})
        model = data.get("model") or {}
        if model.get("source") == "hub" and model.get("revision") and not config["model"].get("revision"):
            config["model"]["revision"] = model["revision"]
        model_id = config["model"].get("id") or ""
        if model.get("source") in ("dir", "file") and not Path(model_id).expanduser().exists() and model.get("path"):
            config["model"]["id"] = model["path"]
        _weights_found_again(config["model"], model)
        _enhancement_pinned(config, data.get("prompt_enhancement"))
        recorded = data.get("inputs") or {}
        for name in input_fields():
            ref = config["inputs"].get(name)
            where = (recorded.get(name) or {}).get("resolved_path")
            if isinstance(ref, list):  # reference_images: one path per entry
                wheres = where if isinstance(where, list) and len(where) == len(ref) else [None] * len(ref)
                config["inputs"][name] = [_found_again(one, there) for one, there in zip(ref, wheres, strict=True)]
            else:
                config["inputs"][name] = _found_again(ref, where)
        # Keyframe and clip files (LTX), found again the same way.
        records = recorded.get("conditions") if isinstance(recorded.get("conditions"), list) else []
        for condition, record in zip(config["inputs"].get("conditions") or [], records, strict=False):
            key = "image" if condition.get("image") else "video"
            condition[key] = _found_again(condition.get(key), (record or {}).get("resolved_path"))
        if not out_given and not config["output"].get("format"):
            # The recording's format came from its file name; the new name has none of its own.
            config["output"]["format"] = _recorded_format(data, source)
        config["output"]["path"] = replay_name(source)
        config["output"]["overwrite"] = overwrite
    except (KeyError, TypeError, AttributeError):
        raise InputError(
            f"{source} is missing parts of a vidgen sidecar (config, seed); it cannot be replayed."
        ) from None
    return config, _drift(data)


def _weights_found_again(config_model: dict[str, Any], model: dict[str, Any]) -> None:
    """Extra models, LoRAs and single-file components named by relative paths that no longer
    resolve (a replay from another folder), found again by their recorded absolute paths, as the
    model and inputs are; so the replay loads the very file `provenance.check` hashed. A LoRA
    recorded as a file inside the folder it names keeps its name (its weight_name says which)."""
    for key in ("motion_adapter", "controlnet"):
        part = model.get(key) or {}
        if part.get("source") in ("dir", "file") and config_model.get(key):
            config_model[key] = _found_again(config_model[key], part.get("path"))
    records = {record.get("source"): record for record in model.get("loras") or []}
    for lora in config_model.get("loras") or []:
        where = (records.get(lora.get("source")) or {}).get("path")
        if where and Path(where).name == Path(lora["source"]).name:
            lora["source"] = _found_again(lora["source"], where)
    for component, record in (model.get("files") or {}).items():
        # A Hub file (REPO:PATH) is found by the Hub's own cache, at its recorded revision.
        if not record.get("repo") and isinstance(config_model.get(component), str):
            config_model[component] = _found_again(config_model[component], record.get("path"))


def _enhancement_pinned(config: dict[str, Any], block: Any) -> None:
    """The rewrite's request pinned as it ran, so the replay asks what the recording asked and
    reuses its rewrite without loading the LLM: the LLM's seed (the run's first seed, which the
    replay of a later video no longer has) and the enhancer (a default that may change)."""
    request = block.get("request") if isinstance(block, dict) else None
    if not isinstance(request, dict) or not config["inputs"].get("enhance_prompt"):
        return
    seed = request.get("seed")
    if config["inputs"].get("enhancer_seed") is None and isinstance(seed, int) and not isinstance(seed, bool):
        config["inputs"]["enhancer_seed"] = seed
    ref = request.get("enhancer")
    if not config["model"].get("enhancer") and isinstance(ref, str) and ref != "pipeline":
        config["model"]["enhancer"] = ref


def _found_again(ref: Any, where: Any) -> Any:
    """A local input's recorded absolute path when the relative one no longer resolves."""
    if ref and not ref.startswith(("http://", "https://")) and not Path(ref).expanduser().exists() and where:
        return where
    return ref


def _recorded_format(data: dict[str, Any], source: Path) -> str | None:
    """The format the recorded output was written in: the sidecar says, or the video's suffix."""
    from vidgen.io import outputs

    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    suffix = source.suffix.lower().lstrip(".")
    for candidate in (output.get("format"), suffix):
        if candidate in outputs.FORMATS:
            return candidate
    return None


def replay_name(source: Path) -> str:
    """`DIR/NAME-replay.{ext}` for `DIR/NAME.json` or `DIR/NAME.mp4` (then -replay2, ...): the
    first name no file of any format (or its sidecar) has yet. `{ext}` is left for the output
    format to fill, so `--set output.format=png` needs no --out."""
    from vidgen.io import outputs

    stem = source.name if source.is_dir() else source.stem
    for index in range(1, 1000):
        name = f"{stem}-replay" if index == 1 else f"{stem}-replay{index}"
        taken = [source.with_name(name), source.with_name(f"{name}.json")]
        taken += [source.with_name(f"{name}.{fmt}") for fmt in outputs.FORMATS]
        if not any(path.exists() for path in taken):
            break
    # A file name is a name, not a template: braces in it are literal.
    literal = str(source.with_name(name)).replace("{", "{{").replace("}", "}}")
    return f"{literal}.{{ext}}"


def _drift(data: dict[str, Any]) -> list[str]:
    """Differences between the recording machine's software and this one's."""
    from importlib.metadata import PackageNotFoundError, version

    from vidgen.models import tiny

    notes = []
    versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
    for package in ("diffusers", "torch", "transformers"):
        then = versions.get(package)
        try:
            now = version(package)
        except PackageNotFoundError:
            now = None
        if then and now and then != now:
            notes.append(f"{package} was {then} for the original run and is {now} here; frames may differ.")
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    if model.get("tiny_version") not in (None, tiny.TINY_VERSION):
        notes.append("the tiny model was built by another vidgen version; frames will differ.")
    return notes


def changed_inputs(
    data: dict[str, Any], prepared: dict[str, Any], config_inputs: dict[str, Any], chosen: set[str] | None = None
) -> list[str]:
    """Inputs whose prepared pixels differ from the recording (the file changed), among those
    the replay did not point elsewhere on purpose (`chosen`: named with --set, whatever the path)."""
    from vidgen.config.kinds import input_fields

    recorded = data.get("inputs") if isinstance(data.get("inputs"), dict) else {}
    changed = []
    for name, now in prepared.items():
        record = recorded.get(name)
        ok = isinstance(record, dict) and isinstance(record.get("prepared"), dict)
        then = record["prepared"].get("sha256") if ok else None
        if name in (chosen or set()):
            continue
        if name in input_fields() and then and now["prepared"]["sha256"] != then:
            same_source = config_inputs.get(name) in (recorded[name].get("path"), recorded[name].get("resolved_path"))
            if same_source:
                changed.append(recorded[name].get("path") or name)
    return changed
