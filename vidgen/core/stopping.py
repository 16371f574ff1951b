"""A stop that a signal asked for, kept so it cannot be lost.

Python raises a signal handler's exception wherever the main thread happens to be. Raised
inside the at-fork callbacks that run while `subprocess` forks ffmpeg (logging registers one),
it is printed as "Exception ignored" with a traceback and dropped, and the run went on to exit
0. So the handlers record the signal here, and while a fork is under way they only record it;
right after a fork, at each denoising step, before each batch job and when a command ends,
`check()` raises what was recorded.
"""

from __future__ import annotations

import os


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


# True while this process forks: a signal handler must not raise inside the fork's callbacks.
_forking = False


def _enter_fork() -> None:
    global _forking
    _forking = True


def _leave_fork() -> None:
    global _forking
    _forking = False


def deferring() -> bool:
    """Whether a signal handler should only record the signal (a fork is under way)."""
    return _forking


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_enter_fork, after_in_parent=_leave_fork, after_in_child=_leave_fork)
