"""Pipelines kept loaded between runs of one long-lived process (`vidgen serve`).

A plain run or batch has no keeper: `execute` loads what it needs and the process ends. A server
installs a keeper here, and every run it executes (a forwarded `vidgen t2v`, a manifest line)
asks it for a pipeline before loading one and hands the pipeline back afterwards. The keeper
decides what stays loaded (vidgen/serve/cache.py: an LRU bounded by the memory planner).
"""

from __future__ import annotations

from typing import Any, Protocol


class Keeper(Protocol):
    def take(self, plan: Any) -> Any:
        """A loaded pipeline that runs `plan` as a fresh load would, or None (after making room
        for the one `plan` will load)."""

    def keep(self, plan: Any, loaded: Any) -> None:
        """The pipeline `plan` ran on, to keep for a later run (or free)."""

    def held(self, device: str) -> float:
        """Bytes on `device` held by kept pipelines that the keeper frees when a run needs them:
        the memory planner counts them as free, so a plan does not depend on what is kept."""


_keeper: Keeper | None = None


def install(keeper: Keeper | None) -> None:
    global _keeper
    _keeper = keeper


def keeper() -> Keeper | None:
    return _keeper


def held(device: str) -> float:
    return _keeper.held(device) if _keeper is not None else 0.0
