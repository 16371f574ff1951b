"""One file for one model: the single-file checkpoints people download (GGUF quantized files,
ComfyUI and original-layout safetensors, "fp8_scaled" files) read, checked against the model
they are meant for, and loaded into it.

A file is read from its header alone (no tensor is loaded) so that a wrong file — another
model's, another size, truncated, a quant type diffusers cannot run, tensors that would be
dropped — is refused before the rest of the pipeline loads, naming what the file is. diffusers'
own converters map the file's keys (run on meta tensors, so nothing is allocated), and every
tensor must find its place: diffusers itself only logs weights it did not use.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen.core.errors import ModelError

# Prefixes ComfyUI and original checkpoints put before a diffusion model's own key names.
COMFY_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
# Scale tensors of scaled fp8 files: ComfyUI / Kijai "fp8_scaled" (`scale_weight`) and the newer
# quantized layouts (`weight_scale`); `scaled_fp8` is the marker ComfyUI writes. Activation scales
# (`scale_input`, `input_scale`) only feed fp8 matmuls: dequantizing the weights leaves them unused.
WEIGHT_SCALES = (".scale_weight", ".weight_scale")
UNUSED_SCALES = (".scale_input", ".input_scale")
SCALED_MARKERS = ("scaled_fp8", "comfy_quant")
# Second scales of 4-bit and block-scaled formats (ComfyUI's nvfp4, int8 blockwise).
BLOCK_SCALES = (".weight_scale_2", ".pre_quant_scale")
# ComfyUI's text encoder files carry their tokenizer as a byte tensor; no weight takes it.
TOKENIZER_TENSORS = ("spiece_model",)
FLOAT8 = ("F8_E4M3", "F8_E5M2")
# GGUF types that are plain floats (no dequantization).
GGUF_FLOATS = ("F32", "F16", "BF16", "F64")
# Model families by diffusers' checkpoint type names (single_file_utils.infer_diffusers_model_type).
KNOWN_TYPES = {
    "wan": "a Wan transformer",
    "ltx-video": "an LTX-Video transformer",
    "ltx2": "an LTX-2 transformer",
    "hunyuan-video": "a HunyuanVideo transformer",
    "skyreels": "a SkyReels-V2 transformer",
    "mochi": "a Mochi transformer",
    "cosmos": "a Cosmos transformer",
    "flux": "a FLUX transformer",
    "sd3": "a Stable Diffusion 3 transformer",
}
# GGUF general.architecture values city96's convert script and others write, and llama.cpp's
# for the text encoders.
GGUF_ARCHES = {
    "wan": "Wan",
    "ltxv": "LTX-Video",
    "hyvid": "HunyuanVideo",
    "flux": "FLUX",
    "sd3": "SD3",
    "t5encoder": "T5 text encoder",
    "t5": "T5",
    "llama": "Llama",
}
# The GGUF names llama.cpp gives a model's tensors (token embedding, blocks, encoder blocks).
LLAMA_CPP_NAMES = ("token_embd.", "blk.", "enc.blk.", "enc.output_norm.")
_HUB_FILE = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[\w.-]+))?:(?P<path>[^:]+)$")


@dataclass
class Checkpoint:
    """What a single file holds, from its header: enough to check it and price it."""

    path: Path
    source: str  # as typed: a path, or REPO[@REVISION]:PATH
    format: str  # gguf | safetensors | pickle
    # tensor name -> (shape as the model sees it, type: F32, BF16, F8_E4M3, Q8_0, Q4_K, ...)
    tensors: dict[str, tuple[tuple[int, ...], str]]
    data_bytes: int  # bytes of tensor data (the resident size of a quantized file)
    architecture: str | None = None  # GGUF general.architecture
    repo: str | None = None
    revision: str | None = None
    scales: dict[str, str] = field(default_factory=dict)  # weight key -> its scale key

    @property
    def scaled(self) -> bool:
        return bool(self.scales)

    @property
    def layout(self) -> str:
        """comfyui (prefixed keys), diffusers, llama.cpp (GGUF names), transformers (a text
        encoder's own names, as ComfyUI's text encoder files keep them) or original (the
        authors' own names)."""
        names = self.tensors
        if any(name.startswith(COMFY_PREFIXES) for name in names):
            return "comfyui"
        diffusers_words = ("attn1.", "attn2.", "to_q.", "transformer_blocks.", "proj_out.", "condition_embedder.")
        if any(word in name for name in names for word in diffusers_words):
            return "diffusers"
        if any(name.startswith(LLAMA_CPP_NAMES) for name in names):
            return "llama.cpp"
        return "transformers" if _text_encoder(self) else "original"

    def types(self) -> dict[str, int]:
        """tensor type -> how many tensors have it."""
        return dict(Counter(kind for _, kind in self.tensors.values()))

    @property
    def quant(self) -> str:
        """The type most of the weights are stored in (by elements), as people name files:
        Q8_0, Q4_K, fp8_e4m3fn (scaled), bf16."""
        weight: Counter[str] = Counter()
        for shape, kind in self.tensors.values():
            weight[kind] += _numel(shape)
        # The quantized or fp8 type names a file (its norms and embeddings stay in full precision).
        quantized = {k: v for k, v in weight.items() if _quantized(k) or k in FLOAT8}
        top = max(quantized or weight, key=(quantized or weight).__getitem__) if weight else "empty"
        if top in FLOAT8:
            name = {"F8_E4M3": "fp8_e4m3fn", "F8_E5M2": "fp8_e5m2"}[top]
            return f"{name} (scaled)" if self.scaled else name
        return top if self.format == "gguf" else top.lower()

    def record(self, sha256: str | None) -> dict[str, Any]:
        """The sidecar's `model.files.<component>` entry."""
        return {
            "source": self.source,
            "path": str(self.path),
            "repo": self.repo,
            "revision": self.revision,
            "sha256": sha256,
            "bytes": self.path.stat().st_size,
            "format": self.format,
            "quant": self.quant,
            "layout": self.layout,
            "tensors": len(self.tensors),
            "types": self.types(),
        }


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for side in shape:
        count *= side
    return count


# -- where the file is ------------------------------------------------------------------


def hub_file(source: str) -> tuple[str, str | None, str] | None:
    """(repo, revision, path inside it) for REPO[@REVISION]:PATH, or None for a local path."""
    if Path(source).expanduser().exists():
        return None
    match = _HUB_FILE.match(source)
    if match is None:
        return None
    path = match["path"]
    if path.startswith("/") or ".." in Path(path).parts:
        raise ModelError(f"{source}: the path after the repo id must be a file inside the repo.")
    return match["repo"], match["revision"], path


def fetch(source: str, what: str, download: bool = True) -> tuple[Path | None, str | None, str | None]:
    """(local path, repo, revision) of a file typed as a path or REPO[@REVISION]:PATH. A Hub
    file is downloaded once into the Hugging Face cache (`download`: allowed to; without it a
    file not yet cached has no path); its commit is the cached snapshot's name."""
    hub = hub_file(source)
    if hub is None:
        return Path(source).expanduser().resolve(), None, None
    repo, revision, path = hub
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo, path, revision=revision)
        found = cached if isinstance(cached, str) else None
        if found is None and download:
            found = hf_hub_download(repo, path, revision=revision)
    except Exception as exc:  # offline, gated, missing: one line saying which
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{what} {source} could not be downloaded from the Hub: {first}") from None
    if found is None:
        return None, repo, revision
    # The cache keeps each file under snapshots/<commit>/<path>.
    local = Path(found)
    commit = local.parents[len(Path(path).parts) - 1].name
    return local, repo, commit


