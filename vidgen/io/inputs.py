"""A run's input image or video, read and brought to the model's size before any weights load.

Images come from a file or an http(s) URL; videos from a file ffmpeg can decode or a folder of
frames. Every input is checked (exists, decodes, not truncated, not absurdly small or large),
EXIF-oriented, composited onto a stated background where transparent, and resized with the
chosen `--resize` mode. What was done is recorded, with hashes, for the sidecar.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vidgen import __version__
from vidgen.config.flags import flag
from vidgen.config.kinds import INPUT_KINDS, InputKind
from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, InputError
from vidgen.core.limits import MAX_FRAMES, MAX_SIDE, pseudo_file, read_bytes
from vidgen.io.trust import is_url

# Larger images are refused before decoding: a small file can declare a huge canvas
# (a decompression bomb) and exhaust memory.
MAX_PIXELS = 100_000_000
# Smaller images carry too little to animate; they are almost always a mistake.
MIN_SIDE = 16
MAX_BYTES = 256 * 1024 * 1024
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
URL_TIMEOUT = 30
DEFAULT_RESIZE = "crop"
DEFAULT_BACKGROUND = "white"


@dataclass
class Prepared:
    media: dict[str, Any]  # pipeline keyword arguments that are not JSON: image=, video=, prompt=
    record: dict[str, Any]  # the sidecar's `inputs` block
    notes: list[str] = field(default_factory=list)  # what the user should be told
    # media argument -> where the sidecar describes it
    sources: dict[str, str] = field(default_factory=dict)
    # Videos and frame folders that hold more frames than were read (--max-frames cut them).
    cut: set[str] = field(default_factory=set)

    @property
    def frames(self) -> int | None:
        """The frame count of the input video or control frames, if the run has one."""
        for name in ("video", "control"):
            if name in self.record:
                return self.record[name]["frames_used"]
        return None


def background(cfg: RunConfig) -> tuple[int, int, int]:
    from PIL import ImageColor

    value = cfg.inputs.background or DEFAULT_BACKGROUND
    try:
        return ImageColor.getrgb(value)[:3]
    except ValueError:
        raise ConfigError(
            f"--background {value} is not a colour; use a name such as white or a hex code such as #202020."
        ) from None


@contextmanager
def _named(label: str, ref: str) -> Iterator[None]:
    """Errors about the input `ref` name the flag (or argument) that gave it: "--mask m.png does
    not exist", not "m.png does not exist", so a command with several inputs says which one."""
    try:
        yield
    except (InputError, ConfigError) as exc:
        text = str(exc)
        if not ref or not text.startswith(ref) or text.startswith(label):
            raise
        raise type(exc)(f"{label} {text}") from None


def prepare(cfg: RunConfig, family: Any, fps: int) -> Prepared:
    """Read and prepare every input file the run names, each by its kind's reader
    (config/kinds.py) in the kinds' order, then keyframes and clips, and a prompt map if any."""
    prepared = Prepared(media={}, record={})
    for kind in INPUT_KINDS.values():
        if cfg.inputs.get(kind.field):
            READERS[kind.reads](cfg, family, fps, kind, prepared)
    if cfg.inputs.conditions:
        _prepare_conditions(cfg, family, fps, prepared)
    if _control_from_video(cfg, family):
        _derive_control(cfg, prepared)
    # A data kind's parser may give several arguments from one file (c2w and intrinsics): each
    # names the input it came from.
    prepared.sources = {name: prepared.sources.get(name) or f"inputs.{name}" for name in prepared.media}
    if cfg.inputs.prompts:
        prompts = dict(sorted(cfg.inputs.prompts.items()))
        if cfg.inputs.prompt is not None:
            prompts = {0: cfg.inputs.prompt, **prompts}
        prepared.record["prompts"] = {str(frame): text for frame, text in prompts.items()}
        if not family.takes.prompts_in_call:
            # Prompt travel: JSON cannot key by int, so the map goes beside the call kwargs.
            prepared.media["prompt"] = prompts
            prepared.sources["prompt"] = "inputs.prompts (frame index -> prompt; use int keys)"
    return prepared


def _kind_image(cfg: RunConfig, family: Any, fps: int, kind: InputKind, prepared: Prepared) -> None:
    media, record = _image(cfg, cfg.inputs.get(kind.field), kind.flag)
    prepared.media[kind.field], prepared.record[kind.field] = media, record


