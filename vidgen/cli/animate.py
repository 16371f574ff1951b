"""`vidgen animate [PROMPT]`: AnimateDiff, a motion adapter on any Stable Diffusion 1.5 checkpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli._command import FRAMES, PROMPTS_FILE, Params, generation_command

# Shared with `vidgen v2v`, which runs AnimateDiff video-to-video with the same components.
ANIMATEDIFF_MODEL: Params = {
    "motion_adapter": (o.MotionAdapter, None),
    "base_config": (o.BaseConfig, None),
    "scheduler": (o.Scheduler, None),
    "lora": (o.Lora, None),
}
ANIMATEDIFF_SAMPLING: Params = {
    "context_length": (o.ContextLength, None),
    "context_stride": (o.ContextStride, None),
    "free_init": (o.FreeInit, None),
}

animate = generation_command(
    "animate",
    """Animate a prompt with AnimateDiff on a Stable Diffusion 1.5 checkpoint.

    Without --preset this runs the v1-5-2 motion adapter on epiCRealism (a GPU and a download on first use).
    Prompt travel: --prompt-at 0:TEXT --prompt-at 24:TEXT; longer videos: --context-length 16.
    Keyframes (SparseCtrl): --keyframe 0:first.png --keyframe 15:last.png with
    --preset animatediff-sparsectrl-scribble (line drawings) or animatediff-sparsectrl-rgb (pictures).

    Try it offline in seconds on CPU with a tiny model:

        vidgen animate "a cat" --preset tiny-animatediff --frames 8 --steps 2
    """,
    {
        "prompt": (
            Annotated[
                str | None,
                typer.Argument(help="What the video shows (optional with --prompt-at 0:...).", show_default=False),
            ],
            None,
        )
    },
    # --base-model (also --model) replaces the shared --model: same field, AnimateDiff's wording.
    {"model": (o.BaseModel, None), **ANIMATEDIFF_MODEL, "controlnet": (o.ControlNet, None)},
    FRAMES,
    {"prompt_at": (o.PromptAt, None), "keyframe": (o.Keyframe, None)},
    {**ANIMATEDIFF_SAMPLING, "control_scale": (o.ControlScale, None)},
    PROMPTS_FILE,
)
