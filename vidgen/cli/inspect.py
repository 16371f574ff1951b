"""`vidgen inspect SIDECAR|VIDEO`: how an output was made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vidgen import sidecar


def inspect(
    path: Annotated[Path, typer.Argument(help="A sidecar .json, or a video (its sidecar or embedded metadata).")],
    json_: Annotated[bool, typer.Option("--json", help="Print the whole sidecar as JSON.")] = False,
) -> None:
    """Print how an output was made: prompt, model, seed, settings, versions, timings.

    vidgen inspect outputs/t2v-a-red-fox-running-through-fresh-snow-7.mp4
    """
    data = sidecar.read(path)
    if json_:
        typer.echo(json.dumps(data, indent=2))
        return
    config = data.get("config", {})
    model = data.get("model", {})
    pipeline = data.get("pipeline", {})
    output = data.get("output", {})
    sampling = config.get("sampling", {})
    rows = [
        ("output", output.get("path")),
        ("made", f"{data.get('created_at')} by vidgen {data.get('vidgen_version')}"),
        ("mode", config.get("mode")),
        ("prompt", config.get("inputs", {}).get("prompt")),
        ("negative", config.get("inputs", {}).get("negative_prompt")),
        ("model", f"{model.get('id')} ({model.get('family')}, {model.get('dtype')})"),
        ("revision", model.get("revision")),
        ("pipeline", pipeline.get("class")),
        ("seed", data.get("seed")),
        ("frames", sampling.get("num_frames")),
        ("size", f"{sampling.get('width')}x{sampling.get('height')}"),
        ("steps", sampling.get("num_inference_steps")),
        ("guidance", sampling.get("guidance_scale")),
    ]
    if "format" in output:
        rows.append(
            (
                "file",
                f"{output['format']} {output.get('codec')}, {output['frames']} frames "
                f"{output['width']}x{output['height']} at {output['fps']} fps",
            )
        )
    if "optimizations" in data:
        rows.append(("optimized", ", ".join(data["optimizations"].get("applied", [])) or "none"))
    if "timings" in data:
        rows.append(("seconds", ", ".join(f"{k} {v:.2f}" for k, v in data["timings"].items())))
    if data.get("peak_memory_bytes"):
        rows.append(("peak memory", f"{data['peak_memory_bytes'] / 2**30:.2f} GiB"))
    versions = data.get("versions", {})
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)))
    for key, value in rows:
        if value not in (None, "", "None"):
            typer.echo(f"{key:<12} {value}")
