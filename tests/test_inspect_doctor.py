"""inspect reads sidecars and bare videos; doctor reports a healthy CPU machine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

from vidgen.io import media


def _make(tmp_path: Path) -> Path:
    result = cli("t2v", "a blue dog", "--preset", "tiny-cogvideox", "--seed", "11", "--out", "v.mp4")
    assert result.exit_code == 0, result.stderr
    return tmp_path / "v.mp4"


@pytest.mark.pipeline
def test_inspect_sidecar_and_video(tmp_path: Path) -> None:
    video = _make(tmp_path)
    for target in (video, tmp_path / "v.json"):
        result = cli("inspect", str(target))
        assert result.exit_code == 0, result.stderr
        assert "a blue dog" in result.stdout
        assert "seed         11" in result.stdout
        assert "CogVideoXPipeline" in result.stdout


@pytest.mark.pipeline
def test_inspect_bare_video_reads_container_metadata(tmp_path: Path) -> None:
    video = _make(tmp_path)
    (tmp_path / "v.json").rename(tmp_path / "elsewhere.json")
    result = cli("inspect", str(video), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["seed"] == 11
    assert data["pipeline"]["call_kwargs"]["prompt"] == "a blue dog"
    assert data["config"] == json.loads((tmp_path / "elsewhere.json").read_text())["config"]


def test_inspect_errors(tmp_path: Path) -> None:
    assert cli("inspect", "missing.mp4").exit_code == 4
    (tmp_path / "plain.json").write_text("{}")
    result = cli("inspect", "plain.json")
    assert result.exit_code == 4 and "not a vidgen sidecar" in result.stderr


def test_odd_sizes_are_padded_and_recorded(tmp_path: Path) -> None:
    frames = np.full((3, 15, 17, 3), 200, dtype=np.uint8)
    block = media.write(
        frames, tmp_path / "odd.mp4", fmt="mp4", fps=5, codec="h264", crf=18, metadata=None, overwrite=False
    )
    assert (block["width"], block["height"], block["padded_from"]) == (18, 16, [17, 15])
    from conftest import decode

    decoded, meta = decode(tmp_path / "odd.mp4")
    assert decoded.shape == (3, 16, 18, 3)
    assert abs(int(decoded[:, :15, :17].mean()) - 200) <= 2  # content kept, not rescaled


def test_doctor_is_healthy_on_cpu() -> None:
    result = cli("doctor")
    assert result.exit_code == 0, result.stderr
    assert "ffmpeg" in result.stdout
    report = json.loads(cli("doctor", "--json").stdout)
    if not report["gpus"]:
        assert "generation runs on the CPU and will be slow" in result.stdout
    assert report["problems"] == []
    assert report["packages"]["diffusers"].startswith("0.42")


def test_models_optimizations_table() -> None:
    from conftest import cli

    body = json.loads(cli("models", "--optimizations", "--json").stdout)
    assert body["table"]["svd"]["--vae-tiling"] is False and body["table"]["svd"]["--decode-chunk"] is True
    assert body["table"]["cogvideox"]["--vae-tiling"] is True
    assert "--decode-chunk" in body["instead"]["svd"]["--vae-tiling"]
    text = cli("models", "--optimizations").stdout
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["cogvideox", "cogvideox1.5"]
    assert [line.split()[0] for line in lines[1:12]] == [
        "--offload",
        "--vae-tiling",
        "--vae-slicing",
        "--forward-chunking",
        "--decode-chunk",
        "--attention-slicing",
        "--fp8-storage",
        "--attention-backend",
        "--compile",
        "--cache",
        "--quantize",
    ]
    svd = lines[0].split().index("svd") + 1
    assert lines[2].split()[svd] == "-" and lines[5].split()[svd] == "yes"  # --vae-tiling, --decode-chunk
    assert "svd: --vae-tiling:" in text
