"""Live previews (--live-preview): the video as it forms, rewritten beside the output every N
denoising steps as NAME.preview.webp, and announced to the progress display (`preview` events).

What a preview shows is the scheduler's own estimate of the clean latents at that step, taken
where the scheduler keeps it: the `pred_original_sample` DDIM, Euler, LCM and CogVideoX's
schedulers return, the x0 prediction UniPC and DPM-Solver++ store (`model_outputs`), or for
flow-matching Euler `x_t - sigma_t * v` from the very arguments of its step. A scheduler that keeps
none (PNDM, ...) shows its current latents, still noisy until the last steps; the sidecar says
which. Estimates are caught by giving the pipeline's scheduler object a subclass whose `step`
hands them over, undone after the call: the arguments, the result and the scheduler's state are
those of the plain run, so the final video is the same with or without previews.

An animated WebP is one file that replaces the last one in a single rename (a folder of PNGs
cannot be swapped whole), plays in browsers and image viewers, and is small.

A preview is decoded between two steps, on the run's thread, and encoded, written and announced
by a thread of its own while the next steps run. The decode stays on the run's thread: the model's
own VAE keeps state while it decodes (Wan's feature cache) that the video's own decode uses, a
decode beside a step on a GPU would add its memory to the step's, and on a CPU two threads of small
torch operations slow each other down through the GIL (measured: a TAEHV decode beside the steps
made tiny Wan's denoising slower than decoding between them; benchmarks/live_preview.py). When the
next preview falls due before the last is written, the newer replaces the waiting one: previews
never queue up behind a fast run.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.config.kinds import AUTO_SHARE, OUTPUT_KINDS
from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, ModelError, is_oom
from vidgen.families.base import Family, Previewing
from vidgen.io import media
from vidgen.models import components, skeleton, taehv, tiny

log = logging.getLogger("vidgen")

# A preview's longest side, at most: enough to judge a video, cheap to encode every few steps.
PREVIEW_SIDE = 512
# The bare --live-preview ("auto"): a preview every AUTO_EVERY steps while previews take under
# AUTO_SHARE of the run's time. On a real model a step takes seconds and a TAEHV preview a small
# part of one, so each falls due and is written; on a model whose steps cost about what a preview
# does (the tiny ones on a CPU) previews are spaced out instead of slowing the run down.
AUTO_EVERY = OUTPUT_KINDS["live_preview"].every or 2
# ... and not before this many seconds of denoising while no preview's cost is known yet: a run over
# sooner has no one watching it, and one preview must not outweigh it.
AUTO_FIRST = 1.0
WEBP_QUALITY = 70


# -- before loading -----------------------------------------------------------------------------


def check(cfg: RunConfig, family: Family, found: dict[str, tuple[str, str]]) -> Any:
    """The checks that need no weights: the family can be previewed, --preview-decoder goes with
    --live-preview, and its file is TAEHV weights for latents of this model's channel count (read
    from the VAE's config where it is on disk; otherwise after loading). Returns the decoder file
    as (Checkpoint, Arch), or None (no file, or a Hub file not downloaded yet)."""
    source = cfg.model.preview_decoder
    if source and not cfg.output.live_preview:
        raise ConfigError("--preview-decoder is the decoder of --live-preview; add --live-preview, or drop it.")
    if not cfg.output.live_preview:
        return None
    if family.previewing.refused:
        raise ConfigError(f"--live-preview is not available for {family.title}: {family.previewing.refused}")
    if family.decoding.latents is None and type(family.previewing).decode is Previewing.decode:
        # The default decode goes through the family's own latent decode, which a pipeline that
        # decodes inside its call does not expose; such a family must say how (HunyuanVideo does).
        raise ConfigError(
            f"--live-preview is not available for {family.title}: its pipeline decodes inside its own call "
            "and vidgen has no preview decode for its latents yet."
        )
    if not source:
        return None
    if family.previewing.tae is None:
        raise ConfigError(
            f"--preview-decoder: no TAEHV weights are published for {family.title}'s latents; drop it, and "
            "--live-preview decodes with the model's own VAE at half size."
        )
    read = taehv.read(source, cfg.model.allow_pickle, download=False)
    if read is not None:
        match_channels(read[1], vae_channels(cfg, found), family, source)
    return read


def vae_channels(cfg: RunConfig, found: dict[str, tuple[str, str]]) -> int | None:
    """The latent channels of the model's VAE, from its config.json where it is on disk (a
    folder, a cached Hub model, a tiny model built before); None where it is not."""
    import json

    kind, where = found["model"]
    if kind == "tiny" and where.startswith(tiny.PREFIX):
        where = str(tiny.folder(where.removeprefix(tiny.PREFIX)))
    folder = skeleton.config_folder(where, kind, "vae", cfg.model.revision)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8")) if folder else {}
    except (OSError, ValueError):
        return None
    channels = config.get("z_dim", config.get("latent_channels")) if isinstance(config, dict) else None
    return channels if isinstance(channels, int) else None


def match_channels(arch: taehv.Arch, channels: int | None, family: Family, source: str) -> None:
    """A TAEHV decoder must take latents of the model's channel count (taew2_1 decodes 16, Wan 2.2
    TI2V-5B makes 48)."""
    if channels is None or arch.latent_channels == channels:
        return
    raise ModelError(
        f"--preview-decoder {source} decodes {arch.latent_channels}-channel latents and this {family.title} "
        f"model makes {channels}-channel ones; use the weights for its VAE ({family.previewing.tae})."
    )


# -- the decoder of a session -----------------------------------------------------------------


@dataclass
class Decoder:
    """What decodes a run's previews: TAEHV (`module`), or the family's own VAE (None)."""

    family: Family
    module: Any = None
    arch: taehv.Arch | None = None
    file: dict[str, Any] | None = None  # the sidecar's record of the weights file
    cost: float = 0.0  # the seconds of its last preview (a batch's next video starts from it)

    @property
    def frames_per_frame(self) -> int:
        """Video frames one preview frame stands for: TAEHV decodes one per latent frame."""
        return self.arch.temporal if self.arch is not None else 1

    def record(self) -> dict[str, Any]:
        """How the previews were decoded, for the sidecar."""
        if self.module is None:
            return {"decoder": "vae", "decoded_at": "half the latent size where both sides have 16+ latent pixels"}
        assert self.arch is not None
        return {"decoder": "taehv", "latent_channels": self.arch.latent_channels, "frame_every": self.arch.temporal}

    def frames(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], latents: Any) -> Any:
        """uint8 frames (frames, height, width, 3) of the scheduler's latents."""
        import numpy as np
        import torch

        with torch.no_grad():
            if self.module is None:
                decoded = self.family.previewing.decode(pipe, cfg, call_kwargs, latents)
                return media.to_uint8(np.asarray(getattr(decoded, "frames", decoded), dtype=np.float32))
            video = self.module.decode(self.family.previewing.latents(pipe, cfg, call_kwargs, latents))
            return (video[0].permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)


