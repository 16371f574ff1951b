"""Long text in sidecars is capped for display (issue 26, 3): `ls`, `inspect` and the gallery show
a prompt's start and how much was left out, and stay small and fast whatever a sidecar holds."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from peak import vidgen

# The tier of tests conftest does not place otherwise (a test starting processes is "process").
DEFAULT_TIER = "process"

GIB = 1 << 30
PROMPT_MB = 20


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """runs/: five outputs whose sidecars each hold a 20 MB prompt (under the 64 MiB sidecar cap)."""
    import imageio_ffmpeg

    runs = tmp_path / "runs"
    runs.mkdir()
    video = runs / "o0.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=red:s=32x32:d=0.5:r=8", "-pix_fmt", "yuv420p", str(video)], check=True)  # fmt: skip
    for index in range(5):
        if index:
            shutil.copyfile(video, runs / f"o{index}.mp4")
        prompt = f"prompt {index} \x1b[2J" + "p" * (PROMPT_MB << 20)
        record = {
            "vidgen_version": "0.1.0",
            "created_at": f"2026-01-0{index + 1}T00:00:00+00:00",
            "config": {"mode": "t2v", "model": {"id": "tiny:cogvideox"}, "inputs": {"prompt": prompt}},
            "seed": index,
            "output": {"format": "mp4", "frames": 4, "width": 32, "height": 32, "fps": 8},
        }
        (runs / f"o{index}.json").write_text(json.dumps(record))
    return tmp_path


def test_ls_inspect_and_gallery_show_long_prompts_shortened(hostile: Path) -> None:
    code, out, err, peak = vidgen("ls", "runs", cwd=hostile)
    assert code == 0, err
    assert peak < GIB, f"ls: {peak / 2**20:.0f} MiB"
    rows = out.splitlines()[1:]
    assert len(rows) == 5 and len(out) < 2000  # 250 MB before
    assert all("\\x1b[2Jppp" in row and row.endswith("…") and "\x1b" not in row for row in rows)

    code, out, err, peak = vidgen("ls", "runs", "--json", cwd=hostile)
    assert code == 0, err
    assert peak < GIB, f"ls --json: {peak / 2**20:.0f} MiB"
    prompts = [row["prompt"] for row in json.loads(out)["outputs"]]
    assert len(prompts) == 5 and all(len(prompt) < 5000 for prompt in prompts)
    assert prompts[0].startswith("prompt 0 \x1b[2Jppp") and prompts[0].endswith(" more characters]")

    code, out, err, peak = vidgen("inspect", "runs/o0.json", cwd=hostile)
    assert code == 0, err
    assert peak < GIB, f"inspect: {peak / 2**20:.0f} MiB"
    assert len(out) < 5000 and "more characters]" in out and "--json prints them whole" in err

    code, out, err, peak = vidgen("gallery", "runs", cwd=hostile)
    assert code == 0, err
    assert peak < GIB, f"gallery: {peak / 2**20:.0f} MiB"
    page = (hostile / "runs" / "index.html").read_text()
    assert len(page) < 100_000  # 750 MB before
    assert page.count('<figure class="tile"') == 5 and "prompt 0 \x1b[2Jppp" in page
    assert page.count("more characters]</p>") == 5  # each tile shows how much it left out
