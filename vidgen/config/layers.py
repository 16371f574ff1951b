"""Presets and config layering: schema < family < preset (with `extends:`) < CLI flags.

Each layer is a sparse nested dict with a label saying where it came from. The layers are
deep-merged and validated once, so an error names the final key path and the layer that set it,
and every field's source is recorded for `presets show` and the sidecar.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vidgen.config import safe_yaml
from vidgen.config.flags import flag, from_flag_form
from vidgen.config.schema import OptimizationConfig, RunConfig, field_type, scalar_type
from vidgen.config.settings import user_preset_dir
from vidgen.core import text
from vidgen.core.errors import ConfigError
from vidgen.core.limits import MAX_EXTENDS, MAX_PRESET_BYTES, read_text

# Keys a preset file may have besides the config itself.
PRESET_META = ("description", "extends")


@dataclass
class Layer:
    label: str  # what `sources` records, e.g. "preset:cogvideox-5b" or "cli:--frames"
    data: dict[str, Any]
    origin: str = ""  # the file a layer came from, named in error messages


@dataclass
class Resolved:
    config: RunConfig
    sources: dict[str, str]
    presets: list[dict[str, str]] = field(default_factory=list)

    def with_optimization(self, opt: OptimizationConfig, label: str) -> Resolved:
        """This run with optimization settings `opt`; the fields that changed are sourced to
        `label` (the memory planner, or an out-of-memory retry)."""
        old = self.config.optimization.model_dump()
        sources = dict(self.sources)
        for key, value in opt.model_dump().items():
            if old[key] != value:
                sources[f"optimization.{key}"] = label
        return Resolved(self.config.model_copy(update={"optimization": opt}), sources, self.presets)

    def with_finish(self, steps: list[Any], label: str) -> Resolved:
        """This run with the finishing chain `steps` (config.schema.FinishStep), sourced to `label`."""
        output = self.config.output.model_copy(update={"finish": steps})
        sources = {**self.sources, "output.finish": label}
        return Resolved(self.config.model_copy(update={"output": output}), sources, self.presets)


def shipped_preset_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    # In a wheel the presets sit inside the package; in a checkout they are at the top level.
    for candidate in (here / "presets", here.parent / "presets"):
        if candidate.is_dir():
            return candidate
    return here / "presets"


def available_presets() -> dict[str, Path]:
    """Preset name -> file; user presets shadow shipped ones of the same name."""
    found: dict[str, Path] = {}
    for folder in (shipped_preset_dir(), user_preset_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.y*ml")):
                found[path.stem] = path
    return dict(sorted(found.items()))


def _preset_path(ref: str) -> Path:
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ConfigError(f"preset file {ref} does not exist.")
        return path
    presets = available_presets()
    if ref in presets:
        return presets[ref]
    close = difflib.get_close_matches(ref, presets, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown preset '{ref}'.{hint} Run `vidgen presets list` to see them all.")


def _read_yaml(path: Path) -> dict[str, Any]:
    # A preset may come from anywhere (a download, a shared folder): bounded, aliases refused.
    data = safe_yaml.load(read_text(path, MAX_PRESET_BYTES, "preset", ConfigError), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a preset must be a mapping of config sections.")
    return data


def load_preset(ref: str) -> list[Layer]:
    """The preset's layers, the base of any `extends:` chain first."""
    chain: list[Layer] = []
    seen: set[Path] = set()
    next_ref: str | None = ref
    relative_to: Path | None = None
    while next_ref is not None:
        if relative_to is not None and next_ref.endswith((".yaml", ".yml")):
            # `extends: base.yaml` is relative to the file that says it.
            next_ref = str((relative_to.parent / next_ref).expanduser())
        path = _preset_path(next_ref).resolve()
        if path in seen:
            raise ConfigError(f"preset {path} extends itself through a cycle.")
        if len(seen) >= MAX_EXTENDS:
            raise ConfigError(f"preset {ref}: its extends: chain is longer than {MAX_EXTENDS} presets.")
        seen.add(path)
        data = _read_yaml(path)
        parent = data.pop("extends", None)
        data.pop("description", None)
        if parent is not None and not isinstance(parent, str):
            raise ConfigError(f"extends: must be a preset name or file (from {path}).")
        chain.append(Layer(label=f"preset:{path.stem}", data=data, origin=str(path)))
        next_ref, relative_to = parent, path
    return list(reversed(chain))


def merged_preset(ref: str) -> dict[str, Any]:
    """A preset's own settings with its `extends:` chain applied (no family defaults)."""
    merged: dict[str, Any] = {}
    for layer in load_preset(ref):
        merged = _merge(merged, layer.data)
    return merged


def preset_description(path: Path) -> str:
    data = _read_yaml(path)
    return str(data.get("description", "")).strip()


def set_layer(assignments: list[str]) -> Layer:
    """`--set sampling.num_inference_steps=80` -> a layer. Each value is read as its flag reads
    it (`--steps 80`): a whole number, a number, on/off, or the text itself; lists and mappings
    (and fields without a flag of one value) as a YAML value. An empty value is refused, as a
    flag without its value would be, not taken as "not set"."""
    values: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {item}: expected KEY=VALUE with a dotted key, e.g. sampling.guidance_scale=6.")
        values[key.strip()] = _set_value(key.strip(), raw)
    return Layer(label="cli:--set", data=dotted(values, "--set"), origin="--set")


def dotted(values: dict[str, Any], where: str) -> dict[str, Any]:
    """{"sampling.seed": 3} -> {"sampling": {"seed": 3}}; `where` (--set, a job) names clashes."""
    data: dict[str, Any] = {}
    for key, value in values.items():
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where} {key}: {part} is set to a value elsewhere in {where}.")
            node = child
        node[parts[-1]] = value
    return data


