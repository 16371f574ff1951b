"""Many jobs in one process: manifests, validation up front, pipelines loaded once per group,
resume by config hash, and failures that stop only their own job.

A manifest is JSONL (one job object per line), YAML (`defaults:`, `jobs:` and an optional
`matrix:` whose cartesian product multiplies every job), or plain text (one prompt per line).
A job uses the command-line names (`prompt`, `image`, `frames`, `steps`, `guidance`, `seed`, ...),
dotted config paths (`sampling.guidance_scale`), config sections, `preset` and `id`.

What the CLI and vidgen/raybatch.py use: `read_manifest`, `prepare` (resolve and check every
job), `share`/`parse_shard`/`shard_of` (split the jobs), `sweep`, `run` (the local loop) and
`JobRunner` (one process's jobs, also each Ray worker's), with `group_key`, `done_row`,
`report_row` and `invalid_rows`. Everything named with a leading underscore stays in here.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen import families
from vidgen.config import Layer, Resolved, resolve, safe_yaml
from vidgen.config.flags import FINISH_OPTIONS, FLAGS, finish_steps, from_flag_form
from vidgen.config.kinds import input_fields
from vidgen.config.layers import dotted, set_layer
from vidgen.core import stopping
from vidgen.core.errors import ConfigError, InputError, VidgenError, oom_guard
from vidgen.core.limits import (
    MAX_DEPTH,
    MAX_JOBS,
    MAX_MANIFEST_BYTES,
    MAX_PROMPT_CHARS,
    MAX_YAML_MANIFEST_BYTES,
    depth,
    read_text,
)
from vidgen.families.base import workflow
from vidgen.io import outputs, trust

log = logging.getLogger("vidgen")

# Job keys in command-line form: `frames` for sampling.num_frames, `negative` for
# inputs.negative_prompt, `prompt`/`image`/`video` for the positional arguments.
SHORTHAND = {flag.lstrip("-").lower().replace("-", "_"): path for path, flag in FLAGS.items()}
SPECIAL = ("id", "mode", "preset", "presets", "set")


@dataclass
class Job:
    index: int
    where: str  # "line 4" or "job 3", for messages
    data: dict[str, Any]
    matrix: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    resolved: Resolved | None = None
    config_hash: str = ""
    error: str | None = None
    # Earlier jobs of the manifest with the same content (0 for the first): identical jobs get
    # distinct seeds without their position mattering.
    occurrence: int = 0


# -- reading manifests ------------------------------------------------------------------------


def read_manifest(source: str, text: str | None = None, fmt: str | None = None) -> list[Job]:
    """Jobs from a manifest file (or `-`, stdin, whose text is passed in); `fmt` (yaml, jsonl,
    txt) overrides what the file name says.

    A manifest may come from anyone: it is read with a size cap, its YAML without aliases, and
    its job count (after the matrix) and nesting are checked before any job is built."""
    if text is None:
        path = Path(source)
        if not path.exists():
            raise InputError(f"manifest {source} does not exist.")
        text = read_text(path, MAX_MANIFEST_BYTES, "manifest", InputError)
    suffix = f".{fmt}" if fmt else Path(source).suffix.lower()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if suffix in (".yaml", ".yml"):
        if len(text) > MAX_YAML_MANIFEST_BYTES:
            raise ConfigError(
                f"{source} is over {MAX_YAML_MANIFEST_BYTES >> 20} MiB, the most vidgen reads as YAML; "
                "write large manifests as JSONL (one job per line)."
            )
        jobs = _yaml_jobs(source, text)
    elif suffix == ".jsonl" or (suffix != ".txt" and first.startswith("{")):
        jobs = _jsonl_jobs(source, text)
    else:
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        _count(source, len(lines))
        jobs = [
            Job(index, f"line {number}", {"prompt": line})
            for index, (number, line) in enumerate((item for item in lines if not item[1].startswith("#")), start=1)
        ]
    for job in jobs:
        _check_prompts(source, job)
    return jobs


def _count(source: str, jobs: int) -> None:
    if jobs > MAX_JOBS:
        raise ConfigError(f"{source} has {jobs:,} jobs; a manifest may have at most {MAX_JOBS:,}. Split it.")


def _check_prompts(source: str, job: Job) -> None:
    """A prompt far beyond any model's text context makes the manifest invalid at once."""
    for key in ("prompt", "negative"):
        value = job.data.get(key)
        if isinstance(value, str) and len(value) > MAX_PROMPT_CHARS:
            raise ConfigError(
                f"{source} {job.where}: the {key} is {len(value):,} characters; vidgen takes at most "
                f"{MAX_PROMPT_CHARS:,}, far beyond any model's text context."
            )