def fetch(cfg: RunConfig) -> tuple[Any, taehv.Arch] | None:
    """The --preview-decoder file of a run with --live-preview, downloaded if it is on the Hub and
    checked from its header (`check` ran before), as (Checkpoint, Arch); None without one."""
    source = cfg.model.preview_decoder
    if not (cfg.output.live_preview and source):
        return None
    return taehv.read(source, cfg.model.allow_pickle, download=True)


def open_decoder(family: Family, file: tuple[Any, taehv.Arch] | None, pipe: Any, device: str) -> Decoder:
    """The session's decoder once the pipeline is loaded: TAEHV from `file` (see `fetch`),
    checked against the loaded VAE's channels, or the family's own VAE."""
    if file is None:
        return Decoder(family)
    checkpoint, arch = file
    vae = getattr(pipe, "vae", None)
    config = getattr(vae, "config", None)
    match_channels(arch, getattr(config, "z_dim", getattr(config, "latent_channels", None)), family, checkpoint.source)
    dtype = next(vae.parameters()).dtype if vae is not None else None
    try:
        module = taehv.load(checkpoint, arch, device, dtype)
    except Exception as exc:  # a file whose header passed and whose data does not: one line saying so
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"could not load --preview-decoder {checkpoint.source}: {first}") from None
    return Decoder(family, module, arch, checkpoint.record(components.file_sha256(checkpoint.path)))


