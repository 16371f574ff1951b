"""Batch resume that tells the truth (issue 19): outputs are checked against their sidecars,
inputs by content, seeds by content alone, and concurrent batches claim each job once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, one_line_error
from PIL import Image


def _report(path: Path) -> dict[str, str]:
    return {row["id"]: row["status"] for row in map(json.loads, path.read_text().splitlines())}


def _write_jobs(path: Path, jobs: list[dict]) -> None:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))


@pytest.mark.pipeline
def test_corrupt_outputs_are_generated_again(tmp_path: Path) -> None:
    base = {"preset": "tiny-cogvideox", "steps": 1, "prompt": "a fox"}
    jobs = [{**base, "id": fmt, "format": fmt} for fmt in ("mp4", "gif", "png", "webm")]
    _write_jobs(tmp_path / "jobs.jsonl", jobs)
    assert cli("batch", "jobs.jsonl", "--out", "runs", "--quiet").exit_code == 0
    runs = tmp_path / "runs"
    mp4 = (runs / "mp4.mp4").read_bytes()
    (runs / "mp4.mp4").write_bytes(mp4[: len(mp4) // 2])  # half-truncated
    (runs / "gif.gif").write_bytes(b"GIF89a" + b"\0" * 94)  # a 100-byte gif
    sorted((runs / "png").iterdir())[-1].unlink()  # a frame missing
    (runs / "webm.webm").write_bytes(b"")  # emptied
    again = cli("batch", "jobs.jsonl", "--out", "runs", "--report", "report.jsonl", "--quiet")
    assert again.exit_code == 0, again.stderr
    assert _report(tmp_path / "report.jsonl") == dict.fromkeys(("mp4", "gif", "png", "webm"), "done")
    third = cli("batch", "jobs.jsonl", "--out", "runs", "--report", "report.jsonl", "--quiet")
    assert third.exit_code == 0 and set(_report(tmp_path / "report.jsonl").values()) == {"skipped"}


@pytest.mark.pipeline
def test_a_changed_input_image_reruns_its_job(tmp_path: Path) -> None:
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "img.png")
    job = {"preset": "tiny-cogvideox-i2v", "mode": "i2v", "image": "img.png", "prompt": "a ball", "steps": 1}
    job["id"] = "red"
    _write_jobs(tmp_path / "jobs.jsonl", [job])
    assert cli("batch", "jobs.jsonl", "--out", "runs", "--quiet").exit_code == 0
    same = cli("batch", "jobs.jsonl", "--out", "runs", "--report", "r.jsonl", "--quiet")
    assert same.exit_code == 0 and _report(tmp_path / "r.jsonl") == {"red": "skipped"}
    Image.new("RGB", (32, 32), (30, 30, 200)).save(tmp_path / "img.png")  # same name, new picture
    changed = cli("batch", "jobs.jsonl", "--out", "runs", "--report", "r.jsonl", "--quiet")
    assert changed.exit_code == 0, changed.stderr
    assert _report(tmp_path / "r.jsonl") == {"red": "done"}


def _ids(manifest: Path) -> list[str]:
    result = cli("batch", str(manifest), "--dry-run")
    assert result.exit_code == 0, result.stderr
    return [line.split("\t")[0] for line in result.stdout.splitlines()]


def test_inserting_a_job_changes_no_other_seed(tmp_path: Path) -> None:
    prompts = ["a red fox", "a blue whale", "a red fox", "a green owl"]
    (tmp_path / "a.txt").write_text("\n".join(prompts) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(["a yellow cat", *prompts]) + "\n")
    (tmp_path / "c.txt").write_text("\n".join(reversed(prompts)) + "\n")
    before, inserted, reordered = _ids(tmp_path / "a.txt"), _ids(tmp_path / "b.txt"), _ids(tmp_path / "c.txt")
    assert inserted[1:] == before  # every id (and so every seed and file name) is unchanged
    assert sorted(reordered) == sorted(before)
    assert len(set(before)) == 4, "identical jobs get distinct seeds by occurrence"


def test_two_batches_on_one_manifest_run_each_job_once(tmp_path: Path) -> None:
    jobs = [{"preset": "tiny-cogvideox", "steps": 1, "prompt": f"animal {n}", "id": f"j{n}"} for n in range(8)]
    _write_jobs(tmp_path / "jobs.jsonl", jobs)
    command = [sys.executable, "-m", "vidgen", "batch", "jobs.jsonl", "--out", "runs", "--quiet"]
    workers = [
        subprocess.Popen([*command, "--report", f"r{n}.jsonl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr.decode()
    reports = [_report(tmp_path / f"r{n}.jsonl") for n in range(2)]
    for name in (f"j{n}" for n in range(8)):
        statuses = sorted(report[name] for report in reports)
        # Run by one, and claimed by (or found done by) the other: never run twice.
        assert statuses.count("done") == 1, (name, reports)
        assert (tmp_path / "runs" / f"{name}.json").exists()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")) == []


def test_a_dead_workers_claim_is_taken_over(tmp_path: Path) -> None:
    from vidgen.io import media

    dead = subprocess.Popen(["true"])
    dead.wait()
    host = media.owner_tag().split(".")[0]
    _write_jobs(tmp_path / "jobs.jsonl", [{"preset": "tiny-cogvideox", "steps": 1, "prompt": "x", "id": "j"}])
    (tmp_path / "runs").mkdir()
    claim = tmp_path / "runs" / ".j.claim"
    claim.write_text(json.dumps({"host": host, "pid": dead.pid, "time": 0}))
    result = cli("batch", "jobs.jsonl", "--out", "runs", "--report", "r.jsonl", "--quiet")
    assert result.exit_code == 0 and _report(tmp_path / "r.jsonl") == {"j": "done"}
    assert not claim.exists()
    # A live holder's claim is respected: the job is left to it.
    claim.write_text(json.dumps({"host": host, "pid": os.getpid(), "time": 0}))
    forced = cli("batch", "jobs.jsonl", "--out", "runs", "--report", "r.jsonl", "--force", "--quiet")
    assert forced.exit_code == 0 and _report(tmp_path / "r.jsonl") == {"j": "claimed"}


def test_an_unwritable_report_is_found_before_any_job_runs(tmp_path: Path) -> None:
    _write_jobs(tmp_path / "jobs.jsonl", [{"preset": "tiny-cogvideox", "steps": 1, "prompt": "x", "id": "j"}])
    (tmp_path / "afile").write_text("a file, not a folder")
    result = cli("batch", "jobs.jsonl", "--out", "runs", "--report", "afile/report.jsonl")
    one_line_error(result, 7, "cannot write --report afile/report.jsonl")
    assert not (tmp_path / "runs").exists()


def test_the_report_grows_as_jobs_finish(tmp_path: Path) -> None:
    import signal
    import time

    jobs = [{"preset": "tiny-cogvideox", "steps": 1, "prompt": "x", "id": "a"}]
    jobs.append({"preset": "tiny-cogvideox", "steps": 400, "prompt": "y", "id": "b"})  # still running when killed
    _write_jobs(tmp_path / "jobs.jsonl", jobs)
    command = [sys.executable, "-m", "vidgen", "batch", "jobs.jsonl", "--out", "runs", "--report", "r.jsonl"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (tmp_path / "r.jsonl").exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # no cleanup at all: what was written must stand alone
    process.wait()
    assert _report(tmp_path / "r.jsonl") == {"a": "done"}


def test_killed_at_random_moments_a_batch_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """Crash consistency: SIGKILL at 20 random moments, rerunning each time, then one last run:
    every job done once (a finished job is never generated again), every output whole, nothing
    hidden left behind."""
    import random
    import signal
    import time

    from conftest import decode

    jobs = [{"preset": "tiny-cogvideox", "steps": 2, "prompt": f"animal {n}", "id": f"j{n}"} for n in range(6)]
    _write_jobs(tmp_path / "jobs.jsonl", jobs)
    command = [sys.executable, "-m", "vidgen", "batch", "jobs.jsonl", "--out", "runs", "--quiet"]
    runs = tmp_path / "runs"
    chance = random.Random(19)
    finished: dict[str, int] = {}  # sidecar name -> mtime when first seen complete
    for _ in range(20):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(chance.uniform(0.2, 6.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        for side in runs.glob("*.json") if runs.exists() else []:
            mtime = side.stat().st_mtime_ns
            assert finished.setdefault(side.name, mtime) == mtime, f"{side.name} was written twice"
        if len(finished) == len(jobs):
            break
    final = subprocess.run([*command, "--report", "r.jsonl"], capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    for side in runs.glob("*.json"):
        assert finished.setdefault(side.name, side.stat().st_mtime_ns) == side.stat().st_mtime_ns
    for job in jobs:  # none lost, none corrupt
        assert decode(runs / f"{job['id']}.mp4")[0].shape[0] == 9
    assert sorted(p.name for p in runs.iterdir() if p.name.startswith(".")) == []  # no leftovers
    assert sorted(p.name for p in runs.iterdir()) == sorted(f"j{n}.{ext}" for n in range(6) for ext in ("json", "mp4"))
