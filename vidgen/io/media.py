"""Writing videos and frames with imageio-ffmpeg's bundled ffmpeg, and reading them back.

Frames stay uint8 numpy arrays from the pipeline to ffmpeg's stdin (no per-frame PIL images).
Every file is written under a temporary name in its final directory (`.NAME.HOST.PID.xxxx.part`,
so a later run can tell whose it is) and published with a link or an exclusive rename, so an
interrupted run never leaves a truncated file under a final name and a second writer never
replaces a first one's file without --overwrite.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vidgen.core import stopping
from vidgen.core.errors import ConfigError, InputError, WriteError
from vidgen.core.limits import MAX_FRAME_PIXELS, MAX_METADATA_BYTES

try:
    import resource
except ImportError:  # not a Unix: no memory cap on ffmpeg children
    resource = None  # type: ignore[assignment]

# format -> codec name -> (ffmpeg encoder, default CRF, highest CRF)
CODECS: dict[str, dict[str, tuple[str, int, int]]] = {
    "mp4": {"h264": ("libx264", 18, 51), "h265": ("libx265", 22, 51), "av1": ("libsvtav1", 32, 63)},
    "webm": {"vp9": ("libvpx-vp9", 32, 63), "av1": ("libsvtav1", 32, 63)},
}
DEFAULT_CODEC = {"mp4": "h264", "webm": "vp9"}
# format -> (audio codec name, ffmpeg encoder and its options) for the sound of families that
# make it: AAC in mp4 and Opus in webm play in every browser. PNG frame folders get a float WAV
# (audio.wav) inside the folder; gif and webp have no audio track (refused before loading).
AUDIO_CODECS: dict[str, tuple[str, list[str]]] = {
    "mp4": ("aac", ["-c:a", "aac", "-b:a", "192k"]),
    "webm": ("opus", ["-c:a", "libopus", "-b:a", "128k"]),
    "png": ("pcm_f32le", ["-c:a", "pcm_f32le", "-f", "wav"]),
}
AUDIO_FILE = "audio.wav"  # the sound of a png frame folder, inside it
# The sidecar's `output.poster`: the first frame, at most this many pixels a side, as a JPEG data
# URI (a few KB; a gallery tile is 260 px wide).
POSTER_SIDE = 256
POSTER_QUALITY = 75
POSTER_PREFIX = "data:image/jpeg;base64,"
# Where the compact provenance copy goes inside the container.
METADATA_KEY = "comment"
# ffmpeg options before `-i` for every file vidgen reads: local files only (no http, tcp or
# concat: protocols), real video containers only (no HLS or concat playlists, which make
# ffmpeg fetch URLs or read other local files that the user never named), and decoders that
# refuse frames over MAX_FRAME_PIXELS (a 100 KB file of 8192x4320 frames took 1.5 GB to decode).
SAFE_INPUT = [
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,gif,avi,flv,mpegts,mpeg,ogg,asf,webp_anim,webp_pipe,apng,image2,"
    # Sound files (MiniMax-H3's sound references): plain demuxers that name no other file.
    "wav,mp3,flac,aac",
    "-max_pixels",
    str(MAX_FRAME_PIXELS),
]
# What an ffmpeg that only reads a file's header may allocate (heap and private mappings): a
# container can hold a metadata value of hundreds of MB, which ffmpeg keeps several copies of;
# past this it drops the value instead of taking the machine's memory.
HEADER_MEMORY = 512 << 20


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
    """Float frames in [0, 1] -> uint8, rounded (diffusers truncates; rounding is closer);
    uint8 frames (a finished chain's) as they are."""
    import numpy as np

    if getattr(frames, "dtype", None) == np.uint8:
        return np.ascontiguousarray(frames)
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)  # a fresh, contiguous array


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for item in files:
        with open(item, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:40] or "host"


def owner_tag() -> str:
    """HOST.PID: who a temporary file belongs to, so a sweep never touches a live writer's."""
    return f"{_host()}.{os.getpid()}"


# tempfile's random part of a temporary name (`.NAME.HOST.PID.xxxxxxxx.part`).
_TEMP_RANDOM = 8


