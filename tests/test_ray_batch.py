"""`vidgen batch --ray`: a batch on a local Ray with two CPU workers, one of them killed mid-job.

Ray is heavy on a small machine (its own processes, each worker importing torch and diffusers):
each batch starts a local Ray sized to its two workers (`ray.init(num_cpus=2,
include_dashboard=False)`), with tiny 2-step jobs. The test took about two minutes on this
shared 2-core machine; `-m "not ray"` skips it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import decode, sidecar

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


def _manifest(path: Path, count: int = 12) -> None:
    rows = [{"prompt": f"scene number {n}", "preset": "tiny-cogvideox", "steps": 2, "frames": 9} for n in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _batch(tmp_path: Path, out: str, report: str) -> subprocess.Popen:
    args = ["batch", "jobs.jsonl", "--out", out, "--ray", "local", "--workers", "2", "--progress", "json"]
    return subprocess.Popen(
        [sys.executable, "-m", "vidgen", *args, "--report", report, "--max-retries", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _check_outputs(folder: Path, rows: list[dict]) -> None:
    videos = sorted(folder.glob("*.mp4"))
    assert len(videos) == 12 and len(rows) == 12
    assert sorted(row["outputs"][0] for row in rows) == sorted(str(folder.name + "/" + v.name) for v in videos)
    assert len({v.name for v in videos}) == 12  # no duplicates
    for video in videos:  # every file whole: it decodes, and its sidecar is there
        frames, _ = decode(video)
        assert frames.shape[0] == 9 and video.with_suffix(".json").exists()
    leftovers = [p.name for p in folder.iterdir() if p.suffix not in (".mp4", ".json")]
    assert leftovers == []


def test_ray_batch_runs_each_job_once_and_survives_a_killed_worker(tmp_path: Path) -> None:
    _manifest(tmp_path / "jobs.jsonl")
    started = time.monotonic()
    # 1. Plain: 12 jobs, 2 workers, each job once.
    proc = _batch(tmp_path, "plain", "plain.jsonl")
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    rows = [json.loads(line) for line in (tmp_path / "plain.jsonl").read_text().splitlines()]
    assert {row["status"] for row in rows} == {"done"} and {row["worker"] for row in rows} == {0, 1}
    _check_outputs(tmp_path / "plain", rows)
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    # The workers' events, merged on the driver: every job's start, steps and end.
    assert sum(event["event"] == "done" for event in events) == 12
    assert {event["worker"] for event in events if event["event"] == "step"} == {0, 1}

    # 2. SIGKILL one worker while it runs a job: that job runs again on a new worker.
    proc = _batch(tmp_path, "killed", "killed.jsonl")
    pids: dict[int, int] = {}
    killed = None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "worker":
            pids[event["worker"]] = event["pid"]
        if killed is None and event.get("event") == "job_start" and event["index"] > 2:
            # Events are relayed live: this worker has just begun a job (its model is loaded).
            killed = event["worker"]
            os.kill(pids[killed], signal.SIGKILL)
    proc.wait(timeout=600)
    assert proc.returncode == 0, "".join(lines)
    rows = [json.loads(line) for line in (tmp_path / "killed.jsonl").read_text().splitlines()]
    assert {row["status"] for row in rows} == {"done"}
    _check_outputs(tmp_path / "killed", rows)
    retried = [row for row in rows if row.get("retries")]
    assert len(retried) == 1 and retried[0]["retries"][0]["worker"] == killed
    assert retried[0]["retries"][0]["pid"] == pids[killed]
    print(f"ray test: {time.monotonic() - started:.0f} s")


@pytest.mark.gpu
def test_a_ray_worker_claims_one_gpu_and_gives_it_back(tmp_path: Path) -> None:
    # One machine, one GPU: a single CUDA worker runs every job and the GPU is free afterwards.
    _manifest(tmp_path / "jobs.jsonl", 3)
    args = ["batch", "jobs.jsonl", "--out", "gpu", "--ray", "local", "--progress", "json", "--report", "gpu.jsonl"]
    result = subprocess.run([sys.executable, "-m", "vidgen", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [event["gpu"] for event in events if event["event"] == "worker"] == [True]
    rows = [json.loads(line) for line in (tmp_path / "gpu.jsonl").read_text().splitlines()]
    assert {row["status"] for row in rows} == {"done"}
    for row in rows:  # made on the worker's GPU
        assert sidecar(tmp_path / Path(row["outputs"][0]).with_suffix(".json"))["optimizations"]["device"] == "cuda"
    import torch

    free, total = torch.cuda.mem_get_info()
    assert free > 0.9 * total  # the worker process is gone and took its memory with it
