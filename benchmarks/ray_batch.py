"""12 tiny jobs: `vidgen batch --ray local --workers 2` against one `vidgen batch` process.

Not a test: it prints (and with --write records in benchmarks/README.md) the wall time of each
and their ratio. Each run is a fresh process into a fresh --out, after an untimed warm-up that
builds the tiny model into a temporary VIDGEN_CACHE. Ray's own start-up (its processes, then two
workers that each import torch and diffusers) is part of the Ray figure, as it is for a user.

    python benchmarks/ray_batch.py --runs 3 --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

README = Path(__file__).with_name("README.md")
START, END = "<!-- ray:start -->", "<!-- ray:end -->"


def _batch(folder: Path, out: str, extra: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "vidgen", "batch", "jobs.jsonl", "--out", out, "--quiet", *extra],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"vidgen batch {' '.join(extra)} failed:\n{result.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="Record the results in benchmarks/README.md.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "VIDGEN_CACHE": str(folder / "cache"), "HF_HUB_OFFLINE": "1"}
        jobs = [{"prompt": f"scene number {n}", "preset": "tiny-cogvideox", "steps": 2} for n in range(12)]
        (folder / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
        _batch(folder, "warm", [], env)  # builds the tiny model
        one, ray = [], []
        for run in range(args.runs):
            one.append(_batch(folder, f"one{run}", [], env))
            ray.append(_batch(folder, f"ray{run}", ["--ray", "local", "--workers", "2"], env))
    rows = [
        ("one `vidgen batch` process", statistics.median(one)),
        ("`--ray local --workers 2`", statistics.median(ray)),
    ]
    base = rows[0][1]
    import diffusers
    import ray as ray_module
    import torch

    lines = [
        "| 12 tiny CogVideoX jobs (9 frames, 16x16, 2 steps) | median seconds | ratio |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {seconds:.2f} | {seconds / base:.2f} |" for name, seconds in rows),
        "",
        f"Medians of {args.runs} runs, each a fresh process into a fresh --out. "
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"ray {ray_module.__version__}; {time.strftime('%Y-%m-%d')}.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        text = README.read_text()
        block = f"{START}\n{table}\n{END}"
        text = (
            re.sub(f"{re.escape(START)}.*?{re.escape(END)}", block, text, flags=re.S)
            if START in text
            else text + "\n" + block + "\n"
        )
        README.write_text(text)


if __name__ == "__main__":
    main()