def check_name(target: Path) -> None:
    """Refuse, before any work, an output name the file system cannot hold (ConfigError, exit 3):
    any part of the path longer than a file name may be there, or a file name whose temporary
    name (`.NAME.HOST.PID.xxxxxxxx.part`, the longest vidgen writes for it) would be."""
    existing, limit = target.parent, 255
    with contextlib.suppress(OSError, ValueError):  # a part too long to look up: the usual 255
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        limit = os.pathconf(existing, "PC_NAME_MAX") if existing.is_dir() else limit
    extra = len(os.fsencode(f"..{owner_tag()}.{'x' * _TEMP_RANDOM}.part"))
    for part in target.parts:
        size = len(os.fsencode(part))
        room = limit - (extra if part == target.name else 0)
        if size > room:
            shown = part if len(part) <= 48 else f"{part[:40]}...{part[-6:]}"
            why = f", as vidgen first writes it under a temporary name {extra} bytes longer" if room < limit else ""
            raise ConfigError(
                f"the output name {shown} is {size} bytes; a name here may have {room}{why}. "
                "Use a shorter --out name or job id."
            )


def _temp_name(target: Path, is_dir: bool, hint: str = "choose another --out") -> Path:
    prefix = f".{target.name}.{owner_tag()}."
    try:
        if target.parent.exists() and not target.parent.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=".part", dir=target.parent))
        handle, name = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=target.parent)
    except OSError as exc:
        raise write_error(target.parent, exc, hint=hint) from None
    os.close(handle)
    return Path(name)


def write_error(
    where: Path | str, exc: OSError, what: str = "cannot write", hint: str = "choose another --out"
) -> WriteError:
    """One line for a failed write; a full disk (or a file size limit) says so and where."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return WriteError(f"no space left on device at {where}; free some space or {hint}.")
    if exc.errno == errno.EFBIG:
        return WriteError(f"file size limit reached at {where} (ulimit -f); raise the limit or {hint}.")
    return WriteError(f"{what} {where}: {exc.strerror or exc}; {hint}.")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """Linux renameat2 (RENAME_NOREPLACE=1, RENAME_EXCHANGE=2); False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if call(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), ctypes.c_uint(flags)) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL):  # an old kernel or a file system without it
        return False
    raise OSError(code, os.strerror(code), str(target))


def _exists_error(target: Path) -> WriteError:
    return WriteError(f"{target} already exists; pass --overwrite or choose another --out.")


def _move_into_place(temp: Path, target: Path, overwrite: bool) -> None:
    # mkstemp/mkdtemp create private files; give the result the permissions a plain open() would.
    temp.chmod((0o777 if temp.is_dir() else 0o666) & ~_umask())
    if not overwrite:
        _publish_new(temp, target)
    elif temp.is_dir() and target.exists():
        _swap_folder(temp, target)
    else:
        os.replace(temp, target)


def _publish_new(temp: Path, target: Path) -> None:
    """Put `temp` in place only if nothing is there: an exists-check followed by a rename would let
    a second writer's file replace the first one's in between."""
    try:
        if temp.is_dir():
            if not _renameat2(temp, target, 1):
                if target.exists():
                    raise FileExistsError(errno.EEXIST, "exists")
                os.rename(temp, target)  # fails on a non-empty folder that appeared meanwhile
        else:
            os.link(temp, target)  # atomic and exclusive: fails if the name exists
            temp.unlink()
    except FileExistsError:
        raise _exists_error(target) from None
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise _exists_error(target) from None
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV) or temp.is_dir():
            raise
        # File systems without hard links (some network and FAT mounts): the best available.
        if target.exists():
            raise _exists_error(target) from None
        os.replace(temp, target)


def _swap_folder(temp: Path, target: Path) -> None:
    """Replace a frames folder so that a reader always finds a complete one: an atomic exchange
    where the kernel has it; else the old folder moves aside (`.NAME.old-HOST.PID`, put back
    by the next run's sweep if the new one never arrived)."""
    if _renameat2(temp, target, 2):
        shutil.rmtree(temp, ignore_errors=True)  # it holds the old output now
        return
    trash = target.with_name(f".{target.name}.old-{owner_tag()}")
    os.replace(target, trash)
    os.replace(temp, target)
    shutil.rmtree(trash, ignore_errors=True)


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:old-)?(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)(?:\.[^.]*\.part)?$")


def alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0 or -1) would ask about whole process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep(folder: Path) -> list[Path]:
    """Remove the `.part` files and `.old-` folders that dead vidgen processes on this host left
    in `folder`; an `.old-` folder whose output never arrived is put back instead. Files of live
    processes, and of other hosts (a shared disk), are left alone. Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    host = _host()
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        old = ".old-" in entry.name and not entry.name.endswith(".part")
        if not match or (not old and not entry.name.endswith(".part")):
            continue
        if match["host"] != host or alive(int(match["pid"])):
            continue
        try:
            final = folder / match["name"]
            if old and not final.exists():
                os.rename(entry, final)  # the new output never arrived: the old one is the output
                continue
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry)
        except OSError:
            continue  # another run swept it first, or it is not ours to remove
    return removed


def _die_with_parent() -> None:
    """In the ffmpeg child: be killed when vidgen dies, however it dies (even SIGKILL), instead of
    writing the rest of a `.part` file nobody will publish."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def child(data_limit: int | None = None) -> Callable[[], None]:
    """What an ffmpeg child runs before it starts: dies with vidgen, and allocates at most
    `data_limit` bytes where given (RLIMIT_DATA; thread stacks and the binary do not count)."""

    def setup() -> None:
        _die_with_parent()
        if data_limit is not None and resource is not None:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_DATA, (data_limit, data_limit))

    return setup


def _metadata_file(target: Path, metadata: str) -> Path:
    """An ffmetadata file for the compact sidecar: on ffmpeg's command line a long prompt would
    exceed the kernel's limit for one argument (128 KiB) and lose the finished generation."""
    escaped = re.sub(r"([=;#\\\n])", r"\\\1", metadata)
    path = _temp_name(target.with_name(target.name + ".meta"), is_dir=False)
    try:
        path.write_text(f";FFMETADATA1\n{METADATA_KEY}={escaped}\n", encoding="utf-8")
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise write_error(target, exc) from None
    return path


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


# HDR10, as HDR displays, players and grading tools read it: 10-bit H.265 in BT.2020 primaries with
# the PQ transfer (SMPTE ST 2084), limited range, the colour tags in the container and the stream.
_HDR10 = [
    "-vf",
    "scale=out_color_matrix=bt2020:out_range=tv,format=yuv420p10le",
    "-c:v",
    "libx265",
    "-x265-params",
    "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:range=limited:hdr10=1:repeat-headers=1",
    "-color_primaries",
    "bt2020",
    "-color_trc",
    "smpte2084",
    "-colorspace",
    "bt2020nc",
    "-color_range",
    "tv",
    "-tag:v",
    "hvc1",
]
# Where the HDR family's linear 1.0 (the SDR white of its reference clip) lands: BT.2408's HDR
# reference white, 203 cd/m2; brighter light keeps going up to PQ's 10000.
HDR_REFERENCE_WHITE = 203.0
HDR10_RECORD = {
    "transfer": "smpte2084 (PQ)",
    "primaries": "bt2020",
    "matrix": "bt2020nc",
    "bit_depth": 10,
    "reference_white_nits": HDR_REFERENCE_WHITE,
    "from": "linear Rec.709 light, 1.0 = reference white",
}
# Linear Rec.709 -> linear Rec.2020 (ITU-R BT.2087).
_BT709_TO_BT2020 = (
    (0.627404, 0.329283, 0.043313),
    (0.069097, 0.919540, 0.011362),
    (0.016391, 0.088013, 0.895595),
)


def pq(nits: Any) -> Any:
    """SMPTE ST 2084's inverse EOTF: light in cd/m2 -> PQ signal in [0, 1]."""
    import numpy as np

    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = np.clip(np.asarray(nits, dtype=np.float64) / 10000.0, 0.0, 1.0) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def hdr10(linear: Any) -> Any:
    """Linear Rec.709 frames (1.0 = reference white) -> 16-bit PQ Rec.2020 RGB for the encoder."""
    import numpy as np

    rgb = np.clip(np.asarray(linear, dtype=np.float64), 0.0, None) @ np.asarray(_BT709_TO_BT2020).T
    return (pq(rgb * HDR_REFERENCE_WHITE) * 65535.0).round().astype("<u2")


