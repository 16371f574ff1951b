"""Issue 26 item 1, the refusals that need a loaded tiny model: a weights file whose header reads
but whose tensors a loader cannot take fails as a model error (exit 5), in one line, with nothing
written. The checks before loading are in test_probe_errors.py."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

from conftest import cli, files_under, one_line_error

# The tier of tests conftest does not place otherwise (a test starting processes is "process").
DEFAULT_TIER = "pipeline"


def _safetensors(path: Path, header: dict, data: bytes) -> Path:
    """A file in safetensors' layout (8-byte length, JSON header, data) with any header."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_a_lora_safetensors_can_not_load_is_a_model_error(tmp_path: Path) -> None:
    # The header is JSON with a tensor in range, so it passes the check before loading; the
    # dtype is none safetensors knows, so the loader raises SafetensorError (it was exit 1).
    _safetensors(tmp_path / "odd.safetensors", {"w": {"dtype": "XX", "shape": [1], "data_offsets": [0, 4]}}, b"1234")
    before = files_under(tmp_path)
    line = one_line_error(cli("t2v", "a fox", "--preset", "tiny-wan", "--lora", "odd.safetensors"), 5)
    assert line.startswith("Error: could not load LoRA odd.safetensors:")
    assert files_under(tmp_path) == before


def test_a_model_folder_with_a_broken_weights_file_is_a_model_error(tmp_path: Path) -> None:
    # The memory planner reads every weights header of a --model folder before loading; a
    # truncated one was a struct/JSON error there (exit 1).
    built = cli("t2v", "a fox", "--preset", "tiny-wan", "--dry-run")  # locates the tiny model
    assert built.exit_code == 0, built.stderr
    from vidgen.models import tiny

    folder = shutil.copytree(tiny.ensure("wan"), tmp_path / "wan")
    weights = next((folder / "transformer").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:6])
    before = files_under(tmp_path)
    line = one_line_error(cli("t2v", "a fox", "--preset", "tiny-wan", "--model", str(folder)), 5, "transformer")
    assert "is not a safetensors file" in line
    assert files_under(tmp_path) == before
