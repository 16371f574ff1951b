"""Time and peak memory of each memory/speed option that runs on a CPU, against the plain run.

Every row is `vidgen` on a tiny random-weight model (no download, no GPU), run in a fresh process
so its peak resident memory is its own; the figures come from the sidecar each run writes
(`timings.denoise + timings.decode` and `peak_memory_bytes`). Rows are alternated over several
rounds and the medians reported as ratios against the family's plain run from the same
invocation. With --write the table replaces the one in benchmarks/README.md between the
optimizations markers.

Tiny models have a few thousand parameters, so these ratios show what each option costs in
overhead (hooks, casts, extra passes), not what it saves on a real model: the memory side of a
real model is what `vidgen t2v --dry-run --memory auto` estimates, and what
benchmarks/gpu_memory.py measures on a CUDA machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- optimizations:start -->", "<!-- optimizations:end -->"
# (label, command, preset, extra args): the first row of each preset is its baseline.
ROWS: list[tuple[str, str, str, list[str]]] = [
    ("plain", "t2v", "tiny-cogvideox", []),
    ("--vae-tiling", "t2v", "tiny-cogvideox", ["--vae-tiling"]),
    ("--fp8-storage", "t2v", "tiny-cogvideox", ["--fp8-storage"]),
    ("--cache pab", "t2v", "tiny-cogvideox", ["--cache", "pab"]),
    ("--cache faster", "t2v", "tiny-cogvideox", ["--cache", "faster"]),
    ("--quantize int8", "t2v", "tiny-cogvideox", ["--quantize", "int8"]),
    ("--quantize fp8", "t2v", "tiny-cogvideox", ["--quantize", "fp8"]),
    ("--compile", "t2v", "tiny-cogvideox", ["--compile"]),
    ("plain", "t2v", "tiny-modelscope", []),
    ("--vae-slicing", "t2v", "tiny-modelscope", ["--vae-slicing"]),
    ("--forward-chunking", "t2v", "tiny-modelscope", ["--forward-chunking"]),
    ("--attention-slicing", "t2v", "tiny-modelscope", ["--attention-slicing"]),
    ("plain", "animate", "tiny-animatediff", []),
    ("--decode-chunk 1", "animate", "tiny-animatediff", ["--decode-chunk", "1"]),
    ("--fp8-storage", "animate", "tiny-animatediff", ["--fp8-storage"]),
]
STEPS = "8"


def run_once(command: str, preset: str, extra: list[str], folder: Path, env: dict[str, str]) -> tuple[float, int]:
    out = folder / "bench.mp4"
    args = [sys.executable, "-m", "vidgen", command, "a red fox in the snow", "--preset", preset]
    args += ["--seed", "1", "--steps", STEPS, "--out", str(out), "--overwrite", "--quiet", *extra]
    subprocess.run(args, check=True, capture_output=True, env=env)
    record = json.loads(out.with_suffix(".json").read_text())
    seconds = record["timings"]["denoise"] + record["timings"]["decode"]
    return seconds, record["peak_memory_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds over all rows (medians are reported)")
    parser.add_argument("--write", action="store_true", help="replace the table in benchmarks/README.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        env = {**os.environ, "VIDGEN_CACHE": str(folder / "cache"), "HF_HUB_OFFLINE": "1"}
        # Warm-up: builds the tiny models and compiles once, outside the measurements.
        for _label, command, preset, extra in ROWS:
            run_once(command, preset, extra, folder, env)
        times: dict[int, list[float]] = {i: [] for i in range(len(ROWS))}
        peaks: dict[int, list[int]] = {i: [] for i in range(len(ROWS))}
        for _ in range(args.runs):
            for index, (_label, command, preset, extra) in enumerate(ROWS):
                seconds, peak = run_once(command, preset, extra, folder, env)
                times[index].append(seconds)
                peaks[index].append(peak)
    lines = [
        "| family (tiny) | option | denoise+decode s | time ratio | peak RSS MiB | RSS ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    base = 0
    for index, (label, _command, preset, _extra) in enumerate(ROWS):
        if label == "plain":
            base = index
        seconds, peak = statistics.median(times[index]), statistics.median(peaks[index])
        ratio_t = seconds / statistics.median(times[base])
        ratio_m = peak / statistics.median(peaks[base])
        lines.append(
            f"| {preset.removeprefix('tiny-')} | {label} | {seconds:.3f} | {ratio_t:.2f} | "
            f"{peak / 2**20:.0f} | {ratio_m:.2f} |"
        )
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines += [
        "",
        f"Medians of {args.runs} rounds, {STEPS} steps each, every run a fresh process; ratios against the "
        "family's plain row of the same invocation.",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, torch {version('torch')}, "
        f"diffusers {version('diffusers')}, torchao {version('torchao')}; {datetime.date.today().isoformat()}.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        text = README.read_text(encoding="utf-8")
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        README.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
