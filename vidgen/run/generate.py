"""One generation command end to end: plan (no weights) -> load once -> run each seed -> write.

This is the only module that composes the core; the CLI calls `plan` and `execute`.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen import __version__, families
from vidgen.browse import history
from vidgen.config import Resolved
from vidgen.config.kinds import OUTPUT_KINDS
from vidgen.config.schema import OptimizationConfig
from vidgen.core.errors import ConfigError, InputError, OutOfMemory, WriteError, out_of_memory
from vidgen.core.progress import NullProgress, Progress
from vidgen.families.base import Caught, Family, denoisers, media_arg, pipeline_record, run_note
from vidgen.io import inputs, media, outputs, sidecar
from vidgen.models import optimize
from vidgen.run import enhance, finish, latent_upsample, live, memory, warm

log = logging.getLogger("vidgen")


@dataclass
class Planned:
    seed: int
    path: Path
    sidecar: Path
    control: Path | None = None  # where --save-control writes the control maps
    latents: Path | None = None  # where the final latents go (--save-latents, or a failed decode)
    # A video a dead vidgen wrote without its sidecar: this run may replace it without --overwrite.
    orphan: bool = False


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
    memory: memory.MemoryPlan | None = None
    # Set when --vram planned for a card this machine does not have (a --dry-run only).
    planned_for: str | None = None
    # --enhance-prompt: what decides the rewrite (enhance.request), and the rewrite when it is
    # known before anything loads (a replay reusing the recorded one).
    asked: dict[str, Any] | None = None
    enhanced: enhance.Enhanced | None = None
    # --interpolate / --upscale: the steps run on the frames before they are encoded.
    finish: list[finish.Step] | None = None


def plan(resolved: Resolved, read_inputs: bool = True, recorded: tuple[Any, str] | None = None) -> Plan:
    """Everything that can be decided and checked before loading weights, including reading
    and preparing the input image or video (unless `read_inputs` is False: a batch validates
    every job first and reads each job's inputs when it runs). `recorded`: a sidecar's
    prompt_enhancement block and the file it is from, reused when it answers this run's request."""
    from vidgen.models.loader import check_early, locate_all, resolve_device, resolve_dtype

    cfg = resolved.config
    family = families.check(cfg)
    enhance.check(resolved, family)
    found = locate_all(cfg, family, build=False)
    check_early(cfg, family, found)
    live.check(cfg, family, found)
    device = resolve_device(cfg.optimization.device)
    # --vram plans for a GPU; on a machine without one that plan can be shown, not run.
    planned_for = "cuda" if cfg.optimization.vram_gb is not None and not device.startswith("cuda") else None
    optimize.check(cfg.optimization, planned_for or device)
    if cfg.optimization.gpus > 1 or cfg.optimization.context_parallel != "ulysses" or cfg.optimization.ring_degree:
        from vidgen.models import parallel

        parallel.check(cfg.optimization, planned_for or device, planning=planned_for is not None)
        device = parallel.device(device)  # this rank's own GPU
    if cfg.optimization.quantize and found["model"][0] == "file":
        raise ConfigError("--quantize loads a diffusers folder or Hub repo; a single-file --model cannot be quantized.")
    if cfg.optimization.attention_backend:
        optimize.check_backend(cfg.optimization.attention_backend)
    fmt = outputs.output_format(cfg)
    codec, crf = media.encoding(fmt, cfg.output.codec, cfg.output.crf)
    _check_audio_format(family, cfg, fmt)
    _check_hdr(family, cfg, fmt)
    if family.modes[cfg.mode].hdr:
        codec, crf = media.encoding(fmt, "h265", cfg.output.crf)
    drawn = cfg.sampling.seed is None
    base = secrets.randbelow(2**32) if drawn else cfg.sampling.seed
    seeds = [base + index for index in range(cfg.sampling.num_videos)]
    paths = outputs.render(cfg, fmt, seeds)
    items = [
        Planned(
            seed,
            path,
            outputs.beside("sidecar", path),
            outputs.beside("control", path) if cfg.output.save_control else None,
            outputs.beside("latents", path) if family.decoding.latents else None,
        )
        for seed, path in zip(seeds, paths, strict=True)
    ]
    for item in items:  # names the file system cannot hold: refused now, not when a write fails
        previewed = outputs.beside("live_preview", item.path) if cfg.output.live_preview else None
        for target in (
            item.path,
            item.sidecar,
            item.control,
            item.latents if cfg.output.save_latents else None,
            previewed,
        ):
            if target is not None:
                media.check_name(target)
    if not cfg.output.overwrite:
        for item in items:
            _check_free(item, cfg)
    asked = enhance.request(cfg, family, seeds[0])
    reused = enhance.reuse(recorded[0], asked, recorded[1]) if recorded else None
    # The LLM is checked now, before the inputs are read and anything loads.
    llm = enhance.check_enhancer(cfg, family) if asked is not None and reused is None else None
    fps = cfg.output.fps or 8
    prepared = inputs.prepare(cfg, family, fps) if read_inputs else inputs.Prepared(media={}, record={})
    if prepared.frames is not None:
        family.check_frames(cfg, prepared.frames)
    frames = prepared.frames if cfg.mode == "v2v" else None
    dtype = resolve_dtype(cfg.model.dtype, family, planned_for or device)
    target = planned_for or device
    planned = memory.plan(family, cfg, dtype, found, target, frames or cfg.inputs.max_frames, enhancer=llm)
    if planned.rung is not None:
        resolved = memory.planned(resolved, planned.rung)
    made = Plan(resolved, family, device, fmt, codec, crf, fps, drawn, items, prepared, planned, planned_for)
    made.asked, made.enhanced = asked, reused
    made.finish = _plan_finish(cfg, fps, items)
    _fit_finish_tiles(made)
    return made


def _fit_finish_tiles(plan: Plan) -> None:
    """--memory auto: each per-frame upscale without --upscale-tile gets the largest tile that
    fits beside what the chosen plan keeps on the GPU, written into the config (a replay runs
    the same tiles)."""
    room = plan.memory.room_after() if plan.memory is not None else None
    sampling = plan.resolved.config.sampling
    if not plan.finish or room is None or not (sampling.num_frames and sampling.height and sampling.width):
        return
    shapes = finish.shapes(plan.finish, sampling.num_frames, sampling.height, sampling.width, plan.fps)
    chosen = False
    for index, (step, shape) in enumerate(zip(plan.finish, shapes, strict=True), start=1):
        if step.name != "upscale" or step.diffusion or step.spec.tile is not None:
            continue
        tile, fits = finish.fitting_tile(step, shape["before"]["height"], shape["before"]["width"], room)
        step.spec = step.spec.model_copy(update={"tile": tile})
        chosen = True
        if not fits and plan.memory is not None:
            plan.memory.notes.append(
                f"finish step {index} (upscale) is estimated above what is left of the budget even in {tile}-pixel "
                "tiles; a smaller clip or --offload will be needed"
            )
    if chosen:
        plan.resolved = plan.resolved.with_finish([step.spec for step in plan.finish], "memory:auto (upscale tile)")


def _plan_finish(cfg: Any, fps: int, items: list[Planned]) -> list[finish.Step]:
    """The finishing steps, their weights checked, and their factors checked against the size
    the run asks for (when it names one: an input video's length is known only later)."""
    steps = finish.prepare(cfg.output.finish, cfg.model.allow_pickle)
    sampling = cfg.sampling
    if steps and sampling.num_frames and sampling.height and sampling.width:
        finish.shapes(steps, sampling.num_frames, sampling.height, sampling.width, fps)
    for item in items if steps else []:
        media.check_name(outputs.beside("finish", item.path))
    return steps


def finish_price(plan: Plan) -> list[dict[str, Any]] | None:
    """--dry-run: each finishing step's result and cost, from the size the run asks for."""
    sampling = plan.resolved.config.sampling
    if not plan.finish or not (sampling.num_frames and sampling.height and sampling.width):
        return None
    return finish.price(plan.finish, sampling.num_frames, sampling.height, sampling.width, plan.fps)


def _check_audio_format(family: Any, cfg: Any, fmt: str) -> None:
    if family.modes[cfg.mode].audio and cfg.output.audio is not False and fmt not in media.AUDIO_CODECS:
        raise ConfigError(
            f"{family.title} makes sound and {fmt} has no audio track; use --format mp4, webm or png "
            "(png writes audio.wav in the frame folder), or add --no-audio."
        )


def _check_hdr(family: Any, cfg: Any, fmt: str) -> None:
    """HDR families write HDR10 (10-bit HEVC, BT.2020, PQ) in mp4: the one format here that keeps
    light above SDR white and that players and grading tools read as HDR."""
    if not family.modes[cfg.mode].hdr:
        return
    if fmt != "mp4":
        raise ConfigError(f"{family.title} writes HDR10 video, which only mp4 holds here; use --format mp4.")
    if cfg.output.codec not in (None, "h265"):
        raise ConfigError(f"{family.title} writes HDR10 as 10-bit H.265; drop --codec {cfg.output.codec}.")
    if cfg.output.finish:
        raise ConfigError(f"{family.title}'s HDR frames cannot go through --interpolate or --upscale yet; drop them.")


def _check_free(item: Planned, cfg: Any) -> None:
    """Refuse to replace existing files without --overwrite (the video and every output kind the
    run is asked to write beside it), except what a killed run left half-done: its video without
    the sidecar, recognised by the metadata inside the video."""
    item.orphan = orphaned(item.path, item.sidecar)
    if item.orphan:
        log.info("%s has no sidecar (its run was stopped); this run replaces it.", item.path)
        return
    for name, existing in {"video": item.path, **outputs.requested(cfg, item.path)}.items():
        if not existing.exists():
            continue
        if name in OUTPUT_KINDS and OUTPUT_KINDS[name].every and not item.path.exists() and not item.sidecar.exists():
            # A live preview whose run was killed before its video: derived data, replaced.
            log.info("%s is left from a run that was stopped; this run replaces it.", existing)
            continue
        raise WriteError(f"{existing} already exists; pass --overwrite or choose another --out.")


def orphaned(path: Path, side: Path) -> bool:
    """True for a video vidgen wrote whose writer died before writing the sidecar. A writer still
    alive (another shell, between its video and its sidecar) keeps its file."""
    if side.exists():
        return False
    # A png folder carries the metadata in its first frame; videos in their container.
    if not (path.is_dir() or (path.is_file() and path.suffix.lstrip(".").lower() in media.CODECS)):
        return False
    try:
        embedded = media.embedded_metadata(path)
    except InputError:  # metadata far larger than vidgen writes: not one of ours
        return False
    writer = (embedded or {}).get("writer")
    if not isinstance(writer, dict):
        return False
    return writer.get("host") == media.owner_tag().split(".")[0] and not media.alive(int(writer.get("pid", 0)))


def _check_writable(items: list[Planned]) -> None:
    """Prove the output folders can be written before spending time on a model, without
    creating anything yet: a failed run leaves no empty folders behind."""
    for folder in sorted({item.path.parent for item in items}):
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        media.sweep(existing)  # what killed runs left here: their .part files and .old- folders
        probe = existing / f".vidgen-write-test-{os.getpid()}"
        try:
            if not existing.is_dir():
                raise NotADirectoryError(20, "not a folder")
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise media.write_error(folder, exc, "cannot write to") from None


def _generator_record(plan: Plan, seed: int) -> dict[str, Any]:
    """How to seed a plain diffusers run to get the same video."""
    record: dict[str, Any] = {"device": plan.device, "seed": seed}
    if plan.family.modes[plan.resolved.config.mode].seeds_global_rng:
        record["torch_manual_seed"] = seed  # call torch.manual_seed(seed) before the pipeline
    return record


@dataclass
class Result:
    """One written video: its sidecar record, where both went, and the pipeline that made it
    (kept loaded for the next job of a batch)."""

    record: dict[str, Any]
    path: Path
    sidecar: Path
    loaded: Any = None


@dataclass
class _Session:
    """What every video of one execute shares: the run (re-sourced by an out-of-memory step
    down), the loaded pipeline, the environment block, whether it was loaded for this run, and
    the enhanced prompt (--enhance-prompt) the pipeline gets instead of the typed one."""

    resolved: Resolved
    loaded: Any
    environment: tuple[dict[str, Any], dict[str, Any]]
    fresh: bool
    enhanced: enhance.Enhanced | None = None
    previews: live.Decoder | None = None  # what decodes --live-preview's previews
    # Pipeline arguments the family made from the inputs before loading (ConsisID's face embeddings).
    derived: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Outcome:
    result: Any  # runner.RunResult
    call_kwargs: dict[str, Any]
    retries: list[dict[str, Any]]
    preview: live.Session | None = None


def execute(
    plan: Plan,
    progress: Progress | None = None,
    extra: dict[str, Any] | None = None,
    loaded: Any = None,
    enhanced: enhance.Enhanced | None = None,
) -> list[Result]:
    """Load the pipeline once (or use `loaded`, from an earlier job with the same model and
    options), then generate, encode and describe every planned video. `extra` is added to every
    sidecar (e.g. what a replay replayed). With --enhance-prompt the prompt is rewritten first:
    `enhanced` (a batch's, made before its group loaded), the plan's reused one, or the LLM,
    loaded and freed before the pipeline loads; LTX-2 rewrites it with its loaded pipeline."""
    progress = progress or NullProgress()
    keeper = warm.keeper()
    if loaded is None and keeper is not None:
        loaded = keeper.take(plan)  # `vidgen serve`: a pipeline it keeps for this model, or room for one
    timing_key = _timing_key(plan)
    before = history.expected(timing_key)
    progress.video(str(plan.items[0].path), _expected_after(before, len(plan.items) - 1))
    enhanced = enhanced or plan.enhanced
    if plan.asked is not None and enhanced is None and plan.asked["enhancer"] != enhance.PIPELINE:
        enhanced = _with_llm(plan, progress)
    kept = {id(item): _kept(plan, item) for item in plan.items} if plan.finish else {}
    if kept and all(kept.values()):
        # Every video's chain was stopped after its generation: nothing needs the pipeline.
        return [_write_kept(plan, item, kept[id(item)], progress) for item in plan.items]
    session = _open(plan, loaded, progress)
    if plan.asked is not None and enhanced is None:
        enhanced = enhance.with_pipeline(plan.family, session.loaded.pipe, plan.asked, plan.inputs.media, progress)
    # The plan keeps it too: a latents file saved for `vidgen decode` records it with the config.
    session.enhanced = plan.enhanced = enhanced
    # --gpus: every rank computes every video together; rank 0 alone encodes and writes it.
    writer = plan.resolved.config.optimization.gpus <= 1 or _rank() == 0
    results: list[Result] = []
    for index, item in enumerate(plan.items):
        if index:
            progress.video(str(item.path), _expected_after(before, len(plan.items) - index - 1))
        if kept.get(id(item)):
            results.append(_write_kept(plan, item, kept[id(item)], progress))
            continue
        preview = _preview_session(plan, session, item, progress) if writer else None
        try:
            outcome = _run_with_retries(plan, session, item, progress, preview)
            if not writer:
                continue
            results.append(_write(plan, session, item, outcome, progress, extra))
        except BaseException:
            if preview is not None:
                preview.discard()  # a failed or stopped run leaves no preview of itself behind
            raise
        # This run's own times predict its next videos better than any earlier run's.
        before = results[-1].record["timings"]
        history.remember(timing_key, before)
    if keeper is not None and results:
        keeper.keep(plan, results[0].loaded)
    return results


def _with_llm(plan: Plan, progress: Progress) -> enhance.Enhanced:
    """The plan's prompt rewritten by its LLM, which is freed again before this returns."""
    assert plan.asked is not None
    allow = plan.resolved.config.model.allow_pickle
    done = enhance.with_llm([plan.asked], plan.device, allow, progress)
    return done[enhance.key(plan.asked, allow)]


def enhance_only(plan: Plan, progress: Progress | None = None) -> enhance.Enhanced:
    """--dry-run --enhance-prompt: the rewrite alone, loading only what writes it (the LLM, or
    the text parts of a pipeline that enhances itself)."""
    from vidgen.models import loader

    assert plan.asked is not None
    if plan.enhanced is not None:
        return plan.enhanced
    progress = progress or NullProgress()
    if plan.asked["enhancer"] != enhance.PIPELINE:
        return _with_llm(plan, progress)
    cfg = plan.resolved.config
    log.info("loading the text encoder of %s (%s) on %s", cfg.model.id, plan.family.title, plan.device)
    pipe = loader.load_parts(cfg, plan.family, plan.device, plan.family.enhancing.needs)
    return enhance.with_pipeline(plan.family, pipe, plan.asked, plan.inputs.media, progress)


def _preview_session(plan: Plan, session: _Session, item: Planned, progress: Progress) -> live.Session | None:
    """--live-preview's previews of one video (None without it)."""
    every = plan.resolved.config.output.live_preview
    if not every or session.previews is None:
        return None
    return live.Session(session.previews, outputs.beside("live_preview", item.path), every, plan.fps, progress)


def _rank() -> int:
    from vidgen.models import parallel

    return parallel.rank()


def _timing_key(plan: Plan) -> str:
    cfg = plan.resolved.config
    sampling = cfg.sampling
    frames = plan.inputs.frames if plan.inputs.frames is not None else sampling.num_frames
    count = len(frames) if isinstance(frames, list) else frames
    return history.key(
        str(cfg.model.id), cfg.mode, plan.device, sampling.width, sampling.height, count,
        int(sampling.num_inference_steps or 0),
    )  # fmt: skip


def _expected_after(times: dict[str, Any], later: int) -> float | None:
    """Seconds after this video's denoising: its decode and encode, then `later` whole videos."""
    if not all(isinstance(times.get(phase), (int, float)) for phase in ("denoise", "decode", "encode")):
        return None
    return times["decode"] + times["encode"] + later * (times["denoise"] + times["decode"] + times["encode"])


def _open(plan: Plan, loaded: Any, progress: Progress) -> _Session:
    """The checks that need no weights, then the pipeline: reused or loaded, and checked."""
    from vidgen.models import loader

    resolved = plan.resolved
    cfg = resolved.config
    if plan.planned_for and cfg.optimization.offload != "none":
        raise ConfigError(
            f"the plan for a {plan.memory.budget_source if plan.memory else 'GPU'} card "
            f"({memory.Ladder.flags(cfg)}) needs a CUDA device, and this run is on {plan.device}; "
            "add --dry-run to see the plan, or drop --vram."
        )
    _check_writable(plan.items)
    prepare = plan.family.loading.prepare
    dtype = loader.resolve_dtype(cfg.model.dtype, plan.family, plan.device)
    derived = prepare(cfg, plan.inputs.media, plan.device, dtype) if prepare is not None else {}
    for note in plan.inputs.notes:
        log.info(note)
    if plan.memory is not None and plan.memory.rung is not None:
        record = plan.memory.record()
        log.info(
            "memory plan: %s (estimated peak %.1f GiB of %s)",
            record["flags"],
            record["estimated_peak_bytes"] / memory.GIB,
            plan.memory.budget_source,
        )
    if loaded is not None and loaded.optimizations["requested"] != cfg.optimization.model_dump():
        # An earlier batch job stepped this pipeline down after an out-of-memory; it keeps that plan.
        requested = OptimizationConfig(**loaded.optimizations["requested"])
        resolved = resolved.with_optimization(requested, "oom-retry (an earlier job)")
        cfg = resolved.config
    # The preview decoder's file first: one the Hub has not got fails before the model loads.
    decoder_file = live.fetch(cfg)
    fresh = loaded is None
    if loaded is None:
        log.info("loading %s (%s) on %s", cfg.model.id, plan.family.title, plan.device)
        progress.phase("load")
        loaded = loader.load(cfg, plan.family, plan.device, on_component=progress.component)
    plan.family.check_loaded(loaded.pipe, cfg, plan.inputs.frames)
    previews = (
        live.open_decoder(plan.family, decoder_file, loaded.pipe, plan.device) if cfg.output.live_preview else None
    )
    return _Session(resolved, loaded, sidecar.environment(plan.device), fresh, previews=previews, derived=derived)


def _run_with_retries(
    plan: Plan, session: _Session, item: Planned, progress: Progress, preview: live.Session | None = None
) -> _Outcome:
    """One video; on out of memory, save the latents of a failed decode and, with --oom-retry,
    step down the memory ladder (reloading the pipeline) until a plan fits or none is left."""
    from vidgen.run import runner

    ladder = memory.Ladder(plan.family, plan.device.startswith("cuda"))
    media_kwargs = {
        **{media_arg(plan.family, plan.resolved.config.mode, name): value for name, value in plan.inputs.media.items()},
        **session.derived,
    }
    retries: list[dict[str, Any]] = []
    while True:
        # The call is made from the enhanced prompt; the sidecar's config keeps the typed one.
        cfg = enhance.applied(session.resolved.config, session.enhanced)
        call_kwargs = plan.family.call_kwargs(cfg, item.seed, plan.inputs.frames)
        try:
            result = runner.run(
                session.loaded.pipe,
                plan.family,
                cfg,
                call_kwargs,
                media=media_kwargs,
                steps=plan.family.step_count(cfg, call_kwargs, media_kwargs),
                seed=item.seed,
                device=plan.device,
                progress=progress,
                checkpoint=_checkpoint(plan, item, cfg),
                preview=preview,
            )
            return _Outcome(result, call_kwargs, retries, preview)
        except OutOfMemory as exc:
            saved = _save_latents(plan, item, session.resolved, exc.captured, "decode ran out of memory")
            step = ladder.after(session.resolved) if cfg.optimization.oom_retry else None
            if step is None:
                out_of_memory(_oom_message(str(exc), cfg, plan.family, ladder.next(cfg), saved))
            session.resolved, rung = step
            log.warning("%s with %s; retrying seed %s with %s.", exc, ladder.flags(cfg), item.seed, rung.flags())
            retries.append({"plan": ladder.flags(cfg), "phase": exc.phase, "seed": item.seed})
            session.loaded = _reload(session.loaded, session.resolved.config, plan)
        except Exception as exc:
            captured = getattr(exc, "vidgen_captured", None)
            if captured is not None:
                saved = _save_latents(plan, item, session.resolved, captured, f"decode failed: {exc}")
                log.warning("the decode failed; the final latents were saved to %s (see `vidgen decode`).", saved)
            raise


def _checkpoint(plan: Plan, item: Planned, cfg: Any) -> Any:
    """Where a windowed run keeps its finished windows (--save-latents), so a rerun resumes; with
    --oom-retry too, so the retry after an out-of-memory starts from the last finished window."""
    wanted = cfg.output.save_latents or cfg.optimization.oom_retry
    if not (plan.family.decoding.resumable and wanted and item.latents is not None):
        return None
    from vidgen.run import latents

    return latents.Checkpoint(outputs.beside("windows", item.path))


def _write(
    plan: Plan, session: _Session, item: Planned, outcome: _Outcome, progress: Progress, extra: dict[str, Any] | None
) -> Result:
    """The sidecar record, then the video, the latents, the control maps and the sidecar itself."""
    cfg, loaded, result = session.resolved.config, session.loaded, outcome.result
    for warning in result.warnings:
        log.warning(warning)
    pipeline = {
        "class": type(loaded.pipe).__name__,
        "call_kwargs": outcome.call_kwargs,
        # Arguments that are not JSON (the prepared image or frames), and where the sidecar describes them.
        "media_kwargs": {
            media_arg(plan.family, cfg.mode, name): plan.inputs.sources[name] for name in plan.inputs.media
        },
        # Pipeline methods called once after loading (FreeNoise, FreeInit, the scheduler's shift), in order.
        "setup": loaded.setup,
        "generator": _generator_record(plan, item.seed),
        **({"run": note} if (note := run_note(plan.family, cfg)) else {}),
        # A step of the family's own on the decoded frames (Wan VACE's --keep-unmasked).
        **({"postprocess": post} if plan.family.postprocess and (post := plan.family.postprocess.record(cfg)) else {}),
        **pipeline_record(plan.family, cfg, outcome.call_kwargs),
        # A resumed run: which windows came from the kept latents.
        **result.journal,
    }
    optimizations = {
        **loaded.optimizations,
        **({"memory": plan.memory.record()} if plan.memory is not None else {}),
        **({"oom_retries": outcome.retries} if outcome.retries else {}),
        **_calibration(plan, loaded, item),
    }
    enhanced = session.enhanced
    record = sidecar.record(
        session.resolved,
        item.seed,
        loaded,
        session.environment,
        pipeline=pipeline,
        made_from={"inputs": plan.inputs.record, **({"prompt_enhancement": enhanced.record} if enhanced else {})},
        optimizations=optimizations,
        # A pipeline reused from an earlier batch job cost this video no loading time; the
        # rewrite is timed once, with the first video.
        timings={
            **({"enhance": enhanced.record["seconds"] if item is plan.items[0] else 0.0} if enhanced else {}),
            "load": loaded.seconds if session.fresh else 0.0,
            **result.timings,
        },
        peak_memory_bytes=result.peak_memory_bytes,
        extra={"warnings": result.warnings, "presets": plan.resolved.presets, **(extra or {})},
    )
    # Who wrote the video: a rerun recognises a video whose writer died before its sidecar.
    host, pid = media.owner_tag().split(".")
    record["writer"] = {"host": host, "pid": int(pid)}
    overwrite = cfg.output.overwrite or item.orphan
    try:
        # The family's sound goes into the same file unless --no-audio dropped it.
        audio, hdr = (result.audio if cfg.output.audio is not False else None), result.hdr
        frames, fps = result.frames, plan.fps
        if plan.finish:
            clip = _finish(plan, item, record, finish.Clip(media.to_uint8(frames), fps, audio), [], progress)
            frames, fps, audio = clip.frames, _fps(clip.fps), clip.audio
        _encode(record, frames, item.path, plan.fmt, fps, plan.codec, plan.crf, overwrite, progress, audio, hdr)
    except WriteError as exc:
        raise WriteError(_keep_generation(plan, item, session.resolved, result, exc)) from None
    _record_preview(record, outcome.preview)
    try:
        _write_rest(plan, session, item, outcome, record, overwrite)
    except BaseException:
        # The video and its sidecar appear together or not at all: a failed (or signalled) write
        # of the rest takes this run's video back out, so a rerun finds a clean slate.
        for path in (item.path, item.control, item.latents if cfg.output.save_latents else None):
            if path is not None:
                _remove(path)
        if overwrite:
            _remove(item.sidecar)  # an earlier run's, describing the video just removed
        raise
    if (windows := _checkpoint(plan, item, cfg)) is not None:
        _remove(windows.path)  # the run is complete: nothing left to resume
    if plan.finish:
        _remove(outputs.beside("finish", item.path))  # the chain is complete: its kept clip goes
    return Result(record, item.path, item.sidecar, loaded)


def _finish_store(plan: Plan, item: Planned) -> finish.Store:
    """Where the chain of `item` keeps its clip between steps, under the key of this run."""
    config = plan.resolved.config.model_dump(mode="json")
    config["output"].pop("overwrite", None)  # a rerun with --overwrite still resumes the same chain
    key = finish.key(config, item.seed, str(item.path))
    return finish.Store(outputs.beside("finish", item.path), key)


def _kept(plan: Plan, item: Planned) -> Any:
    """A stopped chain's kept clip for `item` (this run's, by its key), or None."""
    if item.path.exists() and not item.orphan and not plan.resolved.config.output.overwrite:
        return None
    return _finish_store(plan, item).load()


def _finish(
    plan: Plan, item: Planned, record: dict[str, Any], clip: finish.Clip, done: list[dict[str, Any]], progress: Progress
) -> finish.Clip:
    """Run the chain's steps after the `done` ones on `clip`, keeping the clip after each step,
    and add them to the sidecar `record` (steps, their weights files, time, peak memory)."""
    store = _finish_store(plan, item)
    assert plan.finish is not None
    if not done:
        store.save(clip, record, [])  # the generation itself, so a stopped chain does not redo it
        finish.test_kill(0)
    clip, records = finish.run(plan.finish, clip, plan.device, progress, store, done=done, base=record, seed=item.seed)
    record["finish"] = records
    record["model"]["files"] = {**(record["model"].get("files") or {}), **finish.files_record(records)}
    record["timings"]["finish"] = round(sum(step["seconds"] for step in records), 4)
    peaks = [record.get("peak_memory_bytes") or 0, *(step["peak_memory_bytes"] for step in records)]
    record["peak_memory_bytes"] = max(peaks)
    return clip


def _fps(value: float) -> int:
    return int(round(value))


def _write_kept(plan: Plan, item: Planned, kept: Any, progress: Progress) -> Result:
    """A stopped chain, rerun: its steps after the kept ones, then the video and the sidecar,
    without loading the pipeline or generating again."""
    clip, record, done = kept
    assert plan.finish is not None
    log.info(
        "%s: resuming its finishing chain after %s (kept in %s)",
        item.path,
        f"step {len(done)} of {len(plan.finish)}" if done else "the generation",
        outputs.beside("finish", item.path).name,
    )
    progress.video(str(item.path), None)
    finish.check_weights_unchanged(plan.finish, done)
    record["finish_resumed"] = {"after_step": len(done)}
    clip = _finish(plan, item, record, clip, done, progress)
    overwrite = plan.resolved.config.output.overwrite or item.orphan
    _encode(record, clip.frames, item.path, plan.fmt, _fps(clip.fps), plan.codec, plan.crf, overwrite, progress,
            clip.audio)  # fmt: skip
    media.write_text(sidecar.dumps(record), item.sidecar, overwrite=overwrite)
    _remove(outputs.beside("finish", item.path))
    return Result(record, item.path, item.sidecar)


def _record_preview(record: dict[str, Any], preview: live.Session | None) -> None:
    """--live-preview in the sidecar: the last preview (`output.live_preview`, named as it lies
    beside the sidecar), the time previews took within the denoising, and the decoder's file."""
    if preview is None:
        return
    # The decoder's file, loaded for the run, whether or not a preview was written with it.
    if preview.decoder.file is not None:
        record["model"]["files"] = {**(record["model"].get("files") or {}), "preview_decoder": preview.decoder.file}
    shown = preview.record()
    if shown is None:
        return
    if not shown["written"]:
        log.info(
            "no live preview was written: this run ended before one fitted in a tenth of its time "
            "(--live-preview-every N writes them whatever they cost)."
        )
    # The run's own time on previews, and the preview thread's beside it (see live.Session).
    record["timings"]["live_preview"] = shown.pop("seconds")
    record["timings"]["live_preview_beside"] = shown.pop("seconds_beside")
    record["output"]["live_preview"] = shown


def _calibration(plan: Plan, loaded: Any, item: Planned) -> dict[str, Any]:
    """What --cache magcache:calibrate measured, for the sidecar: the ratios --mag-ratios reads."""
    measured = optimize.calibrated(loaded.pipe, denoisers(plan.family))
    if not measured:
        return {}
    ratios = next(iter(measured.values()))
    log.info("MagCache ratios measured (%d steps); reuse them with --mag-ratios %s", len(ratios), item.sidecar)
    return {
        "magcache_calibration": {
            "mag_ratios": [round(ratio, 6) for ratio in ratios],
            "num_inference_steps": len(ratios),
            **({"per_denoiser": measured} if len(measured) > 1 else {}),
        }
    }


def _remove(path: Path) -> None:
    import contextlib
    import shutil

    with contextlib.suppress(OSError):  # if it stays, a rerun recognises it as a video without a sidecar
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _write_rest(
    plan: Plan, session: _Session, item: Planned, outcome: _Outcome, record: dict[str, Any], overwrite: bool
) -> None:
    """After the video: the latents, the control maps, and last the sidecar."""
    import numpy as np

    from vidgen.run import latents

    cfg, result = session.resolved.config, outcome.result
    if cfg.output.save_latents and result.latents is not None and item.latents is not None:
        meta = _latents_meta(plan, session.resolved, item)
        record["output"]["latents"] = latents.save(item.latents, result.latents, meta)
    elif outcome.retries and item.latents is not None:
        # Saved when an attempt failed at the decode; a later attempt made the video.
        item.latents.unlink(missing_ok=True)
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
            overwrite=overwrite,
        )
        record["output"]["control"] = {key: written[key] for key in ("path", "sha256", "frames")}
    media.write_text(sidecar.dumps(record), item.sidecar, overwrite=overwrite)


