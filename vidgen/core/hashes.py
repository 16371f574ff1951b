"""sha256 of weights files, remembered by path, size and modification time.

A sidecar records the sha256 of every weights file a run loads, and a replay checks it again; a
community checkpoint is 15 GB, about a minute of reading. So each file's hash is kept in a small
JSON file (`hashes.json` in the cache folder the caller names), keyed by the file's resolved path
and valid while its size and modification time (in nanoseconds) are those it had when hashed. A
file rewritten in place with the same size and its old mtime restored keeps its cached hash: the
price of not reading 15 GB per run, the same bargain git, make and rsync strike.

The cache is a convenience, never a source of errors: a missing, unreadable, corrupt or foreign
cache file counts as empty, a read-only folder just means nothing is remembered, and writers that
race each other lose an entry at worst (each write is a whole new file moved into place).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

CACHE_FILE = "hashes.json"
# Entries kept: the files most recently hashed. A few thousand is far more weights than a machine
# holds, and the file stays a few hundred KB, read and written in milliseconds.
MAX_ENTRIES = 4000
# A cache file larger than this was not written by vidgen: ignored rather than parsed.
MAX_CACHE_BYTES = 16 * 2**20
# A file modified less than this long before it is hashed may be modified again within the same
# mtime tick (2 s on FAT, 1 s on some network filesystems) without its mtime changing; its hash
# is returned but not remembered.
SETTLE_NS = 2_000_000_000
_HEX = re.compile(r"[0-9a-f]{64}")
_BLOCK = 1 << 20


def sha256(path: Path, cache: Path | None = None) -> str:
    """The sha256 of the regular file at `path` (hex), from `cache`/hashes.json when the file's
    size and mtime are those it was hashed with, else read and then remembered there. Without
    `cache` the file is always read. OSError when the file cannot be read."""
    path = Path(path)
    before = path.stat()
    if not stat.S_ISREG(before.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    key = str(path.resolve())
    store = cache / CACHE_FILE if cache is not None else None
    if store is not None:
        known = _entries(store).get(key)
        if _matches(known, before):
            return known["sha256"]
    started = time.time_ns()
    digest = _read_digest(path)
    after = path.stat()
    # Remember only a file that did not change while it was read and has settled.
    settled = started - before.st_mtime_ns > SETTLE_NS
    unchanged = (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if store is not None and settled and unchanged:
        _remember(store, key, {"size": before.st_size, "mtime_ns": before.st_mtime_ns, "sha256": digest})
    return digest


def short(sha256: str) -> str:
    """The first 12 hex digits of a sha256: how vidgen shows a file's hash to a reader."""
    return sha256[:12]


def _read_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _matches(entry: Any, now: os.stat_result) -> bool:
    """Whether a cache entry describes the file as it is now (and is well-formed)."""
    return (
        isinstance(entry, dict)
        and entry.get("size") == now.st_size
        and entry.get("mtime_ns") == now.st_mtime_ns
        and isinstance(entry.get("sha256"), str)
        and bool(_HEX.fullmatch(entry["sha256"]))
    )


def _entries(store: Path) -> dict[str, Any]:
    """The cache's entries by resolved path, oldest first; {} for a missing or unusable file."""
    try:
        if store.stat().st_size > MAX_CACHE_BYTES:
            return {}
        data = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # missing, unreadable, not JSON, not UTF-8
        return {}
    entries = data.get("files") if isinstance(data, dict) and data.get("version") == 1 else None
    return entries if isinstance(entries, dict) else {}


def _remember(store: Path, key: str, entry: dict[str, Any]) -> None:
    """Add an entry (newest last), drop the oldest past MAX_ENTRIES, and write the cache anew: a
    temporary file in the same folder moved over the old one, so a reader never sees half a
    file. Any failure (read-only folder, full disk) leaves the cache as it was."""
    entries = _entries(store)
    entries.pop(key, None)
    entries[key] = entry
    kept = dict(list(entries.items())[-MAX_ENTRIES:])
    text = json.dumps({"version": 1, "files": kept}, separators=(",", ":"))
    temp = None
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=store.parent, prefix=".hashes-", suffix=".tmp", delete=False
        ) as handle:
            temp = handle.name
            handle.write(text)
        os.replace(temp, store)
        temp = None
    except OSError:
        pass
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
