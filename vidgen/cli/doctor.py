"""`vidgen doctor`: what this machine offers vidgen."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer

from vidgen.config.settings import cache_dir, user_preset_dir
from vidgen.core.errors import ExitCode

OPTIONAL = {
    "opencv-python-headless": "vidgen control --preprocess canny",
    "controlnet-aux": "vidgen control --preprocess pose|depth",
    "fastapi": "vidgen serve --http",
    "uvicorn": "vidgen serve --http",
}


def _report() -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    report: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    packages = {}
    required = (
        "vidgen",
        "torch",
        "diffusers",
        "transformers",
        "accelerate",
        "peft",
        "imageio-ffmpeg",
        "typer",
        "pydantic",
    )
    for name in required:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
            problems.append(f"{name} is not installed")
    report["packages"] = packages
    # Optional: what they enable, shown so a missing one is found before a run needs it.
    optional = {}
    for name, purpose in OPTIONAL.items():
        try:
            optional[name] = {"version": version(name), "for": purpose}
        except PackageNotFoundError:
            optional[name] = {"version": None, "for": purpose}
    report["optional"] = optional
    try:
        import torch

        cuda = torch.cuda.is_available()
        report["torch"] = {"build": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": cuda}
        report["gpus"] = [
            {
                "index": i,
                "name": torch.cuda.get_device_properties(i).name,
                "vram_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
                "free_gib": round(torch.cuda.mem_get_info(i)[0] / 2**30, 1),
            }
            for i in range(torch.cuda.device_count() if cuda else 0)
        ]
    except ImportError:
        problems.append("torch cannot be imported")
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        first = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout.splitlines()
        report["ffmpeg"] = {"path": exe, "version": first[0] if first else None}
    except Exception as exc:  # any failure here means videos cannot be encoded
        problems.append(f"ffmpeg is unusable: {exc}")
    from huggingface_hub import constants

    report["dirs"] = {
        "vidgen_cache": str(cache_dir()),
        "user_presets": str(user_preset_dir()),
        "hf_hub_cache": constants.HF_HUB_CACHE,
    }
    report["hf_hub_offline"] = bool(constants.HF_HUB_OFFLINE)
    report["server"] = _server()
    report["hf_token_set"] = bool(os.environ.get("HF_TOKEN")) or os.path.exists(constants.HF_TOKEN_PATH)
    return report, problems


def _server() -> dict[str, Any]:
    """The `vidgen serve` that generation commands would use, if one answers."""
    from vidgen.serve import wire

    answer = wire.ask({"op": "status"}, timeout=5.0)
    status = (answer or {}).get("status")
    if not isinstance(status, dict):
        return {"running": False, "socket": str(wire.socket_path())}
    return {"running": True, **status}


def doctor(json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Report torch/CUDA/GPU/VRAM, ffmpeg, package versions and cache folders. Exits 1 if something is broken.

    vidgen doctor --json
    """
    report, problems = _report()
    if json_:
        typer.echo(json.dumps({**report, "problems": problems}, indent=2))
    else:
        typer.echo(f"python         {report['python']} ({report['platform']})")
        for name, value in report["packages"].items():
            typer.echo(f"{name:<14} {value or 'NOT INSTALLED'}")
        for name, info in report["optional"].items():
            typer.echo(f"{'optional':<14} {name} {info['version'] or 'not installed'} ({info['for']})")
        torch_info = report.get("torch", {})
        typer.echo(f"torch build    {torch_info.get('build')} (CUDA {torch_info.get('cuda_build') or 'none'})")
        for gpu in report.get("gpus", []):
            typer.echo(f"gpu {gpu['index']:<10} {gpu['name']}, {gpu['vram_gib']} GiB ({gpu['free_gib']} GiB free)")
        if not report.get("gpus"):
            typer.echo("gpu            none: generation runs on the CPU and will be slow; tiny-* presets take seconds")
        if "ffmpeg" in report:
            typer.echo(f"ffmpeg         {report['ffmpeg']['version']}")
            typer.echo(f"               {report['ffmpeg']['path']}")
        for name, path in report["dirs"].items():
            typer.echo(f"{name:<14} {path}")
        typer.echo(f"hub offline    {report['hf_hub_offline']}")
        server = report["server"]
        if server["running"]:
            loaded = ", ".join(m["model"] for m in server["loaded"]) or "no model"
            where = f"{server['socket']}" + (f", http {server['http']}" if server["http"] else "")
            typer.echo(f"server         vidgen serve (pid {server['pid']}) at {where}: {loaded} loaded")
        else:
            typer.echo(f"server         none at {server['socket']} (`vidgen serve` keeps models loaded)")
        for problem in problems:
            typer.echo(f"problem: {problem}", err=True)
    if problems:
        raise typer.Exit(ExitCode.ERROR)
