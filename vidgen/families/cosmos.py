"""Cosmos Predict 2.5 (NVIDIA): a 2B world-foundation diffusion transformer on the Wan 2.1 VAE
(4x8x8, 16 latent channels), prompted by Cosmos-Reason1 (a Qwen2.5-VL 7B); text to video, image
to video and video to video (the clip's last frames continue into the world it predicts).

Image to video goes through the pipeline's Video2World path with the image as a one-frame clip
and one latent conditioning frame (`video=[image]`, `num_latent_conditional_frames=1`). Its
Image2World path (`image=`) computes the same (the Wan VAE is causal: the first latent frame
depends on the first frame only, and the frames after it are masked out of the condition;
tests/test_cosmos.py compares the two) but converts the image with torchvision's `to_tensor`,
which the CPU machines vidgen is tested on cannot install.

diffusers' pipeline decodes ceil(frames / 4) latent frames and then repeats or crops frames to the
count asked for: vidgen refuses off-grid frame counts (4k+1) and sizes off 16 before loading.

The pipeline runs NVIDIA's Cosmos Guardrail on every prompt and every video (the NVIDIA Open Model
License requires it; diffusers raises without one). It comes from the `cosmos_guardrail` package,
which downloads its own models on first use: a real Cosmos run without that package stops while
loading with the pipeline's own one-line message. The tiny random-weight models carry a
pass-through checker instead (`TinyGuardrail`), as diffusers' own tests do; it is never used for a
real checkpoint.
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
from vidgen.families.wan import VAE_21

_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
REPO = "nvidia/Cosmos-Predict2.5-2B"
# The diffusers docstring loads the post-trained weights from this branch of the repo.
REVISION = "diffusers/base/post-trained"
# The negative prompt of the diffusers docstring's examples (also the pipeline's default).
NEGATIVE = (
    "The video captures a series of frames showing ugly scenes, static with no motion, motion blur, "
    "over-saturation, shaky footage, low resolution, grainy texture, pixelated images, poorly lit areas, "
    "underexposed and overexposed scenes, poor color balance, washed out colors, choppy sequences, jerky "
    "movements, low frame rate, artifacting, color banding, unnatural transitions, outdated special effects, "
    "fake elements, unconvincing visuals, poorly edited content, jump cuts, visual noise, and flickering. "
    "Overall, the video is of poor quality."
)
# Parameter counts for the memory planner. The transformer: diffusers' CosmosTransformer3DModel
# built on the meta device with the config diffusers' conversion script gives
# Cosmos-2.5-Predict-Base-2B (28 blocks of 16x128, the 100352->1024 cross-attention projection):
# 2.059B. The text encoder: Cosmos-Reason1-7B, a Qwen2.5-VL-7B (published 8.29B); the Wan 2.1 VAE
# as in wan.py.
_TRANSFORMER = 2.059e9
REASON1_7B = 8.292e9
_SIZES = {REPO: {"transformer": _TRANSFORMER, "text_encoder": REASON1_7B, "vae": VAE_21}}


class Cosmos(Family):
    name = "cosmos"
    title = "Cosmos Predict 2.5"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("Cosmos2_5_PredictBasePipeline", REPO, _SAMPLING),
        # The image is the first frame of the world it predicts (see the module's docstring).
        "i2v": Mode("Cosmos2_5_PredictBasePipeline", REPO, _SAMPLING),
        # One pipeline for every mode: given a clip, it keeps the clip's last 5 frames (2 latent
        # frames) and predicts the frames after them.
        "v2v": Mode("Cosmos2_5_PredictBasePipeline", REPO, _SAMPLING),
    }
    # The diffusers docstring: 93 frames at 16 fps, 1280x704, 36 steps, guidance 7, its negative
    # prompt, the pipeline's 512 Qwen tokens.
    reference = merged(
        settings(size=(704, 1280), frames=93, steps=36, guidance=7.0, fps=16, max_sequence_length=512),
        {"inputs": {"negative_prompt": NEGATIVE}, "model": {"revision": REVISION}},
    )
    # Checked on the tiny model (tests/test_cosmos.py): the attention dispatcher (its attention
    # calls dispatch_attention_fn), fp8 storage, VAE tiling and LoRA (CosmosLoraLoaderMixin).
    # Offload needs CUDA (the pipeline declares its model offload order; the guardrail stays put).
    takes = Takes(
        model=frozenset({"loras"}),
        optimizations=frozenset({"offload", "vae_tiling", "attention_backend", "fp8_storage"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache": "Cosmos' transformer has no cache hooks in diffusers (no CacheMixin)",
        "optimization.attention_slicing": "its attention goes through diffusers' dispatcher; pick --attention-backend",
        "optimization.decode_chunk_size": "its VAE decodes in one call; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "diffusers lists no repeated blocks for Cosmos' transformer",
        "optimization.quantize": "not checked on Cosmos' transformer; use --fp8-storage",
        "model.scheduler": "Cosmos Predict 2.5 samples with the flow UniPC scheduler its checkpoint ships",
        "sampling.strength": "Cosmos continues the clip's last frames rather than re-noising it",
    }
    # The diffusers docstring loads everything in bf16.
    loading = Loading(cuda_dtype="bf16")
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
    )
    # The Wan 2.1 VAE compresses 4 frames and 8x8 pixels; the transformer patches 2x2 latents. An
    # input clip needs at least the 5 frames (2 latent frames) the pipeline conditions on.
    grid = Grid(frames=4, size=16, shortest=5)
    decoding = Decoding(latents=None)  # the pipeline decodes (and runs the guardrail) inside its call

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        # The real transformer resizes its padding mask with torchvision, which diffusers imports
        # only when it is installed; without it the first step fails with a NameError. Checked on
        # the loaded model, so that --dry-run still plans on machines without torchvision.
        import importlib.util

        if pipe.transformer.config.concat_padding_mask and importlib.util.find_spec("torchvision") is None:
            raise ConfigError(
                f"{self.title} needs torchvision (its transformer resizes its padding mask with it): "
                "pip install torchvision (the build that matches your torch)."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        if cfg.mode == "i2v":
            kwargs["num_latent_conditional_frames"] = 1  # the image is one latent frame
        kwargs["output_type"] = "np"
        return kwargs

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if cfg.mode != "i2v":
            return {}
        return {"run": "the image is passed as a one-frame clip: video=[image] with num_latent_conditional_frames=1"}

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        if cfg.mode == "i2v":
            media = {key: value for key, value in media.items() if key != "image"} | {"video": [media["image"]]}
        return super().call(pipe, cfg, call_kwargs, media, **extra)

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0))

    tiny: ClassVar[dict[str, Any]] = {}


# -- the tiny models' guardrail ----------------------------------------------------------------

_GUARDRAIL: Any = None


def guardrail_class() -> Any:
    """A pass-through stand-in for the Cosmos Guardrail, for the tiny random-weight models only:
    their output is noise and the real guardrail is several GB of models it downloads. Built on
    first use so that importing this module does not import torch; diffusers finds it by the
    module path save_pretrained records (`vidgen.families.cosmos`, `TinyGuardrail`)."""
    global _GUARDRAIL
    if _GUARDRAIL is None:
        import torch
        from diffusers.configuration_utils import ConfigMixin
        from diffusers.models.modeling_utils import ModelMixin

        class TinyGuardrail(ModelMixin, ConfigMixin):
            """Passes every prompt and video (tiny models only)."""

            def __init__(self) -> None:
                super().__init__()
                # Saved with it, so the tiny model folder holds safetensors for every part.
                self.register_buffer("_device_tracker", torch.zeros(1))

            def check_text_safety(self, prompt: str) -> bool:
                return True

            def check_video_safety(self, frames: Any) -> Any:
                return frames

            @property
            def device(self) -> Any:
                return self._device_tracker.device

            @property
            def dtype(self) -> Any:
                return self._device_tracker.dtype

        TinyGuardrail.__module__ = __name__
        TinyGuardrail.__qualname__ = "TinyGuardrail"
        _GUARDRAIL = TinyGuardrail
    return _GUARDRAIL


def __getattr__(name: str) -> Any:
    if name == "TinyGuardrail":
        return guardrail_class()
    if name == "ModelMixin":
        # diffusers finds how to load a component of a module it does not know by looking up its
        # own base classes in that module: TinyGuardrail loads as the ModelMixin it is.
        from diffusers.models.modeling_utils import ModelMixin

        return ModelMixin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- tiny random-weight recipe (after diffusers' own Cosmos Predict 2.5 tests, offline tokenizer) --


def tiny_predict25() -> Any:
    from diffusers import (
        AutoencoderKLWan,
        Cosmos2_5_PredictBasePipeline,
        CosmosTransformer3DModel,
        UniPCMultistepScheduler,
    )

    from vidgen.families.hunyuan15 import qwen2_tokenizer
    from vidgen.families.tiny_parts import qwen25_vl_encoder

    tokenizer = qwen2_tokenizer()
    transformer = CosmosTransformer3DModel(
        in_channels=16 + 1,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        mlp_ratio=2,
        text_embed_dim=32,  # two Qwen layers of 16, concatenated by the pipeline
        adaln_lora_dim=4,
        max_size=(4, 32, 32),
        patch_size=(1, 2, 2),
        rope_scale=(1.0, 3.0, 3.0),
        # The real model appends a padding-mask channel, resized with torchvision; without
        # torchvision (the CPU test machines have no build of it for their torch) the tiny model
        # leaves that channel out. Everything else is the real architecture.
        concat_padding_mask=False,
        extra_pos_embed_type=None,  # as the 2.5 conversion has it
    )
    # Zero-initialised layers (as in training) would let the prompt change nothing: they are
    # drawn at random instead.
    redraw_zeros(transformer)
    return Cosmos2_5_PredictBasePipeline(
        text_encoder=qwen25_vl_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=transformer.eval(),
        vae=AutoencoderKLWan(
            base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
        ).eval(),
        # A flow UniPC (sigmas in [0, 1], as the pipeline assumes), shift 5 as Cosmos 2.5 trains.
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0),
        safety_checker=guardrail_class()(),
    )


Cosmos.tiny = {"cosmos-predict2.5": tiny_predict25}

FAMILIES = (Cosmos,)