# -- reading ------------------------------------------------------------------------------


def read(source: str, what: str, allow_pickle: bool, download: bool = True) -> Checkpoint | None:
    """The file's header as a Checkpoint (None: a Hub file not downloaded, without `download`);
    a file that is not a whole checkpoint vidgen can load is a ModelError naming it."""
    path, repo, revision = fetch(source, what, download)
    if path is None:
        return None
    if not path.is_file():
        raise ModelError(f"{what} {source} does not exist; check the path.")
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        checkpoint = _read_gguf(path, source, what)
    elif suffix == ".safetensors":
        checkpoint = _read_safetensors(path, source, what)
    elif suffix in (".ckpt", ".pt", ".pth", ".bin"):
        if not allow_pickle:
            raise ModelError(
                f"{what} {source} is a pickle file ({suffix}), which can run code when loaded; "
                "use a .gguf or .safetensors file, or pass --allow-pickle only if you trust its source."
            )
        checkpoint = _read_pickle(path, source, what)
    else:
        raise ModelError(f"{what} {source} is not a checkpoint file; use a .gguf or .safetensors file.")
    checkpoint.repo, checkpoint.revision = repo, revision
    if not checkpoint.tensors:
        raise ModelError(f"{what} {source} holds no tensors; is it the right file, downloaded whole?")
    return checkpoint


