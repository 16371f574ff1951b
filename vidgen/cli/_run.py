"""What every generation command does once its flags are parsed: resolve, plan, run, report.

stdout carries results only (paths, or one JSON object); status, progress and warnings go to
stderr, and progress bars appear only on a terminal.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import typer

from vidgen import families
from vidgen.cli._plan import comment, render_config
from vidgen.config import Layer, Resolved, resolve
from vidgen.config.kinds import MEDIA_KINDS
from vidgen.core.terminal import escape
from vidgen.families.base import pipeline_record
from vidgen.io.trust import Grants


class _StderrHandler(logging.Handler):
    def __init__(self, quiet: bool) -> None:
        super().__init__()
        self.quiet = quiet

    def emit(self, record: logging.LogRecord) -> None:
        # Status lines name prompts, paths and ids that files chose: never raw on a terminal.
        if record.levelno >= logging.WARNING:
            typer.echo(f"warning: {escape(record.getMessage())}", err=True)
        elif not self.quiet:
            typer.echo(escape(record.getMessage()), err=True)


def setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("vidgen")
    logger.handlers[:] = [_StderrHandler(quiet)]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def RichProgress(jobs: int | None = None) -> Any:  # noqa: N802 (stands in for the class)
    """The terminal display of vidgen/cli/_progress.py, imported only when a run shows it, so
    --help does not load rich's progress machinery."""
    from vidgen.cli._progress import RichProgress as Bars

    return Bars(jobs)


def execute(
    ctx: typer.Context,
    mode: str,
    presets: list[str] | None,
    layers: list[Layer],
    *,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
    grants: Grants | None = None,
    progress_format: str = "rich",
) -> None:
    # Read by the error boundary, so failures also answer in JSON.
    ctx.meta["vidgen.json"] = as_json
    # With json progress stderr carries events only (and warnings), no human lines.
    setup_logging(quiet or progress_format == "json")
    default = families.DEFAULT_PRESETS[mode]
    detected = _model_family(mode, presets or [], layers)
    if detected is not None:
        layers, default = [detected, *layers], None
    resolved = resolve(mode, presets or [], layers, families.defaults_layer, default)
    run_resolved(
        resolved, dry_run=dry_run, as_json=as_json, quiet=quiet, grants=grants, progress_format=progress_format
    )


def guard(resolved: Resolved, grants: Grants) -> None:
    """The checks on a resolved config that come before anything is read or loaded: sizes and
    prompts within limits, no permission taken from a file, inputs where they may be read.
    (Devices, pipes and /proc are refused where inputs are read, after the config checks.)"""
    from vidgen.io import trust

    trust.check_cost(resolved.config)
    trust.check_skip(resolved.config, grants.skip_memory_check)
    trust.check_pickles(resolved)
    trust.check_pickle_files(resolved.config)
    trust.check_output(resolved)
    trust.check_inputs(resolved, grants.folders, grants.allow_inputs)


def _model_family(mode: str, presets: list[str], layers: list[Layer]) -> Layer | None:
    """`--model` without a preset that names a family: the family (and so its defaults) from the
    model's model_index.json (or a modular model's modular_model_index.json). A preset whose
    family differs from the model's is an error."""
    from vidgen.config.layers import merged_preset
    from vidgen.core.errors import ConfigError
    from vidgen.models.loader import model_index

    given = [layer.data["model"] for layer in layers if isinstance(layer.data.get("model"), dict)]
    model_id = next((model["id"] for model in reversed(given) if model.get("id")), None)
    if not model_id or str(model_id).startswith("tiny:"):
        return None
    index = model_index(str(model_id))
    found = families.for_model(index) if index else None
    if found is None:
        return None
    family, model_mode = found
    if mode != model_mode and (other := families.for_model_mode(index, mode)) is not None:
        family, model_mode = other, mode
    named = [merged_preset(ref).get("model", {}).get("family") for ref in presets]
    chosen = next((name for name in reversed(named) if name), None)
    if chosen and chosen != family.name:
        other = families.get(chosen).title
        raise ConfigError(
            f"--model {model_id} is a {family.title} model ({index['_class_name']}), but the preset is for {other}; "
            f"drop --preset or pick a {family.title} preset (`vidgen presets list`)."
        )
    if mode != model_mode and _repo(family, mode) != _repo(family, model_mode):
        raise ConfigError(
            f"--model {model_id} is a {family.title} {model_mode} model; run it with `vidgen {model_mode}`."
        )
    index_name = "modular_model_index.json" if "_blocks_class_name" in index else "model_index.json"
    return None if chosen else Layer(f"model:{index_name}", {"model": {"family": family.name}}, str(model_id))


