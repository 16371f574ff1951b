"""Motif-Video 2B (Motif Technologies): a flow-matching transformer (12 dual-stream, 16
single-stream and 8 decoder blocks, 1536 wide) on the Wan 2.1 VAE (4x8x8, 16 latent channels),
prompted by a T5Gemma 2 encoder whose SigLIP tower also reads the first frame; text and image to
video, 1280x736 and 121 frames at 24 fps.

Its pipelines take no `guidance_scale`: a guider component carries the guidance, so --guidance
replaces it (`pipe.guider.new(guidance_scale=...)`) once after loading, and the sidecar records
that call. diffusers floors an off-grid frame count and checks sizes only against the VAE's 8,
though the transformer's 2x2 patches need 16: vidgen refuses both before loading.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    NO_FORWARD_CHUNKING,
    ONE_VIDEO_PER_CALL,
    Decoding,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Previewing,
    Takes,
    merged,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.wan import VAE_21

# guidance_scale is set on the guider (setup), never passed to __call__.
_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# Where guidance does something (1 = one pass, no guidance) and stays sane.
GUIDANCE = (1.0, 20.0)
# Image-to-video fills the first latent frame with the image and denoises the ones after it.
_I2V_SHORTEST = 5
REPO = "Motif-Technologies/Motif-Video-2B"
# The negative prompt of the diffusers docs' text-to-video example.
NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
# Parameter counts for the memory planner. The transformer: diffusers' MotifVideoTransformer3DModel
# built on the meta device with the model card's shape (12 dual-stream + 24 single-stream blocks,
# 8 of them decoder blocks, 12 heads of 128, shared cross-attention in the single stream), 2.15B;
# its text_embed_dim was not published where vidgen could read it, so 2560 (T5Gemma 2 4B's) was
# assumed, a few million parameters either way. The text encoder: the card names T5Gemma 2 but not
# its size; the 4B-4B encoder with its SigLIP tower (about 4.3B, not verified) is assumed, the
# largest, so plans err on the safe side. The Wan 2.1 VAE as in wan.py.
_TRANSFORMER = 2.151e9
_T5GEMMA2 = 4.3e9
_SIZES = {REPO: {"transformer": _TRANSFORMER, "text_encoder": _T5GEMMA2, "vae": VAE_21}}


def passes(cfg: RunConfig) -> int:
    """Transformer passes per step: the guider runs a negative pass unless guidance is 1."""
    guidance = cfg.sampling.guidance_scale
    return 1 if guidance is not None and guidance == 1.0 else 2


class MotifVideo(Family):
    name = "motif-video"
    title = "Motif-Video"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("MotifVideoPipeline", REPO, _SAMPLING),
        # The same checkpoint (its model_index names MotifVideoPipeline) through the image pipeline.
        "i2v": Mode("MotifVideoImage2VideoPipeline", REPO, _SAMPLING, loads_from=frozenset({"MotifVideoPipeline"})),
    }
    # The diffusers docs' examples: 1280x736, 121 frames, 50 steps, exported at 24 fps; the guidance
    # is the checkpoint's guider's own unless --guidance replaces it.
    reference = merged(
        settings(size=(736, 1280), frames=121, steps=50, fps=24),
        {"inputs": {"negative_prompt": NEGATIVE}},
    )
    # Checked on the tiny model (tests/test_motif.py): the attention dispatcher, PAB and TaylorSeer,
    # fp8 storage and VAE tiling. Offload needs CUDA (the pipeline declares its model offload order).
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "attention_backend", "cache", "fp8_storage"}),
        caches=frozenset({"pab", "taylorseer"}),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=first-block": (
            "diffusers' first-block cache fails on Motif-Video: its decoder blocks take a text stream of another "
            "length than the block it caches (a shape error on the tiny model); use --cache taylorseer"
        ),
        "optimization.cache=faster": "FasterCache assumes a batched guided pass, and the guider runs two passes",
        "optimization.cache=magcache": "no magnitude ratios are published for Motif-Video; use --cache taylorseer",
        "optimization.attention_slicing": "it attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.decode_chunk_size": "its VAE decodes in one call; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "not checked on Motif-Video's transformer",
        "optimization.quantize": "not checked on Motif-Video's transformer; use --fp8-storage",
        "model.scheduler": "Motif-Video runs the scheduler its checkpoint ships, which vidgen keeps",
        "model.loras": "Motif-Video's pipelines have no LoRA loader in diffusers",
    }
    # The guidance is set on the guider once after loading, so jobs that differ in it cannot share
    # a pipeline. The diffusers docs load it in bf16.
    loading = Loading(cuda_dtype="bf16", setup_fields=frozenset({"guidance_scale"}))
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=36,
            sizes=_SIZES,
            spatial=8,
            temporal=4,
            patch=2,
            width=1536,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        passes=passes,
        sliced=False,
    )
    # The Wan 2.1 VAE compresses 4 frames and 8x8 pixels; the transformer patches 2x2 latents.
    grid = Grid(frames=4, size=16)
    # Latent output, decoded as the pipeline does (the Wan VAE's per-channel statistics).
    decoding = Decoding(latents="latent")
    previewing = Previewing(tae="taew2_1.safetensors")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        guidance = cfg.sampling.guidance_scale
        low, high = GUIDANCE
        if guidance is not None and not low <= guidance <= high:
            raise ConfigError(
                f"--guidance {guidance:g} is out of range for {self.title}: its guider takes {low:g} (no guidance) "
                f"to {high:g}."
            )
        frames = cfg.sampling.num_frames
        if cfg.mode == "i2v" and frames is not None and frames < _I2V_SHORTEST:
            # With one latent frame the pipeline silently drops the image.
            raise ConfigError(
                f"--frames {frames} is too short for {self.title} image-to-video: it needs at least {_I2V_SHORTEST} "
                f"frames (4k+1), the image's latent frame and one more; nearest valid: {_I2V_SHORTEST}."
            )

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        guidance = cfg.sampling.guidance_scale
        if guidance is None:
            return []
        pipe.guider = pipe.guider.new(guidance_scale=guidance)
        return [{"method": "guider = guider.new", "kwargs": {"guidance_scale": guidance}}]

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        names = self.modes[cfg.mode].sampling - {"guidance_scale"}
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, names)}
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0))

    tiny: ClassVar[dict[str, Any]] = {}


# -- tiny random-weight recipe (after diffusers' own Motif-Video tests, offline tokenizer) --------


def _t5gemma2(vocab_size: int) -> Any:
    """A one-layer T5Gemma 2 encoder with hidden size 16 and a one-layer SigLIP tower (16 wide, on
    16x16 images), the class the pipelines load."""
    from transformers import T5Gemma2Encoder, T5Gemma2EncoderConfig, T5Gemma2TextConfig

    text = T5Gemma2TextConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=vocab_size,
        max_position_embeddings=128,
        head_dim=8,
        num_key_value_heads=2,
    )
    # The encoder layers read these, which the text config does not define (as diffusers' tests set them).
    text.dropout_rate = 0.0
    text.layer_norm_epsilon = 1e-6
    text.dense_act_fn = "gelu"
    vision = {
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 16,
        "patch_size": 4,
    }
    return T5Gemma2Encoder(T5Gemma2EncoderConfig(text_config=text, vision_config=vision, mm_tokens_per_image=4)).eval()


def _tiny(pipeline: str) -> Any:
    import diffusers
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, MotifVideoTransformer3DModel
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import SiglipImageProcessorPil

    from vidgen.families import tiny_parts

    tokenizer = tiny_parts.gemma_tokenizer()
    transformer = MotifVideoTransformer3DModel(
        in_channels=33,  # the latents, the image's latents and its mask
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=2,
        num_single_layers=2,
        num_decoder_layers=1,
        patch_size=2,
        text_embed_dim=16,  # the T5Gemma hidden size
        image_embed_dim=16,  # the SigLIP hidden size
        rope_axes_dim=(4, 4, 4),
        enable_text_cross_attention_single=True,
    )
    return getattr(diffusers, pipeline)(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        vae=AutoencoderKLWan(
            base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
        ).eval(),
        text_encoder=_t5gemma2(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer.eval(),
        guider=ClassifierFreeGuidance(guidance_scale=5.0),
        # The PIL-backed class: the default one wants torchvision, which vidgen does not depend on.
        feature_extractor=SiglipImageProcessorPil(size={"height": 16, "width": 16}),
    )


def tiny_t2v() -> Any:
    return _tiny("MotifVideoPipeline")


def tiny_i2v() -> Any:
    return _tiny("MotifVideoImage2VideoPipeline")


MotifVideo.tiny = {"motif-video": tiny_t2v, "motif-video-i2v": tiny_i2v}

FAMILIES = (MotifVideo,)
