"""Allegro (Rhymes AI): a 2.8B diffusion transformer on its own video VAE (4x8x8, 4 latent
channels), prompted by T5-XXL; text to video, trained on 88 frames of 720x1280 at 15 fps.

diffusers' Allegro VAE decodes only in whole tiles of 24 frames and `sample_size` (320) pixels,
overlapping by 8 frames and 120/80 pixels, and has no untiled decode: vidgen always turns its
tiling on (the pipeline fails without it), and refuses frame counts and sizes the tiles do not
cover exactly, which diffusers would leave black, before loading.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    NO_FORWARD_CHUNKING,
    SDPA_SLICING,
    Caught,
    Decoding,
    Family,
    Footprint,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Previewing,
    Takes,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.tiny_parts import redraw_zeros

_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
REPO = "rhymes-ai/Allegro"
# The VAE's tiles (diffusers' AutoencoderKLAllegro: 24 frames, 8 of them shared; `sample_size`
# pixels, 120 shared between rows and 80 between columns), its 8x8 pixels per latent pixel, and
# the transformer's 2x2 patches.
_TILE_FRAMES, _FRAME_STRIDE = 24, 16
_OVERLAP_H, _OVERLAP_W = 120, 80
_PATCH_PIXELS = 16
# Allegro's VAE tile size; the tiny model's (vidgen's recipe below) is smaller.
_SAMPLE_SIZE, _TINY_SAMPLE_SIZE = 320, 128
# Parameter counts for the memory planner: diffusers' AllegroTransformer3DModel and
# AutoencoderKLAllegro built on the meta device with their default configs, which are Allegro's
# (32 blocks of 2304; the card's 2.8B DiT and 175M VAE): 2.772B and 0.175B. The text encoder:
# T5-XXL's encoder (T5EncoderModel of t5-v1_1-xxl), published 4.76B.
_SIZES = {REPO: {"transformer": 2.772e9, "text_encoder": 4.762e9, "vae": 0.175e9}}


def _sizes(sample: int, overlap: int, limit: int = 4096) -> list[int]:
    """The sizes one side can have: whole tiles of `sample` pixels sharing `overlap`, and an
    even number of latent pixels for the transformer's patches."""
    return [s for s in range(sample, limit + 1, sample - overlap) if s % _PATCH_PIXELS == 0]


def _nearest(value: int, valid: list[int]) -> str:
    below = [v for v in valid if v <= value][-1:]
    above = [v for v in valid if v > value][:1]
    return " or ".join(str(v) for v in below + above)


def check_tiles(title: str, cfg: RunConfig, sample: int) -> None:
    """Frames and sizes that the VAE's tiles of `sample` pixels cover exactly."""
    s = cfg.sampling
    frames = s.num_frames
    if frames is not None and (frames < _TILE_FRAMES or (frames - _TILE_FRAMES) % _FRAME_STRIDE):
        valid = list(range(_TILE_FRAMES, max(frames, _TILE_FRAMES) + _FRAME_STRIDE + 1, _FRAME_STRIDE))
        raise ConfigError(
            f"--frames {frames} does not fit {title}: its VAE decodes whole tiles of {_TILE_FRAMES} frames, "
            f"{_FRAME_STRIDE} apart, so it needs 16k+8 frames, at least {_TILE_FRAMES}; nearest valid: "
            f"{_nearest(frames, valid)}."
        )
    for flag, value, overlap in (("--height", s.height, _OVERLAP_H), ("--width", s.width, _OVERLAP_W)):
        valid = _sizes(sample, overlap, max(value or 0, sample) + 2 * sample)
        if value is not None and value not in valid:
            raise ConfigError(
                f"{flag} {value} does not fit {title}: its VAE decodes whole tiles of {sample} pixels sharing "
                f"{overlap}, and the transformer needs multiples of {_PATCH_PIXELS}; nearest valid: "
                f"{_nearest(value, valid)}."
            )