def _jsonl_jobs(source: str, text: str) -> list[Job]:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    _count(source, len(lines))
    jobs = []
    for number, line in lines:
        deep = False
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source} line {number}: not valid JSON ({exc.msg}).") from None
        except RecursionError:
            data, deep = None, True
        if deep or depth(data) > MAX_DEPTH:
            raise ConfigError(f"{source} line {number}: nested deeper than {MAX_DEPTH} levels, the most vidgen reads.")
        if not isinstance(data, dict):
            raise ConfigError(f"{source} line {number}: a job must be a JSON object.")
        jobs.append(Job(len(jobs) + 1, f"line {number}", data))
    return jobs


def _yaml_jobs(source: str, text: str) -> list[Job]:
    data = safe_yaml.load(text, source) or {}
    if isinstance(data, list):
        data = {"jobs": data}
    if not isinstance(data, dict) or set(data) - {"defaults", "jobs", "matrix"}:
        raise ConfigError(f"{source}: a YAML manifest has `defaults:`, `jobs:` and `matrix:` only.")
    defaults = data.get("defaults") or {}
    if not any(data.get(key) for key in ("defaults", "jobs", "matrix")):
        return []  # an empty manifest has no jobs (not one empty "job 1")
    listed = data.get("jobs") or [{}]
    matrix = data.get("matrix") or {}
    if not isinstance(defaults, dict) or not isinstance(listed, list) or not isinstance(matrix, dict):
        raise ConfigError(f"{source}: defaults and matrix must be mappings, jobs a list.")
    for key, values in matrix.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: matrix.{key} must be a non-empty list.")
    # Counted before the product is built: 20 lists of 2 values are a million jobs.
    _count(source, len(listed) * math.prod(len(values) for values in matrix.values()))
    jobs = []
    for number, job in enumerate(listed, start=1):
        if not isinstance(job, dict):
            raise ConfigError(f"{source}: jobs[{number - 1}] must be a mapping.")
        for combo in itertools.product(*matrix.values()):
            values = dict(zip(matrix, combo, strict=True))
            jobs.append(Job(len(jobs) + 1, f"job {number}", {**defaults, **job, **values}, matrix=values))
    return jobs


# -- from a job to a validated config -----------------------------------------------------------


def _layer(job: Job) -> tuple[list[str], Layer, dict[str, Any]]:
    """(presets, the job's config layer, its `set:` values by dotted path)."""
    data: dict[str, Any] = {}
    # interpolate/upscale (and their weights and tile keys) make output.finish, as the flags do.
    chain = finish_steps({key: job.data.get(key) for key in FINISH_OPTIONS})
    if chain:
        data["output"] = {"finish": chain}
    for key, value in job.data.items():
        if key in SPECIAL or key in FINISH_OPTIONS:
            continue
        if key in ("model", "inputs", "sampling", "optimization", "output") and isinstance(value, dict):
            path_values = {f"{key}.{inner}": item for inner, item in value.items()}
        elif "." in key:
            path_values = {key: value}
        elif key in SHORTHAND:
            path_values = {SHORTHAND[key]: from_flag_form(SHORTHAND[key], value)}
        else:
            raise ConfigError(f"{key}: unknown job key; use command-line names (frames, steps...) or config paths.")
        for path, item in path_values.items():
            if path.startswith("output.path"):
                raise ConfigError("output.path: a batch names outputs itself (--out and the job id).")
            node = data
            *parents, last = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = item
    presets = _as_list(job.data.get("presets", job.data.get("preset")))
    return presets, Layer(label=f"job:{job.where}", data=data, origin=job.where), dict(job.data.get("set") or {})


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _content(job: Job) -> str:
    """The job without its matrix values: the variants of one job share its seed, so they compare."""
    base = {key: value for key, value in job.data.items() if key not in job.matrix}
    return json.dumps(base, sort_keys=True, default=str)


