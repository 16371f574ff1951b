"""Kandinsky 5.0 Video (Kandinsky Lab): a flow-matching diffusion transformer on the HunyuanVideo
VAE (4x8x8, 16 latent channels), prompted by Qwen2.5-VL and CLIP; text and image to video.

Lite (2B) and Pro (19B) checkpoints share the pipelines; the Lite line comes as SFT, CFG-distilled
("nocfg") and 16-step distilled weights, each for 5 s and 10 s clips (the 10 s ones attend
sparsely, NABLA). diffusers rounds off-grid frame counts with a warning; vidgen refuses them.
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
    Takes,
    merged,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.tiny_parts import redraw_zeros

_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# The negative prompt of the diffusers docs' examples (and the pipeline's own when none is given).
NEGATIVE = (
    "Static, 2D cartoon, cartoon, 2d animation, paintings, images, worst quality, low quality, ugly, deformed, "
    "walking backwards"
)
# Image-to-video normalises the first 4 latent frames against the ones after them: 5 latent frames.
_I2V_SHORTEST = 17
# The pipeline refuses longer Qwen sequences.
_MAX_SEQUENCE = 1024
# Parameter counts for the memory planner. Lite's transformer: diffusers' class built on the meta
# device with its default config (the Lite one: 32 visual blocks of 2048); Pro's is the published
# 19B (diffusers docs, kandinsky5_video.md), not re-counted. The text encoder is the whole
# Qwen2.5-VL-7B (the pipeline loads Qwen2_5_VLForConditionalGeneration, vision tower and LM head
# included; published size), CLIP ViT-L/14's text tower and the HunyuanVideo VAE as in hunyuan.py.
_LITE = 2.147e9
_PRO = 19.0e9
_QWEN25_VL_7B = 8.29e9
_CLIP_L = 1.23e8
_HV_VAE = 2.46e8
_LITE_REPOS = tuple(
    f"kandinskylab/Kandinsky-5.0-T2V-Lite-{kind}-{length}-Diffusers"
    for kind in ("sft", "nocfg", "distilled16steps", "pretrain")
    for length in ("5s", "10s")
)
_PRO_REPOS = (
    "kandinskylab/Kandinsky-5.0-T2V-Pro-sft-5s-Diffusers",
    "kandinskylab/Kandinsky-5.0-I2V-Pro-sft-5s-Diffusers",
)
_SIZES = {
    **{
        repo: {"transformer": _LITE, "text_encoder": _QWEN25_VL_7B, "text_encoder_2": _CLIP_L, "vae": _HV_VAE}
        for repo in _LITE_REPOS
    },
    **{
        repo: {"transformer": _PRO, "text_encoder": _QWEN25_VL_7B, "text_encoder_2": _CLIP_L, "vae": _HV_VAE}
        for repo in _PRO_REPOS
    },
}


def passes(cfg: RunConfig) -> int:
    """Transformer passes per step: a second, unguided one when guidance is above 1."""
    guidance = cfg.sampling.guidance_scale
    return 2 if guidance is None or guidance > 1.0 else 1


class Kandinsky5(Family):
    name = "kandinsky5"
    title = "Kandinsky 5.0 Video"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("Kandinsky5T2VPipeline", "kandinskylab/Kandinsky-5.0-T2V-Lite-sft-5s-Diffusers", _SAMPLING),
        # Pro's example in the diffusers docs runs 768x1024 (height x width).
        "i2v": Mode(
            "Kandinsky5I2VPipeline",
            "kandinskylab/Kandinsky-5.0-I2V-Pro-sft-5s-Diffusers",
            _SAMPLING,
            defaults=settings(size=(768, 1024)),
        ),
    }
    # The diffusers docs' Lite example: 768x512, 121 frames (5 s at 24 fps), 50 steps, guidance 5.
    reference = merged(
        settings(size=(512, 768), frames=121, steps=50, guidance=5.0, fps=24, max_sequence_length=512),
        {"inputs": {"negative_prompt": NEGATIVE}},
    )
    # Checked on the tiny model (tests/test_kandinsky5.py): TaylorSeer, the attention dispatcher,
    # fp8 storage and VAE tiling. Offload needs CUDA (the pipeline declares its model offload order).
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "attention_backend", "cache", "fp8_storage"}),
        caches=frozenset({"taylorseer"}),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=faster": "FasterCache assumes a batched guided pass, and Kandinsky 5 runs two passes",
        "optimization.cache=first-block": (
            "vidgen looks for transformer_blocks, and Kandinsky 5's are visual_transformer_blocks; "
            "use --cache taylorseer"
        ),
        "optimization.cache=pab": "not checked on Kandinsky 5's transformer; use --cache taylorseer",
        "optimization.cache=magcache": "no magnitude ratios are published for Kandinsky 5; use --cache taylorseer",
        "optimization.decode_chunk_size": "its VAE decodes in one call; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "it attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "not checked on Kandinsky 5's transformer (10 s models want flex attention compiled)",
        "optimization.quantize": "not checked on Kandinsky 5's transformer",
        "model.scheduler": "Kandinsky 5 was trained for its flow-matching Euler scheduler",
        "model.loras": "not checked on Kandinsky 5 yet",
    }
    loading = Loading(cuda_dtype="bf16")
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=32,
            sizes=_SIZES,
            spatial=8,
            temporal=4,
            patch=2,
            width=2048,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        # Pro: 19B published; its width is not published beside it, so Lite's is kept.
        passes=passes,
        sliced=False,
    )
    # The HunyuanVideo VAE compresses 4 frames and 8x8 pixels; the transformer patches 2x2 latents.
    grid = Grid(frames=4, size=16)
    decoding = Decoding(latents=None)  # the pipeline decodes inside its own steps

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        length = cfg.sampling.max_sequence_length
        if length is not None and length > _MAX_SEQUENCE:
            raise ConfigError(
                f"--set sampling.max_sequence_length={length} is too long for {self.title}: at most {_MAX_SEQUENCE}."
            )
        frames = cfg.sampling.num_frames
        if cfg.mode == "i2v" and frames is not None and frames < _I2V_SHORTEST:
            # The pipeline evens the first 4 latent frames out against the next ones; with no
            # next ones it divides by nothing and the video comes out NaN (black).
            raise ConfigError(
                f"--frames {frames} is too short for {self.title} image-to-video: it needs at least {_I2V_SHORTEST} "
                f"frames (4k+1); nearest valid: {_I2V_SHORTEST}."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0))

    tiny: ClassVar[dict[str, Any]] = {}


# -- tiny random-weight recipes (after diffusers' own Kandinsky 5 tests, offline tokenizers) -----


def qwen_tokenizer(template: str, crop: int) -> Any:
    """Qwen2's tokenizer, fitted to the pipeline's prompt template: the pipeline drops the first
    `crop` (128) tokens, the system message as Qwen's tokenizer splits it. Letter by letter it is
    ~600 tokens, which would leave ~500 tokens of template around a prompt of a dozen; chunks of
    the message become single tokens here, so that exactly the template is dropped and the prompt
    alone remains, as with the real tokenizer.

    The real checkpoints ship a Qwen2VLProcessor, whose video processor needs torchvision; the
    pipeline only tokenizes text with it, which the tokenizer does alone."""
    from vidgen.families.hunyuan15 import qwen2_tokenizer

    def before_prompt(tokenizer: Any) -> int:
        empty, marked = (tokenizer(template.format(p))["input_ids"] for p in ("", "a"))
        return next(i for i, (x, y) in enumerate(zip(empty, marked, strict=False)) if x != y)

    body = template.split("<|im_start|>system\n", 1)[1].split("<|im_end|>", 1)[0]
    # Chunks holding whitespace split unevenly, so the count that lands on `crop` is searched for;
    # where no count does (Kandinsky 6's template), the role names outside the system message
    # become single tokens too, which moves the total by a few.
    for roles in ((), ("user",), ("system",), ("system", "user")):
        for count in range(crop // 2, crop + 1):
            tokenizer = qwen2_tokenizer()
            tokenizer.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
            tokenizer.add_tokens(list(roles))
            step = len(body) / count
            tokenizer.add_tokens([body[round(i * step) : round((i + 1) * step)] for i in range(count)])
            if before_prompt(tokenizer) == crop:
                return tokenizer
    raise AssertionError("the tiny tokenizer no longer fits the pipeline's prompt template")


def _tiny(pipeline: str) -> Any:
    import diffusers
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, Kandinsky5Transformer3DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from vidgen.families.tiny_parts import clip_tokenizer, qwen25_vl_encoder

    cls = getattr(diffusers, pipeline)
    shell = cls(*[None] * 7)  # only for its prompt template
    tokenizer = qwen_tokenizer(shell.prompt_template, shell.prompt_template_encode_start_idx)
    qwen = qwen25_vl_encoder(tokenizer)
    tokenizer_2 = clip_tokenizer()
    clip = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer_2),
        projection_dim=32,
    )
    transformer = Kandinsky5Transformer3DModel(
        in_visual_dim=4,
        in_text_dim=16,  # the Qwen hidden size
        in_text_dim2=32,  # the CLIP hidden size
        time_dim=32,
        out_visual_dim=4,
        patch_size=(1, 2, 2),
        model_dim=48,
        ff_dim=64,
        num_text_blocks=1,
        num_visual_blocks=2,  # FirstBlockCache needs two
        axes_dims=(8, 8, 8),
        visual_cond=pipeline == "Kandinsky5I2VPipeline",
    )
    # The modulation layers start at zero (as in training), so every block would pass its input
    # through untouched and the prompt would change nothing: they are drawn at random instead.
    redraw_zeros(transformer)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
    )
    return cls(
        transformer=transformer.eval(),
        vae=vae.eval(),
        text_encoder=qwen,
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModel(clip).eval(),
        tokenizer_2=tokenizer_2,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=10.0),
    )


def tiny_t2v() -> Any:
    return _tiny("Kandinsky5T2VPipeline")


def tiny_i2v() -> Any:
    return _tiny("Kandinsky5I2VPipeline")


Kandinsky5.tiny = {"kandinsky5": tiny_t2v, "kandinsky5-i2v": tiny_i2v}

FAMILIES = (Kandinsky5,)
