"""Tiny community checkpoint files, written offline the way their publishers write them: a
tiny model's transformer in the original (non-diffusers) key layout as GGUF (the `gguf`
package's own quantizers), as ComfyUI "fp8_scaled" safetensors and as bf16 safetensors.
Used by the tests and benchmarks/checkpoints.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The ComfyUI prefix before a diffusion model's keys.
COMFY = "model.diffusion_model."


def transformer_state(folder: Path, component: str = "transformer") -> dict:
    """A tiny pipeline folder's component weights (diffusers names), as torch tensors."""
    from safetensors.torch import load_file

    return load_file(str(folder / component / "diffusion_pytorch_model.safetensors"))


def wan_original(state: dict) -> dict:
    """Wan's diffusers keys -> the original Wan keys (as Wan-AI, city96 and Kijai publish them);
    the inverse of diffusers' convert_wan_transformer_to_diffusers."""
    out = {}
    for key, value in state.items():
        k = key.replace("condition_embedder.time_embedder.linear_1", "time_embedding.0")
        k = k.replace("condition_embedder.time_embedder.linear_2", "time_embedding.2")
        k = k.replace("condition_embedder.text_embedder.linear_1", "text_embedding.0")
        k = k.replace("condition_embedder.text_embedder.linear_2", "text_embedding.2")
        k = k.replace("condition_embedder.time_proj", "time_projection.1")
        k = k.replace("attn2", "cross_attn").replace("attn1", "self_attn")
        k = k.replace(".to_out.0.", ".o.").replace(".to_q.", ".q.").replace(".to_k.", ".k.").replace(".to_v.", ".v.")
        k = k.replace("ffn.net.0.proj", "ffn.0").replace("ffn.net.2", "ffn.2")
        k = "head.modulation" if k == "scale_shift_table" else k.replace(".scale_shift_table", ".modulation")
        k = k.replace("proj_out", "head.head")
        k = k.replace("norm2", "norm__x").replace("norm3", "norm2").replace("norm__x", "norm3")
        out[k] = value
    return out


def ltx_original(state: dict) -> dict:
    """LTX-Video's diffusers keys -> the original LTX keys (inverse of diffusers' converter)."""
    names = {"proj_in": "patchify_proj", "time_embed": "adaln_single", "norm_q": "q_norm", "norm_k": "k_norm"}
    out = {}
    for key, value in state.items():
        for new, old in names.items():
            key = key.replace(new, old)
        out[key] = value
    return out


def prefixed(state: dict, prefix: str = COMFY) -> dict:
    return {prefix + key: value for key, value in state.items()}


