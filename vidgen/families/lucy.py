"""Lucy Edit (Decart): instruction-based video editing on the Wan 2.2 TI2V-5B stack.

`vidgen v2v CLIP "make it snow" --preset lucy-edit-dev` edits the whole clip by the instruction
while keeping its motion and layout. `LucyEditPipeline` encodes the input video with the Wan 2.2
VAE and appends those latents to the noisy ones at every step (the transformer takes 48 + 48
channels), so there is no --strength: the clip is read whole at every step, not re-noised.

The input video sets the length (4k+1 frames; --max-frames takes fewer). The pipeline checks
sizes against 16 only, but the 16x VAE and the transformer's 2x2 patches need multiples of 32
(other sizes fail deep inside the transformer): vidgen refuses them before loading.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
    Decoding,
    Family,
    Grid,
    Loading,
    Mode,
    ModelAccess,
    Option,
    Previewing,
    Takes,
    merged,
    prompt_kwargs,
    sampling_kwargs,
    settings,
    shift_scheduler,
)
from vidgen.families.wan import FLOW_SHIFT, FOOTPRINT, UMT5_XXL, check_positions, wan_memory

REPO = "decart-ai/Lucy-Edit-Dev"
REPO_11 = "decart-ai/Lucy-Edit-1.1-Dev"
_CALL = frozenset({"num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# The diffusers example's length: the input's first 81 frames unless --max-frames says otherwise.
_FRAMES = 81
# Parameters, from the published files: a 30-block transformer of 3072 (20.0 GB in fp32), the
# Wan 2.2 VAE (2.82 GB in fp32) and UMT5-XXL, as in Wan 2.2 TI2V-5B; the same for 1.1.
_SIZES = dict.fromkeys((REPO, REPO_11), {"transformer": 5.0e9, "text_encoder": UMT5_XXL, "vae": 7.047e8})


class LucyEdit(Family):
    name = "lucy-edit"
    title = "Lucy Edit"
    modes: ClassVar[dict[str, Mode]] = {"v2v": Mode("LucyEditPipeline", REPO, _CALL)}
    # The diffusers example (the model card's): 832x480, 81 frames, guidance 5, an empty negative
    # prompt, written at 24 fps; the pipeline's 50 steps and 512-token prompts.
    reference = merged(
        settings(size=(480, 832), steps=50, guidance=5.0, fps=24, max_sequence_length=512),
        {"inputs": {"max_frames": _FRAMES}},
    )
    # The checkpoint ships UniPC with flow sigmas at shift 5, as Wan 2.2 TI2V-5B.
    options: ClassVar[tuple[Option, ...]] = (FLOW_SHIFT,)
    # Checked on the tiny model (tests/test_lucy.py); the transformer is Wan's own class, so the
    # attention dispatcher, fp8 storage, compile and Wan's caches act on it as on Wan.
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "fp8_storage", "attention_backend", "compile", "cache"}),
        caches=frozenset({"first-block", "pab", "taylorseer"}),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "sampling.num_frames": "the input video sets the length; use --max-frames",
        "sampling.strength": (
            "Lucy Edit reads the whole input video at every step instead of re-noising it; "
            "the instruction decides how much changes"
        ),
        "optimization.cache=faster": "FasterCache assumes a batched guided pass and fails on Wan in diffusers 0.42.1",
        "optimization.cache=magcache": "no MagCache ratios are published for Lucy Edit",
        "optimization.decode_chunk_size": "the Wan VAE decodes frame by frame already; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "it attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": "its feed-forward layers take no chunking; use --offload group",
        "optimization.quantize": "not checked on Lucy Edit yet; use --fp8-storage",
        "model.scheduler": "Lucy Edit ships UniPC with flow sigmas; --flow-shift sets its shift",
        "model.loras": "not checked on Lucy Edit yet",
    }
    # The diffusers example loads the VAE in fp32 beside a bf16 transformer.
    loading = Loading(cuda_dtype="bf16", dtypes={"vae": "fp32"})
    memory = wan_memory(replace(FOOTPRINT, blocks=30, sizes=_SIZES, spatial=16, width=3072, decode=160))
    # The Wan 2.2 VAE compresses 4 frames and 16x16 pixels; the transformer patches 2x2 latents.
    grid = Grid(frames=4, size=32)
    # output_type="latent" returns the final latents, decoded as the pipeline would (Wan's way).
    decoding = Decoding(latents="latent")
    previewing = Previewing(tae="taew2_2.safetensors")

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        sampling = cfg.sampling.model_copy(update={"num_frames": frames or cfg.inputs.max_frames or _FRAMES})
        check_positions(pipe, cfg.model_copy(update={"sampling": sampling}))

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        return shift_scheduler(pipe, cfg)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, _CALL)}
        # The pipeline makes as many frames as the video it is given has (num_frames is only
        # rounded); vidgen passes that count so the sidecar says it.
        kwargs["num_frames"] = frames or cfg.inputs.max_frames or _FRAMES
        kwargs["output_type"] = "np"
        return kwargs

    tiny: ClassVar[dict[str, Any]] = {}


def tiny_lucy() -> Any:
    """Lucy Edit at a tiny scale: the tiny Wan transformer taking 48 noisy + 48 video latent
    channels, the tiny Wan 2.2 VAE, expanded timesteps, UniPC at shift 5 as the checkpoint ships."""
    from diffusers import LucyEditPipeline

    from vidgen.families.wan import tiny_transformer, tiny_vae22, tiny_wan_parts

    transformer = tiny_transformer(in_channels=96, out_channels=48)
    return LucyEditPipeline(
        **{**tiny_wan_parts(5.0), "vae": tiny_vae22()}, transformer=transformer, expand_timesteps=True
    )


LucyEdit.tiny = {"lucy-edit": tiny_lucy}

FAMILIES = (LucyEdit,)
