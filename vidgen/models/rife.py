"""RIFE frame interpolation: vidgen's own implementation of Practical-RIFE's IFNet (v4.25/v4.26).

The network is the one published at github.com/hzwer/Practical-RIFE (MIT licence, weights
`flownet.pkl` under the same licence), written here from its description so that it loads the
published weights under their own key names, strictly: a file of another architecture is
refused by name instead of half-loading. No RIFE package on PyPI was fit to depend on (see the
README's "Finishing a clip"). The widths (16-channel head, blocks of 192/128/96/64/32) are read
from the file, so vidgen's tiny random-weight stand-in is the same network, narrower.

A middle frame at time t in (0, 1) between two frames comes from five flow blocks, coarse to
fine (1/16 of the size up to full), each refining the flows of the last; the two frames warped
by their flows are blended by a learned mask. Frames are padded to a multiple of 128 and cropped
back, as the authors' script does. The network is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vidgen.core.errors import ModelError

WHAT = "--interpolate-model"
PAD = 128  # the authors' padding at scale 1: the coarsest block sees 1/64 of the frame


@dataclass(frozen=True)
class Arch:
    """An IFNet's widths: the feature head's channels and each flow block's."""

    head: int
    blocks: tuple[int, ...]

    def record(self) -> dict[str, Any]:
        return {"architecture": "RIFE IFNet (Practical-RIFE 4.25/4.26)", "head": self.head, "blocks": list(self.blocks)}


