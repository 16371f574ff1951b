"""Plans and presets printed for people: comments in a sane column, long values folded as YAML
that reads back the same, Chinese shown as Chinese and control characters escaped (issue 26, 4)."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import cli

from vidgen import families
from vidgen.cli._plan import render_config
from vidgen.config import available_presets, resolve
from vidgen.config.layers import merged_preset
from vidgen.core.terminal import fold, width

# The tier of tests conftest does not place otherwise (a test starting processes is "process").
DEFAULT_TIER = "unit"

WAN_NEGATIVE_START = "色调艳丽，过曝，静态"


@pytest.fixture(autouse=True)
def no_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    # Output that is not a terminal folds at 100 columns; a COLUMNS from the caller's shell would change that.
    monkeypatch.delenv("COLUMNS", raising=False)


def _set_fields(config: dict) -> dict:
    """What render_config shows: the fields that are set, sections with none left out."""
    shown = {}
    for section, values in config.items():
        if not isinstance(values, dict):
            shown[section] = values
        elif any(value is not None for value in values.values()):
            shown[section] = {key: value for key, value in values.items() if value is not None}
    return shown


def test_wan_dry_run_fits_120_columns_and_shows_the_negative_prompt_in_chinese() -> None:
    result = cli("t2v", "x", "--preset", "wan2.1-t2v-1.3b", "--dry-run", "--seed", "1")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(width(line) for line in lines) <= 120, max(lines, key=width)
    assert "\\u" not in result.stdout  # no \u8272\u8c03... for Chinese text
    key = next(i for i, line in enumerate(lines) if line.startswith("  negative_prompt:"))
    assert lines[key].endswith("# family:wan")
    assert lines[key + 1].startswith('      "' + WAN_NEGATIVE_START)
    # Comments line up in one column that short lines set, not after the longest value.
    columns = {line.index("# ") for line in lines if " # " in line and not line.startswith("#")}
    assert columns == {48}
    # The text is YAML: it reads back as the config the --json plan holds.
    body = json.loads(cli("t2v", "x", "--preset", "wan2.1-t2v-1.3b", "--dry-run", "--seed", "1", "--json").stdout)
    shown = yaml.safe_load("\n".join(line for line in lines if not line.startswith("#")))
    assert shown == _set_fields(body["config"])
    assert shown["inputs"]["negative_prompt"].startswith(WAN_NEGATIVE_START)


def test_control_characters_stay_escaped_and_round_trip() -> None:
    prompt = "中文 prompt \x1b[2J\x7f\u202e\u2028 end " + "word " * 40
    result = cli("t2v", prompt, "--preset", "tiny-cogvideox", "--dry-run", "--seed", "1")
    assert result.exit_code == 0, result.stderr
    for raw in ("\x1b", "\x7f", "\u202e", "\u2028"):
        assert raw not in result.stdout
    assert "中文 prompt \\u001b[2J\\x7f\\u202e\\u2028 end" in result.stdout
    assert max(width(line) for line in result.stdout.splitlines()) <= 100
    config = yaml.safe_load("\n".join(line for line in result.stdout.splitlines() if not line.startswith("#")))
    assert config["inputs"]["prompt"] == prompt


@pytest.mark.parametrize("limit", [100, 60])
def test_every_preset_reads_back_and_fits(limit: int) -> None:
    hostile = {"prompt": "a  b \x1b[2J  " * 30 + "中文" * 80 + ' "q" \\ end', "prompts": {"0": "x " * 100, "5": "y"}}
    cases = [({"inputs": hostile}, {"inputs.prompt": "cli:PROMPT"})]
    for name in available_presets():
        resolved = resolve(merged_preset(name).get("mode", "t2v"), [name], [], families.defaults_layer)
        cases.append((resolved.config.model_dump(mode="json"), resolved.sources))
    for config, sources in cases:
        text = render_config(config, sources, limit)
        assert yaml.safe_load(text) == _set_fields(config), text
        for line in text.splitlines():
            # Only a comment (a long preset name) may pass the limit, never a value.
            assert width(line.split("  # ")[0].rstrip()) <= limit, line


def test_presets_show_and_list_fit_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = cli("presets", "show", "tiny-wan")
    assert shown.exit_code == 0, shown.stderr
    assert WAN_NEGATIVE_START in shown.stdout and "\\u" not in shown.stdout
    assert max(width(line) for line in shown.stdout.splitlines()) <= 100
    monkeypatch.setenv("COLUMNS", "80")
    listing = cli("presets", "list")
    assert listing.exit_code == 0, listing.stderr
    assert max(width(line) for line in listing.stdout.splitlines()) <= 80
    names = [line.split()[0] for line in listing.stdout.splitlines() if not line.startswith(" ")]
    assert names == list(available_presets())
    rows = json.loads(cli("presets", "list", "--json").stdout)
    described = " ".join(listing.stdout.split())
    assert all(" ".join(row["description"].split()) in described for row in rows)


def test_fold_counts_wide_characters_as_two_columns() -> None:
    assert width("中文ab") == 6
    text = "色调艳丽，过曝，静态，细节模糊不清 and some words"
    lines = fold(text, 10)
    assert all(width(line) <= 10 for line in lines) and len(lines) == 5
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