def _kind_video(cfg: RunConfig, family: Any, fps: int, kind: InputKind, prepared: Prepared) -> None:
    clip = _prepare_video(cfg, family, fps, cfg.inputs.get(kind.field), kind.field, kind.flag)
    if kind.frames_of is not None and kind.frames_of in prepared.record:
        _same_frames(kind, clip, prepared)
    prepared.media.update(clip.media)
    prepared.record.update(clip.record)
    prepared.notes += clip.notes
    prepared.cut |= clip.cut


def _same_frames(kind: InputKind, clip: Prepared, prepared: Prepared) -> None:
    """A video that goes frame for frame with another (`kind.frames_of`) has as many frames, read
    the same way (the same cap): one that is longer or shorter is refused, not cut or padded."""
    other = INPUT_KINDS[kind.frames_of or ""]
    mine, theirs = clip.record[kind.field], prepared.record[other.field]
    if (mine["frames_read"], kind.field in clip.cut) != (theirs["frames_read"], other.field in prepared.cut):
        count = f"more than {mine['frames_read']}" if kind.field in clip.cut else str(mine["frames_read"])
        base = f"more than {theirs['frames_read']}" if other.field in prepared.cut else str(theirs["frames_read"])
        raise InputError(
            f"{kind.flag} {mine['path']} gives {count} frame(s) and {other.flag} {theirs['path']} {base}; "
            f"give {kind.flag} one frame per {other.flag} frame."
        )


def _kind_control(cfg: RunConfig, family: Any, fps: int, kind: InputKind, prepared: Prepared) -> None:
    if "video" in prepared.record:
        # Beside a video to transform (AnimateDiff v2v ControlNet): one control frame per frame.
        kind = replace(kind, frames_of="video")
    _kind_video(cfg, family, fps, kind, prepared)
    prepared.media[kind.field] = control_maps(cfg, prepared.media[kind.field])


def _control_from_video(cfg: RunConfig, family: Any) -> bool:
    """Whether the control maps come from the input video itself: a video-to-video run of a
    family that takes --control, given --preprocess (canny, pose, depth) and no --control."""
    wanted = bool(cfg.inputs.video) and not cfg.inputs.control and (cfg.inputs.preprocess or "none") != "none"
    return wanted and "inputs.control" in family.accepts(cfg.mode)


def _derive_control(cfg: RunConfig, prepared: Prepared) -> None:
    """Control maps made from the prepared input video's frames, frame for frame."""
    maps = control_maps(cfg, prepared.media["video"])
    digest = hashlib.sha256()
    for image in maps:
        digest.update(image.tobytes())
    video = prepared.record["video"]
    prepared.media["control"] = maps
    # Read from nowhere else: no file of its own for a replay to find again.
    prepared.record["control"] = {
        "from": "inputs.video",
        "path": video["path"],
        "preprocess": cfg.inputs.preprocess,
        "frames_used": len(maps),
        "resize": video["resize"],
        "prepared": {"size": list(maps[0].size), "frames": len(maps), "sha256": digest.hexdigest()},
    }


def _kind_mask(cfg: RunConfig, family: Any, fps: int, kind: InputKind, prepared: Prepared) -> None:
    _prepare_mask(cfg, fps, prepared)


def _kind_images(cfg: RunConfig, family: Any, fps: int, kind: InputKind, prepared: Prepared) -> None:
    _prepare_references(cfg, prepared, kind)


def _kind_data(cfg: RunConfig, family: Any, fps: int, kind: InputKind, prepared: Prepared) -> None:
    """A data file (a camera path): local and regular only, size-capped, hashed, then parsed by
    the kind's own function into pipeline arguments and the sidecar's record of it."""
    ref = str(cfg.inputs.get(kind.field))
    with _named(kind.flag, ref):
        if is_url(ref):
            raise InputError(f"{ref} is a URL; {kind.flag} reads a local file (download it first).")
        check_source(ref, kind.field)
        # The cap counts the bytes read (stat can lie: /proc files report 0), as for images.
        data = read_bytes(Path(ref).expanduser(), kind.max_bytes, kind.flag, InputError)
        assert kind.parse is not None  # register_input requires it for data kinds
        media, described = kind.parse(data, ref, cfg)
    digest = hashlib.sha256(data).hexdigest()
    prepared.media.update(media)
    prepared.sources.update(dict.fromkeys(media, kind.path))
    prepared.record[kind.field] = {
        "path": ref,
        **_resolved(ref),
        "sha256": digest,
        **described,
        # What reached the pipeline came from these bytes alone: a replay compares them.
        "prepared": {"sha256": digest},
    }


