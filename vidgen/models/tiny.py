"""Tiny random-weight models of every family, built locally so nothing has to be downloaded.

Each builder makes a real diffusers pipeline of the family's architecture with tiny configs and
in-memory tokenizers, saves it with `save_pretrained`, and vidgen then loads it through the same
`from_pretrained` path as a Hub model. The output is noise; every other byte is real. Adding a
family declares its builders beside itself (`Family.tiny`); the older ones are in BUILDERS.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidgen.config.settings import cache_dir
from vidgen.families.tiny_parts import (
    WORDS,
    clip_image_processor,
    clip_text,
    clip_tokenizer,
    t5_encoder,
    t5_tokenizer,
)

# Bump when a builder changes, so cached tiny models are rebuilt rather than reused.
TINY_VERSION = 4
PREFIX = "tiny:"


def _sd_vae() -> Any:
    """A one-block Stable Diffusion VAE (the UNet families share it)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8,),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=4,
        sample_size=32,
        norm_num_groups=2,
    )


def _sd_ddim() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )


def _cogvideox(in_channels: int = 4) -> Any:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel, DDIMScheduler

    tokenizer = t5_tokenizer()
    text_encoder = t5_encoder(tokenizer)
    # text_embed_dim equals the T5 d_model; max_text_seq_length matches the tiny preset's
    # max_sequence_length (16).
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=in_channels,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    return CogVideoXPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=DDIMScheduler()
    )


def _modelscope() -> Any:
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    tokenizer = clip_tokenizer()
    text_encoder = clip_text(tokenizer)
    unet = UNet3DConditionModel(
        block_out_channels=(8, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=4,
        attention_head_dim=4,
        norm_num_groups=2,
    )
    vae = _sd_vae()
    scheduler = _sd_ddim()
    return TextToVideoSDPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
    )


def _cogvideox_i2v() -> Any:
    from diffusers import CogVideoXImageToVideoPipeline

    # The image-to-video transformer sees the noisy latents and the image latents side by side,
    # so it takes twice the VAE's latent channels in.
    base = _cogvideox(in_channels=8)
    return CogVideoXImageToVideoPipeline(**base.components)


def _svd() -> Any:
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    # diffusers' own SVD test configs; in_channels 8 = noisy latents + image latents, and
    # 96 = 3 x 32 added-time embeddings (fps, motion bucket, noise augmentation).
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        trained_betas=None,
        use_karras_sigmas=True,
    )
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        latent_channels=4,
    )
    # The pipeline resizes PIL images to 224x224 for the image encoder; 32px patches keep it tiny.
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            intermediate_size=37,
            patch_size=32,
        )
    ).eval()
    return StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=clip_image_processor(224),
    )


def _i2vgen_xl() -> Any:
    from diffusers import I2VGenXLPipeline, I2VGenXLUNet
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    tokenizer = clip_tokenizer()
    unet = I2VGenXLUNet(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=4,
        attention_head_dim=4,
        num_attention_heads=None,
        norm_num_groups=2,
    )
    vae = _sd_vae()
    # The pipeline crops and resizes the image to the feature extractor's crop size itself.
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=4,
        )
    ).eval()
    scheduler = _sd_ddim()
    return I2VGenXLPipeline(
        vae=vae,
        text_encoder=clip_text(tokenizer),
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        feature_extractor=clip_image_processor(32),
        unet=unet,
        scheduler=scheduler,
    )


def _linear_ddim() -> Any:
    """DDIM as the AnimateDiff guide configures it (linear betas, no sample clipping)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False, steps_offset=1)


def _sd15(in_channels: int = 4) -> Any:
    """A Stable Diffusion 1.5-shaped pipeline: the base model AnimateDiff animates."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer()
    # Two levels with two layers each, matching the tiny motion adapter's blocks.
    unet = UNet2DConditionModel(
        block_out_channels=(8, 8),
        layers_per_block=2,
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=2,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=8,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
        )
    ).eval()
    scheduler = _linear_ddim()
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _motion_adapter(channels: tuple[int, ...] = (8, 8), mid_block: bool = True) -> Any:
    from diffusers import MotionAdapter

    return MotionAdapter(
        block_out_channels=channels,
        motion_layers_per_block=2,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
        use_motion_mid_block=mid_block,
    )


def _sdxl() -> Any:
    """A Stable Diffusion XL-shaped pipeline (two text encoders, text-time embeddings), after
    diffusers' own AnimateDiff SDXL test configs."""
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64, 128),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 8),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2, 4),
        # 80 = 6 time ids x 8 + the 32-wide pooled text embedding.
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=1,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=128,
    )
    config = {
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "hidden_act": "gelu",
        "projection_dim": 32,
    }
    tokenizer, tokenizer_2 = clip_tokenizer(), clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), **config)).eval()
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=len(tokenizer_2), **config)).eval()
    scheduler = _linear_ddim()
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )


def _sd15_pix2pix() -> Any:
    from diffusers import StableDiffusionInstructPix2PixPipeline

    # InstructPix2Pix's UNet sees the noisy latents and the input image's latents side by side.
    base = _sd15(in_channels=8)
    return StableDiffusionInstructPix2PixPipeline(**base.components, requires_safety_checker=False)


