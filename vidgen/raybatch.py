"""`vidgen batch --ray`: a batch's jobs on a Ray cluster (or a local Ray), one worker per GPU.

The driver (the `vidgen batch` process) keeps vidgen's rules: it reads and checks the manifest,
fixes every seed and skips finished jobs before anything is scheduled, and writes the report.
Workers are Ray actors holding one GPU each (one CPU slot without CUDA); each keeps its loaded
pipeline and is handed the next job of its group as soon as it finishes one, so uneven jobs
balance. A worker (or node) that dies has its job handed to another worker, up to
--max-retries times; the job's claim file, left by the dead worker, is taken over then.
Outputs are written by the workers as in any batch (atomic renames), so --out must be a
folder every node sees (a shared file system) when the cluster has several machines.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from vidgen.errors import ConfigError

log = logging.getLogger("vidgen")

# Environment a worker needs to see what the driver sees (the model cache, offline mode, tests).
_FORWARD = ("VIDGEN_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "DIFFUSERS_")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError('--ray needs Ray: pip install "vidgen[ray]".') from None
    return ray


def _live(queue: Any, worker: int) -> Any:
    """A worker's progress (--progress json's events, phases and steps included), sent to the
    driver as they happen through a Ray queue; the driver writes them out, tagged by worker."""
    from vidgen.progress import JsonEvents

    class Live(JsonEvents):
        def event(self, kind: str, **fields: Any) -> None:
            if kind in ("done", "failed", "skipped"):
                self._end_phase()
            if kind == "job_start":
                self._job = str(fields.get("id"))
            # Fire and forget: calls from one worker reach the queue in order.
            queue.actor.put_nowait.remote({"event": kind, "worker": worker, **fields})

    return Live()


class Worker:
    """One Ray actor: loads a group's pipeline once and runs the jobs it is handed."""

    def __init__(self, number: int, queue: Any) -> None:
        from vidgen.libs import quiet

        quiet()
        self.number = number
        self.current: tuple[str, Any] | None = None
        self.queue = queue
        self.live = _live(queue, number)

    def pid(self) -> int:
        return os.getpid()

    def run(self, job: Any, position: int, total: int, force: bool, take_over: bool) -> dict[str, Any]:
        import ray

        try:
            return self._run(job, position, total, force, take_over)
        finally:
            # A call that waits: it is served after this worker's events, so the driver has them
            # all before it sees the job's row.
            ray.get(self.queue.actor.qsize.remote())

    def _run(self, job: Any, position: int, total: int, force: bool, take_over: bool) -> dict[str, Any]:
        from vidgen import batch as core

        events = self.live.event
        rows: dict[int, dict[str, Any]] = {}
        if not force and core._done(job):
            events("skipped", id=job.id, index=job.index)
            return core._row(job, "skipped", outputs=core._outputs(job))
        if take_over:
            # Ray saw this job's last worker die: its claim names a dead process, maybe on
            # another node whose claims would only expire after minutes.
            with contextlib.suppress(OSError):
                core._claim_path(job).unlink()
        with core.claimed(job) as mine:
            if not mine:
                events("claimed", id=job.id, index=job.index)
                return core._row(job, "claimed")
            self.current, _ok = core._run_job(job, position, total, self.current, self.live, events, self.number, rows)
        rows[job.index]["worker"] = self.number
        return rows[job.index]


