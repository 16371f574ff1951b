"""Validated run configuration, presets and layering."""

from vidgen.config.layers import Layer, Resolved, available_presets, load_preset, resolve, set_layer
from vidgen.config.schema import RunConfig

__all__ = ["Layer", "Resolved", "RunConfig", "available_presets", "load_preset", "resolve", "set_layer"]
