"""The README's family table is what `vidgen models --json` says, so it grows with the registry."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import cli

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- families:start -->", "<!-- families:end -->"


def family_table(rows: list[dict]) -> str:
    """The Markdown table for `vidgen models --json` rows (paste it between the README markers)."""
    lines = ["| family | modes | own options | presets |", "|---|---|---|---|"]
    for row in rows:
        own = ", ".join(f"`{flag}`" for flag in row["options"]) or "-"
        presets = ", ".join(f"`{name}`" for name in row["presets"])
        lines.append(f"| `{row['family']}` ({row['title']}) | {', '.join(row['modes'])} | {own} | {presets} |")
    return "\n".join(lines)


def test_readme_family_table_matches_vidgen_models() -> None:
    result = cli("models", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    text = README.read_text(encoding="utf-8")
    shown = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert shown == family_table(rows), "regenerate the README family table from tests/test_readme_families.py"
    # Not vacuous: every registered family has a row.
    assert len(shown.splitlines()) == len(rows) + 2
