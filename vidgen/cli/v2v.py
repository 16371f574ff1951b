"""`vidgen v2v VIDEO PROMPT`: video to video."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli._command import FILES, FRAMES, IMAGE_INPUT, generation_command
from vidgen.cli.animate import ANIMATEDIFF_MODEL, ANIMATEDIFF_SAMPLING

v2v = generation_command(
    "v2v",
    """Restyle a video with a prompt, keeping its motion and layout.

    Without --preset this runs CogVideoX-5b video-to-video; it needs a GPU and a download on first use.
    --preset wan2.1-v2v-1.3b (or -14b) runs Wan 2.1 video-to-video instead.
    --preset animatediff-v2v-controlnet keeps the video's edges with a ControlNet (--preprocess canny,
    or --control CONTROL with one frame per VIDEO frame). --preset anyflow-far-wan2.1-1.3b-v2v continues
    VIDEO to --frames frames.
    The input is resampled to the output --fps and trimmed to a frame count the model takes.

    Try it offline in seconds on CPU with a tiny model:

        vidgen v2v clip.mp4 "the same scene in watercolor" \\
            --preset tiny-cogvideox-v2v
    """,
    {
        "video": (
            Annotated[
                str, typer.Argument(help="Video file (mp4, webm, gif, ...) or a folder of frames.", show_default=False)
            ],
            ...,
        ),
        "prompt": (Annotated[str, typer.Argument(help="What the new video shows.", show_default=False)], ...),
    },
    {**ANIMATEDIFF_MODEL, "controlnet": (o.ControlNet, None)},
    FILES,
    IMAGE_INPUT,
    {"input_fps": (o.InputFps, None), "max_frames": (o.MaxFrames, None), "strength": (o.Strength, None)},
    {
        "control": o.input_option("control"),
        "preprocess": (o.Preprocess, None),
        "canny_low": (o.CannyLow, None),
        "canny_high": (o.CannyHigh, None),
        "control_scale": (o.ControlScale, None),
    },
    {"image_guidance": (o.ImageGuidance, None), "chunk": (o.Chunk, None)},
    # Continuation (AnyFlow FAR): the output's length, the clip's frames first.
    FRAMES,
    ANIMATEDIFF_SAMPLING,
)
