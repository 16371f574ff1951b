"""Building a generation command from its own arguments and options plus the shared ones.

Every generation command (t2v, i2v, v2v, animate, ...) takes the same thirty-odd options; they
are listed once here, so a new shared option is added in one place. Typer reads a command's
parameters from its signature, so the command is a plain function whose `__signature__` is
assembled from these lists.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from vidgen.cli import _options as o
from vidgen.cli import _trust as t
from vidgen.cli._run import execute
from vidgen.core.errors import ConfigError, InputError
from vidgen.io.trust import Grants

# name -> (Annotated type, default), in --help order within each panel.
Params = dict[str, tuple[Any, Any]]

MODEL: Params = {
    "preset": (o.Preset, None),
    "model": (o.Model, None),
    "revision": (o.Revision, None),
    "dtype": (o.DType, None),
    "allow_pickle": (o.AllowPickle, None),
}
SAMPLING: Params = {
    "steps": (o.Steps, None),
    "guidance": (o.Guidance, None),
    "negative": (o.Negative, None),
    "height": (o.Height, None),
    "width": (o.Width, None),
    "seed": (o.Seed, None),
    "num_videos": (o.NumVideos, None),
    "set_": (o.Set, None),
}
# Prompt enhancement (every command that takes a prompt; families without text refuse it).
ENHANCE: Params = {
    "enhance_prompt": (o.EnhancePrompt, None),
    "enhancer": (o.Enhancer, None),
    "enhancer_seed": (o.EnhancerSeed, None),
}
RUN: Params = {
    "device": (o.Device, None),
    "memory": (o.Memory, None),
    "vram": (o.Vram, None),
    "offload": (o.Offload, None),
    "offload_type": (o.OffloadType, None),
    "offload_stream": (o.OffloadStream, None),
    "vae_tiling": (o.VaeTiling, None),
    "vae_slicing": (o.VaeSlicing, None),
    "forward_chunking": (o.ForwardChunking, None),
    "decode_chunk": (o.DecodeChunk, None),
    "attention_slicing": (o.AttentionSlicing, None),
    "fp8_storage": (o.Fp8Storage, None),
    "attention_backend": (o.AttentionBackend, None),
    "compile_": (o.Compile, None),
    "cache": (o.Cache, None),
    "mag_ratios": (o.MagRatios, None),
    "quantize": (o.Quantize, None),
    "oom_retry": (o.OomRetry, None),
    "out": (o.Out, None),
    "format_": (o.Format, None),
    "fps": (o.Fps, None),
    "crf": (o.Crf, None),
    "codec": (o.Codec, None),
    "overwrite": (o.Overwrite, False),
    "save_latents": o.output_option("latents"),
    "preview": o.output_option("preview"),
    "save_last_frame": o.output_option("last_frame"),
    "live_preview": o.output_option("live_preview"),
    "live_preview_every": o.every_option("live_preview"),
    "preview_decoder": (o.PreviewDecoder, None),
    "audio": (o.Audio, None),
    "interpolate": (o.Interpolate, None),
    "interpolate_model": (o.InterpolateModel, None),
    "upscale": (o.Upscale, None),
    "upscale_tile": (o.UpscaleTile, None),
    "upscale_scale": (o.UpscaleScale, None),
    "upscale_steps": (o.UpscaleSteps, None),
    "allow_inputs": (t.AllowInputs, False),
    "skip_memory_check": (t.SkipMemoryCheck, False),
    "dry_run": (o.DryRun, False),
    "json_": (o.Json, False),
    "quiet": (o.Quiet, False),
    "progress_format": (o.ProgressFormat, "rich"),
    "no_server": (t.NoServer, False),
}
# One video over several GPUs (t2v and i2v).
PARALLEL: Params = {
    "gpus": (o.Gpus, None),
    "context_parallel": (o.ContextParallel, None),
    "ring_degree": (o.RingDegree, None),
}
# Input-image/video options, for the modes that read one.
IMAGE_INPUT: Params = {"resize": (o.Resize, None), "background": (o.Background, None)}
# Keyframes and conditioning clips (LTX-Video's condition pipeline).
CONDITIONS: Params = {"keyframe": (o.Keyframe, None), "condition_video": (o.ConditionVideo, None)}
# Frame count, for the modes that make their own length (v2v takes the input's).
FRAMES: Params = {"frames": (o.Frames, None)}
# Sampler and LoRAs of the transformer families, including one LoRA per expert of two-expert models.
ADAPTERS: Params = {
    "scheduler": (o.Scheduler, None),
    "lora": (o.Lora, None),
    "lora_high": (o.LoraHigh, None),
    "lora_low": (o.LoraLow, None),
}
# Denoisers and text encoders from one file (GGUF, single-file safetensors), on every command a
# transformer family runs.
FILES: Params = {
    "transformer": (o.Transformer, None),
    "transformer_2": (o.Transformer2, None),
    "text_encoder": (o.TextEncoder, None),
}


def generation_command(mode: str, doc: str, arguments: Params, *groups: Params) -> Callable[..., None]:
    """A Typer command for `mode`: its positional `arguments`, the shared model options, the
    command's own option `groups`, then the shared sampling and run options. --help shows the
    panels in the order their first option appears."""
    own = {name: spec for group in (arguments, *groups) for name, spec in group.items()}
    merged: Params = {}
    # The options the families of this mode declare for themselves (--guidance-2, --flow-shift).
    declared = o.family_params(mode)
    # Input kinds a family declared for itself (the built-in ones are placed in the groups).
    inputs = o.input_params(mode)
    # --prompt-at where a family of this mode takes a frame -> prompt map (prompt travel).
    prompts = o.prompt_params(mode)
    for group in (arguments, MODEL, *groups, prompts, inputs, declared, SAMPLING, ENHANCE, RUN):
        for name, spec in group.items():
            # A command's own definition wins (animate's --base-model is the shared --model).
            merged.setdefault(name, own.get(name, spec))

    def command(ctx: typer.Context, **params: Any) -> None:
        if not params["no_server"]:
            _via_server(ctx)
        if params.get("prompts_file") is not None:
            _prompts_file(ctx, mode, params)
            return
        layers = o.flag_layers(ctx.params)
        execute(
            ctx,
            mode,
            params["preset"],
            layers,
            dry_run=params["dry_run"],
            as_json=params["json_"],
            quiet=params["quiet"],
            grants=Grants(allow_inputs=params["allow_inputs"], skip_memory_check=params["skip_memory_check"]),
            progress_format=params["progress_format"],
        )

    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    parameters = [context]
    for name, (annotation, default) in merged.items():
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__name__ = mode
    command.__qualname__ = mode
    command.__doc__ = doc
    return command


def _via_server(ctx: typer.Context) -> None:
    """With a `vidgen serve` of this user up (and running this vidgen in this environment), the
    command runs there, on a pipeline it keeps loaded, and prints here what it would have
    printed itself; it exits with the run's code. Without one, it returns: the run is local."""
    from vidgen.serve import client

    if os.environ.get(NO_SERVER, "") not in ("", "0"):
        return
    code = client.forward(list(ctx.meta.get("vidgen.argv") or []))
    if code is not None:
        raise typer.Exit(code)


