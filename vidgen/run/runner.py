"""One pipeline call: seeded generator, step progress, phase timings, peak memory, OOM mapping."""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from vidgen.core import stopping
from vidgen.core.errors import is_oom, out_of_memory
from vidgen.core.progress import Progress
from vidgen.families.base import Caught


@dataclass
class RunResult:
    frames: Any  # float32 array (frames, height, width, 3) in [0, 1]
    timings: dict[str, float]
    peak_memory_bytes: int
    warnings: list[str] = field(default_factory=list)
    latents: Any = None  # latents.Captured: what went into the VAE, for --save-latents
    audio: Any = None  # families.base.Audio: the sound of families that make it
    hdr: Any = None  # float32 linear HDR frames of HDR families (families.base.Generated.hdr)
    # What a resumable family did beyond the call (windows replayed from a checkpoint), for the
    # sidecar's pipeline section.
    journal: dict[str, Any] = field(default_factory=dict)


# Test hook: VIDGEN_TEST_OOM=denoise|decode|finish[:N] makes the first N runs of this process (default
# 1) raise CUDA's out-of-memory error at that phase, so the OOM path and --oom-retry can be
# tested on machines without a GPU to exhaust.
_injected: dict[str, int] = {}


def inject_oom(phase: str) -> None:
    spec = os.environ.get("VIDGEN_TEST_OOM", "")
    wanted, _, times = spec.partition(":")
    if wanted != phase:
        return
    if _injected.get(phase, 0) >= int(times or 1):
        return
    _injected[phase] = _injected.get(phase, 0) + 1
    import torch

    raise torch.cuda.OutOfMemoryError(f"CUDA out of memory at {phase} (injected by VIDGEN_TEST_OOM).")


def reset_peak(device: str) -> None:
    """Start a new peak on CUDA (the CPU's resident peak is the process's, and only grows)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: str) -> int:
    """CUDA: max allocated on the device; CPU: the process's peak resident set size."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@contextmanager
def _global_rng(wanted: bool, seed: int, device: str) -> Iterator[None]:
    """Seed torch's global RNG for pipelines that draw from it, and restore it afterwards."""
    if not wanted:
        yield
        return
    import torch

    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class _Clock:
    """The step callback's side of a run: progress, the stop check between steps, the test OOM
    hook, and when denoising ended (its last step, or the decode's start for a pipeline that
    reports no steps), which splits the run's time into denoise and decode."""

    def __init__(self, steps: int, progress: Progress, preview: Any = None) -> None:
        self.steps = steps
        self.progress = progress
        self.preview = preview  # live.Session of --live-preview, or None
        self.done = 0
        self.last_step = 0.0

    def on_step(self) -> None:
        self.done += 1
        self.progress.advance()
        if self.preview is not None:
            self.preview.on_step(self.done)
        # After the step's preview: the time it took is the denoising's, not the decode's.
        self.last_step = time.perf_counter()
        stopping.check()  # a signal dropped by a fork elsewhere stops the run at the next step
        inject_oom("denoise")
        if self.done == self.steps:
            self.progress.phase("decode")

    def before_decode(self) -> None:
        self.last_step = self.last_step or time.perf_counter()
        inject_oom("decode")


