"""`vidgen batch MANIFEST`: many jobs, models loaded once, resumable."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli._run import RichProgress, setup_logging
from vidgen.errors import ConfigError, ExitCode


def batch(
    ctx: typer.Context,
    manifest: Annotated[
        str, typer.Argument(help="jobs.yaml (defaults/jobs/matrix), jobs.jsonl, prompts.txt, or - for stdin.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every output (job id = file name).")] = Path(
        "outputs"
    ),
    mode: Annotated[
        str, typer.Option("--mode", help="Mode of jobs that do not say: t2v, i2v, v2v, animate or control.")
    ] = "t2v",
    preset: o.Preset = None,
    set_: o.Set = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write one JSON line per job (status, output, error, time).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun jobs whose outputs are already done.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed job.")] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Run the valid jobs even if some are invalid (they count as failed).")
    ] = False,
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
    from vidgen import batch as core
    from vidgen import media

    ctx.meta["vidgen.json"] = json_
    setup_logging(quiet)
    text = sys.stdin.read() if manifest == "-" else None
    jobs = core.read_manifest(manifest, text)
    if not jobs:
        raise ConfigError(f"manifest {manifest} has no jobs.")
    core.prepare(jobs, mode=mode, presets=preset or [], out=out, assignments=set_ or [])
    invalid = [job for job in jobs if job.error is not None]
    for job in invalid:
        typer.echo(f"invalid: job {job.index} ({job.where}): {job.error}", err=True)
    if invalid and not skip_invalid:
        raise ConfigError(f"{len(invalid)} of {len(jobs)} jobs are invalid; fix them or pass --skip-invalid.")
    if dry_run:
        for job in jobs:
            if job.error is None:
                typer.echo(f"{job.id}\t{job.resolved.config.mode}\t{job.resolved.config.model.id}")  # type: ignore[union-attr]
        return
    start = time.perf_counter()
    progress = RichProgress() if sys.stderr.isatty() and not quiet else None
    try:
        rows = core.run(jobs, force=force, fail_fast=fail_fast, progress=progress)
    finally:
        pass
    if report is not None:
        media.write_text("".join(json.dumps(row) + "\n" for row in rows), report, overwrite=True)
    counts = {
        status: sum(row["status"] == status for row in rows)
        for status in ("done", "skipped", "failed", "invalid", "not run")
    }
    if not quiet:
        for row in rows:
            detail = row["error"]["message"] if row["error"] else ", ".join(row["outputs"])
            typer.echo(
                f"  {row['status']:<8} {row['id'] or row['where']:<40} {row['seconds']:>7.2f}s  {detail}", err=True
            )
    summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    typer.echo(f"batch: {len(rows)} jobs: {summary} in {time.perf_counter() - start:.1f}s", err=True)
    failed = counts["failed"] + counts["invalid"] + counts["not run"]
    code = ExitCode.BATCH_PARTIAL if failed else ExitCode.OK
    if json_:
        typer.echo(json.dumps({"jobs": rows, "exit_code": int(code)}))
    else:
        for row in rows:
            if row["status"] == "done":
                for path in row["outputs"]:
                    typer.echo(path)
    if failed:
        raise typer.Exit(int(code))
