"""Write a diffusers Stable Diffusion 1.x pipeline folder as one original-format (CompVis/LDM) checkpoint.

Model sites ship SD checkpoints as a single `.safetensors`/`.ckpt` in the original key layout, and diffusers
loads them with `from_single_file`. Tests use this helper to make such a file from a tiny pipeline, so that
path can run offline. It inverts diffusers' `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint` and
`convert_ldm_clip_checkpoint` (diffusers/loaders/single_file_utils.py). Unlike diffusers'
scripts/convert_diffusers_to_original_stable_diffusion.py, the block indices come from the model configs,
not from SD's fixed four levels of two layers, so tiny models with fewer levels convert too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

# Renames inside a UNet ResBlock, diffusers -> LDM (the VAE's ResnetBlock only renames the shortcut).
UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3"}
UNET_RESNET |= {"time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
# Renames inside the VAE's single-head mid-block attention.
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_prefixes(config: dict) -> dict[str, str]:
    """diffusers -> LDM prefix of every UNet submodule. LDM numbers the blocks of the encoder path
    (`input_blocks`) and the decoder path (`output_blocks`) in one flat sequence each."""
    layers, levels = config["layers_per_block"], len(config["block_out_channels"])
    pairs = {
        "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.",
        "conv_in.": "input_blocks.0.0.",
        "conv_norm_out.": "out.0.",
        "conv_out.": "out.2.",
        "mid_block.resnets.0.": "middle_block.0.",
        "mid_block.attentions.0.": "middle_block.1.",
        "mid_block.resnets.1.": "middle_block.2.",
    }
    for b in range(levels):
        # input_blocks.0 is conv_in; then each level has `layers` (resnet, attention) blocks and a downsampler.
        first = 1 + b * (layers + 1)
        for j in range(layers):
            pairs[f"down_blocks.{b}.resnets.{j}."] = f"input_blocks.{first + j}.0."
            pairs[f"down_blocks.{b}.attentions.{j}."] = f"input_blocks.{first + j}.1."
        pairs[f"down_blocks.{b}.downsamplers.0.conv."] = f"input_blocks.{first + layers}.0.op."
        # Each up level has one more layer (it also consumes the downsampler's skip); its upsampler shares
        # the last layer's block, after the attention when the level has one.
        first = b * (layers + 1)
        for j in range(layers + 1):
            pairs[f"up_blocks.{b}.resnets.{j}."] = f"output_blocks.{first + j}.0."
            pairs[f"up_blocks.{b}.attentions.{j}."] = f"output_blocks.{first + j}.1."
        slot = 2 if "CrossAttn" in config["up_block_types"][b] else 1
        pairs[f"up_blocks.{b}.upsamplers.0."] = f"output_blocks.{first + layers}.{slot}."
    return pairs


def _vae_prefixes(config: dict) -> dict[str, str]:
    """diffusers -> LDM prefix of every VAE submodule."""
    levels = len(config["block_out_channels"])
    pairs = {"quant_conv.": "quant_conv.", "post_quant_conv.": "post_quant_conv."}
    for part in ("encoder", "decoder"):
        pairs |= {f"{part}.{name}.": f"{part}.{name}." for name in ("conv_in", "conv_out")}
        pairs[f"{part}.conv_norm_out."] = f"{part}.norm_out."
        pairs[f"{part}.mid_block.attentions.0."] = f"{part}.mid.attn_1."
        pairs |= {f"{part}.mid_block.resnets.{k}.": f"{part}.mid.block_{k + 1}." for k in range(2)}
    for i in range(levels):
        pairs[f"encoder.down_blocks.{i}.resnets."] = f"encoder.down.{i}.block."
        pairs[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        # LDM numbers decoder levels by resolution (up.0 is the full-size one); diffusers in execution order.
        pairs[f"decoder.up_blocks.{i}.resnets."] = f"decoder.up.{levels - 1 - i}.block."
        pairs[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{levels - 1 - i}.upsample."
    return pairs


def _rename(key: str, prefixes: dict[str, str], inner: dict[str, str]) -> str:
    """Swap `key`'s prefix and, inside resnets and attentions, apply the `inner` renames."""
    # Every prefix ends in "." and none extends another, so at most one matches.
    prefix = next((p for p in prefixes if key.startswith(p)), None)
    if prefix is None:
        raise KeyError(f"no LDM name for {key!r}; does the model have a block type this helper does not know?")
    rest = key[len(prefix) :]
    name, _, param = rest.rpartition(".")
    return prefixes[prefix] + f"{inner.get(name, name)}.{param}".lstrip(".")