def free_memory() -> None:
    """What a preview that ran out of memory held, back to the run."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- one video's previews ---------------------------------------------------------------------


class Session:
    """The previews of one video: catches the scheduler's estimates, and every `every` steps (as
    the progress counts them) hands the newest one to its writer, which replaces `path` with it
    beside the run (see the module's docstring)."""

    def __init__(self, decoder: Decoder, path: Path, every: int | str, fps: int, progress: Any) -> None:
        self.decoder, self.path, self.fps, self.progress = decoder, path, fps, progress
        # "auto" (the bare --live-preview): every AUTO_EVERY steps, a preview only while the
        # previews so far and this one take under AUTO_SHARE of the time since denoising began.
        self.auto = every == "auto"
        self.every = AUTO_EVERY if self.auto else int(every)
        self.began = 0.0
        self.held = 0  # previews "auto" held back to keep within its share
        self.submitted = 0  # previews handed to the writer
        self.cost = 0.0  # the last preview's whole time (on the run and beside it): the next one's estimate
        self.latest: Callable[[], tuple[Any, bool]] | None = None  # makes the newest step's estimate
        self.fresh = False  # an estimate came since the last preview
        self.total = 0
        self.written = 0
        self.skipped = 0  # previews replaced by a newer one before they were written
        self.last: dict[str, Any] = {}
        self.seconds = 0.0  # the run's own time spent on previews (its thread's)
        self.beside = 0.0  # the preview thread's time, while the run went on
        self.clean: bool | None = None
        self.stopped: str | None = None  # why previews stopped mid-run
        self.run: tuple[Any, RunConfig, dict[str, Any]] | None = None
        self._writer: _Writer | None = None

    @contextmanager
    def watch(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], total: int) -> Iterator[None]:
        """While the pipeline runs: its scheduler hands over its estimates. The last preview is
        written before this ends; a run that fails drops the one waiting."""
        self.run, self.total = (pipe, cfg, call_kwargs), total
        self.began = time.perf_counter()
        try:
            with _watched(pipe.scheduler, self._keep):
                yield
        except BaseException:
            self._close(drop=True)
            raise
        else:
            self._close(drop=False)
        finally:
            self.run = None

    def _keep(self, estimate: Callable[[], tuple[Any, bool]]) -> None:
        self.latest, self.fresh = estimate, True

    def on_step(self, done: int) -> None:
        """A step ended (`done` so far): every `every` steps, a new preview. A preview that fails
        (a full disk, memory) stops the previews with a warning, never the run."""
        if done % self.every or not self.fresh or self.latest is None or self.run is None or self.stopped:
            return
        start = time.perf_counter()
        if self.auto and not self._affordable(start - self.began):
            self.held += 1  # over its share of the run: the next due step tries again
            return
        try:
            latents, clean = self.latest()
            pipe, cfg, call_kwargs = self.run
            frames = self.decoder.frames(pipe, cfg, call_kwargs, latents)
        except Exception as exc:
            self._stop(done, exc)
            return
        self.fresh, self.clean = False, clean
        if self._writer is None:
            self._writer = _Writer(self._write)
        taken = time.perf_counter() - start
        self.seconds += taken
        self.submitted += 1
        self._writer.submit(frames, done, taken)

    def _affordable(self, elapsed: float) -> bool:
        """Whether "auto" writes the preview that fell due `elapsed` seconds into denoising: the
        previews so far (on the run and beside it, which shares the CPU) and this one, estimated
        from the last one this decoder made, within AUTO_SHARE of the time. A decoder that has
        made none yet waits for AUTO_FIRST seconds, so one preview cannot outweigh a short run."""
        if self.submitted > self.written and not self.stopped:
            return False  # the last one is still being written: its cost is not known yet
        estimate = self.cost or self.decoder.cost
        if not estimate:
            return elapsed >= AUTO_FIRST
        return self.seconds + self.beside + estimate <= AUTO_SHARE * elapsed

    def _stop(self, done: int, exc: Exception) -> None:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        self.stopped = first
        if is_oom(exc):
            free_memory()
        log.warning("live previews stopped at step %d (%s); the run goes on.", done, first)

    def _write(self, frames: Any, done: int, taken: float) -> None:
        """On the preview thread: encode, replace, announce."""
        if self.stopped:
            return
        start = time.perf_counter()
        try:
            data = _webp(frames, self.fps / self.decoder.frames_per_frame)
            media.replace_file(self.path, lambda stream: _fill(stream, data, self.written + 1))
        except Exception as exc:
            self._stop(done, exc)
            return
        self.written += 1
        height, width = frames.shape[1:3]
        self.last = {"step": done, "frames": len(frames), "width": width, "height": height}
        self.beside += time.perf_counter() - start
        # A preview's whole cost, on the run (`taken`) and beside it: what "auto" expects of the next.
        self.cost = self.decoder.cost = taken + time.perf_counter() - start
        self.progress.preview(str(self.path), done, self.total)

    def _close(self, drop: bool) -> None:
        if self._writer is not None:
            self.skipped += self._writer.close(drop)
            self._writer = None

    def discard(self) -> None:
        """The run failed or was stopped: its preview goes with its video."""
        self._close(drop=True)
        if self.written:
            self.path.unlink(missing_ok=True)

    def record(self) -> dict[str, Any] | None:
        """The sidecar's `output.live_preview` (None when none was written)."""
        self._close(drop=False)
        if not self.written:
            # "auto" that found no preview affordable says so; otherwise there is nothing to record.
            held = {"every": "auto", "share": AUTO_SHARE, "held": self.held, "written": 0}
            return {**held, "seconds_beside": 0.0, "seconds": 0.0} if self.auto and self.held else None
        shows = "the scheduler's estimate of the clean video" if self.clean else "the current (noisy) latents"
        return {
            "path": self.path.name,
            "every": "auto" if self.auto else self.every,
            **({"share": AUTO_SHARE, "held": self.held} if self.auto else {}),
            "written": self.written,
            **({"skipped": self.skipped} if self.skipped else {}),
            **self.last,
            "shows": shows,
            **self.decoder.record(),
            **({"stopped": self.stopped} if self.stopped else {}),
            "seconds_beside": round(self.beside, 4),
            "seconds": round(self.seconds, 4),
        }


