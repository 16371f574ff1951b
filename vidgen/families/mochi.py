"""Mochi 1 (Genmo): a 10B asymmetric diffusion transformer (AsymmDiT) on its own causal VAE
(6x8x8, 12 latent channels), prompted by T5-XXL; text to video.

diffusers floors an off-grid frame count to the 6k+1 below it and refuses sizes off 8, though the
transformer's 2x2 patches need multiples of 16: vidgen refuses both before loading. The final
latents are caught on their way into the VAE, so --save-latents and `vidgen decode` work.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.families.base import (
    NO_FORWARD_CHUNKING,
    ONE_VIDEO_PER_CALL,
    SDPA_SLICING,
    Catch,
    Caught,
    Decoding,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    Previewing,
    Takes,
    halved,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.tiny_parts import redraw_zeros

_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
REPO = "genmo/mochi-1-preview"
# Parameter counts for the memory planner. The transformer and VAE: diffusers' MochiTransformer3DModel
# and AutoencoderKLMochi built on the meta device with their default configs, which are Mochi 1's
# (48 blocks of 3072, its 362M-parameter decoder plus the encoder): 10.03B and 0.46B. The text
# encoder: T5-XXL's encoder (T5EncoderModel of t5-v1_1-xxl), published 4.76B.
_TRANSFORMER = 10.028e9
_VAE = 0.460e9
_T5_XXL = 4.762e9
_SIZES = {REPO: {"transformer": _TRANSFORMER, "text_encoder": _T5_XXL, "vae": _VAE}}


def _denormalised(pipe: Any, latents: Any) -> Any:
    """The scheduler's latents as the pipeline hands them to the VAE (per-channel statistics)."""
    import torch

    config = pipe.vae.config
    shape = (1, -1, 1, 1, 1)
    mean = torch.tensor(config.latents_mean).view(shape).to(latents.device, latents.dtype)
    std = torch.tensor(config.latents_std).view(shape).to(latents.device, latents.dtype)
    return latents * std / config.scaling_factor + mean


class _Previewing(Previewing):
    """Previews decoded by Mochi's own VAE, from latents brought to its statistics first."""

    def decode(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], latents: Any) -> Any:
        return self.family.decode(pipe, cfg, Caught(halved(_denormalised(pipe, latents))))


class Mochi(Family):
    name = "mochi"
    title = "Mochi 1"
    modes: ClassVar[dict[str, Mode]] = {"t2v": Mode("MochiPipeline", REPO, _SAMPLING)}
    # The diffusers docs (mochi.md) and Genmo's reference: 848x480, 85 frames at 30 fps, guidance
    # 4.5, 64 steps (Genmo's and the pipeline's default), 256 T5 tokens.
    reference = settings(size=(480, 848), frames=85, steps=64, guidance=4.5, fps=30, max_sequence_length=256)
    # Checked on the tiny model (tests/test_mochi.py): every cache hook diffusers has (its block is
    # registered; cond and uncond run as one batch, which FasterCache needs), fp8 storage, VAE
    # tiling and LoRA (Mochi1LoraLoaderMixin). Offload needs CUDA.
    takes = Takes(
        model=frozenset({"loras"}),
        optimizations=frozenset({"offload", "vae_tiling", "fp8_storage", "cache"}),
        caches=frozenset({"first-block", "pab", "faster", "taylorseer", "magcache"}),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.attention_backend": (
            "Mochi's attention processor calls PyTorch SDPA itself, not diffusers' dispatcher, so a backend "
            "would not be used"
        ),
        "optimization.attention_slicing": SDPA_SLICING,
        "optimization.decode_chunk_size": "its VAE decodes the whole clip in one call; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "diffusers lists no repeated blocks for Mochi's transformer",
        "optimization.quantize": "not checked on Mochi's transformer; use --fp8-storage",
        "model.scheduler": "Mochi's pipeline sets its own linear-quadratic sigmas on its flow-matching Euler scheduler",
    }
    # The docs run bf16 (the bf16 variant: 22 GB with offload and tiling).
    loading = Loading(cuda_dtype="bf16")
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=48,
            sizes=_SIZES,
            spatial=8,
            temporal=6,
            patch=2,
            width=3072,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        sliced=False,
    )
    # The VAE compresses 6 frames and 8x8 pixels; the transformer patches 2x2 latents.
    grid = Grid(frames=6, size=16)
    # Caught at the VAE, already brought to its latent statistics by the pipeline.
    decoding = Decoding(latents="caught", catches={"latents": Catch("vae.decode")})
    previewing = _Previewing()

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0))

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        vae = pipe.vae
        video = vae.decode(caught.latents.to(vae.dtype), *caught.args, **caught.kwargs)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]

    tiny: ClassVar[dict[str, Any]] = {}


# -- tiny random-weight recipe (after diffusers' own Mochi tests, offline tokenizer) --------------


def tiny_t2v() -> Any:
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline, MochiTransformer3DModel

    from vidgen.families.tiny_parts import t5_encoder, t5_tokenizer

    tokenizer = t5_tokenizer()
    transformer = MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,  # FirstBlockCache needs two
        pooled_projection_dim=16,
        in_channels=12,
        text_embed_dim=32,  # the T5 d_model
        time_embed_dim=4,
        max_sequence_length=16,
    )
    # Zero-initialised tensors (the RoPE frequencies, as diffusers' tests keep them) are drawn at
    # random, so that every part of the transformer shapes the output.
    redraw_zeros(transformer)
    vae = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    )
    return MochiPipeline(
        # As diffusers' conversion script builds Mochi's scheduler.
        scheduler=FlowMatchEulerDiscreteScheduler(invert_sigmas=True),
        vae=vae.eval(),
        text_encoder=t5_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=transformer.eval(),
    )


Mochi.tiny = {"mochi": tiny_t2v}

FAMILIES = (Mochi,)