def run_resolved(
    resolved: Resolved,
    *,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
    check: Callable[[Any], None] | None = None,
    extra: dict[str, Any] | None = None,
    grants: Grants | None = None,
    announce: Callable[[], None] | None = None,
    progress_format: str = "rich",
    recorded: tuple[Any, str] | None = None,
) -> None:
    """Guard, plan, then print the plan or run it and print the results. `announce` runs once
    the guards pass (replay lists what it will read and checks the weights files it recorded);
    `check` sees the plan before anything
    loads; `extra` goes into every sidecar; `recorded` is a replayed sidecar's prompt_enhancement
    block and its file, reused when the run asks what it answers. A --dry-run with
    --enhance-prompt prints the rewritten prompt alone."""
    from vidgen.io import trust
    from vidgen.run import generate

    grants = grants or Grants()
    guard(resolved, grants)
    if announce is not None:
        announce()
    phases = _Phases(_display(progress_format, quiet, dry_run))
    with phases.out_of_memory():
        plan = generate.plan(resolved, recorded=recorded)
        if check is not None:
            check(plan)
        if dry_run:
            _print_dry_run(plan, phases, as_json)
            return
        trust.check_memory(plan, grants.skip_memory_check)
        gpus = plan.resolved.config.optimization.gpus
        if gpus > 1:
            from vidgen.core.errors import ConfigError
            from vidgen.models import parallel

            if plan.planned_for:
                raise ConfigError(
                    f"--gpus {gpus} needs CUDA devices, and this machine has none (--vram plans for a GPU "
                    "machine); add --dry-run to see the plan."
                )
            if parallel.world()[1] == 1:
                # Not started by a launcher: run this command as one process per GPU, and wait.
                # A tiny model is built here first, not by N ranks at once into one cache.
                from vidgen.models.loader import locate_all

                locate_all(plan.resolved.config, plan.family)
                phases.finish()
                parallel.launch(gpus)
                return
            parallel.init(plan.device)
        phases.now = "load"
        try:
            results = generate.execute(plan, phases, extra)
        finally:
            phases.finish()
            if gpus > 1:
                parallel.finish()
        if hasattr(phases.inner, "event"):  # --progress json: the last phase ends with the run
            phases.inner.event("done", outputs=[str(result.path) for result in results])
    _print_results(results, as_json)


def _print_results(results: list[Any], as_json: bool) -> None:
    """The written videos on stdout: their paths, or one JSON object."""
    if not as_json:
        for result in results:
            typer.echo(escape(result.path))
        return
    rows = []
    for result in results:
        out = result.record["output"]
        rows.append(
            {
                "path": str(result.path),
                "sidecar": str(result.sidecar),
                "seed": result.record["seed"],
                **{key: out[key] for key in ("frames", "width", "height", "fps")},
            }
        )
    typer.echo(json.dumps({"outputs": rows, "exit_code": 0}))


def _print_dry_run(plan: Any, phases: _Phases, as_json: bool) -> None:
    """--dry-run: the plan; with --enhance-prompt, the rewritten prompt alone, loading only what
    writes it."""
    from vidgen.run import generate

    if plan.asked is None:
        _print_plan(plan, as_json)
        return
    phases.now = "enhance"
    _print_enhanced(generate.enhance_only(plan, phases), as_json)


def _display(progress_format: str, quiet: bool, dry_run: bool) -> Any:
    """--progress json: NDJSON events (even in pipes: they were asked for); else rich lines on
    a terminal only; nothing with --quiet or --dry-run."""
    if dry_run:
        return None
    if progress_format == "json":
        from vidgen.core.progress import JsonEvents

        return JsonEvents()
    return RichProgress() if sys.stderr.isatty() and not quiet else None