def _read_gguf(path: Path, source: str, what: str) -> Checkpoint:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError, struct_error()) as exc:
        # A truncated download fails somewhere in its header or last tensors; a renamed file has no magic.
        with open(path, "rb") as handle:
            magic = handle.read(4) == b"GGUF"
        reason = "it is truncated or damaged" if magic else "it does not start as GGUF files do"
        del exc
        raise ModelError(f"{what} {source} is not a readable GGUF file ({reason}); download it again.") from None
    tensors: dict[str, tuple[tuple[int, ...], str]] = {}
    data = 0
    for tensor in reader.tensors:
        # GGUF lists dimensions innermost first; torch's order is the reverse.
        shape = tuple(int(side) for side in reversed(list(tensor.shape)))
        tensors[tensor.name] = (shape, tensor.tensor_type.name)
        data += int(tensor.n_bytes)
    _check_gguf_types(tensors, source, what)
    field = reader.fields.get("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode(errors="replace") if field is not None and field.data else None
    return Checkpoint(path, source, "gguf", tensors, data, architecture=arch)


def struct_error() -> type[Exception]:
    import struct

    return struct.error


def _check_gguf_types(tensors: dict[str, tuple[tuple[int, ...], str]], source: str, what: str) -> None:
    """Every quant type must be one diffusers' GGUF loader dequantizes."""
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES

    supported = {kind.name for kind in SUPPORTED_GGUF_QUANT_TYPES} | {"F32", "F16", "BF16"}
    unknown = sorted({kind for _, kind in tensors.values()} - supported)
    if unknown:
        names = ", ".join(sorted(supported - {"F32", "F16", "BF16"}))
        raise ModelError(
            f"{what} {source} stores tensors as {', '.join(unknown)}, which diffusers cannot dequantize; "
            f"use a file in one of {names}."
        )


def _read_safetensors(path: Path, source: str, what: str) -> Checkpoint:
    from vidgen.models.components import safetensors_header

    header = safetensors_header(path, what, source)
    tensors = {
        name: (tuple(info["shape"]), str(info["dtype"]))
        for name, info in header.items()
        if name != "__metadata__" and isinstance(info, dict)
    }
    data = sum(info["data_offsets"][1] - info["data_offsets"][0] for n, info in header.items() if n != "__metadata__")
    scales = {}
    for name in tensors:
        for suffix in WEIGHT_SCALES:
            if name.endswith(suffix):
                scales[name[: -len(suffix)] + ".weight"] = name
    _check_scaled(tensors, scales, source, what)
    return Checkpoint(path, source, "safetensors", tensors, data, scales=scales)


def _check_scaled(
    tensors: dict[str, tuple[tuple[int, ...], str]], scales: dict[str, str], source: str, what: str
) -> None:
    """Scaled weights vidgen can dequantize: fp8 with one scale per tensor or per output row.
    ComfyUI's newer mixed formats (nvfp4 with a second scale, int8 with block scales) are
    refused by name rather than loaded wrong."""
    block = [name for name in tensors if name.endswith(BLOCK_SCALES)]
    if block:
        raise ModelError(
            f"{what} {source} is in a 4-bit or block-scaled format ({block[0]}), which vidgen cannot dequantize; "
            "use its fp8_scaled, GGUF or bf16 release."
        )
    for weight, scale in scales.items():
        if weight not in tensors:
            raise ModelError(f"{what} {source} has the scale {scale} without its weight; is the file whole?")
        shape, kind = tensors[weight]
        scale_size = _numel(tensors[scale][0])
        if kind not in FLOAT8 or scale_size not in (1, shape[0] if shape else 1):
            raise ModelError(
                f"{what} {source} stores {weight} as {kind} with {scale_size} scales, a format vidgen cannot "
                "dequantize (it takes fp8 with one scale per tensor or row); use its fp8_scaled, GGUF or bf16 release."
            )


def _read_pickle(path: Path, source: str, what: str) -> Checkpoint:
    import torch

    try:
        state = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception as exc:  # not a torch pickle, or one holding more than tensors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{what} {source} is not a readable checkpoint: {first}") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    tensors = {
        k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items() if hasattr(v, "shape")
    }
    data = sum(v.numel() * v.element_size() for v in state.values() if hasattr(v, "shape"))
    return Checkpoint(path, source, "pickle", tensors, data)