def _load(folder: Path) -> dict[str, torch.Tensor]:
    (weights,) = folder.glob("*.safetensors")  # the tiny pipelines are saved with safe_serialization=True
    return load_file(weights)


def write_single_file(pipeline_dir: Path, out: Path) -> Path:
    """Write the unet, vae and text_encoder of the diffusers pipeline at `pipeline_dir` as one
    original-format SD checkpoint: .safetensors (safetensors.torch.save_file) or, if `out` ends in
    .ckpt, a pickle made with torch.save({"state_dict": ...}). Returns `out`."""
    pipeline_dir, out = Path(pipeline_dir), Path(out)
    state: dict[str, torch.Tensor] = {}

    unet_config = json.loads((pipeline_dir / "unet" / "config.json").read_text())
    unet_prefixes = _unet_prefixes(unet_config)
    for key, value in _load(pipeline_dir / "unet").items():
        # Transformer blocks keep their diffusers names in LDM; only ResBlocks rename their layers.
        inner = UNET_RESNET if ".resnets." in key else {}
        state["model.diffusion_model." + _rename(key, unet_prefixes, inner)] = value

    vae_prefixes = _vae_prefixes(json.loads((pipeline_dir / "vae" / "config.json").read_text()))
    for key, value in _load(pipeline_dir / "vae").items():
        inner = VAE_ATTENTION if ".attentions." in key else {"conv_shortcut": "nin_shortcut"}
        if ".attentions." in key and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's AttnBlock uses 1x1 convolutions where diffusers uses Linear
        state["first_stage_model." + _rename(key, vae_prefixes, inner)] = value

    for key, value in _load(pipeline_dir / "text_encoder").items():
        # transformers >= 5.6 saves CLIPTextModel without its `text_model.` level; SD checkpoints (and
        # diffusers' detection key `cond_stage_model.transformer.text_model.embeddings...`) have it.
        key = key if key.startswith("text_model.") else "text_model." + key
        state["cond_stage_model.transformer." + key] = value

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".ckpt":
        torch.save({"state_dict": state}, out)
    else:
        save_file(state, out)
    return out


def write_motion_module(adapter_dir: Path, out: Path) -> Path:
    """Write a diffusers MotionAdapter as an original AnimateDiff motion-module file (mm_sd_v15_v2
    layout): `temporal_transformer` levels, `attention_blocks.N`, `norms.N`, `ff_norm`, and the
    sinusoidal `pos_encoder.pe` tables that diffusers uses to recognise the format."""
    renames = (
        (".attn1.", ".attention_blocks.0."),
        (".attn2.", ".attention_blocks.1."),
        (".norm1.", ".norms.0."),
        (".norm2.", ".norms.1."),
        (".norm3.", ".ff_norm."),
    )
    original = {}
    for key, tensor in load_file(adapter_dir / "diffusion_pytorch_model.safetensors").items():
        key = re.sub(r"(motion_modules\.\d+)\.", r"\1.temporal_transformer.", key)
        for old, new in renames:
            key = key.replace(old, new)
        original[key] = tensor
    for key in [k for k in original if re.search(r"attention_blocks\.\d\.to_q\.weight$", k)]:
        # Zeros suffice: diffusers recomputes the table and only checks that the key exists.
        original[key.replace("to_q.weight", "pos_encoder.pe")] = torch.zeros(1, 32, original[key].shape[1])
    save_file(original, str(out))
    return out
