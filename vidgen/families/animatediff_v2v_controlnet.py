"""AnimateDiff video-to-video with a ControlNet: restyle a video while a ControlNet holds its
structure (edges, poses, depth) frame for frame.

`vidgen v2v VIDEO PROMPT --preset animatediff-v2v-controlnet` runs diffusers'
AnimateDiffVideoToVideoControlNetPipeline: VIDEO is noised to --strength and denoised as
AnimateDiff video-to-video does, with the control maps steering each frame. The maps come from
VIDEO itself through --preprocess (canny by default), or from --control CONTROL (one frame per
VIDEO frame; --preprocess none for maps made elsewhere). It is a video-to-video run because the
video is what is transformed; the control only guides it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.animatediff import MODEL_FIELDS, SAMPLING, SD15_BASE, AnimateDiff
from vidgen.families.base import Mode
from vidgen.families.tiny_parts import redraw_zeros

_CONTROL_INPUTS = frozenset({"control", "preprocess", "canny_low", "canny_high"})


class AnimateDiffV2VControlNet(AnimateDiff):
    name = "animatediff-v2v-controlnet"
    title = "AnimateDiff video-to-video ControlNet"
    modes: ClassVar[dict[str, Mode]] = {
        "v2v": Mode(
            "AnimateDiffVideoToVideoControlNetPipeline",
            SD15_BASE,
            SAMPLING | {"strength", "controlnet_conditioning_scale"},
            inputs=_CONTROL_INPUTS,
            media={"control": "conditioning_frames"},
            model=MODEL_FIELDS | {"controlnet"},
            # AnimateDiff video-to-video's strength and length, the canny ControlNet on edges
            # drawn from the input video.
            defaults={
                "model": {"controlnet": "canny"},
                "sampling": {"strength": 0.8, "controlnet_conditioning_scale": 1.0},
                "inputs": {"max_frames": 16, "preprocess": "canny"},
            },
        )
    }

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        if not cfg.inputs.control and (cfg.inputs.preprocess or "none") == "none":
            raise ConfigError(
                f"{self.title} needs control maps: --preprocess canny|pose|depth draws them from VIDEO, or "
                "--control CONTROL gives them (one frame per VIDEO frame)."
            )

    tiny: ClassVar[dict[str, Any]] = {}


def _tiny_controlnet() -> Any:
    """The tiny SD 1.5 base's ControlNet (vidgen/models/tiny.py `controlnet`'s shape) with its
    zero-initialised output convolutions drawn at random, so the control maps change the video
    and a test can tell whether they reached the pipeline."""
    from diffusers import ControlNetModel

    model = ControlNetModel(
        block_out_channels=(8, 8),
        layers_per_block=2,
        in_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        cross_attention_dim=8,
        conditioning_embedding_out_channels=(8, 8),
        norm_num_groups=2,
    )
    redraw_zeros(model, std=1.0)
    return model.eval()


AnimateDiffV2VControlNet.tiny = {"controlnet-live": _tiny_controlnet}

FAMILIES = (AnimateDiffV2VControlNet,)
