"""Contact sheets: a PNG grid of evenly spaced frames with the prompt and seed as a caption, so a
video can be judged at a glance (and many side by side) without playing it."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from vidgen.core.errors import InputError, WriteError

TILES = 8  # frames on a sheet, at most
COLUMNS = 4
# Tiny test models make 16x16 frames: tiles are scaled to a readable width, big ones shrunk.
TILE_MIN, TILE_MAX = 160, 320
CAPTION = 14  # font size in pixels


def pick(count: int, tiles: int = TILES) -> list[int]:
    """Indices of `tiles` frames spread evenly from the first to the last."""
    if count <= tiles:
        return list(range(count))
    return [round(i * (count - 1) / (tiles - 1)) for i in range(tiles)]


def sheet(frames: Any, caption: str) -> Any:
    """A PIL image: the picked frames (uint8, F x H x W x 3) in a grid under a caption."""
    from PIL import Image, ImageDraw, ImageFont

    if len(frames) == 0:
        raise InputError("the video has no frames to make a preview of.")
    chosen = [frames[i] for i in pick(len(frames))]
    height, width = chosen[0].shape[:2]
    tile_w = min(max(width, TILE_MIN), TILE_MAX)
    tile_h = max(1, round(height * tile_w / width))
    columns = min(COLUMNS, len(chosen))
    rows = math.ceil(len(chosen) / columns)
    font = ImageFont.load_default(size=CAPTION)
    band = CAPTION * 2 + 8
    pad = 4
    canvas = Image.new("RGB", (columns * (tile_w + pad) + pad, band + rows * (tile_h + pad) + pad), "#111")
    # Nearest keeps a tiny model's pixels crisp; big frames are shrunk smoothly.
    resample = Image.Resampling.NEAREST if tile_w >= width else Image.Resampling.LANCZOS
    for index, frame in enumerate(chosen):
        tile = Image.fromarray(frame).resize((tile_w, tile_h), resample)
        row, column = divmod(index, columns)
        canvas.paste(tile, (pad + column * (tile_w + pad), band + pad + row * (tile_h + pad)))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad + 2, 6), _fit(draw, caption, font, canvas.width - 2 * pad), fill="#eee", font=font)
    return canvas


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """`text` on one line, cut with an ellipsis where it would run past `width` pixels."""
    text = " ".join(text.split())
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def caption(prompt: str, seed: object) -> str:
    return f"seed {seed}  |  {prompt}" if prompt else f"seed {seed}"


def save(image: Any, target: Path) -> Path:
    """Write the sheet under a temporary name and move it into place, so no half-written PNG is
    ever left under the final name. A preview is derived data: an old one is replaced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".png.tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            image.save(stream, format="PNG")
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, target)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise WriteError(f"could not write the preview {target}: {exc.strerror or exc}.") from None
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write(frames: Any, output: Path, prompt: str, seed: object) -> Path:
    """The contact sheet of `frames` beside `output`; returns its path."""
    from vidgen.io.outputs import beside

    return save(sheet(frames, caption(prompt, seed)), beside("preview", output))


def read_frames(path: Path) -> Any:
    """The frames a sheet shows (uint8, F x H x W x 3) of a video file, decoded by the bundled
    ffmpeg, or of a folder of PNG frames (only those files are opened). A video's frame size is
    read from its header first, and frames over MAX_SIDE a side are refused undecoded."""
    import numpy as np

    from vidgen.core.limits import MAX_SIDE
    from vidgen.io import media

    if path.is_dir():
        from PIL import Image

        names = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
        chosen = [names[i] for i in pick(len(names))]
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in chosen]) if chosen else np.zeros((0,))
    import imageio_ffmpeg

    found = media.probe(path)
    if found is None:
        raise InputError(f"could not decode {path}: ffmpeg finds no video in it.")
    if max(found.width, found.height) > MAX_SIDE:
        size = f"{found.width}x{found.height}"
        raise InputError(f"{path} has {size} frames, over the {MAX_SIDE} pixels a side vidgen reads.")
    # Only the frames a sheet shows are kept, so a long video is not held in memory whole.
    try:
        count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))  # packets counted, nothing decoded
        wanted = set(pick(count))
        frames = [frame for index, frame in enumerate(media.frames(path)) if index in wanted]
    except (OSError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"could not decode {path}: {first[0] if first else type(exc).__name__}.") from None
    return np.stack(frames) if frames else np.zeros((0,))
