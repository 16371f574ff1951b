"""Building blocks of the tiny random-weight models: in-memory tokenizers and tiny text and
image encoders that several families' recipes share. Families import these (they sit in the
families layer); vidgen/models/tiny.py builds, saves and caches the whole pipelines."""

from __future__ import annotations

from typing import Any

WORDS = (
    "a an the cat dog fox red blue green running through fresh snow surfing at dusk corgi "
    "rocket launching desert space horse galloping street in on of and with"
).split()


def t5_tokenizer() -> Any:
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + word, -5.0) for word in WORDS]
    vocab += [(char, -8.0) for char in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def t5_encoder(tokenizer: Any, umt5: bool = False) -> Any:
    """A two-layer T5 (or UMT5) encoder with d_model 32 for `tokenizer`."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config = {
        "vocab_size": len(tokenizer),
        "d_model": 32,
        "d_ff": 37,
        "d_kv": 8,
        "num_heads": 4,
        "num_layers": 2,
        "relative_attention_num_buckets": 8,
        "dropout_rate": 0.0,
    }
    return (UMT5EncoderModel(UMT5Config(**config)) if umt5 else T5EncoderModel(T5Config(**config))).eval()


def clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz0123456789":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def clip_text(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=4,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            hidden_act="gelu",
            projection_dim=32,
        )
    ).eval()


def clip_image_processor(size: int) -> Any:
    # The PIL-backed class: the default one wants torchvision, which vidgen does not depend on.
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(crop_size=size, size=size)


def siglip_vision(hidden_size: int, intermediate_size: int) -> dict[str, Any]:
    """A one-layer SigLIP vision tower on 16x16 images and its PIL-backed processor, as the
    image_encoder and feature_extractor of pipelines that read images with SigLIP (FramePack,
    HunyuanVideo-1.5 i2v)."""
    from transformers import SiglipImageProcessorPil, SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=4,
    )
    return {
        "image_encoder": SiglipVisionModel(config).eval(),
        "feature_extractor": SiglipImageProcessorPil(size={"height": 16, "width": 16}),
    }


def gemma_tokenizer() -> Any:
    """A letter-level Gemma tokenizer (no files): lower-case letters, digits and spaces, so a tiny
    Gemma text encoder (LTX-2, SANA-Video) reads what a prompt says."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "\u2581": 5}
    for char in "abcdefghijklmnopqrstuvwxyz0123456789":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault("\u2581" + char, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[])


def qwen25_vl_encoder(tokenizer: Any) -> Any:
    """A two-layer Qwen2.5-VL (the class the pipeline loads) with hidden size 16 for `tokenizer`."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {name: tokenizer.convert_tokens_to_ids(f"<|{name}|>") for name in ("vision_start", "vision_end")}
    text = {
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "vocab_size": len(tokenizer),
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 0,
        "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        "rope_theta": 1000000.0,
    }
    vision = {"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16}
    qwen = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        vocab_size=len(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"],
    )
    return Qwen2_5_VLForConditionalGeneration(qwen).eval()


def redraw_zeros(module: Any, std: float = 0.2, seed: int = 0) -> Any:
    """Draw every all-zero tensor of `module` from N(0, std) (one generator seeded `seed`, in
    parameter order), so that no part of a tiny model starts silent. Models start some layers at
    zero, as in training (output projections, modulation, gates, ControlNets' last convolutions):
    with random weights elsewhere, those would make the prompt or an input change nothing."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if not parameter.any():
                parameter.normal_(0.0, std, generator=generator)
    return module


class ModularSaved:
    """A tiny modular pipeline as vidgen's tiny-model cache saves it (Wan-Animate-2, MiniMax-H3):
    diffusers' save, pointing its index at the folder (vidgen reads every component from the
    model itself anyway)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def save_pretrained(self, folder: Any, safe_serialization: bool = True) -> None:
        self.pipe.save_pretrained(str(folder), safe_serialization=safe_serialization, overwrite_modular_index=True)