def write_gguf(state: dict, path: Path, quant: str = "Q8_0", arch: str = "wan") -> int:
    """The state dict as a GGUF file, each 2-D weight whose rows split into the type's blocks
    quantized to `quant` (as llama.cpp's tools and city96's script do; the rest F32, biases
    and modulation tables included). Returns how many tensors were quantized."""
    import gguf

    kind = gguf.GGMLQuantizationType[quant]
    block = gguf.GGML_QUANT_SIZES[kind][0]
    writer = gguf.GGUFWriter(str(path), arch=arch)
    quantized = 0
    for name, tensor in state.items():
        array = tensor.float().numpy()
        # Linear weights only: diffusers dequantizes nothing else (city96's script also keeps
        # modulation tables and norms in full precision).
        linear = name.endswith(".weight") and "modulation" not in name and "scale_shift" not in name
        if array.ndim == 2 and array.shape[-1] % block == 0 and linear:
            data = gguf.quants.quantize(array, kind)
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=kind)
            quantized += 1
        else:
            writer.add_tensor(name, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return quantized


def write_raw_gguf(path: Path, tensors: dict[str, tuple[tuple[int, ...], str]], arch: str = "wan") -> None:
    """A GGUF file whose tensors have these shapes and types, filled with zero bytes (for files
    that must be refused before their values matter: an unknown quant type)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=arch)
    for name, (shape, quant) in tensors.items():
        kind = gguf.GGMLQuantizationType[quant]
        block, size = gguf.GGML_QUANT_SIZES[kind]
        rows, columns = shape
        data = np.zeros((rows, columns // block * size), dtype=np.uint8)
        writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_fp8_scaled(
    state: dict, path: Path, scales: bool = True, key: str = "scale_weight", blocks: str = "blocks."
) -> int:
    """ComfyUI / Kijai "fp8_scaled" safetensors: each 2-D weight of a linear layer inside the
    `blocks` stored as fp8 (e4m3fn) of weight / scale with its per-tensor scale beside it
    (`<module>.scale_weight`), the rest bf16 (non-float tensors as they are), and the
    `scaled_fp8` marker. `scales=False` drops the scale tensors, which is what a loader that
    ignores them computes with. Returns how many weights were scaled."""
    import torch
    from safetensors.torch import save_file

    out, scaled = {}, 0
    for name, tensor in state.items():
        # ComfyUI scales linear layers only: T5's relative attention bias is an embedding.
        linear = "relative_attention_bias" not in name
        if name.endswith(".weight") and tensor.ndim == 2 and blocks in name and linear:
            scale = tensor.abs().max().float() / 448.0
            out[name] = (tensor.float() / scale).to(torch.float8_e4m3fn)
            if scales:
                out[name[: -len(".weight")] + "." + key] = scale.reshape(1)
            scaled += 1
        else:
            out[name] = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
    if scales:
        out["scaled_fp8"] = torch.zeros(2, dtype=torch.float8_e4m3fn)
    save_file(out, str(path))
    return scaled


def write_safetensors(state: dict, path: Path, dtype: str = "bfloat16") -> None:
    import torch
    from safetensors.torch import save_file

    cast = {k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v for k, v in state.items()}
    save_file({k: v.contiguous() for k, v in cast.items()}, str(path))


def encoder_state(folder: Path, component: str = "text_encoder") -> dict:
    """A tiny pipeline folder's text encoder weights (transformers names), as torch tensors."""
    from safetensors.torch import load_file

    return load_file(str(folder / component / "model.safetensors"))


def write_encoder_gguf(
    state: dict, path: Path, arch: str = "t5encoder", quant: str | None = "Q8_0", name: str = "umt5 tiny", heads=None
) -> int:
    """A text encoder's state dict (transformers names) as llama.cpp's converter writes it: the
    names from gguf's own table for `arch` (`enc.blk.0.attn_q.weight`, `token_embd.weight`), a
    Llama's q/k rows permuted as llama.cpp does (`heads`: (query, key/value) head counts, written
    to the metadata, from which transformers undoes it), and each 2-D weight whose rows split
    into blocks quantized to `quant` (None: all F32). Returns how many tensors were quantized."""
    import gguf

    blocks = 1 + max(int(part) for key in state for part in key.split(".") if part.isdigit())
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], blocks)
    kind = gguf.GGMLQuantizationType[quant] if quant else None
    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_name(name)
    if heads:
        writer.add_head_count(heads[0])
        writer.add_head_count_kv(heads[1])
    quantized = 0
    for key, tensor in state.items():
        module, suffix = key.rsplit(".", 1)
        target = names.get_name(module) or names.get_name("model." + module)
        assert target is not None, key
        array = tensor.float().numpy()
        if heads and module.endswith(("q_proj", "k_proj")):
            count = heads[0] if module.endswith("q_proj") else heads[1]
            array = array.reshape(count, 2, array.shape[0] // count // 2, *array.shape[1:])
            array = array.swapaxes(1, 2).reshape(tensor.shape)
        rows_split = kind is not None and array.ndim == 2 and array.shape[-1] % gguf.GGML_QUANT_SIZES[kind][0] == 0
        if rows_split and "relative_attention_bias" not in key:
            data = gguf.quants.quantize(array, kind)
            writer.add_tensor(f"{target}.{suffix}", data, raw_shape=data.shape, raw_dtype=kind)
            quantized += 1
        else:
            writer.add_tensor(f"{target}.{suffix}", array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return quantized


def main(argv: list[str]) -> None:
    """`python tests/community.py FILE...`: tiny Wan transformers as community files, for trying
    --transformer offline. The name chooses the format: *-Q8_0.gguf / *-Q4_0.gguf (GGUF),
    *fp8_scaled.safetensors (ComfyUI scaled fp8), any other .safetensors (ComfyUI bf16)."""
    from vidgen.models import tiny

    state = wan_original(transformer_state(tiny.ensure("wan")))
    for name in argv:
        path = Path(name)
        if path.suffix == ".gguf":
            quant = "Q4_0" if "Q4_0" in path.name else "Q8_0"
            write_gguf(state, path, quant)
        elif "fp8_scaled" in path.name:
            write_fp8_scaled(prefixed(state), path)
        else:
            write_safetensors(prefixed(state), path)
        print(path)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
