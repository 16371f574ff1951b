"""`vidgen batch`: manifests, models loaded once, resume after SIGKILL, failures isolated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, decode, one_line_error, sidecar

# Every test here runs a tiny pipeline: their tier unless found to start processes (see conftest.py).
DEFAULT_TIER = "pipeline"

MATRIX = """\
defaults:
  preset: tiny-cogvideox
  steps: 2
jobs:
  - prompt: a red fox
  - prompt: a blue whale
matrix:
  guidance: [4.0, 6.0, 8.0]
"""


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every pipeline load, by model id (the real loader still runs)."""
    from vidgen.models import loader

    seen: list[str] = []
    real = loader.load

    def counting(cfg, family, device, **kwargs):
        seen.append(cfg.model.id)
        return real(cfg, family, device, **kwargs)

    monkeypatch.setattr(loader, "load", counting)
    return seen


def _report(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_matrix_manifest_loads_the_model_once_and_reports_every_job(tmp_path: Path, loads: list[str]) -> None:
    (tmp_path / "jobs.yaml").write_text(MATRIX)
    result = cli("batch", "jobs.yaml", "--out", "runs", "--report", "report.jsonl")
    assert result.exit_code == 0, result.stderr
    assert loads == ["tiny:cogvideox"]  # six jobs, one load
    rows = _report(tmp_path / "report.jsonl")
    assert len(rows) == 6 and {row["status"] for row in rows} == {"done"}
    assert result.stdout.splitlines() == [row["outputs"][0] for row in rows]
    # The variants of one job share its seed, so they differ only in what the matrix varies.
    fox = [row for row in rows if "fox" in row["id"]]
    assert len({row["seed"] for row in fox}) == 1 and len({row["id"] for row in rows}) == 6
    for row in rows:
        frames, _ = decode(Path(row["outputs"][0]))
        assert frames.shape == (9, 16, 16, 3)
        data = sidecar(Path(row["outputs"][0]).with_suffix(".json"))
        assert data["batch"]["id"] == row["id"] and data["batch"]["config_hash"] == row["config_hash"]
    guidance = {row["id"]: sidecar(Path(row["outputs"][0]).with_suffix(".json")) for row in fox}
    assert sorted(d["config"]["sampling"]["guidance_scale"] for d in guidance.values()) == [4.0, 6.0, 8.0]
    # Rerun: everything is done already, nothing loads.
    again = cli("batch", "jobs.yaml", "--out", "runs", "--report", "report.jsonl")
    assert again.exit_code == 0 and len(loads) == 1
    assert {row["status"] for row in _report(tmp_path / "report.jsonl")} == {"skipped"}
    forced = cli("batch", "jobs.yaml", "--out", "runs", "--force", "--quiet")
    assert forced.exit_code == 0 and len(loads) == 2


def test_jobs_are_grouped_by_model(tmp_path: Path, loads: list[str]) -> None:
    lines = [
        {"prompt": "a cat", "preset": "tiny-cogvideox"},
        {"prompt": "a dog", "preset": "tiny-modelscope"},
        {"prompt": "a fox", "preset": "tiny-cogvideox", "id": "fox"},
        {"prompt": "a cow", "preset": "tiny-modelscope", "seed": 3},
    ]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("batch", "jobs.jsonl", "--out", "runs")
    assert result.exit_code == 0, result.stderr
    assert loads == ["tiny:cogvideox", "tiny:modelscope"]  # not four, not three
    assert (tmp_path / "runs" / "fox.mp4").is_file()
    assert (tmp_path / "runs" / "t2v-a-cow-3.mp4").is_file()


def test_a_failing_job_does_not_stop_the_others_and_exits_8(tmp_path: Path) -> None:
    lines = [
        {"prompt": "a cat", "preset": "tiny-cogvideox", "id": "cat"},
        {"mode": "i2v", "image": "missing.png", "preset": "tiny-svd", "id": "broken"},
        {"prompt": "a dog", "preset": "tiny-cogvideox", "id": "dog"},
    ]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("batch", "jobs.jsonl", "--out", "runs", "--report", "r.jsonl")
    assert result.exit_code == 8, result.stderr
    rows = {row["id"]: row for row in _report(tmp_path / "r.jsonl")}
    assert rows["cat"]["status"] == rows["dog"]["status"] == "done"
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["error"]["class"] == "InputError" and "missing.png" in rows["broken"]["error"]["message"]
    assert "1 failed" in result.stderr
    # --fail-fast: the failing job runs first here (its group comes first), the rest never start.
    first = [lines[1], lines[0]]
    (tmp_path / "ff.jsonl").write_text("".join(json.dumps(line) + "\n" for line in first))
    stopped = cli("batch", "ff.jsonl", "--out", "ff", "--report", "ff.jsonl.report", "--fail-fast")
    assert stopped.exit_code == 8
    assert [row["status"] for row in _report(tmp_path / "ff.jsonl.report")] == ["failed", "not run"]
    assert not (tmp_path / "ff" / "cat.mp4").exists()


def test_invalid_jobs_are_found_before_anything_runs(tmp_path: Path, loads: list[str]) -> None:
    (tmp_path / "jobs.txt").write_text("a cat\n\n# a comment\na dog\n")
    lines = [
        {"prompt": "a cat", "preset": "tiny-cogvideox", "frames": 10},
        {"prompt": "ok", "preset": "tiny-cogvideox"},
    ]
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("batch", "bad.jsonl", "--out", "runs")
    assert result.exit_code == 3 and loads == []
    assert "job 1 (line 1): --frames 10 does not fit CogVideoX" in result.stderr
    assert not (tmp_path / "runs").exists()
    skipping = cli("batch", "bad.jsonl", "--out", "runs", "--skip-invalid")
    assert skipping.exit_code == 8 and len(list((tmp_path / "runs").glob("*.mp4"))) == 1
    dup = [{"prompt": "x", "preset": "tiny-cogvideox", "id": "same"}] * 2
    (tmp_path / "dup.jsonl").write_text("".join(json.dumps(line) + "\n" for line in dup))
    dups = cli("batch", "dup.jsonl", "--out", "d", "--quiet")
    one_line_error(dups, 3, "1 of 2 jobs are invalid")
    assert "invalid: job 2 (line 2): writes the same output as line 1 (id same)" in dups.stderr
    (tmp_path / "esc.jsonl").write_text(json.dumps({"prompt": "x", "preset": "tiny-cogvideox", "id": "../up"}) + "\n")
    assert "outputs stay inside --out" in cli("batch", "esc.jsonl", "--out", "d").stderr
    text = cli("batch", "jobs.txt", "--preset", "tiny-cogvideox", "--out", "txt", "--dry-run")
    assert text.exit_code == 0 and len(text.stdout.splitlines()) == 2


def _slow_jobs(tmp_path: Path) -> list[dict]:
    """Six jobs slow enough (about a second each) to interrupt between them, in jobs.jsonl."""
    jobs = [
        {"prompt": f"job number {index}", "preset": "tiny-cogvideox", "steps": 8, "frames": 17, "height": 32,
         "width": 32, "id": f"j{index}"}
        for index in range(6)
    ]  # fmt: skip
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return jobs


def test_sigkill_mid_batch_then_rerun_finishes_every_job_exactly_once(tmp_path: Path) -> None:
    jobs = _slow_jobs(tmp_path)
    command = [sys.executable, "-m", "vidgen", "batch", "jobs.jsonl", "--out", "runs", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "runs" / "j0.json").exists():
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")}
    assert "j0.json" in done_before and len(done_before) < 6, "the kill must land mid-batch"
    # Whatever was left under a final name is whole; the rest is hidden temporary files.
    for video in (tmp_path / "runs").glob("*.mp4"):
        if video.with_suffix(".json").exists():
            assert decode(video)[0].shape[0] == 17
    rerun = subprocess.run([*command, "--report", "report.jsonl"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    rows = {row["id"]: row["status"] for row in _report(tmp_path / "report.jsonl")}
    assert all(rows[name.removesuffix(".json")] == "skipped" for name in done_before)
    for job in jobs:
        video = tmp_path / "runs" / f"{job['id']}.mp4"
        assert decode(video)[0].shape == (17, 32, 32, 3)
    for name, mtime in done_before.items():  # not generated again
        assert (tmp_path / "runs" / name).stat().st_mtime_ns == mtime
    visible = sorted(p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    assert visible == sorted([f"j{i}.mp4" for i in range(6)] + [f"j{i}.json" for i in range(6)])


def test_stdin_jsonl(tmp_path: Path) -> None:
    line = json.dumps({"prompt": "a cat", "preset": "tiny-cogvideox", "id": "cat"}) + "\n"
    result = subprocess.run(
        [sys.executable, "-m", "vidgen", "batch", "-", "--out", "runs", "--json"],
        input=line,
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["exit_code"] == 0 and body["jobs"][0]["status"] == "done"


def test_json_progress_events(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(MATRIX.replace("[4.0, 6.0, 8.0]", "[4.0]"))
    result = cli("batch", "jobs.yaml", "--out", "runs", "--progress", "json")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]  # nothing but NDJSON
    kinds = [event["event"] for event in events]
    assert kinds[0] == "job_start" and kinds[-1] == "summary"
    first = [kind for kind in kinds[: kinds.index("done") + 1] if kind != "load_component"]
    assert kinds.count("load_component") == 5  # the tiny CogVideoX's components, as they load
    assert first == [
        "job_start",
        *("load", "load_end"),
        *("step", "step", "denoise_end"),
        *("decode", "decode_end"),
        *("encode", "encode_end"),
        "done",
    ]
    assert events[-1]["done"] == 2 and next(e for e in events if e["event"] == "step")["total"] == 2
    # Every phase that ended says how long it took; the second job reuses the loaded model.
    ends = [event for event in events if event["event"].endswith("_end")]
    assert all(event["seconds"] >= 0 and event["id"] for event in ends)
    second = kinds[kinds.index("done") + 1 :]
    assert "load" not in second and {"decode_end", "encode_end"} <= set(second)


def test_prompts_file_is_a_plain_text_batch(tmp_path: Path) -> None:
    (tmp_path / "prompts.txt").write_text("a red fox\n\n# skipped\na blue whale\n")
    args = ["t2v", "--prompts-file", "prompts.txt", "--preset", "tiny-cogvideox", "--steps", "3", "--out", "pf"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert [p.parent.name for p in paths] == ["pf", "pf"] and "fox" in paths[0].name and "whale" in paths[1].name
    data = sidecar(paths[0].with_suffix(".json"))
    assert (
        data["config"]["sampling"]["num_inference_steps"] == 3
        and data["sources"]["sampling.num_inference_steps"] == "cli:--steps"
    )
    assert "2 skipped" in cli(*args).stderr  # resumable like any batch
    one_line_error(cli(*args, "--", "also a prompt"), 3, "not both")


def test_accelerate_two_processes_match_one(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(MATRIX)
    single = subprocess.run(
        [sys.executable, "-m", "vidgen", "batch", "jobs.yaml", "--out", "one", "--quiet"], capture_output=True
    )
    assert single.returncode == 0, single.stderr
    # accelerate's --cpu launcher starts one process; --multi_gpu starts torchrun workers, which
    # vidgen joins over gloo when there is no CUDA.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "-m", "vidgen"]
    two = subprocess.run(
        [*launch, "batch", "jobs.yaml", "--out", "two", "--report", "two.jsonl", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr
    assert len(_report(tmp_path / "two.jsonl")) == 6
    one_files = sorted(p.name for p in (tmp_path / "one").glob("*.mp4"))
    assert one_files == sorted(p.name for p in (tmp_path / "two").glob("*.mp4")) and len(one_files) == 6
    for name in one_files:
        assert (decode(tmp_path / "one" / name)[0] == decode(tmp_path / "two" / name)[0]).all()
    # Each worker wrote its own share: three jobs each.
    workers = [sidecar((tmp_path / "two" / name).with_suffix(".json"))["batch"]["worker"] for name in one_files]
    assert sorted(workers) == [0, 0, 0, 1, 1, 1]


def test_ctrl_c_mid_batch_exits_130_and_leaves_only_whole_files(tmp_path: Path) -> None:
    _slow_jobs(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "vidgen", "batch", "jobs.jsonl", "--out", "runs", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test suite started in the background (`cmd &` in a script) inherits SIGINT ignored,
        # and vidgen keeps an ignored SIGINT ignored (as under nohup): give the batch a default one.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # The first job to finish, whichever it is (the order of jobs is not the manifest's).
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "runs").glob("j*.json")):
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    for video in (tmp_path / "runs").glob("*.mp4"):  # whatever has a final name is whole
        assert decode(video)[0].shape[0] == 17


def test_jobs_take_flag_forms_of_lora_and_prompt_travel(tmp_path: Path) -> None:
    # The same conversions as --lora and --prompt-at on the command line.
    job = {"prompt_at": ["0:a bud", "4:a rose"], "preset": "tiny-animatediff", "mode": "animate", "id": "travel"}
    (tmp_path / "jobs.jsonl").write_text(json.dumps(job) + "\n")
    result = cli("batch", "jobs.jsonl", "--out", "runs")
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "runs" / "travel.json")
    assert data["inputs"]["prompts"] == {"0": "a bud", "4": "a rose"}
    bad = {**job, "prompt_at": ["nope"], "id": "bad"}
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    assert "expected FRAME:TEXT" in cli("batch", "bad.jsonl", "--out", "runs").stderr
