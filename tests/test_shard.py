"""`vidgen batch --shard I/N`: content-based shares that cover a manifest exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli, one_line_error


def _manifest(path: Path, prompts: list[str]) -> None:
    lines = [json.dumps({"prompt": p, "preset": "tiny-cogvideox", "steps": 2}) for p in prompts]
    path.write_text("\n".join(lines) + "\n")


def _ids(tmp_path: Path, manifest: str, shard: str) -> list[str]:
    # --dry-run lists the shard's jobs (id, mode, model) without loading anything.
    result = cli("batch", manifest, "--out", "runs", "--shard", shard, "--dry-run")
    assert result.exit_code == 0, result.stderr
    return [line.split("\t")[0] for line in result.stdout.splitlines()]


def test_shards_cover_the_manifest_once_and_a_new_job_moves_no_other(tmp_path: Path) -> None:
    prompts = [f"a scene number {n}" for n in range(12)]
    _manifest(tmp_path / "jobs.jsonl", prompts)
    every = _ids(tmp_path, "jobs.jsonl", "0/1")
    halves = [_ids(tmp_path, "jobs.jsonl", f"{i}/2") for i in range(2)]
    assert len(every) == 12 and sorted(halves[0] + halves[1]) == sorted(every)
    assert not set(halves[0]) & set(halves[1]) and halves[0] and halves[1]
    thirds = [_ids(tmp_path, "jobs.jsonl", f"{i}/3") for i in range(3)]
    assert sorted(sum(thirds, [])) == sorted(every)

    # A job added at the front (positions shift) and one at the end: each old job keeps its shard.
    _manifest(tmp_path / "more.jsonl", ["a new first scene", *prompts, "a new last scene"])
    grown = [_ids(tmp_path, "more.jsonl", f"{i}/2") for i in range(2)]
    for before, after in zip(halves, grown, strict=True):
        assert set(before) <= set(after)
    assert sum(len(g) for g in grown) == 14


@pytest.mark.pipeline
def test_a_shard_runs_only_its_jobs(tmp_path: Path) -> None:
    _manifest(tmp_path / "jobs.jsonl", ["a red fox", "a blue whale", "a green frog", "a gray owl"])
    mine = _ids(tmp_path, "jobs.jsonl", "1/2")
    result = cli("batch", "jobs.jsonl", "--out", "runs", "--shard", "1/2", "--report", "report.jsonl")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in rows) == sorted(mine)
    assert sorted(p.stem for p in (tmp_path / "runs").glob("*.mp4")) == sorted(mine)


@pytest.mark.parametrize("value", ["2/2", "-1/2", "0/0", "1", "a/b", "1/2/3"])
def test_bad_shards_are_refused(tmp_path: Path, value: str) -> None:
    _manifest(tmp_path / "jobs.jsonl", ["a red fox"])
    result = cli("batch", "jobs.jsonl", "--out", "runs", f"--shard={value}")
    one_line_error(result, 3, "--shard", "I/N")
    assert not (tmp_path / "runs").exists()
