"""Wan 2.1 and 2.2 (Wan-AI): flow-matching video transformers with a causal 3D VAE.

Three families share this module, because their checkpoints differ in what a user can ask for:
Wan 2.1 (one transformer; text, image and first-last-frame to video), Wan 2.2 A14B (two experts:
a high-noise and a low-noise transformer, each with its own guidance) and Wan 2.2 TI2V-5B (one
transformer on the 16x-compressing Wan 2.2 VAE, so sizes are multiples of 32). `vidgen --model`
tells them apart from the model's model_index.json.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
    Decoding,
    Enhancing,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Option,
    Previewing,
    Takes,
    magcache_config,
    magcache_refusal,
    magcache_steps,
    magcache_wanted,
    merged,
    option_kwargs,
    prompt_kwargs,
    sampling_kwargs,
    settings,
    shift_scheduler,
)

FLOW_SHIFT = Option(
    "flow_shift",
    "--flow-shift",
    float,
    "Shift of the flow-matching noise schedule; higher spends more steps on coarse motion (Wan: 3 at 480p, 5 at 720p).",
    ge=0.1,
    le=100,
    setup=True,
)
GUIDANCE_2 = Option(
    "guidance_scale_2",
    "--guidance-2",
    float,
    "Guidance of the low-noise expert of a two-expert model (default: --guidance).",
    ge=0,
    le=100,
)
_CALL = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# Wan's own default negative prompt (sample_neg_prompt in the official configs), which the
# diffusers examples pass as well.
NEGATIVE = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
# Wan 2.1's image-to-video config adds "camera shake" to what it steers away from.
_NEGATIVE_I2V = "镜头晃动，" + NEGATIVE
UMT5_XXL = 5.681e9  # google/umt5-xxl encoder (tied embeddings counted once), in every Wan checkpoint
VAE_21 = 1.269e8
CLIP_H = 6.308e8  # open-clip ViT-H/14 vision tower (Wan 2.1 i2v / FLF2V)
# The first-last-frame input, which image-to-video takes (the model decides whether it can use it).
_LAST_IMAGE = frozenset({"last_image"})
# Presets that can take --last-image (first-last-frame models), for the refusal message.
LAST_IMAGE_PRESETS = ("wan2.1-flf2v-14b-720p", "wan2.2-i2v-a14b", "tiny-wan-flf2v", "tiny-wan22-i2v")


@dataclass(frozen=True)
class MagCache:
    """A checkpoint's published MagCache magnitude ratios (one per step, for the calibrated step
    count; diffusers resamples them to the run's) and the authors' settings for it."""

    ratios: tuple[float, ...]
    threshold: float
    max_skip_steps: int
    retention_ratio: float
    modes: tuple[str, ...] = ("t2v", "i2v")


# From the MagCache authors (Zehong-Ma/MagCache@df81cb1, MagCache4Wan2.1 and MagCache4Wan2.2
# magcache_generate.py; the same arrays as ComfyUI-MagCache nodes.py). Theirs interleave the
# guided and unguided pass per step; diffusers keeps one list per pass, so these are the guided
# values: ([1.0, 1.0] + theirs)[0::2]. Threshold, K and retention are each README's command.
MAG_RATIOS: dict[str, MagCache] = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": MagCache(
        ratios=(
            1.0,
            1.0124,
            1.00166,
            0.99791,
            0.99682,
            0.99634,
            0.99567,
            0.99416,
            0.99578,
            0.9957,
            0.99511,
            0.99535,
            0.99552,
            0.99541,
            0.9954,
            0.99489,
            0.99518,
            0.99484,
            0.99481,
            0.99415,
            0.99419,
            0.99396,
            0.99388,
            0.99349,
            0.99309,
            0.9927,
            0.99228,
            0.99171,
            0.99137,
            0.99068,
            0.99005,
            0.98944,
            0.98849,
            0.98758,
            0.98644,
            0.98504,
            0.9836,
            0.98202,
            0.97977,
            0.97717,
            0.9741,
            0.97003,
            0.96538,
            0.9593,
            0.95086,
            0.94013,
            0.92402,
            0.90241,
            0.86821,
            0.81838,
        ),
        threshold=0.12,
        max_skip_steps=4,
        retention_ratio=0.2,
    ),
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": MagCache(
        ratios=(
            1.0,
            1.02504,
            1.00025,
            0.9985,
            0.99779,
            0.9966,
            0.99482,
            0.99467,
            0.99664,
            0.99434,
            0.99533,
            0.99468,
            0.99438,
            0.99516,
            0.99384,
            0.99404,
            0.99517,
            0.99409,
            0.99428,
            0.99347,
            0.99418,
            0.99271,
            0.99313,
            0.99215,
            0.99218,
            0.99216,
            0.99163,
            0.99138,
            0.98982,
            0.98996,
            0.9887,
            0.98772,
            0.98767,
            0.98573,
            0.98501,
            0.9838,
            0.98177,
            0.98037,
            0.97678,
            0.97546,
            0.97184,
            0.96711,
            0.96349,
            0.95629,
            0.94926,
            0.93964,
            0.92511,
            0.90693,
            0.8796,
            0.86111,
        ),
        threshold=0.24,
        max_skip_steps=6,
        retention_ratio=0.2,
    ),
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers": MagCache(
        ratios=(
            1.0,
            0.98783,
            0.97559,
            0.98311,
            0.98202,
            0.9888,
            0.98762,
            0.98957,
            0.99052,
            0.99383,
            0.98857,
            0.99065,
            0.98845,
            0.99057,
            0.98957,
            0.98601,
            0.98823,
            0.98756,
            0.98808,
            0.98721,
            0.98571,
            0.98543,
            0.98157,
            0.98411,
            0.97952,
            0.98149,
            0.9774,
            0.97825,
            0.97355,
            0.97085,
            0.97056,
            0.96588,
            0.96113,
            0.9567,
            0.94961,
            0.93973,
            0.93217,
            0.91878,
            0.90955,
            0.92617,
        ),
        threshold=0.24,
        max_skip_steps=6,
        retention_ratio=0.2,
    ),
    "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers": MagCache(
        ratios=(
            1.0,
            0.99428,
            0.98588,
            0.98273,
            0.99018,
            0.98911,
            0.98646,
            0.99454,
            0.9891,
            0.99124,
            0.99102,
            0.99215,
            0.99515,
            0.99576,
            0.99068,
            0.99097,
            0.99166,
            0.99041,
            0.99201,
            0.99101,
            0.98599,
            0.98845,
            0.98848,
            0.98862,
            0.98718,
            0.98497,
            0.98264,
            0.98389,
            0.97938,
            0.97535,
            0.97498,
            0.973,
            0.96827,
            0.96261,
            0.95335,
            0.94649,
            0.93397,
            0.91636,
            0.89088,
            0.8679,
        ),
        threshold=0.24,
        max_skip_steps=6,
        retention_ratio=0.2,
    ),
    # The authors calibrated TI2V-5B's image-to-video mode separately; only text-to-video is here.
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers": MagCache(
        modes=("t2v",),
        ratios=(
            1.0,
            0.99505,
            0.99441,
            0.99558,
            0.99499,
            0.99534,
            0.99468,
            0.99463,
            0.9946,
            0.99408,
            0.9945,
            0.99409,
            0.99403,
            0.99382,
            0.99349,
            0.99377,
            0.9933,
            0.99303,
            0.99217,
            0.992,
            0.99201,
            0.99133,
            0.99112,
            0.99155,
            0.98958,
            0.98959,
            0.98838,
            0.98826,
            0.9883,
            0.98711,
            0.98562,
            0.98511,
            0.98414,
            0.98284,
            0.98104,
            0.97981,
            0.97849,
            0.97557,
            0.97398,
            0.97171,
            0.96917,
            0.96511,
            0.96263,
            0.95839,
            0.95483,
            0.94942,
            0.9468,
            0.94583,
            0.94843,
            0.96949,
        ),
        threshold=0.06,
        max_skip_steps=2,
        retention_ratio=0.2,
    ),
}

# The Wan 2.1 transformers and causal VAE, with the published checkpoints' sizes; the other Wan
# families (2.2, VACE, video-to-video, SkyReels-V2) are this shape with their own sizes.
FOOTPRINT = Footprint(
    denoiser="transformer",
    blocks=40,
    sizes={
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": {"transformer": 1.419e9, "text_encoder": UMT5_XXL, "vae": VAE_21},
        "Wan-AI/Wan2.1-T2V-14B-Diffusers": {"transformer": 14.288e9, "text_encoder": UMT5_XXL, "vae": VAE_21},
        **dict.fromkeys(
            (
                "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
                "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
                "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
            ),
            {"transformer": 16.39e9, "text_encoder": UMT5_XXL, "vae": VAE_21, "image_encoder": CLIP_H},
        ),
    },
    spatial=8,
    temporal=4,
    patch=2,
    width=5120,
    live=10,
    decode=120,
    tiled=0.3,
)


def wan_memory(footprint: Footprint, part: type[Memory] = Memory, **more: Any) -> Memory:
    """The memory part of a Wan-stack family with this footprint (`part`: a Memory subclass)."""
    # The causal VAE decodes one latent frame (4 video frames) at a time with a feature cache.
    return part(footprint, decode_batch=4, sliced=False, **more)


def published_ratios(cfg: RunConfig) -> MagCache | None:
    """The published MagCache ratios of the run's checkpoint and mode, if there are any."""
    published = MAG_RATIOS.get(cfg.model.id or "")
    return published if published is not None and cfg.mode in published.modes else None


