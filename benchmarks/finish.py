"""What finishing a clip costs per frame on CPU: `vidgen interpolate` / `vidgen upscale` against
the network called directly on the same frames, in one process, rounds alternating.

Networks (random weights of each architecture under the published key names; no download):
the tiny stand-ins the tests use, and the published sizes: RIFE 4.25/4.26 IFNet (head 16,
blocks 192/128/96/64/32), Real-ESRGAN realesr-animevideov3 (SRVGGNetCompact, 64 features, 16
convs, x4) and RealESRGAN_x4plus (RRDBNet, 64 features, 23 blocks, growth 32, x4); spandrel's
SPAN (tiny, and 48 features x4 as 4xNomos8k_span_otf is) against spandrel called directly; and
the tiny Kandinsky6SRPipeline (tiny:kandinsky6-sr, 4 steps) against the pipeline called directly.
The spandrel rows need spandrel importable: on a CPU-torch machine run the script with
PYTHONPATH=tests/stand_ins (tests/stand_ins/README.md); without it they are left out.

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
    """(name, step, arch, frames, height, width) of each network measured; arch is a
    ("span", features, scale) for spandrel and "kandinsky6-sr" for the pipeline."""
    import importlib.util

    from vidgen.models import rife, upscalers

    cases = [
        ("tiny RIFE IFNet (tests)", "interpolate", rife.TINY, 9, 64, 64),
        ("RIFE 4.25 IFNet, published size", "interpolate", rife.Arch(16, (192, 128, 96, 64, 32)), 5, 128, 128),
        ("tiny SRVGGNetCompact x2 (tests)", "upscale", upscalers.TINY, 9, 64, 64),
        ("realesr-animevideov3 (SRVGG x4), published size", "upscale", upscalers.Arch("srvgg", 4, 64, 16), 5, 64, 64),
        ("tiny RRDBNet x2 (tests)", "upscale", upscalers.TINY_RRDB, 9, 64, 64),
        ("RealESRGAN_x4plus (RRDB x4), published size", "upscale", upscalers.Arch("rrdb", 4, 64, 23, 32), 3, 32, 32),
        ("tiny Kandinsky6SRPipeline x2, 4 steps (tests)", "upscale", "kandinsky6-sr", 5, 64, 64),
    ]
    if importlib.util.find_spec("spandrel") is not None:
        cases += [
            ("tiny SPAN x2 via spandrel (tests)", "upscale", ("span", 8, 2), 9, 64, 64),
            ("SPAN x4 via spandrel, 48 features", "upscale", ("span", 48, 4), 5, 64, 64),
        ]
    return cases


def _weights(folder: Path, index: int, step: str, arch: Any) -> Path:
    """The weights file of a case: random weights saved as safetensors (a tiny:NAME pipeline is
    named, not saved)."""
    from vidgen.models import finishers

    if arch == "kandinsky6-sr":
        return Path("tiny:kandinsky6-sr")
    path = folder / f"{index}.safetensors"
    if isinstance(arch, tuple):
        import torch
        from safetensors.torch import save_file
        from spandrel.architectures.SPAN import SPAN

        torch.manual_seed(0)
        model = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=arch[1], upscale=arch[2])
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        return path
    return finishers.save_tiny(step, path, arch=arch)


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

    tiled = {} if str(weights).startswith("tiny:") else {"tile": 512}
    spec = FinishStep(step=step, model=str(weights), **({"by": "x2"} if step == "interpolate" else tiled))
    request = refinish.Request(clip, spec, str(out), True, False, "cpu")
    start = time.perf_counter()
    done = refinish.run(request)
    return time.perf_counter() - start, done.record["output"]["frames"]


def _direct(step: str, weights: Path, clip: Path) -> tuple[float, int]:
    import numpy as np

    from vidgen.io import media
    from vidgen.models import finishers, rife, upscalers

    frames = np.stack(list(media.frames(clip)))  # decoded before the clock starts
    if str(weights) == "tiny:kandinsky6-sr":
        return _direct_pipeline(frames)
    if str(weights).endswith(".safetensors") and _is_spandrel(weights):
        return _direct_spandrel(weights, frames)
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


def _is_spandrel(weights: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        return any(name.startswith("conv_1.") for name in handle.keys())  # noqa: SIM118 (not iterable)


def _direct_spandrel(weights: Path, frames: Any) -> tuple[float, int]:
    """spandrel's own loader and its model on each frame, as its README shows."""
    import spandrel
    import torch

    start = time.perf_counter()
    model = spandrel.ModelLoader().load_from_file(str(weights)).eval()
    with torch.inference_mode():
        for frame in frames:
            image = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0
            (model(image)[0].clamp(0, 1) * 255).round().byte()
    return time.perf_counter() - start, len(frames)


def _direct_pipeline(frames: Any) -> tuple[float, int]:
    """Kandinsky6SRPipeline.from_pretrained on the tiny folder, called on the clip."""
    import numpy as np
    import torch
    from diffusers import Kandinsky6SRPipeline

    from vidgen.models.loader import locate

    start = time.perf_counter()
    pipe = Kandinsky6SRPipeline.from_pretrained(locate("tiny:kandinsky6-sr")[1])
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        pipe(video=[frames.astype(np.float32) / 255], resolution_scale=2, num_inference_steps=4,
             generator=torch.Generator().manual_seed(0), output_type="np")  # fmt: skip
    return time.perf_counter() - start, len(frames)


def measure(runs: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        os.environ["VIDGEN_CACHE"] = str(folder / "cache")
        for name, step, arch, frames, height, width in _cases():
            weights = _weights(folder, len(rows), step, arch)
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
        "architecture (published key names); interpolation x2, per-frame upscaling in 512-pixel tiles.",
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
