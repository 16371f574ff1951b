"""The decoder of TAEHV, the Tiny AutoEncoder for Hunyuan Video (and Wan, CogVideoX, LTX-2...),
for live previews: vidgen's own implementation of the architecture published by Ollin Boer Bohan
at github.com/madebyollin/taehv (taehv.py, MIT licence), loading its published weights.

TAEHV decodes exactly the latents the denoiser works on (no latents_mean/std or scaling factor),
in (batch, time, channels, height, width) order, to RGB in [0, 1]. Its decoder is one
`nn.Sequential` whose indices are the state dict's key names (`decoder.1.weight`, ...):

    Clamp, conv(C, n0), ReLU, 3 x MemBlock(n0), Upsample x2, TGrow(n0), conv(n0, n1),
    3 x MemBlock(n1), Upsample x2, TGrow(n1), conv(n1, n2), 3 x MemBlock(n2), Upsample x2,
    TGrow(n2), conv(n2, n3), ReLU, conv(n3, 3 * patch^2), then a pixel shuffle by `patch`.

The widths n0..n3, the latent channels C, the patch and each TGrow's temporal stride are read
from the tensor shapes, so one class loads every published file (taew2_1: 16 channels; taew2_2:
48 and patch 2; taehv1_5: 32 and patch 2; taeltx_2: 128 and patch 4). The "super" variant
(taew2_2_super, taehv1_5_super) has other blocks and is refused by name: it is meant as a final
decoder, not a preview. A file whose keys or shapes are not this architecture is refused before
any weight is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vidgen.core.errors import ModelError

# Indices of the decoder's layers, as the published state dicts name them.
_MEM = ((3, 4, 5), (9, 10, 11), (15, 16, 17))  # MemBlocks of each stage
_GROW = (7, 13, 19)  # TGrow after each stage's upsampling
_INTO = (1, 8, 14, 20)  # the convolution into each stage (and into the last one)
_OUT = 22  # the convolution to RGB patches
_BIASED = (1, _OUT)  # the other convolutions between stages have no bias


@dataclass(frozen=True)
class Arch:
    """What a TAEHV decoder's weights say about it."""

    latent_channels: int
    widths: tuple[int, int, int, int]
    strides: tuple[int, int, int]  # temporal upscaling of each TGrow (1 or 2)
    patch: int

    @property
    def temporal(self) -> int:
        """Frames each latent frame decodes to (4 for Wan and HunyuanVideo, 8 for LTX-2)."""
        return self.strides[0] * self.strides[1] * self.strides[2]


def expected(arch: Arch) -> dict[str, tuple[int, ...]]:
    """Every decoder tensor of `arch`: key -> shape."""
    n = arch.widths
    shapes: dict[str, tuple[int, ...]] = {
        "decoder.1.weight": (n[0], arch.latent_channels, 3, 3),
        "decoder.1.bias": (n[0],),
    }
    for stage, blocks in enumerate(_MEM):
        width = n[stage]
        for index in blocks:
            shapes[f"decoder.{index}.conv.0.weight"] = (width, 2 * width, 3, 3)
            for conv in (0, 2, 4):
                if conv:
                    shapes[f"decoder.{index}.conv.{conv}.weight"] = (width, width, 3, 3)
                shapes[f"decoder.{index}.conv.{conv}.bias"] = (width,)
        shapes[f"decoder.{_GROW[stage]}.conv.weight"] = (width * arch.strides[stage], width, 1, 1)
        shapes[f"decoder.{_INTO[stage + 1]}.weight"] = (n[stage + 1], width, 3, 3)
    shapes[f"decoder.{_OUT}.weight"] = (3 * arch.patch**2, n[3], 3, 3)
    shapes[f"decoder.{_OUT}.bias"] = (3 * arch.patch**2,)
    return shapes


def architecture(tensors: dict[str, tuple[tuple[int, ...], str]], source: str) -> Arch:
    """The decoder `tensors` (name -> (shape, dtype), from a file's header) describe, or a
    ModelError in one line saying why the file is not TAEHV weights."""
    what = f"--preview-decoder {source}"
    foreign = sorted(name for name in tensors if not name.startswith(("encoder.", "decoder.")))
    if foreign:
        raise ModelError(
            f"{what} is not TAEHV weights: it holds {foreign[0]}, and TAEHV has only encoder.* and decoder.* "
            "tensors; use a file from github.com/madebyollin/taehv (safetensors/taew2_1.safetensors, ...)."
        )
    if "decoder.0.weight" in tensors:
        raise ModelError(
            f"{what} is a TAEHV 'super' decoder, meant for final output; previews take the base weights "
            "(taew2_2.safetensors, taehv1_5.safetensors)."
        )
    arch = _infer(tensors, what)
    want = expected(arch)
    decoder = {name: shape for name, (shape, _) in tensors.items() if name.startswith("decoder.")}
    missing = sorted(set(want) - set(decoder))
    extra = sorted(set(decoder) - set(want))
    wrong = sorted(name for name in set(want) & set(decoder) if tuple(decoder[name]) != want[name])
    if missing or extra or wrong:
        name = (missing or extra or wrong)[0]
        why = "lacks" if missing else "has an unexpected" if extra else "has the wrong shape for"
        raise ModelError(f"{what} is not a TAEHV decoder: it {why} {name}; is it the right file, downloaded whole?")
    return arch