def _count_occurrences(jobs: list[Job]) -> None:
    """Number identical jobs by occurrence (the variants of one listed job count once), so a job
    inserted, deleted or moved elsewhere in the manifest changes no other job's seed."""
    seen: dict[str, list[str]] = {}
    for job in jobs:
        wheres = seen.setdefault(_content(job), [])
        if job.where not in wheres:
            wheres.append(job.where)
        job.occurrence = wheres.index(job.where)


def _seed(job: Job) -> int:
    """A seed fixed by the job's content alone, so reruns, reorderings and any split across
    workers agree; the second of two identical jobs gets another one."""
    text = _content(job) + (f"#{job.occurrence}" if job.occurrence else "")
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _job_id(job: Job, resolved: Resolved) -> str:
    from vidgen.io import outputs

    if "id" in job.data:
        job_id = str(job.data["id"])
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", job_id) or ".." in job_id:
            raise ConfigError(f"id {job_id!r}: use letters, digits, '.', '_' and '-' (outputs stay inside --out).")
        return job_id
    cfg = resolved.config
    parts = [cfg.mode, outputs.slug(outputs.describe(cfg)), str(cfg.sampling.seed)]
    parts += [f"{key.split('.')[-1]}{value}" for key, value in job.matrix.items() if key not in ("prompt", "seed")]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts))


def config_hash(resolved: Resolved) -> str:
    """What a job asks for, with the content of its input files (a changed image under the same
    name is another job); outputs with the same hash are done (overwrite is not part of it)."""
    config = resolved.config.model_dump(mode="json")
    config["output"].pop("overwrite", None)
    digests = {name: _input_digest(resolved.config.inputs.get(name)) for name in input_fields()}
    # Keyframe images and conditioning clips (LTX) are input files too.
    for index, condition in enumerate(resolved.config.inputs.conditions or []):
        digests[f"conditions.{index}"] = _input_digest(condition.image or condition.video)
    identity = {"config": config, "inputs": {k: v for k, v in digests.items() if v is not None}}
    return hashlib.sha256(json.dumps(identity if identity["inputs"] else config, sort_keys=True).encode()).hexdigest()


def _input_digest(ref: str | list[str] | None) -> str | None:
    """sha256 of a local input file (or frames folder); None for URLs and missing files (the job
    fails when it runs, and its hash changes once the file appears). A list (reference images)
    has one digest of its files' digests."""
    if isinstance(ref, list):
        parts = [_input_digest(one) for one in ref]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest() if any(parts) else None
    if not ref or "://" in ref:
        return None
    from vidgen.io import media

    path = Path(ref).expanduser()
    try:
        return media.sha256(path) if path.exists() else None
    except OSError:
        return None


def prepare(
    jobs: list[Job],
    *,
    mode: str,
    presets: list[str],
    out: Path,
    assignments: list[str],
    layers: list[Layer] | None = None,
    grants: trust.Grants | None = None,
    folder: Path | None = None,
    memory_check: bool = True,
) -> list[Job]:
    """Resolve and check every job without loading weights or reading inputs; sets `error`.
    `layers` (a single-run command's flags, for --prompts-file) go under each job's own.

    The manifest is a file like any other (vidgen/trust.py): its inputs must lie in `folder`
    (the manifest's own) or be allowed by `grants.allow_inputs`, it cannot allow pickles, and
    no two jobs may write the same file. `memory_check` is off for --dry-run."""
    grants = grants or trust.Grants()
    shared = list(layers or [])
    writes: dict[str, Job] = {}
    _count_occurrences(jobs)
    for job in jobs:
        try:
            job.resolved, plan = _resolve(job, mode, presets, out, assignments, shared, grants, folder, memory_check)
            mine = _writes(plan)
            for key, shown in mine.items():
                if key in writes:
                    raise ConfigError(
                        f"writes the same output as {writes[key].where} (id {writes[key].id}): {shown}; every job "
                        "needs its own `id` (names that differ only in case or format collide too)."
                    )
            writes.update(dict.fromkeys(mine, job))
            job.config_hash = config_hash(job.resolved)
        except VidgenError as exc:
            job.resolved, job.error = None, str(exc)
        except (TypeError, AttributeError) as exc:  # a manifest value of the wrong shape
            job.resolved, job.error = None, f"not a valid job ({exc})."
    return jobs


