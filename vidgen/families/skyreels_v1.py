"""SkyReels-V1 (Skywork): HunyuanVideo 13B fine-tuned on film and television clips, image to video.

The checkpoint (Skywork/SkyReels-V1-Hunyuan-I2V) is a transformer only; diffusers' example loads
it into the HunyuanVideo pipeline's other parts (hunyuanvideo-community/HunyuanVideo: Llama-3 8B,
CLIP-L, the causal VAE). Its transformer reads the image's latents beside the noise (32 input
channels). Unlike HunyuanVideo it is de-distilled: the model card runs real classifier-free
guidance (true CFG 6 with a negative prompt, two transformer passes a step) at embedded guidance 1.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.families.base import Memory, Mode, settings
from vidgen.families.hunyuan import (
    BASE_REPO,
    CLIP_L,
    CONTEXT_CACHES,
    FOOTPRINT,
    HV_VAE,
    LLAMA_8B,
    NO_CACHE_CONTEXT,
    SAMPLING,
    HunyuanVideo,
    passes,
)

REPO = "Skywork/SkyReels-V1-Hunyuan-I2V"
# The transformer: diffusers' HunyuanVideoTransformer3DModel built on the meta device with its
# default (published HunyuanVideo) config and 32 input channels, 12.82B; the rest is
# HunyuanVideo's (hunyuan.py). The checkpoint's own config.json was not read here (no network).
TINY_TRANSFORMER = 12.821e9
_SIZES = {
    REPO: {"transformer": TINY_TRANSFORMER, "text_encoder": LLAMA_8B, "text_encoder_2": CLIP_L, "vae": HV_VAE},
}


def assemble(mode: str, kind: str, where: str, dtype: Any) -> tuple[str, dict[str, Any], Any] | None:
    """The SkyReels-V1 transformer in the HunyuanVideo pipeline (diffusers' example); None for a
    whole pipeline folder (the tiny model, or a folder saved with every part)."""
    from pathlib import Path

    if kind in ("dir", "tiny") and (Path(where) / "model_index.json").is_file():
        return None
    from diffusers import HunyuanVideoTransformer3DModel

    transformer = HunyuanVideoTransformer3DModel.from_pretrained(where, dtype=dtype, use_safetensors=True)
    return BASE_REPO, {"transformer": transformer}, {"pipeline_from": BASE_REPO, "transformer": where}


class SkyReelsV1(HunyuanVideo):
    name = "skyreels-v1"
    title = "SkyReels-V1"
    modes: ClassVar[dict[str, Mode]] = {"i2v": Mode("HunyuanSkyreelsImageToVideoPipeline", REPO, SAMPLING)}
    # The diffusers docs' model table: best at 97 frames of 544x960 with embedded guidance 1; its
    # example runs 30 steps. 24 fps as HunyuanVideo. The card's true CFG 6 and negative prompt are
    # the preset's (skyreels-v1-i2v), not defaults: a negative prompt set here could not be
    # dropped, and vidgen refuses one that true CFG does not read.
    reference = settings(size=(544, 960), frames=97, steps=30, guidance=1.0, fps=24)
    # As HunyuanVideo's, less the hooks that need a cache context (the pipeline opens none).
    takes = replace(HunyuanVideo.takes, caches=HunyuanVideo.takes.caches - frozenset(CONTEXT_CACHES))
    hints: ClassVar[dict[str, str]] = {
        **HunyuanVideo.hints,
        **{f"optimization.cache={kind}": NO_CACHE_CONTEXT for kind in CONTEXT_CACHES},
    }
    # diffusers has no single-file loader for this transformer's checkpoint layout; the Llama may
    # still come from one file, as for HunyuanVideo.
    loading = replace(HunyuanVideo.loading, assemble=assemble, files=("text_encoder",))
    memory = Memory(replace(FOOTPRINT, sizes=_SIZES), decode_batch=4, sliced=False, passes=passes)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = super().call_kwargs(cfg, seed, frames)
        # The pipeline's own default is true CFG 6; vidgen passes what the run says (1 = off).
        kwargs.setdefault("true_cfg_scale", 1.0)
        return kwargs

    tiny: ClassVar[dict[str, Any]] = {}


def tiny_i2v() -> Any:
    """HunyuanVideo's tiny encoders and VAE with a transformer that reads the image latents beside
    the noise (twice the latent channels in), as SkyReels-V1's does."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanSkyreelsImageToVideoPipeline
    from diffusers import HunyuanVideoTransformer3DModel as Transformer

    from vidgen.families.hunyuan import TINY_TRANSFORMER as TINY
    from vidgen.families.hunyuan import tiny_encoders, tiny_vae

    return HunyuanSkyreelsImageToVideoPipeline(
        **tiny_encoders(),
        transformer=Transformer(**{**TINY, "in_channels": 2 * TINY["out_channels"]}),
        vae=tiny_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )


SkyReelsV1.tiny = {"skyreels-v1": tiny_i2v}

FAMILIES = (SkyReelsV1,)