def _keep_generation(plan: Plan, item: Planned, resolved: Resolved, result: Any, exc: WriteError) -> str:
    """The encode failed after the denoising: save the final latents where the family has them,
    so `vidgen decode` finishes the video without generating it again."""
    message = str(exc).rstrip(".")
    if "already exists" in message:
        return f"{message}."
    saved = _save_latents(plan, item, resolved, result.latents, f"encode failed: {exc}")
    if saved is None:
        return f"{message}."
    return f"{message}; the final latents were saved: `vidgen decode {saved}` finishes the video."


def _encode(
    record: dict[str, Any],
    frames: Any,
    path: Path,
    fmt: str,
    fps: int,
    codec: str | None,
    crf: int | None,
    overwrite: bool,
    progress: Progress,
    audio: Any = None,
    hdr: Any = None,
) -> None:
    """Write the video (with the compact sidecar in its metadata, and the family's sound where it
    made one) and record it and its time. An HDR family's linear `hdr` frames are written as HDR10;
    `frames`, their SDR rendering, make the poster, preview and last frame."""
    start = time.perf_counter()
    progress.phase("encode")
    record["output"] = media.write(
        media.to_uint8(frames),
        path,
        fmt=fmt,
        fps=fps,
        codec=codec,
        crf=crf,
        metadata=sidecar.compact(record),
        overwrite=overwrite,
        on_frame=progress.frames,
        audio=audio,
        hdr=hdr,
    )
    record["timings"]["encode"] = round(time.perf_counter() - start, 4)
    if record["config"]["output"].get("preview"):
        record["output"]["preview"] = _preview(frames, path, record)
    if record["config"]["output"].get("save_last_frame"):
        record["output"]["last_frame"] = _last_frame(frames, path, overwrite)


