"""Cosmos 1.0 Diffusion (NVIDIA): world-foundation diffusion transformers (7B and 14B) on the
Cosmos tokenizer (AutoencoderKLCosmos, 8x8x8, 16 latent channels), prompted by T5-11B and sampled
with EDM Euler. Text to video through the Text2World checkpoints; image and video to video through
the Video2World ones (the clip's last 9 frames, two latent frames, continue into the world it
predicts: diffusers would condition on every frame it is given).

Each mode has its own checkpoint (Text2World transformers take 16 latent channels, Video2World
ones 17): a model named for the other mode is refused before loading. Frame counts are 8k+1 and
sizes multiples of 16 (refused before loading otherwise). Like Cosmos Predict 2.5 (cosmos.py), the
pipelines run NVIDIA's Cosmos Guardrail and refuse to run without it; the tiny random-weight models
carry the same pass-through stand-in.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import Footprint, Grid, Memory, Mode, Takes, merged, prompt_kwargs, sampling_kwargs, settings
from vidgen.families.cosmos import NEGATIVE, Cosmos, guardrail_class
from vidgen.families.tiny_parts import redraw_zeros

_SAMPLING = frozenset(
    {"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length", "fps"}
)
T2W = "nvidia/Cosmos-1.0-Diffusion-7B-Text2World"
V2W = "nvidia/Cosmos-1.0-Diffusion-7B-Video2World"
# The frames of a clip Video2World conditions on: NVIDIA's default (num_input_frames 9), two
# latent frames of the 8x temporal tokenizer.
CLIP_FRAMES = 9
# Parameter counts for the memory planner: diffusers' CosmosTransformer3DModel built on the meta
# device with the configs of diffusers' conversion script (Cosmos-1.0-Diffusion-7B/14B-*: 28
# blocks of 32x128; 36 blocks of 40x128): 7.236B and 14.267B. T5-11B's encoder and the
# CV8x8x8-1.0 tokenizer (AutoencoderKLCosmos) built the same way: 4.865B and 0.106B.
_T5_11B = 4.865e9
_TOKENIZER = 0.106e9
_SIZES = {
    f"nvidia/Cosmos-1.0-Diffusion-{size}-{kind}": {"transformer": count, "text_encoder": _T5_11B, "vae": _TOKENIZER}
    for size, count in (("7B", 7.236e9), ("14B", 14.267e9))
    for kind in ("Text2World", "Video2World")
}


class Cosmos1(Cosmos):
    name = "cosmos1"
    title = "Cosmos 1.0"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("CosmosTextToWorldPipeline", T2W, _SAMPLING),
        "i2v": Mode("CosmosVideoToWorldPipeline", V2W, _SAMPLING),
        "v2v": Mode("CosmosVideoToWorldPipeline", V2W, _SAMPLING),
    }
    # The pipelines' defaults and the diffusers docstrings' examples: 1280x704, 121 frames at 30
    # fps (the transformer conditioned on 30 fps), 36 steps, guidance 7, 512 T5 tokens. The
    # negative prompt is the pipelines' own default.
    reference = merged(
        settings(size=(704, 1280), frames=121, steps=36, guidance=7.0, fps=30, max_sequence_length=512),
        {"inputs": {"negative_prompt": NEGATIVE}, "sampling": {"fps": 30}},
    )
    # Checked on the tiny models (tests/test_cosmos1.py): the attention dispatcher and fp8
    # storage. Offload needs CUDA (the pipelines declare their model offload order).
    takes = Takes(
        model=frozenset(),
        optimizations=frozenset({"offload", "attention_backend", "fp8_storage"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        **Cosmos.hints,
        "model.loras": "the Cosmos 1.0 pipelines have no LoRA loader in diffusers",
        "model.scheduler": "Cosmos 1.0 samples with the EDM Euler scheduler its checkpoint ships",
        "sampling.strength": "Cosmos 1.0 continues the clip's last 9 frames rather than re-noising it",
        # AutoencoderKLCosmos.enable_tiling sets use_tiling, and its decode never reads it
        # (diffusers 0.42.1): the flag would change nothing.
        "optimization.vae_tiling": "the Cosmos tokenizer's decode never tiles in diffusers (enable_tiling is a no-op)",
        "optimization.decode_chunk_size": "its tokenizer decodes in one call",
    }
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=28,
            sizes=_SIZES,
            spatial=8,
            temporal=8,
            patch=2,
            width=4096,
            live=10,
            # The Wan VAE's figure (cosmos.py), not measured on the Cosmos tokenizer, which decodes
            # every frame in one call; tiling leaves it whole (see hints).
            decode=160,
            tiled=1.0,
        ),
        sliced=False,
        shapes={"14b": {"blocks": 36, "width": 5120}},
    )
    grid = Grid(frames=8, size=16, shortest=CLIP_FRAMES, any_clip=True, note=f"at least {CLIP_FRAMES} frames")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        model = cfg.model.id or ""
        wanted, other = ("Text2World", "Video2World") if cfg.mode == "t2v" else ("Video2World", "Text2World")
        if other.lower() in model.lower():
            raise ConfigError(
                f"--model {model} is a {other} checkpoint; vidgen {cfg.mode} runs {self.title} {wanted} "
                f"(e.g. {self.modes[cfg.mode].repo})."
            )
        frames = cfg.sampling.num_frames
        if cfg.mode == "v2v" and frames is not None and frames <= CLIP_FRAMES:
            raise ConfigError(
                f"--set sampling.num_frames={frames} leaves nothing to predict: {self.title} video-to-video starts "
                f"from the clip's last {CLIP_FRAMES} frames; nearest valid: {CLIP_FRAMES + 8}."
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


def _tiny(video2world: bool) -> Any:
    """Cosmos 1.0 with random weights: a two-block transformer, the tiny T5 other families use, a
    small Cosmos tokenizer (8x8x8, as the real one) and the checkpoints' EDM Euler scheduler."""
    import diffusers
    from diffusers import AutoencoderKLCosmos, CosmosTransformer3DModel, EDMEulerScheduler

    from vidgen.families.tiny_parts import t5_encoder, t5_tokenizer

    tokenizer = t5_tokenizer()
    transformer = CosmosTransformer3DModel(
        in_channels=16 + int(video2world),
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        mlp_ratio=2,
        text_embed_dim=32,
        adaln_lora_dim=4,
        max_size=(4, 32, 32),
        patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0),
        # As in cosmos.py: the real model's padding-mask channel needs torchvision.
        concat_padding_mask=False,
        extra_pos_embed_type="learnable",
    )
    # Zero-initialised layers would let the prompt change nothing: drawn at random instead.
    redraw_zeros(transformer)
    vae = AutoencoderKLCosmos(
        encoder_block_out_channels=(8, 16, 16, 16),
        decode_block_out_channels=(8, 16, 16, 16),
        attention_resolutions=(8,),
        resolution=64,
        num_layers=1,
        patch_size=4,
        patch_type="haar",
        spatial_compression_ratio=8,
        temporal_compression_ratio=8,
    )
    # The scheduler diffusers' conversion script saves with every Cosmos 1.0 checkpoint.
    scheduler = EDMEulerScheduler(
        sigma_min=0.002,
        sigma_max=80,
        sigma_data=0.5,
        sigma_schedule="karras",
        num_train_timesteps=1000,
        prediction_type="epsilon",
        rho=7.0,
        final_sigmas_type="sigma_min",
    )
    pipeline = diffusers.CosmosVideoToWorldPipeline if video2world else diffusers.CosmosTextToWorldPipeline
    return pipeline(
        text_encoder=t5_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=transformer.eval(),
        vae=vae.eval(),
        scheduler=scheduler,
        safety_checker=guardrail_class()(),
    )


def tiny_text2world() -> Any:
    return _tiny(video2world=False)


def tiny_video2world() -> Any:
    return _tiny(video2world=True)


Cosmos1.tiny = {"cosmos1-text2world": tiny_text2world, "cosmos1-video2world": tiny_video2world}

FAMILIES = (Cosmos1,)
