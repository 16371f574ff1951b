"""`vidgen animate PROMPT`: AnimateDiff, a motion adapter on any Stable Diffusion 1.5 checkpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli._run import execute


def animate(
    ctx: typer.Context,
    prompt: Annotated[
        str | None,
        typer.Argument(help="What the video shows (optional with --prompt-at 0:...).", show_default=False),
    ] = None,
    preset: o.Preset = None,
    model: o.BaseModel = None,
    motion_adapter: o.MotionAdapter = None,
    base_config: o.BaseConfig = None,
    scheduler: o.Scheduler = None,
    lora: o.Lora = None,
    revision: o.Revision = None,
    dtype: o.DType = None,
    allow_pickle: o.AllowPickle = None,
    frames: o.Frames = None,
    steps: o.Steps = None,
    guidance: o.Guidance = None,
    negative: o.Negative = None,
    prompt_at: o.PromptAt = None,
    height: o.Height = None,
    width: o.Width = None,
    seed: o.Seed = None,
    num_videos: o.NumVideos = None,
    context_length: o.ContextLength = None,
    context_stride: o.ContextStride = None,
    free_init: o.FreeInit = None,
    set_: o.Set = None,
    device: o.Device = None,
    offload: o.Offload = None,
    vae_tiling: o.VaeTiling = None,
    vae_slicing: o.VaeSlicing = None,
    forward_chunking: o.ForwardChunking = None,
    decode_chunk: o.DecodeChunk = None,
    compile_: o.Compile = None,
    out: o.Out = None,
    format_: o.Format = None,
    fps: o.Fps = None,
    crf: o.Crf = None,
    codec: o.Codec = None,
    overwrite: o.Overwrite = False,
    dry_run: o.DryRun = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Animate a prompt with AnimateDiff on a Stable Diffusion 1.5 checkpoint.

    Without --preset this runs the v1-5-2 motion adapter on epiCRealism (a GPU and a download on first use).
    Prompt travel: --prompt-at 0:TEXT --prompt-at 24:TEXT; longer videos: --context-length 16.

    Try it offline in a second on CPU with a tiny model:

        vidgen animate "a cat" --preset tiny-animatediff --frames 8 --steps 2
    """
    execute(ctx, "animate", preset, o.flag_layers(ctx.params), dry_run=dry_run, as_json=json_, quiet=quiet)
