"""Exit codes and the error hierarchy: the one place a failure gets its exit code."""

from __future__ import annotations

from enum import IntEnum


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