def check_positions(pipe: Any, cfg: RunConfig) -> None:
    """The run's frames and size fit the loaded transformer's rotary position table."""
    # The rotary position table covers rope_max_seq_len patches per axis (1024 on the real
    # checkpoints, 32 on the tiny ones); beyond it the transformer fails with a shape error.
    config = pipe.transformer.config
    rope, (patch_t, patch_h, patch_w) = getattr(config, "rope_max_seq_len", None), config.patch_size
    s = cfg.sampling
    if rope and s.num_frames and s.height and s.width:
        # The pipeline's scale factors are its VAE config's (read from config.json before loading).
        temporal = getattr(pipe, "vae_scale_factor_temporal", None) or pipe.vae.config.scale_factor_temporal
        spatial = getattr(pipe, "vae_scale_factor_spatial", None) or pipe.vae.config.scale_factor_spatial
        longest = {
            "--frames": ((s.num_frames - 1) // temporal + 1) / patch_t,
            "--height": s.height / spatial / patch_h,
            "--width": s.width / spatial / patch_w,
        }
        flag, patches = max(longest.items(), key=lambda item: item[1])
        given = {"--frames": s.num_frames, "--height": s.height, "--width": s.width}[flag]
        if patches > rope:
            most = {
                "--frames": (rope * patch_t - 1) * temporal + 1,
                "--height": rope * patch_h * spatial,
                "--width": rope * patch_w * spatial,
            }[flag]
            raise ConfigError(
                f"{flag} {given} is beyond what {cfg.model.id} can place (its positions cover {rope} patches per "
                f"axis): at most {most} for this model."
            )


def clip_last_image(pipe: Any) -> bool:
    """Whether the loaded image-to-video transformer learned positions for two CLIP images (a
    first-last-frame model)."""
    return bool(getattr(pipe.transformer.config, "pos_embed_seq_len", None))


class Wan(Family):
    name = "wan"
    title = "Wan 2.1"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("WanPipeline", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", _CALL),
        "i2v": Mode(
            "WanImageToVideoPipeline",
            "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
            _CALL,
            inputs=_LAST_IMAGE,
            defaults={"inputs": {"negative_prompt": _NEGATIVE_I2V}},
        ),
    }
    # Reference settings (Wan 2.1 model cards): 480p, 5 s at 16 fps, and Wan's negative prompt.
    reference = merged(
        settings(size=(480, 832), frames=81, steps=50, guidance=5.0, fps=16, flow_shift=3.0),
        {"inputs": {"negative_prompt": NEGATIVE}},
    )
    options: ClassVar[tuple[Option, ...]] = (FLOW_SHIFT,)
    # Wan's own prompt extender's system prompts (wan/utils/prompt_extend.py).
    enhancing = Enhancing("wan")
    takes = Takes(
        model=frozenset({"scheduler", "scheduler_options", "loras"}),
        optimizations=frozenset(
            {"offload", "vae_tiling", "fp8_storage", "attention_backend", "compile", "cache", "quantize"}
        ),
        # What diffusers 0.42.1 runs on the Wan transformer (checked on the tiny models).
        caches=frozenset({"first-block", "pab", "taylorseer", "magcache"}),
        # The Wan repos ship UniPC with flow sigmas; the swaps keep flow-matching prediction.
        schedulers={
            "unipc": "UniPCMultistepScheduler",
            "euler": "FlowMatchEulerDiscreteScheduler",
            "dpm++": "DPMSolverMultistepScheduler",
        },
        scheduler_kwargs={
            "unipc": {"prediction_type": "flow_prediction", "use_flow_sigmas": True},
            "dpm++": {"prediction_type": "flow_prediction", "use_flow_sigmas": True},
        },
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=faster": "FasterCache assumes a batched guided pass and fails on Wan in diffusers 0.42.1",
        "optimization.decode_chunk_size": "Wan's causal VAE decodes frame by frame already; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "Wan attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": "Wan's feed-forward layers take no chunking; use --offload group",
    }
    # The model cards run the VAE (and the CLIP image encoder) in fp32 beside a bf16 transformer.
    # The UMT5-XXL encoder (5.7B) is as large as a small transformer, so --quantize takes it too.
    loading = Loading(
        cuda_dtype="bf16",
        dtypes={"vae": "fp32", "image_encoder": "fp32"},
        quantize_also=("text_encoder",),
        # The UMT5 encoder also from one file (city96's umt5-xxl-encoder GGUFs, ComfyUI's umt5_xxl).
        files=("transformer", "text_encoder"),
    )
    memory = wan_memory(FOOTPRINT)
    grid = Grid(frames=4, size=16)
    decoding = Decoding(latents="latent")
    # Wan 2.1's VAE (also Wan 2.2 A14B's, VACE's and SkyReels-V2's): TAEW2.1.
    previewing = Previewing(tae="taew2_1.safetensors")

    def matches(self, index: dict[str, Any]) -> bool:
        return index.get("boundary_ratio") is None and not index.get("expand_timesteps")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        if magcache_wanted(cfg) == "published" and published_ratios(cfg) is None:
            have = ", ".join(f"{repo} ({'/'.join(m.modes)})" for repo, m in MAG_RATIOS.items())
            raise magcache_refusal(self.title, cfg, f"they are for: {have}")
        if cfg.inputs.last_image and not cfg.inputs.image:
            raise ConfigError("--last-image is the frame the video ends on; give the first frame as IMAGE too.")

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        check_positions(pipe, cfg)
        # Wan 2.1 FLF2V learned positions for two CLIP images; an i2v-only transformer fails on a
        # second image deep inside its attention, so --last-image is refused before denoising.
        if cfg.inputs.last_image and not clip_last_image(pipe):
            raise ConfigError(
                f"--last-image needs a first-last-frame model, and {cfg.model.id} is image-to-video only; "
                f"use one of the presets {', '.join(LAST_IMAGE_PRESETS)}."
            )

    def cache_config(self, pipe: Any, cfg: RunConfig, spec: str) -> tuple[Any, dict[str, Any]] | None:
        if spec.partition(":")[0] != "magcache":
            return None
        where = f"MAG_RATIOS[{cfg.model.id!r}]"
        return magcache_config(cfg, spec, magcache_steps(self, cfg), published_ratios(cfg), where)

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        return shift_scheduler(pipe, cfg)

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {
            **prompt_kwargs(cfg),
            **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling),
            **option_kwargs(self, cfg),
        }
        kwargs["output_type"] = "np"
        return kwargs

    tiny: ClassVar[dict[str, Any]] = {}  # filled below, after the recipes


