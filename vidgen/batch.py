"""Many jobs in one process: manifests, validation up front, pipelines loaded once per group,
resume by config hash, and failures that stop only their own job.

A manifest is JSONL (one job object per line), YAML (`defaults:`, `jobs:` and an optional
`matrix:` whose cartesian product multiplies every job), or plain text (one prompt per line).
A job uses the command-line names (`prompt`, `image`, `frames`, `steps`, `guidance`, `seed`, ...),
dotted config paths (`sampling.guidance_scale`), config sections, `preset` and `id`.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vidgen import families
from vidgen.config import Layer, Resolved, resolve
from vidgen.config.flags import FLAGS, from_flag_form
from vidgen.config.layers import set_layer
from vidgen.errors import ConfigError, InputError, OutOfMemory, VidgenError

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


# -- reading manifests ------------------------------------------------------------------------


def read_manifest(source: str, text: str | None = None) -> list[Job]:
    """Jobs from a manifest file (or `-`, stdin, whose text is passed in)."""
    if text is None:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"manifest {source} does not exist.")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read manifest {source}: {exc}.") from None
    suffix = Path(source).suffix.lower()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if suffix in (".yaml", ".yml"):
        return _yaml_jobs(source, text)
    if suffix == ".jsonl" or (suffix != ".txt" and first.startswith("{")):
        return _jsonl_jobs(source, text)
    jobs: list[Job] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            jobs.append(Job(len(jobs) + 1, f"line {number}", {"prompt": line.strip()}))
    return jobs


def _jsonl_jobs(source: str, text: str) -> list[Job]:
    jobs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source} line {number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source} line {number}: a job must be a JSON object.")
        jobs.append(Job(len(jobs) + 1, f"line {number}", data))
    return jobs


def _yaml_jobs(source: str, text: str) -> list[Job]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({getattr(exc, 'problem', exc)}).") from None
    if isinstance(data, list):
        data = {"jobs": data}
    if not isinstance(data, dict) or set(data) - {"defaults", "jobs", "matrix"}:
        raise ConfigError(f"{source}: a YAML manifest has `defaults:`, `jobs:` and `matrix:` only.")
    defaults = data.get("defaults") or {}
    listed = data.get("jobs") or [{}]
    matrix = data.get("matrix") or {}
    if not isinstance(defaults, dict) or not isinstance(listed, list) or not isinstance(matrix, dict):
        raise ConfigError(f"{source}: defaults and matrix must be mappings, jobs a list.")
    for key, values in matrix.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: matrix.{key} must be a non-empty list.")
    jobs = []
    for number, job in enumerate(listed, start=1):
        if not isinstance(job, dict):
            raise ConfigError(f"{source}: jobs[{number - 1}] must be a mapping.")
        for combo in itertools.product(*matrix.values()):
            values = dict(zip(matrix, combo, strict=True))
            jobs.append(Job(len(jobs) + 1, f"job {number}", {**defaults, **job, **values}, matrix=values))
    return jobs


# -- from a job to a validated config -----------------------------------------------------------


def _layer(job: Job) -> tuple[list[str], Layer, list[str]]:
    """(presets, the job's config layer, --set assignments)."""
    data: dict[str, Any] = {}
    for key, value in job.data.items():
        if key in SPECIAL:
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
    assignments = [f"{k}={json.dumps(v)}" for k, v in (job.data.get("set") or {}).items()]
    return presets, Layer(label=f"job:{job.where}", data=data, origin=job.where), assignments


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _seed(job: Job) -> int:
    """A seed fixed by the job's own content, so reruns and any split across workers agree.
    Matrix values are left out: the variants of one job share its seed, so they compare."""
    base = {key: value for key, value in job.data.items() if key not in job.matrix}
    text = json.dumps(base, sort_keys=True, default=str) + f"#{job.where}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _job_id(job: Job, resolved: Resolved) -> str:
    from vidgen import outputs

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
    """What a job asks for; outputs with the same hash are done (overwrite is not part of it)."""
    config = resolved.config.model_dump(mode="json")
    config["output"].pop("overwrite", None)
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def prepare(
    jobs: list[Job],
    *,
    mode: str,
    presets: list[str],
    out: Path,
    assignments: list[str],
    layers: list[Layer] | None = None,
) -> list[Job]:
    """Resolve and check every job without loading weights or reading inputs; sets `error`.
    `layers` (a single-run command's flags, for --prompts-file) go under each job's own."""
    shared = list(layers or [])
    from vidgen import generate

    seen: dict[str, Job] = {}
    for job in jobs:
        try:
            job_presets, layer, job_sets = _layer(job)
            job_mode = job.data.get("mode", mode)
            if job_mode not in families.DEFAULT_PRESETS:
                raise ConfigError(f"mode {job_mode!r}: choose one of {', '.join(families.DEFAULT_PRESETS)}.")
            stack = [*shared, layer]
            if not any(item.data.get("sampling", {}).get("seed") is not None for item in stack):
                stack.append(Layer("batch:seed", {"sampling": {"seed": _seed(job)}}, "a seed fixed by the job"))
            sets = assignments + job_sets
            if sets:
                stack.append(set_layer(sets))
            stack.append(Layer("batch:output", {"output": {"overwrite": True}}, "the batch"))
            resolved = resolve(
                job_mode, job_presets or presets, stack, families.defaults_layer, families.DEFAULT_PRESETS[job_mode]
            )
            job.id = _job_id(job, resolved)
            target = Layer("batch:out", {"output": {"path": str(out / f"{job.id}.{{ext}}")}}, "--out and the job id")
            resolved = resolve(
                job_mode,
                job_presets or presets,
                [*stack, target],
                families.defaults_layer,
                families.DEFAULT_PRESETS[job_mode],
            )
            generate.plan(resolved, read_inputs=False)
            if job.id in seen:
                raise ConfigError(
                    f"writes the same output as {seen[job.id].where} (id {job.id}); every job needs its own `id`."
                )
            seen[job.id] = job
            job.resolved = resolved
            job.config_hash = config_hash(resolved)
        except VidgenError as exc:
            job.error = str(exc)
    return jobs


# -- running --------------------------------------------------------------------------------


def _group_key(resolved: Resolved) -> str:
    cfg = resolved.config.model_dump(mode="json")
    # Fields that shape the loaded pipeline (its setup), beyond the model and optimization sections.
    shape = {name: cfg["sampling"].get(name) for name in sorted(families.setup_fields())}
    return json.dumps([cfg["mode"], cfg["model"], cfg["optimization"], shape], sort_keys=True)


def _done(job: Job) -> bool:
    """The job's video and sidecar exist and the sidecar says they were made from this config."""
    from vidgen import generate

    assert job.resolved is not None
    plan = generate.plan(job.resolved, read_inputs=False)
    for item in plan.items:
        if not (item.path.exists() and item.sidecar.exists()):
            return False
        try:
            recorded = json.loads(item.sidecar.read_text(encoding="utf-8")).get("batch", {})
        except (OSError, json.JSONDecodeError):
            return False
        if recorded.get("config_hash") != job.config_hash:
            return False
    return True


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
        order.setdefault(_group_key(job.resolved), len(order))
    runnable.sort(key=lambda job: (order[_group_key(job.resolved)], job.index))  # type: ignore[arg-type]
    size, extra = divmod(len(runnable), count)
    start = rank * size + min(rank, extra)
    return runnable[start : start + size + (1 if rank < extra else 0)]


def invalid_rows(jobs: list[Job]) -> list[dict[str, Any]]:
    return [_row(job, "invalid", error=("ConfigError", job.error)) for job in jobs if job.error is not None]


def run(
    runnable: list[Job],
    *,
    force: bool,
    fail_fast: bool,
    progress: Any = None,
    on_event: Callable[..., None] | None = None,
    worker: int = 0,
) -> list[dict[str, Any]]:
    """Run jobs (in the order `share` gives), reusing a pipeline while the group stays the
    same; returns one report row per job. `on_event(kind, **fields)` hears job_start, skipped,
    done and failed."""
    from vidgen import generate

    def event(kind: str, **fields: Any) -> None:
        if on_event is not None:
            on_event(kind, **fields)

    rows: dict[int, dict[str, Any]] = {}
    current: tuple[str, Any] | None = None
    stop = False
    for position, job in enumerate(runnable, start=1):
        assert job.resolved is not None
        if stop:
            rows[job.index] = _row(job, "not run")
            continue
        if not force and _done(job):
            rows[job.index] = _row(job, "skipped", outputs=_outputs(job))
            event("skipped", id=job.id, index=job.index)
            continue
        key = _group_key(job.resolved)
        if current is not None and current[0] != key:
            _release(current[1])
            current = None
        start = time.perf_counter()
        log.info("[%s/%s] %s", position, len(runnable), job.id)
        event("job_start", id=job.id, index=job.index)
        try:
            plan = generate.plan(job.resolved)
            extra = {"batch": {"id": job.id, "config_hash": job.config_hash, "index": job.index, "worker": worker}}
            results = generate.execute(plan, progress, extra, loaded=current[1] if current else None)
        except Exception as exc:  # one job's failure, even a vidgen bug, stops only that job
            error: Exception = exc
            if isinstance(exc, MemoryError):
                error = OutOfMemory(str(exc) or "the process ran out of memory")
            rows[job.index] = _row(job, "failed", error=(type(error).__name__, str(error)), seconds=start)
            log.warning("job %s (%s) failed: %s", job.index, job.id, error)
            event("failed", id=job.id, index=job.index, error={"class": type(error).__name__, "message": str(error)})
            stop = fail_fast
            continue
        current = (key, results[0]["loaded"])
        record = results[0]["record"]
        rows[job.index] = _row(
            job,
            "done",
            outputs=[str(result["path"]) for result in results],
            seconds=start,
            peak=record["peak_memory_bytes"],
            seed=record["seed"],
        )
        event(
            "done", id=job.id, index=job.index, outputs=rows[job.index]["outputs"], seconds=rows[job.index]["seconds"]
        )
    if current is not None:
        _release(current[1])
    return [rows[job.index] for job in runnable]


def _outputs(job: Job) -> list[str]:
    from vidgen import generate

    assert job.resolved is not None
    return [str(item.path) for item in generate.plan(job.resolved, read_inputs=False).items]


def _row(
    job: Job,
    status: str,
    *,
    outputs: list[str] | None = None,
    error: tuple[str, str] | None = None,
    seconds: float | None = None,
    peak: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
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
