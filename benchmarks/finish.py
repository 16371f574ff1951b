"""What finishing a clip costs per frame on CPU: `vidgen interpolate` / `vidgen upscale` against
the network called directly on the same frames, in one process, rounds alternating.

Networks (random weights of each architecture under the published key names; no download):
the tiny stand-ins the tests use, and the published sizes: RIFE 4.25/4.26 IFNet (head 16,
blocks 192/128/96/64/32), Real-ESRGAN realesr-animevideov3 (SRVGGNetCompact, 64 features, 16
convs, x4) and RealESRGAN_x4plus (RRDBNet, 64 features, 23 blocks, growth 32, x4).

"vidgen" is the whole command (read the clip with ffmpeg, check and hash the weights, load, run,
encode the MP4, write the sidecar); "direct" loads the same file and calls the network on the
already-decoded frames (vidgen.models.rife.interpolate_pair / upscalers.upscale_frame), nothing
else. Seconds per output frame are medians of the rounds; the ratio is vidgen over direct. With
--write the table goes into benchmarks/README.md between the finish markers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- finish:start -->", "<!-- finish:end -->"


def _cases() -> list[tuple[str, str, Any, int, int, int]]:
    """(name, step, arch, frames, height, width) of each network measured."""
    from vidgen.models import rife, upscalers

    return [
        ("tiny RIFE IFNet (tests)", "interpolate", rife.TINY, 9, 64, 64),
        ("RIFE 4.25 IFNet, published size", "interpolate", rife.Arch(16, (192, 128, 96, 64, 32)), 5, 128, 128),
        ("tiny SRVGGNetCompact x2 (tests)", "upscale", upscalers.TINY, 9, 64, 64),
        ("realesr-animevideov3 (SRVGG x4), published size", "upscale", upscalers.Arch("srvgg", 4, 64, 16), 5, 64, 64),
        ("tiny RRDBNet x2 (tests)", "upscale", upscalers.TINY_RRDB, 9, 64, 64),
        ("RealESRGAN_x4plus (RRDB x4), published size", "upscale", upscalers.Arch("rrdb", 4, 64, 23, 32), 3, 32, 32),
    ]


def _clip(folder: Path, frames: int, height: int, width: int) -> Path:
    import numpy as np

    from vidgen.io import media

    rng = np.random.default_rng(0)
    pixels = (rng.random((frames, height, width, 3)) * 255).astype(np.uint8)
    path = folder / f"clip-{frames}-{height}x{width}.mp4"
    if not path.exists():
        codec, crf = media.encoding("mp4", None, None)
        media.write(pixels, path, fmt="mp4", fps=8, codec=codec, crf=crf, metadata=None, overwrite=True)
    return path


def _vidgen(step: str, weights: Path, clip: Path, out: Path) -> tuple[float, int]:
    from vidgen.config.schema import FinishStep
    from vidgen.run import refinish

    spec = FinishStep(step=step, model=str(weights), **({"by": "x2"} if step == "interpolate" else {"tile": 512}))
    request = refinish.Request(clip, spec, str(out), True, False, "cpu")
    start = time.perf_counter()
    done = refinish.run(request)
    return time.perf_counter() - start, done.record["output"]["frames"]


def _direct(step: str, weights: Path, clip: Path) -> tuple[float, int]:
    import numpy as np

    from vidgen.io import media
    from vidgen.models import finishers, rife, upscalers

    frames = np.stack(list(media.frames(clip)))  # decoded before the clock starts
    start = time.perf_counter()
    found = finishers.read(step, str(weights), False)
    model = finishers.load(found, "cpu")
    made = 0
    if step == "interpolate":
        for first, second in zip(frames[:-1], frames[1:], strict=True):
            rife.interpolate_pair(model, first, second, [0.5], "cpu")
            made += 2
        made += 1
    else:
        for frame in frames:
            upscalers.upscale_frame(model, found.arch, frame, "cpu", tile=512)
            made += 1
    return time.perf_counter() - start, made


def measure(runs: int) -> list[dict[str, Any]]:
    from vidgen.models import finishers

    rows = []
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        os.environ["VIDGEN_CACHE"] = str(folder / "cache")
        for name, step, arch, frames, height, width in _cases():
            weights = finishers.save_tiny(step, folder / f"{len(rows)}.safetensors", arch=arch)
            clip = _clip(folder, frames, height, width)
            _vidgen(step, weights, clip, folder / "warm.mp4")  # untimed: first calls allocate
            ours, theirs, made = [], [], 0
            for _ in range(runs):
                seconds, made = _vidgen(step, weights, clip, folder / "out.mp4")
                ours.append(seconds / made)
                seconds, _ = _direct(step, weights, clip)
                theirs.append(seconds / made)
            rows.append(
                {
                    "name": name,
                    "clip": f"{frames} frames {width}x{height}",
                    "made": made,
                    "vidgen": statistics.median(ours),
                    "direct": statistics.median(theirs),
                }
            )
            print(rows[-1], file=sys.stderr)
    return rows


def table(rows: list[dict[str, Any]], runs: int, threads: int) -> str:
    lines = [
        "| network | clip | frames made | vidgen s/frame | direct s/frame | ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ratio = row["vidgen"] / row["direct"]
        lines.append(
            f"| {row['name']} | {row['clip']} | {row['made']} | {row['vidgen']:.4f} | {row['direct']:.4f} | "
            f"{ratio:.2f} |"
        )
    import torch

    lines += [
        "",
        f"Medians of {runs} rounds after a warm-up, one process, torch threads {threads}. Random weights of each "
        "architecture (published key names); interpolation x2, upscaling in 512-pixel tiles.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}, torch "
        f"{torch.__version__}, diffusers {version('diffusers')}; {datetime.date.today().isoformat()}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--write", action="store_true", help="replace the table in benchmarks/README.md")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    text = table(measure(args.runs), args.runs, torch.get_num_threads())
    print(text)
    if args.write:
        readme = README.read_text()
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{START}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main()
