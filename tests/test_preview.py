"""Contact sheets: --preview on a run, and `vidgen preview FILE...` for outputs already made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, one_line_error, sidecar
from PIL import Image

from vidgen.browse import preview


def _tile(sheet: np.ndarray, index: int, tile: int = 160, pad: int = 4) -> np.ndarray:
    """Tile `index` of a sheet of 16x16 frames, shrunk back to 16x16 (its nearest-scaled pixels)."""
    band = preview.CAPTION * 2 + 8
    row, column = divmod(index, preview.COLUMNS)
    top, left = band + pad + row * (tile + pad), pad + column * (tile + pad)
    block = sheet[top : top + tile, left : left + tile]
    step = tile // 16
    return block[step // 2 :: step, step // 2 :: step][:16, :16]


@pytest.mark.pipeline
def test_preview_flag_writes_a_contact_sheet_named_in_the_sidecar(tmp_path: Path) -> None:
    result = cli(
        "t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "2", "--frames", "17", "--preview", "--out", "a.mp4"
    )
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "a.json")
    assert data["output"]["preview"] == "a.preview.png"
    assert "preview" in data["timings"]
    sheet = np.asarray(Image.open(tmp_path / "a.preview.png").convert("RGB"))
    # 17 frames -> 8 tiles in 4 columns and 2 rows, each 160 px wide for 16 px frames.
    assert sheet.shape == (preview.CAPTION * 2 + 8 + 2 * 164 + 4, 4 * 164 + 4, 3)
    frames, _ = decode(tmp_path / "a.mp4")
    for index, frame in enumerate(preview.pick(len(frames))):
        # The sheet is drawn from the frames before encoding; the mp4 is lossy but close.
        assert np.abs(_tile(sheet, index).astype(int) - frames[frame].astype(int)).mean() < 12


@pytest.mark.pipeline
def test_preview_command_for_existing_outputs(tmp_path: Path) -> None:
    made = cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "3", "--out", "b.mp4")
    assert made.exit_code == 0, made.stderr
    assert "preview" not in sidecar(tmp_path / "b.json")["output"]
    result = cli("preview", "b.mp4")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "b.preview.png"
    assert sidecar(tmp_path / "b.json")["output"]["preview"] == "b.preview.png"
    sheet = np.asarray(Image.open(tmp_path / "b.preview.png").convert("RGB"))
    frames, _ = decode(tmp_path / "b.mp4")
    # Decoded by the same ffmpeg: the tiles are those frames exactly.
    for index, frame in enumerate(preview.pick(len(frames))):
        assert np.array_equal(_tile(sheet, index), frames[frame])


def test_preview_of_a_missing_file_is_an_input_error() -> None:
    one_line_error(cli("preview", "nope.mp4"), 4, "nope.mp4 does not exist")


def test_pick_spreads_frames_from_first_to_last() -> None:
    assert preview.pick(49) == [0, 7, 14, 21, 27, 34, 41, 48]
    assert preview.pick(3) == [0, 1, 2]
