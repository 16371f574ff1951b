"""Hostile videos end fast and small (issue 26, 3; DESIGN §7: under 10 s and 1 GB): metadata is
read with a size cap before it is parsed, and a video input's frame size is read from its header
and refused above the limit before any frame is decoded."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from peak import vidgen

from vidgen.core.errors import InputError
from vidgen.io import media

# The tier of tests conftest does not place otherwise (a test starting processes is "process").
DEFAULT_TIER = "process"

GIB = 1 << 30
CAP = 16 << 20  # vidgen.core.limits.MAX_METADATA_BYTES
MAX_SIDE = 4096


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def with_comment(path: Path, comment: str) -> Path:
    """A half-second 16x16 mp4 whose container comment is `comment` (as vidgen writes its
    provenance copy, through an ffmetadata file)."""
    meta = path.with_suffix(".meta")
    escaped = re.sub(r"([=;#\\\n])", r"\\\1", comment)  # as vidgen's writer escapes it
    meta.write_text(f";FFMETADATA1\ncomment={escaped}\n", encoding="utf-8")
    ffmpeg("-f", "lavfi", "-i", "color=black:s=16x16:d=0.5:r=8", "-f", "ffmetadata", "-i", str(meta),
           "-map", "0:v", "-map_metadata", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))  # fmt: skip
    meta.unlink()
    return path


def provenance(prompt: str) -> str:
    return json.dumps({"vidgen_version": "0.1.0", "config": {"mode": "t2v", "inputs": {"prompt": prompt}}, "seed": 1})


def test_metadata_over_the_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    # 20 MB of comment (57 MB took 33 s and 7.9 GB): refused at the cap, with exit 4 and one line.
    video = with_comment(tmp_path / "huge.mp4", provenance("a" * (CAP + (4 << 20))))
    before = set(tmp_path.iterdir())
    for command in (["inspect", "huge.mp4"], ["replay", "huge.mp4", "--dry-run"], ["replay", "huge.mp4"]):
        code, out, err, peak = vidgen(*command, cwd=tmp_path)
        assert code == 4, (command, err)
        assert out == "" and len(err.strip().splitlines()) == 1, err
        assert "more than 16 MiB of metadata" in err and "huge.mp4" in err
        assert peak < GIB, f"{command}: {peak / 2**20:.0f} MiB"
    assert set(tmp_path.iterdir()) == before  # nothing written
    assert video.stat().st_size > CAP


def test_metadata_under_the_cap_is_parsed_in_linear_time_and_shown_shortened(tmp_path: Path) -> None:
    # Just under the cap, with escapes ffmetadata adds (=, ;, #, backslashes) all through it.
    prompt = "a=b;c#d\\e " * 900_000  # 13.5 MB as ffmetadata escapes it
    with_comment(tmp_path / "long.mp4", provenance(prompt))
    found = media.embedded_metadata(tmp_path / "long.mp4")
    assert found is not None and found["config"]["inputs"]["prompt"] == prompt
    code, out, err, peak = vidgen("inspect", "long.mp4", cwd=tmp_path)
    assert code == 0, err
    assert peak < GIB, f"{peak / 2**20:.0f} MiB"
    row = next(line for line in out.splitlines() if line.startswith("prompt "))
    assert row.startswith("prompt       a=b;c#d\\e a=b") and len(row) < 1200
    assert f"[{len(prompt) - 1000} more characters]" in row
    assert "--json prints them whole" in err
    assert len(out) < 10_000


def test_ffmetadata_values_end_at_the_first_unescaped_newline() -> None:
    text = "comment=a\\=b\\;c\\#d\\\\\\\ne\\\\\nnext=1\n"
    assert media._ffmetadata_value(";FFMETADATA1\n" + text) == "a=b;c#d\\\ne\\"
    assert media._ffmetadata_value("title=x\nCOMMENT=only\n") == "only"
    assert media._ffmetadata_value("title=x\n") is None
    # An odd run of backslashes escapes the newline; an even one does not.
    assert media._ffmetadata_value("comment=" + "\\" * 2_000_001 + "\nmore\n") == "\\" * 1_000_000 + "\nmore"


def test_a_huge_frame_video_input_is_refused_from_its_header(tmp_path: Path) -> None:
    # About 100 KB of file, ten 8192x4320 frames: decoding them took 1.6 GB before the frames
    # were resized.
    big = tmp_path / "big.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=black:s=8192x4320:d=1.25:r=8", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(big))  # fmt: skip
    assert big.stat().st_size < 1 << 20
    code, out, err, peak = vidgen("v2v", "big.mp4", "claymation", "--preset", "tiny-cogvideox-v2v", "--dry-run",
                                  cwd=tmp_path)  # fmt: skip
    assert code == 4, err
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert "big.mp4 has 8192x4320 frames" in err and f"16 to {MAX_SIDE} pixels a side" in err
    assert peak < GIB / 2, f"{peak / 2**20:.0f} MiB"
    # `vidgen preview` of it is refused the same way, undecoded.
    code, out, err, peak = vidgen("preview", "big.mp4", cwd=tmp_path)
    assert code == 4 and "8192x4320 frames" in err and peak < GIB / 2, (err, peak)
    assert media.probe(big) == media.Probe(8192, 4320, 8.0)
    # ffmpeg's decoder refuses such frames too, whatever a header says.
    with pytest.raises(InputError, match="no frame could be decoded"):
        next(media.frames(big))


def test_video_frames_are_read_as_before_and_shaped_as_they_come(tmp_path: Path) -> None:
    import imageio_ffmpeg
    import numpy as np

    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=100x60:d=2:r=10", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip))
    assert media.probe(clip) == media.Probe(100, 60, 10.0)
    params = ["-vf", "fps=7", "-frames:v", "9"]
    ours = np.stack(list(media.frames(clip, params)))
    reader = imageio_ffmpeg.read_frames(str(clip), output_params=params)
    width, height = next(reader)["size"]
    theirs = np.stack([np.frombuffer(chunk, np.uint8).reshape(height, width, 3) for chunk in reader])
    assert ours.shape == (9, 60, 100, 3) and (ours == theirs).all()
