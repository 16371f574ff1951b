"""The server: a unix socket for this user's `vidgen` calls, a queue of jobs kept on disk, and one
worker (the main thread) that runs them one at a time on the pipelines it keeps loaded.

Two kinds of job, both run by the code a direct run uses:
- `run`: a command line (`vidgen t2v ...` forwarded by its caller, or an OpenAI-style request
  turned into one), run by the CLI itself in the caller's folder, so paths, messages, exit
  codes, frames and sidecars are the ones the caller's own process would have made;
- `job`: one manifest line (vidgen's job JSON), run by the batch code (`batch.jobs`: claims,
  done-by-config-hash, resume) into the served folder's outputs.

Every job is a file in `STATE/jobs/` from the moment it is accepted until it is removed, so a
SIGTERM (which interrupts the running job and puts it back) or a SIGKILL loses none: the next
server runs what was queued or running. The state folder and socket are private (0700/0600).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import secrets
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen import __version__
from vidgen.core import stopping
from vidgen.core.errors import ConfigError, ExitCode, VidgenError
from vidgen.serve import wire
from vidgen.serve.cache import Cache

log = logging.getLogger("vidgen.serve")

STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled")
# What a job keeps of its output for `GET` and the HTTP API (a run prints paths or one JSON object).
MAX_KEPT_OUTPUT = 1 << 20
# How long the record of a finished job is kept (its files stay where they were written).
KEEP_DONE_S = 7 * 24 * 3600
# The argument lists a forwarded run may have: a command line, not a file.
MAX_ARGS = 4096


@dataclass
class Job:
    id: str
    kind: str  # "run" (a command line) or "job" (a manifest line)
    request: dict[str, Any]
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    outputs: list[str] = field(default_factory=list)
    progress: dict[str, Any] = field(default_factory=dict)
    stdout: str = ""
    source: str = "socket"  # socket, http, openai
    # Not kept on disk: who hears this job's output, and its events for server-sent events.
    listeners: list[Any] = field(default_factory=list, repr=False)
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    said: str | None = field(default=None, repr=False)  # the run's last `Error:` line

    def record(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _FIELDS}

    def public(self) -> dict[str, Any]:
        """What status and list answers show (the request without its cwd's neighbours)."""
        body = self.record()
        body.pop("stdout")
        return body


_FIELDS = (
    "id",
    "kind",
    "request",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "exit_code",
    "error",
    "outputs",
    "progress",
    "stdout",
    "source",
)


class _Relay(io.RawIOBase):
    """A job's stdout or stderr: every write goes to the callers listening to the job."""

    def __init__(self, server: Server, job: Job, stream: str, tty: bool) -> None:
        self.server, self.job, self.stream, self.tty = server, job, stream, tty

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.tty

    def write(self, data: Any) -> int:
        text = bytes(data).decode("utf-8", "replace")
        self.server.relay(self.job, self.stream, text)
        return len(data)


def _text(raw: io.RawIOBase) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors="replace", write_through=True)


