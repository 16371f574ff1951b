"""Progress through every phase: on a terminal (a pty here) and nowhere else."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
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


def _history() -> Path:
    return Path(os.environ["VIDGEN_CACHE"]) / "timings.json"


def test_terminal_shows_every_phase_with_rate_and_eta(tmp_path: Path) -> None:
    _history().unlink(missing_ok=True)
    args = ("t2v", "a fox", "--preset", "tiny-cogvideox", "--steps", "4")
    result, shown = _on_a_terminal(*args, "--seed", "1")
    assert result.returncode == 0, shown
    assert result.stdout.strip() == "outputs/t2v-a-fox-1.mp4"  # stdout carries results only
    lines = shown.splitlines()
    for phase in ("run", "load", "denoising", "decode", "encode"):
        assert any(line.lstrip(" ✓⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏").startswith(phase) for line in lines), (phase, shown)
    assert "4/4" in shown and "it/s" in shown
    assert re.search(r"ETA \d+:\d\d", shown), shown
    # Loading names each component as it loads, counting them.
    assert re.search(r"load .* 1/5 .* transformer", shown) or re.search(r"load .* \d/5 .* vae", shown), shown
    assert re.search(r"load .* 5/5", shown), shown
    assert re.search(r"encode .* 9/9", shown), shown  # frames written to ffmpeg
    # The first run of this model and size can only bound the run's ETA (decode and encode are
    # unknown); the next one knows them from the first and gives the whole run's ETA.
    assert re.search(r"run .*ETA ≥\d+:\d\d", shown), shown
    assert json.loads(_history().read_text())
    result, shown = _on_a_terminal(*args, "--seed", "2")
    assert result.returncode == 0, shown
    assert re.search(r"run .*ETA \d+:\d\d", shown), shown


def test_no_progress_in_pipes_or_with_quiet(tmp_path: Path) -> None:
    piped = cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "1")
    assert piped.exit_code == 0
    assert not any(word in piped.stderr for word in ("denoising", "ETA", "it/s", "encode"))
    result, shown = _on_a_terminal("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "2", "--quiet")
    assert result.returncode == 0, shown
    assert shown.strip() == ""


@pytest.mark.pipeline
def test_json_progress_of_a_run_lists_every_phase_with_durations(tmp_path: Path) -> None:
    _history().unlink(missing_ok=True)
    result = cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "1", "--progress", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "outputs/t2v-a-fox-1.mp4"
    events = [json.loads(line) for line in result.stderr.splitlines()]  # nothing but NDJSON
    kinds = [event["event"] for event in events]
    components = ["scheduler", "text_encoder", "tokenizer", "transformer", "vae"]
    assert kinds == [
        *("load", *["load_component"] * len(components), "load_end"),
        *("step", "step", "denoise_end"),
        *("decode", "decode_end"),
        *("encode", "encode_end"),
        "done",
    ]
    loading = [event for event in events if event["event"] == "load_component"]
    assert sorted(event["component"] for event in loading) == components
    assert [event["index"] for event in loading] == [1, 2, 3, 4, 5] and {e["count"] for e in loading} == {5}
    assert next(e for e in loading if e["component"] == "transformer")["class"] == "CogVideoXTransformer3DModel"
    ends = {event["event"]: event["seconds"] for event in events if event["event"].endswith("_end")}
    assert all(seconds >= 0 for seconds in ends.values())
    assert events[-1]["outputs"] == ["outputs/t2v-a-fox-1.mp4"]
    # A single run's events name their video (a batch's name the job).
    assert {event["id"] for event in events if event["event"] != "done"} == {"outputs/t2v-a-fox-1.mp4"}
    # No earlier run: no ETA for the run. The next run knows decode and encode from this one.
    assert not any("eta_seconds" in event for event in events)
    again = cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "2", "--progress", "json")
    steps = [json.loads(line) for line in again.stderr.splitlines() if '"step"' in line]
    assert steps and all(event["eta_seconds"] >= 0 for event in steps)
    assert steps[0]["eta_seconds"] >= steps[-1]["eta_seconds"]
