"""`vidgen i2v IMAGE [PROMPT]`: image to video."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen.cli import _options as o
from vidgen.cli._command import ADAPTERS, CONDITIONS, FILES, FRAMES, IMAGE_INPUT, PARALLEL, generation_command

i2v = generation_command(
    "i2v",
    """Animate an image.

    Without --preset this runs Stable Video Diffusion XT: 25 frames at 1024x576.
    It needs a GPU and a download on first use.

    Try it offline in seconds on CPU with a tiny model:

        vidgen i2v rocket.png --preset tiny-svd --frames 4 --decode-chunk 2

    First and last frame (Wan 2.1 FLF2V, Wan 2.2 A14B):

        vidgen i2v first.png "it blooms" --last-image last.png \\
            --preset wan2.1-flf2v-14b-720p

    Keyframes (LTX-Video): first.png at frame 0, last.png at frame 96:

        vidgen i2v first.png "it blooms" --keyframe 96:last.png \\
            --preset ltx-video-0.9.5 --frames 97
    """,
    {
        "image": (
            Annotated[str, typer.Argument(help="PNG, JPEG or WebP file, or an http(s) URL.", show_default=False)],
            ...,
        ),
        "prompt": (
            Annotated[
                str | None,
                typer.Argument(
                    help="What happens in the video (CogVideoX, I2VGen-XL; SVD takes none).", show_default=False
                ),
            ],
            None,
        ),
    },
    {"last_image": o.input_option("last_image")},
    CONDITIONS,
    IMAGE_INPUT,
    FRAMES,
    ADAPTERS,
    FILES,
    {
        "motion_bucket_id": (o.MotionBucketId, None),
        "noise_aug_strength": (o.NoiseAugStrength, None),
        "cond_fps": (o.CondFps, None),
        "min_guidance": (o.MinGuidance, None),
        "max_guidance": (o.MaxGuidance, None),
        "target_fps": (o.TargetFps, None),
    },
    PARALLEL,
)