def workers_wanted(ray: Any, requested: int | None) -> tuple[int, bool]:
    """(workers, on GPUs): one per GPU the cluster has, else one per CPU slot; --workers caps it."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    slots = gpus or int(resources.get("CPU", 1))
    return max(1, min(requested or slots, slots)), gpus > 0


def run(
    runnable: list[Any],
    *,
    address: str,
    workers: int | None,
    max_retries: int,
    force: bool,
    fail_fast: bool,
    on_event: Callable[..., None] | None,
    on_row: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the jobs on Ray; returns one report row per job (in `runnable` order)."""
    from vidgen import batch as core

    ray = _ray()
    env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARD)}
    init: dict[str, Any] = {
        "include_dashboard": False,
        # Workers' own logs stay in Ray's log folder, and Ray says only what went wrong:
        # stderr carries vidgen's lines (or, with --progress json, its events).
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "runtime_env": {"env_vars": env},
    }
    if address != "local":
        init["address"] = address
    elif workers:
        init["num_cpus"] = workers  # a local Ray sized to the workers asked for
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(**init)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"--ray {address}: could not start or reach Ray ({first}); use local, auto (a cluster started "
                "with `ray start` on this machine) or the head's address (ray://HOST:10001)."
            ) from None
    rows: dict[int, dict[str, Any]] = {}
    try:
        from ray.util.queue import Queue

        count, on_gpu = workers_wanted(ray, workers)
        queue = Queue(actor_options={"num_cpus": 0})
        remote = ray.remote(num_gpus=1, num_cpus=0)(Worker) if on_gpu else ray.remote(num_cpus=1)(Worker)

        def emit(kind: str, **fields: Any) -> None:
            if on_event is not None:
                on_event(kind, **fields)

        # Jobs already done are skipped here, before anything is scheduled.
        groups: dict[str, deque] = {}
        for job in runnable:
            if not force and core._done(job):
                rows[job.index] = core._row(job, "skipped", outputs=core._outputs(job))
                emit("skipped", id=job.id, index=job.index)
                continue
            groups.setdefault(core._group_key(job.resolved), deque()).append(job)
        total = sum(len(queue) for queue in groups.values())
        retries: dict[int, list[dict[str, Any]]] = {}
        actors: dict[int, tuple[Any, int, str | None]] = {}  # number -> (handle, pid, group)
        pending: dict[Any, tuple[int, Any, bool]] = {}  # ref -> (worker number, job, take_over)
        next_number = [0]
        stop = [False]
        position = [0]

        def start_workers(how_many: int) -> list[int]:
            """New actors, started together (each imports torch and diffusers first)."""
            numbers = list(range(next_number[0], next_number[0] + how_many))
            next_number[0] += how_many
            handles = [remote.remote(number, queue) for number in numbers]
            for number, handle, pid in zip(numbers, handles, ray.get([h.pid.remote() for h in handles]), strict=True):
                actors[number] = (handle, pid, None)
                emit("worker", worker=number, pid=pid, gpu=on_gpu)
            return numbers

        def start_worker() -> int:
            return start_workers(1)[0]

        def next_job(number: int) -> tuple[Any, bool] | None:
            """The next job of the worker's group; else of the group with the most jobs left."""
            handle, pid, group = actors[number]
            if stop[0]:
                return None
            if group not in groups or not groups[group]:
                busy = {g for n, (_, _, g) in actors.items() if n != number}
                left = [(len(q), g not in busy, g) for g, q in groups.items() if q]
                if not left:
                    return None
                group = max(left)[2]
                actors[number] = (handle, pid, group)
            job = groups[group].popleft()
            return job, job.index in retries

        def dispatch(number: int) -> None:
            picked = next_job(number)
            if picked is None:
                return
            job, take_over = picked
            position[0] += 1
            ref = actors[number][0].run.remote(job, position[0], total, force, take_over)
            pending[ref] = (number, job, take_over)
            emit("dispatched", id=job.id, index=job.index, worker=number)

        for number in start_workers(min(count, total)):
            dispatch(number)

        def relay() -> None:
            """The workers' events so far, written out by the driver."""
            while not queue.empty():
                for item in queue.get_nowait_batch(queue.qsize()):
                    emit(item.pop("event"), **item)

        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
            relay()
            if not ready:
                continue
            ref = ready[0]
            number, job, _take = pending.pop(ref)
            try:
                row = ray.get(ref)
            except (
                ray.exceptions.RayActorError,
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.NodeDiedError,
            ) as exc:
                died = {"worker": number, "pid": actors[number][1], "error": type(exc).__name__}
                retries.setdefault(job.index, []).append(died)
                actors.pop(number, None)
                if len(retries[job.index]) <= max_retries:
                    log.warning(
                        "worker %s died running job %s (%s); it runs again elsewhere.", number, job.id, died["error"]
                    )
                    emit("retry", id=job.id, index=job.index, worker=number, error=died["error"])
                    group = core._group_key(job.resolved)
                    groups.setdefault(group, deque()).appendleft(job)
                    dispatch(start_worker())
                else:
                    message = f"its worker died {len(retries[job.index])} times (--max-retries {max_retries})"
                    rows[job.index] = core._row(job, "failed", error=("WorkerDied", message))
                    emit("failed", id=job.id, index=job.index, error={"class": "WorkerDied", "message": message})
                    stop[0] = stop[0] or fail_fast
                    if not stop[0] and any(groups.values()):
                        dispatch(start_worker())
                if on_row is not None:
                    on_row(list(rows.values()))
                continue
            relay()  # the job's last events come before its next one is handed out
            if job.index in retries:
                row["retries"] = retries[job.index]
            rows[job.index] = row
            if row["status"] == "failed" and fail_fast:
                stop[0] = True
            if on_row is not None:
                on_row(list(rows.values()))
            dispatch(number)
        for handle, _pid, _group in actors.values():
            with contextlib.suppress(Exception):
                ray.kill(handle)
    finally:
        if started:
            ray.shutdown()
    for job in runnable:
        rows.setdefault(job.index, core._row(job, "not run"))
    return [rows[job.index] for job in runnable]
