"""`vidgen replay`: rerun exactly from a sidecar or a bare video, with optional --set changes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, files_under, one_line_error, sidecar
from PIL import Image

# Most tests here run a tiny pipeline: their tier unless marked otherwise (see conftest.py).
DEFAULT_TIER = "pipeline"


def _frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_replay_from_a_sidecar_reproduces_the_frames(tmp_path: Path) -> None:
    # The seed was drawn at random: replay must use the effective one from the sidecar.
    result = cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--format", "png", "--out", "runs/", "--json")
    assert result.exit_code == 0, result.stderr
    first = json.loads(result.stdout)["outputs"][0]
    replayed = cli("replay", first["sidecar"])
    assert replayed.exit_code == 0, replayed.stderr
    again = Path(replayed.stdout.strip())
    assert again == Path(first["path"]).with_name(Path(first["path"]).name + "-replay")
    assert np.array_equal(_frames(Path(first["path"])), _frames(again))
    data = sidecar(again.with_name(again.name + ".json"))
    assert data["seed"] == first["seed"]
    assert data["replay_of"]["path"] == first["sidecar"]
    assert data["sources"]["sampling.guidance_scale"] == f"replay:{Path(first['sidecar']).name}"
    # A second replay gets the next free name; --set changes what it says and nothing else.
    changed = cli("replay", first["sidecar"], "--set", "sampling.num_inference_steps=3")
    assert changed.exit_code == 0, changed.stderr
    third = Path(changed.stdout.strip())
    assert third.name.endswith("-replay2")
    assert not np.array_equal(_frames(third), _frames(again))
    record = sidecar(third.with_name(third.name + ".json"))
    assert record["config"]["sampling"]["num_inference_steps"] == 3
    assert record["sources"]["sampling.num_inference_steps"] == "cli:--set"


def test_replay_from_a_bare_video_uses_its_embedded_metadata(tmp_path: Path) -> None:
    base = ["t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "11"]
    assert cli(*base, "--format", "png", "--out", "ref/").exit_code == 0
    assert cli(*base, "--out", "bare.mp4").exit_code == 0
    (tmp_path / "bare.json").unlink()  # only the video is left
    result = cli("replay", "bare.mp4", "--out", "again/", "--set", "output.format=png")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(_frames(Path(result.stdout.strip())), _frames(tmp_path / "ref" / "t2v-a-fox-11"))


def test_replay_of_i2v_finds_the_image_from_another_folder_and_notices_changes(tmp_path: Path) -> None:
    pixels = (np.random.RandomState(0).rand(32, 32, 3) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "img.png")
    args = ["i2v", "img.png", "--preset", "tiny-svd", "--seed", "2", "--format", "png", "--out", "run/"]
    assert cli(*args).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)  # the recorded relative path no longer resolves; its absolute path does
    # The image lies outside the sidecar's folder (run/): read only when the user says so.
    refused = cli("replay", str(tmp_path / "run" / "i2v-img-2.json"), "--out", "r/")
    one_line_error(refused, 4, str(tmp_path / "img.png"), "--allow-inputs")
    assert not (elsewhere / "r").exists()
    result = cli("replay", str(tmp_path / "run" / "i2v-img-2.json"), "--out", "r/", "--allow-inputs")
    assert result.exit_code == 0, result.stderr
    assert f"image {tmp_path / 'img.png'} (local, outside the replayed file's folder)" in result.stderr
    assert np.array_equal(_frames(Path(result.stdout.strip())), _frames(tmp_path / "run" / "i2v-img-2"))
    Image.fromarray(255 - pixels).save(tmp_path / "img.png")  # the input changed since
    before = files_under(tmp_path)
    changed = cli("replay", str(tmp_path / "run" / "i2v-img-2.json"), "--out", "r2/", "--allow-inputs", "--quiet")
    one_line_error(changed, 4, "has changed")
    assert files_under(tmp_path) == before
    # Named with --set, the image is chosen on purpose, also under the recorded path (as ./img.png was).
    os.chdir(tmp_path)
    chosen = cli("replay", "run/i2v-img-2.json", "--out", "r3/", "--set", "inputs.image=img.png", "--quiet")
    assert chosen.exit_code == 0, chosen.stderr


@pytest.mark.unit
def test_replay_errors(tmp_path: Path) -> None:
    one_line_error(cli("replay", "missing.json"), 4, "does not exist")
    (tmp_path / "x.json").write_text("{}")
    one_line_error(cli("replay", "x.json"), 4, "not a vidgen sidecar")
