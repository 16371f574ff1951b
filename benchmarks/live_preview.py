"""What --live-preview costs: each tiny model that has TAEHV weights published for its family, run
in one process with its pipeline loaded once, in rounds that alternate: no previews, previews
every 2 steps decoded by the model's own VAE, by TAEHV weights of the tiny model's scale, and by
TAEHV weights of the published size (random weights of the published shapes: no download).

With --real-size it also times the decoders alone at a real model's size, where no step can be
run on a CPU: the Wan 2.1 VAE (diffusers' AutoencoderKLWan defaults, its published architecture,
random weights) decoding 17 frames of 240x416 whole, at half the latent size (the preview
without TAEHV weights), and TAEHV of the published widths decoding one frame per latent frame.

Per configuration: the median denoising seconds (previews included: they run between steps), the
ratio against the run without previews of the same invocation, the median seconds of one preview
(decode, WebP encode, write), and its share of a step: a preview's seconds over the steps between
two previews, against one plain step. With --write, the table goes into benchmarks/README.md
between the live-preview markers. Everything vidgen builds goes to a temporary VIDGEN_CACHE.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- live-preview:start -->", "<!-- live-preview:end -->"
EVERY = 2
# (preset, latent channels of its tiny VAE): the tiny models of families with published TAEHV weights.
FAMILIES = [("tiny-wan", 16), ("tiny-cogvideox", 4), ("tiny-ltx2", 4)]
# TAEHV's published decoder widths, and a tiny model's scale of them.
PUBLISHED, TINY = (256, 128, 64, 64), (16, 16, 8, 8)
# vidgen.run.live.AUTO_FIRST as shipped, kept before a configuration changes it.
SHIPPED: dict[str, float] = {}


def _decoder(folder: Path, channels: int, widths: tuple[int, ...]) -> Path:
    from safetensors.torch import save_file

    from vidgen.models import taehv

    path = folder / f"taehv-{channels}-{widths[0]}.safetensors"
    arch = taehv.Arch(channels, widths, (1, 2, 2), 1)  # type: ignore[arg-type]
    save_file({k: v.contiguous() for k, v in taehv.random_weights(arch).items()}, str(path))
    return path


def _configs(folder: Path, channels: int) -> dict[str, dict[str, Any]]:
    """Configuration name -> the output and model layers that make it."""
    return {
        "no previews": {},
        "VAE, every 2": {"output": {"live_preview": EVERY}},
        f"TAEHV {TINY}, every 2": {
            "output": {"live_preview": EVERY},
            "model": {"preview_decoder": str(_decoder(folder, channels, TINY))},
        },
        f"TAEHV {PUBLISHED}, every 2": {
            "output": {"live_preview": EVERY},
            "model": {"preview_decoder": str(_decoder(folder, channels, PUBLISHED))},
        },
        # The bare --live-preview: every 2 steps while previews take under a tenth of the run, the
        # first after a second of denoising; "first at once" drops that wait (live.AUTO_FIRST = 0),
        # to show what the share alone does on runs shorter than a second.
        "VAE, auto": {"output": {"live_preview": "auto"}},
        f"TAEHV {TINY}, auto": {
            "output": {"live_preview": "auto"},
            "model": {"preview_decoder": str(_decoder(folder, channels, TINY))},
        },
        "VAE, auto, first at once": {"output": {"live_preview": "auto"}, "first": 0.0},
        f"TAEHV {TINY}, auto, first at once": {
            "output": {"live_preview": "auto"},
            "model": {"preview_decoder": str(_decoder(folder, channels, TINY))},
            "first": 0.0,
        },
    }


def _run(preset: str, layer: dict[str, Any], steps: int, out: Path, loaded: Any) -> tuple[dict[str, Any], Any]:
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer
    from vidgen.run import generate, live

    layer = dict(layer)
    SHIPPED.setdefault("first", live.AUTO_FIRST)
    live.AUTO_FIRST = layer.pop("first", SHIPPED["first"])
    base = {
        "inputs": {"prompt": "a red fox running through fresh snow"},
        "sampling": {"seed": 1, "num_inference_steps": steps},
        "output": {"path": str(out), "overwrite": True},
    }
    data = {key: {**base.get(key, {}), **layer.get(key, {})} for key in {*base, *layer}}
    plan = generate.plan(resolve("t2v", [preset], [Layer("bench", data)], families.defaults_layer))
    result = generate.execute(plan, loaded=loaded)[0]
    return result.record, result.loaded


def measure(runs: int, steps: int) -> list[list[str]]:
    """The table's rows: every family's configurations, measured in alternating rounds."""
    rows = []
    work = Path(tempfile.mkdtemp(prefix="vidgen-live-preview-"))
    for preset, channels in FAMILIES:
        configs = _configs(work, channels)
        wall: dict[str, list[float]] = {name: [] for name in configs}
        on_run: dict[str, list[float]] = {name: [] for name in configs}
        beside: dict[str, list[float]] = {name: [] for name in configs}
        written: dict[str, list[int]] = {name: [] for name in configs}
        loaded = None
        for round_ in range(runs + 1):  # round 0 warms up (loading, first calls)
            for name, layer in configs.items():
                record, loaded = _run(preset, layer, steps, work / f"{preset}.mp4", loaded)
                if not round_:
                    continue
                timings = record["timings"]
                # The whole call: denoising, the decode, and the wait for the last preview.
                wall[name].append(timings["denoise"] + timings["decode"])
                shown = record["output"].get("live_preview")
                if shown and shown["written"]:
                    on_run[name].append(timings["live_preview"] / shown["written"])
                    beside[name].append(timings["live_preview_beside"] / shown["written"])
                    written[name].append(shown["written"])
        plain = statistics.median(wall["no previews"])
        step = plain / steps  # a step, with the decode's share spread over the steps: the cost is per step
        for name in configs:
            seconds = statistics.median(wall[name])
            if not on_run[name]:
                ratio, added = f"{seconds / plain:.2f}", f"{(seconds - plain) / steps / step:.0%}"
                none = f"0 of {steps // EVERY}" if name != "no previews" else "-"
                rows.append([preset, name, f"{seconds:.3f}", ratio, none, "-", "-", added if none != "-" else "-"])
                continue
            added = (seconds - plain) / steps
            rows.append(
                [
                    preset,
                    name,
                    f"{seconds:.3f}",
                    f"{seconds / plain:.2f}",
                    f"{statistics.median(written[name]):.0f} of {steps // EVERY}",
                    f"{statistics.median(on_run[name]) * 1e3:.1f}",
                    f"{statistics.median(beside[name]) * 1e3:.1f}",
                    f"{added / step:.0%}",
                ]
            )
    return rows


def real_size() -> list[list[str]]:
    """Seconds of each decoder on the same latents of a real Wan 2.1 size (one run each: minutes)."""
    import time

    import torch
    from diffusers import AutoencoderKLWan

    from vidgen.families.base import halved
    from vidgen.models import taehv

    vae = AutoencoderKLWan().eval()
    arch = taehv.Arch(16, PUBLISHED, (1, 2, 2), 1)  # type: ignore[arg-type]
    tiny = taehv.build(arch, taehv.random_weights(arch), upscale_time=False)
    latents = torch.randn(1, 16, 5, 30, 52)  # 17 frames of 240x416
    runs = [
        ("Wan 2.1 VAE, whole (the video's own decode)", lambda: vae.decode(latents).sample),
        ("Wan 2.1 VAE at half the latent size (preview without TAEHV)", lambda: vae.decode(halved(latents)).sample),
        (f"TAEHV {PUBLISHED}, one frame per latent frame (preview)", lambda: tiny.decode(latents)),
    ]
    rows, first = [], None
    with torch.no_grad():
        for name, decode in runs:
            start = time.perf_counter()
            frames = decode()
            seconds = time.perf_counter() - start
            first = first or seconds
            shape = "x".join(str(side) for side in frames.shape)
            rows.append([name, shape, f"{seconds:.2f}", f"{seconds / first:.3f}"])
    return rows


REAL_HEAD = "| decoder, 5 latent frames of 30x52 |"


def real_table(rows: list[list[str]]) -> str:
    head = [f"{REAL_HEAD} output | seconds | ratio |", "| --- | --- | ---: | ---: |"]
    return "\n".join([*head, *("| " + " | ".join(row) + " |" for row in rows)])


def table(rows: list[list[str]], runs: int, steps: int, threads: int) -> str:
    head = [
        "| model | previews | run s | ratio | written | ms on the run | ms beside | added per step |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    body = ["| " + " | ".join(row) + " |" for row in rows]
    note = (
        f"Medians of {runs} rounds of {steps} steps after a warm-up round, one process, the pipeline loaded "
        f"once, torch on {threads} thread(s). Run s: the pipeline call, denoising and decode, with the wait for "
        "the last preview; ratio against `no previews` of the same invocation. Written: previews written of those "
        "due (a newer one replaces one still waiting). Ms on the run: one preview's time between two steps (taking "
        "the estimate and decoding it); ms beside: on the preview thread while the next steps run (the WebP "
        "and the write). Added per step: the run's extra seconds over its steps, against a plain step."
    )
    machine = (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}, torch "
        f"{version('torch')}, diffusers {version('diffusers')}; {datetime.date.today().isoformat()}."
    )
    return "\n".join([*head, *body, "", note, "", machine])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps of each run")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--real-size", action="store_true", help="also time the decoders at a real size (minutes)")
    parser.add_argument("--write", action="store_true", help="put the table into benchmarks/README.md")
    args = parser.parse_args()
    os.environ["VIDGEN_CACHE"] = tempfile.mkdtemp(prefix="vidgen-bench-cache-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(tempfile.mkdtemp(prefix="vidgen-bench-"))
    text = table(measure(args.runs, args.steps), args.runs, args.steps, torch.get_num_threads())
    readme = README.read_text()
    before, _, rest = readme.partition(START)
    kept, _, after = rest.partition(END)
    if args.real_size:
        text += "\n\n" + real_table(real_size())
    elif REAL_HEAD in kept:  # the decoders at a real size take minutes: kept from the last --real-size
        text += "\n\n" + REAL_HEAD + kept.split(REAL_HEAD, 1)[1].rstrip("\n")
    print(text)
    if args.write:
        README.write_text(f"{before}{START}\n{text}\n{END}{after}")


if __name__ == "__main__":
    sys.exit(main())
