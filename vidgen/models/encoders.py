"""Text encoders from one file, the transformers side: which of a file's tensors a pipeline's
own encoder class takes (under transformers' own GGUF name mapping), and loading it the way
transformers documents.

transformers reads a GGUF text encoder (UMT5, T5, Llama: llama.cpp tensor names such as
`enc.blk.0.attn_q.weight`) by dequantizing every tensor as it loads: the file saves download
and disk, not memory. Safetensors files carry transformers' own names (ComfyUI's text encoder
files do: its T5 classes mirror transformers'), scaled fp8 ones included once dequantized.
Only the pipeline's own class is used: a UMT5 file loaded as T5 would silently lose UMT5's
per-layer attention biases, which the check below refuses as tensors with no place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# GGUF tensors of a whole language model that an encoder has no place for and transformers
# skips: the LM head of a Llama file (`output.weight`) and the decoder of a full T5 file.
SKIPPED_GGUF = ("output.weight",)
SKIPPED_GGUF_PREFIXES = ("dec.",)
# The GGUF architectures a transformers model type loads from (transformers reads every T5
# file, encoder-only or not, as t5 or umt5, and names UMT5's tensors as T5's).
_GGUF_TYPES = {"umt5": "t5", "t5encoder": "t5"}


def gguf_readable(meta_model: Any) -> bool:
    """Whether transformers can load this encoder's class from a GGUF file at all (it maps the
    tensors of a fixed list of architectures: Llama, T5, UMT5, Gemma, Qwen, ...)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return meta_model.config.model_type in GGUF_SUPPORTED_ARCHITECTURES


def same_architecture(meta_model: Any, architecture: str | None) -> bool:
    """Whether a GGUF file of `architecture` holds a model of this encoder's type."""
    model_type = meta_model.config.model_type
    return architecture is not None and _GGUF_TYPES.get(architecture, architecture) == _GGUF_TYPES.get(
        model_type, model_type
    )


def skipped(name: str) -> bool:
    """A GGUF tensor of a whole language model that an encoder does not take (see above)."""
    return name in SKIPPED_GGUF or name.startswith(SKIPPED_GGUF_PREFIXES)


def gguf_names(meta_model: Any) -> dict[str, str]:
    """GGUF tensor name -> the encoder's own weight name, as transformers maps them when it
    loads the file (its own table, built from the model's layers; nothing is read)."""
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

    return get_gguf_hf_weights_map(meta_model, TensorProcessor())


def weights(meta_model: Any) -> dict[str, tuple[int, ...]]:
    """The weights a file must give the encoder: its state dict less the tied copies
    (UMT5's `encoder.embed_tokens` is `shared`), name -> shape."""
    seen: dict[int, str] = {}
    found = {}
    for name, tensor in meta_model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen[id(tensor)] = name
        found[name] = tuple(tensor.shape)
    return found


def canonical(meta_model: Any) -> dict[str, str]:
    """Every state dict name -> the one `weights` lists for the same tensor."""
    first: dict[int, str] = {}
    names = {}
    for name, tensor in meta_model.state_dict(keep_vars=True).items():
        names[name] = first.setdefault(id(tensor), name)
    return names


def load(path: Path, gguf: bool, class_name: str, config_folder: Path, dtype: Any, state: Any = None) -> Any:
    """The encoder from the file: `from_pretrained(config folder, gguf_file=FILE, config=its
    config)` for GGUF (the config from the model, not the file: a file without tokenizer
    metadata gives transformers no vocabulary size), `from_pretrained(None, config=..,
    state_dict=..)` for a safetensors file's (dequantized) `state`."""
    import transformers

    cls = getattr(transformers, class_name)
    config = transformers.AutoConfig.from_pretrained(str(config_folder))
    if not gguf:
        return cls.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
    with _no_bar():
        return cls.from_pretrained(str(config_folder), gguf_file=str(path), config=config, dtype=dtype)


@contextmanager
def _no_bar() -> Iterator[None]:
    """transformers' GGUF reader draws its own tqdm bar (outside transformers' switch for
    progress bars) as it dequantizes: vidgen reports loading itself, and never in pipes."""
    from transformers import modeling_gguf_pytorch_utils as reader

    original = reader.tqdm
    reader.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        reader.tqdm = original
