"""HunyuanVideo-1.5 (Tencent): an 8.3B flow transformer on a 16x-compressing VAE (4x16x16, 32
latent channels), prompted by Qwen2.5-VL's language model and a ByT5 glyph encoder.

Its pipelines take no `guidance_scale`: a guider component carries classifier-free guidance, so
--guidance replaces the guider (`pipe.guider.new(guidance_scale=...)`) once after loading, and the
sidecar records that call. They have no LoRA loader either: LoRAs load into the transformer
(`transformer.load_lora_adapter`). Image-to-video takes its size from the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
    Decoding,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Option,
    ScaledPreviewing,
    Takes,
    prompt_kwargs,
    sampling_kwargs,
    settings,
    shift_scheduler,
)
from vidgen.families.hunyuan import transformer_passes
from vidgen.families.wan import FLOW_SHIFT

# Where classifier-free guidance does something (1 = one pass, no guidance) and stays sane.
GUIDANCE = (1.0, 20.0)
# Parameter counts for the memory planner: the transformer (54 blocks of 16x128) and VAE as
# diffusers builds them with their default configs, counted on the meta device; Qwen2.5-VL-7B's
# language model without its LM head, the ByT5-small encoder and SigLIP so400m's vision tower are
# the models' published sizes (not re-counted here).
_HV15_TRANSFORMER = 8.33e9
_QWEN25_VL_TEXT = 7.07e9
_BYT5 = 2.19e8
_HV15_VAE = 1.261e9
_SIGLIP = 4.28e8


# guidance_scale is set on the guider (setup), never passed to __call__; height and width
# size the i2v input image, from which the pipeline takes the video's size.
_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width"})
# The guidance of the official generate.py (the guider's).
_REFERENCE_GUIDANCE = 6.0


def passes(cfg: RunConfig) -> int:
    """Transformer passes per step: the guider runs a negative pass unless guidance is 1."""
    guidance = cfg.sampling.guidance_scale
    return 1 if guidance is not None and guidance == 1.0 else 2


class HunyuanVideo15(Family):
    name = "hunyuanvideo15"
    title = "HunyuanVideo-1.5"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("HunyuanVideo15Pipeline", "hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v", _SAMPLING),
        "i2v": Mode(
            "HunyuanVideo15ImageToVideoPipeline", "hunyuanvideo-community/HunyuanVideo-1.5-480p_i2v", _SAMPLING
        ),
    }
    # The official generate.py: 480p, 121 frames, 50 steps, guidance 6 (the guider's), 24 fps.
    reference = settings(size=(480, 848), frames=121, steps=50, guidance=_REFERENCE_GUIDANCE, fps=24)
    options: ClassVar[tuple[Option, ...]] = (FLOW_SHIFT,)
    # diffusers 0.42.1 does not register HunyuanVideo15TransformerBlock for the block-level caches.
    takes = Takes(
        model=frozenset({"loras"}),
        optimizations=frozenset(
            {"offload", "vae_tiling", "fp8_storage", "attention_backend", "compile", "cache", "quantize"}
        ),
        caches=frozenset({"pab", "taylorseer"}),
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=first-block": (
            "diffusers 0.42.1 has not registered HunyuanVideo15TransformerBlock for block caches"
        ),
        "optimization.cache=magcache": "diffusers 0.42.1 has not registered HunyuanVideo15TransformerBlock for it",
        "optimization.cache=faster": "FasterCache assumes a batched guided pass, and the guider runs two passes",
        "optimization.decode_chunk_size": "its VAE decodes in one call; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "it attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": "its feed-forward layers take no chunking; use --offload group",
    }
    # Qwen2.5-VL's 7B language model is close to the transformer's size. The guidance is set on
    # the guider once after loading, so jobs that differ in it cannot share a pipeline.
    loading = Loading(cuda_dtype="bf16", quantize_also=("text_encoder",), setup_fields=frozenset({"guidance_scale"}))
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=54,
            sizes={
                **dict.fromkeys(
                    (
                        "hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v",
                        "hunyuanvideo-community/HunyuanVideo-1.5-720p_t2v",
                    ),
                    {
                        "transformer": _HV15_TRANSFORMER,
                        "text_encoder": _QWEN25_VL_TEXT,
                        "text_encoder_2": _BYT5,
                        "vae": _HV15_VAE,
                    },
                ),
                **dict.fromkeys(
                    (
                        "hunyuanvideo-community/HunyuanVideo-1.5-480p_i2v",
                        "hunyuanvideo-community/HunyuanVideo-1.5-720p_i2v",
                    ),
                    {
                        "transformer": _HV15_TRANSFORMER,
                        "text_encoder": _QWEN25_VL_TEXT,
                        "text_encoder_2": _BYT5,
                        "vae": _HV15_VAE,
                        "image_encoder": _SIGLIP,
                    },
                ),
            },
            spatial=16,
            temporal=4,
            patch=1,
            width=2048,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        passes=passes,
    )
    grid = Grid(frames=4, size=16)
    decoding = Decoding(latents=None)  # the pipeline decodes inside its own steps
    previewing = ScaledPreviewing(tae="taehv1_5.safetensors")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        guidance = cfg.sampling.guidance_scale
        low, high = GUIDANCE
        if guidance is not None and not low <= guidance <= high:
            raise ConfigError(
                f"--guidance {guidance:g} is out of range for {self.title}: its guider takes {low:g} (no guidance) "
                f"to {high:g}; the model card uses {_REFERENCE_GUIDANCE:g}."
            )

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        if cfg.mode != "i2v":
            return
        # The pipeline sizes the video from the image: the bucket of its aspect ratio at the
        # model's target size. vidgen resized the image to --height/--width; another bucket
        # would silently change the video's size, so it is refused with the one that fits.
        h, w = cfg.sampling.height, cfg.sampling.width
        bucket = pipe.video_processor.calculate_default_height_width(height=h, width=w, target_size=pipe.target_size)
        if tuple(bucket) != (h, w):
            raise ConfigError(
                f"--height {h} --width {w} is not a size {cfg.model.id} makes: at its target size "
                f"{pipe.target_size} that aspect ratio becomes {bucket[0]}x{bucket[1]}; use --height {bucket[0]} "
                f"--width {bucket[1]}."
            )

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        calls = shift_scheduler(pipe, cfg)
        guidance = cfg.sampling.guidance_scale
        if guidance is not None:
            pipe.guider = pipe.guider.new(guidance_scale=guidance)
            calls.append({"method": "guider = guider.new", "kwargs": {"guidance_scale": guidance}})
        return calls

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        names = {"num_frames", "num_inference_steps"} | ({"height", "width"} if cfg.mode == "t2v" else set())
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, frozenset(names))}
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0)) * passes(cfg)

    @contextmanager
    def steps(self, pipe: Any, on_step: Callable[[], None]) -> Iterator[dict[str, Any]]:
        # These pipelines take no step callback; the transformer's passes are counted instead.
        with transformer_passes(pipe, on_step):
            yield {}

    tiny: ClassVar[dict[str, Any]] = {}


# -- tiny random-weight recipes (after diffusers' own HunyuanVideo-1.5 tests) --------------------

_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
# ChatML: the pipeline formats the prompt with apply_chat_template, so the tokenizer needs one.
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] if m['content'] is string "
    "else m['content'] | map(attribute='text') | join('') }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen2_tokenizer() -> Any:
    from transformers import Qwen2Tokenizer

    vocab: dict[str, int] = {}
    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")
    for token in (*specials, "<|image_pad|>", "<|video_pad|>"):
        vocab.setdefault(token, len(vocab))
    for char in _CHARS + " .,!?'-":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault("\u0120" + char, len(vocab))  # byte-level BPE's space marker
    vocab.setdefault("\u0120", len(vocab))
    return Qwen2Tokenizer(vocab=vocab, merges=[], chat_template=_CHATML)


def _fit_the_template(tokenizer: Any, pipeline: Any) -> None:
    """The pipeline drops the first `crop_start` (108) tokens of its prompt template: the system
    message, as Qwen's own tokenizer splits it. Letter by letter it is ~500 tokens, which would
    leave the tiny model ~400 tokens of system message around a prompt of a dozen, so that it
    barely reads the prompt. Chunks of the message become single tokens here, so that exactly
    the template is dropped and the prompt alone remains, as with the real tokenizer."""
    import inspect

    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5 import format_text_input

    defaults = inspect.signature(pipeline._get_mllm_prompt_embeds).parameters
    system, crop = defaults["system_message"].default, defaults["crop_start"].default

    def before_prompt() -> int:
        empty, marked = (
            tokenizer.apply_chat_template(
                format_text_input([prompt], system), add_generation_prompt=True, return_dict=True
            )["input_ids"][0]
            for prompt in ("", "a")
        )
        return next(i for i, (x, y) in enumerate(zip(empty, marked, strict=False)) if x != y)

    count = crop - (before_prompt() - len(tokenizer(system, add_special_tokens=False)["input_ids"]))
    step = len(system) / count
    tokenizer.add_tokens([system[round(i * step) : round((i + 1) * step)] for i in range(count)])
    assert before_prompt() == crop, "the tiny tokenizer no longer fits HunyuanVideo-1.5's prompt template"


def _parts(task_type: str) -> dict[str, Any]:
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15ImageToVideoPipeline,
        HunyuanVideo15Pipeline,
        HunyuanVideo15Transformer3DModel,
    )
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    from vidgen.families.tiny_parts import t5_encoder

    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=9,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=16,
        text_embed_2_dim=32,
        image_embed_dim=12,
        rope_axes_dim=(2, 2, 4),
        target_size=16,
        task_type=task_type,
    )
    vae = AutoencoderKLHunyuanVideo15(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 16),
        layers_per_block=1,
        spatial_compression_ratio=4,
        temporal_compression_ratio=2,
        downsample_match_channel=False,
        upsample_match_channel=False,
    )
    tokenizer = qwen2_tokenizer()
    _fit_the_template(tokenizer, HunyuanVideo15Pipeline if task_type == "t2v" else HunyuanVideo15ImageToVideoPipeline)
    text = Qwen2_5_VLTextConfig(
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        rope_theta=1000000.0,
    )
    tokenizer_2 = ByT5Tokenizer()  # byte-level: needs no vocabulary at all
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
        "text_encoder": Qwen2_5_VLTextModel(text).eval(),
        "tokenizer": tokenizer,
        # d_model 32 = the transformer's text_embed_2_dim.
        "text_encoder_2": t5_encoder(tokenizer_2),
        "tokenizer_2": tokenizer_2,
        "guider": ClassifierFreeGuidance(guidance_scale=6.0),
    }


def tiny_t2v() -> Any:
    from diffusers import HunyuanVideo15Pipeline

    return HunyuanVideo15Pipeline(**_parts("t2v"))


def tiny_i2v() -> Any:
    from diffusers import HunyuanVideo15ImageToVideoPipeline

    from vidgen.families.tiny_parts import siglip_vision

    return HunyuanVideo15ImageToVideoPipeline(**_parts("i2v"), **siglip_vision(hidden_size=12, intermediate_size=16))


HunyuanVideo15.tiny = {"hunyuanvideo15": tiny_t2v, "hunyuanvideo15-i2v": tiny_i2v}

FAMILIES = (HunyuanVideo15,)