def _last_frame(frames: Any, path: Path, overwrite: bool) -> str:
    """--save-last-frame: the last frame as a lossless PNG beside the video (written atomically);
    the sidecar names it (a bare file name, as it lies beside the sidecar)."""
    target = outputs.beside("last_frame", path)
    media.write_image(media.to_uint8(frames[-1:])[0], target, overwrite=overwrite)
    return target.name


def _preview(frames: Any, path: Path, record: dict[str, Any]) -> str:
    """--preview: the contact sheet beside the video; the sidecar names it (a bare file name,
    as it lies beside the sidecar) and times it."""
    from vidgen.browse import preview
    from vidgen.config.schema import RunConfig

    start = time.perf_counter()
    prompt = outputs.describe(RunConfig.model_validate(record["config"])) or ""
    written = preview.write(media.to_uint8(frames), path, prompt, record["seed"])
    record["timings"]["preview"] = round(time.perf_counter() - start, 4)
    return written.name


def _oom_message(what: str, cfg: Any, family: Family, rung: memory.Rung | None, saved: Path | None) -> str:
    message = f"{what} with {memory.Ladder.flags(cfg)}. "
    if rung is None:
        message += "This is the cheapest plan vidgen has for this model here: use fewer --frames or a smaller size."
    else:
        message += f"Next cheaper plan: {rung.flags()} (or add --oom-retry to step down automatically)."
    if saved is not None:
        savers = memory.decode_only_savers(family, cfg).flags()
        message += f" The final latents were saved: `vidgen decode {saved} {savers}` finishes the video."
    return message


