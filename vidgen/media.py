"""Writing videos and frames with imageio-ffmpeg's bundled ffmpeg, and reading them back.

Frames stay uint8 numpy arrays from the pipeline to ffmpeg's stdin (no per-frame PIL images).
Every file is written under a temporary name in its final directory and moved into place with
`os.replace`, so an interrupted run never leaves a truncated file under a final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from vidgen.errors import ConfigError, WriteError

# format -> codec name -> (ffmpeg encoder, default CRF, highest CRF)
CODECS: dict[str, dict[str, tuple[str, int, int]]] = {
    "mp4": {"h264": ("libx264", 18, 51), "h265": ("libx265", 22, 51), "av1": ("libsvtav1", 32, 63)},
    "webm": {"vp9": ("libvpx-vp9", 32, 63), "av1": ("libsvtav1", 32, 63)},
}
DEFAULT_CODEC = {"mp4": "h264", "webm": "vp9"}
# Where the compact provenance copy goes inside the container.
METADATA_KEY = "comment"
# ffmpeg options before `-i` for every file vidgen reads: local files only (no http, tcp or
# concat: protocols) and real video containers only (no HLS or concat playlists, which make
# ffmpeg fetch URLs or read other local files that the user never named).
SAFE_INPUT = [
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,gif,avi,flv,mpegts,mpeg,ogg,asf,webp_pipe,apng,image2",
]


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def encoding(fmt: str, codec: str | None, crf: int | None) -> tuple[str | None, int | None]:
    """Validate --codec/--crf for a format; returns the codec and CRF that will be used."""
    if fmt not in CODECS:
        for flag, value in (("--codec", codec), ("--crf", crf)):
            if value is not None:
                raise ConfigError(f"{flag} applies to mp4 and webm output, not {fmt}.")
        return None, None
    codecs = CODECS[fmt]
    name = codec or DEFAULT_CODEC[fmt]
    if name not in codecs:
        raise ConfigError(f"--codec {name} cannot go in {fmt}; choose one of: {', '.join(codecs)}.")
    _, default_crf, highest = codecs[name]
    if crf is not None and crf > highest:
        raise ConfigError(f"--crf {crf} is out of range for {name}: use 0 (best) to {highest}.")
    return name, default_crf if crf is None else crf


def to_uint8(frames: Any) -> Any:
    """Float frames in [0, 1] -> uint8, rounded (diffusers truncates; rounding is closer)."""
    import numpy as np

    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)  # a fresh, contiguous array


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for item in files:
        with open(item, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _temp_name(target: Path, is_dir: bool) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise WriteError(f"cannot write to {target.parent}: {exc.strerror or exc}; choose another --out.") from None
    os.close(handle)
    return Path(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(temp: Path, target: Path, overwrite: bool) -> None:
    # mkstemp/mkdtemp create private files; give the result the permissions a plain open() would.
    temp.chmod((0o777 if temp.is_dir() else 0o666) & ~_umask())
    if target.exists() and not overwrite:
        raise WriteError(f"{target} already exists; pass --overwrite or choose another --out.")
    if temp.is_dir() and target.exists():
        # os.replace cannot swap a folder for a non-empty one: move the old one aside first.
        trash = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, trash)
        os.replace(temp, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(temp, target)


def _encode_args(fmt: str, codec: str | None, crf: int | None, width: int, height: int) -> list[str]:
    if fmt == "gif":
        # A palette computed from the clip itself; ffmpeg's default palette bands badly.
        return ["-vf", "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse", "-loop", "0", "-f", "gif"]
    if fmt == "webp":
        return ["-c:v", "libwebp_anim", "-lossless", "0", "-quality", "90", "-loop", "0", "-f", "webp"]
    encoder = CODECS[fmt][codec][0]
    args = []
    if width % 2 or height % 2:
        # yuv420p needs even sizes: pad one black row/column, never rescale.
        args += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    args += ["-c:v", encoder, "-pix_fmt", "yuv420p", "-crf", str(crf)]
    if encoder == "libvpx-vp9":
        args += ["-b:v", "0"]  # constant-quality mode; without it CRF is only a ceiling
    if encoder == "libx265":
        args += ["-tag:v", "hvc1", "-x265-params", "log-level=error"]  # hvc1: plays in Apple players
    if fmt == "mp4":
        args += ["-movflags", "+faststart", "-f", "mp4"]
    else:
        args += ["-f", "webm"]
    return args


def write(
    frames: Any,
    target: Path,
    *,
    fmt: str,
    fps: int,
    codec: str | None,
    crf: int | None,
    metadata: str | None,
    overwrite: bool,
) -> dict[str, Any]:
    """Write uint8 frames (F, H, W, 3) to `target` atomically; returns the `output` sidecar block."""
    count, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    is_dir = fmt == "png"
    temp = _temp_name(target, is_dir)
    try:
        if is_dir:
            from PIL import Image

            for index, frame in enumerate(frames):
                Image.fromarray(frame).save(temp / f"frame_{index:05d}.png")
        else:
            command = [ffmpeg(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
            command += ["-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
            command += _encode_args(fmt, codec, crf, width, height)
            if metadata is not None and fmt in CODECS:
                command += ["-metadata", f"{METADATA_KEY}={metadata}"]
            result = subprocess.run(command + [str(temp)], input=frames.tobytes(), capture_output=True)
            if result.returncode:
                detail = result.stderr.decode(errors="replace").strip().splitlines()
                raise WriteError(f"ffmpeg could not write {target}: {detail[-1] if detail else 'unknown error'}")
        _move_into_place(temp, target, overwrite)
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {exc.strerror or exc}.") from None
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True) if temp.is_dir() else temp.unlink(missing_ok=True)
    # yuv420p formats were padded to even sizes above; record what the file really holds.
    padded = fmt in CODECS and bool(width % 2 or height % 2)
    block = {
        "path": str(target),
        "sha256": sha256(target),
        "format": fmt,
        "codec": codec if fmt in CODECS else fmt,
        "crf": crf,
        "frames": count,
        "width": width + width % 2 if padded else width,
        "height": height + height % 2 if padded else height,
        "fps": fps,
    }
    if padded:
        block["padded_from"] = [width, height]
    return block


def write_text(text: str, target: Path, overwrite: bool) -> None:
    """Write a small text file (a sidecar) atomically."""
    temp = _temp_name(target, is_dir=False)
    try:
        temp.write_text(text, encoding="utf-8")
        _move_into_place(temp, target, overwrite)
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {exc.strerror or exc}.") from None
    finally:
        temp.unlink(missing_ok=True)


def embedded_metadata(path: Path) -> dict[str, Any] | None:
    """The compact provenance JSON that `write` put in a video's container, if any."""
    result = subprocess.run(
        [ffmpeg(), "-hide_banner", "-loglevel", "error", *SAFE_INPUT, "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
    )
    if result.returncode:
        return None
    text = result.stdout.decode("utf-8", errors="replace")
    # ffmetadata escapes '=', ';', '#', '\' and newlines with a backslash.
    match = re.search(rf"^{METADATA_KEY}=((?:[^\\\n]|\\.)*)$", text, flags=re.MULTILINE | re.IGNORECASE)
    if not match:
        return None
    value = re.sub(r"\\(.)", r"\1", match.group(1))
    try:
        data = json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) and "vidgen_version" in data else None
