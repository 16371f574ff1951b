"""Resuming a long video made in windows (SkyReels-V2 DF) or chunks (Helios) inside one pipeline call.

diffusers runs every window of such a video inside one call. With --save-latents (or --oom-retry),
vidgen keeps each finished window's latents beside the output while the call runs; a rerun of the
same command after a crash, or the retry after an out-of-memory, replays the finished windows from
that file (their denoiser calls skipped, every random draw repeated) and computes only the rest, so
it makes the same frames.

A family uses it from its `latent_call` with `kept_latents`, telling it how many step callbacks
each window makes (`steps`): the window ends at its last one, where its latents are final.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from vidgen.config.schema import RunConfig

log = logging.getLogger("vidgen")

WINDOWS_FORMAT = "vidgen-windows/1"


def kept_latents(
    pipe: Any,
    cfg: RunConfig,
    call_kwargs: dict[str, Any],
    media: dict[str, Any],
    extra: dict[str, Any],
    steps: list[int],
    unit: str = "windows",
) -> Any:
    """Run the pipeline once with output_type="latent", keeping (and replaying) finished windows
    when the engine passed a checkpoint in `extra` (vidgen.run.latents.Checkpoint: its path and
    atomic writer); `steps` counts each window's step callbacks, `unit` names the windows in
    messages and the sidecar. Returns the pipeline's latents."""
    checkpoint: Any = extra.pop("checkpoint", None)
    journal: dict[str, Any] = extra.pop("journal", {})
    kwargs = {**call_kwargs, "output_type": "latent"}
    keeper = Keeper(pipe, cfg, call_kwargs, media, extra, checkpoint, steps, unit)
    with keeper:
        if keeper.done:
            # The sidecar says this video was finished from kept windows, and from which file.
            journal["resumed"] = {
                f"{unit}_replayed": len(keeper.done),
                unit: keeper.total,
                "from": str(checkpoint.path),
                "how": f"the denoiser was skipped for these {unit} (every random draw made as before) and "
                f"their saved latents put back at each one's end",
            }
        return pipe(**kwargs, **media, **extra).frames


