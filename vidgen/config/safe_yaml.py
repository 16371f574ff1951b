"""YAML for presets and manifests: safe_load without aliases and with a nesting cap.

`yaml.safe_load` builds no Python objects, but it still resolves aliases: a 500-byte file of
nested `*a` references becomes a structure that anything walking it (merging layers, writing a
sidecar) sees as gigabytes (the "billion laughs"), and a few hundred levels of nesting exhaust
Python's recursion. vidgen's files need neither, so the event stream is scanned first (in C
when PyYAML has libyaml) and a document with an alias or deeper than MAX_DEPTH is refused
before anything is built.
"""

from __future__ import annotations

from typing import Any

import yaml

from vidgen.core.errors import ConfigError
from vidgen.core.limits import MAX_DEPTH

# libyaml's loader when PyYAML was built with it: several times faster on large manifests.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def load(text: str, source: str) -> Any:
    """The document in `text`; ConfigError naming `source` (and the line) when it is not
    valid YAML, uses aliases or nests too deeply."""
    try:
        _scan(text, source)
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, checked above
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc}).") from None


def _scan(text: str, source: str) -> None:
    level = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(
                f"{source} line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed in "
                "vidgen files; write the value out where it is used."
            )
        if isinstance(event, _OPEN):
            level += 1
            if level > MAX_DEPTH:
                raise ConfigError(
                    f"{source} line {event.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels, "
                    "the most vidgen reads."
                )
        elif isinstance(event, _CLOSE):
            level -= 1
