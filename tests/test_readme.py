"""The README's quick-start commands are exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_start_commands_are_run_by_ci() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", quick_start, flags=re.DOTALL)
    assert len(commands) == 2
    assert "vidgen t2v" in commands[0] and commands[1].endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, f"README command not run by .ci/run: {command}"


def test_ci_runs_every_tier_and_lists_the_slowest_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    pytest_line = next(i for i, line in enumerate(ci) if line.endswith("&& pytest"))
    addopts = [line for line in ci[:pytest_line] if line.startswith("export PYTEST_ADDOPTS=")]
    assert addopts == ['export PYTEST_ADDOPTS="--durations=25"']  # no -m: CI runs unit, pipeline and process