def check_source(ref: str, name: str) -> None:
    """A local input exists and is a regular file (or, for videos and control frames, a folder
    of them): devices, pipes, sockets and /proc are refused without being opened."""
    path = Path(ref).expanduser()
    kind = INPUT_KINDS.get(name)
    one_file = kind is not None and kind.single_file
    reads = kind.reads if kind is not None else None
    one = {"data": "one file", "media": "one picture, video or sound file"}.get(reads or "", "one image file")
    if not path.exists():
        raise InputError(f"{ref} does not exist.")
    if one_file and path.is_dir():
        raise InputError(f"{ref} is a folder; pass {one}.")
    if pseudo_file(path) or not (path.is_file() or path.is_dir()):
        what = one if one_file else "a video file or a folder of frames"
        raise InputError(f"{ref} is not a regular file (a device, pipe, socket or system file); pass {what}.")


# -- images -----------------------------------------------------------------------------


def _fetch(ref: str) -> bytes:
    """The bytes of a local file or an http(s) URL."""
    if ref.startswith(("http://", "https://")):
        request = urllib.request.Request(ref, headers={"User-Agent": f"vidgen/{__version__}"})
        try:
            with urllib.request.urlopen(request, timeout=URL_TIMEOUT) as response:
                data = response.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise InputError(f"could not fetch {ref}: the server answered HTTP {exc.code} {exc.reason}.") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise InputError(
                f"could not fetch {ref} ({reason}); check the URL and the network, or download it and pass the file."
            ) from None
    elif re.match(r"^[a-z][a-z0-9+.-]*://", ref, flags=re.IGNORECASE):
        raise InputError(f"{ref}: only local files and http(s) URLs can be read.")
    else:
        path = Path(ref).expanduser()
        if not path.exists():
            raise InputError(f"{ref} does not exist.")
        if path.is_dir():
            raise InputError(f"{ref} is a folder; pass one image file.")
        # Regular files only, and the cap counts the bytes read: /dev/zero reports size 0.
        data = read_bytes(path, MAX_BYTES, "input image", InputError)
    if len(data) > MAX_BYTES:
        raise InputError(f"{ref} is larger than {MAX_BYTES >> 20} MiB; that is not an input image.")
    return data


