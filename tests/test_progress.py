"""Progress through every phase: on a terminal (a pty here) and nowhere else."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from conftest import cli

STYLE = re.compile(r"\x1b\[[0-9;]*m")
CURSOR = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _on_a_terminal(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run vidgen with stderr on a pseudo-terminal (stdout stays a pipe); what the terminal showed."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm-256color"}
    process = subprocess.Popen(
        [sys.executable, "-m", "vidgen", *args], stdout=subprocess.PIPE, stderr=follower, text=True, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    stdout = process.stdout.read() if process.stdout else ""
    process.wait()
    os.close(leader)
    # Colours go; cursor moves (rich redrawing its lines) become line breaks.
    shown = CURSOR.sub("\n", STYLE.sub("", b"".join(chunks).decode("utf-8", "replace")))
    return subprocess.CompletedProcess(args, process.returncode, stdout, ""), shown


def test_terminal_shows_every_phase_with_rate_and_eta(tmp_path: Path) -> None:
    result, shown = _on_a_terminal("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "1", "--steps", "4")
    assert result.returncode == 0, shown
    assert result.stdout.strip() == "outputs/t2v-a-fox-1.mp4"  # stdout carries results only
    lines = shown.splitlines()
    for phase in ("load", "denoising", "decode", "encode"):
        assert any(line.lstrip(" ✓⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏").startswith(phase) for line in lines), (phase, shown)
    assert "4/4" in shown and "it/s" in shown
    assert re.search(r"ETA \d+:\d\d", shown), shown


def test_no_progress_in_pipes_or_with_quiet(tmp_path: Path) -> None:
    piped = cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "1")
    assert piped.exit_code == 0
    assert not any(word in piped.stderr for word in ("denoising", "ETA", "it/s", "encode"))
    result, shown = _on_a_terminal("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "2", "--quiet")
    assert result.returncode == 0, shown
    assert shown.strip() == ""


def test_json_progress_of_a_run_lists_every_phase_with_durations(tmp_path: Path) -> None:
    import json

    result = cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "1", "--progress", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "outputs/t2v-a-fox-1.mp4"
    events = [json.loads(line) for line in result.stderr.splitlines()]  # nothing but NDJSON
    kinds = [event["event"] for event in events]
    assert kinds == [
        *("load", "load_end"),
        *("step", "step", "denoise_end"),
        *("decode", "decode_end"),
        *("encode", "encode_end"),
        "done",
    ]
    ends = {event["event"]: event["seconds"] for event in events if event["event"].endswith("_end")}
    assert all(seconds >= 0 for seconds in ends.values())
    assert events[-1]["outputs"] == ["outputs/t2v-a-fox-1.mp4"]
