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
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from vidgen.core.errors import ConfigError, ExitCode, VidgenError

log = logging.getLogger("vidgen")

# How long a replacement worker may take to start (it imports torch and diffusers) before the
# cluster is taken to have no room left for it (a lost node took its slots).
WORKER_START_S = 600


class ClusterLost(VidgenError):
    """Ray lost more than one job's worker (a node or its agent, the event queue, the cluster
    itself): the batch stops with the rows it has, and exit 8, as a batch with jobs not run."""

    exit_code = ExitCode.BATCH_PARTIAL

    def __init__(self, message: str, rows: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.rows = rows


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
    from vidgen.core.progress import JsonEvents

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
    """One Ray actor: keeps a group's pipeline loaded and runs the jobs it is handed."""

    def __init__(self, number: int, queue: Any) -> None:
        from vidgen.batch import jobs as core
        from vidgen.core.libs import quiet

        quiet()
        self.number = number
        self.queue = queue
        live = _live(queue, number)
        self.jobs = core.JobRunner(live, live.event, number)

    def pid(self) -> int:
        return os.getpid()

    def run(
        self, job: Any, position: int, total: int, force: bool, take_over: bool, peers: list[Any] | None = None
    ) -> dict[str, Any]:
        import ray

        try:
            row = self.jobs.run(job, position, total, force=force, take_over=take_over, peers=peers or [])
            if row["status"] in ("done", "failed"):
                row["worker"] = self.number  # which worker ran it, for the report
            return row
        finally:
            # A call that waits: it is served after this worker's events, so the driver has them
            # all before it sees the job's row.
            ray.get(self.queue.actor.qsize.remote())


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
    from vidgen.batch import jobs as core

    ray = _ray()
    started = _connect(ray, address, workers)
    schedule, lost = None, None
    try:
        schedule = _Schedule(ray, workers, force, fail_fast, max_retries, on_event, on_row)
        schedule.skip_done(runnable)
        schedule.run()
    except ray.exceptions.RayError as exc:
        # Not one job's worker (those run again elsewhere): a node or its agent, the event queue,
        # the room to start a worker. What finished stays finished; a rerun resumes.
        lost = exc
        if schedule is not None:
            schedule.abandon()
    finally:
        if started:
            with contextlib.suppress(Exception):  # a cluster that lost its node may not shut down cleanly
                ray.shutdown()
    rows = schedule.rows if schedule is not None else {}
    for job in runnable:
        rows.setdefault(job.index, core.report_row(job, "not run"))
    ordered = [rows[job.index] for job in runnable]
    if lost is not None:
        raise ClusterLost(_lost_message(lost, schedule, ordered), ordered)
    return ordered


def _lost_message(exc: Exception, schedule: Any, rows: list[dict[str, Any]]) -> str:
    """One line: what Ray lost (the worker, its pid and node when Ray says), why, how far the
    batch got, and that the same command resumes it."""
    text = str(exc)
    found = {key: re.search(pattern, text) for key, pattern in _LOST_FIELDS.items()}
    pid = found["pid"].group(1) if found["pid"] else None
    numbers = {str(actor_pid): number for number, (_h, actor_pid, _g) in (schedule.actors if schedule else {}).items()}
    if found["class"] and found["class"].group(1) != "Worker":
        who = f"its {found['class'].group(1)} actor"
    elif pid in numbers:
        who = f"worker {numbers[pid]} (pid {pid})"
    else:
        who = f"a worker (pid {pid})" if pid else "a worker"
    if found["ip"]:
        who += f" on node {found['ip'].group(1)}"
    if found["node"]:
        who += f" (node id {found['node'].group(1)[:12]})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[-1] if lines else ""
    done = sum(row["status"] in ("done", "skipped") for row in rows)
    left = sum(row["status"] == "not run" for row in rows)
    return (
        f"Ray lost {who} ({type(exc).__name__}: {reason}); {done} of {len(rows)} jobs are done and {left} did not "
        "run: rerun the same command to resume (finished jobs are skipped)."
    )


# What Ray's actor errors say about the actor they lost.
_LOST_FIELDS = {
    "class": r"class_name: (\S+)",
    "pid": r"\bpid: (\d+)",
    "ip": r"\bip: (\S+)",
    "node": r"[Nn]ode [Ii][Dd]:? ([0-9a-fA-F]+)",
}


def _connect(ray: Any, address: str, workers: int | None) -> bool:
    """Start a local Ray or join a cluster, unless this process already did; True when this
    call started it (and so shuts it down afterwards)."""
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
    if ray.is_initialized():
        return False
    try:
        ray.init(**init)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"--ray {address}: could not start or reach Ray ({first}); use local, auto (a cluster started "
            "with `ray start` on this machine) or the head's address (ray://HOST:10001)."
        ) from None
    return True


