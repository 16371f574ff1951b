"""Where a server lives and how its messages travel: JSON objects, one per line, over a unix
socket that only its user may open.

The socket is $VIDGEN_SERVER_SOCKET, else `vidgen/serve.sock` under $XDG_RUNTIME_DIR, else
`serve.sock` in the state folder. The state folder ($VIDGEN_SERVER_STATE, else `serve/` in the
vidgen cache) holds the queued jobs, the server's record and the HTTP token, all private.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

# The most one message may carry: a job's arguments (prompts are at most 100,000 characters)
# with room to spare, far below what could tire the server.
MAX_MESSAGE_BYTES = 4 << 20
# Environment variables that can change what a run does: a server whose values differ would
# not run what the caller's own process would, so the caller runs in-process then.
_RELEVANT = ("VIDGEN_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "DIFFUSERS_", "CUDA_", "PYTORCH_", "TORCH")
_OWN = ("VIDGEN_SERVER_SOCKET", "VIDGEN_SERVER_STATE", "VIDGEN_NO_SERVER")


class WireError(Exception):
    """A message that is not one: too long, not JSON, not an object."""


def state_dir() -> Path:
    if env := os.environ.get("VIDGEN_SERVER_STATE"):
        return Path(env).expanduser()
    from vidgen.config.settings import cache_dir

    return cache_dir() / "serve"


def socket_path() -> Path:
    if env := os.environ.get("VIDGEN_SERVER_SOCKET"):
        return Path(env).expanduser()
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(runtime) / "vidgen" / "serve.sock"
    return state_dir() / "serve.sock"


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) readable by this user alone; an existing folder of
    someone else's, or open to others, is made private or refused."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def fingerprint() -> str:
    """What must be equal between a caller and the server for a forwarded run to be the run the
    caller's own process would make: vidgen's code and the relevant environment (hashed: a
    token in HF_TOKEN never travels)."""
    from vidgen import __version__

    env = sorted((key, value) for key, value in os.environ.items() if key.startswith(_RELEVANT) and key not in _OWN)
    code = str(Path(__file__).resolve().parents[1])
    body = json.dumps([__version__, code, sys.version, env])
    return hashlib.sha256(body.encode()).hexdigest()


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


class Reader:
    """Messages from a socket, one JSON object per line, each at most MAX_MESSAGE_BYTES."""

    def __init__(self, sock: socket.socket, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.sock = sock
        self.limit = limit
        self.buffer = b""

    def next(self) -> dict[str, Any] | None:
        """The next message; None when the other side closed."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > self.limit:
                raise WireError(f"a message over {self.limit >> 20} MiB")
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        if len(line) > self.limit:
            raise WireError(f"a message over {self.limit >> 20} MiB")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            raise WireError("a message that is not JSON") from None
        if not isinstance(message, dict):
            raise WireError("a message that is not a JSON object")
        return message


def connect(path: Path | None = None, timeout: float | None = 2.0) -> socket.socket | None:
    """A connection to the server at `path` (or the usual place); None when none answers."""
    path = path or socket_path()
    if not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)
    return sock


def ask(message: dict[str, Any], path: Path | None = None, timeout: float = 10.0) -> dict[str, Any] | None:
    """One question, one answer (status, stop, cancel); None when no server answers."""
    sock = connect(path)
    if sock is None:
        return None
    with contextlib.closing(sock):
        sock.settimeout(timeout)
        try:
            send(sock, message)
            return Reader(sock).next()
        except (OSError, WireError):
            return None
