"""`vidgen v2v VIDEO PROMPT`: video to video."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli._run import execute


def v2v(
    ctx: typer.Context,
    video: Annotated[
        str, typer.Argument(help="Video file (mp4, webm, gif, ...) or a folder of frames.", show_default=False)
    ],
    prompt: Annotated[str, typer.Argument(help="What the new video shows.", show_default=False)],
    preset: o.Preset = None,
    model: o.Model = None,
    revision: o.Revision = None,
    dtype: o.DType = None,
    allow_pickle: o.AllowPickle = None,
    motion_adapter: o.MotionAdapter = None,
    base_config: o.BaseConfig = None,
    scheduler: o.Scheduler = None,
    lora: o.Lora = None,
    resize: o.Resize = None,
    background: o.Background = None,
    input_fps: o.InputFps = None,
    max_frames: o.MaxFrames = None,
    strength: o.Strength = None,
    steps: o.Steps = None,
    guidance: o.Guidance = None,
    negative: o.Negative = None,
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
    """Restyle a video with a prompt, keeping its motion and layout.

    Without --preset this runs CogVideoX-5b video-to-video; it needs a GPU and a download on first use.
    The input is resampled to the output --fps and trimmed to a frame count the model takes.

    Try it offline in a second on CPU with a tiny model:

        vidgen v2v clip.mp4 "the same scene in watercolor" --preset tiny-cogvideox-v2v
    """
    execute(ctx, "v2v", preset, o.flag_layers(ctx.params), dry_run=dry_run, as_json=json_, quiet=quiet)
