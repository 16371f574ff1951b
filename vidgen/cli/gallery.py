"""`vidgen gallery DIR`: one page to compare every output under a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidgen.core.terminal import escape


def gallery(
    folder: Annotated[Path, typer.Argument(help="Folder of outputs (searched recursively).")] = Path("outputs"),
    axes: Annotated[
        list[str] | None,
        typer.Option(
            "--axis",
            metavar="FIELD",
            help="Swept field for the grid rows, then columns (repeatable; default: the first two).",
        ),
    ] = None,
) -> None:
    """Write DIR/index.html: every output as a tile, matrix sweeps as grids.

    Self-contained (no network): videos play on hover or click; a filter and a sort by time,
    prompt or seed; each tile shows the settings, timings and peak memory, and links its
    sidecar. Prints the page's path.

        vidgen gallery runs/
    """
    from vidgen.browse import gallery as pages

    typer.echo(escape(pages.write(folder, axes=axes)))
