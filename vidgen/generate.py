"""One generation command end to end: plan (no weights) -> load once -> run each seed -> write.

This is the only module that composes the core; the CLI calls `plan` and `execute`.
"""

from __future__ import annotations

import logging
import os
import platform
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidgen import __version__, families, inputs, media, optimize, outputs, sidecar
from vidgen.config import Resolved
from vidgen.errors import WriteError
from vidgen.families.base import Family
from vidgen.runner import NullProgress, Progress

log = logging.getLogger("vidgen")


@dataclass
class Planned:
    seed: int
    path: Path
    sidecar: Path
    control: Path | None = None  # where --save-control writes the control maps


@dataclass
class Plan:
    resolved: Resolved
    family: Family
    device: str
    fmt: str
    codec: str | None
    crf: int | None
    fps: int
    seed_drawn: bool
    items: list[Planned]
    inputs: inputs.Prepared


def plan(resolved: Resolved, read_inputs: bool = True) -> Plan:
    """Everything that can be decided and checked before loading weights, including reading
    and preparing the input image or video (unless `read_inputs` is False: a batch validates
    every job first and reads each job's inputs when it runs)."""
    from vidgen.loader import locate_all, resolve_device

    cfg = resolved.config
    family = families.check(cfg)
    locate_all(cfg, family, build=False)
    device = resolve_device(cfg.optimization.device)
    optimize.check(cfg.optimization, device)
    fmt = outputs.output_format(cfg)
    codec, crf = media.encoding(fmt, cfg.output.codec, cfg.output.crf)
    drawn = cfg.sampling.seed is None
    base = secrets.randbelow(2**32) if drawn else cfg.sampling.seed
    seeds = [base + index for index in range(cfg.sampling.num_videos)]
    paths = outputs.render(cfg, fmt, seeds)
    items = [
        Planned(seed, path, outputs.sidecar_path(path), outputs.control_path(path) if cfg.output.save_control else None)
        for seed, path in zip(seeds, paths, strict=True)
    ]
    if not cfg.output.overwrite:
        for item in items:
            for existing in (item.path, item.sidecar, item.control):
                if existing is None:
                    continue
                if existing.exists():
                    raise WriteError(f"{existing} already exists; pass --overwrite or choose another --out.")
    fps = cfg.output.fps or 8
    prepared = inputs.prepare(cfg, family, fps) if read_inputs else inputs.Prepared(media={}, record={})
    return Plan(resolved, family, device, fmt, codec, crf, fps, drawn, items, prepared)


