"""`vidgen presets list | show NAME`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vidgen import families
from vidgen.cli._help import HelpCommand, HelpGroup
from vidgen.cli._plan import render_config
from vidgen.config import available_presets, resolve
from vidgen.config.layers import merged_preset, preset_description
from vidgen.core.terminal import columns, escape, fold

app = typer.Typer(
    cls=HelpGroup, no_args_is_help=True, rich_markup_mode=None, help="List the presets and show what one sets."
)


@app.command("list", cls=HelpCommand)
def list_(json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List every preset: shipped ones and yours (in ~/.config/vidgen/presets or $VIDGEN_PRESETS).

    vidgen presets list --json
    """
    rows = []
    for name, path in available_presets().items():
        data = merged_preset(str(path))
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        rows.append(
            {
                "name": name,
                "mode": data.get("mode", ""),
                "family": model.get("family", ""),
                "model": model.get("id", ""),
                "description": preset_description(path),
                "path": str(path),
            }
        )
    if json_:
        typer.echo(json.dumps(rows, indent=2))
        return
    for line in _listing(rows, columns()):
        typer.echo(line)


# Names longer than this take a line of their own rather than widening every row.
_NAME_COLUMN = 28


def _listing(rows: list[dict[str, str]], limit: int) -> list[str]:
    """NAME  MODE  DESCRIPTION rows within `limit` columns: the description folds under itself,
    and a name too long for its column puts the description on the next line."""
    names = min(max((len(row["name"]) for row in rows), default=0), _NAME_COLUMN)
    modes = max((len(row["mode"]) for row in rows), default=0)
    column = names + modes + 4
    lines = []
    for row in rows:
        name, mode = escape(row["name"]), escape(row["mode"])
        text = fold(escape(row["description"]), max(limit - column, 30))
        if len(name) > names:
            lines.append(f"{name}  {mode}")
            lines += [" " * column + line for line in text if line]
            continue
        lines.append(f"{name:<{names}}  {mode:<{modes}}  {text[0]}".rstrip())
        lines += [" " * column + line for line in text[1:]]
    return lines


@app.command(cls=HelpCommand)
def show(
    name: Annotated[str, typer.Argument(help="Preset name or YAML file.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON with the sources.")] = False,
) -> None:
    """Show the merged config a preset gives, with the layer that set each field.

    vidgen presets show tiny-cogvideox
    """
    mode = merged_preset(name).get("mode", "t2v")
    resolved = resolve(mode, [name], [], families.defaults_layer)
    config = resolved.config.model_dump(mode="json")
    if json_:
        typer.echo(json.dumps({"config": config, "sources": resolved.sources, "presets": resolved.presets}, indent=2))
        return
    chain = " -> ".join(p["name"] for p in resolved.presets)
    typer.echo(escape(f"# {chain}  ({resolved.presets[-1]['path']})"))
    typer.echo(render_config(config, resolved.sources))