def _resolve(
    job: Job,
    mode: str,
    presets: list[str],
    out: Path,
    assignments: list[str],
    shared: list[Layer],
    grants: Any,
    folder: Path | None,
    memory_check: bool,
) -> tuple[Resolved, Any]:
    """One job's config and plan, checked like a single run's (see vidgen/cli/_run.guard)."""
    from vidgen.run import generate

    job_presets, layer, job_sets = _layer(job)
    job_mode = job.data.get("mode", mode)
    if not isinstance(job_mode, str) or job_mode not in families.DEFAULT_PRESETS:
        raise ConfigError(f"mode {job_mode!r}: choose one of {', '.join(families.DEFAULT_PRESETS)}.")
    stack = [*shared, layer]
    if not any(item.data.get("sampling", {}).get("seed") is not None for item in stack):
        stack.append(Layer("batch:seed", {"sampling": {"seed": _seed(job)}}, "a seed fixed by the job"))
    if assignments:
        stack.append(set_layer(assignments))
    if job_sets:
        # The job's own `set:` is the manifest's word, not the command line's: labelled as the job.
        stack.append(Layer(layer.label, dotted(job_sets, f"{job.where} set:"), layer.origin))
    stack.append(Layer("batch:output", {"output": {"overwrite": True}}, "the batch"))
    chosen = job_presets or presets
    resolved = resolve(job_mode, chosen, stack, families.defaults_layer, families.DEFAULT_PRESETS[job_mode])
    trust.check_skip(resolved.config, grants.skip_memory_check)
    if resolved.config.optimization.gpus > 1:
        raise ConfigError(
            "--gpus splits one video over GPUs (vidgen t2v/i2v); a batch spreads its jobs over GPUs with "
            "--ray or accelerate launch instead."
        )
    # Before the id (a slug of the prompt) and any planning: prompts and sizes within limits.
    trust.check_cost(resolved.config)
    job.id = _job_id(job, resolved)
    target = Layer("batch:out", {"output": {"path": str(out / f"{job.id}.{{ext}}")}}, "--out and the job id")
    resolved = resolve(job_mode, chosen, [*stack, target], families.defaults_layer, families.DEFAULT_PRESETS[job_mode])
    trust.check_pickles(resolved)
    trust.check_inputs(resolved, {layer.label: folder or Path.cwd()}, grants.allow_inputs)
    plan = generate.plan(resolved, read_inputs=False)
    if memory_check:
        trust.check_memory(plan, grants.skip_memory_check)
    return resolved, plan


def _writes(plan: Any) -> dict[str, Path]:
    """Every file or folder a job's plan writes, keyed so that paths a case-insensitive file
    system (macOS, Windows) would treat as one are equal."""
    cfg = plan.resolved.config
    # The video, every file asked for beside it, and where a failed decode would keep latents.
    paths = [
        p
        for item in plan.items
        for p in (item.path, *outputs.requested(cfg, item.path).values(), item.latents)
        if p is not None
    ]
    return {os.path.abspath(path).casefold(): path for path in paths}


# -- running --------------------------------------------------------------------------------


def group_key(resolved: Resolved) -> str:
    """Which pipeline a job needs: jobs with the same key run on one loaded pipeline, so a batch
    orders (`share`) and hands out (vidgen/raybatch.py) its jobs by it."""
    cfg = resolved.config.model_dump(mode="json")
    # The prompt enhancer runs (and is freed) before the pipeline loads: it shapes no pipeline.
    cfg["model"].pop("enhancer", None)
    # Fields that shape the loaded pipeline (its setup), beyond the model and optimization sections.
    shape = {name: cfg["sampling"].get(name) for name in sorted(families.setup_fields(cfg["model"]["family"]))}
    if cfg["optimization"]["cache"]:
        # A cache hook counts the steps it was set up for (MagCache resamples its ratios to them).
        shape["num_inference_steps"] = cfg["sampling"]["num_inference_steps"]
    # A family may run another pipeline class for some inputs (LTX-Video keyframes).
    family = families.get(resolved.config.model.family or "")
    shape["pipeline"] = family.pipeline_name(resolved.config)
    # A modular pipeline's inputs may choose its workflow, and with it what loads (MiniMax-H3's
    # references run another transformer).
    shape["workflow"] = workflow(family, resolved.config)
    # The preview decoder is loaded beside the pipeline for each job; it shapes nothing in it.
    model = {key: value for key, value in cfg["model"].items() if key != "preview_decoder"}
    return json.dumps([cfg["mode"], model, cfg["optimization"], shape], sort_keys=True)


