"""The gallery scales (issue 26, 5): posters are small JPEG files written once beside the page
(from the sidecar when vidgen recorded one, else from the first frame alone), videos load lazily,
and a page of hundreds of outputs stays a few hundred KB. (The 1000-output timing is
benchmarks/gallery.py; the page in a real browser is tests/test_gallery.py.)"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from conftest import cli
from peak import vidgen
from PIL import Image

from vidgen.io import media

# The tier of tests conftest does not place otherwise (a test starting processes is "process").
DEFAULT_TIER = "process"

POSTERS = "index.posters"


def output(folder: Path, name: str, fmt: str = "mp4", size: tuple[int, int] = (832, 480), seed: int = 0) -> Path:
    """A real output (random frames written by vidgen's writer) and its sidecar."""
    frames = np.random.default_rng(seed).integers(0, 255, (9, size[1], size[0], 3), dtype=np.uint8)
    target = folder / (name if fmt == "png" else f"{name}.{fmt}")
    codec, crf = media.encoding(fmt, None, None)
    block = media.write(frames, target, fmt=fmt, fps=8, codec=codec, crf=crf, metadata=None, overwrite=False)
    record = {
        "vidgen_version": "0.1.0",
        "created_at": f"2026-01-01T00:00:{seed % 60:02d}+00:00",
        "config": {"mode": "t2v", "inputs": {"prompt": f"a fox {seed}"}},
        "seed": seed,
        "output": block,
    }
    (folder / f"{name}.json").write_text(json.dumps(record))
    return target


def jpeg(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image


def poster_of(page: str, name: str) -> str | None:
    """The poster URL the page gives the tile of output `name`."""
    tile = next(t for t in page.split('<figure class="tile"')[1:] if f">{name}</a>" in t)
    found = re.search(r'(?:data-poster|<img src)="([^"]+)"', tile)
    return found.group(1) if found else None


def test_a_written_output_carries_a_small_poster(tmp_path: Path) -> None:
    video = output(tmp_path, "clip")
    recorded = json.loads(video.with_suffix(".json").read_text())["output"]["poster"]
    assert recorded.startswith("data:image/jpeg;base64,") and len(recorded) < 40_000
    assert jpeg(base64.b64decode(recorded.split(",", 1)[1])).size == (256, 148)


def test_posters_are_files_beside_the_page_made_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    new = output(runs, "new", seed=1)
    old = output(runs, "old", seed=2)  # as vidgen wrote sidecars before posters: decoded
    record = json.loads((runs / "old.json").read_text())
    record["output"].pop("poster", None)
    (runs / "old.json").write_text(json.dumps(record))
    # The sidecar's poster is used as it is: this video is not even readable any more.
    output(runs, "gone", seed=3).write_bytes(b"not a video")
    folder = output(runs, "frames", fmt="png", size=(64, 48), seed=4)
    record = json.loads((runs / "frames.json").read_text())
    record["output"].pop("poster", None)
    (runs / "frames.json").write_text(json.dumps(record))
    (folder / "frame_00003.png").write_bytes(b"broken")  # the folder's first frame is all that is read
    output(runs, "anim", fmt="gif", size=(32, 32), seed=5)

    assert cli("gallery", "runs").exit_code == 0
    page = (runs / "index.html").read_text()
    assert "data:" not in page  # nothing inlined
    urls = {name: poster_of(page, name) for name in ("new.mp4", "old.mp4", "gone.mp4", "frames")}
    assert all(url and url.startswith(f"{POSTERS}/") and url.endswith(".jpg") for url in urls.values()), urls
    files = {name: runs / url for name, url in urls.items()}
    for name, path in files.items():
        assert max(jpeg(path.read_bytes()).size) <= 256, name
    for name in ("new", "gone"):
        recorded = json.loads((runs / f"{name}.json").read_text())["output"]["poster"]
        assert files[f"{name}.mp4"].read_bytes() == base64.b64decode(recorded.split(",", 1)[1])
    assert jpeg(files["old.mp4"].read_bytes()).size == (256, 148)  # decoded by ffmpeg
    assert jpeg(files["frames"].read_bytes()).size == (64, 48)
    assert poster_of(page, "anim.gif") == "anim.gif"  # a gif plays as an image
    assert sorted(p.name for p in (runs / POSTERS).iterdir()) == sorted(p.name for p in files.values())

    # Written once: a second page reuses them; an output that is gone takes its poster along.
    stamps = {name: path.stat().st_mtime_ns for name, path in files.items()}
    new.unlink()
    (runs / "new.json").unlink()
    assert cli("gallery", "runs").exit_code == 0
    assert not files["new.mp4"].exists()
    assert all(files[name].stat().st_mtime_ns == stamps[name] for name in ("old.mp4", "gone.mp4", "frames"))
    assert old.exists()


def test_hostile_posters_and_videos_cost_a_poster_not_memory(tmp_path: Path) -> None:
    import imageio_ffmpeg

    runs = tmp_path / "runs"
    runs.mkdir()
    wide = io.BytesIO()
    Image.new("RGB", (4000, 8)).save(wide, format="JPEG")
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    lies = {
        "wide": "data:image/jpeg;base64," + base64.b64encode(wide.getvalue()).decode(),
        "png": "data:image/jpeg;base64," + base64.b64encode(png.getvalue()).decode(),
        "junk": "data:image/jpeg;base64,%%%not base64%%%",
        "huge": "data:image/jpeg;base64," + "A" * (1 << 20),
    }
    for index, (name, lie) in enumerate(lies.items()):
        output(runs, name, size=(64, 48), seed=index)
        record = json.loads((runs / f"{name}.json").read_text())
        record["output"]["poster"] = lie
        (runs / f"{name}.json").write_text(json.dumps(record))
    # 8192x4320 frames in 100 KB, its sidecar claiming 64x48: no poster, and little memory.
    big = output(runs, "big", size=(64, 48), seed=9)
    record = json.loads((runs / "big.json").read_text())
    record["output"].pop("poster", None)
    (runs / "big.json").write_text(json.dumps(record))
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "color=black:s=8192x4320:d=0.25:r=8", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(big)], check=True)  # fmt: skip
    code, out, err, peak = vidgen("gallery", "runs", cwd=tmp_path)
    assert code == 0, err
    assert peak < 1 << 30, f"{peak / 2**20:.0f} MiB"
    page = (runs / "index.html").read_text()
    assert poster_of(page, "big.mp4") is None
    for name in lies:  # the lie is passed over; the video's own first frame is the poster
        assert jpeg((runs / poster_of(page, f"{name}.mp4")).read_bytes()).size == (64, 48), name


def test_a_page_of_hundreds_of_outputs_stays_small_and_lazy(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    first = output(runs, "clip-0", size=(832, 480))
    record = json.loads((runs / "clip-0.json").read_text())
    for index in range(1, 300):
        shutil.copyfile(first, runs / f"clip-{index}.mp4")
        record["seed"] = index
        (runs / f"clip-{index}.json").write_text(json.dumps(record))
    assert cli("gallery", "runs").exit_code == 0
    page = (runs / "index.html").read_text()
    assert len(page.encode()) < 300 * 1200  # about a kilobyte a tile, posters not inlined
    videos = re.findall(r"<video [^>]*>", page)
    assert len(videos) == 300
    assert all('preload="none"' in video and "data-src=" in video and " src=" not in video for video in videos)
    assert len(list((runs / POSTERS).iterdir())) == 300
