"""`vidgen presets list | show NAME`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vidgen import families
from vidgen.cli._help import HelpCommand, HelpGroup
from vidgen.cli._run import render_config
from vidgen.config import available_presets, resolve
from vidgen.config.layers import merged_preset, preset_description
from vidgen.core.terminal import escape

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
    width = max((len(row["name"]) for row in rows), default=0)
    modes = max((len(row["mode"]) for row in rows), default=0)
    for row in rows:
        typer.echo(escape(f"{row['name']:<{width}}  {row['mode']:<{modes}}  {row['description']}"))


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