class Keeper:
    """For one windowed pipeline call: reports every step to vidgen's progress, and with a
    checkpoint file saves each finished window's latents there. When the file holds windows of
    the same run (same model, arguments, inputs and seed), those windows are replayed: the
    denoiser is skipped (it returns zeros) while every random draw happens as before, and at each
    replayed window's end its saved latents replace what was computed, so the rest of the run
    continues exactly."""

    def __init__(
        self,
        pipe: Any,
        cfg: RunConfig,
        call_kwargs: dict[str, Any],
        media: dict[str, Any],
        extra: dict[str, Any],
        checkpoint: Any,
        steps: list[int],
        unit: str = "windows",
    ) -> None:
        self.pipe, self.cfg, self.extra, self.checkpoint = pipe, cfg, extra, checkpoint
        self.path: Path | None = checkpoint.path if checkpoint is not None else None
        self.steps, self.unit = steps, unit
        self.window = 0
        self.step = 0  # step callbacks so far in this window
        self.done: list[Any] = []
        self.kept: list[Any] = []
        # Options that change the denoiser's numbers belong to the run; offload and decode savers do
        # not (an out-of-memory retry changes them and still resumes).
        numeric = {k: getattr(cfg.optimization, k) for k in ("fp8_storage", "quantize", "attention_backend", "cache")}
        about = {**call_kwargs, "vidgen": numeric}
        self.fingerprint = _fingerprint(pipe, about, media, extra.get("generator")) if self.path else ""
        self.report = extra.get("callback_on_step_end")
        self.total = len(steps)

    def __enter__(self) -> Keeper:
        self.extra["callback_on_step_end"] = self.on_step_end
        if self.path is None:
            return self
        if self.cfg.optimization.cache:
            # A cache hook's state would differ after skipped denoiser calls.
            log.info("--cache is on: a rerun will not resume from the saved %s (it starts over).", self.unit)
        else:
            self.done = _load_windows(self.path, self.fingerprint)
        if self.done:
            log.info(
                "resuming: %d of %d %s are in %s; replaying them.", len(self.done), self.total, self.unit, self.path
            )
            self.kept = list(self.done)
            self._stub()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._unstub()

    def _stub(self) -> None:
        transformer = self.pipe.transformer
        own = transformer.__dict__.get("forward")
        self.saved_forward = own
        forward = own or transformer.forward

        def skip_finished(*args: Any, **kwargs: Any) -> Any:
            if self.window < len(self.done):
                import torch

                hidden = kwargs.get("hidden_states", args[0] if args else None)
                return (torch.zeros_like(hidden),)
            return forward(*args, **kwargs)

        transformer.forward = skip_finished
        self.stubbed = True

    def _unstub(self) -> None:
        if not getattr(self, "stubbed", False):
            return
        transformer = self.pipe.transformer
        if self.saved_forward is None:
            del transformer.forward
        else:
            transformer.forward = self.saved_forward
        self.stubbed = False

    def on_step_end(self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if self.report is not None:
            tensors = self.report(pipe, step, timestep, tensors)
        _test_kill(self.window, self.step)
        self.step += 1
        if self.window >= self.total or self.step < self.steps[self.window]:
            return tensors
        # The last step of a window.
        if self.window < len(self.done):
            saved = self.done[self.window]
            tensors["latents"] = saved.to(tensors["latents"].device, tensors["latents"].dtype)
        elif self.path is not None:
            self.kept.append(tensors["latents"].detach().to("cpu").clone())
            if self.window + 1 < self.total:  # the final latents are the run's own output
                _save_windows(self.checkpoint, self.kept, self.fingerprint, self.total)
        self.window += 1
        self.step = 0
        return tensors


_oomed: set[int] = set()


def _test_kill(window: int, step: int) -> None:
    """Test hooks: VIDGEN_TEST_KILL_WINDOW=N makes the process SIGKILL itself after the first step
    of window N (1-based), and VIDGEN_TEST_OOM_WINDOW=N raises CUDA's out-of-memory error there
    (once per process), so tests can crash a long run mid-way on machines where it is fast."""
    if step:
        return
    if os.environ.get("VIDGEN_TEST_KILL_WINDOW") == str(window + 1):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("VIDGEN_TEST_OOM_WINDOW") == str(window + 1) and window not in _oomed:
        import torch

        _oomed.add(window)
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory in window {window + 1} (VIDGEN_TEST_OOM_WINDOW).")


def _fingerprint(pipe: Any, call_kwargs: dict[str, Any], media: dict[str, Any], generator: Any) -> str:
    """What makes two runs' windows interchangeable: model, dtype, pipeline, arguments, inputs, seed."""
    import diffusers

    digest = hashlib.sha256()
    about = {
        "class": type(pipe).__name__,
        "model": str(getattr(pipe.config, "_name_or_path", "")),
        "dtype": str(pipe.transformer.dtype),
        "call_kwargs": call_kwargs,
        "seed": generator.initial_seed() if generator is not None else None,
        "diffusers": diffusers.__version__,
    }
    digest.update(json.dumps(about, sort_keys=True, default=str).encode())
    for name in sorted(media):
        value = media[name]
        for image in value if isinstance(value, list) else [value]:
            digest.update(name.encode())
            digest.update(image.tobytes() if hasattr(image, "tobytes") else repr(image).encode())
    return digest.hexdigest()


def _save_windows(checkpoint: Any, windows: list[Any], fingerprint: str, total: int) -> None:
    import torch

    # One tensor (windows joined along the frame axis) in vidgen's atomic latents writer; the
    # format marker keeps `vidgen decode` from mistaking it for a video's final latents.
    joined = torch.cat(windows, dim=2)
    meta = {
        "format": WINDOWS_FORMAT,
        "fingerprint": fingerprint,
        "windows": [int(w.shape[2]) for w in windows],
        "total_windows": total,
    }
    checkpoint.save(joined, meta)


def _load_windows(path: Path, fingerprint: str) -> list[Any]:
    """The finished windows in `path` when they are this run's; none otherwise."""
    if not path.is_file():
        return []
    from safetensors import safe_open

    from vidgen.core.limits import MAX_LATENTS_ELEMENTS

    try:
        with safe_open(str(path), framework="pt") as handle:
            info = json.loads((handle.metadata() or {}).get("vidgen", "{}"))
            if not isinstance(info, dict) or info.get("format") != WINDOWS_FORMAT:
                return []
            if info.get("fingerprint") != fingerprint:
                log.info("%s holds windows of another run; this run starts over and replaces it.", path)
                return []
            shape = handle.get_slice("latents").get_shape()
            if len(shape) != 5 or shape[0] * shape[1] * shape[2] * shape[3] * shape[4] > MAX_LATENTS_ELEMENTS:
                return []
            joined = handle.get_tensor("latents")
    except Exception as exc:  # a torn or foreign file costs only the resume
        log.info("cannot resume from %s (%s); starting over.", path, exc)
        return []
    sizes = info.get("windows")
    if not isinstance(sizes, list) or sum(sizes) != joined.shape[2] or not all(isinstance(s, int) for s in sizes):
        return []
    return list(joined.split(sizes, dim=2))