# The words --flag/--no-flag options take as a value, as Click reads them.
_BOOLS = {"1": True, "true": True, "t": True, "yes": True, "y": True, "on": True}
_BOOLS |= {"0": False, "false": False, "f": False, "no": False, "n": False, "off": False}
_NOUNS = {int: "a whole number", float: "a number", bool: "true or false"}


def _set_value(path: str, raw: str) -> Any:
    """One --set value in its config form, read as the field's flag reads its value."""
    kind = scalar_type(field_type(path))
    named = flag(path)
    like = f", as {named} takes" if named != path else ""
    if kind is str:
        # As typed after the flag ("123", "null" and "" stay text), or the text a YAML string spells.
        parsed = _yaml(path, raw)
        return parsed if isinstance(parsed, str) else raw
    if not raw.strip():
        raise ConfigError(f"--set {path}= gives no value; give one{like}, or leave the --set out.")
    if kind in _NOUNS:
        text = raw.strip().lower() if kind is bool else raw.strip()
        try:
            return _BOOLS[text] if kind is bool else kind(text)
        except (KeyError, ValueError):
            raise ConfigError(f"--set {path}={raw}: {raw.strip()!r} is not {_NOUNS[kind]}{like}.") from None
    if kind == "choice":
        return raw.strip()  # the schema names the choices
    value = _yaml(path, raw)
    if value is None:
        raise ConfigError(f"--set {path}={raw} gives no value; give one{like}, or leave the --set out.")
    return from_flag_form(path, value)


def _yaml(path: str, raw: str) -> Any:
    """A --set value read as one YAML value (the text itself when it is not YAML)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    except RecursionError:  # "[[[[...]]]]" thousands deep: the parser's own recursion
        raise ConfigError(f"--set {path}: the value is nested too deeply to be a setting.") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(leaves(value, path + "."))
        else:
            out[path] = value
    return out


def _render(error: ValidationError, layers: list[Layer], sources: dict[str, str]) -> str:
    origins = {layer.label: layer.origin or layer.label for layer in layers}
    lines = []
    for err in error.errors():
        path = ".".join(str(p) for p in err["loc"])
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        source = sources.get(path)
        where = f" (from {origins.get(source, source)})" if source else ""
        lines.append(f"{path}: {message}{where}")
    return "; ".join(lines)


def _check_text(merged: dict[str, Any], sources: dict[str, str], layers: list[Layer]) -> None:
    """Every key and text value is UTF-8 text: "\udce9" from a manifest's or sidecar's JSON as
    well as bytes from the command line, refused naming the field and the layer that set it.
    One search over the whole config first: a batch resolves every job."""
    try:
        if text.valid(json.dumps(merged, ensure_ascii=False, default=str)):
            return
    except (TypeError, ValueError, RecursionError):
        pass  # not JSON-able: look field by field
    origins = {layer.label: layer.origin or layer.label for layer in layers}
    for path, value in leaves(merged).items():
        source = sources.get(path)
        where = f"{path} (from {origins.get(source, source)})" if source else path
        text.check(path, where)
        text.check_all(value, where)


def _family(layers: list[Layer]) -> str | None:
    """The model family the highest layer that names one chose."""
    family = None
    for layer in layers:
        model = layer.data.get("model")
        if isinstance(model, dict) and model.get("family"):
            family = model["family"]
    return family


def resolve(
    mode: str,
    presets: list[str],
    cli_layers: list[Layer],
    family_layer: Callable[[str, str], Layer],
    default_preset: str | None = None,
) -> Resolved:
    """Merge every layer and validate once.

    `family_layer(name, mode)` gives the defaults of the family the presets and flags chose; it is
    injected so this module needs nothing from the families registry. When no preset names a
    model (none given, or only overlays), `default_preset` goes underneath them.
    """
    chains = [load_preset(ref) for ref in presets]
    if default_preset and not _family([layer for chain in chains for layer in chain]):
        chains.insert(0, load_preset(default_preset))
    for chain in chains:
        # A preset's mode is the last one its `extends:` chain sets (animatediff-v2v extends animatediff).
        modes = [layer.data["mode"] for layer in chain if layer.data.get("mode") is not None]
        if modes and modes[-1] != mode:
            name = chain[-1].label.split(":", 1)[1]
            fitting = [ref for ref, path in available_presets().items() if merged_preset(str(path)).get("mode") == mode]
            hint = f" Presets for {mode}: {', '.join(fitting)}." if fitting else ""
            raise ConfigError(f"preset {name} is for `vidgen {modes[-1]}`, not `vidgen {mode}`.{hint}")
    preset_layers = [layer for chain in chains for layer in chain]
    upper = [*preset_layers, Layer("cli:command", {"mode": mode}), *cli_layers]
    family = _family(upper)
    if not family:
        raise ConfigError("no model family chosen: pick one with --preset (see `vidgen presets list`).")
    layers = [family_layer(family, mode), *upper]

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        merged = _merge(merged, layer.data)
        sources.update(dict.fromkeys(leaves(layer.data), layer.label))
    _check_text(merged, sources, layers)
    try:
        config = RunConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_render(exc, layers, sources)) from None
    fields = leaves(config.model_dump(mode="json"))
    return Resolved(
        config=config,
        sources={path: sources.get(path, "default") for path in sorted(fields)},
        presets=[{"name": layer.label.split(":", 1)[1], "path": layer.origin} for layer in preset_layers],
    )
