"""`vidgen ls DIR`: the outputs under a folder, from their sidecars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vidgen.core.terminal import escape, shorten

# Cells of the table are cut to these many characters (the prompt to its start, a file or model
# name around its middle, so a seed and an extension stay visible); --json keeps up to
# catalog.KEEP_CHARS of each.
PROMPT_CHARS = 80
CELL_CHARS = 60


def ls(
    folder: Annotated[Path, typer.Argument(help="Folder to list (searched recursively).")] = Path("outputs"),
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """List the outputs under a folder: file, mode, model, prompt, seed, frames, size, created.

    Outputs are found through the sidecars beside them, so stray files are not listed. A prompt
    rewritten by --enhance-prompt is shown after the typed one (`->`).

        vidgen ls outputs/ --json
    """
    from vidgen.browse import catalog

    rows = [entry.row() for entry in catalog.find(folder)]
    if json_:
        typer.echo(json.dumps({"outputs": rows, "exit_code": 0}))
        return
    if not rows:
        typer.echo(escape(f"no outputs under {folder}"), err=True)
        return
    table = [("FILE", "MODE", "MODEL", "SEED", "FRAMES", "SIZE", "CREATED", "PROMPT")]
    table += [_cells(row, folder) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        # The prompt goes last and unpadded: it is the one column of any length.
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        typer.echo(escape("  ".join([*cells, line[-1]]).rstrip()))


def _cells(row: dict[str, Any], folder: Path) -> tuple[str, ...]:
    path = Path(row["path"])
    name = str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)
    size = f"{row['width']}x{row['height']}" if row["width"] else "?"
    created = str(row["created_at"] or "")[:19].replace("T", " ")
    cells = (name, str(row["mode"] or ""), str(row["model"] or ""), str(row["seed"]), str(row["frames"] or ""))
    return (
        *(shorten(cell, CELL_CHARS, tail=CELL_CHARS // 3, count=False) for cell in cells),
        f"{size} {_bytes(row['bytes'])}",
        created,
        _prompt(row),
    )


def _prompt(row: dict[str, Any]) -> str:
    """The typed prompt, and the one --enhance-prompt wrote after it, each cut to PROMPT_CHARS."""
    typed = shorten(" ".join(str(row["prompt"]).split()), PROMPT_CHARS, count=False)
    if not row.get("enhanced_prompt"):
        return typed
    return f"{typed} -> {shorten(' '.join(str(row['enhanced_prompt']).split()), PROMPT_CHARS, count=False)}"


def _bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024  # type: ignore[assignment]
    return f"{count:.1f}GiB"
