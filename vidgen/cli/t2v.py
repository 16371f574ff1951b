"""`vidgen t2v PROMPT`: text to video."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli._command import ADAPTERS, CONDITIONS, FILES, FRAMES, PARALLEL, PROMPTS_FILE, generation_command

t2v = generation_command(
    "t2v",
    """Generate a video from a text prompt.

    Without --preset this runs CogVideoX-5b (needs a GPU and a download on first use).
    Try it offline in seconds on CPU with the tiny random-weight model:

        vidgen t2v "a red fox running through fresh snow" \\
            --preset tiny-cogvideox --seed 7

    Wan 2.2 with its two experts guided apart:

        vidgen t2v "a fox in snow" --preset wan2.2-t2v-a14b \\
            --guidance 4 --guidance-2 3
    """,
    {
        "prompt": (
            Annotated[str | None, typer.Argument(help="What the video shows.", show_default=False)],
            None,
        )
    },
    FRAMES,
    CONDITIONS,
    ADAPTERS,
    FILES,
    {
        "motion_field_x": (o.MotionFieldX, None),
        "motion_field_y": (o.MotionFieldY, None),
        "t0": (o.T0, None),
        "t1": (o.T1, None),
    },
    PROMPTS_FILE,
    PARALLEL,
)