def _reload(loaded: Any, cfg: Any, plan: Plan) -> Any:
    """Free the pipeline that ran out of memory, then load it again with the cheaper plan."""
    import gc

    from vidgen.models import loader

    loaded.pipe = None
    gc.collect()
    if plan.device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
    return loader.load(cfg, plan.family, plan.device)


def _latents_meta(plan: Plan, resolved: Resolved, item: Planned) -> dict[str, Any]:
    """What `vidgen decode` needs besides the tensor: the run's config and where its video goes."""
    return {
        "config": resolved.config.model_dump(mode="json"),
        "sources": resolved.sources,
        "seed": item.seed,
        "output": str(item.path),
        "fps": plan.fps,
        "vidgen_version": __version__,
        **({"prompt_enhancement": plan.enhanced.record} if plan.enhanced is not None else {}),
    }


def _save_latents(plan: Plan, item: Planned, resolved: Resolved, captured: Any, why: str) -> Path | None:
    """Save the latents of a decode that failed (always, whatever --save-latents says)."""
    from vidgen.run import latents

    if captured is None or captured.latents is None or item.latents is None:
        return None
    if captured.latents.numel() == 0:
        return None  # nothing was denoised: a file of no latents would only be refused by `vidgen decode`
    if resolved.config.optimization.gpus > 1 and _rank() != 0:
        return None  # every rank holds the same latents; rank 0 writes them
    try:
        latents.save(item.latents, captured, {**_latents_meta(plan, resolved, item), "why": why})
    except WriteError as exc:
        log.warning("%s", exc)
        return None
    return item.latents