class Server:
    """`run_argv(argv) -> exit code` runs a command line in this process (the CLI's own app,
    given by vidgen/cli/serve.py: this package sits below the CLI)."""

    def __init__(
        self,
        run_argv: Callable[[list[str]], int],
        *,
        state: Path,
        sock: Path,
        root: Path,
        out: Path,
        allow_inputs: bool = False,
        cache: Cache | None = None,
    ) -> None:
        self.run_argv = run_argv
        self.state = state
        self.sock_path = sock
        self.root = root.resolve()
        self.out = out if out.is_absolute() else self.root / out
        self.allow_inputs = allow_inputs
        self.cache = cache or Cache()
        self.jobs: dict[str, Job] = {}
        self.order: list[str] = []
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.current: Job | None = None
        # True while a job's run executes: only then may a signal raise in the main thread (the
        # server's own bookkeeping around a run is never broken off halfway).
        self.interruptible = False
        self.sending = threading.Lock()
        self.cancelling: str | None = None
        self.stopping = False
        self.stop_signal: int | None = None
        self.started_at = time.time()
        self.http: str | None = None
        self.fingerprint = wire.fingerprint()
        self._listener: socket.socket | None = None

    # -- start and stop --------------------------------------------------------------------

    def open(self) -> None:
        """Take the state folder and the socket, and load the jobs a stopped server left."""
        wire.private_dir(self.state)
        wire.private_dir(self.state / "jobs")
        wire.private_dir(self.sock_path.parent)
        if wire.ask({"op": "status"}, self.sock_path) is not None:
            raise ConfigError(f"a vidgen server already answers at {self.sock_path}; `vidgen serve --stop` stops it.")
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()  # a dead server's
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600: no window where others may connect
        try:
            listener.bind(str(self.sock_path))
        finally:
            os.umask(old)
        os.chmod(self.sock_path, 0o600)
        listener.listen(64)
        self._listener = listener
        self._load()
        self._write_info()

    def _load(self) -> None:
        found = []
        for path in (self.state / "jobs").glob("*.json"):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                job = Job(**{key: value for key, value in data.items() if key in _FIELDS})
            except (OSError, ValueError, TypeError):
                log.warning("ignoring unreadable job file %s", path)
                continue
            done = job.status in ("completed", "failed", "cancelled")
            if done and time.time() - (job.finished_at or 0) > KEEP_DONE_S:
                path.unlink(missing_ok=True)  # the record of a job long done (its files stay)
                continue
            if job.status == "in_progress":
                # The server that ran it stopped (or died) mid-run: it runs again, once.
                job.status, job.started_at = "queued", None
                self._save(job)
            found.append(job)
        for job in sorted(found, key=lambda j: j.created_at):
            self.jobs[job.id] = job
            self.order.append(job.id)
        queued = sum(job.status == "queued" for job in found)
        if queued:
            log.info("%d queued job(s) from before this server started", queued)

    def _write_info(self) -> None:
        info = {
            "pid": os.getpid(),
            "version": __version__,
            "socket": str(self.sock_path),
            "root": str(self.root),
            "http": self.http,
            "started_at": self.started_at,
        }
        _write_private(self.state / "server.json", json.dumps(info, indent=2))

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            with contextlib.suppress(OSError):
                self.sock_path.unlink()
        with contextlib.suppress(OSError):
            (self.state / "server.json").unlink()
        self.cache.clear()

    def serve_forever(self) -> None:
        """Accept callers on a thread; run jobs here, in the main thread, until SIGTERM."""
        from vidgen.run import warm

        assert self._listener is not None
        warm.install(self.cache)
        threading.Thread(target=self._accept, daemon=True, name="vidgen-accept").start()
        self._install_signals()
        try:
            while True:
                with self.lock:
                    job = self._next()
                    while job is None and not self.stopping:
                        self.wake.wait(1.0)
                        job = self._next()
                    if self.stopping:
                        break
                    self.current = job
                try:
                    self._run(job)
                finally:
                    with self.lock:
                        self.current = None
        finally:
            warm.install(None)

    def _install_signals(self) -> None:
        """SIGTERM, SIGINT and SIGHUP stop the server; SIGUSR1 (sent by `cancel`) stops the running
        job. A running job stops at its next step or phase, where a run checks for a stop
        (vidgen/core/stopping.py), never in the middle of an import or a load: this process goes
        on, and a half-imported module would break every later job."""

        def stop(signum: int, frame: Any) -> None:
            with self.lock:
                self.stopping, self.stop_signal = True, signum
                self.wake.notify_all()
            if self.interruptible:
                stopping.request(signum)

        def cancel(signum: int, frame: Any) -> None:
            with self.lock:
                asked = self.current is not None and self.cancelling == self.current.id and self.interruptible
            if asked and not self.stopping:
                stopping.request(signal.SIGINT)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, stop)
        signal.signal(signal.SIGUSR1, cancel)

    # -- the queue -------------------------------------------------------------------------

    def _next(self) -> Job | None:
        for job_id in self.order:
            job = self.jobs[job_id]
            if job.status == "queued":
                return job
        return None

    def submit(self, kind: str, request: dict[str, Any], source: str, job_id: str | None = None) -> Job:
        job = Job(id=job_id or f"video_{secrets.token_hex(12)}", kind=kind, request=request, source=source)
        with self.lock:
            if self.stopping:
                raise ConfigError("the vidgen server is stopping; it takes no more jobs.")
            self._save(job)
            self.jobs[job.id] = job
            self.order.append(job.id)
            self.wake.notify_all()
        return job

    def _save(self, job: Job) -> None:
        _write_private(self.state / "jobs" / f"{job.id}.json", json.dumps(job.record()))

    def position(self, job: Job) -> int:
        """How many jobs run before this one (0: it is running or next)."""
        with self.lock:
            ahead = [j for j in self.order if self.jobs[j].status in ("queued", "in_progress")]
            return ahead.index(job.id) if job.id in ahead else 0

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def listing(self) -> list[Job]:
        with self.lock:
            return [self.jobs[j] for j in self.order]

    def cancel(self, job_id: str) -> Job | None:
        """Drop a queued job, or interrupt the running one (its run ends as a Ctrl-C ends it)."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            if job.status == "queued":
                job.status, job.exit_code, job.finished_at = "cancelled", int(ExitCode.INTERRUPTED), time.time()
                self._save(job)
                self._finish_listeners(
                    job, "Error: interrupted; no partial file was left under a final name.\n", job.exit_code
                )
            elif job.status == "in_progress" and self.current is job:
                self.cancelling = job.id
                os.kill(os.getpid(), signal.SIGUSR1)
            return job

    def remove(self, job_id: str) -> Job | None:
        """Forget a job (its files stay); a queued or running one is cancelled first, and a
        running one is forgotten once it has stopped."""
        job = self.cancel(job_id)
        if job is None:
            return None
        with self.lock:
            job.request["forget"] = True
            if job.status in ("completed", "failed", "cancelled"):
                self.jobs.pop(job.id, None)
                if job.id in self.order:
                    self.order.remove(job.id)
                with contextlib.suppress(OSError):
                    (self.state / "jobs" / f"{job.id}.json").unlink()
        return job

    def status(self) -> dict[str, Any]:
        with self.lock:
            counts = {name: 0 for name in STATUSES}
            for job in self.jobs.values():
                counts[job.status] = counts.get(job.status, 0) + 1
            return {
                "pid": os.getpid(),
                "version": __version__,
                "socket": str(self.sock_path),
                "state": str(self.state),
                "root": str(self.root),
                "http": self.http,
                "uptime_seconds": round(time.time() - self.started_at, 1),
                "current_job": self.current.id if self.current else None,
                "jobs": counts,
                "loaded": self.cache.status(),
                "evicted": self.cache.evicted,
            }

    # -- output of the running job ---------------------------------------------------------

    def relay(self, job: Job, stream: str, text: str) -> None:
        if stream == "out" and len(job.stdout) < MAX_KEPT_OUTPUT:
            job.stdout += text
        if stream == "err":
            self._events(job, text)
            errors = [line for line in text.splitlines() if line.startswith("Error: ")]
            job.said = errors[-1][len("Error: ") :] if errors else job.said
        # A progress bar's refresh thread writes too: one message at a time on each socket.
        with self.sending:
            for listener in list(job.listeners):
                try:
                    wire.send(listener, {stream: text})
                except OSError:
                    with contextlib.suppress(ValueError):
                        job.listeners.remove(listener)  # the caller went away; the job goes on

    def _events(self, job: Job, text: str) -> None:
        """`--progress json` lines (HTTP jobs ask for them): the job's progress and events."""
        for line in text.splitlines():
            if not line.startswith('{"event"'):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            job.events.append(event)
            del job.events[:-1000]
            if event.get("event") == "step" and event.get("total"):
                job.progress = {"step": event["step"], "total": event["total"], "phase": "denoise"}
            elif event.get("event") in ("load", "decode", "encode"):
                job.progress = {**job.progress, "phase": event["event"]}

    def _finish_listeners(self, job: Job, message: str | None, code: int) -> None:
        with self.sending:
            for listener in list(job.listeners):
                with contextlib.suppress(OSError):
                    if message:
                        wire.send(listener, {"err": message})
                    wire.send(listener, {"exit": code})
            job.listeners.clear()

    # -- running one job -------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        with self.lock:
            job.status, job.started_at = "in_progress", time.time()
            job.stdout, job.progress = "", {}
            self._save(job)
        log.info("job %s: %s", job.id, _summary(job))
        stopping.reset()
        code, error = int(ExitCode.ERROR), None
        tty = bool(job.request.get("tty"))
        out, err = _Relay(self, job, "out", False), _Relay(self, job, "err", tty)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _text(out), _text(err)
        try:
            os.chdir(job.request["cwd"] if job.kind == "run" else self.root)  # relative paths: the caller's
            self.interruptible = True
            if self.stopping:  # stopped between taking the job and starting it
                raise stopping.Terminated(self.stop_signal or signal.SIGTERM)
            if job.kind == "run":
                code = self.run_argv(list(job.request["argv"]))
            else:
                code, error = self._run_manifest_line(job)
        except KeyboardInterrupt as exc:  # stopped between the CLI's own handlers
            signum = getattr(exc, "signum", signal.SIGINT)
            code = 128 + signum if signum != signal.SIGINT else int(ExitCode.INTERRUPTED)
        except OSError as exc:  # the caller's folder is gone
            sys.stderr.write(f"Error: cannot run in {job.request.get('cwd')}: {exc.strerror}.\n")
            code = int(ExitCode.INPUT)
        except Exception as exc:  # a bug stops this job, never the server
            log.exception("job %s failed", job.id)
            sys.stderr.write(f"Error: internal error ({type(exc).__name__}); see the server's log.\n")
            code = int(ExitCode.ERROR)
        finally:
            self.interruptible = False
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            sys.stdout, sys.stderr = saved
            with contextlib.suppress(OSError):
                os.chdir(self.root)
        with self.lock:
            requeue = self.stopping and self.cancelling != job.id and code in (130, 128 + (self.stop_signal or 15))
            self.cancelling = None
            if requeue:
                # The server stops: the job is not lost, the next server runs it.
                job.status, job.started_at, job.progress = "queued", None, {}
                message = (
                    f"Error: the vidgen server is stopping; job {job.id} stays queued and runs when it starts again.\n"
                )
            else:
                job.status = "completed" if code == 0 else ("cancelled" if code == 130 else "failed")
                job.exit_code, job.finished_at = code, time.time()
                job.error = error or _last_error(job, code)
                job.outputs = job.outputs or _outputs(job)
                message = None
            self._save(job)
            self._finish_listeners(job, message, code)
        log.info("job %s: %s (exit %s)", job.id, job.status, code)
        if job.request.get("forget") and not requeue:
            self.remove(job.id)

    def _run_manifest_line(self, job: Job) -> tuple[int, str | None]:
        """A manifest line, run by the batch code: validated like a manifest's jobs (inputs
        inside the served folder unless the server has --allow-inputs), done once."""
        from vidgen.batch import jobs as core
        from vidgen.core.progress import JsonEvents
        from vidgen.io.trust import Grants

        line = job.request["job"]
        parsed = core.read_manifest("request", json.dumps(line), fmt="jsonl")
        core.prepare(
            parsed,
            mode=str(line.get("mode", "t2v")),
            presets=[],
            out=self.out,
            assignments=[],
            grants=Grants(allow_inputs=self.allow_inputs),
            folder=self.root,
        )
        one = parsed[0]
        if one.error is not None:
            code = _code_of(one.error)
            sys.stderr.write(f"Error: {one.error}\n")
            return code, one.error
        progress = JsonEvents()
        runner = core.JobRunner(progress, progress.event)
        row = runner.run(one, 1, 1, force=False)
        job.outputs = list(row.get("outputs") or [])
        if row["status"] in ("done", "skipped"):
            return 0, None
        if row["status"] == "claimed":
            return int(ExitCode.BATCH_PARTIAL), "another vidgen batch or server runs this job now."
        failure = row.get("error") or {}
        message = str(failure.get("message") or "the job failed")
        if failure.get("class") in ("KeyboardInterrupt", "Terminated"):
            raise KeyboardInterrupt
        return _class_code(str(failure.get("class"))), message

    # -- callers ---------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_caller, args=(conn,), daemon=True).start()

    def _serve_caller(self, conn: socket.socket) -> None:
        """One caller: a bad message is answered and closes this connection alone."""
        with contextlib.closing(conn):
            try:
                message = wire.Reader(conn).next()
                if message is None:
                    return
                self._answer(conn, message)
            except wire.WireError as exc:
                with contextlib.suppress(OSError):
                    wire.send(conn, {"error": f"not a request: {exc}", "exit": int(ExitCode.CONFIG)})
            except VidgenError as exc:  # a request vidgen refuses, as it refuses a manifest line
                with contextlib.suppress(OSError):
                    wire.send(conn, {"error": str(exc), "exit": int(exc.exit_code)})
            except OSError:
                return
            except Exception as exc:  # never the server's end
                log.exception("a request failed")
                with contextlib.suppress(OSError):
                    wire.send(conn, {"error": f"internal error ({type(exc).__name__})", "exit": int(ExitCode.ERROR)})

    def _answer(self, conn: socket.socket, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "status":
            wire.send(conn, {"status": self.status()})
        elif op == "stop":
            wire.send(conn, {"stopping": True})
            os.kill(os.getpid(), signal.SIGTERM)
        elif op == "cancel":
            job = self.cancel(str(message.get("id")))
            wire.send(conn, {"job": job.public() if job else None})
        elif op == "list":
            wire.send(conn, {"jobs": [job.public() for job in self.listing()]})
        elif op == "get":
            job = self.get(str(message.get("id")))
            wire.send(conn, {"job": job.public() if job else None})
        elif op == "run":
            self._attach(conn, message)
        elif op == "submit":
            job = self.submit("job", {"job": check_line(message.get("job"))}, "socket")
            wire.send(conn, {"job": job.public()})
        else:
            wire.send(conn, {"error": f"unknown request {op!r}", "exit": int(ExitCode.CONFIG)})

    def _attach(self, conn: socket.socket, message: dict[str, Any]) -> None:
        """A forwarded command line: queue it, relay its output, answer its exit code. The
        caller's Ctrl-C arrives as a `cancel` on another connection."""
        argv, cwd = message.get("argv"), message.get("cwd")
        if message.get("fingerprint") != self.fingerprint:
            wire.send(conn, {"fallback": "another vidgen or environment"})
            return
        if (
            not isinstance(argv, list)
            or not all(isinstance(arg, str) for arg in argv)
            or len(argv) > MAX_ARGS
            or not isinstance(cwd, str)
        ):
            wire.send(conn, {"error": "not a command line", "exit": int(ExitCode.USAGE)})
            return
        if self.stopping:
            wire.send(conn, {"fallback": "the server is stopping"})
            return
        job = self.submit("run", {"argv": argv, "cwd": cwd, "tty": bool(message.get("tty"))}, "socket")
        with self.lock:
            job.listeners.append(conn)
        wire.send(conn, {"job": job.id, "position": self.position(job)})
        # Hold the connection open until the job's end is sent (by the worker) or the caller leaves.
        # (No socket timeout: the worker's sends to a slow reader must not fail.)
        while True:
            with self.lock:
                if conn not in job.listeners:
                    return
            try:
                readable, _, _ = select.select([conn], [], [], 1.0)
                if readable and not conn.recv(1 << 16):
                    break  # the caller closed: the job goes on without it
            except OSError:
                break
        with self.lock:
            if conn in job.listeners:
                job.listeners.remove(conn)


def check_line(line: Any) -> dict[str, Any]:
    """A job JSON (one manifest line) as a request may send it: checked for shape and limits
    now (the full validation is the batch's own, when it runs)."""
    from vidgen.batch import jobs as core

    if not isinstance(line, dict):
        raise ConfigError("a job must be a JSON object (one manifest line).")
    core.read_manifest("request", json.dumps(line), fmt="jsonl")
    return line


def _write_private(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temp, path)


def _summary(job: Job) -> str:
    if job.kind == "run":
        return "vidgen " + " ".join(arg if len(arg) < 60 else arg[:57] + "..." for arg in job.request["argv"])
    return "job " + json.dumps(job.request["job"])[:120]


def _last_error(job: Job, code: int) -> str | None:
    if code == 0:
        return None
    if job.said:
        return job.said
    try:
        body = json.loads(job.stdout.strip().splitlines()[-1]) if job.stdout.strip() else {}
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])
    except ValueError:
        pass
    return f"exit code {code}"


def _outputs(job: Job) -> list[str]:
    """The written files: from a --json answer, else the path lines a run prints."""
    text = job.stdout.strip()
    if not text:
        return []
    try:
        body = json.loads(text.splitlines()[-1])
        if isinstance(body, dict) and isinstance(body.get("outputs"), list):
            return [str(row.get("path")) for row in body["outputs"] if isinstance(row, dict)]
    except ValueError:
        pass
    return [line for line in text.splitlines() if line.strip()]


def _code_of(message: str) -> int:
    """An invalid manifest line's exit code: an input refused (a path outside) is 4, else 3."""
    return int(ExitCode.INPUT) if "asks to read" in message or "does not exist" in message else int(ExitCode.CONFIG)


def _class_code(name: str) -> int:
    from vidgen.core import errors

    found = getattr(errors, name, None)
    return int(getattr(found, "exit_code", ExitCode.ERROR))
