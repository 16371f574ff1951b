"""What a file may not decide: the trust boundary between the command line and everything else.

Sidecars, embedded video metadata, latents files, presets and manifests travel between people,
so what they say is data, never permission. Only flags typed on the command line (the `cli:`
layers of a resolved config) may allow pickle weights or let a file make vidgen read inputs the
user did not name; outputs go where the command line (or vidgen itself) says. These checks run
after the config resolves and before anything is read or loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen.config import Resolved
from vidgen.config.flags import flag
from vidgen.config.kinds import input_fields
from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, InputError, ModelError, out_of_memory
from vidgen.core.hashes import short
from vidgen.core.limits import MAX_FRAMES, MAX_PROMPT_CHARS, MAX_SIDE, MAX_STEPS, MEMORY_FACTOR, pseudo_file
from vidgen.models.components import PICKLE_SUFFIXES, file_sha256

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", flags=re.IGNORECASE)
# Model fields that name weights vidgen may load.
_WEIGHTS = {
    "id": "model",
    "motion_adapter": "motion adapter",
    "controlnet": "ControlNet",
    "base_config": "base config",
    "transformer": "transformer file",
    "transformer_2": "transformer_2 file",
    "text_encoder": "text encoder file",
    # --enhance-prompt's LLM: named by a manifest or sidecar, it loads as their models do.
    "enhancer": "prompt enhancer",
    "preview_decoder": "preview decoder",
}


@dataclass
class Grants:
    """What only flags typed now may allow (see above). `folders` maps the layer
    label of a file being run (a replayed sidecar, a manifest) to its folder, where its inputs
    may be read from without --allow-inputs."""

    allow_inputs: bool = False
    skip_memory_check: bool = False
    folders: dict[str, Path] = field(default_factory=dict)


def input_refs(inputs: Any) -> Iterator[tuple[str, str]]:
    """(field, file or URL) for every input the config's `inputs` name; a list field
    (reference_images) gives one pair per entry."""
    for name in input_fields():
        value = inputs.get(name) if isinstance(inputs, dict) else getattr(inputs, name, None)
        for ref in value if isinstance(value, list) else [value]:
            if ref:
                yield name, str(ref)


def typed(label: str | None) -> bool:
    """Whether a field's source is the command line (a flag or --set typed now)."""
    return bool(label) and str(label).startswith("cli:")


def where(label: str) -> str:
    """A layer label as a reader would say it: `replay:clip.json` -> clip.json."""
    kind, _, name = label.partition(":")
    return {"preset": f"preset {name}", "job": f"{name} of the manifest"}.get(kind, name or label)


def is_url(ref: str) -> bool:
    """http(s) and any other scheme (ftp:, file:, data:): nothing local about them."""
    return bool(_SCHEME.match(ref)) and not re.match(r"^[a-zA-Z]:[\\/]", ref)


# -- permissions ------------------------------------------------------------------------------


def pickle_files(cfg: RunConfig) -> list[str]:
    """The weights the config names that are pickle files (by their suffix)."""
    named = [getattr(cfg.model, name) for name in _WEIGHTS]
    named += [lora.source for lora in cfg.model.loras or []]
    named += [step.model for step in cfg.output.finish or []]  # --interpolate-model, --upscale
    return [ref for ref in named if ref and Path(ref).suffix.lower() in PICKLE_SUFFIXES]


def check_pickles(resolved: Resolved) -> None:
    """A file that sets model.allow_pickle gets exit 5: only --allow-pickle, typed now, allows
    weights that can run code when loaded."""
    cfg = resolved.config
    label = resolved.sources.get("model.allow_pickle", "default")
    if not cfg.model.allow_pickle or typed(label):
        return
    files = pickle_files(cfg)
    named = f" (it names {', '.join(files)})" if files else ""
    raise ModelError(
        f"{where(label)} asks for pickle weights (model.allow_pickle: true){named}, which can run code when "
        "loaded; only the command line can allow them: add --allow-pickle if you trust where it came from."
    )


def check_pickle_files(cfg: RunConfig) -> None:
    """Exit 5 for weights named by a pickle suffix, before anything is read, unless pickles are
    allowed (the loader checks each file again when it locates it)."""
    files = [] if cfg.model.allow_pickle else pickle_files(cfg)
    if files:
        raise ModelError(
            f"{', '.join(files)}: pickle weights, which can run code when loaded, are refused; use .safetensors "
            "files, or add --allow-pickle only if you trust where they came from."
        )


