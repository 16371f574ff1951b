"""The family registry: one module per model family, registered by name.

Checks that need to know every family (which ones take a field or an optimization) live here;
the rest of a family's rules live in its own module.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
from collections.abc import Callable
from typing import Any

from vidgen.config.flags import LORA_EXPERT_FLAGS, flag, register_flag
from vidgen.config.kinds import INPUT_KINDS, main_input
from vidgen.config.layers import Layer
from vidgen.config.schema import RunConfig, register_sampling_field
from vidgen.core.errors import ConfigError
from vidgen.core.limits import MAX_STEPS
from vidgen.families.base import MODEL_OPTIONS, OPTIMIZATIONS, Family, Option, context_parallel, denoisers
from vidgen.families.base import mode_options as family_mode_options

# The family modules listed first by `vidgen models`, in this order; each defines FAMILIES, the
# classes it registers. Any other module of this package that defines FAMILIES is found by itself
# and follows, by name (`_modules`): a new family is one file, with no line to add here.
MODULES = (
    "cogvideox",
    "modelscope",
    "svd",
    "i2vgen_xl",
    "animatediff",
    "text2video_zero",
    "wan",
    "wan_vace",
    "skyreels",
    "hunyuan",
    "hunyuan15",
    "ltx",
    "ltx2",
    "kandinsky5",
    "sana_video",
    "mochi",
    "allegro",
    "latte",
    "easyanimate",
    "helios",
    "cosmos",
)

FAMILIES: dict[str, Family] = {}
# Every family-declared option by config field, shared by the families that declare it.
OPTIONS: dict[str, Option] = {}

# The preset each command uses when none names a model.
DEFAULT_PRESETS = {
    "t2v": "cogvideox-5b",
    "i2v": "svd-xt",
    "v2v": "cogvideox-5b-v2v",
    "animate": "animatediff",
    "control": "text2video-zero-controlnet",
}


def register(family: Family) -> None:
    """Add a family, and make its own options config fields with flags."""
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name} is already registered")
    for option in family.options:
        known = OPTIONS.get(option.field)
        if known is None:
            register_sampling_field(option.field, option.annotation())
            register_flag(option.path, option.flag)
            OPTIONS[option.field] = option
        elif known != option:
            raise ValueError(f"{family.name} declares {option.path} unlike an earlier family; share one Option")
    FAMILIES[family.name] = family


def mode_options(mode: str) -> dict[str, tuple[Option, list[str]]]:
    """field -> (option, titles of the families that take it in `mode`), for the CLI."""
    found: dict[str, tuple[Option, list[str]]] = {}
    for family in FAMILIES.values():
        for option in family_mode_options(family, mode):
            found.setdefault(option.field, (option, []))[1].append(family.title)
    return found


def setup_fields(name: str | None = None) -> frozenset[str]:
    """Sampling fields that shape a loaded pipeline: jobs that differ in one cannot share it.
    With a family name, only that family's (HunyuanVideo-1.5 sets its guidance at setup, while
    other families' pipelines take it per call)."""
    chosen = [FAMILIES[name]] if name in FAMILIES else list(FAMILIES.values())
    fields = {option.field for family in chosen for option in family.options if option.setup}
    for family in chosen:
        fields |= family.loading.setup_fields
    return frozenset(fields)


def for_model(index: dict[str, Any]) -> tuple[Family, str] | None:
    """(family, mode) of a model from its model_index.json, or None when no family drives it."""
    name = index.get("_class_name")
    for family in FAMILIES.values():
        for mode, spec in family.modes.items():
            if spec.pipeline == name and family.matches(index):
                return family, mode
    return None


def for_model_mode(index: dict[str, Any], mode: str) -> Family | None:
    """A family that runs this model in `mode` through its own pipeline (`Family.loads_from`)."""
    for family in FAMILIES.values():
        spec = family.modes.get(mode)
        if spec is not None and index.get("_class_name") in spec.loads_from and family.matches(index):
            return family
    return None