def _decode(data: bytes, name: str, bg: tuple[int, int, int]) -> tuple[Any, dict[str, Any]]:
    """An RGB PIL image, upright and opaque, plus what was found and done to it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    # PIL's own bomb check warns or raises with a generic message; vidgen's, below, names the size.
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InputError(f"{name} is not an image vidgen can read; use PNG, JPEG or WebP.") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if image.format not in IMAGE_FORMATS:
        raise InputError(f"{name} is a {image.format} image; vidgen reads PNG, JPEG and WebP.")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{name} declares {width}x{height} pixels ({width * height / 1e6:.0f} MP), over the "
            f"{MAX_PIXELS / 1e6:.0f} MP limit that guards against decompression bombs; downscale it first."
        )
    fmt = image.format
    try:
        image.load()
        orientation = int(image.getexif().get(0x0112, 1))
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{name} is truncated or corrupt ({exc}); export or download it again.") from None
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{name} is only {width}x{height}; an input image needs at least {MIN_SIDE} px per side.")
    info: dict[str, Any] = {"format": fmt, "size": [width, height]}
    if orientation != 1:
        info["exif_orientation"] = orientation
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*bg, 255))
        canvas.alpha_composite(rgba)
        image = canvas
        info["alpha_composited"] = True
    return image.convert("RGB"), info


def _resolved(ref: str) -> dict[str, str]:
    """The absolute path of a local input, so the sidecar still finds it from another folder."""
    if ref.startswith(("http://", "https://")):
        return {}
    return {"resolved_path": str(Path(ref).expanduser().resolve())}


def _resize(image: Any, size: tuple[int, int], mode: str, bg: tuple[int, int, int]) -> Any:
    from PIL import Image, ImageOps

    if image.size == size:
        return image
    if mode == "fit":
        return image.resize(size, Image.Resampling.LANCZOS)
    if mode == "pad":
        return ImageOps.pad(image, size, Image.Resampling.LANCZOS, color=bg)
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)


def _target(cfg: RunConfig) -> tuple[int, int]:
    # Family defaults always set a size; a custom family without one is a programming error.
    assert cfg.sampling.width is not None and cfg.sampling.height is not None
    return cfg.sampling.width, cfg.sampling.height


def _image(cfg: RunConfig, ref: str, label: str) -> tuple[Any, dict[str, Any]]:
    """One input image at the run's size, and its record; `label` (the flag that gave it) names
    it in errors."""
    bg = background(cfg)
    mode = cfg.inputs.resize or DEFAULT_RESIZE
    with _named(label, ref):
        data = _fetch(ref)
        image, info = _decode(data, ref, bg)
    image = _resize(image, _target(cfg), mode, bg)
    record = {
        "path": ref,
        **_resolved(ref),
        "sha256": hashlib.sha256(data).hexdigest(),
        **info,
        "resize": mode,
        "background": cfg.inputs.background or DEFAULT_BACKGROUND,
        # The exact pixels the pipeline got, so a reproduction can be checked.
        "prepared": {"size": list(image.size), "sha256": hashlib.sha256(image.tobytes()).hexdigest()},
    }
    return image, record


# -- videos -----------------------------------------------------------------------------


def _natural(path: Path) -> list[Any]:
    # frame_2 before frame_10
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name.lower())]


# What each input frame becomes as it is read (resized to the run's size), so a long clip is never
# held in memory at its own size.
Shape = Callable[[Any], Any]


def _frame_size(ref: str, width: int, height: int) -> None:
    """Input video frames are 16 to MAX_SIDE pixels a side, checked before any is decoded."""
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise InputError(
            f"{ref} has {width}x{height} frames; input video frames must be {MIN_SIDE} to {MAX_SIDE} pixels "
            f"a side. Scale it first, e.g. ffmpeg -i {ref} -vf scale=1280:-2 smaller.mp4."
        )


def _folder_frames(
    cfg: RunConfig, ref: str, path: Path, cap: int, bg: tuple[int, int, int], shape: Shape
) -> tuple[list[Any], dict, bool]:
    """The first `cap` frames of a folder, shaped, what was read, and whether it holds more."""
    if cfg.inputs.input_fps is not None:
        raise ConfigError(
            "--input-fps resamples a video file, and a folder of frames has no frame rate; "
            "drop --input-fps (use --max-frames to take fewer frames)."
        )
    try:
        files = sorted(
            (p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")),
            key=_natural,
        )
    except OSError as exc:
        raise InputError(f"cannot read {ref}: {exc.strerror or exc}.") from None
    if not files:
        raise InputError(f"{ref} has no frames in it: put the frames there as .png, .jpg or .webp files.")
    digest = hashlib.sha256()
    frames: list[Any] = []
    first_size = None
    for file in files[:cap]:
        data = _fetch(str(file))
        digest.update(data)
        image, info = _decode(data, str(file), bg)
        if first_size is None:
            _frame_size(ref, *image.size)
            first_size = image.size
        elif image.size != first_size:
            raise InputError(
                f"{file} is {image.size[0]}x{image.size[1]} but {files[0].name} is "
                f"{first_size[0]}x{first_size[1]}; every frame in a folder must have the same size."
            )
        frames.append(shape(image))
    assert first_size is not None
    return frames, {"kind": "folder", "sha256": digest.hexdigest(), "size": list(first_size)}, len(files) > cap


def _file_frames(ref: str, path: Path, cap: int, rate: float, shape: Shape) -> tuple[list[Any], dict, bool]:
    """The frames of a video file, each shaped as it is decoded. The file's header is read first:
    frames over MAX_SIDE a side are refused before one is decoded (ffmpeg's decoder refuses
    them too, whatever the header says)."""
    from PIL import Image

    from vidgen.io import media

    unreadable = f"{ref} is not a video ffmpeg can read; use mp4, webm, gif or a folder of frames."
    found = media.probe(path)
    if found is None:
        raise InputError(unreadable)
    _frame_size(ref, found.width, found.height)
    # The fps filter resamples (dropping or repeating frames); -frames:v stops decoding early.
    frames: list[Any] = []
    size = None
    # One frame past the cap is decoded to tell whether the clip has more (a mask must match).
    decoded = media.frames(path, ["-vf", f"fps={rate:g}", "-frames:v", str(cap + 1)])
    try:
        for frame in decoded:
            # What the decoder gives (a rotated video turns); every frame of a stream has one size.
            size = size or (frame.shape[1], frame.shape[0])
            if min(size) < MIN_SIDE or max(size) > MAX_SIDE:
                break
            frames.append(shape(Image.fromarray(frame)))
    except InputError:
        raise InputError(unreadable) from None
    finally:
        decoded.close()
    assert size is not None
    _frame_size(ref, *size)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    info = {"kind": "file", "sha256": digest.hexdigest(), "size": list(size), "source_fps": found.fps}
    return frames[:cap], info, len(frames) > cap


def _prepare_video(cfg: RunConfig, family: Any, fps: int, ref: str, name: str, label: str = "") -> Prepared:
    """Frames of the input (`name` video or control) at the model's size, trimmed to what the
    family takes; `label` names it in errors (default: the flag of `name`)."""
    with _named(label or flag(f"inputs.{name}"), ref):
        return _read_video(cfg, family, fps, ref, name)


def _read_video(cfg: RunConfig, family: Any, fps: int, ref: str, name: str) -> Prepared:
    path = Path(ref).expanduser()
    if not path.exists():
        raise InputError(f"{ref} does not exist.")
    check_source(ref, name)
    kind = INPUT_KINDS.get(name)
    own_size = kind is not None and kind.own_size
    bg = background(cfg)
    mode = cfg.inputs.resize or DEFAULT_RESIZE
    cap = cfg.inputs.max_frames or MAX_FRAMES
    rate = cfg.inputs.input_fps or fps
    size = _target(cfg)

    def shape(frame: Any) -> Any:
        return frame if own_size else _resize(frame, size, mode, bg)

    if path.is_dir():
        frames, info, more = _folder_frames(cfg, ref, path, cap, bg, shape)
    else:
        frames, info, more = _file_frames(ref, path, cap, rate, shape)
        info["input_fps"] = rate
    if own_size:
        size = tuple(info["size"])
    read = len(frames)
    usable = family.grid.usable(read)
    if not usable:
        raise InputError(
            f"{ref} gives {read} frame(s); {family.title} needs at least {family.grid.min_frames}. "
            "Use a longer clip, a higher --input-fps or a larger --max-frames."
        )
    notes = []
    if usable < read:
        notes.append(f"using the first {usable} of {read} input frames ({family.title} takes {family.grid.rule}).")
    prepared = frames[:usable]
    digest = hashlib.sha256()
    for frame in prepared:
        digest.update(frame.tobytes())
    record = {
        "path": ref,
        **_resolved(ref),
        **info,
        "frames_read": read,
        "frames_used": usable,
        "resize": mode,
        "background": cfg.inputs.background or DEFAULT_BACKGROUND,
        "prepared": {"size": list(size), "frames": usable, "sha256": digest.hexdigest()},
    }
    return Prepared(media={name: prepared}, record={name: record}, notes=notes, cut={name} if more else set())


# -- masks and reference images (Wan VACE) ----------------------------------------------------

WHITE = (255, 255, 255)


def _prepare_mask(cfg: RunConfig, fps: int, prepared: Prepared) -> None:
    """The mask beside the control frames: a video or folder with as many frames as the control
    input, or one image for every frame, of the control input's size. It is resized like the
    control frames; what --resize pad adds is white (generated), so pad outpaints."""
    ref = cfg.inputs.mask or ""
    control = prepared.record["control"]
    size, read, usable = tuple(control["size"]), control["frames_read"], control["frames_used"]
    mode = cfg.inputs.resize or DEFAULT_RESIZE

    def shape(frame: Any) -> Any:
        # White = generate, black = keep, as WanVACEPipeline reads it (one grey channel).
        return _resize(frame.convert("RGB"), _target(cfg), mode, WHITE).convert("L")

    with _named("--mask", ref):
        frames, info, count = _read_mask(cfg, fps, ref, (read, "control" in prepared.cut), usable, shape)
    found = tuple(info["size"])

    if found != size:
        raise InputError(
            f"--mask {ref} is {found[0]}x{found[1]} and the --control frames are {size[0]}x{size[1]}; "
            "the mask must have the control frames' size."
        )
    target = _target(cfg)
    masks = frames[:usable]
    digest = hashlib.sha256()
    for frame in masks:
        digest.update(frame.tobytes())
    prepared.media["mask"] = masks
    prepared.record["mask"] = {
        "path": ref,
        **_resolved(ref),
        **info,
        # One image masks every frame; a video or folder is read and trimmed like the control.
        **({"frames_read": count, "frames_used": usable} if count is not None else {"repeated": usable}),
        "resize": mode,
        "prepared": {"size": list(target), "frames": usable, "sha256": digest.hexdigest()},
    }


def _read_mask(
    cfg: RunConfig, fps: int, ref: str, control: tuple[int, bool], usable: int, shape: Shape
) -> tuple[list[Any], dict, int | None]:
    """The mask's frames, shaped (one image repeated), what was read, and its own frame count
    (None for one image). `control` is the control input's (frames read, whether it has more): a
    mask video or folder must have as many frames, read the same way (the same cap), so one that
    is longer is not cut to fit and taken for a match."""
    path = Path(ref).expanduser()
    check_source(ref, "mask")
    if path.is_file() and path.suffix.lower() in FRAME_SUFFIXES:
        data = _fetch(ref)
        image, info = _decode(data, ref, WHITE)
        return [shape(image)] * usable, {"kind": "image", "sha256": hashlib.sha256(data).hexdigest(), **info}, None
    cap = cfg.inputs.max_frames or MAX_FRAMES
    if path.is_dir():
        frames, info, more = _folder_frames(cfg, ref, path, cap, WHITE, shape)
    else:
        frames, info, more = _file_frames(ref, path, cap, cfg.inputs.input_fps or fps, shape)
    count = len(frames)
    read, control_more = control
    if (count, more) != (read, control_more):
        mine = f"more than {count}" if more else str(count)
        theirs = f"more than {read}" if control_more else str(read)
        raise InputError(
            f"--mask {ref} gives {mine} frame(s) and --control {cfg.inputs.control} {theirs}; give a mask with "
            "one frame per control frame, or one image for every frame."
        )
    return frames, info, count


def _prepare_references(cfg: RunConfig, prepared: Prepared, kind: InputKind) -> None:
    """Reference images (Wan VACE), each brought to the run's size: by default letterboxed on
    --background (white unless set), as WanVACEPipeline itself places them; --resize crop or fit
    changes that."""
    bg = background(cfg)
    mode = cfg.inputs.resize or "pad"
    images, records = [], []
    digest = hashlib.sha256()
    refs = list(cfg.inputs.get(kind.field) or [])
    for ref in refs:
        with _named(kind.flag, ref):
            data = _fetch(ref)
            image, info = _decode(data, ref, bg)
        image = _resize(image, _target(cfg), mode, bg)
        digest.update(image.tobytes())
        images.append(image)
        records.append({"path": ref, **_resolved(ref), "sha256": hashlib.sha256(data).hexdigest(), **info})
    prepared.media[kind.field] = images
    prepared.record[kind.field] = {
        "path": refs,
        "resolved_path": [record.get("resolved_path", record["path"]) for record in records],
        "images": records,
        "resize": mode,
        "background": cfg.inputs.background or DEFAULT_BACKGROUND,
        "prepared": {"size": list(_target(cfg)), "count": len(images), "sha256": digest.hexdigest()},
    }


# -- pictures, videos and sounds in one ordered list (MiniMax-H3's references) -------------------

# The first bytes of the picture formats vidgen reads; anything else is probed by ffmpeg.
_PICTURE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


@dataclass
class Medium:
    """One file of a media kind, as read: a picture (`image`, upright RGB at its own size), a
    video (`frames`, uint8 F x H x W x 3 at `fps`, with its sound if it has one) or a sound
    (`audio`, float32 channels x samples at `sample_rate`)."""

    kind: str  # one of config.kinds.MEDIA_KINDS
    image: Any = None
    frames: Any = None
    fps: float | None = None
    audio: Any = None
    sample_rate: int | None = None


def _kind_media(cfg: RunConfig, family: Any, fps: int, kind: InputKind, prepared: Prepared) -> None:
    """Pictures, videos and sounds in the order given: each told apart by what the file holds,
    read no longer than the run (videos at its frame rate, sounds cut at its duration), then the
    kind's own rules on the whole list (how many of each)."""
    refs = [str(ref) for ref in cfg.inputs.get(kind.field) or []]
    items, records = [], []
    digest = hashlib.sha256()
    for ref in refs:
        with _named(kind.flag, ref):
            item, record = _medium(cfg, kind, ref, fps)
        items.append(item)
        records.append(record)
        digest.update(record["prepared"]["sha256"].encode())
    if kind.check is not None:
        kind.check(list(zip(refs, items, strict=True)))
    prepared.media[kind.field] = items
    prepared.record[kind.field] = {
        "path": refs,
        "resolved_path": [record.get("resolved_path", record["path"]) for record in records],
        "items": records,
        "prepared": {"count": len(items), "sha256": digest.hexdigest()},
    }


