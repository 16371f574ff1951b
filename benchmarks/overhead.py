"""Measure what vidgen costs on top of plain diffusers.

(a) The same tiny text-to-video job (tiny random-weight CogVideoX and Wan 2.1, 9 frames of 16x16, 2
steps, CPU) run as a plain diffusers script and as `vidgen t2v`, alternated, each run a fresh subprocess so both
pay the import costs. (b) `vidgen --help` against `python -c "import diffusers"`, with
`python -c "import torch"` for reference. Prints the medians as a Markdown table; with --write, also
puts it into benchmarks/README.md between the overhead markers. Everything vidgen builds goes to a
temporary VIDGEN_CACHE, so the benchmark leaves nothing behind.
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
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

PROMPT = "a red fox running through fresh snow"
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- overhead:start -->", "<!-- overhead:end -->"

PLAIN_SCRIPT = """\
import sys

import torch
from diffusers import CogVideoXPipeline
from diffusers.utils import export_to_video

pipe = CogVideoXPipeline.from_pretrained(sys.argv[1], dtype=torch.float32, use_safetensors=True)
out = pipe(
    prompt={prompt!r},
    num_frames=9,
    height=16,
    width=16,
    num_inference_steps=2,
    guidance_scale=6.0,
    max_sequence_length=16,
    num_videos_per_prompt=1,
    output_type="np",
    generator=torch.Generator("cpu").manual_seed(1),
)
export_to_video(out.frames[0], sys.argv[2], fps=8)
"""


# The same job for tiny Wan 2.1: vidgen's family defaults (Wan's negative prompt, guidance 5,
# flow shift 3 as the tiny model ships it), decoded by vidgen from output_type="latent".
WAN_SCRIPT = """\
import sys

import torch
from diffusers import WanPipeline
from diffusers.utils import export_to_video

from vidgen.families.wan import NEGATIVE

pipe = WanPipeline.from_pretrained(sys.argv[1], dtype=torch.float32, use_safetensors=True)
out = pipe(
    prompt={prompt!r},
    negative_prompt=NEGATIVE,
    num_frames=9,
    height=16,
    width=16,
    num_inference_steps=2,
    guidance_scale=5.0,
    max_sequence_length=16,
    output_type="np",
    generator=torch.Generator("cpu").manual_seed(1),
)
export_to_video(out.frames[0], sys.argv[2], fps=16)
"""


def run(cmd: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    """Run `cmd` to completion; return its wall time in seconds and its stdout. Exits on failure."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed with exit code {proc.returncode}: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return elapsed, proc.stdout


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, torch {version('torch')}, "
        f"diffusers {version('diffusers')}; {datetime.date.today().isoformat()}"
    )


def table(rows: Sequence[tuple[str, float, float]]) -> str:
    lines = ["| what | median seconds | ratio |", "| --- | ---: | ---: |"]
    lines += [f"| {what} | {seconds:.2f} | {ratio:.2f} |" for what, seconds, ratio in rows]
    return "\n".join(lines)


def write_readme(section: str) -> None:
    block = f"{START}\n{section}\n{END}"
    if not README.exists():
        README.write_text(f"# Benchmarks\n\n{block}\n")
        return
    text = README.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    README.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command (default: 5)")
    parser.add_argument("--write", action="store_true", help="also write the results into benchmarks/README.md")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="vidgen-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "VIDGEN_CACHE": str(tmp / "cache")}
        models = {}
        for name in ("cogvideox", "wan"):
            _, stdout = run([py, "-c", f"from vidgen.models import tiny; print(tiny.ensure({name!r}))"], env)
            models[name] = stdout.strip().splitlines()[-1]
        scripts = {"cogvideox": tmp / "plain.py", "wan": tmp / "plain_wan.py"}
        scripts["cogvideox"].write_text(PLAIN_SCRIPT.format(prompt=PROMPT))
        scripts["wan"].write_text(WAN_SCRIPT.format(prompt=PROMPT))

        def plain(family: str) -> Callable[[str], list[str]]:
            return lambda name: [py, str(scripts[family]), models[family], str(tmp / f"p{family}{name}.mp4")]

        def vidgen(family: str) -> Callable[[str], list[str]]:
            def command(name: str) -> list[str]:
                options = ["--preset", f"tiny-{family}", "--frames", "9", "--height", "16", "--width", "16"]
                options += ["--steps", "2", "--seed", "1", "--out", str(tmp / f"v{family}{name}.mp4"), "--quiet"]
                return [py, "-m", "vidgen", "t2v", PROMPT, *options]

            return command

        commands = {
            "plain": plain("cogvideox"),
            "vidgen": vidgen("cogvideox"),
            "plain_wan": plain("wan"),
            "vidgen_wan": vidgen("wan"),
            "help": lambda _: [py, "-m", "vidgen", "--help"],
            "diffusers": lambda _: [py, "-c", "import diffusers"],
            "torch": lambda _: [py, "-c", "import torch"],
        }
        for command in commands.values():  # untimed warm-up: file-system cache
            run(command("warmup"), env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(args.runs):
            order = list(commands.items())
            for name, command in order if i % 2 == 0 else reversed(order):  # alternate, so drift cancels out
                print(f"run {i + 1}/{args.runs}: {name}", file=sys.stderr)
                times[name].append(run(command(str(i)), env)[0])

    med = {name: statistics.median(values) for name, values in times.items()}
    rows = [
        ("plain diffusers script, tiny CogVideoX t2v", med["plain"], 1.0),
        ("`vidgen t2v`, same job", med["vidgen"], med["vidgen"] / med["plain"]),
        ("plain diffusers script, tiny Wan 2.1 t2v", med["plain_wan"], 1.0),
        ("`vidgen t2v --preset tiny-wan`, same job", med["vidgen_wan"], med["vidgen_wan"] / med["plain_wan"]),
        ('`python -c "import diffusers"`', med["diffusers"], 1.0),
        ("`vidgen --help`", med["help"], med["help"] / med["diffusers"]),
        ('`python -c "import torch"` (reference)', med["torch"], med["torch"] / med["diffusers"]),
    ]
    section = "\n\n".join(
        [
            table(rows),
            "Ratio: against the plain script for the t2v rows, against `import diffusers` for the others. "
            f"Medians of {args.runs} runs, each a fresh process.",
            f"Machine: {machine()}.",
        ]
    )
    print(section)
    if args.write:
        write_readme(section)


if __name__ == "__main__":
    main()