def _controlnet() -> Any:
    """A ControlNet for the tiny SD 1.5 base (same blocks; one downsampling, like its VAE)."""
    from diffusers import ControlNetModel

    return ControlNetModel(
        block_out_channels=(8, 8),
        layers_per_block=2,
        in_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        cross_attention_dim=8,
        conditioning_embedding_out_channels=(8, 8),
        norm_num_groups=2,
    )


# ChatML, as Qwen2.5-Instruct's template writes a chat (without its tool calls).
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class _LanguageModel:
    """An LLM and its tokenizer, saved into one folder as the Hub ships one."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer

    def save_pretrained(self, folder: Path, safe_serialization: bool = True) -> None:
        # transformers 5 writes safetensors only; `safe_serialization` is the diffusers call's.
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)


def _llm_tokenizer() -> Any:
    """Qwen2's byte-level BPE over printable ASCII and the tiny vocabulary's words (characters
    outside it are dropped), with ChatML's special tokens and template."""
    from transformers import Qwen2Tokenizer

    space, newline = "\u0120", "\u010a"  # byte-level BPE's space and newline
    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, space: 3, newline: 4}
    for code in range(0x21, 0x7F):
        vocab.setdefault(chr(code), len(vocab))
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        piece = space
        for char in word:
            if (piece, char) not in merges:
                merges.append((piece, char))
            piece += char
            vocab.setdefault(piece, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = _CHATML
    return tokenizer


def _llm() -> Any:
    """A two-layer Qwen2 instruct LLM (`tiny:llm`) for --enhance-prompt; it writes word salad."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _llm_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        # System prompts are read a character at a time here: room for the longest and the reply.
        max_position_embeddings=16384,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return _LanguageModel(Qwen2ForCausalLM(config).eval(), tokenizer)


BUILDERS: dict[str, Callable[[], Any]] = {
    "cogvideox": _cogvideox,
    "cogvideox-i2v": _cogvideox_i2v,
    "modelscope": _modelscope,
    "svd": _svd,
    "i2vgen-xl": _i2vgen_xl,
    "sd15": _sd15,
    "motion-adapter": _motion_adapter,
    "sd15-pix2pix": _sd15_pix2pix,
    "controlnet": _controlnet,
    "sdxl": _sdxl,
    # The SDXL beta adapter's shape: three levels, no mid-block motion module.
    "motion-adapter-sdxl": lambda: _motion_adapter((32, 64, 128), mid_block=False),
    "llm": _llm,
}


def _kandinsky6_sr() -> Any:
    """Kandinsky6SRPipeline at a tiny scale: its 16x VAE with 8 channels a level, one transformer
    block of width 16, tiles of 128 pixels (the smallest NABLA's 8-token blocks allow)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Kandinsky6SRPipeline
    from diffusers.models.autoencoders.autoencoder_kandinsky6_sr import Kandinsky6SRVAE
    from diffusers.models.transformers.transformer_kandinsky6_sr import Kandinsky6SRTransformer3DModel

    widths = (8, 8, 8, 8, 8)
    vae = Kandinsky6SRVAE(
        latent_channels=4, encoder_block_out_channels=widths, decoder_block_out_channels=widths, layers_per_block=1
    )
    transformer = Kandinsky6SRTransformer3DModel(
        in_visual_dim=4,
        out_visual_dim=4,
        time_dim=16,
        model_dim=16,
        ff_dim=32,
        num_visual_blocks=1,
        axes_dims=(4, 2, 2),
        tile_sizes=((128, 128),),
    )
    return Kandinsky6SRPipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler())


BUILDERS["kandinsky6-sr"] = _kandinsky6_sr


def builders() -> dict[str, Callable[[], Any]]:
    """Every tiny model: the ones above, and those each family declares beside itself."""
    from vidgen import families

    found = dict(BUILDERS)
    for family in families.FAMILIES.values():
        found.update(family.tiny)
    return found


def _complete(folder: Path) -> bool:
    # A pipeline has model_index.json (a modular one modular_model_index.json); a single model
    # (a motion adapter) has config.json.
    from vidgen.models.components import INDEX_FILES

    return any((folder / marker).is_file() for marker in (*INDEX_FILES, "config.json"))


def folder(name: str) -> Path:
    """Where tiny model `name` is (or will be) built."""
    return cache_dir() / "tiny" / f"{name}-v{TINY_VERSION}"


def ensure(name: str) -> Path:
    """The folder of tiny model `name`, building it on first use (atomically, so a concurrent
    or interrupted build never leaves a half-written model behind)."""
    target = folder(name)
    if _complete(target):
        return target
    import torch

    from vidgen.core.libs import quiet

    quiet()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        # Seeded so every machine builds the same weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            pipe = builders()[name]()
        pipe.save_pretrained(staging, safe_serialization=True)
        try:
            os.replace(staging, target)
        except OSError:
            if not _complete(target):  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