def check_output(resolved: Resolved) -> None:
    """A preset may name outputs inside the working folder only (relative, no `..`)."""
    label = resolved.sources.get("output.path", "default")
    if not label.startswith("preset:"):
        return
    path = resolved.config.output.path
    if path.startswith(("~", "/", "\\")) or re.match(r"^[a-zA-Z]:", path) or ".." in Path(path).parts:
        raise ConfigError(
            f"output.path {path} (from {where(label)}) leaves the working folder; a preset may only name "
            "relative paths below it. Choose the output with --out."
        )


def outside_inputs(resolved: Resolved, folders: dict[str, Path]) -> list[tuple[str, str]]:
    """(input, label of the layer that named it) for each input a file named (not the command
    line) that is a URL or lies outside that file's folder. `folders` maps layer labels to the
    folder their file is in; presets are added from the resolved chain. A label with no folder
    trusts nothing."""
    folders = {**{f"preset:{p['name']}": Path(p["path"]).parent for p in resolved.presets}, **folders}
    found = []
    for name, ref in input_refs(resolved.config.inputs):
        label = resolved.sources.get(f"inputs.{name}", "default")
        if typed(label):
            continue
        if is_url(ref) or not _inside(Path(ref), folders.get(label)):
            found.append((ref, label))
    # Keyframe images and conditioning clips are inputs too.
    label = resolved.sources.get("inputs.conditions", "default")
    for condition in resolved.config.inputs.conditions or []:
        ref = condition.image or condition.video
        if ref and not typed(label) and (is_url(ref) or not _inside(Path(ref), folders.get(label))):
            found.append((ref, label))
    return found


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.expanduser().resolve().relative_to(folder.expanduser().resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def check_inputs(resolved: Resolved, folders: dict[str, Path], allowed: bool) -> None:
    """Exit 4 naming the inputs a file asks vidgen to read from elsewhere, unless --allow-inputs."""
    outside = [] if allowed else outside_inputs(resolved, folders)
    if outside:
        refs = ", ".join(ref for ref, _ in outside)
        raise InputError(
            f"{where(outside[0][1])} asks to read {refs}: URLs and files outside its folder are read only when "
            "you say so; check them, then add --allow-inputs (or name inputs yourself with --set inputs.NAME=PATH)."
        )


# -- cost -------------------------------------------------------------------------------------


def check_cost(cfg: RunConfig) -> None:
    """Exit 3 for prompts, frames, sizes and steps beyond what any supported model can use,
    before a tokenizer or a model sees them."""
    texts = {"the prompt": cfg.inputs.prompt, "the negative prompt": cfg.inputs.negative_prompt}
    texts.update({f"the prompt at frame {frame}": text for frame, text in (cfg.inputs.prompts or {}).items()})
    for name, text in texts.items():
        if text is not None and len(text) > MAX_PROMPT_CHARS:
            raise ConfigError(
                f"{name} is {len(text):,} characters; vidgen takes at most {MAX_PROMPT_CHARS:,}, far beyond any "
                "model's text context. Shorten it."
            )
    s = cfg.sampling
    limits = [
        ("sampling.num_frames", s.num_frames, MAX_FRAMES, "frames"),
        ("inputs.max_frames", cfg.inputs.max_frames, MAX_FRAMES, "frames"),
        ("sampling.height", s.height, MAX_SIDE, "pixels"),
        ("sampling.width", s.width, MAX_SIDE, "pixels"),
        ("sampling.num_inference_steps", s.num_inference_steps, MAX_STEPS, "steps"),
    ]
    for path, value, limit, unit in limits:
        if value is not None and value > limit:
            raise ConfigError(
                f"{flag(path)} {value} is more than any supported model can use; the limit is {limit:,} {unit}."
            )


def machine_memory(device: str) -> tuple[float, str]:
    """(bytes, what they are) of the memory a run on `device` has: the card's, or the RAM."""
    import os

    if device.startswith("cuda"):
        import torch

        return float(torch.cuda.get_device_properties(device).total_memory), f"{device}'s memory"
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "this machine's RAM"


def check_skip(cfg: RunConfig, skip: bool) -> None:
    """--skip-memory-check goes with --memory manual only (checked before planning: an auto plan
    turns into manual settings)."""
    if skip and cfg.optimization.memory != "manual":
        raise ConfigError(
            "--skip-memory-check runs a plan vidgen estimates cannot fit, so it needs --memory manual; "
            "--memory auto only picks plans that fit."
        )


def check_memory(plan: Any, skip: bool) -> None:
    """Exit 6 before loading when the planned peak is far above the machine's memory: such a run
    can only fail (or swap the machine to a halt). `--memory manual --skip-memory-check` runs it."""
    if skip or plan.memory is None:
        return
    have, what = machine_memory(plan.device)
    peak = plan.memory.estimate.peak
    if peak > MEMORY_FACTOR * have:
        gib = 1024**3
        out_of_memory(
            f"the planned peak memory is {peak / gib:,.1f} GiB, over {MEMORY_FACTOR:g}x {what} "
            f"({have / gib:,.1f} GiB); use fewer --frames or a smaller --height/--width, or, if you mean it, "
            "--memory manual --skip-memory-check.",
            "plan",
        )


# -- what a replay reads ------------------------------------------------------------------------


def reads(cfg: RunConfig, recorded: dict[str, Any], outside: list[str]) -> Iterator[str]:
    """One line per model, LoRA and input a run will read, for the user to check first.
    `recorded` is the sidecar's `model` block (LoRA hashes); `outside` the inputs that lie
    outside the replayed file's folder (allowed by --allow-inputs)."""
    model = cfg.model
    revision = f" at revision {model.revision}" if model.revision else ""
    for name, what in _WEIGHTS.items():
        ref = getattr(model, name)
        if ref and (name != "enhancer" or cfg.inputs.enhance_prompt):
            yield f"{what} {ref}{revision if name == 'id' else ''} ({_kind(ref)})"
    hashes = {lora.get("source"): lora.get("sha256") for lora in recorded.get("loras") or [] if isinstance(lora, dict)}
    for lora in model.loras or []:
        yield f"LoRA {lora.source} x{lora.scale:g} ({_kind(lora.source)}{_hash(lora.source, hashes.get(lora.source))})"
    yield from _component_files(recorded)
    for name, ref in input_refs(cfg.inputs):
        if ref:
            note = "URL" if is_url(ref) else "local"
            note += ", outside the replayed file's folder" if ref in outside and not is_url(ref) else ""
            yield f"{name} {ref} ({note})"
    for condition in cfg.inputs.conditions or []:
        ref = condition.image or condition.video or ""
        note = "URL" if is_url(ref) else "local"
        note += ", outside the replayed file's folder" if ref in outside and not is_url(ref) else ""
        yield f"{'keyframe' if condition.image else 'clip'} {ref} at frame {condition.frame_index} ({note})"


def _component_files(recorded: dict[str, Any]) -> Iterator[str]:
    """A line per single-file component the run loaded (`model.files`: a GGUF transformer...)."""
    files = recorded.get("files") if isinstance(recorded.get("files"), dict) else {}
    for component, record in files.items():
        source = record.get("source") if isinstance(record, dict) else None
        if not isinstance(source, str):
            continue
        repo, path = record.get("repo"), record.get("path")
        if repo:
            at = f" at revision {record['revision']}" if record.get("revision") else ""
            where, local = f"Hugging Face Hub {repo}{at}", path if isinstance(path, str) else ""
        else:
            where, local = _kind(source), source
        yield f"{component} file {source} ({where}{_hash(local, record.get('sha256'))})"


def _kind(ref: str) -> str:
    if ref.startswith("tiny:"):
        return "tiny model, built locally"
    path = Path(ref).expanduser()
    if path.is_dir():
        return f"local folder {path.resolve()}"
    if path.exists() or path.suffix:
        return f"local file {path.resolve()}"
    return "Hugging Face Hub"


def _hash(ref: str, recorded: str | None) -> str:
    """`, sha256 abc...` of a local weights file, and whether it is the one recorded (the hash
    comes through the hash cache: a file hashed before at its size and mtime is not read)."""
    path = Path(ref).expanduser()
    if not isinstance(recorded, str):
        recorded = None
    if not path.is_file() or pseudo_file(path):
        return f", recorded sha256 {short(recorded)}" if recorded else ""
    try:
        now = file_sha256(path)
    except OSError:
        return f", unreadable; recorded sha256 {short(recorded)}" if recorded else ", unreadable"
    if recorded and recorded != now:
        return f", sha256 {short(now)}; NOT the recorded {short(recorded)}"
    return f", sha256 {short(now)}" + (" as recorded" if recorded else "")
