"""`vidgen ls DIR`: exactly the outputs there, found through their sidecars."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli, one_line_error


@pytest.mark.pipeline
def test_ls_lists_exactly_the_outputs_with_prompts_and_seeds(tmp_path: Path) -> None:
    made = cli(
        "t2v", "a fox in snow", "--preset", "tiny-cogvideox", "--seed", "5", "--num-videos", "2", "--out", "runs/"
    )
    assert made.exit_code == 0, made.stderr
    other = cli("t2v", "夕阳下的猫", "--preset", "tiny-cogvideox", "--seed", "1", "--out", "runs/cats/")
    assert other.exit_code == 0, other.stderr
    videos = sorted(Path(line) for line in (made.stdout + other.stdout).split())
    # Things that are not outputs: a JSON that is no sidecar, a video without one, a sidecar
    # whose video is gone.
    (tmp_path / "runs" / "jobs.json").write_text(json.dumps({"jobs": [{"prompt": "x"}]}))
    shutil.copy(videos[0], tmp_path / "runs" / "stray.mp4")
    shutil.copy(videos[0].with_suffix(".json"), tmp_path / "runs" / "gone.json")

    result = cli("ls", "runs", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["outputs"]
    assert sorted(Path(row["path"]) for row in rows) == videos
    assert sorted((row["prompt"], row["seed"]) for row in rows) == [
        ("a fox in snow", 5),
        ("a fox in snow", 6),
        ("夕阳下的猫", 1),
    ]
    assert {row["frames"] for row in rows} == {9} and all(row["bytes"] > 0 for row in rows)
    assert all(row["model"] == "tiny:cogvideox" and row["mode"] == "t2v" for row in rows)

    table = cli("ls", "runs").stdout.splitlines()
    assert table[0].split()[:3] == ["FILE", "MODE", "MODEL"]
    assert len(table) == 4 and any("夕阳下的猫" in line for line in table)
    assert not any("stray" in line or "gone" in line for line in table)


def test_ls_of_a_missing_folder_is_an_input_error() -> None:
    one_line_error(cli("ls", "nowhere"), 4, "nowhere is not a folder")