# Options that act on the denoiser or encoders: meaningless when only the VAE is loaded.
_DENOISER_OPTIONS = {
    "forward_chunking": False,
    "attention_slicing": False,
    "fp8_storage": False,
    "attention_backend": None,
    "compile": False,
    "cache": None,
    "quantize": None,
    "oom_retry": False,
    "memory": "manual",
    "vram_gb": None,
}


def decode(source: Path, resolved: Resolved, progress: Progress | None = None, upsampler: str | None = None) -> Result:
    """`vidgen decode`: turn saved final latents into the video, loading only the VAE.

    `resolved` is the recorded run's config with the decode options of this command on top.
    `upsampler` (`vidgen upscale NAME.latents.safetensors`): the family's latent upsampler runs
    on the latents before the decode, doubling the size; the sound decodes as it was."""
    import torch

    from vidgen.models import loader
    from vidgen.run import latents, runner

    progress = progress or NullProgress()
    tensor, info = latents.load(source)
    # The other caught tensors and the decode arguments, checked before anything loads.
    tensors = latents.load_tensors(source, info.get("tensors"))
    latents.arguments(source, info, tensors)
    cfg = resolved.config
    cfg = cfg.model_copy(update={"optimization": cfg.optimization.model_copy(update=_DENOISER_OPTIONS)})
    family = families.check(cfg)
    device = loader.resolve_device(cfg.optimization.device)
    optimize.check(cfg.optimization, device)
    fmt = outputs.output_format(cfg)
    codec, crf = media.encoding(fmt, cfg.output.codec, cfg.output.crf)
    _check_audio_format(family, cfg, fmt)
    target, side = _decode_target(cfg, fmt, info)
    log.info("loading the VAE of %s on %s", cfg.model.id, device)
    progress.phase("load")
    loaded = loader.load(cfg, family, device, decode_only=True)
    upsample = latent_upsample.load(family, cfg, loaded.pipe, upsampler) if upsampler else None
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    progress.phase("decode")
    frames, audio, post = _decoded(source, family, loaded.pipe, cfg, tensor, info, tensors, upsample)
    decoded = time.perf_counter() - start
    # Latent-output families decode as their pipeline would; the others call what they were caught at.
    method = (
        family.decoding.catches["latents"].target
        if family.decoding.latents == "caught"
        else "vae.decode (the pipeline's own decode)"
    )
    record = sidecar.record(
        Resolved(cfg, resolved.sources, resolved.presets),
        info.get("seed"),
        loaded,
        sidecar.environment(device),
        pipeline={
            "class": type(loaded.pipe).__name__,
            "decode": {"method": method, "args": info["decode_args"], "kwargs": info["decode_kwargs"]},
            **({"postprocess": post} if post is not None else {}),
        },
        made_from={
            "decoded_from": {"path": str(source), "sha256": media.sha256(source), "shape": info["shape"]},
            # The --enhance-prompt rewrite the latents were made from, so the video's sidecar has it.
            **(
                {"prompt_enhancement": info["prompt_enhancement"]}
                if isinstance(info.get("prompt_enhancement"), dict)
                else {}
            ),
        },
        optimizations=loaded.optimizations,
        timings={"load": loaded.seconds, "decode": round(decoded, 4)},
        peak_memory_bytes=runner.peak_memory(device),
    )
    fps = cfg.output.fps or info.get("fps") or 8
    if upsample is not None:
        step = upsample.record(info["shape"], frames, decoded, record["peak_memory_bytes"], device)
        record["finish"] = [{**step, "fps": [fps, fps]}]
    _encode(record, frames, target, fmt, fps, codec, crf, cfg.output.overwrite, progress, audio)
    media.write_text(sidecar.dumps(record), side, overwrite=cfg.output.overwrite)
    return Result(record, target, side)