class Wan22(Wan):
    name = "wan2.2"
    title = "Wan 2.2 A14B"
    # Official A14B configs: t2v guides 4.0 (high noise) / 3.0 (low noise) with shift 12;
    # i2v 3.5 / 3.5 with shift 5.
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode(
            "WanPipeline",
            "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
            _CALL,
            defaults=settings(guidance=4.0, guidance_scale_2=3.0, flow_shift=12.0),
        ),
        "i2v": Mode(
            "WanImageToVideoPipeline",
            "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
            _CALL,
            inputs=_LAST_IMAGE,
            defaults=settings(guidance=3.5, guidance_scale_2=3.5, flow_shift=5.0),
        ),
    }
    reference = merged(Wan.reference, settings(size=(720, 1280), steps=40))
    options: ClassVar[tuple[Option, ...]] = (FLOW_SHIFT, GUIDANCE_2)
    # The published A14B ratios span both experts' steps, while diffusers counts each expert's
    # steps on its own; splitting them at the boundary is not wired up yet.
    takes = replace(Wan.takes, caches=frozenset({"first-block", "pab", "taylorseer"}))
    hints: ClassVar[dict[str, str]] = {
        **Wan.hints,
        "optimization.cache=magcache": "its published ratios span both experts, which diffusers caches apart",
    }
    # The high-noise expert denoises until boundary_ratio of the schedule, then the low-noise one.
    loading = replace(
        Wan.loading, denoisers=("transformer", "transformer_2"), files=("transformer", "transformer_2", "text_encoder")
    )
    # Each expert is a Wan 2.1 14B transformer; offloaded, only the running one is on the GPU.
    memory = wan_memory(
        replace(
            FOOTPRINT,
            sizes=dict.fromkeys(
                ("Wan-AI/Wan2.2-T2V-A14B-Diffusers", "Wan-AI/Wan2.2-I2V-A14B-Diffusers"),
                {"transformer": 14.288e9, "transformer_2": 14.288e9, "text_encoder": UMT5_XXL, "vae": VAE_21},
            ),
        )
    )

    def matches(self, index: dict[str, Any]) -> bool:
        return index.get("boundary_ratio") is not None

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        # The A14B i2v model conditions on VAE latents of both images, with no CLIP encoder: it
        # always takes --last-image.
        check_positions(pipe, cfg)


