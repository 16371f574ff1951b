"""Community checkpoint files through vidgen and through plain diffusers, in one run.

The tiny random-weight Wan 2.1 transformer is written as the files people download (GGUF Q8_0 and
Q4_0 in the original key layout, ComfyUI bf16 safetensors), then the same job (9 frames of 16x16,
2 steps, CPU) runs as a plain diffusers script loading the file the documented way
(`from_single_file(file, config=..., subfolder="transformer")`, GGUFQuantizationConfig for GGUF)
and as `vidgen t2v --preset tiny-wan --transformer FILE`, alternated, each a fresh process. Prints
median wall seconds and peak resident memory (the process's maxrss) with ratios against plain
diffusers on the same file and against the bf16 file; with --write, also into
benchmarks/README.md between the checkpoint markers. Uses a temporary VIDGEN_CACHE.

A tiny model has a few thousand parameters: the ratios show what loading a file costs in
overhead (header reading, checking, hashing), not what a 14B GGUF saves on a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- checkpoints:start -->", "<!-- checkpoints:end -->"
PROMPT = "a red fox running through fresh snow"

PLAIN = """\
import sys

import torch
from diffusers import GGUFQuantizationConfig, WanPipeline, WanTransformer3DModel
from diffusers.utils import export_to_video

from vidgen.families.wan import NEGATIVE

folder, file, out = sys.argv[1:4]
gguf = file.endswith(".gguf")
extra = {{"quantization_config": GGUFQuantizationConfig(compute_dtype=torch.float32)}} if gguf else {{}}
transformer = WanTransformer3DModel.from_single_file(
    file, config=folder, subfolder="transformer", torch_dtype=torch.float32, **extra
)
pipe = WanPipeline.from_pretrained(folder, transformer=transformer, dtype=torch.float32, use_safetensors=True)
frames = pipe(
    prompt={prompt!r}, negative_prompt=NEGATIVE, num_frames=9, height=16, width=16, num_inference_steps=2,
    guidance_scale=5.0, max_sequence_length=16, output_type="np", generator=torch.Generator("cpu").manual_seed(1),
).frames[0]
export_to_video(frames, out, fps=16)
"""


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="put the table into benchmarks/README.md")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "VIDGEN_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        files = ["tiny-wan_bf16.safetensors", "tiny-wan-Q8_0.gguf", "tiny-wan-Q4_0.gguf"]
        paths = [str(work / name) for name in files]
        subprocess.run([sys.executable, str(ROOT / "tests" / "community.py"), *paths], env=env, check=True)
        folder = str(next((work / "cache" / "tiny").glob("wan-v*")))
        script = work / "plain.py"
        script.write_text(PLAIN.format(prompt=PROMPT))
        rows: dict[str, dict[str, list[tuple[float, float]]]] = {name: {"plain": [], "vidgen": []} for name in files}
        for run in range(options.runs + 1):  # the first round warms the file system and caches
            for name, path in zip(files, paths, strict=True):
                plain = timed([sys.executable, str(script), folder, path, str(work / "p.mp4")], env)
                ours = timed(
                    [sys.executable, "-m", "vidgen", "t2v", PROMPT, "--preset", "tiny-wan", "--seed", "1",
                     "--transformer", path, "--out", str(work / "v.mp4"), "--overwrite", "-q"],
                    env,
                )  # fmt: skip
                if run:
                    rows[name]["plain"].append(plain)
                    rows[name]["vidgen"].append(ours)
    table = render(rows, options.runs)
    print(table)
    if options.write:
        text = README.read_text()
        before, _, rest = text.partition(START)
        _, _, after = rest.partition(END)
        README.write_text(f"{before}{START}\n{table}\n{END}{after}")


def render(rows: dict[str, dict[str, list[tuple[float, float]]]], runs: int) -> str:
    def median(samples: list[tuple[float, float]], index: int) -> float:
        return statistics.median(sample[index] for sample in samples)

    base = rows["tiny-wan_bf16.safetensors"]
    lines = [
        "| file | how | median seconds | vs plain | vs bf16 | peak MiB | vs plain | vs bf16 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, by in rows.items():
        for how in ("plain", "vidgen"):
            seconds, memory = median(by[how], 0), median(by[how], 1)
            label = "plain diffusers script" if how == "plain" else "`vidgen t2v --transformer`"
            lines.append(
                f"| `{name}` | {label} | {seconds:.2f} | {seconds / median(by['plain'], 0):.2f} | "
                f"{seconds / median(base[how], 0):.2f} | {memory:.0f} | {memory / median(by['plain'], 1):.2f} | "
                f"{memory / median(base[how], 1):.2f} |"
            )
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    lines += [
        "",
        f"Medians of {runs} runs after a warm-up round, each a fresh process; tiny Wan 2.1, 9 frames of 16x16, "
        "2 steps. `vs plain`: against the plain script on the same file; `vs bf16`: against the same way "
        "of running on the bf16 file.",
        "",
        f"Machine: {machine}; Python {platform.python_version()}, torch {version('torch')}, "
        f"diffusers {version('diffusers')}, gguf {version('gguf')}; {datetime.date.today().isoformat()}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