class _Writer:
    """A thread that writes one video's previews in the order they come, keeping at most one
    waiting: a newer preview replaces the one that has not started (counted as skipped)."""

    def __init__(self, write: Callable[[Any, int, float], None]) -> None:
        self._write = write
        self._ready = threading.Condition()
        self._waiting: tuple[Any, int, float] | None = None  # (frames, step, seconds taken on the run)
        self._closed = False
        self._skipped = 0
        self._thread = threading.Thread(target=self._loop, name="vidgen-live-preview", daemon=True)
        self._thread.start()

    def submit(self, frames: Any, done: int, taken: float) -> None:
        with self._ready:
            if self._waiting is not None:
                self._skipped += 1
            self._waiting = (frames, done, taken)
            self._ready.notify()

    def close(self, drop: bool) -> int:
        """Write what waits (or drop it), wait for the thread; returns the previews skipped."""
        with self._ready:
            if drop and self._waiting is not None:
                self._waiting = None
                self._skipped += 1
            self._closed = True
            self._ready.notify()
        self._thread.join()
        return self._skipped

    def _loop(self) -> None:
        while True:
            with self._ready:
                while self._waiting is None and not self._closed:
                    self._ready.wait()
                if self._waiting is None:
                    return
                job, self._waiting = self._waiting, None
            self._write(*job)


