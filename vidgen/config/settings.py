"""Machine-level locations, from the environment. Never sampling parameters."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where vidgen keeps what it builds (tiny models): $VIDGEN_CACHE or ~/.cache/vidgen."""
    if env := os.environ.get("VIDGEN_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "vidgen"


def user_preset_dir() -> Path:
    """User presets, looked up before the shipped ones: $VIDGEN_PRESETS or ~/.config/vidgen/presets."""
    if env := os.environ.get("VIDGEN_PRESETS"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "vidgen" / "presets"


def traceback_requested() -> bool:
    return os.environ.get("VIDGEN_TRACEBACK", "") not in ("", "0")