_TI2V = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"


class WanTI2V(Wan):
    name = "wan2.2-ti2v"
    title = "Wan 2.2 TI2V-5B"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode("WanPipeline", _TI2V, _CALL),
        "i2v": Mode("WanImageToVideoPipeline", _TI2V, _CALL),
    }
    reference = merged(Wan.reference, settings(size=(704, 1280), frames=121, fps=24, flow_shift=5.0))
    # The Wan 2.2 VAE compresses 16x16 pixels and the transformer patches 2x2 latents.
    grid = Grid(frames=4, size=32)
    previewing = Previewing(tae="taew2_2.safetensors")
    memory = wan_memory(
        replace(
            FOOTPRINT,
            blocks=30,
            sizes={_TI2V: {"transformer": 5.0e9, "text_encoder": UMT5_XXL, "vae": 7.047e8}},
            spatial=16,
            width=3072,
            decode=160,
        )
    )

    def matches(self, index: dict[str, Any]) -> bool:
        return bool(index.get("expand_timesteps")) and index.get("boundary_ratio") is None


# -- tiny random-weight recipes (diffusers' own Wan test configs, offline tokenizers) ----------

TINY_TRANSFORMER = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 32,
}
_VAE = {
    "base_dim": 3,
    "z_dim": 16,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "temperal_downsample": [False, True, True],
}