class _Schedule:
    """The driver's side of a Ray batch: jobs queued by group, the workers (Ray actors) and
    what each runs, and the report rows as they come back.

    A worker is handed the next job of its own group, else of the group with the most jobs
    left, so pipelines load as few times as possible and uneven jobs balance. A worker that
    dies has its job put back at the front of its group for a new worker, up to
    `max_retries` times per job."""

    def __init__(
        self,
        ray: Any,
        workers: int | None,
        force: bool,
        fail_fast: bool,
        max_retries: int,
        on_event: Callable[..., None] | None,
        on_row: Callable[[list[dict[str, Any]]], None] | None,
    ) -> None:
        from ray.util.queue import Queue

        self.ray = ray
        self.count, self.on_gpu = workers_wanted(ray, workers)
        # The workers' events travel to the driver through this queue (see _live).
        self.queue = Queue(actor_options={"num_cpus": 0})
        on = {"num_gpus": 1, "num_cpus": 0} if self.on_gpu else {"num_cpus": 1}
        self.remote = ray.remote(**on)(Worker)
        self.force, self.fail_fast, self.max_retries = force, fail_fast, max_retries
        self.on_event, self.on_row = on_event, on_row
        self.rows: dict[int, dict[str, Any]] = {}
        self.groups: dict[str, deque] = {}
        self.retries: dict[int, list[dict[str, Any]]] = {}
        self.actors: dict[int, tuple[Any, int, str | None]] = {}  # number -> (handle, pid, group)
        self.pending: dict[Any, tuple[int, Any, bool]] = {}  # ref -> (worker number, job, take_over)
        self.next_number = 0
        self.stop = False
        self.position = 0
        self.total = 0

    def emit(self, kind: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, **fields)

    def skip_done(self, runnable: list[Any]) -> None:
        """Queue the jobs by group; jobs already done are skipped here, before anything is
        scheduled."""
        from vidgen.batch import jobs as core

        for job in runnable:
            row = core.done_row(job, self.force)
            if row is not None:
                self.rows[job.index] = row
                self.emit("skipped", id=job.id, index=job.index)
                continue
            self.groups.setdefault(core.group_key(job.resolved), deque()).append(job)
        self.total = sum(len(queue) for queue in self.groups.values())

    def run(self) -> None:
        """Start the workers, hand out jobs until none is left, then stop the workers."""
        ray = self.ray
        for number in self.start_workers(min(self.count, self.total)):
            self.dispatch(number)
        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=0.2)
            self.relay()
            if ready:
                self.collect(ready[0])
        for handle, _pid, _group in self.actors.values():
            with contextlib.suppress(Exception):
                ray.kill(handle)

    def start_workers(self, how_many: int) -> list[int]:
        """New actors, started together (each imports torch and diffusers first)."""
        numbers = list(range(self.next_number, self.next_number + how_many))
        self.next_number += how_many
        handles = [self.remote.remote(number, self.queue) for number in numbers]
        pids = self.ray.get([handle.pid.remote() for handle in handles], timeout=WORKER_START_S)
        for number, handle, pid in zip(numbers, handles, pids, strict=True):
            self.actors[number] = (handle, pid, None)
            self.emit("worker", worker=number, pid=pid, gpu=self.on_gpu)
        return numbers

    def next_job(self, number: int) -> tuple[Any, bool, list[Any]] | None:
        """The next job of the worker's group; else of the group with the most jobs left, then
        with the group's other jobs still queued (their prompts are enhanced with its own)."""
        handle, pid, group = self.actors[number]
        if self.stop:
            return None
        peers: list[Any] = []
        if group not in self.groups or not self.groups[group]:
            busy = {g for n, (_, _, g) in self.actors.items() if n != number}
            left = [(len(q), g not in busy, g) for g, q in self.groups.items() if q]
            if not left:
                return None
            group = max(left)[2]
            self.actors[number] = (handle, pid, group)
            # Only the jobs whose prompts an LLM rewrites travel with it.
            peers = [other for other in list(self.groups[group])[1:] if other.resolved.config.inputs.enhance_prompt]
        job = self.groups[group].popleft()
        return job, job.index in self.retries, peers

    def dispatch(self, number: int) -> None:
        picked = self.next_job(number)
        if picked is None:
            return
        job, take_over, peers = picked
        self.position += 1
        ref = self.actors[number][0].run.remote(job, self.position, self.total, self.force, take_over, peers)
        self.pending[ref] = (number, job, take_over)
        self.emit("dispatched", id=job.id, index=job.index, worker=number)

    def relay(self) -> None:
        """The workers' events so far, written out by the driver."""
        while not self.queue.empty():
            for item in self.queue.get_nowait_batch(self.queue.qsize()):
                self.emit(item.pop("event"), **item)

    def collect(self, ref: Any) -> None:
        """A worker's call came back: record its job's row and hand the worker its next job,
        or, when the worker died, run the job again elsewhere."""
        ray = self.ray
        number, job, _take = self.pending.pop(ref)
        try:
            row = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
            self.lost(number, job, type(exc).__name__)
            return
        self.relay()  # the job's last events come before its next one is handed out
        if job.index in self.retries:
            row["retries"] = self.retries[job.index]
        self.rows[job.index] = row
        if row["status"] == "failed" and self.fail_fast:
            self.stop = True
        if self.on_row is not None:
            self.on_row(list(self.rows.values()))
        self.dispatch(number)

    def abandon(self) -> None:
        """The batch stops (the cluster lost more than a worker): stop the workers still running
        a job and drop those jobs' claims, so the rerun that resumes the batch runs them at once
        instead of waiting for claims of dead workers on other hosts to expire."""
        from vidgen.batch import jobs as core

        for number, job, _take in self.pending.values():
            with contextlib.suppress(Exception):  # on a lost node it is gone already
                self.ray.kill(self.actors[number][0])
            core.drop_claim(job)
        self.pending.clear()

    def lost(self, number: int, job: Any, error: str) -> None:
        """Worker `number` died running `job`: a new worker runs it again, until it has died
        more than --max-retries times; then the job fails."""
        from vidgen.batch import jobs as core

        died = {"worker": number, "pid": self.actors[number][1], "error": error}
        self.retries.setdefault(job.index, []).append(died)
        self.actors.pop(number, None)
        if len(self.retries[job.index]) <= self.max_retries:
            log.warning("worker %s died running job %s (%s); it runs again elsewhere.", number, job.id, error)
            self.emit("retry", id=job.id, index=job.index, worker=number, error=error)
            self.groups.setdefault(core.group_key(job.resolved), deque()).appendleft(job)
            self.dispatch(self.start_workers(1)[0])
        else:
            message = f"its worker died {len(self.retries[job.index])} times (--max-retries {self.max_retries})"
            self.rows[job.index] = core.report_row(job, "failed", error=("WorkerDied", message))
            self.emit("failed", id=job.id, index=job.index, error={"class": "WorkerDied", "message": message})
            self.stop = self.stop or self.fail_fast
            if not self.stop and any(self.groups.values()):
                self.dispatch(self.start_workers(1)[0])
        if self.on_row is not None:
            self.on_row(list(self.rows.values()))
