"""`vidgen batch MANIFEST`: many jobs, models loaded once, resumable."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli import _trust as t
from vidgen.cli._run import RichProgress, setup_logging
from vidgen.core.errors import ConfigError, ExitCode, InputError, WriteError
from vidgen.core.progress import JsonEvents
from vidgen.core.terminal import escape
from vidgen.io.trust import Grants

if TYPE_CHECKING:  # the core loads lazily, so --help stays instant
    from vidgen.batch.jobs import Job
    from vidgen.config import Layer


# The options of `vidgen batch` that no other command has, declared once as _options.py does.
Manifest = Annotated[
    str, typer.Argument(help="jobs.yaml (defaults/jobs/matrix), jobs.jsonl, prompts.txt, or - for stdin.")
]
OutFolder = Annotated[Path, typer.Option("--out", "-o", help="Folder for every output (job id = file name).")]
Mode = Annotated[str, typer.Option("--mode", help="Mode of jobs that do not say: t2v, i2v, v2v, animate or control.")]
Report = Annotated[
    Path | None, typer.Option("--report", help="Write one JSON line per job (status, output, error, time).")
]
Force = Annotated[bool, typer.Option("--force", help="Rerun jobs whose outputs are already done.")]
FailFast = Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed job.")]
SkipInvalid = Annotated[
    bool, typer.Option("--skip-invalid", help="Run the valid jobs even if some are invalid (they count as failed).")
]
# A plain str, not o.ProgressFormat's choice: run_batch names the choices itself (exit 3).
ProgressFormat = Annotated[
    str,
    typer.Option(
        "--progress", help="rich (bars on a terminal, plain lines in pipes) or json (NDJSON events on stderr)."
    ),
]
Gallery = Annotated[
    bool, typer.Option("--gallery", help="Keep OUT/index.html (vidgen gallery) current as jobs finish.")
]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        help="Run shard I of N (0-based; Slurm arrays): a fixed share chosen by each job's id.",
    ),
]
Ray = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Run on Ray: local (start one here), auto, or a cluster address; one worker per GPU.",
    ),
]
Workers = Annotated[
    int | None, typer.Option("--workers", min=1, help="--ray: at most this many workers (default: one per GPU).")
]
MaxRetries = Annotated[
    int | None, typer.Option("--max-retries", min=0, help="--ray: run a job again this often when its worker dies (2).")
]


@dataclass
class BatchOptions:
    """How a list of jobs runs: `vidgen batch`'s flags, or a single-run command's for its
    --prompts-file. `folder` is the manifest's: the inputs its jobs name may be read from there
    (see vidgen/trust.py). `shard` (I, N) keeps the jobs of shard I of N, after the whole
    manifest was checked. `layers` (a command's flags) go under each job's own. `ray` holds
    --ray's address, workers and max_retries."""

    source: str
    mode: str
    presets: list[str]
    out: Path
    assignments: list[str]
    report: Path | None = None
    force: bool = False
    fail_fast: bool = False
    skip_invalid: bool = False
    progress_format: str = "rich"
    gallery: bool = False
    dry_run: bool = False
    as_json: bool = False
    quiet: bool = False
    layers: list[Layer] = field(default_factory=list)
    grants: Grants | None = None
    folder: Path | None = None
    shard: tuple[int, int] | None = None
    ray: dict | None = None


def batch(
    ctx: typer.Context,
    manifest: Manifest,
    out: OutFolder = Path("outputs"),
    mode: Mode = "t2v",
    preset: o.Preset = None,
    set_: o.Set = None,
    report: Report = None,
    force: Force = False,
    fail_fast: FailFast = False,
    skip_invalid: SkipInvalid = False,
    progress_format: ProgressFormat = "rich",
    gallery: Gallery = False,
    shard: Shard = None,
    ray: Ray = None,
    workers: Workers = None,
    max_retries: MaxRetries = None,
    allow_inputs: t.AllowInputs = False,
    skip_memory_check: t.SkipMemoryCheck = False,
    dry_run: o.DryRun = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Run every job of a manifest, loading each model once and skipping jobs already done.

    Jobs use the command-line names (prompt, image, frames, steps, guidance, seed, preset, id)
    or config paths. Outputs are OUT/ID.mp4 with their sidecars; a rerun skips jobs whose outputs
    were made from the same config, so an interrupted batch picks up where it stopped.

        vidgen batch jobs.yaml --out runs/ --report runs/report.jsonl
    """
    from vidgen.batch import jobs as core

    ctx.meta["vidgen.json"] = json_
    shard_spec = core.parse_shard(shard) if shard is not None else None  # before the manifest is read
    if ray is None and (workers is not None or max_retries is not None):
        raise ConfigError("--workers and --max-retries tune --ray; add --ray or drop them.")
    if ray is not None and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError("--ray schedules the batch itself; run it as one process, not under accelerate launch.")
    text = _stdin() if manifest == "-" else None
    jobs = core.read_manifest(manifest, text)
    options = BatchOptions(
        source=manifest,
        mode=mode,
        presets=preset or [],
        out=out,
        assignments=set_ or [],
        report=report,
        force=force,
        fail_fast=fail_fast,
        skip_invalid=skip_invalid,
        progress_format=progress_format,
        gallery=gallery,
        dry_run=dry_run,
        as_json=json_,
        quiet=quiet,
        grants=Grants(allow_inputs=allow_inputs, skip_memory_check=skip_memory_check),
        folder=Path.cwd() if manifest == "-" else Path(manifest).parent,
        shard=shard_spec,
    )
    if ray is not None:
        options.ray = {"address": ray, "workers": workers, "max_retries": 2 if max_retries is None else max_retries}
    run_batch(jobs, options)


def _stdin() -> str:
    """A manifest from stdin, read within the same cap as a file (`cat /dev/zero | vidgen batch -`)."""
    from vidgen.core.limits import MAX_MANIFEST_BYTES

    data = sys.stdin.buffer.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise InputError(f"the manifest on stdin is larger than {MAX_MANIFEST_BYTES >> 20} MiB; split it.")
    from vidgen.core import text

    return text.decode(data, "the manifest on stdin")


def run_batch(jobs: list[Job], opts: BatchOptions) -> None:
    """Validate, run and report a list of jobs (`vidgen batch`, and `--prompts-file`)."""
    from vidgen.batch import jobs as core

    jobs, invalid = _checked(jobs, opts)
    _check_out(opts.out)  # a file where the output folder should be: refused before any job runs
    if opts.dry_run:
        for job in jobs:
            if job.error is None:
                typer.echo(
                    "\t".join(escape(v) for v in (job.id, job.resolved.config.mode, job.resolved.config.model.id))
                )
        return
    if opts.report is not None:
        _check_report(opts.report)  # a report that cannot be written is found before any job runs
    core.sweep(opts.out)
    start = time.perf_counter()
    events = JsonEvents() if opts.progress_format == "json" else None
    from vidgen.batch.ray import ClusterLost  # Ray itself is imported only by --ray

    stopped = None
    try:
        rows = _run_jobs(jobs, invalid, opts, events)
    except ClusterLost as exc:
        # --ray lost a node: report what ran, then say so in one line, exit 8.
        rows, stopped = sorted(core.invalid_rows(jobs) + exc.rows, key=lambda row: row["index"]), exc
    _finish(rows, opts, events, start, stopped)


def _checked(jobs: list[Job], opts: BatchOptions) -> tuple[list[Job], list[Job]]:
    """(the jobs this process runs, the invalid ones among them), after resolving and checking
    every job of the manifest: invalid jobs stop the batch unless --skip-invalid."""
    from vidgen.batch import jobs as core

    if opts.progress_format not in ("rich", "json"):
        raise ConfigError(f"--progress {opts.progress_format}: choose rich or json.")
    # With json progress stderr carries events only (and warnings), no human lines.
    setup_logging(opts.quiet or opts.progress_format == "json")
    if not jobs:
        raise ConfigError(f"manifest {opts.source} has no jobs.")
    core.prepare(
        jobs,
        mode=opts.mode,
        presets=opts.presets,
        out=opts.out,
        assignments=opts.assignments,
        layers=opts.layers,
        grants=opts.grants,
        folder=opts.folder,
        memory_check=not opts.dry_run,
    )
    invalid = [job for job in jobs if job.error is not None]
    for job in invalid:
        typer.echo(escape(f"invalid: job {job.index} ({job.where}): {job.error}"), err=True)
    if invalid and not opts.skip_invalid:
        raise ConfigError(f"{len(invalid)} of {len(jobs)} jobs are invalid; fix them or pass --skip-invalid.")
    if opts.shard is not None:
        # Every shard checked the whole manifest (they all refuse a bad one alike); each runs
        # and reports its own jobs only.
        jobs = [job for job in jobs if core.shard_of(job, opts.shard[1]) == opts.shard[0]]
        invalid = [job for job in jobs if job.error is not None]
    return jobs, invalid


def _run_jobs(jobs: list[Job], invalid: list[Job], opts: BatchOptions, events: JsonEvents | None) -> list[dict]:
    """Run this process's share of the jobs (all of them, unless started by accelerate launch),
    here or on Ray; returns every job's report row, the invalid ones' too, in manifest order.
    Under accelerate launch, every rank but 0 ends here, with the batch's exit code."""
    from vidgen.batch import jobs as core

    rank, count = _workers()
    mine = core.share(jobs, rank, count)
    bars = RichProgress(jobs=len(mine)) if events is None and sys.stderr.isatty() and not opts.quiet else None
    on_event = events.event if events else (bars.job_event if bars else None)
    if opts.gallery and rank == 0:
        on_event = _refreshing(on_event, opts.out)
    try:
        rows = _runner(opts.ray)(
            mine,
            force=opts.force,
            fail_fast=opts.fail_fast,
            progress=events or bars,
            on_event=on_event,
            worker=rank,
            # The report grows as jobs finish, so a late failure (a full disk) keeps what ran.
            on_row=_growing_report(opts.report, core.invalid_rows(jobs)) if opts.report and count == 1 else None,
        )
    finally:
        if bars is not None:
            bars.finish()
        if opts.ray is not None:
            core.sweep(opts.out)  # what killed workers left: their temporary files and claims
    if count > 1:
        # Each worker ran its own share; every worker gets all rows, rank 0 reports them.
        from accelerate.utils import gather_object

        rows = gather_object(rows)
        if rank != 0:
            failed = sum(row["status"] not in ("done", "skipped", "claimed") for row in rows)
            raise typer.Exit(int(ExitCode.BATCH_PARTIAL if failed or invalid else ExitCode.OK))
    return sorted(core.invalid_rows(jobs) + rows, key=lambda row: row["index"])


def _runner(ray: dict | None) -> Callable[..., list[dict]]:
    """What runs the jobs: batch.run in this process, or raybatch.run on Ray (which has no
    progress display or worker number of its own: its workers report through `on_event`)."""
    from vidgen.batch import jobs as core

    if ray is None:
        return core.run
    from vidgen.batch import ray as raybatch

    def on_ray(mine, *, worker, progress, **kwargs):  # noqa: ANN001, ANN202, ARG001
        return raybatch.run(
            mine, address=ray["address"], workers=ray["workers"], max_retries=ray["max_retries"], **kwargs
        )

    return on_ray


def _finish(
    rows: list[dict], opts: BatchOptions, events: JsonEvents | None, start: float, stopped: Exception | None = None
) -> None:
    """Write the report and the gallery, print the summary and the results, and end with the
    batch's exit code (8 when any job failed, was invalid or did not run). `stopped` (a VidgenError:
    Ray lost a node) ends it as its one-line error, after the report and the summary."""
    report_error = None
    if opts.report is not None:
        try:
            _write_report(opts.report, rows)
        except WriteError as exc:
            report_error = exc
            typer.echo(escape(f"warning: {exc}"), err=True)
    statuses = ("done", "skipped", "claimed", "failed", "invalid", "not run")
    counts = {status: sum(row["status"] == status for row in rows) for status in statuses}
    seconds = round(time.perf_counter() - start, 1)
    if opts.gallery and opts.out.is_dir():
        from vidgen.browse import gallery as pages

        pages.write(opts.out, failed=[row for row in rows if row["status"] in ("failed", "invalid", "not run")])
    if events is not None:
        events.event("summary", jobs=len(rows), seconds=seconds, **{k.replace(" ", "_"): v for k, v in counts.items()})
    elif not opts.quiet:
        for row in rows:
            detail = row["error"]["message"] if row["error"] else ", ".join(row["outputs"])
            name = row["id"] or row["where"]
            typer.echo(escape(f"  {row['status']:<8} {name:<40} {row['seconds']:>7.2f}s  {detail}"), err=True)
    if events is None:
        summary = ", ".join(f"{number} {status}" for status, number in counts.items() if number)
        typer.echo(f"batch: {len(rows)} jobs: {summary} in {seconds}s", err=True)
    failed = counts["failed"] + counts["invalid"] + counts["not run"]
    code = ExitCode.BATCH_PARTIAL if failed else ExitCode.OK
    if opts.as_json:
        body = {"jobs": rows, "exit_code": int(code)}
        if stopped is not None:
            body["error"] = str(stopped)
            stopped.answered = True  # type: ignore[attr-defined]  # this object says it: stderr only
        typer.echo(json.dumps(body))
    else:
        for row in rows:
            if row["status"] == "done":
                for path in row["outputs"]:
                    typer.echo(escape(path))
    if stopped is not None:
        raise stopped
    if failed:
        raise typer.Exit(int(code))  # 8 stays 8, even when the report could not be written
    if report_error is not None:
        raise report_error


def _check_out(out: Path) -> None:
    """--out is a folder (made when missing): a file there, or above it, is refused."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        named = "is a file" if existing == out else f"is under {existing}, which is a file"
        raise WriteError(f"--out {out} {named}; a batch writes its outputs into a folder: choose another --out.")


def _check_report(report: Path) -> None:
    if report.is_dir():
        # Found now, not after every job ran: the report is one file, rewritten as jobs finish.
        raise WriteError(f"--report {report} is a folder; name a file in it, e.g. --report {report / 'report.jsonl'}.")
    folder = report.parent
    probe = folder / f".{report.name}.{os.getpid()}.probe"
    try:
        if report.exists() and not os.access(report, os.W_OK):
            raise PermissionError(13, "Permission denied")
        folder.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as exc:
        from vidgen.io.media import write_error

        raise write_error(report, exc, "cannot write --report", "choose another --report") from None


def _growing_report(report: Path, invalid: list[dict]) -> Callable[[list[dict]], None]:
    """Rewrite the report after each job; a failed rewrite never stops the batch (the final
    write reports it)."""

    def write(rows: list[dict]) -> None:
        with contextlib.suppress(WriteError):
            _write_report(report, invalid + rows)

    return write


def _write_report(report: Path, rows: list[dict]) -> None:
    from vidgen.io import media

    ordered = sorted(rows, key=lambda row: row["index"])
    text = "".join(json.dumps(row) + "\n" for row in ordered)
    media.write_text(text, report, overwrite=True, hint="choose another --report")


def _refreshing(inner: Callable[..., None] | None, out: Path) -> Callable[..., None]:
    """`inner`, then OUT/index.html rewritten after each finished job (--gallery)."""
    from vidgen.browse import gallery as pages

    def on_event(kind: str, **fields: object) -> None:
        if inner is not None:
            inner(kind, **fields)
        if kind == "done":
            pages.write(out)

    return on_event


def _workers() -> tuple[int, int]:
    """(this process's rank, how many processes): one, unless started by `accelerate launch`."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch
    from accelerate import PartialState

    # Without CUDA, gloo over CPU processes (accelerate's MULTI_CPU); with it, one GPU each.
    state = PartialState(cpu=not torch.cuda.is_available())
    return state.process_index, state.num_processes
