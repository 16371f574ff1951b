"""--help reads well in an 80-column terminal: nothing cut, no placeholders on flags, an example."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from vidgen.cli import app


def _commands() -> list[list[str]]:
    """Every command path, `vidgen presets list` included."""
    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        paths.append([name])
        for sub in getattr(command, "commands", {}):
            paths.append([name, sub])
    return paths


COMMANDS = _commands()


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"t2v", "i2v", "v2v", "animate", "control", "batch", "replay", "presets list", "ls"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "vidgen")
def test_help_fits_80_columns_uncut(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "…" not in text
    assert "<bool>" not in text and "<str>" not in text
    long = [line for line in text.splitlines() if len(line) > 80]
    assert not long, long
    # Arguments are named one way everywhere: upper case, in the usage line and the list.
    usage = text.splitlines()[0]
    assert usage.startswith("Usage: vidgen") and "{" not in usage
    if path and path != ["presets"]:
        # An example line per command, shown as it is typed.
        examples = [line.strip() for line in text.splitlines() if line.startswith("    vidgen ")]
        assert examples, text


def test_flags_show_no_placeholder_and_values_a_short_one() -> None:
    text = CliRunner().invoke(app, ["t2v", "--help"], env={"COLUMNS": "80"}).stdout
    assert "  --vae-tiling / --no-vae-tiling  " in text
    assert "--overwrite  " in text and "--overwrite BOOL" not in text
    assert "--frames N " in text and "--dtype auto|fp32|fp16|bf16" in text
