"""Measure `vidgen gallery` over many outputs: seconds, page size, posters and peak memory.

One real output is made with the tiny random-weight CogVideoX at 832x480 (9 frames of noise, the
hardest frames to compress and decode), then copied N times (default 1000) into one folder, each
copy with its own sidecar (its own seed and file name). `vidgen gallery` runs on it as a fresh
process, timed:

- first run: no page and no posters yet; posters come from the sidecars (`output.poster`);
- again: the page rewritten with the posters already there (what `batch --gallery` does after
  every job);
- older outputs: the same first run with `output.poster` taken out of every sidecar, as vidgen
  wrote them before posters were recorded: every first frame is decoded.

Peak memory is the largest resident set of the gallery process and the ffmpeg processes it ran
(`os.wait4`). Prints a Markdown table; with --write, also puts it into benchmarks/README.md
between the gallery markers. Everything is made in a temporary folder (about 1 GB for 1000
copies) that is removed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

PROMPT = "a red fox running through fresh snow"
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- gallery:start -->", "<!-- gallery:end -->"
PAGE_LIMIT = 5 << 20  # what issue 26 asks of 1000 outputs
SECONDS_LIMIT = 10.0


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes: the process or any child it waited for) of a command."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.seek(0)
            sys.exit(f"failed with exit code {code}: {' '.join(cmd)}\n{log.read().decode(errors='replace')}")
    return elapsed, usage.ru_maxrss * 1024


def copies(one: Path, folder: Path, count: int) -> None:
    """`count` copies of the output `one` (NAME.mp4 + NAME.json) in `folder`, each its own seed."""
    video = next(one.glob("*.mp4"))
    record = json.loads(video.with_suffix(".json").read_text())
    folder.mkdir()
    for index in range(count):
        stem = f"t2v-a-red-fox-{index}"
        shutil.copyfile(video, folder / f"{stem}.mp4")
        record["seed"] = index
        record["output"]["path"] = str(folder / f"{stem}.mp4")
        (folder / f"{stem}.json").write_text(json.dumps(record, indent=2))


def strip_posters(folder: Path) -> None:
    for sidecar in folder.glob("*.json"):
        record = json.loads(sidecar.read_text())
        record["output"].pop("poster", None)
        sidecar.write_text(json.dumps(record, indent=2))


def size(path: Path) -> int:
    if path.is_dir():
        return sum(item.stat().st_size for item in path.iterdir())
    return path.stat().st_size


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = f" (load average {os.getloadavg()[0]:.1f} when it started)"
    except OSError:
        load = ""
    return (
        f"{cpu}, {os.cpu_count()} cores{load}; Python {platform.python_version()}, "
        f"imageio-ffmpeg {version('imageio-ffmpeg')}, Pillow {version('pillow')}; {datetime.date.today().isoformat()}"
    )


def write_readme(section: str) -> None:
    block = f"{START}\n{section}\n{END}"
    text = README.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    README.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=int, default=1000, help="copies in the folder (default: 1000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each case (default: 3)")
    parser.add_argument("--write", action="store_true", help="also write the results into benchmarks/README.md")
    args = parser.parse_args()
    if args.runs < 1 or args.outputs < 1:
        parser.error("--runs and --outputs must be at least 1")

    py = sys.executable
    machine_line = machine()
    with tempfile.TemporaryDirectory(prefix="vidgen-gallery-") as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "VIDGEN_CACHE": str(tmp / "cache")}
        print("making one 832x480 output with tiny CogVideoX", file=sys.stderr)
        options = ["--preset", "tiny-cogvideox", "--width", "832", "--height", "480", "--seed", "1"]
        run([py, "-m", "vidgen", "t2v", PROMPT, *options, "--out", str(tmp / "one") + "/", "--quiet"], env)
        runs = tmp / "runs"
        copies(tmp / "one", runs, args.outputs)
        gallery = [py, "-m", "vidgen", "gallery", str(runs)]
        page, posters = runs / "index.html", runs / "index.posters"

        def first() -> tuple[float, int]:
            page.unlink(missing_ok=True)
            shutil.rmtree(posters, ignore_errors=True)
            return run(gallery, env)

        results: dict[str, list[tuple[float, int]]] = {"first": [], "again": [], "older": []}
        for index in range(args.runs):
            print(f"run {index + 1}/{args.runs}", file=sys.stderr)
            results["first"].append(first())
            results["again"].append(run(gallery, env))
        sizes = {"page": size(page), "posters": size(posters)}
        strip_posters(runs)
        for index in range(args.runs):
            print(f"older outputs, run {index + 1}/{args.runs}", file=sys.stderr)
            results["older"].append(first())
        sizes["older posters"] = size(posters)

    def cell(case: str) -> tuple[float, float]:
        seconds = statistics.median(seconds for seconds, _ in results[case])
        return seconds, max(rss for _, rss in results[case]) / 2**20

    mib = 2**20
    rows = [
        ("first run: posters from the sidecars", *cell("first"), sizes["page"] / mib, sizes["posters"] / mib),
        ("again: posters already there", *cell("again"), sizes["page"] / mib, sizes["posters"] / mib),
        (
            "first run, older outputs: every first frame decoded",
            *cell("older"),
            sizes["page"] / mib,
            sizes["older posters"] / mib,
        ),
    ]
    lines = [
        f"| `vidgen gallery` over {args.outputs} outputs of 832x480 | median seconds | peak RSS MiB | page MiB "
        "| posters MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {what} | {sec:.2f} | {rss:.0f} | {pg:.2f} | {pst:.1f} |" for what, sec, rss, pg, pst in rows]
    met = sizes["page"] < PAGE_LIMIT and cell("first")[0] < SECONDS_LIMIT
    section = "\n\n".join(
        [
            "\n".join(lines),
            f"Medians of {args.runs} runs, each a fresh process; peak RSS is the largest of the gallery "
            "process and its ffmpeg children over those runs. Target (issue 26): a page under "
            f"{PAGE_LIMIT >> 20} MB in under {SECONDS_LIMIT:.0f} s for the first run: "
            f"{'met' if met else 'NOT met'}.",
            f"Machine: {machine_line}.",
        ]
    )
    print(section)
    if args.write:
        write_readme(section)


if __name__ == "__main__":
    main()