# Set inside `vidgen serve` (its runs are local to it) and for --no-server everywhere.
NO_SERVER = "VIDGEN_NO_SERVER"


# A plain-text batch from a single-run command: one prompt per line.
PROMPTS_FILE: Params = {"prompts_file": (o.PromptsFile, None)}


def _prompts_file(ctx: typer.Context, mode: str, params: dict[str, Any]) -> None:
    """`--prompts-file FILE`: every line is a job of a plain-text batch that takes the other
    flags as its settings (resumable, one model load, a report like `vidgen batch`)."""
    from vidgen.batch import jobs as core
    from vidgen.cli.batch import BatchOptions, run_batch

    if params.get("prompt"):
        raise ConfigError("give a PROMPT or --prompts-file, not both.")
    from vidgen.core.limits import MAX_MANIFEST_BYTES, read_text

    source = str(params["prompts_file"])
    path = Path(source)
    if not path.exists():
        raise InputError(f"prompts file {source} does not exist.")
    jobs = core.read_manifest(source, read_text(path, MAX_MANIFEST_BYTES, "prompts file", InputError), fmt="txt")
    ctx.meta["vidgen.json"] = params["json_"]
    flags = {name: value for name, value in ctx.params.items() if name not in ("prompt", "out", "set_")}
    options = BatchOptions(
        source=source,
        mode=mode,
        presets=params["preset"] or [],
        out=Path(params["out"] or "outputs"),
        assignments=params["set_"] or [],
        layers=o.flag_layers(flags),
        dry_run=params["dry_run"],
        as_json=params["json_"],
        quiet=params["quiet"],
        progress_format=params["progress_format"],
        grants=Grants(allow_inputs=params["allow_inputs"], skip_memory_check=params["skip_memory_check"]),
        folder=path.parent,
    )
    run_batch(jobs, options)
