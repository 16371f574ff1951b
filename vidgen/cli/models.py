"""`vidgen models`: the model families, their modes and default repos."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vidgen import families
from vidgen.config import available_presets
from vidgen.config.flags import flag
from vidgen.config.layers import merged_preset
from vidgen.core.terminal import escape
from vidgen.families.base import Family, context_parallel
from vidgen.models.checkpoints import flag as file_flag
from vidgen.models.checkpoints import formats


def models(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    optimizations: Annotated[
        bool, typer.Option("--optimizations", help="Print which memory and speed options each family honours.")
    ] = False,
) -> None:
    """List the model families vidgen drives: for each mode its pipeline and default repo, then presets.

    vidgen models --optimizations
    """
    if optimizations:
        _optimizations(json_)
        return
    presets: dict[str, list[str]] = {}
    for name, path in available_presets().items():
        model = merged_preset(str(path)).get("model")
        family = model.get("family") if isinstance(model, dict) else None
        if family:
            presets.setdefault(family, []).append(name)
    rows = [
        {
            "family": family.name,
            "title": family.title,
            "modes": {
                mode: {"pipeline": spec.pipeline, "default_repo": spec.repo} for mode, spec in family.modes.items()
            },
            "takes_prompt": family.takes.text,
            "deprecated": family.deprecated,
            "optimizations": sorted(flag(f"optimization.{name}") for name in family.takes.optimizations),
            "options": [option.flag for option in family.options],
            "presets": presets.get(family.name, []),
            "files": _files(family),
        }
        for family in families.FAMILIES.values()
    ]
    if json_:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['family']}: {row['title']}")
        for mode, info in row["modes"].items():
            typer.echo(f"  {mode + ':':<10}{info['pipeline']} ({info['default_repo']})")
        typer.echo(escape(f"  presets:  {', '.join(row['presets']) or '-'}"))
        if row["options"]:
            typer.echo(f"  own:      {', '.join(row['options'])}")
        typer.echo(f"  options:  {', '.join(row['optimizations']) or '-'}")
        typer.echo(escape(f"  files:    {_files_line(row['files'])}"))
        if row["deprecated"]:
            typer.echo(f"  note:     {row['deprecated']}")


def _files(family: Family) -> dict[str, list[str]]:
    """flag -> the kinds of single file it takes: the components the family declares may come
    from one file, and --model where it takes one original-format checkpoint."""
    files = {file_flag(name): list(formats(name)) for name in family.loading.files}
    if family.loading.single_file:
        files["--model"] = ["single-file checkpoint"]
    return files


def _files_line(files: dict[str, list[str]]) -> str:
    """`--transformer, --transformer-2 (GGUF, safetensors, scaled fp8); --text-encoder (...)`:
    flags that take the same kinds of file share their parentheses."""
    if not files:
        return "diffusers folders only"
    groups: dict[tuple[str, ...], list[str]] = {}
    for option, kinds in files.items():
        groups.setdefault(tuple(kinds), []).append(option)
    return "; ".join(f"{', '.join(options)} ({', '.join(kinds)})" for kinds, options in groups.items())


def _optimizations(as_json: bool) -> None:
    """The capability table: an option a family does not honour is refused (exit 3) by name."""
    from vidgen.families.base import OPTIMIZATIONS

    table = {family.name: {flag(f"optimization.{name}"): name in family.takes.optimizations for name in OPTIMIZATIONS}
             for family in families.FAMILIES.values()}  # fmt: skip
    for family in families.FAMILIES.values():
        # Derived from the family's transformer classes (their diffusers context-parallel plan).
        table[family.name]["--gpus"] = any(context_parallel(family, mode) for mode in ("t2v", "i2v"))
    hints = {
        family.name: {_shown(path): hint for path, hint in family.hints.items() if path.startswith("optimization.")}
        for family in families.FAMILIES.values()
    }
    if as_json:
        typer.echo(json.dumps({"table": table, "instead": hints}, indent=2))
        return
    # Options down, families across: eleven options fit a terminal's height, eight families its width.
    options = [flag(f"optimization.{name}") for name in OPTIMIZATIONS] + ["--gpus"]
    width = max(len(option) for option in options) + 2
    typer.echo(" " * width + "  ".join(table))
    for option in options:
        cells = "  ".join(("yes" if table[name][option] else "-").center(len(name)) for name in table)
        typer.echo(f"{option:<{width}}{cells}")
    typer.echo("")
    for path, reason in families.DEFAULT_REASONS.items():
        typer.echo(f"{flag(path)}: families without it: {reason}.")
    for name, row in hints.items():
        for option, hint in row.items():
            typer.echo(f"{name}: {option}: {hint}")
    typer.echo(
        "\nRefused before loading: --offload without CUDA; --offload-type/--offload-stream without --offload group; "
        "--offload sequential with --compile or --quantize; --quantize with --fp8-storage; --memory auto with "
        "--offload; --quantize nf4 without CUDA; --gpus without CUDA, with --compile or --offload."
    )


def _shown(path: str) -> str:
    """`--cache faster` for the hint key optimization.cache=faster, the flag for a plain path."""
    field, _, value = path.partition("=")
    return f"{flag(field)} {value}".strip()
