"""`vidgen control PROMPT --control VIDEO|DIR`: ControlNet-guided video."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli._command import FILES, FRAMES, IMAGE_INPUT, generation_command
from vidgen.cli.animate import ANIMATEDIFF_MODEL, ANIMATEDIFF_SAMPLING

control = generation_command(
    "control",
    """Make a video that follows the motion of a control video (edges, poses or depth).

    Without --preset this runs Text2Video-Zero on Stable Diffusion 1.5 with the canny ControlNet:
    cross-frame attention and one shared initial latent keep the frames one scene.
    --preset animatediff-controlnet uses AnimateDiff's motion adapter instead.
    Wan VACE presets (wan2.1-vace-1.3b, ...) also take --mask (white = generate,
    black = keep the control pixels: inpaint, outpaint; they are pasted back after
    decoding unless --no-keep-unmasked) and --ref subject images, and make
    --frames frames from the references alone when --control is left out.

    Try it offline in seconds on CPU with a tiny model:

        vidgen control "a robot walking" --control clip.mp4 --preprocess canny \\
            --preset tiny-text2video-zero-controlnet
    """,
    {"prompt": (Annotated[str, typer.Argument(help="What the video shows.", show_default=False)], ...)},
    {"controlnet": (o.ControlNet, None), **ANIMATEDIFF_MODEL},
    FILES,
    {
        "control": o.input_option("control"),
        "preprocess": (o.Preprocess, None),
        "canny_low": (o.CannyLow, None),
        "canny_high": (o.CannyHigh, None),
        "mask": o.input_option("mask"),
        "reference_images": o.input_option("reference_images"),
        "input_fps": (o.InputFps, None),
        "max_frames": (o.MaxFrames, None),
        **IMAGE_INPUT,
    },
    {"control_scale": (o.ControlScale, None), "chunk": (o.Chunk, None), **FRAMES, **ANIMATEDIFF_SAMPLING},
    {"save_control": o.output_option("control")},
)
