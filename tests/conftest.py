"""Shared fixtures: every test runs offline, in its own folder, with a shared tiny-model cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidgen.cli import app
from vidgen.core.progress import NullProgress


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One cache for the session: each tiny model is built once, then loaded with from_pretrained.
    return tmp_path_factory.mktemp("vidgen-cache")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIDGEN_CACHE", str(tiny_cache))
    monkeypatch.setenv("VIDGEN_PRESETS", str(tmp_path / "user-presets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VIDGEN_TRACEBACK", raising=False)
    return tmp_path


def cli(*args: str):
    """Run vidgen in-process through the real Typer app; returns the result (stdout, stderr, exit_code)."""
    return CliRunner().invoke(app, list(args))


def cli_subprocess(*args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None):
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "vidgen", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def decode(path: Path):
    """Frames (uint8, F×H×W×3) and metadata of a video, decoded by the bundled ffmpeg."""
    import imageio_ffmpeg
    import numpy as np

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    width, height = meta["size"]
    frames = [np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3) for chunk in reader]
    return np.stack(frames), meta


def sidecar(path: Path) -> dict:
    return json.loads(path.read_text())


def png_frames(result):
    """The frames (uint8, F×H×W×3) of the png folder a successful command printed."""
    import numpy as np
    from PIL import Image

    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def printed_sidecar(result) -> dict:
    """The sidecar of the output a command printed (FOLDER -> FOLDER.json, NAME.mp4 -> NAME.json)."""
    output = Path(result.stdout.strip())
    return sidecar(
        output.with_name(output.stem + ".json") if output.suffix else output.with_name(output.name + ".json")
    )


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "user-presets" not in p.parts)


def one_line_error(result, code: int, *needles: str) -> str:
    """The single `Error:` line of a failed run, checked against the exit code and needles."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    # Status lines may come first; the error is the one and last line that says Error.
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == lines[-1:], result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0]
    return errors[0]


class CountingProgress(NullProgress):
    """A Progress that counts: the totals announced and the steps reported."""

    def __init__(self) -> None:
        self.totals: list[int] = []
        self.steps = 0

    def start(self, total: int, description: str) -> None:
        self.totals.append(total)

    def advance(self) -> None:
        self.steps += 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.gpu` tests run only where torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
