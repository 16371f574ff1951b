"""The family registry: one module per model family, registered by name.

Checks that need to know every family (which ones take a field or an optimization) live here;
the rest of a family's rules live in its own module.
"""

from __future__ import annotations

import difflib

from vidgen.config.layers import Layer
from vidgen.config.schema import RunConfig
from vidgen.errors import ConfigError
from vidgen.families.base import COMMON_SAMPLING, OPTIMIZATIONS, Family
from vidgen.families.cogvideox import CogVideoX, CogVideoX15
from vidgen.families.modelscope import ModelScope

FAMILIES: dict[str, Family] = {}

# The preset each command uses when none is given.
DEFAULT_PRESETS = {"t2v": "cogvideox-5b"}


def register(family: Family) -> None:
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name} is already registered")
    FAMILIES[family.name] = family


def get(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, FAMILIES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown model family '{name}'.{hint} Known: {', '.join(FAMILIES)}.") from None


def defaults_layer(name: str) -> Layer:
    return Layer(label=f"family:{name}", data=get(name).defaults, origin=f"{name} family defaults")


def _takers(test) -> str:
    names = [f.title for f in FAMILIES.values() if test(f)]
    return ", ".join(names) if names else "none of the installed families"


def check(cfg: RunConfig) -> Family:
    """Every rule that can be checked without weights; returns the run's family."""
    family = get(cfg.model.family or "")
    for name, value in cfg.sampling.model_dump().items():
        if name not in COMMON_SAMPLING and value is not None and name not in family.extra_sampling:
            takers = _takers(lambda f, n=name: n in f.extra_sampling)
            raise ConfigError(f"sampling.{name} is not used by {family.title}; it applies to: {takers}.")
    requested = {
        "offload": cfg.optimization.offload != "none",
        **{name: getattr(cfg.optimization, name) for name in OPTIMIZATIONS if name != "offload"},
    }
    for name, wanted in requested.items():
        if wanted and name not in family.optimizations:
            flag = "--" + name.replace("_", "-")
            takers = _takers(lambda f, n=name: n in f.optimizations)
            raise ConfigError(f"{flag} has no effect on {family.title}; it applies to: {takers}.")
    family.check(cfg)
    return family


for _family in (CogVideoX(), CogVideoX15(), ModelScope()):
    register(_family)
