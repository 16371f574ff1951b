"""Progress on a terminal: one line per phase of a run (load, denoise, decode, encode).

Denoising has steps, so it gets a bar with its rate and an ETA; the other phases report no
steps (diffusers' VAEs decode in one call), so they show a spinner and their elapsed time, and
keep their final time on screen when done. A batch adds an overall bar whose ETA comes from
the jobs done so far. Only ever shown on a terminal, never in pipes or with --quiet.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from rich.progress import ProgressColumn, Task
from rich.text import Text

LABELS = {"load": "load", "decode": "decode", "encode": "encode"}


class _Rate(ProgressColumn):
    """Steps per second (or seconds per step, for slow models) of a task with a total."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        # Components and frames fed to ffmpeg have no meaningful rate; steps do.
        if task.total is None or not speed or task.description in ("load", "decode", "encode"):
            return Text("")
        text = f"{speed:.2f} it/s" if speed >= 1 else f"{1 / speed:.1f} s/it"
        return Text(text, style="progress.data.speed")


class _Count(ProgressColumn):
    """N/M for tasks that count something (steps, jobs); nothing for the phases."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("counts"):
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total or 0)}", style="progress.download")


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds + 0.5), 60)
    return f"{minutes}:{rest:02d}"


class _Eta(ProgressColumn):
    """ETA while a task with a total runs; the whole run's ETA on the `run` line; nothing for
    phases without steps."""

    def render(self, task: Task) -> Text:
        estimate = task.fields.get("eta")
        if callable(estimate):
            value = None if task.finished else estimate()
            if value is None:
                return Text("")
            seconds, exact = value
            return Text(f"ETA {'' if exact else '≥'}{_clock(seconds)}", style="progress.remaining")
        # Components differ too much in size for their count to predict the rest of a load.
        if task.total is None or task.finished or task.time_remaining is None or task.description == "load":
            return Text("")
        return Text(f"ETA {_clock(task.time_remaining)}", style="progress.remaining")


class _Detail(ProgressColumn):
    """What a phase is busy with (the component being loaded, the live preview), on its line:
    cut with an ellipsis rather than wrapped onto more lines."""

    def __init__(self) -> None:
        from rich.table import Column

        super().__init__(table_column=Column(no_wrap=True, overflow="ellipsis"))

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("detail", "")), style="progress.description")


class RichProgress:
    """Rich lines on stderr for the phases of each video; with `jobs`, also an overall bar over
    a batch's jobs (advanced by `job_event`), kept on screen between jobs."""

    def __init__(self, jobs: int | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description:<9}"),
            BarColumn(),
            _Count(),
            _Rate(),
            TimeElapsedColumn(),
            _Eta(),
            _Detail(),
            console=Console(stderr=True),
        )
        self._tasks: list[Any] = []  # this video's phase lines
        self._current: Any = None
        self._overall: Any = None
        self._run: Any = None  # a single run's line: its elapsed time and ETA over every phase
        self._running = False
        self._after: float | None = None  # seconds expected after denoising (earlier runs)
        self._denoise: Any = None
        self._denoised_at: float | None = None
        if jobs is not None:
            self._begin()
            self._overall = self._bar.add_task("all jobs", total=jobs, counts=True)

    def _begin(self) -> None:
        if not self._running:
            self._bar.start()
            self._running = True

    def _close_current(self) -> None:
        if self._current is not None:
            task = self._task(self._current)
            if task.total is None:
                self._bar.update(self._current, total=1, completed=1)
            elif task.description == "load":
                self._bar.update(self._current, completed=task.total, detail="")
            self._bar.stop_task(self._current)
            self._current = None

    def _clear(self) -> None:
        """A new video: the previous one's phase lines go (a batch keeps only its overall bar)."""
        self._close_current()
        for task in self._tasks:
            self._bar.remove_task(task)
        self._tasks = []

    def start(self, total: int, description: str) -> None:
        self._begin()
        if any(self._bar.tasks[self._bar.task_ids.index(t)].description == "denoising" for t in self._tasks):
            self._clear()  # the next video of a run: start its lines afresh
        self._close_current()
        self._current = self._bar.add_task(description, total=total, counts=True)
        self._tasks.append(self._current)
        self._denoise, self._denoised_at = self._current, None

    def _task(self, task_id: Any) -> Any:
        return self._bar.tasks[self._bar.task_ids.index(task_id)]

    def _run_eta(self) -> tuple[float, bool] | None:
        """(seconds, exact) left in the run: the denoising's own ETA plus what earlier runs of
        this model and size took afterwards; a lower bound (≥) when no earlier run tells."""
        import time

        if self._denoise is None:
            return None  # loading: nothing to extrapolate yet
        if self._denoised_at is None:
            left = self._task(self._denoise).time_remaining
            if left is None:
                return None
            return (left + (self._after or 0.0), self._after is not None)
        if self._after is None:
            return None
        return (max(0.0, self._after - (time.monotonic() - self._denoised_at)), True)

    def video(self, output: str, after: float | None) -> None:
        self._after, self._denoise, self._denoised_at = after, None, None
        if self._overall is None and self._run is None:
            self._begin()
            self._run = self._bar.add_task("run", total=None, eta=self._run_eta)

    def frames(self, done: int, total: int) -> None:
        if self._current is not None:
            self._bar.update(self._current, total=total, completed=done, counts=True)

    def preview(self, path: str, step: int, total: int) -> None:
        # On the denoising line itself: where to look, and how current it is, without a line per step.
        # Called from the preview thread (vidgen.run.live), so the line is read once.
        task = self._denoise
        if task is not None:
            from pathlib import Path

            from vidgen.core.terminal import escape

            with suppress(KeyError):  # the line went while the preview was written
                self._bar.update(task, detail=f"preview at step {step}: {escape(Path(path).name)}")

    def component(self, name: str, class_name: str, index: int, count: int) -> None:
        if self._current is None:
            return
        if count:
            self._bar.update(self._current, total=count, completed=index - 1, counts=True, detail=name)
        else:
            self._bar.update(self._current, detail=name)
        self._bar.refresh()

    def advance(self) -> None:
        if self._current is not None:
            self._bar.advance(self._current)
            # Redrawn at every step, not only 10 times a second: a real step takes longer than a
            # redraw, and the rate and ETA are then current the moment a step ends.
            self._bar.refresh()

    def phase(self, name: str) -> None:
        import time

        self._begin()
        if name == "load":
            self._clear()
        if self._denoise is not None and self._denoised_at is None:
            self._denoised_at = time.monotonic()
        self._close_current()
        self._current = self._bar.add_task(LABELS.get(name, name), total=None)
        self._tasks.append(self._current)

    def stop(self) -> None:
        # Denoising and decoding ended; encoding follows, so the display stays up until finish().
        pass

    def job_event(self, kind: str, **fields: Any) -> None:
        """Batch events: a new job clears the last one's lines; a finished, failed or skipped
        job moves the overall bar."""
        if kind == "job_start":
            self._clear()
        if kind in ("done", "failed", "skipped"):
            self._close_current()
            self._bar.advance(self._overall)

    def finish(self) -> None:
        self._close_current()
        if self._run is not None:
            self._bar.update(self._run, total=1, completed=1)
            self._bar.stop_task(self._run)
        if self._running:
            self._bar.stop()
            self._running = False