class _Phases:
    """Progress that remembers the phase a run is in, so an allocation failure anywhere (reading
    inputs, loading, denoising, decoding, encoding) ends in exit 6 naming it."""

    def __init__(self, inner: Any = None) -> None:
        from vidgen.core.progress import NullProgress

        self.inner = inner or NullProgress()
        self.now = "reading inputs"

    def start(self, total: int, description: str) -> None:
        self.now = "denoise"
        self.inner.start(total, description)

    def advance(self) -> None:
        self.inner.advance()

    def stop(self) -> None:
        self.inner.stop()

    def phase(self, name: str) -> None:
        self.now = name
        self.inner.phase(name)

    def component(self, name: str, class_name: str, index: int, count: int) -> None:
        self.inner.component(name, class_name, index, count)

    def video(self, output: str, after: float | None) -> None:
        self.inner.video(output, after)

    def frames(self, done: int, total: int) -> None:
        self.inner.frames(done, total)

    def preview(self, path: str, step: int, total: int) -> None:
        self.inner.preview(path, step, total)

    def finish(self) -> None:
        if hasattr(self.inner, "finish"):
            self.inner.finish()

    def out_of_memory(self) -> AbstractContextManager[None]:
        """An allocation failure anywhere in the run ends it with exit 6, naming this phase."""
        from vidgen.core.errors import oom_guard

        hint = "use fewer --frames or a smaller --height/--width."
        return oom_guard(lambda: self.now, lambda _exc: f"the process ran out of memory during {self.now}; {hint}")


def _print_enhanced(enhanced: Any, as_json: bool) -> None:
    """--dry-run --enhance-prompt: the rewritten prompt on stdout (one line, control characters
    escaped: an LLM's text is not the terminal's), or one JSON object with how it was made."""
    if as_json:
        body = {
            "dry_run": True,
            "prompt": enhanced.record["prompt"],
            "enhanced_prompt": enhanced.prompt,
            "prompt_enhancement": enhanced.record,
            "exit_code": 0,
        }
        typer.echo(json.dumps(body))
        return
    typer.echo(escape(enhanced.prompt))


def _print_plan(plan: Any, as_json: bool) -> None:
    from vidgen.run import generate

    cfg = plan.resolved.config
    outputs = [{"path": str(i.path), "sidecar": str(i.sidecar), "seed": i.seed} for i in plan.items]
    if cfg.output.live_preview:  # rewritten while the video denoises (--live-preview)
        from vidgen.io.outputs import beside

        for row, item in zip(outputs, plan.items, strict=True):
            row["live_preview"] = str(beside("live_preview", item.path))
    call = plan.family.call_kwargs(cfg, plan.items[0].seed, plan.inputs.frames)
    if as_json:
        body = {
            "dry_run": True,
            "config": cfg.model_dump(mode="json"),
            "sources": plan.resolved.sources,
            "pipeline": {
                "class": plan.family.pipeline_name(cfg),
                "call_kwargs": call,
                **pipeline_record(plan.family, cfg, call),
            },
            "device": plan.device,
            "memory": plan.memory.record() if plan.memory is not None else None,
            "inputs": plan.inputs.record,
            "notes": plan.inputs.notes,
            "outputs": outputs,
            **({"finish": priced} if (priced := generate.finish_price(plan)) else {}),
            "exit_code": 0,
        }
        typer.echo(json.dumps(body))
        return
    typer.echo(render_config(cfg.model_dump(mode="json"), plan.resolved.sources))
    where = f"{plan.device} (planned for a CUDA card: --vram runs need one)" if plan.planned_for else plan.device
    lines = [f"pipeline: {plan.family.pipeline_name(cfg)} on {where}"]
    for key, value in pipeline_record(plan.family, cfg, call).items():
        shown = value["summary"] if isinstance(value, dict) and "summary" in value else json.dumps(value)
        lines.append(f"{key}: {shown}")
    if plan.memory is not None:
        lines += memory_lines(plan.memory)
    for name, record in plan.inputs.record.items():
        if name == "prompts":
            lines.append("prompts: " + " | ".join(f"{frame}: {text}" for frame, text in record.items()))
            continue
        # Keyframes and clips (LTX) are a list of such records; pictures, videos and sounds
        # (MiniMax-H3's references) one record with an entry each.
        for one in record if isinstance(record, list) else record.get("items") or [record]:
            lines.append(f"{name}: {_input_line(one)}")
    lines += [f"note: {note}" for note in plan.inputs.notes]
    lines += finish_lines(generate.finish_price(plan) or [])
    if plan.seed_drawn:
        lines.append(f"seed drawn at random: {plan.items[0].seed} (a real run draws its own; pass --seed to fix it)")
    previews = " while denoising" if cfg.output.live_preview else ""
    for item in outputs:
        beside = [item["sidecar"], *([item["live_preview"] + previews] if "live_preview" in item else [])]
        lines.append(f"would write: {item['path']} (+ {', '.join(beside)})")
    for line in lines:
        typer.echo("\n".join(comment(line)))