def _infer(tensors: dict[str, tuple[tuple[int, ...], str]], what: str) -> Arch:
    """Widths, channels, patch and strides from the shapes of the convolutions between stages."""
    try:
        into = [tuple(tensors[f"decoder.{index}.weight"][0]) for index in _INTO]
        out = tuple(tensors[f"decoder.{_OUT}.weight"][0])
        grow = [tuple(tensors[f"decoder.{index}.conv.weight"][0]) for index in _GROW]
    except KeyError as exc:
        raise ModelError(f"{what} is not a TAEHV decoder: it lacks {exc.args[0]}.") from None
    if any(len(shape) != 4 for shape in [*into, out, *grow]):
        raise ModelError(f"{what} is not a TAEHV decoder: its convolutions are not 2-D.")
    widths = tuple(shape[0] for shape in into)
    patch = round((out[0] / 3) ** 0.5)
    strides = tuple(shape[0] // max(widths[stage], 1) for stage, shape in enumerate(grow))
    if 3 * patch**2 != out[0] or any(stride not in (1, 2) for stride in strides):
        raise ModelError(f"{what} is not a TAEHV decoder: its output or TGrow layers have other shapes.")
    return Arch(int(into[0][1]), widths, strides, patch)  # type: ignore[arg-type]


def build(arch: Arch, state: dict[str, Any], upscale_time: bool) -> Any:
    """The decoder as a torch module holding `state` (the decoder.* tensors). With
    `upscale_time` False each latent frame decodes to one frame (TGrow keeps its last output
    frame, as taehv.py's patch_tgrow_layers does): the cheap preview TAEHV's README suggests."""
    import torch

    decoder = _Decoder(arch, upscale_time)
    own = {}
    for name, tensor in state.items():
        key = name.removeprefix("decoder.")
        index = int(key.split(".")[0])
        if index in _GROW and not upscale_time:
            tensor = tensor[-arch.widths[_GROW.index(index)] :]  # the last of the stride's frames
        own[key] = tensor
    with torch.no_grad():
        decoder.layers.load_state_dict(own, strict=True)
    return decoder.eval().requires_grad_(False)


def _decoder_classes() -> tuple[Any, ...]:
    """The torch modules of the architecture, made on first use (torch is imported lazily)."""
    import torch
    from torch import nn

    class Clamp(nn.Module):
        def forward(self, x: Any) -> Any:
            return torch.tanh(x / 3) * 3

    class MemBlock(nn.Module):
        """A block that sees its input and the previous frame's input (its memory)."""

        def __init__(self, width: int) -> None:
            super().__init__()
            self.conv = nn.Sequential(
                _conv(2 * width, width), nn.ReLU(), _conv(width, width), nn.ReLU(), _conv(width, width)
            )
            self.act = nn.ReLU()

        def forward(self, x: Any, past: Any) -> Any:
            return self.act(self.conv(torch.cat([x, past], 1)) + x)

    class TGrow(nn.Module):
        """Each frame becomes `stride` frames (its channels, split in order)."""

        def __init__(self, width: int, stride: int) -> None:
            super().__init__()
            self.stride = stride
            self.conv = nn.Conv2d(width, width * stride, 1, bias=False)

        def forward(self, x: Any) -> Any:
            frames, channels, height, width = x.shape
            return self.conv(x).reshape(frames * self.stride, channels, height, width)

    return Clamp, MemBlock, TGrow


def _conv(into: int, out: int, bias: bool = True) -> Any:
    from torch import nn

    return nn.Conv2d(into, out, 3, padding=1, bias=bias)


class _Decoder:
    """TAEHV's decoder: the layers, and a decode that runs a chunk of frames at a time, handing
    each MemBlock's last input on as the next chunk's memory (so memory stays bounded)."""

    def __init__(self, arch: Arch, upscale_time: bool) -> None:
        from torch import nn

        clamp, mem, grow = _decoder_classes()
        n = arch.widths
        strides = arch.strides if upscale_time else (1, 1, 1)
        layers: list[Any] = [clamp(), _conv(arch.latent_channels, n[0]), nn.ReLU()]
        for stage in range(3):
            layers += [mem(n[stage]) for _ in range(3)]
            layers += [nn.Upsample(scale_factor=2), grow(n[stage], strides[stage])]
            if stage < 2:
                layers.append(_conv(n[stage], n[stage + 1], bias=False))
        layers += [_conv(n[2], n[3], bias=False), nn.ReLU(), _conv(n[3], 3 * arch.patch**2)]
        self.layers = nn.Sequential(*layers)
        self.arch = arch
        self.trim = (arch.temporal if upscale_time else 1) - 1
        self._mem = mem

    def eval(self) -> _Decoder:
        self.layers.eval()
        return self

    def requires_grad_(self, wanted: bool) -> _Decoder:
        self.layers.requires_grad_(wanted)
        return self

    def to(self, device: Any, dtype: Any) -> _Decoder:
        self.layers.to(device=device, dtype=dtype)
        return self

    def decode(self, latents: Any, chunk: int = 4) -> Any:
        """Frames (batch, frames, 3, height, width) in [0, 1] of `latents` (batch, channels,
        frames, height, width), decoded `chunk` latent frames at a time."""
        import torch
        import torch.nn.functional as F

        param = next(self.layers.parameters())
        x = latents.to(param.device, param.dtype).permute(0, 2, 1, 3, 4)  # TAEHV's N, T, C, H, W
        memory: dict[int, Any] = {}
        out = []
        with torch.no_grad():
            for start in range(0, x.shape[1], chunk):
                out.append(self._run(x[:, start : start + chunk], memory))
        frames = torch.cat(out, 1)
        if self.arch.patch > 1:
            frames = F.pixel_shuffle(frames.flatten(0, 1), self.arch.patch).unflatten(0, frames.shape[:2])
        return frames.clamp(0, 1)[:, self.trim :]

    def _run(self, x: Any, memory: dict[int, Any]) -> Any:
        """One chunk through every layer; `memory` holds each MemBlock's input of the frame
        before the chunk (zeros before the first frame)."""
        import torch

        batch, frames = x.shape[:2]
        flat = x.reshape(batch * frames, *x.shape[2:])
        for index, layer in enumerate(self.layers):
            if isinstance(layer, self._mem):
                current = flat.reshape(batch, -1, *flat.shape[1:])
                before = memory.get(index, torch.zeros_like(current[:, :1]))
                memory[index] = current[:, -1:]
                past = torch.cat([before, current[:, :-1]], 1).reshape(flat.shape)
                flat = layer(flat, past)
            else:
                flat = layer(flat)
        return flat.reshape(batch, -1, *flat.shape[1:])


def read(source: str, allow_pickle: bool, download: bool) -> tuple[Any, Arch] | None:
    """(the file's Checkpoint, its decoder's Arch) for --preview-decoder FILE|REPO:PATH, checked
    from the header alone; None for a Hub file not yet downloaded (without `download`)."""
    from vidgen.models import checkpoints

    checkpoint = checkpoints.read(source, "--preview-decoder", allow_pickle, download)
    if checkpoint is None:
        return None
    if checkpoint.format == "gguf":
        raise ModelError(f"--preview-decoder {source} is a GGUF file; TAEHV weights are .safetensors (or .pth).")
    return checkpoint, architecture(checkpoint.tensors, source)


def load(checkpoint: Any, arch: Arch, device: str, dtype: Any) -> _Decoder:
    """The decoder of a checked file (see `read`), on `device` in `dtype`, decoding one frame
    per latent frame (previews; see `build`)."""
    import torch

    if checkpoint.format == "safetensors":
        from safetensors import safe_open

        with safe_open(str(checkpoint.path), framework="pt") as handle:
            state = {name: handle.get_tensor(name) for name in handle.keys() if name.startswith("decoder.")}  # noqa: SIM118 (not iterable)
    else:  # a pickle, allowed by --allow-pickle: tensors only (weights_only), as for every pickle
        loaded = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
        loaded = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else {}
        state = {name: tensor for name, tensor in loaded.items() if name.startswith("decoder.")}
    return build(arch, state, upscale_time=False).to(device, dtype)


def random_weights(arch: Arch, seed: int = 0) -> dict[str, Any]:
    """Random decoder tensors of `arch` under the published key names: a stand-in for real
    TAEHV weights where none can be downloaded (tests, benchmarks), as vidgen/models/tiny.py's
    models stand in for real ones. Scaled so activations stay near 1 through the layers."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in expected(arch).items():
        fan_in = max(1, shape[1] * shape[2] * shape[3]) if len(shape) == 4 else 1
        scale = (2 / fan_in) ** 0.5 if len(shape) == 4 else 0.01
        state[name] = torch.randn(shape, generator=generator) * scale
    return state