def _fill(stream: Any, data: bytes, number: int) -> None:
    """Write the preview's bytes. Test hook: VIDGEN_TEST_KILL_PREVIEW=N SIGKILLs the process
    halfway through writing preview N, so a test can look at what a kill mid-write leaves."""
    if os.environ.get("VIDGEN_TEST_KILL_PREVIEW") == str(number):
        stream.write(data[: len(data) // 2])
        stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    stream.write(data)


def _webp(frames: Any, fps: float) -> bytes:
    """An animated WebP of uint8 frames, at most PREVIEW_SIDE pixels a side, looping."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    height, width = frames.shape[1:3]
    scale = PREVIEW_SIDE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        images = [image.resize(size, Image.Resampling.BILINEAR) for image in images]
    buffer = io.BytesIO()
    duration = max(20, round(1000 / max(fps, 0.01)))
    # method 0: the fastest encoder setting; a preview is rewritten every few steps.
    images[0].save(
        buffer,
        format="WEBP",
        save_all=True,
        append_images=images[1:],
        duration=duration,
        loop=0,
        quality=WEBP_QUALITY,
        method=0,
    )
    return buffer.getvalue()


# -- catching the scheduler's estimates ----------------------------------------------------------


@contextmanager
def _watched(scheduler: Any, keep: Callable[[Callable[[], tuple[Any, bool]]], None]) -> Iterator[None]:
    """Give `scheduler` a subclass of its own class whose `step` hands `keep` a way to make the
    step's estimate (see `estimate`), made only for a step that gets a preview. A copy of the scheduler made
    during the call (LTX-2 copies it for its sound) keeps the subclass but hands nothing over:
    only this object's steps are the video's."""
    base = type(scheduler)

    class Watched(base):  # type: ignore[misc,valid-type]
        def step(self, *args: Any, **kwargs: Any) -> Any:
            out = super().step(*args, **kwargs)
            if self is scheduler:
                # What this step leaves, taken now: the scheduler moves on at its next step.
                after = getattr(self, "step_index", None)
                outputs = getattr(self, "model_outputs", None)
                kept = (after - 1 if after is not None else None, outputs[-1] if outputs else None)
                keep(lambda: estimate(self, args, kwargs, out, *kept))
            return out

    Watched.__name__, Watched.__qualname__ = base.__name__, base.__qualname__
    scheduler.__class__ = Watched
    try:
        yield
    finally:
        scheduler.__class__ = base


def estimate(
    scheduler: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, index: int | None, last: Any
) -> tuple[Any, bool]:
    """(latents, whether they are the clean estimate) of one scheduler step, from what the step
    returned or kept (`last`: a multistep solver's newest model output), or from its arguments and
    its sigma (`index` into the scheduler's sigmas); see the module's docstring."""
    returned = out if isinstance(out, tuple) else None
    if returned is not None and len(returned) > 1 and hasattr(returned[1], "shape"):
        return returned[1], True  # (prev_sample, pred_original_sample) or LCM's (prev, denoised)
    for name in ("pred_original_sample", "denoised"):
        value = getattr(out, name, None)
        if hasattr(value, "shape"):
            return value, True
    if last is not None and _keeps_x0(scheduler):
        return last, True
    if any(cls.__name__ == "FlowMatchEulerDiscreteScheduler" for cls in type(scheduler).__mro__):
        model_output = kwargs.get("model_output", args[0] if args else None)
        sample = kwargs.get("sample", args[2] if len(args) > 2 else None)
        per_token = kwargs.get("per_token_timesteps")
        if per_token is not None:
            sigma = (per_token / scheduler.config.num_train_timesteps)[..., None]
        else:
            sigma = scheduler.sigmas[index]
        if model_output is not None and sample is not None:
            return sample.float() - sigma.to(sample.device) * model_output.float(), True
    return (returned[0] if returned is not None else out.prev_sample), False


def _keeps_x0(scheduler: Any) -> bool:
    """Whether a multistep solver's `model_outputs` are x0 predictions: UniPC with predict_x0,
    DPM-Solver++."""
    if hasattr(scheduler, "predict_x0"):
        return bool(scheduler.predict_x0)
    algorithm = getattr(scheduler.config, "algorithm_type", None)
    return algorithm in ("dpmsolver++", "sde-dpmsolver++")