def _decode_target(cfg: Any, fmt: str, info: dict[str, Any]) -> tuple[Path, Path]:
    """Where `vidgen decode` writes the video and its sidecar, checked free and writable."""
    path = Path(cfg.output.path)
    target = path.with_suffix(f".{fmt}") if fmt != "png" and path.suffix else path
    side = outputs.beside("sidecar", target)
    if not cfg.output.overwrite:
        for existing in (target, side):
            if existing.exists():
                raise WriteError(f"{existing} already exists; pass --overwrite or choose another --out.")
    _check_writable([Planned(info.get("seed", 0), target, side)])
    return target, side


def _decoded(
    source: Path,
    family: Any,
    pipe: Any,
    cfg: Any,
    tensor: Any,
    info: dict[str, Any],
    tensors: dict[str, Any],
    upsample: Any = None,
) -> tuple[Any, Any, dict[str, Any] | None]:
    """(float frames, the sound or None, the postprocess record) from a latents file's tensors,
    decoded by the family as its pipeline would, then its step after decoding."""
    import numpy as np
    import torch

    from vidgen.run import latents

    # The execution device is where offload hooks run the VAE, or the pipeline's device without them.
    execution = pipe._execution_device
    moved = tensor.to(device=execution, dtype=pipe.vae.dtype)
    if upsample is not None:
        moved = upsample(moved)
    # The other caught tensors keep their dtype (the audio decoder has its own); the family casts.
    tensors = {name: value.to(execution) for name, value in tensors.items()}
    args, kwargs = latents.arguments(source, info, tensors)
    try:
        with torch.inference_mode():
            frames = family.decode(pipe, cfg, Caught(moved, list(args), dict(kwargs), tensors))
    except (torch.cuda.OutOfMemoryError, MemoryError):
        savers = memory.decode_only_savers(family, cfg).flags()
        out_of_memory(f"the decode ran out of memory; try again with {savers} or --offload model.")
    # A family with sound decodes it too, unless the recorded run or this command dropped it.
    audio = getattr(frames, "audio", None)
    if audio is not None or hasattr(frames, "frames"):
        frames = frames.frames
    if audio is not None and cfg.output.audio is False:
        audio = None
    if audio is not None:
        audio.samples = np.asarray(audio.samples, dtype=np.float32)
    elif family.modes[cfg.mode].audio and cfg.output.audio is not False:
        log.warning("%s holds no audio latents: this video is silent.", source)
    # The family's step after decoding, from the arrays the run kept beside its latents.
    post = family.postprocess.record(cfg) if family.postprocess else None
    kept = latents.load_kept(source, info.get("kept", []))
    if kept:
        frames = family.postprocess.apply(frames, kept)
    elif post is not None:
        log.warning(
            "%s holds no kept input pixels (an older vidgen wrote it): this video skips %s.",
            source,
            post["step"],
        )
        post = {**post, "skipped": "the latents file holds no kept input pixels"}
    return np.asarray(frames, dtype=np.float32), audio, post