# -- checking against the model ------------------------------------------------------------


def what_it_is(checkpoint: Checkpoint) -> str:
    """The model a file was made for, from its keys (diffusers' own detection) or its GGUF
    architecture; 'a checkpoint of an unknown model' when neither says."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    meta = _meta_tensors(checkpoint, drop_scales=True)
    try:
        kind = infer_diffusers_model_type(meta)
    except Exception:  # detection reads shapes of keys some files lack: no name then
        kind = "v1"
    for prefix, name in KNOWN_TYPES.items():
        if kind.startswith(prefix):
            # Only the family: diffusers tells sizes apart by its published shapes, not a tiny file's.
            return name
    if checkpoint.architecture in GGUF_ARCHES:
        return f"a {GGUF_ARCHES[checkpoint.architecture]} model (GGUF architecture '{checkpoint.architecture}')"
    encoder = _text_encoder(checkpoint)
    return f"a {encoder} text encoder" if encoder else "a checkpoint of an unknown model"


def _text_encoder(checkpoint: Checkpoint) -> str | None:
    """UMT5, T5 or Llama for a file in transformers' names of such an encoder (UMT5 has an
    attention bias in every block, T5 in the first only)."""
    names = checkpoint.tensors
    if "encoder.block.0.layer.0.SelfAttention.q.weight" in names:
        return "UMT5" if "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in names else "T5"
    if any(name.startswith(("layers.0.self_attn.", "model.layers.0.self_attn.")) for name in names):
        return "Llama"
    return None


def _meta_tensors(checkpoint: Checkpoint, drop_scales: bool) -> dict[str, Any]:
    """The file's tensors as meta tensors of their shapes; GGUF-quantized ones as uint8, so that
    they can be told apart after diffusers' converter renamed them."""
    import torch

    skip = set(checkpoint.scales.values()) if drop_scales else set()
    return {
        name: torch.empty(shape, device="meta", dtype=torch.uint8 if _quantized(kind) else torch.float32)
        for name, (shape, kind) in checkpoint.tensors.items()
        if name not in skip and not _unused(name)
    }


def _quantized(kind: str) -> bool:
    """Whether a GGUF tensor type is a quantized block format (not a plain float)."""
    return kind.isupper() and kind not in GGUF_FLOATS and not kind.startswith("F8")


def _unused(name: str) -> bool:
    """Tensors a scaled file carries that no model weight takes (markers, activation scales)."""
    bare = name.split(".")[-1]
    return bare in SCALED_MARKERS or bare in TOKENIZER_TENSORS or name.endswith(UNUSED_SCALES)