def _done(job: Job) -> bool:
    """The job's outputs exist, its sidecars say they were made from this config (and these
    inputs), and each output is the file its sidecar describes: a truncated, emptied or
    replaced video, or a frames folder missing a frame, is not done."""
    from vidgen.run import generate

    assert job.resolved is not None
    plan = generate.plan(job.resolved, read_inputs=False)
    for item in plan.items:
        if not (item.path.exists() and item.sidecar.exists()):
            return False
        try:
            data = json.loads(item.sidecar.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return False
        if not isinstance(data, dict) or data.get("batch", {}).get("config_hash") != job.config_hash:
            return False
        if not _matches(item.path, data.get("output") or {}):
            log.warning("%s does not match its sidecar; job %s runs again.", item.path, job.id)
            return False
    return True


def _matches(path: Path, output: dict[str, Any]) -> bool:
    """Size (cheap, first) and sha256 of a file; frame count and sha256 of a frames folder."""
    from vidgen.io import media

    try:
        if path.is_dir():
            if len([p for p in path.iterdir() if p.suffix == ".png"]) != output.get("frames"):
                return False
        elif "bytes" in output and path.stat().st_size != output["bytes"]:
            return False
        return media.sha256(path) == output.get("sha256")
    except OSError:
        return False


def _release(loaded: Any) -> None:
    """Free a group's pipeline before loading the next one."""
    del loaded
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def share(jobs: list[Job], rank: int, count: int) -> list[Job]:
    """This worker's jobs: the valid ones in group order, cut into `count` contiguous runs, so
    each worker loads as few models as possible and every worker agrees on the split."""
    runnable = [job for job in jobs if job.error is None]
    order: dict[str, int] = {}
    for job in runnable:
        assert job.resolved is not None
        order.setdefault(group_key(job.resolved), len(order))
    runnable.sort(key=lambda job: (order[group_key(job.resolved)], job.index))  # type: ignore[arg-type]
    size, extra = divmod(len(runnable), count)
    start = rank * size + min(rank, extra)
    return runnable[start : start + size + (1 if rank < extra else 0)]


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` (`--shard`): shard I of N, counted from 0."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    index, count = (int(match.group(1)), int(match.group(2))) if match else (-1, 0)
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text}: write I/N with 0 <= I < N, e.g. --shard 0/4 ... --shard 3/4.")
    return index, count


def shard_of(job: Job, count: int) -> int:
    """Which of `count` shards runs the job: a hash of its identity (its id, which is its
    `id:` or made of its mode, prompt, seed and swept values; the job's text when it has
    none, for an invalid one), never its position, so adding or moving jobs moves no other
    job to another shard, and every process handed the same N agrees without talking."""
    identity = job.id or f"{_content(job)}#{job.occurrence}"
    return int(hashlib.sha256(identity.encode()).hexdigest()[:16], 16) % count


def invalid_rows(jobs: list[Job]) -> list[dict[str, Any]]:
    return [report_row(job, "invalid", error=("ConfigError", job.error)) for job in jobs if job.error is not None]


def run(
    runnable: list[Job],
    *,
    force: bool,
    fail_fast: bool,
    progress: Any = None,
    on_event: Callable[..., None] | None = None,
    worker: int = 0,
    on_row: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run jobs (in the order `share` gives), reusing a pipeline while the group stays the
    same; returns one report row per job. `on_event(kind, **fields)` hears job_start, skipped,
    claimed, done and failed. A job is claimed before it runs, so batches sharing a manifest and
    --out run each job once."""

    def event(kind: str, **fields: Any) -> None:
        if on_event is not None:
            on_event(kind, **fields)
        if on_row is not None and kind in ("skipped", "claimed", "done", "failed"):
            on_row(list(jobs.rows.values()))

    jobs = JobRunner(progress, event, worker)
    stop = False
    groups = _group_runs(runnable)
    for position, job in enumerate(runnable, start=1):
        assert job.resolved is not None
        if stop:
            jobs.rows[job.index] = report_row(job, "not run")
            continue
        # The first job of a group brings the rest, so their prompts are enhanced with one LLM
        # load before the group's pipeline loads.
        peers = runnable[position : groups[position - 1]] if position - 1 in groups else []
        row = jobs.run(job, position, len(runnable), force=force, peers=peers)
        stop = fail_fast and row["status"] == "failed"
    jobs.close()
    return [jobs.rows[job.index] for job in runnable]


def _group_runs(runnable: list[Job]) -> dict[int, int]:
    """Where each group's run of jobs starts -> where it ends (`share` keeps a group together)."""
    keys = [group_key(job.resolved) for job in runnable]  # type: ignore[arg-type]
    runs: dict[int, int] = {}
    start = 0
    for index in range(1, len(keys) + 1):
        if index == len(keys) or keys[index] != keys[start]:
            runs[start] = index
            start = index
    return runs


class JobRunner:
    """Runs a batch's jobs one at a time in this process; the local batch and each Ray worker
    (vidgen/raybatch.py) use it. It skips jobs already done, holds each job's claim while it
    runs (so batches sharing a manifest and --out run a job once), and keeps the loaded
    pipeline while consecutive jobs share a group (`group_key`).

    `event(kind, **fields)` hears job_start, skipped, claimed, done and failed. `rows` holds
    each job's report row, set before the event that announces it, so a listener (a growing
    --report) already sees it."""

    def __init__(self, progress: Any = None, event: Callable[..., None] | None = None, worker: int = 0) -> None:
        self.progress = progress
        self.event = event or (lambda kind, **fields: None)
        self.worker = worker
        self.rows: dict[int, dict[str, Any]] = {}
        self._current: tuple[str, Any] | None = None  # (group key, loaded pipeline)
        self._prompts: dict[str, Any] = {}  # enhance.key -> the rewrite made for a job of this runner

    def run(
        self,
        job: Job,
        position: int,
        total: int,
        *,
        force: bool,
        take_over: bool = False,
        peers: list[Job] | tuple[Job, ...] = (),
    ) -> dict[str, Any]:
        """Run one job (`position` of `total`, for the log) unless it is done or another worker
        holds its claim; returns its report row. `take_over` first removes the claim: its
        holder is known to be dead (Ray saw its worker die), maybe on another node whose
        claims would only expire after minutes. `peers`: the jobs of its group still to run,
        whose prompts --enhance-prompt rewrites with this one's (one LLM load)."""
        if (skipped := self._skip(job, force)) is not None:
            return skipped
        if take_over:
            drop_claim(job)
        with claimed(job) as mine:
            if not mine:
                # Another batch on this manifest and --out (another shell or machine) runs it.
                return self._report(job, report_row(job, "claimed"), "claimed")
            # Finished by another batch between the check and the claim.
            if (skipped := self._skip(job, force)) is not None:
                return skipped
            # Peers whose prompts an LLM rewrites, and that are not done already.
            waiting = [peer for peer in peers if _request(peer) is not None and (force or not _done(peer))]
            return self._run_claimed(job, position, total, waiting)

    def close(self) -> None:
        """Free the pipeline kept for the next job."""
        if self._current is not None:
            _release(self._current[1])
            self._current = None

    def _skip(self, job: Job, force: bool) -> dict[str, Any] | None:
        row = done_row(job, force)
        return None if row is None else self._report(job, row, "skipped")

    def _report(self, job: Job, row: dict[str, Any], kind: str, **fields: Any) -> dict[str, Any]:
        self.rows[job.index] = row
        self.event(kind, id=job.id, index=job.index, **fields)
        return row

    def _run_claimed(self, job: Job, position: int, total: int, peers: list[Job]) -> dict[str, Any]:
        """Run a job whose claim this worker holds, on the kept pipeline when its group is the
        kept one's; any failure, even a vidgen bug, fails only this job."""
        from vidgen.run import generate

        assert job.resolved is not None
        key = group_key(job.resolved)
        if self._current is not None and self._current[0] != key:
            self.close()
        start = time.perf_counter()
        log.info("[%s/%s] %s", position, total, job.id)
        stopping.check()  # a Ctrl-C or SIGTERM dropped by a fork stops the batch before the next job
        self.event("job_start", id=job.id, index=job.index)
        try:
            with oom_guard(None, lambda exc: f"the process ran out of memory ({_first_line(exc)})"):
                plan = generate.plan(job.resolved)
                enhanced = self._enhanced(plan, peers)
                extra = {
                    "batch": {"id": job.id, "config_hash": job.config_hash, "index": job.index, "worker": self.worker}
                }
                if job.matrix:
                    # Which listed job this variant is of, and its swept values: a gallery lays
                    # the variants out as a grid of them.
                    extra["batch"].update(sweep=f"{job.where}", matrix=job.matrix)
                results = generate.execute(
                    plan, self.progress, extra, loaded=self._current[1] if self._current else None, enhanced=enhanced
                )
        except Exception as error:
            log.warning("job %s (%s) failed: %s", job.index, job.id, error)
            failure = (type(error).__name__, str(error))
            row = report_row(job, "failed", error=failure, seconds=start)
            return self._report(job, row, "failed", error={"class": failure[0], "message": failure[1]})
        self._current = (key, results[0].loaded)
        record = results[0].record
        outputs = [str(result.path) for result in results]
        row = report_row(
            job, "done", outputs=outputs, seconds=start, peak=record["peak_memory_bytes"], seed=record["seed"]
        )
        return self._report(job, row, "done", outputs=row["outputs"], seconds=row["seconds"])

    def _enhanced(self, plan: Any, peers: list[Job]) -> Any:
        """A job's prompt rewritten by its LLM (--enhance-prompt), together with its peers' that
        share the LLM: loaded once, and freed before the group's pipeline loads. A pipeline kept
        from before is freed first, so the two never share the memory."""
        from vidgen.run import enhance

        asked = plan.asked
        if asked is None or asked["enhancer"] == enhance.PIPELINE:
            return None  # none, or the pipeline's own model (LTX-2) rewrites it once loaded
        allow = plan.resolved.config.model.allow_pickle
        known = self._prompts.get(enhance.key(asked, allow))
        if known is not None:
            return known
        if self._current is not None:
            log.info("freeing the loaded pipeline to run the prompt enhancer")
            self.close()
        others = [
            _request(peer) for peer in peers if peer.resolved and peer.resolved.config.model.allow_pickle == allow
        ]
        asks = [asked, *(other for other in others if other is not None)]
        self._prompts.update(enhance.with_llm(asks, plan.device, allow, self.progress))
        return self._prompts[enhance.key(asked, allow)]


def _request(job: Job) -> dict[str, Any] | None:
    """What a job asks the prompt enhancer, where its LLM rewrites it (None otherwise)."""
    from vidgen.run import enhance

    if job.resolved is None:
        return None
    cfg = job.resolved.config
    family = families.get(cfg.model.family or "")
    asked = enhance.request(cfg, family, cfg.sampling.seed or 0)
    return asked if asked is not None and asked["enhancer"] != enhance.PIPELINE else None


def _first_line(exc: BaseException) -> str:
    """An exception's first line for a one-line report, or its repr when it has no text."""
    return str(exc).splitlines()[0] if str(exc) else repr(exc)


# -- claims: one job, one worker, across shells and machines ------------------------------------

# A claim of another host is taken over when its holder has not refreshed it for this long.
CLAIM_EXPIRY_S = 600
CLAIM_HEARTBEAT_S = 60


def _claim_path(job: Job) -> Path:
    assert job.resolved is not None
    return Path(job.resolved.config.output.path).parent / f".{job.id}.claim"


def drop_claim(job: Job) -> None:
    """Remove a job's claim whose holder is known to be dead (Ray saw its worker die, maybe on
    another node whose claims would only expire after CLAIM_EXPIRY_S)."""
    with contextlib.suppress(OSError):
        _claim_path(job).unlink()


@contextmanager
def claimed(job: Job) -> Iterator[bool]:
    """Hold the job's claim file (created with O_EXCL; holds host, PID and time) while it runs;
    yields False when a live worker holds it. A dead worker's claim (its PID gone on this host,
    or not refreshed for CLAIM_EXPIRY_S elsewhere) is taken over."""
    path = _claim_path(job)
    mine = _take(path)
    if not mine:
        yield False
        return
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, stop), daemon=True)
    beat.start()
    try:
        yield True
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            path.unlink()


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(CLAIM_HEARTBEAT_S):
        with contextlib.suppress(OSError):
            os.utime(path)


def _take(path: Path) -> bool:
    from vidgen.io import media

    host, pid = media.owner_tag().split(".")
    body = json.dumps({"host": host, "pid": int(pid), "time": time.time()}).encode()
    for _ in range(3):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not _expire(path):
                return False
            continue
        except OSError as exc:
            raise media.write_error(path.parent, exc, "cannot write to") from None
        with os.fdopen(handle, "wb") as claim:
            claim.write(body)
        return True
    return False


def _expire(path: Path) -> bool:
    """Remove a dead worker's claim; False if its holder may be alive. The claim is first renamed
    to a name of ours (only one worker's rename succeeds), then checked again: a live claim
    that a faster worker made meanwhile is put back."""
    from vidgen.io import media

    held = _holder(path)
    if held is None or media.alive(held):
        return False
    aside = path.with_name(f"{path.name}.{media.owner_tag()}.expired")
    try:
        os.rename(path, aside)
    except OSError:
        return True  # someone else moved it: try the exclusive create again
    if _holder(aside) is None or media.alive(_holder(aside)):  # not the dead claim we read: give it back
        with contextlib.suppress(OSError):
            os.link(aside, path)
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    return True


def sweep(out: Path) -> None:
    """At the start of a batch: leftovers of dead workers in --out (temporary files, `.old-`
    folders, claims), also when every job turns out to be done and nothing else would look."""
    from vidgen.io import media

    if not out.is_dir():
        return
    media.sweep(out)
    for claim in out.glob(".*.claim"):
        _expire(claim)


def _holder(path: Path) -> int | None:
    """The PID holding a claim on this host; -1 for a dead one (another host's, expired, or
    unreadable and old); None when it cannot be judged yet."""
    from vidgen.io import media

    age = 0.0  # unreadable: judged young until its age is known
    try:
        age = time.time() - path.stat().st_mtime
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        data = {}
    host = media.owner_tag().split(".")[0]
    if isinstance(data, dict) and data.get("host") == host and isinstance(data.get("pid"), int):
        return data["pid"]
    # Another host's (or a claim being written): judged by its heartbeat.
    return -1 if age > CLAIM_EXPIRY_S else os.getpid()


def done_row(job: Job, force: bool = False) -> dict[str, Any] | None:
    """The "skipped" report row of a job whose outputs are already done (see `_done`), or None
    when the job must run (always None with --force)."""
    if force or not _done(job):
        return None
    return report_row(job, "skipped", outputs=_outputs(job))


def _outputs(job: Job) -> list[str]:
    from vidgen.run import generate

    assert job.resolved is not None
    return [str(item.path) for item in generate.plan(job.resolved, read_inputs=False).items]


def report_row(
    job: Job,
    status: str,
    *,
    outputs: list[str] | None = None,
    error: tuple[str, str] | None = None,
    seconds: float | None = None,
    peak: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """A job's line in the batch report (--report, --json): its status (done, skipped,
    claimed, failed, invalid or not run), outputs, seed, error and time. `seconds` is the
    job's start on the perf_counter clock."""
    config_seed = job.resolved.config.sampling.seed if job.resolved is not None else None
    return {
        "index": job.index,
        "where": job.where,
        "id": job.id or None,
        "status": status,
        "outputs": outputs or [],
        "seed": seed if seed is not None else config_seed,
        "config_hash": job.config_hash or None,
        "error": {"class": error[0], "message": error[1]} if error else None,
        "seconds": round(time.perf_counter() - seconds, 3) if seconds is not None else 0.0,
        "peak_memory_bytes": peak,
    }