def _input_line(one: dict[str, Any]) -> str:
    """--dry-run: what one input file becomes (its frames, size and resize mode; a sound's rate)."""
    prepared = one["prepared"]
    at = f" at frame {one['frame_index']}" if "frame_index" in one else ""
    # A media input's entry says what it is (a video file's record says "file" or "folder").
    kind = f" ({one['kind']})" if one.get("kind") in MEDIA_KINDS else ""
    if "size" not in prepared:  # a sound, or a data file (a camera path)
        heard = f" -> {prepared['samples']} samples at {prepared['sample_rate']} Hz" if "samples" in prepared else ""
        return f"{one['path']}{kind}{heard}"
    size = "x".join(map(str, prepared["size"]))
    count = f"{one['frames_used']} frames " if "frames_used" in one else ""
    resize = f" ({one['resize']})" if "resize" in one else ""
    sound = prepared.get("sound")
    heard = f", with sound ({sound['channels']} channel(s) at {sound['sample_rate']} Hz)" if sound else ""
    return f"{one['path']}{at}{kind} -> {count}{size}{resize}{heard}"


def finish_lines(priced: list[dict[str, Any]]) -> list[str]:
    """--dry-run: one line per finishing step: what it makes and what it costs."""
    mib = 1024**2
    lines = []
    for index, row in enumerate(priced, start=1):
        frames, size = row["frames"], row["size"]
        lines.append(
            f"finish {index}: {row['label']} with {row['model']}: {frames[0]} -> {frames[1]} frames, {size[0]} -> "
            f"{size[1]}, {row['network_runs']} network runs; weights {row['weights_bytes'] / mib:.1f} MiB, working "
            f"set about {row['working_bytes'] / mib:.0f} MiB"
            + ("" if "tile" not in row else f" (tiles of {row['tile']} px)" if row["tile"] else " (whole frames)"),
        )
    return lines


def memory_lines(planned: Any) -> list[str]:
    """The memory plan of a --dry-run: the estimate, the budget, and the ladder it chose from."""
    gib = 1024**3
    record = planned.record()
    budget = record["budget_bytes"]
    if record["plan"] == "manual":
        head = f"memory: estimated peak {record['estimated_peak_bytes'] / gib:.1f} GiB with these settings"
        if budget:
            head += f" of {budget / gib:.1f} GiB ({planned.budget_source})"
    else:
        head = f"memory auto: {record['flags']}: estimated peak {record['estimated_peak_bytes'] / gib:.1f} GiB" + (
            f" of {budget / gib:.1f} GiB ({planned.budget_source})" if budget else f" ({planned.budget_source})"
        )
    weights = ", ".join(f"{name} {size / gib:.1f}" for name, size in record["weights_bytes"].items())
    phases = ", ".join(f"{name} {size / gib:.1f}" for name, size in record["phases_bytes"].items())
    lines = [head, f"  weights GiB ({record['sizes_from']}): {weights}", f"  working set GiB: {phases}"]
    if record["plan"] != "manual" or budget:
        lines.append("  plans, fastest first:")
        for rung in record["ladder"]:
            mark = "->" if rung["plan"] == record["plan"] else "  "
            lines.append(f"  {mark} {rung['estimated_peak_bytes'] / gib:6.1f} GiB  {rung['flags']}")
    lines.extend(f"  note: {note}" for note in record["notes"])
    return lines


def _repo(family: Any, mode: str) -> str | None:
    spec = family.modes.get(mode)
    return spec.repo if spec is not None else None
