"""Latte (Shanghai AI Lab): a latent diffusion transformer that alternates spatial and temporal
blocks, on Stable Diffusion's image VAE (8x8 pixels per latent, frame by frame), prompted by
T5-XXL; text to video, 16 frames of 512x512.

diffusers' pipeline takes the frame count as `video_length`, and its transformer adds a temporal
position table of `video_length` (16) rows to every clip: another count fails mid-run, so vidgen
refuses it before loading, with sizes off the 2x2 patches of 8x8-pixel latents (multiples of 16).
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    NO_FORWARD_CHUNKING,
    SDPA_SLICING,
    Caught,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    Takes,
    check_multiple,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.tiny_parts import redraw_zeros

_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width"})
REPO = "maxin-cn/Latte-1"
# The transformer's temporal position table (Latte-1's `video_length`, and the tiny model's).
_FRAMES = 16
# Parameter counts for the memory planner, from configs built on the meta device: the transformer
# as LatteTransformer3DModel with Latte-1's published XL/2 shape (28 blocks of 16x72 heads, 2x2
# patches, T5 captions; not read from the Hub here), 1.057B; Stable Diffusion's VAE (AutoencoderKL,
# 128-512 channels), 0.084B. The text encoder: T5-XXL's encoder (PixArt-alpha's), published 4.76B.
_SIZES = {REPO: {"transformer": 1.057e9, "text_encoder": 4.762e9, "vae": 0.084e9}}


class Latte(Family):
    name = "latte"
    title = "Latte"
    modes: ClassVar[dict[str, Mode]] = {"t2v": Mode("LattePipeline", REPO, _SAMPLING)}
    # The pipeline's defaults, which are Latte's own t2v sampling config for Latte-1 (Vchitect/Latte):
    # 16 frames of 512x512, 50 DDIM steps, guidance 7.5; 8 fps as its sample_t2v.py writes videos.
    reference = settings(size=(512, 512), frames=_FRAMES, steps=50, guidance=7.5, fps=8)
    # Checked on the tiny model (tests/test_latte.py): PAB, FasterCache and TaylorSeer (its blocks
    # are not registered for first-block or MagCache), fp8 storage, VAE tiling and the pipeline's
    # own decode chunks. Offload needs CUDA.
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "decode_chunk_size", "fp8_storage", "cache"}),
        caches=frozenset({"pab", "faster", "taylorseer"}),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=first-block": "diffusers does not register Latte's transformer blocks for it",
        "optimization.cache=magcache": "diffusers does not register Latte's transformer blocks for it",
        "optimization.attention_backend": (
            "Latte's attention processor calls PyTorch SDPA itself, not diffusers' dispatcher, so a backend "
            "would not be used"
        ),
        "optimization.attention_slicing": SDPA_SLICING,
        "optimization.vae_slicing": "Latte decodes --decode-chunk frames at a time already; lower that instead",
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "diffusers lists no repeated blocks for Latte's transformer",
        "optimization.quantize": "not checked on Latte's transformer; use --fp8-storage",
        "model.scheduler": "Latte ships its DDIM scheduler, which vidgen keeps",
        "model.loras": "Latte's transformer takes no adapters in diffusers (no PEFT support)",
    }
    # The diffusers example loads it in fp16.
    loading = Loading(cuda_dtype="fp16")
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=28,
            sizes=_SIZES,
            spatial=8,
            temporal=1,
            patch=2,
            width=1152,
            live=10,
            decode=1000,
            tiled=0.2,
        ),
        # The pipeline decodes 14 frames at a time unless told otherwise.
        decode_batch=14,
        sliced=False,
    )
    # Sizes: 8x8-pixel latents in 2x2 patches. Frames: checked against the position table below.
    grid = Grid(size=16)

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        _check_frames(self.title, cfg.sampling.num_frames, _FRAMES)

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        # A checkpoint whose position table has another length than Latte-1's.
        _check_frames(self.title, cfg.sampling.num_frames, pipe.transformer.config.video_length)
        check_multiple(self.title, cfg, 8 * pipe.transformer.config.patch_size)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        if "num_frames" in kwargs:
            kwargs["video_length"] = kwargs.pop("num_frames")
        if cfg.optimization.decode_chunk_size is not None:
            kwargs["decode_chunk_size"] = cfg.optimization.decode_chunk_size
        # Caption cleaning needs BeautifulSoup, and the pipeline skips it (with a warning) where that is
        # not installed: the prompt would differ between machines. It is read as typed (lower-cased).
        kwargs["clean_caption"] = False
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0))

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        # A live preview's latents come without the `video_length` the pipeline passes.
        if not caught.args and "video_length" not in caught.kwargs:
            caught = Caught(caught.latents, [caught.latents.shape[2]], caught.kwargs)
        return super().decode(pipe, cfg, caught)

    tiny: ClassVar[dict[str, Any]] = {}


def _check_frames(title: str, frames: int | None, length: int) -> None:
    if frames is not None and frames != length:
        raise ConfigError(
            f"--frames {frames} does not fit {title}: its transformer's temporal positions are for {length} frames "
            f"exactly; use --frames {length}."
        )


# -- tiny random-weight recipe (after diffusers' own Latte tests, offline tokenizer) --------------


def tiny_t2v() -> Any:
    from diffusers import AutoencoderKL, DDIMScheduler, LattePipeline, LatteTransformer3DModel

    from vidgen.families.tiny_parts import t5_encoder, t5_tokenizer

    tokenizer = t5_tokenizer()
    transformer = LatteTransformer3DModel(
        sample_size=8,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,  # the T5 d_model
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,  # learned variance, as Latte's: the pipeline keeps the first half
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        video_length=_FRAMES,
    )
    # Zero-initialised tensors are drawn at random, so that every part shapes the output.
    redraw_zeros(transformer)
    return LattePipeline(
        tokenizer=tokenizer,
        text_encoder=t5_encoder(tokenizer),
        # Stable Diffusion's VAE shape (four levels: 8x8 pixels per latent) at 8 channels.
        vae=AutoencoderKL(
            block_out_channels=(8, 8, 8, 8),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            sample_size=32,
            norm_num_groups=2,
        ).eval(),
        transformer=transformer.eval(),
        # Latte's sampling config: DDIM on linear betas 1e-4 to 0.02.
        scheduler=DDIMScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear"),
    )


Latte.tiny = {"latte": tiny_t2v}

FAMILIES = (Latte,)
