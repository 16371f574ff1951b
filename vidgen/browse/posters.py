"""Poster frames for the gallery: a small JPEG of each output's first frame, written once into
`DIR/index.posters/` beside the page and reused while the output is unchanged.

Where a poster comes from, cheapest first:
- one already in `index.posters/`: its name is a hash of the output's path, size and modification
  time, so a page rewritten after every job of a batch (`batch --gallery`) or run again makes
  only the posters of new or changed outputs;
- the sidecar's `output.poster`, which vidgen makes when it writes an output (the frames are in
  memory then): checked to be a small JPEG, then written out as it is, no video decoded;
- the output itself (outputs of older versions): the first frame of a PNG-frame folder is its
  first file (the folder is not listed); videos are decoded a few to one ffmpeg (starting ffmpeg
  costs about what decoding one frame does), key frames only, one decoder thread each, scaled
  down inside ffmpeg, within the limits of every vidgen read (ffmpeg's input whitelist, frames
  of at most MAX_FRAME_PIXELS). A file that cannot be read gets no poster, and costs no more.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vidgen.browse.catalog import MAX_POSTER_CHARS, Entry
from vidgen.core.limits import MAX_FRAME_PIXELS
from vidgen.io.media import POSTER_PREFIX, POSTER_QUALITY, POSTER_SIDE

FOLDER = "index.posters"
# Videos one ffmpeg decodes at a time, and how many such ffmpegs run at once. Each video holds a
# few frames (under 50 MB at MAX_FRAME_PIXELS with one decoder thread), so all of them stay under
# 1 GB whatever sizes the sidecars claim.
BATCH = 8
WORKERS = 2
_NAME = re.compile(r"^[0-9a-f]{20}\.jpg$")


def _name(root: Path, entry: Entry) -> str | None:
    try:
        info = entry.path.stat()
    except OSError:
        return None
    place = entry.path.relative_to(root).as_posix() if entry.path.is_relative_to(root) else str(entry.path)
    stamp = f"{place}\0{info.st_size}\0{info.st_mtime_ns}\0{POSTER_SIDE}"
    return hashlib.sha256(stamp.encode("utf-8", errors="surrogateescape")).hexdigest()[:20] + ".jpg"


def make(root: Path, entries: list[Entry]) -> dict[Path, str]:
    """Posters for `entries` under `root`, made where missing: output path -> the poster's URL
    relative to the page. An output whose first frame cannot be read has none. Posters of
    outputs that are gone (or changed) are removed."""
    folder = root / FOLDER
    names = {entry.path: _name(root, entry) for entry in entries}
    missing = [(entry, folder / name) for entry in entries if (name := names[entry.path])]
    missing = [(entry, target) for entry, target in missing if not target.is_file()]
    if missing:
        with contextlib.suppress(OSError):
            folder.mkdir(exist_ok=True)
        if folder.is_dir() and not folder.is_symlink():
            _draw(missing)
    _prune(folder, {name for name in names.values() if name})
    return {path: f"{FOLDER}/{name}" for path, name in names.items() if name and (folder / name).is_file()}


def _prune(folder: Path, wanted: set[str]) -> None:
    """Remove the posters (only files named as vidgen names them) that no output needs now."""
    if not folder.is_dir() or folder.is_symlink():
        return
    with contextlib.suppress(OSError):
        for item in folder.iterdir():
            if _NAME.match(item.name) and item.name not in wanted:
                with contextlib.suppress(OSError):
                    item.unlink()


def _draw(jobs: list[tuple[Entry, Path]]) -> None:
    videos = []
    for entry, target in jobs:
        data = recorded(entry)
        if data is not None:
            _save(data, target)
        elif entry.path.is_dir():
            _from_png(entry.path / "frame_00000.png", target)
        else:
            videos.append((entry, target))
    batches = [videos[start : start + BATCH] for start in range(0, len(videos), BATCH)]
    if batches:
        with ThreadPoolExecutor(min(len(batches), WORKERS)) as pool:
            list(pool.map(_from_videos, batches))


def recorded(entry: Entry) -> bytes | None:
    """The JPEG in the sidecar's `output.poster`, when it is one vidgen would have made: a JPEG of
    at most POSTER_SIDE pixels a side that decodes. Anything else in that field is passed over
    (the output is then decoded)."""
    from PIL import Image

    output = entry.data.get("output") if isinstance(entry.data.get("output"), dict) else {}
    value = output.get("poster")
    if not isinstance(value, str) or not value.startswith(POSTER_PREFIX) or len(value) > MAX_POSTER_CHARS:
        return None
    try:
        data = base64.b64decode(value[len(POSTER_PREFIX) :], validate=True)
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            if max(image.size) > POSTER_SIDE:
                return None
            image.load()
    except (binascii.Error, ValueError, OSError, SyntaxError, Image.DecompressionBombError):
        return None
    return data


def _save(data: bytes, target: Path) -> None:
    temp = _temp(target)
    try:
        temp.write_bytes(data)
        os.replace(temp, target)
    except OSError:
        return
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def _temp(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.part")


def _from_png(frame: Path, target: Path) -> None:
    """A PNG-frame folder's poster, from its first frame file alone."""
    from PIL import Image

    buffer = io.BytesIO()
    try:
        with Image.open(frame, formats=["PNG"]) as image:
            if image.width * image.height > MAX_FRAME_PIXELS:
                return
            image.thumbnail((POSTER_SIDE, POSTER_SIDE))
            image.convert("RGB").save(buffer, format="JPEG", quality=POSTER_QUALITY)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return
    _save(buffer.getvalue(), target)


def _from_videos(batch: list[tuple[Entry, Path]]) -> None:
    """First frames of a few videos through one ffmpeg; the ones it did not make (one file that
    cannot be opened stops them all) are tried again alone."""
    made = _ffmpeg(batch)
    if len(batch) > 1:
        for job, ok in zip(batch, made, strict=True):
            if not ok:
                _ffmpeg([job])


def _ffmpeg(batch: list[tuple[Entry, Path]]) -> list[bool]:
    from vidgen.io import media

    command = [media.ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    for entry, _ in batch:
        # One decoder thread, and key frames only: the first frame is one.
        command += ["-threads", "1", "-skip_frame", "nokey", *media.SAFE_INPUT, "-i", str(entry.path)]
    scale = f"scale=w='min({POSTER_SIDE},iw)':h='min({POSTER_SIDE},ih)':force_original_aspect_ratio=decrease"
    quality = str(max(2, round(31 - POSTER_QUALITY * 0.29)))  # PIL's 80 is about ffmpeg's 8
    temps = [_temp(target) for _, target in batch]
    for index, temp in enumerate(temps):
        command += ["-map", f"{index}:v:0", "-frames:v", "1", "-vf", scale, "-q:v", quality]
        command += ["-c:v", "mjpeg", "-f", "mjpeg", "-y", str(temp)]
    try:
        subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=media.child(),
            check=False,
        )
        return [_publish(temp, target) for temp, (_, target) in zip(temps, batch, strict=True)]
    finally:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()


def _publish(temp: Path, target: Path) -> bool:
    try:
        if temp.stat().st_size == 0:
            return False
        os.replace(temp, target)
    except OSError:
        return False
    return True
