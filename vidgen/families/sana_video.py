"""SANA-Video (NVIDIA, MIT HAN Lab): a 2B diffusion transformer with linear attention on the Wan
2.1 VAE (4x8x8, 16 latent channels), prompted by Gemma-2 2B; text and image to video.

diffusers' pipeline takes the frame count as `frames` (not `num_frames`) and by default snaps
the size to its nearest trained aspect-ratio bin, then resizes the frames back: vidgen passes
`use_resolution_binning=False`, so the size asked for is the size made, and refuses sizes the
pipeline cannot make (multiples of 32) and off-grid frame counts (4k+1) before loading.
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
    Takes,
    merged,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.tiny_parts import redraw_zeros
from vidgen.families.wan import VAE_21

_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# Image-to-video keeps the image's latent frame and denoises the ones after it: 2 latent frames.
_I2V_SHORTEST = 5
REPO = "Efficient-Large-Model/SANA-Video_2B_480p_diffusers"
# The negative prompt of the diffusers docs' examples.
NEGATIVE = (
    "A chaotic sequence with misshapen, deformed limbs in heavy motion blur, sudden disappearance, jump cuts, "
    "jerky movements, rapid shot changes, frames out of sync, inconsistent character shapes, temporal artifacts, "
    "jitter, and ghosting effects, creating a disorienting visual experience."
)
# Parameter counts for the memory planner. The transformer: diffusers' SanaVideoTransformer3DModel
# built on the meta device with its default config (20 blocks of 20x112, sample_size 30: the 480p
# one), 1.906B. The text encoder: Gemma-2 2B (Gemma2Model, published 2.61B, embeddings tied); the
# Wan 2.1 VAE as in wan.py.
_TRANSFORMER = 1.906e9
_GEMMA2_2B = 2.614e9
_SIZES = {REPO: {"transformer": _TRANSFORMER, "text_encoder": _GEMMA2_2B, "vae": VAE_21}}


class SanaVideo(Family):
    name = "sana-video"
    title = "SANA-Video"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("SanaVideoPipeline", REPO, _SAMPLING),
        # The same checkpoint (its model_index names SanaVideoPipeline) through the image pipeline.
        "i2v": Mode("SanaImageToVideoPipeline", REPO, _SAMPLING, loads_from=frozenset({"SanaVideoPipeline"})),
    }
    # The diffusers docs' example: 832x480, 81 frames at 16 fps, 50 steps, guidance 6; the
    # pipeline's own 300-token prompt length.
    reference = merged(
        settings(size=(480, 832), frames=81, steps=50, guidance=6.0, fps=16, max_sequence_length=300),
        {"inputs": {"negative_prompt": NEGATIVE}},
    )
    # Checked on the tiny model (tests/test_sana_video.py): the attention dispatcher (its
    # cross-attention goes through it; its self-attention is linear attention of its own), fp8
    # storage and VAE tiling. Offload needs CUDA (the pipeline declares its model offload order).
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "attention_backend", "fp8_storage"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache": "SANA-Video's transformer has no cache hooks in diffusers (no CacheMixin)",
        "optimization.attention_slicing": "its self-attention is linear attention; pick --attention-backend",
        "optimization.decode_chunk_size": "its VAE decodes in one call; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "diffusers lists no repeated blocks for SANA-Video's transformer",
        "optimization.quantize": "not checked on SANA-Video's transformer; use --fp8-storage",
        "model.scheduler": "SANA-Video text-to-video was trained for its DPM-Solver flow scheduler",
        "model.loras": "not checked on SANA-Video yet",
    }
    # The diffusers docs keep the VAE in fp32 and the text encoder in bf16.
    loading = Loading(cuda_dtype="bf16", dtypes={"vae": "fp32"})
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=20,
            sizes=_SIZES,
            spatial=8,
            temporal=4,
            patch=2,
            width=2240,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        sliced=False,
    )
    # The Wan 2.1 VAE compresses 4 frames and 8x8 pixels; the pipeline refuses sizes off 32.
    grid = Grid(frames=4, size=32)
    decoding = Decoding(latents=None)  # the pipeline decodes inside its own call

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        frames = cfg.sampling.num_frames
        if cfg.mode == "i2v" and frames is not None and frames < _I2V_SHORTEST:
            # The image fills the first latent frame and only the ones after it are denoised.
            raise ConfigError(
                f"--frames {frames} is too short for {self.title} image-to-video: it needs at least {_I2V_SHORTEST} "
                f"frames (4k+1), the image's latent frame and one more; nearest valid: {_I2V_SHORTEST}."
            )

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        if cfg.mode != "i2v":
            return []
        # The diffusers docs' image-to-video example swaps the checkpoint's DPM-Solver for flow-matching
        # Euler, `from_config(config, flow_shift=8.0)`; Euler's own key is `shift`, so that argument is
        # dropped and the example runs at shift 1.0. This is that scheduler; --flow-shift is not taken.
        from diffusers import FlowMatchEulerDiscreteScheduler

        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
        return [{"method": "scheduler = FlowMatchEulerDiscreteScheduler.from_config", "kwargs": {}}]

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        if "num_frames" in kwargs:
            kwargs["frames"] = kwargs.pop("num_frames")
        # Never snap the size to a trained bin behind the user's back (the size is checked instead).
        kwargs["use_resolution_binning"] = False
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        return int(call_kwargs.get("num_inference_steps", 0))

    tiny: ClassVar[dict[str, Any]] = {}


# -- tiny random-weight recipe (after diffusers' own SANA-Video tests, offline tokenizer) ---------


def tiny_gemma2(vocab_size: int) -> Any:
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(
        head_dim=16,
        hidden_size=8,
        intermediate_size=64,
        num_attention_heads=2,
        num_hidden_layers=1,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        attn_implementation="eager",
    )
    return Gemma2Model(config).eval()


def _tiny(pipeline: str) -> Any:
    import diffusers
    from diffusers import AutoencoderKLWan, DPMSolverMultistepScheduler, SanaVideoTransformer3DModel

    from vidgen.families import tiny_parts

    tokenizer = tiny_parts.gemma_tokenizer()
    transformer = SanaVideoTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=12,
        cross_attention_dim=24,
        caption_channels=8,  # the Gemma hidden size
        mlp_ratio=2.5,
        sample_size=8,
        patch_size=(1, 2, 2),
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    # Zero-initialised layers (as in training: the output projections and modulation tables)
    # would let the prompt change nothing: they are drawn at random instead.
    redraw_zeros(transformer)
    return getattr(diffusers, pipeline)(
        tokenizer=tokenizer,
        text_encoder=tiny_gemma2(len(tokenizer)),
        vae=AutoencoderKLWan(
            base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
        ).eval(),
        transformer=transformer.eval(),
        # A flow-matching DPM-Solver, as SANA's checkpoints ship it (diffusers' tests use the default one).
        scheduler=DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0),
    )


def tiny_t2v() -> Any:
    return _tiny("SanaVideoPipeline")


def tiny_i2v() -> Any:
    # The checkpoint's DPM-Solver, as the real one loads; `setup` swaps it as for the real one.
    return _tiny("SanaImageToVideoPipeline")


SanaVideo.tiny = {"sana-video": tiny_t2v, "sana-video-i2v": tiny_i2v}

FAMILIES = (SanaVideo,)
