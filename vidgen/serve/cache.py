"""The pipelines a server keeps loaded: least recently used first out, bounded by the memory
planner's estimates, so a second model evicts the first instead of running out of memory.

A run may reuse a kept pipeline when a batch would (`batch.jobs.group_key`: same model, same
options, same pipeline-shaping fields). A run that needs another model frees kept ones, oldest
first, until its estimated peak fits beside what stays; one that cannot fit even alone is
refused before anything loads (exit 6).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from vidgen.core.errors import out_of_memory

log = logging.getLogger("vidgen.serve")
GIB = 1024**3


@dataclass
class _Kept:
    loaded: Any
    model: str  # the model id, for --status
    device: str
    weights: float  # estimated bytes its weights hold


class Cache:
    """What `vidgen/run/warm.py` asks. `budget`: bytes the kept pipelines and a run's peak may
    use together (--max-memory); None takes the planner's own budget (free memory on the GPU,
    counting what is kept), and no bound on a CPU. `most`: at most this many kept at once."""

    def __init__(self, budget: float | None = None, most: int = 2) -> None:
        self.budget = budget
        self.most = max(1, most)
        self.kept: OrderedDict[str, _Kept] = OrderedDict()
        self.lock = threading.Lock()
        self.evicted = 0

    def take(self, plan: Any) -> Any:
        from vidgen.batch.jobs import group_key

        key = group_key(plan.resolved)
        with self.lock:
            found = self.kept.pop(key, None)
        if found is not None:
            return found.loaded
        need, weights = _estimate(plan)
        budget = self.budget
        if budget is None and plan.memory is not None and plan.memory.budget:
            budget = plan.memory.budget
        if budget is not None and need > budget:
            model = plan.resolved.config.model.id or plan.family.title
            out_of_memory(
                f"{model} needs an estimated {need / GIB:.2f} GiB, more than the server's "
                f"{budget / GIB:.2f} GiB (vidgen serve --max-memory); use fewer --frames or a smaller size, "
                "or restart the server with a larger --max-memory."
            )
        with self.lock:
            while self.kept and (
                len(self.kept) >= self.most
                or (budget is not None and sum(k.weights for k in self.kept.values()) + need > budget)
            ):
                _key, old = self.kept.popitem(last=False)
                log.info("freeing %s to load %s", old.model, plan.resolved.config.model.id)
                self.evicted += 1
                _free(old)
        plan.serve_weights = weights  # kept with the pipeline when it comes back
        return None

    def keep(self, plan: Any, loaded: Any) -> None:
        from vidgen.batch.jobs import group_key

        key = group_key(plan.resolved)
        weights = getattr(plan, "serve_weights", None)
        if weights is None:
            weights = _estimate(plan)[1]
        kept = _Kept(loaded, str(plan.resolved.config.model.id or plan.family.title), plan.device, weights)
        with self.lock:
            self.kept[key] = kept
            self.kept.move_to_end(key)
            while len(self.kept) > self.most:
                _key, old = self.kept.popitem(last=False)
                self.evicted += 1
                _free(old)

    def held(self, device: str) -> float:
        with self.lock:
            return sum(k.weights for k in self.kept.values() if k.device == device)

    def status(self) -> list[dict[str, Any]]:
        """The kept pipelines, least recently used first."""
        with self.lock:
            return [
                {"model": k.model, "device": k.device, "estimated_weights_bytes": int(k.weights)}
                for k in self.kept.values()
            ]

    def clear(self) -> None:
        with self.lock:
            while self.kept:
                _free(self.kept.popitem(last=False)[1])


def _estimate(plan: Any) -> tuple[float, float]:
    """(estimated peak of the run, estimated bytes of its weights), from the memory planner."""
    if plan.memory is None:
        return 0.0, 0.0
    estimate = plan.memory.estimate
    return float(estimate.peak), float(sum(estimate.weights.values()))


def _free(kept: _Kept) -> None:
    kept.loaded = None
    gc.collect()
    if kept.device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