def get(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, FAMILIES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown model family '{name}'.{hint} Known: {', '.join(FAMILIES)}.") from None


def defaults_layer(name: str, mode: str) -> Layer:
    family = get(name)
    _check_mode(family, mode)  # a family set by --set or a preset may not do this command's mode
    return Layer(label=f"family:{name}", data=family.defaults(mode), origin=f"{name} family defaults")


def _check_mode(family: Family, mode: str) -> None:
    if mode not in family.modes:
        raise ConfigError(
            f"{family.title} does not do {mode}; it does: {', '.join(family.modes)}. "
            f"Families for {mode}: {_takers(lambda f, m: m == mode)}."
        )


def _takers(test: Callable[[Family, str], bool]) -> str:
    """'Stable Video Diffusion (i2v), CogVideoX (t2v, i2v)': the families and modes that pass `test`."""
    names = []
    for family in FAMILIES.values():
        modes = [mode for mode in family.modes if test(family, mode)]
        if modes:
            names.append(f"{family.title} ({', '.join(modes)})")
    return ", ".join(names) if names else "none of the installed families"


# Why an option is refused where the family gives no reason of its own: the reason that holds for
# every family that does not take it (the UNet-era ones call SDPA directly).
DEFAULT_REASONS = {
    "optimization.attention_backend": (
        "its attention calls PyTorch's scaled_dot_product_attention directly, not diffusers' dispatcher, so a "
        "backend would change nothing (SDPA already picks flash or memory-efficient kernels)"
    ),
}


def _refuse(family: Family, mode: str, path: str, takers: str) -> ConfigError:
    hint = family.hints.get(path) or DEFAULT_REASONS.get(path)
    message = f"{flag(path)} is not used by {family.title} {mode}; it applies to: {takers}."
    return ConfigError(f"{message[:-1]}; {hint}." if hint else message)


def _check_model_options(family: Family, cfg: RunConfig) -> None:
    """--scheduler names, --lora-high/--lora-low experts and --cache kinds the family takes."""
    scheduler = cfg.model.scheduler
    schedulers = family.takes.schedulers
    if scheduler is not None and "model.scheduler" in family.accepts(cfg.mode) and scheduler not in schedulers:
        raise ConfigError(f"--scheduler {scheduler} does not fit {family.title}; it takes: {', '.join(schedulers)}.")
    experts = len(denoisers(family))
    for lora in cfg.model.loras or []:
        if lora.expert in LORA_EXPERT_FLAGS and experts < 2:
            two = _takers(lambda f, m: len(denoisers(f)) > 1 and "model.loras" in f.accepts(m))
            raise ConfigError(
                f"{LORA_EXPERT_FLAGS[lora.expert]} targets one expert of a two-expert model, and {family.title} has "
                f"one denoiser; use --lora. Two-expert families: {two}."
            )
    cache = cfg.optimization.cache
    if cache is not None and "cache" in family.takes.optimizations:
        kind = cache.partition(":")[0]
        if kind not in family.takes.caches:
            path = f"optimization.cache={kind}"
            reason = family.hints.get(path)
            message = (
                f"--cache {kind} does not run on {family.title}; it takes: {', '.join(sorted(family.takes.caches))}"
            )
            raise ConfigError(f"{message} ({reason})." if reason else f"{message}.")


def check(cfg: RunConfig) -> Family:
    """Every rule that can be checked without weights; returns the run's family.

    A field or option the family would ignore is an error naming the families that use it:
    vidgen never drops a setting silently.
    """
    family = get(cfg.model.family or "")
    _check_mode(family, cfg.mode)
    if not family.takes.text and cfg.inputs.prompt:
        texts = _takers(lambda f, m: f.takes.text and m == cfg.mode)
        raise ConfigError(
            f"{family.title} takes no prompt: it animates the image alone. Drop the prompt, "
            f"or pick a family that takes one: {texts}."
        )
    if cfg.sampling.clip_skip is not None:
        raise ConfigError(
            "sampling.clip_skip is refused: with transformers 5 every diffusers pipeline crashes on it "
            "(CLIPTextModel lost .text_model; diffusers #14124). Remove it until that is fixed."
        )
    _check_fields(family, cfg)
    _check_model_options(family, cfg)
    _check_outputs(family, cfg)
    _check_inputs(family, cfg)
    family.check(cfg)
    _check_steps(family, cfg)
    return family


def _check_steps(family: Family, cfg: RunConfig) -> None:
    """The run denoises at least one step. A family whose call takes `strength` (video-to-video)
    runs int(steps x strength) of them, as its `step_count` says: 1 step x 0.7 is none, which
    diffusers would take until the decode fails on an empty tensor."""
    call = family.call_kwargs(cfg, 0)
    steps = call.get("num_inference_steps")
    if not isinstance(steps, int) or family.step_count(cfg, call) >= 1:
        return
    enough = next(
        (n for n in range(steps + 1, MAX_STEPS + 1) if family.step_count(cfg, {**call, "num_inference_steps": n})),
        None,
    )
    more = f"use {flag('sampling.num_inference_steps')} {enough} or more" if enough else "raise it"
    strength = call.get("strength")
    if isinstance(strength, (int, float)):
        least = math.ceil(100 / steps) / 100  # strength is at most 1
        stronger = f"{flag('sampling.strength')} {least:g}" + (" or higher" if least < 1 else "")
        raise ConfigError(
            f"{flag('sampling.num_inference_steps')} {steps} x {flag('sampling.strength')} {strength:g} rounds down "
            f"to 0 denoising steps ({family.title} runs int(steps x strength) of them); {more}, or {stronger}."
        )
    raise ConfigError(
        f"{flag('sampling.num_inference_steps')} {steps} leaves {family.title} {cfg.mode} no denoising step; {more}."
    )


def _check_fields(family: Family, cfg: RunConfig) -> None:
    """Every set input, sampling and model field, and every optimization, is one the family uses."""
    accepted = family.accepts(cfg.mode)
    for section in ("inputs", "sampling", "model"):
        for name, value in getattr(cfg, section).model_dump().items():
            path = f"{section}.{name}"
            if section == "model" and name not in MODEL_OPTIONS:
                continue  # id, revision, dtype...: every family has them
            if value is not None and path not in accepted:
                raise _refuse(family, cfg.mode, path, _takers(lambda f, m, p=path: p in f.accepts(m)))
    opt = cfg.optimization
    for name in OPTIMIZATIONS:
        value = getattr(opt, name)
        wanted = value != "none" if name == "offload" else value not in (None, False)
        if wanted and name not in family.takes.optimizations:
            path = f"optimization.{name}"
            raise _refuse(family, cfg.mode, path, _takers(lambda f, m, n=name: n in f.takes.optimizations))


def _check_outputs(family: Family, cfg: RunConfig) -> None:
    """--save-latents, --audio and --save-control only where the run makes them."""
    if cfg.output.save_latents and not family.decoding.latents:
        raise ConfigError(
            f"--save-latents is not available for {family.title} {cfg.mode}: its pipeline decodes inside its own "
            f"steps; families with it: {_takers(lambda f, m: f.decoding.latents)}."
        )
    if cfg.output.audio is not None and not family.modes[cfg.mode].audio:
        sound = _takers(lambda f, m: f.modes[m].audio)
        raise ConfigError(
            f"--{'' if cfg.output.audio else 'no-'}audio: {family.title} makes no sound; drop the flag. "
            f"Families with sound: {sound}."
        )
    if cfg.output.save_control and cfg.mode != "control":
        raise ConfigError("--save-control writes the control maps of `vidgen control`; this is not a control run.")


def _check_inputs(family: Family, cfg: RunConfig) -> None:
    """The mode's required input is there, --gpus has a plan, and a v2v --max-frames leaves a clip."""
    main = main_input(cfg.mode)
    spec = family.modes[cfg.mode]
    if main is not None and not cfg.inputs.get(main.field) and main.field not in spec.optional:
        raise ConfigError(f"vidgen {cfg.mode} needs {main.flag}.")
    for name in sorted(spec.requires):
        if not cfg.inputs.get(name):
            kind = INPUT_KINDS.get(name)
            if kind is None:  # keyframes (inputs.conditions) are not a file kind: named by their flag
                raise ConfigError(
                    f"{family.title} needs at least one {flag(f'inputs.{name}')}; see vidgen {cfg.mode} -h."
                )
            raise ConfigError(f"{family.title} needs {kind.flag} {kind.metavar}: {kind.help.partition(': ')[2]}")
    if cfg.optimization.gpus > 1 and not (cfg.mode in ("t2v", "i2v") and context_parallel(family, cfg.mode)):
        raise ConfigError(
            f"--gpus {cfg.optimization.gpus} splits one video over GPUs by context parallelism, and diffusers has "
            f"no context-parallel plan for the {family.title} {cfg.mode} denoiser; families that take --gpus: "
            f"{_takers(lambda f, m: m in ('t2v', 'i2v') and context_parallel(f, m))}."
        )
    cap = cfg.inputs.max_frames
    if cfg.mode == "v2v" and cap is not None and not family.grid.usable(cap):
        raise ConfigError(
            f"--max-frames {cap} is too few: {family.title} takes {family.grid.rule}, "
            f"at least {family.grid.min_frames}."
        )


# Why a family module named in VIDGEN_FAMILIES could not be added (the CLI says it, exit 3).
PLUGIN_ERROR: str | None = None


def _load_plugins(names: str) -> None:
    """Families from outside vidgen: VIDGEN_FAMILIES=module[,module] names importable modules
    (on PYTHONPATH) that define FAMILIES as vidgen's own family modules do, and may declare
    their own input kinds and options. Like PYTHONPATH it is the user's own environment, never
    read from a file."""
    global PLUGIN_ERROR
    for name in filter(None, (part.strip() for part in names.split(","))):
        try:
            for cls in importlib.import_module(name).FAMILIES:
                register(cls())
        except Exception as exc:  # any failure of foreign code: reported once, by the CLI
            PLUGIN_ERROR = f"VIDGEN_FAMILIES names {name}, which could not be added: {type(exc).__name__}: {exc}"
            return


def _modules() -> list[str]:
    """MODULES, then the package's other modules by name (those without FAMILIES register nothing)."""
    import pkgutil

    found = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.ispkg)
    return [*MODULES, *(name for name in found if name not in MODULES)]


for _module in _modules():
    for _cls in getattr(importlib.import_module(f"vidgen.families.{_module}"), "FAMILIES", ()):
        register(_cls())
_load_plugins(os.environ.get("VIDGEN_FAMILIES", ""))
