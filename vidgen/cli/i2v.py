"""`vidgen i2v IMAGE [PROMPT]`: image to video."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli._run import execute


def i2v(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="PNG, JPEG or WebP file, or an http(s) URL.", show_default=False)],
    prompt: Annotated[
        str | None,
        typer.Argument(help="What happens in the video (CogVideoX, I2VGen-XL; SVD takes none).", show_default=False),
    ] = None,
    preset: o.Preset = None,
    model: o.Model = None,
    revision: o.Revision = None,
    dtype: o.DType = None,
    allow_pickle: o.AllowPickle = None,
    resize: o.Resize = None,
    background: o.Background = None,
    frames: o.Frames = None,
    steps: o.Steps = None,
    guidance: o.Guidance = None,
    negative: o.Negative = None,
    height: o.Height = None,
    width: o.Width = None,
    seed: o.Seed = None,
    num_videos: o.NumVideos = None,
    motion_bucket_id: o.MotionBucketId = None,
    noise_aug_strength: o.NoiseAugStrength = None,
    cond_fps: o.CondFps = None,
    min_guidance: o.MinGuidance = None,
    max_guidance: o.MaxGuidance = None,
    target_fps: o.TargetFps = None,
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
    """Animate an image.

    Without --preset this runs Stable Video Diffusion XT: 25 frames at 1024x576.
    It needs a GPU and a download on first use.

    Try it offline in a second on CPU with a tiny model:

        vidgen i2v rocket.png --preset tiny-svd --frames 4 --decode-chunk 2
    """
    execute(ctx, "i2v", preset, o.flag_layers(ctx.params), dry_run=dry_run, as_json=json_, quiet=quiet)
