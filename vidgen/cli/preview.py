"""`vidgen preview FILE...`: contact sheets for outputs already made."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidgen.core.errors import InputError
from vidgen.core.terminal import escape


def preview(
    files: Annotated[list[Path], typer.Argument(help="Videos (or PNG-frame folders) made by vidgen, or any videos.")],
) -> None:
    """Write NAME.preview.png beside each video: evenly spaced frames with prompt and seed.

    The sidecar beside a video gives the caption and is updated to name its preview; a video
    without one is captioned with its file name. Prints each preview's path.

        vidgen preview outputs/*.mp4
    """
    for path in files:
        typer.echo(escape(make(path)))


def make(path: Path) -> Path:
    """The contact sheet of one output; its sidecar (when beside it) records the preview."""
    from vidgen.browse import preview as sheets
    from vidgen.io import media, outputs
    from vidgen.io import sidecar as sidecars

    if path.suffix.lower() == ".json":
        raise InputError(f"{path} is a sidecar; pass the video it describes.")
    if not path.exists():
        raise InputError(f"{path} does not exist.")
    if not (path.is_file() or path.is_dir()):
        raise InputError(f"{path} is not a regular file or folder; pass a video.")
    beside = outputs.beside("sidecar", path)
    data = sidecars.read(beside) if beside.is_file() else None
    if data is not None:
        config = data.get("config") if isinstance(data.get("config"), dict) else {}
        inputs = config.get("inputs") if isinstance(config.get("inputs"), dict) else {}
        prompt, seed = str(inputs.get("prompt") or ""), data.get("seed")
        caption = sheets.caption(prompt, seed)
    else:
        caption = path.name
    written = sheets.save(sheets.sheet(sheets.read_frames(path), caption), outputs.beside("preview", path))
    if data is not None and isinstance(data.get("output"), dict):
        data["output"]["preview"] = written.name
        media.write_text(sidecars.dumps(data), beside, overwrite=True)
    return written
