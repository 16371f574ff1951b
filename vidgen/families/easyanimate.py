"""EasyAnimate V5.1 (Alibaba PAI): a 12B MMDiT on its Magvit video VAE (4x8x8, 16 latent
channels), prompted by Qwen2-VL 7B; text to video, and image to video or first/last frame to video
with the InP checkpoint, 1 to 49 frames at 8 fps.

diffusers floors an off-grid frame count to the 4k+1 below it and refuses sizes off 8, though
the transformer's 2x2 patches need multiples of 16: vidgen refuses both before loading. With
guidance and no negative prompt the pipeline fails (it iterates over None), so vidgen always
passes one (the docs' example's, or "" when the user clears it).

`EasyAnimateInpaintPipeline` takes no image: it takes a video tensor (batch, 3, frames, height,
width) in [0, 1] and a mask video (0 keeps a frame, 255 makes it). vidgen builds both from the image
(and --last-image) with diffusers' own `get_image_to_video_latent`, as the pipeline's example does,
and records that step in the sidecar. The pipeline reads `cache_mag_vae` from its VAE's config (a
key AutoencoderKLMagvit does not define): a checkpoint without it is refused after loading, before
denoising.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
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
    merged,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.tiny_parts import redraw_zeros

_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width"})
REPO = "alibaba-pai/EasyAnimateV5.1-12b-zh"
# The diffusers docs' image-to-video checkpoint (their table; the pipeline's docstring names it with
# a "-diffusers" suffix, which was not verified).
INP_REPO = "alibaba-pai/EasyAnimateV5.1-12b-zh-InP"
# The negative prompt of the diffusers example.
NEGATIVE = "bad detailed"
# The negative prompt of the inpaint pipeline's docstring example.
INP_NEGATIVE = "Twisted body, limb deformities, text subtitles, comics, stillness, ugliness, errors, garbled text."
# Image-to-video keeps the image's frame and makes the ones after it (and before the last image).
_I2V_SHORTEST = 5
# Parameter counts for the memory planner, from classes built on the meta device: the transformer as
# EasyAnimateTransformer3DModel with the published V5.1 12B config (48 blocks of 48x64 heads, 2x2
# patches, Qwen2-VL's 3584-wide captions; the InP repo's transformer/config.json, which differs only
# in its input channels), 11.80B; the Magvit VAE with its default config, 0.244B. The text encoder:
# Qwen2-VL-7B-Instruct (Qwen2VLForConditionalGeneration, published 8.29B).
_SIZES = dict.fromkeys((REPO, INP_REPO), {"transformer": 11.80e9, "text_encoder": 8.29e9, "vae": 0.244e9})


class _Previewing(Previewing):
    """Previews decoded by the Magvit VAE, from latents divided by its scaling factor first."""

    def decode(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], latents: Any) -> Any:
        return self.family.decode(pipe, cfg, Caught(halved(latents) / pipe.vae.config.scaling_factor))


class EasyAnimate(Family):
    name = "easyanimate"
    title = "EasyAnimate V5.1"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("EasyAnimatePipeline", REPO, _SAMPLING),
        # The inpaint pipeline's docstring example: 576x448, 49 frames, its negative prompt, and the
        # pipeline's own 50 steps and guidance 5.
        "i2v": Mode(
            "EasyAnimateInpaintPipeline",
            INP_REPO,
            _SAMPLING,
            inputs=frozenset({"last_image"}),
            defaults=merged(settings(size=(448, 576), guidance=5.0), {"inputs": {"negative_prompt": INP_NEGATIVE}}),
        ),
    }
    # The diffusers example (pipeline docstring): 512x512, 50 steps, guidance 6, "bad detailed";
    # the docs: 49 frames (1 to 49 work best), exported at 8 fps.
    reference = merged(
        settings(size=(512, 512), frames=49, steps=50, guidance=6.0, fps=8),
        {"inputs": {"negative_prompt": NEGATIVE}},
    )
    # Checked on the tiny model (tests/test_easyanimate.py): fp8 storage and VAE tiling. Offload
    # needs CUDA. Its transformer has no cache hooks, no adapters and no dispatcher in diffusers.
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "fp8_storage"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache": "EasyAnimate's transformer has no cache hooks in diffusers (no CacheMixin)",
        "optimization.attention_backend": (
            "EasyAnimate's attention processor calls PyTorch SDPA itself, not diffusers' dispatcher, so a backend "
            "would not be used"
        ),
        "optimization.attention_slicing": SDPA_SLICING,
        "optimization.decode_chunk_size": "its VAE decodes the whole clip in one call; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "diffusers lists no repeated blocks for EasyAnimate's transformer",
        "optimization.quantize": "not checked on EasyAnimate's transformer; use --fp8-storage",
        "model.scheduler": "EasyAnimate ships its flow-matching Euler scheduler, which vidgen keeps",
        "model.loras": "EasyAnimate's transformer takes no adapters in diffusers (no PEFT support)",
    }
    # The docs recommend float16 for the V5.1 checkpoints.
    loading = Loading(cuda_dtype="fp16")
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=48,
            sizes=_SIZES,
            spatial=8,
            temporal=4,
            patch=2,
            width=3072,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        sliced=False,
    )
    # The Magvit VAE compresses 4 frames and 8x8 pixels; the transformer patches 2x2 latents.
    grid = Grid(frames=4, size=16)
    # Caught at the VAE, already divided by its scaling factor by the pipeline.
    decoding = Decoding(latents="caught", catches={"latents": Catch("vae.decode")})
    previewing = _Previewing()

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        frames = cfg.sampling.num_frames
        if cfg.mode == "i2v" and frames is not None and frames < _I2V_SHORTEST:
            raise ConfigError(
                f"--frames {frames} is too short for {self.title} image-to-video: it needs at least {_I2V_SHORTEST} "
                f"frames (4k+1), the image's latent frame and one more; nearest valid: {_I2V_SHORTEST}."
            )

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        if cfg.mode == "i2v" and pipe.vae.config.get("cache_mag_vae") is None:
            # diffusers reads it when it sizes the mask, and would fail mid-run without it.
            raise ConfigError(
                f"{cfg.model.id} cannot run {self.title} image-to-video: its VAE config has no cache_mag_vae, which "
                "EasyAnimateInpaintPipeline reads (EasyAnimate V5.1's InP checkpoint sets it to true)."
            )

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if cfg.mode != "i2v":
            return {}
        return {
            "run": "video, mask_video = diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint."
            "get_image_to_video_latent([image], last_image, num_frames, (height, width)), passed instead of the images"
        }

    def _media(self, call_kwargs: dict[str, Any], media: dict[str, Any]) -> dict[str, Any]:
        """The inpaint pipeline's video and mask, from the image and last image (i2v)."""
        if "image" not in media:
            return media
        from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent

        size = (call_kwargs["height"], call_kwargs["width"])
        video, mask = get_image_to_video_latent(
            [media["image"]], media.get("last_image"), call_kwargs["num_frames"], size
        )
        rest = {name: value for name, value in media.items() if name not in ("image", "last_image")}
        return {**rest, "video": video, "mask_video": mask}

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        return super().call(pipe, cfg, call_kwargs, self._media(call_kwargs, media), **extra)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        # diffusers 0.42 iterates over a missing negative prompt when guiding, and fails.
        kwargs.setdefault("negative_prompt", "")
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0))

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        vae = pipe.vae
        video = vae.decode(caught.latents.to(vae.dtype), *caught.args, **caught.kwargs)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]

    tiny: ClassVar[dict[str, Any]] = {}


