"""CogVideoX (THUDM / zai-org): a 3D transformer and a causal 3D VAE; text, image and video to video."""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    SDPA_SLICING,
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
    prompt_kwargs,
    sampling_kwargs,
    settings,
)

_T2V = frozenset(
    {
        "num_frames",
        "num_inference_steps",
        "guidance_scale",
        "height",
        "width",
        "max_sequence_length",
        "use_dynamic_cfg",
        "eta",
    }
)
# Video-to-video takes its length from the input video and adds how far to move from it.
_V2V = (_T2V - {"num_frames"}) | {"strength"}
_T5_XXL = 4.76e9  # the T5 v1.1 XXL encoder every CogVideoX uses
_SIZES = {
    "THUDM/CogVideoX-2b": {"transformer": 1.69e9, "text_encoder": _T5_XXL, "vae": 2.16e8},
    **{
        repo: {"transformer": 5.57e9, "text_encoder": _T5_XXL, "vae": 2.16e8}
        for repo in (
            "THUDM/CogVideoX-5b",
            "THUDM/CogVideoX-5b-I2V",
            "THUDM/CogVideoX1.5-5B",
            "THUDM/CogVideoX1.5-5B-I2V",
        )
    },
}


# CogVideoX's defaults: guidance 6, 50 steps, its T5 sequence length; video-to-video takes its
# length from the input video (--max-frames) and moves 0.8 of the way from it.
_REFERENCE = {"num_inference_steps": 50, "guidance_scale": 6.0, "max_sequence_length": 226}
_V2V_DEFAULTS = {"sampling": {"strength": 0.8}, "inputs": {"max_frames": 49}}


class CogVideoX(Family):
    name = "cogvideox"
    title = "CogVideoX"
    # Video-to-video runs the text-to-video weights through a different pipeline.
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("CogVideoXPipeline", "THUDM/CogVideoX-5b", _T2V, defaults=settings(frames=49)),
        "i2v": Mode("CogVideoXImageToVideoPipeline", "THUDM/CogVideoX-5b-I2V", _T2V, defaults=settings(frames=49)),
        "v2v": Mode("CogVideoXVideoToVideoPipeline", "THUDM/CogVideoX-5b", _V2V, defaults=_V2V_DEFAULTS),
    }
    reference = settings(size=(480, 720), fps=8, **_REFERENCE)
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "vae_slicing", "fp8_storage", "compile", "cache", "quantize"})
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.attention_slicing": SDPA_SLICING,
        "sampling.num_frames": "in v2v the input video sets the length; use --max-frames",
        "optimization.decode_chunk_size": "CogVideoX's VAE decodes in tiles; use --vae-tiling",
    }
    # The T5-XXL encoder is nearly as large as the 5B transformer; it may come from one file
    # (a T5 GGUF). diffusers has no single-file loader for CogVideoX's transformer.
    loading = Loading(cuda_dtype="bf16", quantize_also=("text_encoder",), files=("text_encoder",))
    # Calibrated on diffusers' CogVideoX-2b table (49 frames, 720x480): 33 GB plain, 19 GB model
    # offload, 11 GB with tiling too, under 4 GB sequential. The causal VAE decodes the whole clip
    # (batching latent frames inside); slicing splits only a batch of videos, and vidgen makes one.
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=42,
            sizes=_SIZES,
            temporal=4,
            patch=2,
            width=3072,
            live=10,
            decode=546,
            tiled=0.19,
        ),
        sliced=False,
    )
    # The causal VAE compresses 4 frames into one latent; the transformer patches 2x2 latents.
    # An input clip gives its largest 8k+1 frames: other lengths decode to another frame count.
    grid = Grid(frames=8, size=16)
    # The pipeline stops at its final latents and the family decodes them (see latent_call).
    decoding = Decoding(latents="latent")
    # CogVideoX keeps its latents frames-first, as TAEHV does; TAECVX decodes them.
    previewing = Previewing(tae="taecvx.safetensors", layout="ntchw")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        s = cfg.sampling
        if cfg.optimization.cache == "faster" and s.guidance_scale is not None and s.guidance_scale <= 1:
            # FasterCache reuses the unguided half of the batch; without guidance diffusers 0.42.1
            # crashes in it even when told the model is guidance-distilled.
            raise ConfigError("--cache faster needs --guidance above 1 (it reuses the unguided pass); use --cache pab.")

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        config = pipe.transformer.config
        s = cfg.sampling
        # CogVideoX-5b-I2V learned its position embeddings for one size and cannot make another.
        if getattr(config, "use_learned_positional_embeddings", False):
            scale = pipe.vae_scale_factor_spatial
            fixed = (config.sample_height * scale, config.sample_width * scale)
            if (s.height, s.width) != fixed:
                raise ConfigError(
                    f"{cfg.model.id} only makes {fixed[1]}x{fixed[0]} videos (its position embeddings are "
                    f"learned for that size); use --width {fixed[1]} --height {fixed[0]}."
                )

    def latent_call(
        self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any
    ) -> Any:
        latents = super().latent_call(pipe, cfg, call_kwargs, media, **extra)
        # CogVideoX 1.5 pads the latent frames to its two-frame temporal patches and, with output
        # "np", drops the padding before decoding (pipeline_cogvideox.py); the latent output
        # keeps it, so it is dropped here, where diffusers would.
        patch = pipe.transformer.config.patch_size_t
        if patch is None or "num_frames" not in call_kwargs:
            return latents
        frames = (call_kwargs["num_frames"] - 1) // pipe.vae_scale_factor_temporal + 1
        return latents[:, (patch - frames % patch) % patch :]

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        import torch
        from diffusers.utils.torch_utils import get_module_execution_device

        with torch.no_grad():
            video = pipe.decode_latents(caught.latents.to(get_module_execution_device(pipe.vae), pipe.vae.dtype))
            return pipe.video_processor.postprocess_video(video=video, output_type="np")[0]

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        # One video per call: CogVideoX ignores num_videos_per_prompt (diffusers #13622),
        # so vidgen loops over seeds instead.
        kwargs["num_videos_per_prompt"] = 1
        kwargs["output_type"] = "np"
        return kwargs


class CogVideoX15(CogVideoX):
    """CogVideoX 1.5: the same pipelines and rules at another size and length."""

    name = "cogvideox1.5"
    title = "CogVideoX 1.5"
    # diffusers' video-to-video pipeline predates 1.5's two-frame temporal patches.
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("CogVideoXPipeline", "THUDM/CogVideoX1.5-5B", _T2V, defaults=settings(frames=81)),
        "i2v": Mode("CogVideoXImageToVideoPipeline", "THUDM/CogVideoX1.5-5B-I2V", _T2V, defaults=settings(frames=81)),
    }
    reference = settings(size=(768, 1360), fps=16, **_REFERENCE)
    # 1.5 patches two latent frames at a time, so its grid is 16k+1.
    grid = Grid(frames=16, size=16)


FAMILIES = (CogVideoX, CogVideoX15)
