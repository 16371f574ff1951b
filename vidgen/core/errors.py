"""Exit codes and the error hierarchy: the one place a failure gets its exit code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import NoReturn


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    CONFIG = 3
    INPUT = 4
    MODEL = 5
    OUT_OF_MEMORY = 6
    WRITE = 7
    BATCH_PARTIAL = 8
    INTERRUPTED = 130


class VidgenError(Exception):
    """A failure the user can act on; its message is shown as-is, without a traceback."""

    exit_code = ExitCode.ERROR


class ConfigError(VidgenError):
    exit_code = ExitCode.CONFIG


class InputError(VidgenError):
    exit_code = ExitCode.INPUT


class ModelError(VidgenError):
    exit_code = ExitCode.MODEL


class OutOfMemory(VidgenError):
    exit_code = ExitCode.OUT_OF_MEMORY

    def __init__(self, message: str, phase: str | None = None, captured: object = None) -> None:
        super().__init__(message)
        self.phase = phase  # "denoise" or "decode", when known
        self.captured = captured  # the final latents, when the VAE decode ran out


class WriteError(VidgenError):
    exit_code = ExitCode.WRITE


# -- out of memory: the one place an allocation failure becomes exit 6 ---------------------------


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure: Python's MemoryError, torch's CPU allocator
    ("DefaultCPUAllocator: can't allocate memory", a RuntimeError) or CUDA's out-of-memory.
    Works without importing torch, so the CLI's error boundary can ask too."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def out_of_memory(message: str, phase: str | None = None, captured: object = None) -> NoReturn:
    """End the run with exit 6. Every OutOfMemory vidgen raises comes from here: an allocation
    that failed (see `oom_guard`) or a plan that cannot fit. Raised `from None`: the allocator's
    traceback says nothing the message does not, and the CLI shows one line."""
    raise OutOfMemory(message, phase, captured) from None


@contextmanager
def oom_guard(phase: str | Callable[[], str] | None, message: str | Callable[[BaseException], str]) -> Iterator[None]:
    """An allocation failure inside the block ends the run as OutOfMemory(message, phase);
    vidgen's own errors and every other exception pass through unchanged. `phase` and
    `message` may be functions, read when the failure happens (a run's phase moves on, and a
    message may quote the failure)."""
    try:
        yield
    except VidgenError:
        raise
    except Exception as exc:
        if not is_oom(exc):
            raise
        out_of_memory(message(exc) if callable(message) else message, phase() if callable(phase) else phase)