def expected(arch: Arch) -> dict[str, tuple[int, ...]]:
    """Every tensor an IFNet of `arch` has, by its published name."""
    h = arch.head
    shapes: dict[str, tuple[int, ...]] = {
        "encode.cnn0.weight": (h, 3, 3, 3),
        "encode.cnn1.weight": (h, h, 3, 3),
        "encode.cnn2.weight": (h, h, 3, 3),
        "encode.cnn3.weight": (h, h, 4, 4),  # a transposed conv: (in, out, k, k)
    }
    for name in ("cnn0", "cnn1", "cnn2", "cnn3"):
        shapes[f"encode.{name}.bias"] = (h,)
    for index, width in enumerate(arch.blocks):
        # Both frames (3 + 3), both features (2h) and the time; later blocks also take the
        # warped frames' flow (4), mask (1) and the last block's features (8).
        into = 7 + 2 * h if index == 0 else 20 + 2 * h
        prefix = f"block{index}"
        shapes[f"{prefix}.conv0.0.0.weight"] = (width // 2, into, 3, 3)
        shapes[f"{prefix}.conv0.0.0.bias"] = (width // 2,)
        shapes[f"{prefix}.conv0.1.0.weight"] = (width, width // 2, 3, 3)
        shapes[f"{prefix}.conv0.1.0.bias"] = (width,)
        for res in range(8):
            shapes[f"{prefix}.convblock.{res}.conv.weight"] = (width, width, 3, 3)
            shapes[f"{prefix}.convblock.{res}.conv.bias"] = (width,)
            shapes[f"{prefix}.convblock.{res}.beta"] = (1, width, 1, 1)
        shapes[f"{prefix}.lastconv.0.weight"] = (width, 52, 4, 4)
        shapes[f"{prefix}.lastconv.0.bias"] = (52,)
    return shapes


def architecture(tensors: dict[str, tuple[int, ...]], source: str, what: str = WHAT) -> Arch:
    """The Arch of a file's tensors (name -> shape), checked against every tensor IFNet has: a
    missing, extra or misshapen tensor is a ModelError naming it (and `what`, the option)."""
    head = tensors.get("encode.cnn0.weight")
    blocks = []
    while (conv := tensors.get(f"block{len(blocks)}.conv0.1.0.weight")) is not None:
        blocks.append(int(conv[0]))
    if head is None or len(head) != 4 or not blocks:
        raise ModelError(
            f"{what} {source} is not RIFE IFNet weights (no encode.cnn0 / block0 tensors); use Practical-RIFE "
            "4.25 or 4.26 flownet weights."
        )
    arch = Arch(int(head[0]), tuple(blocks))
    want = expected(arch)
    for name, shape in want.items():
        if tuple(tensors.get(name, ())) != shape:
            found = tensors.get(name)
            detail = f"has {name} shaped {list(found)}, not {list(shape)}" if found else f"lacks {name}"
            raise ModelError(f"{what} {source} {detail}; it is not Practical-RIFE 4.25/4.26 IFNet weights.")
    extra = sorted(set(tensors) - set(want))
    if extra:
        raise ModelError(
            f"{what} {source} has {len(extra)} tensors IFNet 4.25/4.26 does not ({extra[0]}, ...); it is another "
            "RIFE version or another model."
        )
    return arch


def _parts() -> tuple[Any, Any]:
    """The feature head and the flow block, defined when first needed (no torch at import)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def conv(into: int, out: int, stride: int) -> Any:
        return nn.Sequential(nn.Conv2d(into, out, 3, stride, 1), nn.LeakyReLU(0.2, True))

    class Head(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.cnn0 = nn.Conv2d(3, width, 3, 2, 1)
            self.cnn1 = nn.Conv2d(width, width, 3, 1, 1)
            self.cnn2 = nn.Conv2d(width, width, 3, 1, 1)
            self.cnn3 = nn.ConvTranspose2d(width, width, 4, 2, 1)
            self.relu = nn.LeakyReLU(0.2, True)

        def forward(self, x: Any) -> Any:
            x = self.relu(self.cnn0(x))
            x = self.relu(self.cnn1(x))
            x = self.relu(self.cnn2(x))
            return self.cnn3(x)

    class ResConv(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(width, width, 3, 1, 1)
            self.beta = nn.Parameter(torch.ones((1, width, 1, 1)))
            self.relu = nn.LeakyReLU(0.2, True)

        def forward(self, x: Any) -> Any:
            return self.relu(self.conv(x) * self.beta + x)

    class Block(nn.Module):
        def __init__(self, into: int, width: int) -> None:
            super().__init__()
            self.conv0 = nn.Sequential(conv(into, width // 2, 2), conv(width // 2, width, 2))
            self.convblock = nn.Sequential(*(ResConv(width) for _ in range(8)))
            # 4 flow + 1 mask + 8 feature channels, at twice the resolution (4 * 13 shuffled).
            self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 52, 4, 2, 1), nn.PixelShuffle(2))

        def forward(self, x: Any, flow: Any, scale: float) -> tuple[Any, Any, Any]:
            x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
            if flow is not None:
                flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
                x = torch.cat((x, flow), 1)
            out = self.lastconv(self.convblock(self.conv0(x)))
            out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
            return out[:, :4] * scale, out[:, 4:5], out[:, 5:]

    return Head, Block


def _warp(image: Any, flow: Any) -> Any:
    """`image` sampled at each pixel moved by `flow` (pixels), borders repeated."""
    import torch
    from torch.nn import functional as F

    n, _, height, width = flow.shape
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device).view(1, 1, 1, width).expand(n, -1, height, -1)
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device).view(1, 1, height, 1).expand(n, -1, -1, width)
    grid = torch.cat([xs, ys], 1).to(flow.dtype)
    scaled = torch.cat(
        [flow[:, 0:1] / ((image.shape[3] - 1.0) / 2.0), flow[:, 1:2] / ((image.shape[2] - 1.0) / 2.0)], 1
    )
    grid = (grid + scaled).permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _classes() -> tuple[Any, Any]:
    """IFNet, defined when first needed so importing this file needs no torch."""
    import torch
    from torch import nn

    Head, Block = _parts()
    warp = _warp

    class IFNet(nn.Module):
        def __init__(self, arch: Arch) -> None:
            super().__init__()
            self.encode = Head(arch.head)
            self.count = len(arch.blocks)
            for index, width in enumerate(arch.blocks):
                into = 7 + 2 * arch.head if index == 0 else 20 + 2 * arch.head
                self.add_module(f"block{index}", Block(into, width))

        def forward(self, img0: Any, img1: Any, timestep: float) -> Any:
            """The frame at `timestep` between img0 and img1 (N, 3, H, W in [0, 1], H and W
            multiples of PAD)."""
            time = torch.full_like(img0[:, :1], timestep)
            f0, f1 = self.encode(img0), self.encode(img1)
            flow = mask = feat = None
            warped0, warped1 = img0, img1
            for index in range(self.count):
                block = getattr(self, f"block{index}")
                scale = 2 ** (self.count - 1 - index)
                if flow is None:
                    flow, mask, feat = block(torch.cat((img0, img1, f0, f1, time), 1), None, scale)
                else:
                    wf0, wf1 = warp(f0, flow[:, :2]), warp(f1, flow[:, 2:4])
                    inputs = torch.cat((warped0, warped1, wf0, wf1, time, mask, feat), 1)
                    delta, mask, feat = block(inputs, flow, scale)
                    flow = flow + delta
                warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
            weight = torch.sigmoid(mask)
            return warped0 * weight + warped1 * (1 - weight)

    return IFNet, warp


def build(arch: Arch, state: dict[str, Any] | None = None) -> Any:
    """An IFNet of `arch`, with `state` (published key names) loaded strictly, in eval mode."""
    ifnet, _ = _classes()
    model = ifnet(arch)
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model.eval()


def random_weights(arch: Arch, seed: int = 0) -> dict[str, Any]:
    """Random IFNet tensors of `arch` under the published names: the stand-in for real RIFE
    weights where none can be downloaded (tests, benchmarks, the tiny quick start)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in expected(arch).items():
        if name.endswith(".beta"):
            state[name] = torch.ones(shape)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=generator) * (1 / fan_in) ** 0.5
        else:
            state[name] = torch.zeros(shape)
    return state


TINY = Arch(head=4, blocks=(16, 16, 8, 8, 8))


def interpolate_pair(model: Any, first: Any, second: Any, times: list[float], device: str) -> list[Any]:
    """The frames at `times` (each in (0, 1)) between two uint8 frames (H, W, 3), as uint8: the
    frames are padded to multiples of PAD, run in float32 and cropped back."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    height, width = first.shape[:2]
    pad_h, pad_w = -height % PAD, -width % PAD

    def tensor(frame: Any) -> Any:
        value = torch.from_numpy(np.ascontiguousarray(frame)).to(device).permute(2, 0, 1)[None].float() / 255.0
        return F.pad(value, (0, pad_w, 0, pad_h))

    img0, img1 = tensor(first), tensor(second)
    made = []
    with torch.inference_mode():
        for time in times:
            middle = model(img0, img1, float(time))[0, :, :height, :width]
            made.append((middle.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    return made


def times(count: int, source_fps: float, target_fps: float) -> list[tuple[int, float]]:
    """For each output frame of a clip of `count` frames retimed from source_fps to target_fps
    (same duration, first frame kept): (the source frame it starts from, how far towards the
    next one it lies, 0 for a source frame kept as it is)."""
    from fractions import Fraction

    step = Fraction(source_fps).limit_denominator(10_000) / Fraction(target_fps).limit_denominator(10_000)
    out = []
    position = Fraction(0)
    while position <= count - 1:
        index = int(position)
        out.append((index, float(position - index)))
        position += step
    return out