def hdr_record(hdr: Any) -> dict[str, Any]:
    """The sidecar's `output.hdr`: how the file holds the light, its peak, and the hash of the
    linear frames as the family made them (float32 little-endian, frames x height x width x 3),
    which plain diffusers' output is checked against."""
    import numpy as np

    linear = np.ascontiguousarray(hdr, dtype="<f4")
    peak = round(float(linear.max()), 4) if linear.size else 0.0
    return {**HDR10_RECORD, "peak": peak, "raw_sha256": hashlib.sha256(linear.tobytes()).hexdigest()}


def audio_record(audio: Any) -> dict[str, Any]:
    """What the sidecar says about raw sound (families.base.Audio) before encoding: its rate,
    channels, length and the sha256 of its float32 little-endian (channels, samples) bytes, which
    a plain diffusers run can be checked against."""
    import numpy as np

    samples = np.ascontiguousarray(audio.samples, dtype="<f4")
    return {
        "sample_rate": int(audio.sample_rate),
        "channels": int(samples.shape[0]),
        "samples": int(samples.shape[1]),
        "duration": round(samples.shape[1] / audio.sample_rate, 6),
        "raw_sha256": hashlib.sha256(samples.tobytes()).hexdigest(),
        "raw_format": "float32 little-endian, (channels, samples)",
    }


def _raw_audio_file(target: Path, audio: Any) -> Path:
    """The samples interleaved as raw float32 in a temporary file, for ffmpeg's second input."""
    import numpy as np

    path = _temp_name(target.with_name(target.name + ".audio"), is_dir=False)
    try:
        path.write_bytes(np.ascontiguousarray(np.asarray(audio.samples, dtype="<f4").T).tobytes())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise write_error(target, exc) from None
    return path


def _audio_input(raw: Path, audio: Any) -> list[str]:
    channels = int(audio.samples.shape[0])
    return ["-f", "f32le", "-ar", str(int(audio.sample_rate)), "-ac", str(channels), "-i", str(raw)]


