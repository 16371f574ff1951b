"""`vidgen t2v` end to end on the tiny models: real pipelines, real ffmpeg, real sidecars."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, cli_subprocess, decode, sidecar

from vidgen.io.sidecar import KEYS

# Most tests here run a tiny pipeline: their tier unless marked otherwise (see conftest.py).
DEFAULT_TIER = "pipeline"

CAT = ["t2v", "a cat", "--preset", "tiny-cogvideox", "--frames", "9", "--height", "16", "--width", "16"]


def test_t2v_writes_a_decodable_video_and_a_full_sidecar(tmp_path: Path) -> None:
    result = cli(*CAT, "--steps", "2", "--seed", "1", "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "a.mp4\n"  # stdout carries the path and nothing else
    frames, meta = decode(tmp_path / "a.mp4")
    assert frames.shape == (9, 16, 16, 3)
    assert meta["fps"] == 8
    data = sidecar(tmp_path / "a.json")
    # prompt_enhancement is there only when --enhance-prompt ran (tests/test_enhance_prompt.py).
    assert set(KEYS) - {"prompt_enhancement"} <= set(data) and "prompt_enhancement" not in data
    assert data["seed"] == 1
    assert data["pipeline"]["class"] == "CogVideoXPipeline"
    assert data["pipeline"]["call_kwargs"]["num_frames"] == 9
    assert data["output"] == {
        "path": "a.mp4",
        "sha256": data["output"]["sha256"],
        "bytes": (tmp_path / "a.mp4").stat().st_size,  # checked with the sha256 when a batch resumes
        "format": "mp4",
        "codec": "h264",
        "crf": 18,
        "frames": 9,
        "width": 16,
        "height": 16,
        "fps": 8,
        "poster": data["output"]["poster"],  # the first frame as a small JPEG, for galleries
    }
    assert data["output"]["poster"].startswith("data:image/jpeg;base64,")
    import hashlib

    assert data["output"]["sha256"] == hashlib.sha256((tmp_path / "a.mp4").read_bytes()).hexdigest()
    assert data["sources"]["sampling.seed"] == "cli:--seed"
    assert data["sources"]["sampling.num_inference_steps"] == "cli:--steps"
    assert data["sources"]["output.fps"] == "family:cogvideox"
    assert data["versions"]["diffusers"]
    assert data["model"]["path"] and Path(data["model"]["path"], "model_index.json").is_file()
    assert set(data["timings"]) == {"load", "denoise", "decode", "encode"}
    assert data["peak_memory_bytes"] > 0


def test_default_name_is_mode_slug_seed(tmp_path: Path) -> None:
    result = cli("t2v", "a red fox running through fresh snow", "--preset", "tiny-cogvideox", "--seed", "7")
    assert result.exit_code == 0, result.stderr
    expected = Path("outputs/t2v-a-red-fox-running-through-fresh-snow-7.mp4")
    assert result.stdout.strip() == str(expected)
    assert (tmp_path / expected).is_file() and (tmp_path / expected.with_suffix(".json")).is_file()


def test_seed_is_drawn_and_recorded_when_not_given(tmp_path: Path) -> None:
    result = cli(*CAT, "--json", "--out", "r.mp4")
    assert result.exit_code == 0, result.stderr
    seed = json.loads(result.stdout)["outputs"][0]["seed"]
    assert isinstance(seed, int)
    assert sidecar(tmp_path / "r.json")["seed"] == seed


def test_num_videos_loops_over_consecutive_seeds(tmp_path: Path) -> None:
    result = cli(*CAT, "--seed", "5", "--num-videos", "2", "--out", "n.mp4", "--json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["exit_code"] == 0
    assert [(o["path"], o["seed"]) for o in body["outputs"]] == [("n-5.mp4", 5), ("n-6.mp4", 6)]
    first, _ = decode(tmp_path / "n-5.mp4")
    second, _ = decode(tmp_path / "n-6.mp4")
    assert not np.array_equal(first, second)
    assert sidecar(tmp_path / "n-6.json")["seed"] == 6


@pytest.mark.parametrize(("fmt", "codec"), [("webm", "vp9"), ("gif", "gif"), ("webp", "webp")])
def test_other_formats(tmp_path: Path, fmt: str, codec: str) -> None:
    result = cli(*CAT, "--seed", "1", "--out", f"x.{fmt}")
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "x.json")
    assert (data["output"]["format"], data["output"]["codec"]) == (fmt, codec)
    if fmt != "webp":  # the bundled ffmpeg cannot decode animated WebP; its header is checked instead
        frames, _ = decode(tmp_path / f"x.{fmt}")
        assert frames.shape == (9, 16, 16, 3)
    else:
        head = (tmp_path / "x.webp").read_bytes()[:64]
        assert head[:4] == b"RIFF" and b"ANIM" in head


def test_h265_and_crf_are_used(tmp_path: Path) -> None:
    result = cli(*CAT, "--seed", "1", "--out", "h.mp4", "--codec", "h265", "--crf", "30")
    assert result.exit_code == 0, result.stderr
    _, meta = decode(tmp_path / "h.mp4")
    assert "hevc" in meta["codec"]
    assert sidecar(tmp_path / "h.json")["output"]["crf"] == 30


def test_modelscope_runs_with_the_legacy_progress_callback(tmp_path: Path) -> None:
    result = cli("t2v", "a dog", "--preset", "tiny-modelscope", "--seed", "2", "--out", "m.mp4")
    assert result.exit_code == 0, result.stderr
    frames, _ = decode(tmp_path / "m.mp4")
    assert frames.shape == (8, 16, 16, 3)
    assert sidecar(tmp_path / "m.json")["pipeline"]["class"] == "TextToVideoSDPipeline"


@pytest.mark.unit
def test_dry_run_loads_nothing_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = tmp_path / "fresh-cache"
    monkeypatch.setenv("VIDGEN_CACHE", str(fresh))
    result = cli(*CAT, "--seed", "4", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "num_frames: 9" in result.stdout and "# cli:--frames" in result.stdout
    assert "outputs/t2v-a-cat-4.mp4" in result.stdout
    assert not fresh.exists()  # the tiny model was not even built
    assert not (tmp_path / "outputs").exists()
    body = json.loads(cli(*CAT, "--seed", "4", "--dry-run", "--json").stdout)
    assert body["pipeline"]["call_kwargs"]["num_frames"] == 9
    assert body["outputs"][0]["path"] == "outputs/t2v-a-cat-4.mp4"


def test_help_imports_neither_torch_nor_diffusers() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from vidgen.cli import app\n"
        "commands = ['t2v', 'i2v', 'v2v', 'animate', 'control', 'replay']\n"
        "for args in (['--help'], *([c, '--help'] for c in commands), ['presets', 'list']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_console_script_and_module_entry_point() -> None:
    result = cli_subprocess("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("vidgen ")


def test_nan_output_is_reported_with_the_usual_cause(tmp_path: Path, tiny_cache: Path) -> None:
    # A real tiny pipeline whose VAE decoder outputs NaN, as fp16 overflow does on real models.
    import shutil

    import torch
    from diffusers import AutoencoderKLCogVideoX

    from vidgen.models import tiny

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny.ensure("cogvideox"), broken)
    vae = AutoencoderKLCogVideoX.from_pretrained(broken / "vae")
    with torch.no_grad():
        vae.decoder.conv_out.conv.weight.fill_(float("nan"))
    vae.save_pretrained(broken / "vae")
    result = cli(*CAT, "--seed", "1", "--model", str(broken), "--out", "nan.mp4")
    assert result.exit_code == 0, result.stderr
    assert "warning: the output contains NaN values" in result.stderr
    assert "--dtype bf16" in result.stderr
    assert sidecar(tmp_path / "nan.json")["warnings"][0].startswith("the output contains NaN")


@pytest.mark.unit
def test_traceback_flag_reraises() -> None:
    from vidgen.core.errors import ConfigError

    result = cli("--traceback", *CAT, "--preset", "nope")
    assert isinstance(result.exception, ConfigError)
    assert cli(*CAT, "--preset", "nope").exit_code == 3
