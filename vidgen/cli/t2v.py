"""`vidgen t2v PROMPT`: text to video."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli._run import execute


def t2v(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What the video shows.", show_default=False)],
    preset: o.Preset = None,
    model: o.Model = None,
    revision: o.Revision = None,
    dtype: o.DType = None,
    allow_pickle: o.AllowPickle = None,
    frames: o.Frames = None,
    steps: o.Steps = None,
    guidance: o.Guidance = None,
    negative: o.Negative = None,
    height: o.Height = None,
    width: o.Width = None,
    seed: o.Seed = None,
    num_videos: o.NumVideos = None,
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
    """Generate a video from a text prompt.

    Without --preset this runs CogVideoX-5b (needs a GPU and a download on first use).
    Try it offline in a second on CPU with the tiny random-weight model:

        vidgen t2v "a red fox running through fresh snow" --preset tiny-cogvideox --seed 7
    """
    execute(ctx, "t2v", preset, o.flag_layers(ctx.params), dry_run=dry_run, as_json=json_, quiet=quiet)
