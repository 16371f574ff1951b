"""The caller's side of a forwarded run: `vidgen t2v ...` with a server up sends its arguments
there and prints what comes back, exactly what it would have printed itself.

Light on purpose: it runs in every generation command before anything heavy is imported, and a
loop of calls is only as fast as this path.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from vidgen.serve import wire

# How long a caller waits for the server to answer a Ctrl-C before it stops waiting.
CANCEL_WAIT_S = 30.0


def forward(argv: list[str], path: Path | None = None) -> int | None:
    """Run `vidgen ARGV` on the server and relay its output; the exit code, or None when no
    server takes it (none is running, or it runs other code or another environment: the
    caller runs it in-process then)."""
    if any(arg == "-" for arg in argv) or any(arg == "--gpus" or arg.startswith("--gpus=") for arg in argv):
        return None  # stdin is the caller's own; --gpus launches its own processes
    sock = wire.connect(path)
    if sock is None:
        return None
    with contextlib.closing(sock):
        request = {
            "op": "run",
            "argv": argv,
            "cwd": os.getcwd(),
            "fingerprint": wire.fingerprint(),
            "tty": sys.stderr.isatty(),
        }
        try:
            wire.send(sock, request)
        except OSError:
            return None
        return _relay(sock, path)


def _relay(sock: Any, path: Path | None) -> int | None:
    reader = wire.Reader(sock)
    job: str | None = None
    cancelled = False
    while True:
        try:
            message = reader.next()
        except KeyboardInterrupt:
            if job is None or cancelled:
                raise
            # Ctrl-C stops this job alone: the server interrupts it (or drops it from the
            # queue) and answers with the run's own message and exit code.
            cancelled = True
            with contextlib.suppress(OSError):
                wire.ask({"op": "cancel", "id": job}, path)
            sock.settimeout(CANCEL_WAIT_S)
            continue
        except (OSError, wire.WireError):
            message = None
        if message is None:
            if cancelled:
                raise KeyboardInterrupt from None
            where = f"; job {job} stays queued and runs when the server starts again" if job else ""
            sys.stderr.write(f"Error: the vidgen server stopped before the run ended{where}.\n")
            return 1
        if "fallback" in message:
            return None
        if "job" in message:
            job = str(message["job"])
        if "out" in message:
            sys.stdout.write(str(message["out"]))
            sys.stdout.flush()
        if "err" in message:
            sys.stderr.write(str(message["err"]))
            sys.stderr.flush()
        if "exit" in message:
            return int(message["exit"])
