"""A stop that a signal asked for, kept so it cannot be lost.

Python raises a signal handler's exception wherever the main thread happens to be. Raised
inside the at-fork callbacks that run while `subprocess` forks ffmpeg (logging registers one),
it is printed as "Exception ignored" and dropped, and the run went on to exit 0. The handlers
record the signal here before raising; the places right after a fork, and between steps and
jobs, call `check()`, which raises it again if it was dropped.
"""

from __future__ import annotations


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (Slurm preemption, a closed terminal): a KeyboardInterrupt, so every
    cleanup that Ctrl-C runs (temporary files, the ffmpeg child) runs for these too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# The signal number a handler saw (SIGINT included), or None.
_requested: int | None = None


def request(signum: int) -> None:
    global _requested
    _requested = signum


def reset() -> None:
    global _requested
    _requested = None


def check() -> None:
    """Raise the stop a signal asked for, if any (again, if an earlier raise was dropped)."""
    import signal

    if _requested is None:
        return
    if _requested == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(_requested)