def tiny_wan_parts(shift: float = 3.0) -> dict[str, Any]:
    """Tokenizer, UMT5 encoder, Wan 2.1 VAE and the UniPC flow scheduler the Wan repos ship."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler

    from vidgen.families.tiny_parts import t5_encoder, t5_tokenizer

    tokenizer = t5_tokenizer()
    # Wan ships UMT5; its d_model is the tiny transformer's text_dim (32).
    encoder = t5_encoder(tokenizer, umt5=True)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift)
    return {"tokenizer": tokenizer, "text_encoder": encoder, "vae": AutoencoderKLWan(**_VAE), "scheduler": scheduler}


def tiny_transformer(**changes: Any) -> Any:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(**{**TINY_TRANSFORMER, **changes})


def tiny_clip(image_size: int, patch_size: int) -> dict[str, Any]:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from vidgen.families.tiny_parts import clip_image_processor

    config = CLIPVisionConfig(
        hidden_size=4,
        projection_dim=4,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        intermediate_size=16,
        patch_size=patch_size,
    )
    return {"image_encoder": CLIPVisionModel(config).eval(), "image_processor": clip_image_processor(image_size)}


def tiny_t2v() -> Any:
    from diffusers import WanPipeline

    return WanPipeline(**tiny_wan_parts(), transformer=tiny_transformer())


def tiny_i2v() -> Any:
    from diffusers import WanImageToVideoPipeline

    # 8 px CLIP patches: 17 image tokens beside the 16 text tokens. With 1 px patches (1025 tokens)
    # the text was under 2% of what cross-attention reads and the tiny model barely read its prompt.
    return WanImageToVideoPipeline(
        **tiny_wan_parts(), **tiny_clip(32, 8), transformer=tiny_transformer(in_channels=36, image_dim=4)
    )


def tiny_flf2v() -> Any:
    """FLF2V: positions for two CLIP images (8 px / 4 px patches = 4 patches + CLS, twice)."""
    from diffusers import WanImageToVideoPipeline

    transformer = tiny_transformer(in_channels=36, image_dim=4, pos_embed_seq_len=10)
    return WanImageToVideoPipeline(**tiny_wan_parts(), **tiny_clip(8, 4), transformer=transformer)


def tiny_a14b() -> Any:
    from diffusers import WanPipeline

    return WanPipeline(
        **tiny_wan_parts(12.0), transformer=tiny_transformer(), transformer_2=tiny_transformer(), boundary_ratio=0.875
    )


def tiny_a14b_i2v() -> Any:
    from diffusers import WanImageToVideoPipeline

    experts = {"transformer": tiny_transformer(in_channels=36), "transformer_2": tiny_transformer(in_channels=36)}
    return WanImageToVideoPipeline(
        **tiny_wan_parts(5.0), image_encoder=None, image_processor=None, **experts, boundary_ratio=0.9
    )


def tiny_vae22() -> Any:
    """The Wan 2.2 VAE (48 latent channels, 16x spatial) at a tiny scale (TI2V-5B, Lucy Edit)."""
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        **{**_VAE, "z_dim": 48},
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
    )


def tiny_ti2v() -> Any:
    """TI2V-5B: the Wan 2.2 VAE and expanded timesteps."""
    from diffusers import WanPipeline

    parts = {**tiny_wan_parts(5.0), "vae": tiny_vae22()}
    return WanPipeline(**parts, transformer=tiny_transformer(in_channels=48, out_channels=48), expand_timesteps=True)


Wan.tiny = {"wan": tiny_t2v, "wan-i2v": tiny_i2v, "wan-flf2v": tiny_flf2v}
Wan22.tiny = {"wan22": tiny_a14b, "wan22-i2v": tiny_a14b_i2v}
WanTI2V.tiny = {"wan-ti2v": tiny_ti2v}

FAMILIES = (Wan, Wan22, WanTI2V)
