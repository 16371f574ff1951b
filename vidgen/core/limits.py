"""Hard limits on what vidgen reads and agrees to run, and reading files within them.

Files travel (sidecars, presets, manifests, latents): every size here is checked before the work
it bounds, so a small hostile file cannot make vidgen read forever, expand into gigabytes, or
plan a run no model could use. Each limit is far above any real use; the README lists them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vidgen.core.errors import VidgenError

# Prompts: CLIP reads 77 tokens, T5 226; 100 000 characters is hundreds of times any model's
# text context, and keeps tokenizers from being fed megabytes (a 50 MB prompt aborts one).
MAX_PROMPT_CHARS = 100_000
# Frames, frame side and steps beyond what any supported model can use. The longest videos
# (FreeNoise windows, LTX-2) are a few hundred frames; the largest frames 4K (3840x2160); no
# scheduler has more than 1000 training timesteps, so more steps cannot be taken.
MAX_FRAMES = 1024
MAX_SIDE = 4096
MAX_STEPS = 1000
# Values in a saved latents tensor: MAX_FRAMES frames at MAX_SIDE squared, 16 channels, 8x8
# pixels and 4 frames per latent value, is about 2^30.
MAX_LATENTS_ELEMENTS = 1 << 30
# A manifest (after its matrix is multiplied out) may hold this many jobs.
MAX_JOBS = 100_000
# Nesting of presets, manifests and sidecars: real ones are under 8 levels deep.
MAX_DEPTH = 32
# A preset's `extends:` chain.
MAX_EXTENDS = 32
# File sizes, checked on the bytes actually read.
MAX_PRESET_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 64 << 20
# YAML builds Python objects node by node (about 1 s and 60 MB per MB of manifest): a YAML
# manifest is held to less than JSONL, whose parser is C. 8 MiB is some 100 000 short jobs.
MAX_YAML_MANIFEST_BYTES = 8 << 20
MAX_SIDECAR_BYTES = 64 << 20
# The provenance copy inside a video (compact JSON, prompts JSON-escaped) is read with this cap
# before it is parsed: real ones are kilobytes, and a 57 MB comment took 33 s and 7.9 GB to parse.
MAX_METADATA_BYTES = 16 << 20
# Frames vidgen decodes from a video (an input, a gallery poster): at most MAX_SIDE pixels a side,
# checked on the container's header before any frame is decoded (and by ffmpeg's decoder itself).
MAX_FRAME_PIXELS = MAX_SIDE * MAX_SIDE
# A planned peak this many times the machine's memory cannot run (the estimate is not that far
# off); it is refused unless the user says they mean it.
MEMORY_FACTOR = 4.0
# Kernel file systems whose "files" are not data: /proc/self/environ is a regular file of
# size 0 that holds the environment; /dev/zero never ends.
_PSEUDO_ROOTS = ("/proc", "/sys", "/dev")


def pseudo_file(path: Path) -> bool:
    """Whether `path` lies under /proc, /sys or /dev (after following links)."""
    try:
        resolved = str(path.expanduser().resolve())
    except (OSError, RuntimeError):
        return False
    return any(resolved == root or resolved.startswith(root + "/") for root in _PSEUDO_ROOTS)


def read_bytes(path: Path, cap: int, what: str, error: type[VidgenError]) -> bytes:
    """The bytes of a regular file, at most `cap` of them; anything else raises `error`.

    Devices, FIFOs and sockets are refused without reading (a FIFO is opened non-blocking, so
    it cannot hang the open), and the size is checked on what is read, not on what stat says.
    """
    unsafe = f"{what} {path} is not a regular file (a device, pipe, socket or system file); pass a regular file."
    if pseudo_file(path):
        raise error(unsafe)
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}.") from None
    try:
        info = os.fstat(handle)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{what} {path} is a folder; pass a file.")
        if not stat.S_ISREG(info.st_mode):
            raise error(unsafe)
        chunks, total = [], 0
        while total <= cap:
            chunk = os.read(handle, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}.") from None
    finally:
        os.close(handle)
    if total > cap:
        raise error(f"{what} {path} is larger than {_size(cap)}, the most vidgen reads for one; is it the right file?")
    return b"".join(chunks)


def read_text(path: Path, cap: int, what: str, error: type[VidgenError]) -> str:
    data = read_bytes(path, cap, what, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text.") from None


def depth(value: object) -> int:
    """How deeply lists and mappings nest in `value` (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level  # deep enough to refuse; no need to walk the rest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 else f"{count >> 10} KiB"