def run(
    pipe: Any,
    family: Any,
    cfg: Any,
    call_kwargs: dict[str, Any],
    *,
    media: dict[str, Any],
    steps: int,
    seed: int,
    device: str,
    progress: Progress,
    checkpoint: Any = None,
    preview: Any = None,
) -> RunResult:
    """Call the pipeline once. `media` holds the prepared image or video, passed beside the
    JSON-able `call_kwargs` that the sidecar records; `preview` (a live.Session) writes the
    live previews of --live-preview as the steps go.

    Out of memory raises OutOfMemory with `phase` (denoise or decode) and, when the VAE was
    running, `captured`: the final latents, which the caller saves so no denoising is lost."""
    import torch

    from vidgen.run import latents

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    # On the run's device, as diffusers' examples do; the sidecar records which device it was.
    generator = torch.Generator(device=device).manual_seed(seed)
    clock = _Clock(steps, progress, preview)
    # What the family's step after decoding needs from the inputs (Wan VACE's kept pixels).
    for_postprocess = family.postprocess.inputs(cfg, media) if family.postprocess else {}
    progress.start(steps, "denoising")
    start = time.perf_counter()
    captured = latents.Captured()
    journal: dict[str, Any] = {}
    try:
        with (
            _global_rng(family.modes[cfg.mode].seeds_global_rng, seed, device),
            family.steps(pipe, clock.on_step) as step_kwargs,
            preview.watch(pipe, cfg, call_kwargs, steps) if preview is not None else nullcontext(),
            latents.capture(pipe, clock.before_decode, family.decoding.catches)
            if family.decoding.latents == "caught"
            else nullcontext(captured) as captured,
        ):
            captured.kept = for_postprocess  # saved with the latents, so `vidgen decode` repeats the step
            calls = {"generator": generator, **step_kwargs}
            output = _call(pipe, family, cfg, call_kwargs, media, calls, captured, clock, checkpoint, journal)
            if for_postprocess:
                output = family.postprocess.apply(output, for_postprocess)
    except Exception as exc:
        if is_oom(exc):
            what = "CUDA" if isinstance(exc, torch.cuda.OutOfMemoryError) else "the process"
            phase = "decode" if captured.decoding else "denoise"
            out_of_memory(f"{what} ran out of memory during {phase}", phase, captured if captured.decoding else None)
        if captured.decoding:  # any other failure of the decode: the caller saves the latents too
            exc.vidgen_captured = captured  # type: ignore[attr-defined]
        raise
    finally:
        progress.stop()
    end = time.perf_counter()
    hdr = _hdr(output)
    frames, audio, warnings = _finished(output)
    # Denoising ends at the last step callback; what follows is the VAE decode.
    denoised = clock.last_step or end
    return RunResult(
        frames=frames,
        timings={"denoise": round(denoised - start, 4), "decode": round(end - denoised, 4)},
        peak_memory_bytes=peak_memory(device),
        warnings=warnings,
        latents=captured if captured.latents is not None else None,
        audio=audio,
        hdr=hdr,
        journal=journal,
    )


def _call(
    pipe: Any,
    family: Any,
    cfg: Any,
    call_kwargs: dict[str, Any],
    media: dict[str, Any],
    calls: dict[str, Any],
    captured: Any,
    clock: _Clock,
    checkpoint: Any,
    journal: dict[str, Any],
) -> Any:
    """The pipeline's output. `calls` are the generator and the family's step arguments. A
    family whose pipeline stops at its final latents decodes them as the pipeline would, with
    `captured.decoding` set meanwhile so a failure there keeps the latents."""
    if family.decoding.latents != "latent":
        return family.call(pipe, cfg, call_kwargs, media, **calls)
    # A resumable family keeps finished windows in `checkpoint` (--save-latents).
    kept = {"checkpoint": checkpoint, "journal": journal} if checkpoint is not None else {}
    captured.latents = family.latent_call(pipe, cfg, call_kwargs, media, **calls, **kept)
    captured.decoding = True
    clock.before_decode()
    output = family.decode(pipe, cfg, Caught(captured.latents))
    captured.decoding = False
    return output


def _hdr(output: Any) -> Any:
    """The linear HDR frames of an HDR family's output (float32), or None."""
    import numpy as np

    hdr = getattr(output, "hdr", None)
    return None if hdr is None else np.asarray(hdr, dtype=np.float32)


def _finished(output: Any) -> tuple[Any, Any, list[str]]:
    """The family's output as float32 frames, its sound (a family that makes sound returns
    `Generated`), and warnings about frames that are NaN or all black."""
    import numpy as np

    audio = getattr(output, "audio", None)
    if audio is not None or hasattr(output, "frames"):
        output = output.frames
    if audio is not None:
        audio.samples = np.asarray(audio.samples, dtype=np.float32)
    frames = np.asarray(output, dtype=np.float32)
    warnings = []
    if np.isnan(frames).any():
        warnings.append(
            "the output contains NaN values (it will look black). The usual cause is fp16 on a model "
            "trained in bf16: try --dtype bf16 or --dtype fp32."
        )
        frames = np.nan_to_num(frames, nan=0.0)
    elif frames.size and float(frames.max()) < 1.5 / 255:
        warnings.append("every frame is black. The usual cause is fp16 overflow: try --dtype bf16 or --dtype fp32.")
    return frames, audio, warnings
