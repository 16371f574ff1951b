"""Measure what a warm `vidgen serve` saves a script that calls `vidgen t2v` once per line.

Ten tiny text-to-video jobs (tiny random-weight CogVideoX, 9 frames of 16x16, 2 steps, CPU), each
a different prompt, run three ways and timed with the wall clock of the whole thing:
(a) one `vidgen batch` of the ten (one process, one model load): the reference;
(b) ten `vidgen t2v` calls in a shell loop while a `vidgen serve` is up (each call is a light
    client: Python and vidgen's CLI, no torch; the server keeps the model loaded);
(c) the same loop with `--no-server`, each call a fresh process that imports torch and diffusers
    and loads the model (what a loop costs without a server; timed in --plain-runs rounds only).
The server is started (and warmed with one job) before the timing, as a user's would be. Each way
runs in a fresh output folder; the order alternates between rounds so drift cancels out. Prints the
medians as a Markdown table; with --write, also puts it into benchmarks/README.md between the serve
markers. Everything goes to a temporary VIDGEN_CACHE and state folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import machine, run  # noqa: E402

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- serve:start -->", "<!-- serve:end -->"
PROMPTS = [f"a red fox running through fresh snow, take {n}" for n in range(1, 11)]
OPTIONS = ["--preset", "tiny-cogvideox", "--frames", "9", "--height", "16", "--width", "16", "--steps", "2"]


def write_readme(section: str) -> None:
    block = f"{START}\n{section}\n{END}"
    text = README.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    README.write_text(text)


def loop(py: str, out: Path, extra: list[str]) -> str:
    """The shell loop a user writes: one `vidgen t2v` per prompt, seeds 1..10."""
    lines = [
        shlex.join([py, "-m", "vidgen", "t2v", prompt, *OPTIONS, "--seed", str(n), "--out", f"{out}/", *extra])
        for n, prompt in enumerate(PROMPTS, start=1)
    ]
    return "set -e\n" + "\n".join(f"{line} > /dev/null" for line in lines)


def timed_shell(script: str, env: dict[str, str]) -> float:
    return run(["bash", "-c", script], env)[0]


def start_server(py: str, env: dict[str, str], folder: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [py, "-m", "vidgen", "serve"], cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while subprocess.run([py, "-m", "vidgen", "serve", "--status"], env=env, capture_output=True).returncode != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            sys.exit("vidgen serve did not start")
        time.sleep(0.2)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed rounds (default: 3)")
    parser.add_argument(
        "--plain-runs", type=int, default=1, help="rounds that also time the loop without a server (slow; default: 1)"
    )
    parser.add_argument("--write", action="store_true", help="also write the results into benchmarks/README.md")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="vidgen-bench-", dir="/tmp") as tmp_name:
        tmp = Path(tmp_name)
        env = {
            **os.environ,
            "VIDGEN_CACHE": str(tmp / "cache"),
            "VIDGEN_SERVER_SOCKET": str(tmp / "s.sock"),
            "VIDGEN_SERVER_STATE": str(tmp / "state"),
        }
        env.pop("VIDGEN_NO_SERVER", None)
        run([py, "-c", "from vidgen.models import tiny; tiny.ensure('cogvideox')"], env)
        manifest = tmp / "ten.jsonl"
        manifest.write_text(
            "".join(
                json.dumps({"prompt": prompt, "frames": 9, "height": 16, "width": 16, "steps": 2, "seed": n}) + "\n"
                for n, prompt in enumerate(PROMPTS, start=1)
            )
        )
        server = start_server(py, env, tmp)
        try:
            ways = {
                "batch": lambda out: (
                    shlex.join([py, "-m", "vidgen", "batch", str(manifest), *OPTIONS[:2], "--out", str(out), "--quiet"])
                    + " > /dev/null"
                ),
                "served": lambda out: loop(py, out, []),
            }
            for name, script in ways.items():  # untimed warm-up: the server's first load, file-system cache
                timed_shell(script(tmp / f"warmup-{name}"), env)
            if args.plain_runs > 0:
                ways["plain"] = lambda out: loop(py, out, ["--no-server"])
            times: dict[str, list[float]] = {name: [] for name in ways}
            for i in range(args.runs):
                order = [(name, script) for name, script in ways.items() if name != "plain" or i < args.plain_runs]
                for name, script in order if i % 2 == 0 else reversed(order):
                    print(f"round {i + 1}/{args.runs}: {name}", file=sys.stderr)
                    times[name].append(timed_shell(script(tmp / f"{name}-{i}"), env))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)

    med = {name: statistics.median(values) for name, values in times.items()}
    rows = [
        ("`vidgen batch` of the ten (one process, one load)", med["batch"], 1.0),
        ("ten `vidgen t2v` calls in a shell loop, `vidgen serve` up", med["served"], med["served"] / med["batch"]),
    ]
    if "plain" in med:
        rows.append(("the same loop with `--no-server`", med["plain"], med["plain"] / med["batch"]))
    lines = ["| how | median seconds | ratio |", "| --- | ---: | ---: |"]
    lines += [f"| {what} | {seconds:.2f} | {ratio:.2f} |" for what, seconds, ratio in rows]
    section = "\n\n".join(
        [
            "\n".join(lines),
            f"Ratio: against the batch. Medians of {args.runs} rounds after a warm-up round (the loop without a "
            f"server: {min(args.plain_runs, args.runs)} round(s)); tiny CogVideoX, 9 frames of 16x16, 2 steps, ten "
            "prompts, seeds 1-10.",
            f"Machine: {machine()}.",
        ]
    )
    print(section)
    if args.write:
        write_readme(section)


if __name__ == "__main__":
    main()
