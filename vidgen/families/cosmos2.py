"""Cosmos Predict 2 Video2World (NVIDIA): a diffusion transformer (2B or 14B) on the Wan 2.1 VAE
(4x8x8, 16 latent channels), prompted by T5-11B; image to video and video to video (the clip's
last 5 frames continue into the world it predicts). It makes no video from text alone: the
pipeline always starts from an image or a clip.

Image to video passes the image as the pipeline's `image` (one latent conditioning frame). Video
to video passes the clip's last 5 frames as its `video`, the two latent frames NVIDIA's
Video2World conditions on; diffusers would condition on every frame it is given, so a whole clip
would leave nothing to predict.

Like Cosmos Predict 2.5 (cosmos.py), the pipeline runs NVIDIA's Cosmos Guardrail on every prompt
and video and refuses to run without it (the `cosmos_guardrail` package); the tiny random-weight
model carries the same pass-through stand-in. vidgen refuses frame counts off 4k+1 and sizes off
16 before loading.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import Footprint, Grid, Memory, Mode, Takes, merged, prompt_kwargs, sampling_kwargs, settings
from vidgen.families.cosmos import NEGATIVE, Cosmos, guardrail_class
from vidgen.families.tiny_parts import redraw_zeros
from vidgen.families.wan import VAE_21

_SAMPLING = frozenset(
    {"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length", "fps"}
)
REPO = "nvidia/Cosmos-Predict2-2B-Video2World"
REPO_14B = "nvidia/Cosmos-Predict2-14B-Video2World"
# The frames of a clip Video2World conditions on (two latent frames of the Wan VAE).
CLIP_FRAMES = 5
# Parameter counts for the memory planner: diffusers' CosmosTransformer3DModel built on the meta
# device with the configs diffusers' conversion script gives Cosmos-2.0-Diffusion-2B/14B-Video2World
# (28 blocks of 16x128; 36 blocks of 40x128): 1.956B and 14.265B. The text encoder: T5-11B's
# encoder (24 layers, d_model 1024, d_ff 65536), built the same way: 4.865B. The Wan 2.1 VAE as in
# wan.py.
_T5_11B = 4.865e9
_SIZES = {
    REPO: {"transformer": 1.956e9, "text_encoder": _T5_11B, "vae": VAE_21},
    REPO_14B: {"transformer": 14.265e9, "text_encoder": _T5_11B, "vae": VAE_21},
}


class Cosmos2(Cosmos):
    name = "cosmos2"
    title = "Cosmos Predict 2"
    modes: ClassVar[dict[str, Mode]] = {
        "i2v": Mode("Cosmos2VideoToWorldPipeline", REPO, _SAMPLING),
        "v2v": Mode("Cosmos2VideoToWorldPipeline", REPO, _SAMPLING),
    }
    # The pipeline's defaults, which are the diffusers docstring's example and the 720p 16 fps
    # checkpoint NVIDIA's quickstart downloads: 1280x704, 93 frames, 35 steps, guidance 7, the
    # transformer conditioned on 16 fps, its negative prompt, 512 T5 tokens.
    reference = merged(
        settings(size=(704, 1280), frames=93, steps=35, guidance=7.0, fps=16, max_sequence_length=512),
        {"inputs": {"negative_prompt": NEGATIVE}, "sampling": {"fps": 16}},
    )
    # Checked on the tiny model (tests/test_cosmos2.py): the attention dispatcher, fp8 storage and
    # VAE tiling. Offload needs CUDA (the pipeline declares its model offload order).
    takes = Takes(
        model=frozenset(),
        optimizations=frozenset({"offload", "vae_tiling", "attention_backend", "fp8_storage"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        **Cosmos.hints,
        "model.loras": "Cosmos2VideoToWorldPipeline has no LoRA loader in diffusers",
        "model.scheduler": "Cosmos Predict 2 samples with the flow-matching Euler scheduler its checkpoint ships",
        "sampling.strength": "Cosmos Predict 2 continues the clip's last 5 frames rather than re-noising it",
    }
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=28,
            sizes=_SIZES,
            spatial=8,
            temporal=4,
            patch=2,
            width=2048,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        sliced=False,
        shapes={"14b": {"blocks": 36, "width": 5120}},
    )
    # An input clip of any length of at least 5 frames: the last 5 are taken.
    grid = Grid(frames=4, size=16, shortest=CLIP_FRAMES, any_clip=True, note=f"at least {CLIP_FRAMES} frames")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        frames = cfg.sampling.num_frames
        if cfg.mode == "v2v" and frames is not None and frames <= CLIP_FRAMES:
            raise ConfigError(
                f"--set sampling.num_frames={frames} leaves nothing to predict: {self.title} video-to-video starts "
                f"from the clip's last {CLIP_FRAMES} frames; nearest valid: {CLIP_FRAMES + 4}."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        kwargs["output_type"] = "np"
        return kwargs

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if cfg.mode != "v2v":
            return {}
        return {"run": f"the clip's last {CLIP_FRAMES} frames are passed: video=clip[-{CLIP_FRAMES}:]"}

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        if cfg.mode == "v2v":
            media = {**media, "video": list(media["video"])[-CLIP_FRAMES:]}
        return pipe(**call_kwargs, **media, **extra).frames[0]

    tiny: ClassVar[dict[str, Any]] = {}


def tiny_predict2() -> Any:
    """Cosmos Predict 2 Video2World with random weights: a two-block transformer, the tiny T5 and
    Wan VAE other families use, the checkpoint's Karras flow-matching Euler scheduler."""
    from diffusers import (
        AutoencoderKLWan,
        Cosmos2VideoToWorldPipeline,
        CosmosTransformer3DModel,
        FlowMatchEulerDiscreteScheduler,
    )

    from vidgen.families.tiny_parts import t5_encoder, t5_tokenizer

    tokenizer = t5_tokenizer()
    transformer = CosmosTransformer3DModel(
        in_channels=16 + 1,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        mlp_ratio=2,
        text_embed_dim=32,
        adaln_lora_dim=4,
        max_size=(4, 32, 32),
        patch_size=(1, 2, 2),
        rope_scale=(1.0, 3.0, 3.0),
        # As in cosmos.py: the real model's padding-mask channel needs torchvision.
        concat_padding_mask=False,
        extra_pos_embed_type=None,
    )
    # Zero-initialised layers would let the prompt change nothing: drawn at random instead.
    redraw_zeros(transformer)
    return Cosmos2VideoToWorldPipeline(
        text_encoder=t5_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=transformer.eval(),
        vae=AutoencoderKLWan(
            base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
        ).eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
        safety_checker=guardrail_class()(),
    )


Cosmos2.tiny = {"cosmos-predict2": tiny_predict2}

FAMILIES = (Cosmos2,)