def _medium(cfg: RunConfig, kind: InputKind, ref: str, fps: int) -> tuple[Medium, dict[str, Any]]:
    """One picture, video or sound of a media kind, and its record."""
    if is_url(ref):
        if not ref.startswith(("http://", "https://")):
            raise InputError(f"{ref}: only local files and http(s) URLs can be read.")
        # A URL is read as a picture (as IMAGE is); a video or sound is downloaded first.
        return _medium_picture(cfg, ref, _fetch(ref))
    check_source(ref, kind.field)
    path = Path(ref).expanduser()
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(_PICTURE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return _medium_picture(cfg, ref, _fetch(ref))
    from vidgen.io import media

    found = media.probe(path)
    # Sound no longer than the run: the pipeline would cut it there.
    sound = media.read_audio(path, (cfg.sampling.num_frames or 1) / fps, kind.sample_rate, most_channels=2)
    if found is not None:
        return _medium_video(cfg, kind, ref, path, fps, found, sound)
    if sound is None:
        raise InputError(
            f"{ref} is not a picture, video or sound vidgen can read; use PNG, JPEG or WebP, a video "
            "(mp4, webm, mov, gif) or a sound (wav, mp3, flac, m4a, ogg)."
        )
    if not sound[0].size:
        raise InputError(f"{ref} holds no sound (0 samples); pass a sound file with something in it.")
    return _medium_sound(ref, path, sound)


def _medium_picture(cfg: RunConfig, ref: str, data: bytes) -> tuple[Medium, dict[str, Any]]:
    image, info = _decode(data, ref, background(cfg))
    digest = hashlib.sha256(image.tobytes()).hexdigest()
    record = {"kind": "image", "path": ref, **_resolved(ref), "sha256": hashlib.sha256(data).hexdigest(), **info}
    # Brought to no size here: the family's pipeline sizes references by its own rule.
    record["prepared"] = {"size": list(image.size), "sha256": digest}
    return Medium("image", image=image), record


def _medium_sound(ref: str, path: Path, sound: tuple[Any, int]) -> tuple[Medium, dict[str, Any]]:
    from vidgen.io import media

    samples, rate = sound
    record = {"kind": "audio", "path": ref, **_resolved(ref), "sha256": media.sha256(path)}
    record["prepared"] = _sound_record(samples, rate)
    return Medium("audio", audio=samples, sample_rate=rate), record


def _sound_record(samples: Any, rate: int) -> dict[str, Any]:
    import numpy as np

    raw = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    return {
        "sample_rate": rate,
        "channels": int(samples.shape[0]),
        "samples": int(samples.shape[1]),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }


def _medium_video(
    cfg: RunConfig, kind: InputKind, ref: str, path: Path, fps: int, found: Any, sound: tuple[Any, int] | None
) -> tuple[Medium, dict[str, Any]]:
    """A video's first frames at the run's rate (as many as the run makes), brought to the
    kind's size as they are decoded (ffmpeg's Lanczos), and its sound, cut at the run's length."""
    import numpy as np

    from vidgen.io import media

    _frame_size(ref, found.width, found.height)
    cap = cfg.sampling.num_frames or MAX_FRAMES
    width, height = kind.fit(found.width, found.height) if kind.fit else (found.width, found.height)
    scale = f",scale={width}:{height}:flags=lanczos" if (width, height) != (found.width, found.height) else ""
    decoded = media.frames(path, ["-vf", f"fps={fps:g}{scale}", "-frames:v", str(cap)])
    try:
        frames = np.stack(list(decoded))
    finally:
        decoded.close()
    record = {
        "kind": "video",
        "path": ref,
        **_resolved(ref),
        "sha256": media.sha256(path),
        "size": [found.width, found.height],
        "source_fps": found.fps,
        "input_fps": fps,
        "frames_used": len(frames),
        "prepared": {
            "size": [int(frames.shape[2]), int(frames.shape[1])],
            "frames": len(frames),
            "sha256": hashlib.sha256(frames.tobytes()).hexdigest(),
        },
    }
    medium = Medium("video", frames=frames, fps=float(fps))
    if sound is not None and sound[0].size:
        medium.audio, medium.sample_rate = sound
        record["prepared"]["sound"] = _sound_record(*sound)
    return medium, record


def _prepare_conditions(cfg: RunConfig, family: Any, fps: int, prepared: Prepared) -> None:
    """Keyframe images and conditioning clips (inputs.conditions) at the run's size, in order:
    media["conditions"] holds one image or frame list each; the family passes them on."""
    items, records = [], []
    for index, condition in enumerate(cfg.inputs.conditions or []):
        if condition.image:
            image, record = _image(cfg, condition.image, "--keyframe")
            items.append(image)
        else:
            clip = _prepare_video(cfg, family, fps, condition.video or "", "video", "--condition-video")
            frames = clip.media["video"]
            # A clip placed at frame_index fills at most the frames left after it, on the
            # family's frame grid (the pipeline would trim it the same way, silently).
            room = max((cfg.sampling.num_frames or len(frames)) - condition.frame_index, 1)
            usable = family.grid.usable(min(len(frames), room)) or 1
            if usable < len(frames):
                prepared.notes.append(f"--condition-video {condition.video}: using its first {usable} frames.")
            items.append(frames[:usable])
            record = {**clip.record["video"], "frames_used": usable}
        records.append({"frame_index": condition.frame_index, "strength": condition.strength, **record})
        records[-1]["index"] = index
    prepared.media["conditions"] = items
    prepared.record["conditions"] = records


# -- control maps -----------------------------------------------------------------------------


def control_maps(cfg: RunConfig, frames: list[Any]) -> list[Any]:
    """Turn control frames into what the ControlNet expects: edge maps (canny), pose or depth
    maps (needs controlnet_aux and its detector weights), blurred frames (blur), or the frames as
    they are (none)."""
    method = cfg.inputs.preprocess or "none"
    if method == "none":
        return frames
    if method == "canny":
        return _canny(frames, cfg.inputs.canny_low or 100, cfg.inputs.canny_high or 200)
    if method == "blur":
        return _blur(frames)
    return _detect(method, frames)


# --preprocess blur: the Gaussian radius as a share of the frame's short side (8 px at 720p), so
# a clip blurs alike at any --height.
BLUR_SHARE = 1 / 90


def _blur(frames: list[Any]) -> list[Any]:
    """Each frame under a Gaussian blur whose radius is BLUR_SHARE of its short side: the
    appearance without the detail (Cosmos Transfer's blur control). PIL only, no extra."""
    from PIL import ImageFilter

    radius = max(1.0, min(frames[0].size) * BLUR_SHARE) if frames else 1.0
    return [frame.convert("RGB").filter(ImageFilter.GaussianBlur(radius)) for frame in frames]


def _canny(frames: list[Any], low: int, high: int) -> list[Any]:
    try:
        import cv2
    except ImportError:
        raise InputError(
            "--preprocess canny needs OpenCV: pip install opencv-python-headless (vidgen's `control` extra), "
            "or pass edge maps with --preprocess none."
        ) from None
    import numpy as np
    from PIL import Image

    if low > high:
        raise ConfigError(f"--canny-low {low} is above --canny-high {high}; the low threshold must be the smaller.")
    maps = []
    for frame in frames:
        edges = cv2.Canny(np.asarray(frame), low, high)
        maps.append(Image.fromarray(np.stack([edges] * 3, axis=-1)))
    return maps


def _detect(method: str, frames: list[Any]) -> list[Any]:
    try:
        import controlnet_aux
    except ImportError:
        raise InputError(
            f"--preprocess {method} needs a {method} detector: pip install controlnet-aux (its weights download "
            f"on first use), or pass {method} maps you made elsewhere with --preprocess none."
        ) from None
    detector_class = controlnet_aux.OpenposeDetector if method == "pose" else controlnet_aux.MidasDetector
    try:
        detector = detector_class.from_pretrained("lllyasviel/Annotators")
    except Exception as exc:  # any download or load failure of the third-party detector
        raise InputError(f"could not load the {method} detector (lllyasviel/Annotators): {exc}") from None
    size = frames[0].size
    return [detector(frame).resize(size) for frame in frames]


# config/kinds.py READERS -> the function that reads that kind into a run's Prepared inputs.
READERS = {
    "image": _kind_image,
    "video": _kind_video,
    "control": _kind_control,
    "mask": _kind_mask,
    "images": _kind_images,
    "data": _kind_data,
    "media": _kind_media,
}