class Allegro(Family):
    name = "allegro"
    title = "Allegro"
    modes: ClassVar[dict[str, Mode]] = {"t2v": Mode("AllegroPipeline", REPO, _SAMPLING)}
    # The model card: 720x1280, 88 frames (6 s at 15 fps), 100 steps, guidance 7.5, 512 T5 tokens.
    reference = settings(size=(720, 1280), frames=88, steps=100, guidance=7.5, fps=15, max_sequence_length=512)
    # Checked on the tiny model (tests/test_allegro.py): PAB, FasterCache and TaylorSeer (its block
    # is not registered for first-block or MagCache), fp8 storage. Offload needs CUDA.
    takes = Takes(
        optimizations=frozenset({"offload", "fp8_storage", "cache"}),
        caches=frozenset({"pab", "faster", "taylorseer"}),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=first-block": "diffusers does not register Allegro's transformer block for it",
        "optimization.cache=magcache": "diffusers does not register Allegro's transformer block for it",
        "optimization.attention_backend": (
            "Allegro's attention processor calls PyTorch SDPA itself, not diffusers' dispatcher, so a backend "
            "would not be used"
        ),
        "optimization.attention_slicing": SDPA_SLICING,
        "optimization.vae_tiling": "Allegro's VAE decodes only in tiles; vidgen always turns its tiling on",
        "optimization.vae_slicing": "Allegro's VAE decodes one tile at a time already",
        "optimization.decode_chunk_size": "Allegro's VAE decodes one tile of 24 frames at a time already",
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "diffusers lists no repeated blocks for Allegro's transformer",
        "optimization.quantize": "not checked on Allegro's transformer; use --fp8-storage",
        "model.scheduler": "Allegro ships its Euler ancestral scheduler, which vidgen keeps",
        "model.loras": "Allegro's transformer takes no adapters in diffusers (no PEFT support)",
    }
    # The card runs the transformer and T5 in bf16 and the VAE in fp32 (its best precision).
    loading = Loading(cuda_dtype="bf16", dtypes={"vae": "fp32"})
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=32,
            sizes=_SIZES,
            spatial=8,
            temporal=4,
            patch=2,
            width=2304,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        decode_batch=_TILE_FRAMES,
        sliced=False,
    )
    # Latents are caught on their way into `decode_latents` (the default).
    decoding = Decoding()
    previewing = Previewing(
        refused="its VAE decodes only whole tiles of the trained size, so no smaller preview can be decoded"
    )

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        tiny = (cfg.model.id or "").startswith("tiny:")
        check_tiles(self.title, cfg, _TINY_SAMPLE_SIZE if tiny else _SAMPLE_SIZE)

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        # A checkpoint whose VAE tiles are of another size than Allegro's.
        check_tiles(self.title, cfg, pipe.vae.config.sample_size)

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        # diffusers' Allegro VAE raises NotImplementedError when asked to decode without tiles.
        pipe.vae.enable_tiling()
        return [{"method": "vae.enable_tiling", "kwargs": {}}]

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        # Caption cleaning needs BeautifulSoup, and the pipeline skips it (with a warning) where that is
        # not installed: the prompt would differ between machines. It is read as typed (lower-cased).
        kwargs["clean_caption"] = False
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0))

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        # `vidgen decode` loads the VAE alone, without `setup`.
        pipe.vae.enable_tiling()
        return super().decode(pipe, cfg, caught)

    tiny: ClassVar[dict[str, Any]] = {}


# -- tiny random-weight recipe (after diffusers' own Allegro tests, offline tokenizer) ------------


def tiny_t2v() -> Any:
    from diffusers import (
        AllegroPipeline,
        AllegroTransformer3DModel,
        AutoencoderKLAllegro,
        EulerAncestralDiscreteScheduler,
    )

    from vidgen.families.tiny_parts import t5_encoder, t5_tokenizer

    tokenizer = t5_tokenizer()
    transformer = AllegroTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        cross_attention_dim=24,
        sample_width=8,
        sample_height=8,
        sample_frames=6,
        caption_channels=32,  # the T5 d_model
    )
    # Zero-initialised tensors are drawn at random, so that every part shapes the output.
    redraw_zeros(transformer)
    vae = AutoencoderKLAllegro(
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
        # Tiles of 128 pixels (Allegro's are 320): the smallest the fixed 120-pixel overlap allows
        # that still keeps a 128x128 video to one tile.
        sample_size=_TINY_SAMPLE_SIZE,
    )
    return AllegroPipeline(
        tokenizer=tokenizer,
        text_encoder=t5_encoder(tokenizer),
        vae=vae.eval(),
        transformer=transformer.eval(),
        # Allegro's scheduler_config.json: Euler ancestral on linear betas 1e-4 to 0.02.
        scheduler=EulerAncestralDiscreteScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear"),
    )


Allegro.tiny = {"allegro": tiny_t2v}

FAMILIES = (Allegro,)