def _check_writable(items: list[Planned]) -> None:
    """Prove the output folders can be written before spending time on a model, without
    creating anything yet: a failed run leaves no empty folders behind."""
    for folder in sorted({item.path.parent for item in items}):
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        probe = existing / f".vidgen-write-test-{os.getpid()}"
        try:
            if not existing.is_dir():
                raise NotADirectoryError(20, "not a folder")
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise WriteError(f"cannot write to {folder}: {exc.strerror or exc}; choose another --out.") from None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux: platform's answer is the best there is
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(versions, device) blocks of the sidecar."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {"python": platform.python_version(), "vidgen": __version__}
    for package in ("torch", "diffusers", "transformers", "accelerate", "numpy", "imageio-ffmpeg"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    versions["cuda"] = torch.version.cuda
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info = {"type": "cuda", "name": props.name, "vram_bytes": int(props.total_memory)}
    else:
        info = {"type": "cpu", "name": _cpu_name(), "vram_bytes": None}
    return versions, info


def _generator_record(plan: Plan, seed: int) -> dict[str, Any]:
    """How to seed a plain diffusers run to get the same video."""
    record: dict[str, Any] = {"device": plan.device, "seed": seed}
    if plan.family.seeds_global_rng:
        record["torch_manual_seed"] = seed  # call torch.manual_seed(seed) before the pipeline
    return record


def execute(
    plan: Plan,
    progress: Progress | None = None,
    extra: dict[str, Any] | None = None,
    loaded: Any = None,
) -> list[dict[str, Any]]:
    """Load the pipeline once (or use `loaded`, from an earlier job with the same model and
    options), then generate, encode and describe every planned video. `extra` is added to every
    sidecar (e.g. what a replay replayed)."""
    import numpy as np

    from vidgen import loader, runner

    progress = progress or NullProgress()
    cfg = plan.resolved.config
    _check_writable(plan.items)
    for note in plan.inputs.notes:
        log.info(note)
    fresh = loaded is None
    if loaded is None:
        log.info("loading %s (%s) on %s", cfg.model.id, plan.family.title, plan.device)
        loaded = loader.load(cfg, plan.family, plan.device)
    plan.family.check_loaded(loaded.pipe, cfg, plan.inputs.frames)
    versions, device = environment(plan.device)
    results = []
    for item in plan.items:
        call_kwargs = plan.family.call_kwargs(cfg, item.seed, plan.inputs.frames)
        given = {plan.family.media_arg(cfg.mode, name): value for name, value in plan.inputs.media.items()}
        result = runner.run(
            loaded.pipe,
            plan.family,
            cfg,
            call_kwargs,
            media=given,
            steps=plan.family.step_count(cfg, call_kwargs, given),
            seed=item.seed,
            device=plan.device,
            progress=progress,
        )
        for warning in result.warnings:
            log.warning(warning)
        record: dict[str, Any] = {
            "vidgen_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": cfg.model_dump(mode="json"),
            "sources": plan.resolved.sources,
            "seed": item.seed,
            "model": {**loaded.model, "dtype": loaded.dtype},
            "pipeline": {
                "class": type(loaded.pipe).__name__,
                "call_kwargs": call_kwargs,
                # Arguments that are not JSON (the prepared image or frames), and where the
                # sidecar describes them.
                "media_kwargs": {
                    plan.family.media_arg(cfg.mode, name): plan.inputs.sources[name] for name in plan.inputs.media
                },
                # Pipeline methods called once after loading (FreeNoise, FreeInit), in order.
                "setup": loaded.setup,
                "generator": _generator_record(plan, item.seed),
                **({"run": note} if (note := plan.family.run_note(cfg)) else {}),
            },
            "inputs": plan.inputs.record,
            "versions": versions,
            "device": device,
            "optimizations": loaded.optimizations,
            # A pipeline reused from an earlier batch job cost this video no loading time.
            "timings": {"load": loaded.seconds if fresh else 0.0, **result.timings},
            "peak_memory_bytes": result.peak_memory_bytes,
            "warnings": result.warnings,
            "presets": plan.resolved.presets,
            **(extra or {}),
        }
        start = time.perf_counter()
        progress.phase("encode")
        record["output"] = media.write(
            media.to_uint8(result.frames),
            item.path,
            fmt=plan.fmt,
            fps=plan.fps,
            codec=plan.codec,
            crf=plan.crf,
            metadata=sidecar.compact(record),
            overwrite=cfg.output.overwrite,
        )
        record["timings"]["encode"] = round(time.perf_counter() - start, 4)
        if record["output"].get("padded_from"):
            size = "x".join(map(str, record["output"]["padded_from"]))
            log.warning("odd frame size %s was padded by one black row/column for yuv420p.", size)
        if item.control is not None:
            # What guided the video, as a video: edge/pose/depth maps at the output's size.
            maps = media.to_uint8(
                np.stack([np.asarray(frame, dtype=np.float32) / 255 for frame in plan.inputs.media["control"]])
            )
            written = media.write(
                maps,
                item.control,
                fmt=plan.fmt,
                fps=plan.fps,
                codec=plan.codec,
                crf=plan.crf,
                metadata=None,
                overwrite=cfg.output.overwrite,
            )
            record["output"]["control"] = {key: written[key] for key in ("path", "sha256", "frames")}
        media.write_text(sidecar.dumps(record), item.sidecar, overwrite=cfg.output.overwrite)
        results.append({"record": record, "path": item.path, "sidecar": item.sidecar, "loaded": loaded})
    return results
