"""Help that reads well in an 80-column terminal and in pipes.

Typer's rich help lays options out as a six-column table and, when it runs out of width, cuts
option names and metavars to "…". This renders help with Click's plain formatter instead, which
wraps but never cuts: options grouped under their panel headings, flags without a placeholder,
a short metavar for values (N, F, TEXT, a|b|c), and the docstring's indented example lines kept
as they are.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup

# Value placeholders by type; choices are spelled out instead.
_METAVARS = {"int": "N", "float": "F", "str": "TEXT", "Path": "PATH", "path": "PATH", "bool": "BOOL", "": "VALUE"}


def _metavar(param: Any, ctx: Any) -> str:
    if param.metavar:
        return param.metavar
    if hasattr(param, "display_type"):  # Typer 0.29: "<int>", "<list[str]>", "<a|b>"
        shown = str(param.display_type(ctx) or "str").strip("<>")
    else:  # older Typer on Click: the Click type's name
        choices = getattr(param.type, "choices", None)
        shown = "|".join(map(str, choices)) if choices else {"integer": "int", "text": "str"}.get(param.type.name, "")

    if shown.startswith("list[") and shown.endswith("]"):
        shown = shown[5:-1]  # repeatable options say so in their help
    return _METAVARS.get(shown, shown)


def _option_record(param: Any, ctx: Any) -> tuple[str, str]:
    names = ", ".join(sorted(param.opts, key=lambda opt: (opt.startswith("--"), opt)))
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    if not (param.is_flag or param.count):
        names += f" {_metavar(param, ctx)}"
    return names, param.help or ""


def _argument_name(param: Any) -> str:
    return (param.name or "").upper()


def _write_text(text: str, formatter: Any) -> None:
    """A docstring: prose paragraphs wrapped to the width; example blocks (indented, or starting
    with `vidgen `) kept line for line, so a command is shown as it is typed."""
    import inspect

    for block in inspect.cleandoc(text).split("\n\n"):
        formatter.write_paragraph()
        lines = block.splitlines()
        if lines and (lines[0].lstrip().startswith("vidgen ") or all(line.startswith("    ") for line in lines)):
            margin = min(len(line) - len(line.lstrip()) for line in lines)
            for line in lines:
                formatter.write(f"{'':>{formatter.current_indent + 4}}{line[margin:]}\n")
        else:
            with formatter.indentation():
                formatter.write_text(" ".join(line.strip() for line in lines))


class HelpCommand(TyperCommand):
    """A command whose --help is plain, grouped by panel, and never cut."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # Click's own layout (Typer vendors Click), whatever markup mode Typer was given: it wraps, never cuts.
        super(TyperCommand, self).format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar or "[OPTIONS]"]
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param) + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        if self.help:
            _write_text(self.help, formatter)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments = [
            (_argument_name(p), getattr(p, "help", None) or "")
            for p in self.get_params(ctx)
            if p.param_type_name == "argument"
        ]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if param.param_type_name == "option" and not param.hidden:
                panel = getattr(param, "rich_help_panel", None) or "Options"
                panels.setdefault(panel, []).append(_option_record(param, ctx))
        for panel, rows in panels.items():
            with formatter.section(panel):
                formatter.write_dl(rows, col_max=34)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        if self.epilog:
            _write_text(self.epilog, formatter)


class HelpGroup(TyperGroup):
    """A group whose --help lists its commands under their panels with their whole first line."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super(TyperGroup, self).format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [self.options_metavar or "[OPTIONS]", "COMMAND [ARGS]..."]

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        if self.help:
            _write_text(self.help, formatter)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        HelpCommand.format_options(self, ctx, formatter)  # type: ignore[arg-type]
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        panels: dict[str, list[tuple[str, str]]] = {}
        for name in self.list_commands(ctx):
            command: Any = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            first = (command.help or "").strip().split("\n\n", 1)[0]
            summary = command.short_help or " ".join(line.strip() for line in first.splitlines())
            panel = getattr(command, "rich_help_panel", None) or "Commands"
            panels.setdefault(panel, []).append((name, summary))
        for panel, rows in panels.items():
            with formatter.section(panel):
                formatter.write_dl(rows)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        if self.epilog:
            _write_text(self.epilog, formatter)