def _write_wav(raw: Path, audio: Any, wav: Path) -> None:
    command = [ffmpeg(), "-y", "-hide_banner", "-loglevel", "error", *_audio_input(raw, audio)]
    result = subprocess.run(
        command + AUDIO_CODECS["png"][1] + [str(wav)], capture_output=True, preexec_fn=_die_with_parent
    )
    if result.returncode:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise WriteError(f"ffmpeg could not write {wav}: {detail[-1] if detail else 'unknown error'}")


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
    on_frame: Callable[[int, int], None] | None = None,
    audio: Any = None,
    hdr: Any = None,
) -> dict[str, Any]:
    """Write uint8 frames (F, H, W, 3) to `target` atomically, with `audio` (families.base.Audio)
    muxed in where given; returns the `output` sidecar block. `on_frame(done, total)` hears each
    frame written. With `hdr` (linear float frames of an HDR family, mp4 only) the file holds
    those as HDR10 and `frames` (their SDR rendering) only make the poster."""
    count, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    is_dir = fmt == "png"
    if audio is not None and fmt not in AUDIO_CODECS:
        raise ConfigError(f"{fmt} has no audio track; use --format mp4, webm or png, or add --no-audio.")
    temp = _temp_name(target, is_dir)
    meta = raw = None
    try:
        meta = _metadata_file(target, metadata) if metadata is not None and fmt in CODECS else None
        raw = _raw_audio_file(target, audio) if audio is not None else None
        if is_dir:
            _write_png_folder(temp, frames, metadata, on_frame, raw, audio)
        else:
            pixels, hdr_args = (frames, None) if hdr is None else (hdr10(hdr), _HDR10)
            _run_ffmpeg(
                pixels, temp, target, fmt, fps, codec, crf, meta, on_frame, (raw, audio) if raw else None, hdr_args
            )
        # Hashed before publishing: once in place, the name may belong to an --overwrite writer.
        digest = sha256(temp)
        size = None if is_dir else temp.stat().st_size
        _move_into_place(temp, target, overwrite)
    except OSError as exc:
        raise write_error(target, exc) from None
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True) if temp.is_dir() else temp.unlink(missing_ok=True)
        for part in (meta, raw):
            if part is not None:
                part.unlink(missing_ok=True)
    # yuv420p formats were padded to even sizes above; record what the file really holds.
    padded = fmt in CODECS and bool(width % 2 or height % 2)
    block = {
        "path": str(target),
        "sha256": digest,
        **({} if size is None else {"bytes": size}),
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
    if hdr is not None:
        block.update(codec="h265", hdr=hdr_record(hdr))
    if audio is not None:
        block["audio"] = {"codec": AUDIO_CODECS[fmt][0], **audio_record(audio)}
        if is_dir:
            block["audio"]["file"] = AUDIO_FILE
    if count:
        block["poster"] = poster(frames[0])
    return block


def _write_png_folder(
    temp: Path,
    frames: Any,
    metadata: str | None,
    on_frame: Callable[[int, int], None] | None,
    raw: Path | None,
    audio: Any,
) -> None:
    """The png format: one lossless file per frame in the (temporary) folder, and the sound's WAV."""
    from PIL import Image, PngImagePlugin

    # The first frame carries the provenance a video keeps in its container, so a folder
    # left without its sidecar is still recognised as vidgen's (and whose) by a rerun.
    info = PngImagePlugin.PngInfo()
    if metadata is not None:
        info.add_text(METADATA_KEY, metadata, zip=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(temp / f"frame_{index:05d}.png", pnginfo=info if index == 0 else None)
        if on_frame is not None:
            on_frame(index + 1, len(frames))
    if raw is not None:
        # Inside the folder, so the frames and their sound are published together.
        _write_wav(raw, audio, temp / AUDIO_FILE)


def poster(frame: Any) -> str:
    """A frame as a small JPEG data URI (at most POSTER_SIDE pixels a side): made while the frames
    are in memory, it lets a gallery show the output without decoding it."""
    import base64
    import io

    from PIL import Image

    image = Image.fromarray(frame)
    image.thumbnail((POSTER_SIDE, POSTER_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=POSTER_QUALITY)
    return POSTER_PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def _feed(command: list[str], frames: Any, on_frame: Callable[[int, int], None] | None) -> tuple[int, bytes]:
    """Run ffmpeg on the frames, one frame at a time on its stdin (so progress can count them);
    its stderr is read beside it, so a chatty ffmpeg never blocks on a full pipe."""
    import threading

    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent
    )
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)
    reader.start()
    try:
        stopping.check()  # a signal that landed during the fork was dropped there
        try:
            for index, frame in enumerate(frames):
                process.stdin.write(frame.tobytes())
                if on_frame is not None:
                    on_frame(index + 1, len(frames))
        except BrokenPipeError:
            pass  # ffmpeg stopped reading (a full disk, a size limit): its exit code says why
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        returncode = process.wait()
        stopping.check()
    except BaseException:
        # Ctrl-C, SIGTERM (raised by vidgen's handler) or any error here: ffmpeg goes too; the
        # death signal covers a vidgen killed outright.
        process.kill()
        process.wait()
        raise
    reader.join()
    return returncode, b"".join(errors)


def _run_ffmpeg(
    frames: Any,
    temp: Path,
    target: Path,
    fmt: str,
    fps: int,
    codec: str | None,
    crf: int | None,
    meta: Path | None,
    on_frame: Callable[[int, int], None] | None = None,
    sound: tuple[Path, Any] | None = None,
    hdr: list[str] | None = None,
) -> None:
    """Encode `frames` (uint8 RGB; with `hdr`, the encoder arguments for uint16 HDR10 frames)."""
    height, width = int(frames.shape[1]), int(frames.shape[2])
    pix_fmt = "rgb24" if hdr is None else "rgb48le"
    command = [ffmpeg(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", pix_fmt]
    command += ["-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
    maps = ["-map", "0:v"]
    if sound is not None:
        command += _audio_input(*sound)
        maps += ["-map", "1:a"]
    if meta is not None:
        command += ["-f", "ffmetadata", "-i", str(meta), "-map_metadata", str(1 + (sound is not None))]
    command += maps if sound is not None or meta is not None else []
    if hdr is None:
        command += _encode_args(fmt, codec, crf, width, height)
    else:
        pad = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2,"] if width % 2 or height % 2 else ["-vf", ""]
        command += [pad[0], pad[1] + hdr[1], *hdr[2:], "-crf", str(crf), "-movflags", "+faststart", "-f", "mp4"]
    if sound is not None:
        command += AUDIO_CODECS[fmt][1]
    returncode, stderr = _feed(command + [str(temp)], frames, on_frame)
    if returncode:
        detail = stderr.decode(errors="replace").strip().splitlines()
        text = detail[-1] if detail else "unknown error"
        if returncode == -25 or "File too large" in text:  # SIGXFSZ: ulimit -f
            raise OSError(errno.EFBIG, "File too large")
        if "No space left" in text or ("Nothing was written" in text and _full(target.parent)):
            raise OSError(errno.ENOSPC, "No space left on device")
        raise WriteError(f"ffmpeg could not write {target}: {text}")


def _full(folder: Path) -> bool:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < (1 << 20)


def write_text(text: str, target: Path, overwrite: bool, hint: str = "choose another --out") -> None:
    """Write a small text file (a sidecar, a report) atomically; `hint` ends a failure's message."""
    temp = _temp_name(target, is_dir=False, hint=hint)
    try:
        temp.write_text(text, encoding="utf-8")
        _move_into_place(temp, target, overwrite)
    except OSError as exc:
        raise write_error(target, exc, hint=hint) from None
    finally:
        temp.unlink(missing_ok=True)


def write_image(pixels: Any, target: Path, overwrite: bool, hint: str = "choose another --out") -> None:
    """Write one uint8 frame (height x width x 3) as a PNG atomically, as write_text does."""
    from PIL import Image

    temp = _temp_name(target, is_dir=False, hint=hint)
    try:
        Image.fromarray(pixels).save(temp, format="PNG")
        _move_into_place(temp, target, overwrite)
    except OSError as exc:
        raise write_error(target, exc, hint=hint) from None
    finally:
        temp.unlink(missing_ok=True)


def replace_file(target: Path, fill: Callable[[IO[bytes]], None], hint: str = "choose another --out") -> None:
    """Write a file that a run rewrites as it goes (a live preview): `fill` writes it into this
    process's temporary file beside it (`.NAME.HOST.PID.live.part`, reused for each rewrite and
    swept once its writer is dead), which then replaces `target` in one rename. A reader, or a run
    killed at any moment, finds the old file or the new one under the final name, never part of one."""
    temp = target.with_name(f".{target.name}.{owner_tag()}.live.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "wb") as stream:  # created as a plain open() would: no chmod to follow
            fill(stream)
        os.replace(temp, target)
    except OSError as exc:
        raise write_error(target, exc, hint=hint) from None
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


# A stream line of ffmpeg's header ("  Stream #0:0[0x1](und): Video: h264 ..., 832x480 ..."): two
# spaces, never more (metadata values are printed indented deeper, and cut at 255 characters).
_STREAM = re.compile(rb"^  Stream #\d+:\d+[^\n]{0,2000}", re.MULTILINE)


def _header(path: Path) -> list[str]:
    """The stream lines of ffmpeg's description of `path` (`ffmpeg -i`), read in chunks to the
    end: a file whose metadata makes ffmpeg print a million lines costs reading time, not
    memory. ffmpeg itself runs with one decoder thread and HEADER_MEMORY."""
    command = [ffmpeg(), "-hide_banner", "-nostdin", "-threads", "1", *SAFE_INPUT, "-i", str(path)]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=child(HEADER_MEMORY),
    )  # fmt: skip
    kept: list[bytes] = []
    rest = b""
    try:
        while chunk := process.stderr.read(1 << 16):
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            if len(kept) < 1000:
                kept += _STREAM.findall(data[:cut])
            rest = data[cut:][:4096]  # a line's start is all that is matched
        kept += _STREAM.findall(rest)
    finally:
        _stop(process)
    return [line.decode("utf-8", errors="replace") for line in kept[:1000]]


@dataclass(frozen=True)
class Probe:
    """A video file's frame size and rate, from its header."""

    width: int
    height: int
    fps: float  # 0.0 when the header gives none


def probe(path: Path) -> Probe | None:
    """The frame size and rate of a video file from its header alone, before any frame is
    decoded (None when ffmpeg finds no video in it). With several sizes (streams, or text in a
    crafted header), the largest is the answer: a header cannot make a file look smaller."""
    # Cover art (an attached picture) is not what is decoded; ffmpeg's decoders refuse frames over
    # MAX_FRAME_PIXELS whatever the header shows, so a line made to look like one costs nothing.
    videos = [line for line in _header(path) if ": Video: " in line and "(attached pic)" not in line]
    sizes = [(int(w), int(h)) for line in videos for w, h in re.findall(r", (\d{1,9})x(\d{1,9})(?=[ ,]|$)", line)]
    if not sizes:
        return None
    width, height = max(sizes, key=lambda size: size[0] * size[1])
    rate = re.search(r" ([0-9]+\.?[0-9]*) fps", videos[0])
    return Probe(width, height, float(rate.group(1)) if rate else 0.0)


def frames(path: Path, params: list[str] | None = None) -> Iterator[Any]:
    """A video file's frames as uint8 RGB arrays (H x W x 3), one at a time, decoded by the bundled
    ffmpeg; `params` go after the input (`-vf fps=8`, `-frames:v 9`). Each frame comes as a PPM
    image that states its own size, so nothing is taken from ffmpeg's log, and no frame over
    MAX_FRAME_PIXELS is read. InputError when ffmpeg gives no frame at all."""
    import threading

    import numpy as np

    command = [ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", *SAFE_INPUT, "-i", str(path)]
    command += [*(params or []), "-an", "-sn", "-dn", "-pix_fmt", "rgb24", "-c:v", "ppm", "-f", "image2pipe", "-"]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=child()
    )
    errors: deque[bytes] = deque(maxlen=8)  # the last lines ffmpeg complained with
    drain = threading.Thread(target=lambda: errors.extend(line[:500] for line in process.stderr), daemon=True)
    drain.start()
    count = 0
    try:
        while (size := _ppm_size(process.stdout)) is not None:
            width, height = size
            if width * height > MAX_FRAME_PIXELS:
                raise InputError(f"{path} has {width}x{height} frames, over the {_side()} limit.")
            data = process.stdout.read(width * height * 3)
            if len(data) < width * height * 3:
                break  # ffmpeg stopped mid-frame: its exit status says why
            count += 1
            yield np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
        code = process.wait()
        drain.join()
        if count == 0:
            last = next((line for line in reversed(errors) if line.strip()), b"")
            detail = last.decode("utf-8", errors="replace").strip() or f"ffmpeg exited with {code}"
            raise InputError(f"{path}: no frame could be decoded ({detail}).")
    finally:
        _stop(process)


def _ppm_size(stream: IO[bytes]) -> tuple[int, int] | None:
    """The size in a PPM header (`P6\\nW H\\n255\\n`), or None at the end of the stream."""
    magic = stream.readline(16)
    if not magic:
        return None
    dims, depth = stream.readline(32).split(), stream.readline(16).strip()
    if magic.strip() != b"P6" or len(dims) != 2 or depth != b"255" or not all(d.isdigit() for d in dims):
        raise InputError("ffmpeg sent frames vidgen cannot read.")
    return int(dims[0]), int(dims[1])


def _side() -> str:
    side = int(MAX_FRAME_PIXELS**0.5)
    return f"{side}x{side}"


def audio_stream(path: Path) -> str | None:
    """ffmpeg's description of a file's first audio stream ("aac (LC), 16000 Hz, stereo, fltp"),
    or None when it has none."""
    if not path.is_file():
        return None
    for line in _header(path):
        match = re.search(r": Audio: (.+)$", line)
        if match:
            return re.sub(r"\s*\(default\)$", "", match.group(1).strip())
    return None


def read_audio(
    path: Path, max_seconds: float = 3600.0, rate: int | None = None, most_channels: int | None = None
) -> tuple[Any, int] | None:
    """A clip's first audio stream as float32 samples (channels, n) and its rate, decoded by
    the bundled ffmpeg (None when the clip has none): resampled to `rate` if given, and mixed
    down to `most_channels` where it has more (a mono stream stays mono). `vidgen interpolate`
    and `upscale` carry it into the file they write; MiniMax-H3 conditions on it."""
    import numpy as np

    described = audio_stream(path)
    if described is None:
        return None
    found = re.search(r"(\d+) Hz", described)
    layout = re.search(r"Hz, ([^,]+)", described)
    if found is None:
        return None
    words = layout.group(1).strip() if layout else "stereo"
    count = re.match(r"(\d+) channels", words)
    surround = re.match(r"(\d+)\.(\d+)", words)
    if words.startswith(("mono", "stereo")):
        channels = 1 if words.startswith("mono") else 2
    elif count or surround:
        channels = int(count.group(1)) if count else int(surround.group(1)) + int(surround.group(2))
    else:
        channels = 2
    if most_channels is not None:
        channels = min(channels, most_channels)
    command = [ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", *SAFE_INPUT, "-i", str(path)]
    command += ["-vn", "-t", str(max_seconds), "-ac", str(channels)]
    command += ["-ar", str(rate)] if rate is not None else []
    command += ["-f", "f32le", "-acodec", "pcm_f32le", "-"]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, preexec_fn=child(), check=False)
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise InputError(f"{path}: its audio could not be decoded ({detail[-1] if detail else done.returncode}).")
    samples = np.frombuffer(done.stdout, dtype="<f4")
    samples = samples[: len(samples) - len(samples) % channels].reshape(-1, channels).T
    return np.ascontiguousarray(samples, dtype=np.float32), rate or int(found.group(1))


def embedded_metadata(path: Path) -> dict[str, Any] | None:
    """The compact provenance JSON that `write` put in a video's container (or in the first
    frame of a png folder), if any. At most MAX_METADATA_BYTES of metadata are read, and ffmpeg
    reads the header within HEADER_MEMORY; more metadata than that is InputError: vidgen never
    writes that much."""
    if path.is_dir():
        return _png_metadata(path / "frame_00000.png")
    command = [ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1", *SAFE_INPUT]
    process = subprocess.Popen(
        [*command, "-i", str(path), "-f", "ffmetadata", "-"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        preexec_fn=child(HEADER_MEMORY),
    )  # fmt: skip
    try:
        data = process.stdout.read(MAX_METADATA_BYTES + 1)
        if len(data) > MAX_METADATA_BYTES:
            raise InputError(
                f"{path} holds more than {MAX_METADATA_BYTES >> 20} MiB of metadata, far more than vidgen "
                "writes; it is not vidgen's provenance. Pass its .json sidecar instead."
            )
        code = process.wait()
    finally:
        _stop(process)
    if code:
        return None
    value = _ffmetadata_value(data.decode("utf-8", errors="replace"))
    return None if value is None else _provenance(value)


_ENTRY = re.compile(rf"^{METADATA_KEY}=", flags=re.MULTILINE | re.IGNORECASE)
# The newline that ends an ffmetadata value: one after an even run of backslashes (each pair is
# an escaped backslash). Possessive, so a run of a million backslashes costs no backtracking.
_VALUE_END = re.compile(r"(?<!\\)(?:\\\\)*+\n")


def _ffmetadata_value(text: str) -> str | None:
    """The value of METADATA_KEY in ffmetadata text, unescaped (ffmetadata escapes '=', ';',
    '#', '\\' and newlines with a backslash), in time linear in its length."""
    entry = _ENTRY.search(text)
    if entry is None:
        return None
    end = _VALUE_END.search(text, entry.end())
    raw = text[entry.end() : end.end() - 1 if end else len(text)]
    return re.sub(r"\\(.)", r"\1", raw, flags=re.DOTALL)


def _png_metadata(frame: Path) -> dict[str, Any] | None:
    if not frame.is_file():
        return None
    from PIL import Image

    try:
        # Pillow caps each text chunk (MAX_TEXT_CHUNK) and their sum, so a hostile png cannot
        # make this read unbounded data.
        with Image.open(frame) as image:
            value = getattr(image, "text", {}).get(METADATA_KEY)
    except (OSError, ValueError, SyntaxError):
        return None
    return _provenance(value) if isinstance(value, str) else None


def _provenance(value: str) -> dict[str, Any] | None:
    try:
        data = json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) and "vidgen_version" in data else None
