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
        ("call", _other_call_kwargs(pipeline.get("call_kwargs", {}))),
        ("setup", ", ".join(f"{c['method']}({_kwargs(c['kwargs'])})" for c in pipeline.get("setup", []))),
    ]
    prompts = config.get("inputs", {}).get("prompts")
    if prompts:
        rows.insert(4, ("prompts", " | ".join(f"{frame}: {text}" for frame, text in prompts.items())))
    extras = [
        ("adapter", (model.get("motion_adapter") or {}).get("id")),
        ("controlnet", (model.get("controlnet") or {}).get("id")),
    ]
    scheduler = model.get("scheduler")
    if scheduler:
        extras.append(("scheduler", f"{scheduler['class']} {_kwargs(scheduler['options'])}".strip()))
    loras = model.get("loras") or []
    extras.append(("loras", ", ".join(f"{lora['source']} x{lora['scale']}" for lora in loras)))
    at = next(i for i, row in enumerate(rows) if row[0] == "pipeline")
    rows[at:at] = extras
    rows[5:5] = _input_rows(data)
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


# call kwargs that have rows of their own, or say nothing about how the video looks
_SHOWN = {"prompt", "negative_prompt", "num_frames", "height", "width", "num_inference_steps", "guidance_scale"}
_PLUMBING = {"output_type", "num_videos_per_prompt"}


def _other_call_kwargs(call: dict) -> str:
    """The family-specific arguments, e.g. motion_bucket_id=127 strength=0.8."""
    return " ".join(f"{key}={value}" for key, value in call.items() if key not in _SHOWN | _PLUMBING)


def _input_rows(data: dict) -> list[tuple[str, str | None]]:
    """One row per input image or video: where it came from and what was done to it."""
    rows: list[tuple[str, str | None]] = []
    recorded = data.get("inputs") or {}
    config_inputs = data.get("config", {}).get("inputs", {})
    for name in ("image", "last_image", "video", "control"):
        record = recorded.get(name)
        if not record:
            rows.append((name, config_inputs.get(name)))
            continue
        size = "x".join(map(str, record["prepared"]["size"]))
        frames = f", {record['frames_used']} of {record['frames_read']} frames" if "frames_used" in record else ""
        detail = f"sha256 {record['sha256'][:12]}, {record['resize']} to {size}{frames}"
        rows.append((name, f"{record['path']} ({detail})"))
    return rows


def _kwargs(kwargs: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in kwargs.items())
