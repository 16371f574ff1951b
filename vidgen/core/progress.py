"""How a run reports its progress: the protocol the runner calls, a silent default, and the
NDJSON events of `--progress json`.

A bottom-layer module (it imports nothing of vidgen), so the runner, batch, Ray workers and the
CLI can all share these without importing one another.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Protocol


class Progress(Protocol):
    """What the runner reports to; the CLI supplies a rich bar, batch runs their own."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self) -> None: ...

    def stop(self) -> None: ...

    def phase(self, name: str) -> None:
        """A stage begins: "load" (the pipeline), "decode" (the VAE) or "encode" (the file);
        denoising is the stretch between start() and the next phase."""

    def component(self, name: str, class_name: str, index: int, count: int) -> None:
        """While loading: a component begins to load, `index` of `count` (0 of 0 for one loaded
        on its own, such as a motion adapter)."""

    def video(self, output: str, after: float | None) -> None:
        """A video begins: its output path, and the seconds expected after its denoising
        (its decode and encode, and the videos after it); None when no earlier run tells."""

    def frames(self, done: int, total: int) -> None:
        """While encoding: `done` of `total` frames written."""

    def preview(self, path: str, step: int, total: int) -> None:
        """While denoising (--live-preview): the preview at `path` now shows step `step` of
        `total` (steps as `advance` counts them)."""


class NullProgress:
    def start(self, total: int, description: str) -> None:
        pass

    def advance(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def phase(self, name: str) -> None:
        pass

    def component(self, name: str, class_name: str, index: int, count: int) -> None:
        pass

    def video(self, output: str, after: float | None) -> None:
        pass

    def frames(self, done: int, total: int) -> None:
        pass

    def preview(self, path: str, step: int, total: int) -> None:
        pass


class JsonEvents:
    """--progress json: one JSON object per line on stderr, for wrappers and dashboards.

    A phase (load, decode, encode) is announced when it begins, and `NAME_end` with its
    seconds when it ends; denoising is announced by its steps and ends with `denoise_end`."""

    def __init__(self) -> None:
        self._job: str | None = None
        self._in_batch = False
        self._total = 0
        self._step = 0
        self._phase: tuple[str, float] | None = None
        self._after: float | None = None
        self._denoise_began = 0.0

    def event(self, kind: str, **fields: object) -> None:
        if kind == "job_start":
            self._job, self._in_batch = str(fields.get("id")), True
        if kind in ("done", "failed", "skipped", "summary"):
            self._end_phase()
        sys.stderr.write(json.dumps({"event": kind, "time": round(time.time(), 3), **fields}) + "\n")
        sys.stderr.flush()

    def _end_phase(self) -> None:
        if self._phase is not None:
            name, began = self._phase
            self._phase = None
            self.event(f"{name}_end", id=self._job, seconds=round(time.perf_counter() - began, 4))

    def start(self, total: int, description: str) -> None:
        self._end_phase()
        self._total, self._step = total, 0
        self._denoise_began = time.perf_counter()
        self._phase = ("denoise", self._denoise_began)

    def advance(self) -> None:
        self._step += 1
        fields: dict[str, object] = {"step": self._step, "total": self._total}
        if self._after is not None:
            # The run's ETA: the steps left at this video's rate, then what earlier runs took after.
            per_step = (time.perf_counter() - self._denoise_began) / self._step
            fields["eta_seconds"] = round((self._total - self._step) * per_step + self._after, 2)
        self.event("step", id=self._job, **fields)

    def stop(self) -> None:
        pass

    def phase(self, name: str) -> None:
        self._end_phase()
        self.event(name, id=self._job)
        self._phase = (name, time.perf_counter())

    def component(self, name: str, class_name: str, index: int, count: int) -> None:
        extra = {"index": index, "count": count} if count else {}
        self.event("load_component", id=self._job, component=name, **{"class": class_name}, **extra)

    def frames(self, done: int, total: int) -> None:
        pass  # a line per frame is noise for a wrapper; `encode_end` gives the phase's time

    def preview(self, path: str, step: int, total: int) -> None:
        self.event("preview", id=self._job, path=path, step=step, total=total)

    def video(self, output: str, after: float | None) -> None:
        # A single run's events name the video they are about; a batch's name the job.
        if not self._in_batch:
            self._job = output
        self._after = after