def converted(checkpoint: Checkpoint, class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The file's tensors (meta) under the model's own names: as they are when the file already
    uses them (diffusers then skips conversion), else as diffusers' converter for `class_name`
    maps them. Nothing is read or allocated."""
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    meta = _meta_tensors(checkpoint, drop_scales=True)
    mapping = SINGLE_FILE_LOADABLE_CLASSES[class_name]["checkpoint_mapping_fn"]
    try:
        return mapping(config=config, checkpoint=dict(meta))
    except Exception:  # a converter meeting keys it does not know: nothing maps
        return {}


def check(checkpoint: Checkpoint, class_name: str, meta_model: Any, what: str, model: str) -> None:
    """Refuse a file whose tensors do not fill `class_name` (built on the meta device as
    `meta_model`) exactly: tensors with no place in it, weights the file lacks, shapes of
    another model size, or quantized tensors diffusers would use without dequantizing."""
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    if class_name not in SINGLE_FILE_LOADABLE_CLASSES:
        raise ModelError(f"diffusers cannot load a {class_name} from one file; {what} takes a diffusers folder here.")
    expected = {name: tuple(tensor.shape) for name, tensor in meta_model.state_dict().items()}
    own = _meta_tensors(checkpoint, drop_scales=True)
    mapped = own if set(own) == set(expected) else converted(checkpoint, class_name, dict(meta_model.config))
    if not mapped:
        raise ModelError(
            f"{what} {checkpoint.source} is {what_it_is(checkpoint)}, not the {class_name} of {model}: "
            "none of its tensors map onto it; use a file made for this model, or the preset of its family."
        )
    _compare(checkpoint, {k: tuple(v.shape) for k, v in mapped.items()}, expected, class_name, what, model)
    _check_quantized(checkpoint, mapped, meta_model, what)


def check_encoder(checkpoint: Checkpoint, class_name: str, meta_model: Any, what: str, model: str) -> None:
    """Refuse a text encoder file whose tensors do not fill the pipeline's own encoder class
    (`meta_model`, built on the meta device) exactly, under the names transformers gives a
    GGUF file's tensors when it loads it: another model's GGUF, an encoder of another kind or
    size, a part of one, or a class transformers reads no GGUF file for."""
    from vidgen.models import encoders

    if checkpoint.format == "pickle":
        raise ModelError(f"{what} takes a .gguf or .safetensors file; {checkpoint.source} is a pickle file.")
    if checkpoint.format == "gguf":
        if not encoders.gguf_readable(meta_model):
            raise ModelError(
                f"transformers cannot load {model}'s text encoder ({class_name}) from a GGUF file; "
                f"{what} takes a safetensors file in transformers' names for it."
            )
        if not encoders.same_architecture(meta_model, checkpoint.architecture):
            raise ModelError(
                f"{what} {checkpoint.source} is {what_it_is(checkpoint)}, not the {class_name} of {model}; "
                f"use a GGUF file of this text encoder ({meta_model.config.model_type})."
            )
        names = encoders.gguf_names(meta_model)
        given = {names.get(n, n): shape for n, (shape, _) in checkpoint.tensors.items() if not encoders.skipped(n)}
    else:
        given = {name: tuple(tensor.shape) for name, tensor in _meta_tensors(checkpoint, drop_scales=True).items()}
    # A tied copy (UMT5's encoder.embed_tokens is its `shared`) counts as the weight it copies.
    canonical = encoders.canonical(meta_model)
    given = {canonical.get(name, name): shape for name, shape in given.items()}
    _compare(checkpoint, given, encoders.weights(meta_model), class_name, what, model)


def _check_quantized(checkpoint: Checkpoint, mapped: dict[str, Any], meta_model: Any, what: str) -> None:
    """diffusers' GGUF loader dequantizes the weights of linear layers only; any other tensor
    stored quantized would enter the model as raw blocks (a shape error mid-run)."""
    import torch

    linear = {f"{name}.weight" for name, module in meta_model.named_modules() if isinstance(module, torch.nn.Linear)}
    odd = sorted(name for name, tensor in mapped.items() if tensor.dtype == torch.uint8 and name not in linear)
    if odd:
        raise ModelError(
            f"{what} {checkpoint.source} stores {odd[0]} quantized ({len(odd)} such tensors), and diffusers "
            "dequantizes only linear-layer weights; use a file converted for diffusers or ComfyUI-GGUF."
        )


def _compare(
    checkpoint: Checkpoint,
    mapped: dict[str, tuple[int, ...]],
    expected: dict[str, tuple[int, ...]],
    class_name: str,
    what: str,
    model: str,
) -> None:
    extra = sorted(set(mapped) - set(expected))
    missing = sorted(set(expected) - set(mapped))
    if extra and len(extra) >= len(mapped) // 2:
        raise ModelError(
            f"{what} {checkpoint.source} is {what_it_is(checkpoint)}, not the {class_name} of {model}: "
            f"{len(extra)} of its {len(mapped)} tensors have no place in it (e.g. {extra[0]}); "
            "use a file made for this model, or the preset of its family."
        )
    if extra:
        raise ModelError(
            f"{what} {checkpoint.source} holds tensors with no place in {model}'s {class_name} ({len(extra)} of "
            f"{len(mapped)}, e.g. {extra[0]}); vidgen does not load part of a file. Is it a variant of this model?"
        )
    if missing:
        raise ModelError(
            f"{what} {checkpoint.source} lacks {len(missing)} of the {len(expected)} weights of {model}'s "
            f"{class_name} (e.g. {missing[0]}); is it the whole file, made for this model?"
        )
    wrong = [name for name in sorted(mapped) if name in expected and tuple(mapped[name]) != tuple(expected[name])]
    if wrong:
        # A matrix shows the model's width best (a norm's length says less).
        name = next((n for n in wrong if len(mapped[n]) == 2), wrong[0])
        given = "x".join(map(str, mapped[name]))
        wants = "x".join(map(str, expected[name]))
        raise ModelError(
            f"{what} {checkpoint.source} is a model of another size: {name} is {given} in the file and {wants} "
            f"in {model}'s {class_name} ({len(wrong)} tensors differ); use the file of the same model size."
        )


# -- loading ------------------------------------------------------------------------------


def dequantized(checkpoint: Checkpoint, dtype: Any) -> dict[str, Any]:
    """A scaled fp8 file's state dict with every scale multiplied into its weight, in `dtype`,
    and the scale tensors and markers dropped: what diffusers would otherwise load as unscaled
    fp8 values (its loader drops the scales with a log line, and the output is wrong)."""
    import torch
    from safetensors import safe_open

    state: dict[str, Any] = {}
    scale_keys = set(checkpoint.scales.values())
    with safe_open(str(checkpoint.path), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            if name in scale_keys or _unused(name):
                continue
            tensor = handle.get_tensor(name)
            scale_key = checkpoint.scales.get(name)
            if scale_key is not None:
                scale = handle.get_tensor(scale_key).to(torch.float32)
                if scale.numel() > 1 and tensor.ndim >= 1 and scale.numel() == tensor.shape[0]:
                    scale = scale.reshape(-1, *([1] * (tensor.ndim - 1)))  # one scale per output row
                tensor = (tensor.to(torch.float32) * scale).to(dtype)
            elif tensor.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                tensor = tensor.to(dtype)
            state[name] = tensor
    return state


def load(checkpoint: Checkpoint, class_name: str, config_folder: Path, dtype: Any, library: str = "diffusers") -> Any:
    """The model from the file, the way diffusers documents it: from_single_file with the base
    model's config, GGUFQuantizationConfig(compute_dtype=dtype) for GGUF; a scaled fp8 file is
    dequantized first (see `dequantized`). A transformers text encoder loads as
    `encoders.load` says (GGUF files dequantized whole)."""
    import diffusers

    if library == "transformers":
        from vidgen.models import encoders

        gguf = checkpoint.format == "gguf"
        state = None if gguf else dequantized(checkpoint, dtype)
        return encoders.load(checkpoint.path, gguf, class_name, config_folder, dtype, state)
    cls = getattr(diffusers, class_name)
    kwargs: dict[str, Any] = {"config": str(config_folder), "torch_dtype": dtype}
    if checkpoint.format == "gguf":
        kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    source: Any = dequantized(checkpoint, dtype) if checkpoint.scaled else str(checkpoint.path)
    return cls.from_single_file(source, **kwargs)


def stays_quantized(component: str) -> bool:
    """Whether a component's GGUF weights stay quantized once loaded: diffusers keeps a
    denoiser's in their blocks and dequantizes each layer as it runs; transformers dequantizes
    a text encoder's whole as it loads (the file saves download and disk, not memory)."""
    return not component.startswith("text_encoder")


def formats(component: str) -> tuple[str, ...]:
    """The kinds of file a component's flag takes, as `vidgen models` lists them."""
    if stays_quantized(component):
        return ("GGUF", "safetensors", "scaled fp8")
    return ("GGUF dequantized on load", "safetensors", "scaled fp8")


def dequantize_bytes(checkpoint: Checkpoint, dtype_bytes: float) -> float:
    """Working memory of running a GGUF model: diffusers dequantizes each quantized weight to
    the compute dtype as its layer runs, so the largest one is held twice at a time at most."""
    if checkpoint.format != "gguf":
        return 0.0
    sizes = [_numel(shape) for shape, kind in checkpoint.tensors.values() if kind not in GGUF_FLOATS]
    return 2.0 * max(sizes, default=0) * dtype_bytes


# Bits a weight of each GGUF type takes, blocks' scales included (llama.cpp's block sizes).
GGUF_BITS = {
    **{"Q2_K": 2.625, "Q3_K": 3.4375, "Q4_0": 4.5, "Q4_1": 5.0, "Q4_K": 4.5, "Q5_0": 5.5, "Q5_1": 6.0},
    **{"Q5_K": 5.5, "Q6_K": 6.5625, "Q8_0": 8.5, "BF16": 16.0, "F16": 16.0, "F32": 32.0},
}
# A K-quant file named _S/_M/_L keeps more layers in larger types: the published Q4_K_M files of
# Wan 2.1/2.2 14B are 9.7-10.1 GB (5.4-5.6 bits a weight), HunyuanVideo's 7.73 GB (4.8).
_MIX = {"S": 0.2, "M": 0.8, "L": 1.2}


def bits_from_name(source: str) -> float | None:
    """Bits a weight of a GGUF file not on disk yet, from the quant type its name gives
    (wan2.1-t2v-14b-Q4_K_M.gguf: Q4_K, mixed); None for other files or names without one.
    Within about 10 % of the published files' sizes."""
    if not source.lower().endswith(".gguf"):
        return None
    pattern = r"(?<![A-Za-z0-9])(Q\d_K|Q\d_\d|BF16|F16|F32)(?:_([SML]))?(?![A-Za-z0-9])"
    found = re.search(pattern, Path(source).name, re.I)
    if not found:
        return None
    return GGUF_BITS[found.group(1).upper()] + _MIX.get((found.group(2) or "").upper(), 0.0)


def parameters(checkpoint: Checkpoint) -> int:
    """The model parameters the file holds (scales and markers are not parameters)."""
    scales = set(checkpoint.scales.values())
    return sum(
        _numel(shape) for name, (shape, _) in checkpoint.tensors.items() if name not in scales and not _unused(name)
    )


def resident_bytes(checkpoint: Checkpoint, dtype_bytes: float) -> float:
    """Bytes the loaded model holds: a GGUF file's own (its weights stay quantized), any other
    file's parameters in the run's dtype (safetensors and scaled fp8 load as full weights)."""
    if checkpoint.format == "gguf":
        return float(checkpoint.data_bytes)
    return parameters(checkpoint) * dtype_bytes


# -- a run's files ---------------------------------------------------------------------------


@dataclass
class Planned:
    """A component of the run that comes from one file, checked against the model it goes into."""

    component: str  # transformer, transformer_2, text_encoder
    checkpoint: Checkpoint
    class_name: str
    config_folder: Path
    library: str = "diffusers"  # the class's: diffusers, or transformers for a text encoder


def flag(component: str) -> str:
    """The command-line flag of a component file: --transformer, --transformer-2, --text-encoder."""
    return "--" + component.replace("_", "-")


def requested(cfg: Any, family: Any) -> dict[str, str]:
    """component -> the file typed for it (--transformer FILE), for the components the family
    takes from one file."""
    return {name: source for name in family.loading.files if (source := getattr(cfg.model, name, None))}


def read_requested(cfg: Any, family: Any, download: bool) -> dict[str, Checkpoint]:
    """The headers of the run's component files; wrong or unsafe files fail here, before any
    weights load (`download`: fetch REPO:PATH files not yet in the cache)."""
    if requested(cfg, family):
        from vidgen.core.libs import quiet

        quiet()  # reading a GGUF imports diffusers' quantizers (and torchao, where installed)
    found = {
        name: read(source, flag(name), cfg.model.allow_pickle, download)
        for name, source in requested(cfg, family).items()
    }
    return {name: checkpoint for name, checkpoint in found.items() if checkpoint is not None}


def check_options(cfg: Any, files: dict[str, Checkpoint]) -> None:
    """Optimizations that would act on a file's weights a second time are refused."""
    from vidgen.core.errors import ConfigError

    for name, checkpoint in files.items():
        if cfg.optimization.quantize:
            raise ConfigError(
                f"--quantize quantizes the model from its full weights, and {flag(name)} brings its own "
                f"({checkpoint.quant}); drop --quantize, or use a GGUF file of the precision you want."
            )
        # fp8 storage acts on the denoisers, whose GGUF weights stay quantized.
        if cfg.optimization.fp8_storage and checkpoint.format == "gguf" and stays_quantized(name):
            raise ConfigError(
                f"--fp8-storage stores full weights in fp8, and {flag(name)} is already quantized "
                f"({checkpoint.quant}); drop --fp8-storage."
            )


def plan(
    cfg: Any, read_files: dict[str, Checkpoint], kind: str, where: str, model_id: str, download: bool = True
) -> list[Planned]:
    """Check each file against the component it replaces in the model at (kind, where): the
    class and config come from the model's own folder, so a file of another model or size is
    refused before anything loads. Without `download` a Hub model's configs must be cached
    (else nothing is checked yet: loading checks it)."""
    from vidgen.models import skeleton, tiny

    if not read_files:
        return []
    if kind == "file":
        raise ModelError(
            f"{flag(next(iter(read_files)))} replaces a component of a diffusers model; --model is a single file here."
        )
    if kind == "tiny" and where.startswith(tiny.PREFIX):
        where = str(tiny.ensure(where.removeprefix(tiny.PREFIX)))  # vidgen's own, built in seconds
    folder = skeleton.pipeline_folder(where, kind, cfg.model.revision)
    if folder is None and not download:
        return []
    folder = folder or _download_index(where, cfg.model.revision)
    planned = []
    for name, checkpoint in read_files.items():
        class_name = skeleton.component_class(folder, name)
        if class_name is None:
            one = "; this model has one denoiser, so pass --transformer only" if name == "transformer_2" else ""
            raise ModelError(f"{flag(name)}: {model_id} has no {name}{one}.")
        config_folder = skeleton.config_folder(where, kind, name, cfg.model.revision)
        if config_folder is None and not download:
            continue
        config_folder = config_folder or _download_config(where, name, cfg.model.revision)
        library = skeleton.component_library(folder, name) or "diffusers"
        if library == "transformers":
            meta = skeleton.meta_encoder(class_name, config_folder)
            check_encoder(checkpoint, class_name, meta, flag(name), model_id)
        else:
            check(checkpoint, class_name, skeleton.meta_model(class_name, config_folder), flag(name), model_id)
        planned.append(Planned(name, checkpoint, class_name, config_folder, library))
    return planned


def _download_index(repo: str, revision: str | None) -> Path:
    """A Hub model's model_index.json (a few hundred bytes), to learn its component classes."""
    return _download(repo, "model_index.json", revision).parent


def _download_config(repo: str, component: str, revision: str | None) -> Path:
    return _download(repo, f"{component}/config.json", revision).parent


def _download(repo: str, filename: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, revision=revision))
    except Exception as exc:  # offline and not cached, gated, missing
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot read {repo}'s {filename}, needed to check the component files: {first}") from None