# -- tiny random-weight recipe (after diffusers' own EasyAnimate tests, offline tokenizer) --------


def _qwen2_vl(tokenizer: Any) -> Any:
    """A two-layer Qwen2-VL (the class the pipeline loads) with hidden size 16 for `tokenizer`."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = {name: tokenizer.convert_tokens_to_ids(f"<|{name}|>") for name in ("vision_start", "vision_end")}
    text = {
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "vocab_size": len(tokenizer),
        "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
    }
    config = Qwen2VLConfig(
        text_config=text,
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 16, "num_heads": 2},
        vocab_size=len(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"],
    )
    return Qwen2VLForConditionalGeneration(config).eval()


def _tiny(pipeline: str) -> Any:
    import diffusers
    from diffusers import AutoencoderKLMagvit, EasyAnimateTransformer3DModel, FlowMatchEulerDiscreteScheduler

    from vidgen.families.hunyuan15 import qwen2_tokenizer

    tokenizer = qwen2_tokenizer()
    transformer = EasyAnimateTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,  # its 3-D RoPE splits a head 2:3:3, each part even
        # Inpainting adds the mask's latent channel and the masked video's four.
        in_channels=9 if pipeline == "EasyAnimateInpaintPipeline" else 4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=16,  # the Qwen hidden size
        num_layers=2,
        sample_width=16,
        sample_height=16,
        patch_size=2,
    )
    # Zero-initialised tensors are drawn at random, so that every part shapes the output.
    redraw_zeros(transformer)
    vae = AutoencoderKLMagvit(
        down_block_types=(
            "SpatialDownBlock3D",
            "SpatialTemporalDownBlock3D",
            "SpatialTemporalDownBlock3D",
            "SpatialTemporalDownBlock3D",
        ),
        up_block_types=(
            "SpatialUpBlock3D",
            "SpatialTemporalUpBlock3D",
            "SpatialTemporalUpBlock3D",
            "SpatialTemporalUpBlock3D",
        ),
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        spatial_group_norm=False,
    )
    # Not an AutoencoderKLMagvit argument, but a key of V5.1's VAE configs that the inpaint pipeline
    # reads (the first frame is a latent frame of its own): kept in config.json as theirs is.
    vae.register_to_config(cache_mag_vae=True)
    return getattr(diffusers, pipeline)(
        vae=vae.eval(),
        text_encoder=_qwen2_vl(tokenizer),
        tokenizer=tokenizer,
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


def tiny_t2v() -> Any:
    return _tiny("EasyAnimatePipeline")


def tiny_inpaint() -> Any:
    return _tiny("EasyAnimateInpaintPipeline")


EasyAnimate.tiny = {"easyanimate": tiny_t2v, "easyanimate-inpaint": tiny_inpaint}

FAMILIES = (EasyAnimate,)
