"""Per-frame super-resolution: Real-ESRGAN's two networks, written in vidgen, loading the
published weights under their own key names.

- SRVGGNetCompact (`realesr-animevideov3`, `realesr-general-x4v3`): a plain conv stack with
  PReLU, pixel-shuffled, added to the nearest-upscaled frame. Fast; made for video.
- RRDBNet (`RealESRGAN_x4plus`, `RealESRGAN_x2plus`, ESRGAN-style community models in the new
  key layout): 23 residual-in-residual dense blocks; x2 and x1 models unshuffle the frame first.

Real-ESRGAN is BSD-3-Clause (github.com/xinntao/Real-ESRGAN); its weights are GitHub release
assets. The architecture and its scale come from the file's tensors; a file that is neither is
refused by name. Frames are processed in tiles (`tile` input pixels a side, `overlap` more on
every side, cropped off again) so a 1080p frame fits a small memory budget; with an overlap
wider than the network's reach the tiles join without a seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vidgen.core.errors import ModelError

WHAT = "--upscale"


@dataclass(frozen=True)
class Arch:
    """A network and its widths, as read from a file."""

    kind: str  # srvgg | rrdb
    scale: int
    features: int
    depth: int  # SRVGG: hidden convs; RRDB: blocks
    growth: int = 0  # RRDB: dense growth channels

    def record(self) -> dict[str, Any]:
        names = {"srvgg": "Real-ESRGAN SRVGGNetCompact", "rrdb": "Real-ESRGAN RRDBNet"}
        body = {"architecture": names[self.kind], "scale": self.scale, "features": self.features, "depth": self.depth}
        return body | ({"growth": self.growth} if self.kind == "rrdb" else {})

    @property
    def reach(self) -> int:
        """Input pixels a side that one output pixel depends on, at most (the overlap tiles need)."""
        return self.depth + 2 if self.kind == "srvgg" else 4 * self.depth * 5 + 8

    def working_bytes(self, height: int, width: int) -> int:
        """One tile's float32 activations: the feature maps (three times over in RRDB's dense
        blocks, at the unshuffled size times scale**2 after its upsampling) and the output."""
        channels = self.features * (3 if self.kind == "rrdb" else 2) + 3 * self.scale**2
        return int(height * width * 4 * channels * (self.scale**2 if self.kind == "rrdb" else 1) * 2)


def expected(arch: Arch) -> dict[str, tuple[int, ...]]:
    """Every tensor of `arch`, by its published name."""
    f = arch.features
    if arch.kind == "srvgg":
        shapes: dict[str, tuple[int, ...]] = {"body.0.weight": (f, 3, 3, 3), "body.0.bias": (f,), "body.1.weight": (f,)}
        for index in range(arch.depth):
            conv = 2 + 2 * index
            shapes[f"body.{conv}.weight"] = (f, f, 3, 3)
            shapes[f"body.{conv}.bias"] = (f,)
            shapes[f"body.{conv + 1}.weight"] = (f,)
        last = 2 + 2 * arch.depth
        shapes[f"body.{last}.weight"] = (3 * arch.scale**2, f, 3, 3)
        shapes[f"body.{last}.bias"] = (3 * arch.scale**2,)
        return shapes
    g = arch.growth
    into = 3 * {4: 1, 2: 4, 1: 16}[arch.scale]
    shapes = {"conv_first.weight": (f, into, 3, 3)}
    for block in range(arch.depth):
        for rdb in (1, 2, 3):
            for conv in range(1, 6):
                prefix = f"body.{block}.rdb{rdb}.conv{conv}"
                out = f if conv == 5 else g
                shapes[f"{prefix}.weight"] = (out, f + (conv - 1) * g, 3, 3)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        shapes[f"{name}.weight"] = (f, f, 3, 3)
    shapes["conv_last.weight"] = (3, f, 3, 3)
    biases = {name.replace(".weight", ".bias"): (shape[0],) for name, shape in shapes.items()}
    return shapes | biases


def recognises(tensors: dict[str, tuple[int, ...]]) -> bool:
    """Whether the file is laid out as one of the two networks (then checked by `architecture`);
    anything else is spandrel's to read (vidgen/models/spandrel_sr.py)."""
    srvgg = "body.0.weight" in tensors and len(tensors["body.0.weight"]) == 4 and "body.1.weight" in tensors
    return ("conv_first.weight" in tensors and "body.0.rdb1.conv1.weight" in tensors) or srvgg


def architecture(tensors: dict[str, tuple[int, ...]], source: str, what: str = WHAT) -> Arch:
    """The Arch of a file's tensors (name -> shape), checked tensor by tensor; `what` is the
    option its messages name."""
    arch: Arch | None = None
    if "conv_first.weight" in tensors and "body.0.rdb1.conv1.weight" in tensors:
        features, into = int(tensors["conv_first.weight"][0]), int(tensors["conv_first.weight"][1])
        scale = {3: 4, 12: 2, 48: 1}.get(into)
        depth = 0
        while f"body.{depth}.rdb1.conv1.weight" in tensors:
            depth += 1
        if scale is not None:
            growth = int(tensors["body.0.rdb1.conv1.weight"][0])
            arch = Arch("rrdb", scale, features, depth, growth)
    elif "body.0.weight" in tensors and len(tensors["body.0.weight"]) == 4:
        last = max(int(name.split(".")[1]) for name in tensors if name.startswith("body.") and name.count(".") == 2)
        out = int(tensors[f"body.{last}.weight"][0]) if f"body.{last}.weight" in tensors else 0
        scale = round((out / 3) ** 0.5)
        if last % 2 == 0 and 3 * scale * scale == out and scale >= 1:
            arch = Arch("srvgg", scale, int(tensors["body.0.weight"][0]), (last - 2) // 2)
    if arch is None:
        raise ModelError(
            f"{what} {source} is not weights of a network vidgen upscales with (Real-ESRGAN's SRVGGNetCompact or "
            "RRDBNet, e.g. realesr-animevideov3 or RealESRGAN_x4plus); convert or pick such a file."
        )
    want = expected(arch)
    for name, shape in want.items():
        if tuple(tensors.get(name, ())) != shape:
            found = tensors.get(name)
            detail = f"has {name} shaped {list(found)}, not {list(shape)}" if found else f"lacks {name}"
            raise ModelError(f"{what} {source} {detail}; it is not whole {arch.record()['architecture']} weights.")
    extra = sorted(set(tensors) - set(want))
    if extra:
        raise ModelError(f"{what} {source} has tensors the network does not ({extra[0]}, ...); it is another model.")
    return arch


def _classes() -> dict[str, Any]:
    """The torch modules, defined when first needed so importing this file needs no torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class SRVGG(nn.Module):
        def __init__(self, arch: Arch) -> None:
            super().__init__()
            f = arch.features
            layers: list[Any] = [nn.Conv2d(3, f, 3, 1, 1), nn.PReLU(num_parameters=f)]
            for _ in range(arch.depth):
                layers += [nn.Conv2d(f, f, 3, 1, 1), nn.PReLU(num_parameters=f)]
            layers.append(nn.Conv2d(f, 3 * arch.scale**2, 3, 1, 1))
            self.body = nn.Sequential(*layers)
            self.scale = arch.scale

        def forward(self, x: Any) -> Any:
            out = F.pixel_shuffle(self.body(x), self.scale)
            return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")

    class Dense(nn.Module):
        def __init__(self, f: int, g: int) -> None:
            super().__init__()
            for conv in range(1, 6):
                self.add_module(f"conv{conv}", nn.Conv2d(f + (conv - 1) * g, f if conv == 5 else g, 3, 1, 1))

        def forward(self, x: Any) -> Any:
            found = [x]
            for conv in range(1, 5):
                found.append(F.leaky_relu(getattr(self, f"conv{conv}")(torch.cat(found, 1)), 0.2))
            return self.conv5(torch.cat(found, 1)) * 0.2 + x

    class RRDB(nn.Module):
        def __init__(self, f: int, g: int) -> None:
            super().__init__()
            self.rdb1, self.rdb2, self.rdb3 = Dense(f, g), Dense(f, g), Dense(f, g)

        def forward(self, x: Any) -> Any:
            return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x

    class RRDBNet(nn.Module):
        def __init__(self, arch: Arch) -> None:
            super().__init__()
            f = arch.features
            self.scale = arch.scale
            self.conv_first = nn.Conv2d(3 * {4: 1, 2: 4, 1: 16}[arch.scale], f, 3, 1, 1)
            self.body = nn.Sequential(*(RRDB(f, arch.growth) for _ in range(arch.depth)))
            self.conv_body = nn.Conv2d(f, f, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(f, f, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(f, f, 3, 1, 1)
            self.conv_hr = nn.Conv2d(f, f, 3, 1, 1)
            self.conv_last = nn.Conv2d(f, 3, 3, 1, 1)

        def forward(self, x: Any) -> Any:
            if self.scale < 4:  # x2 and x1 models see the frame unshuffled to 1/4 or 1/16 of its size
                x = F.pixel_unshuffle(x, 4 // self.scale)
            feat = self.conv_first(x)
            feat = feat + self.conv_body(self.body(feat))
            feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
            feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
            return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    return {"srvgg": SRVGG, "rrdb": RRDBNet}


def build(arch: Arch, state: dict[str, Any] | None = None) -> Any:
    """The network of `arch` with `state` loaded strictly, in eval mode."""
    model = _classes()[arch.kind](arch)
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model.eval()


def random_weights(arch: Arch, seed: int = 0) -> dict[str, Any]:
    """Random tensors of `arch` under the published names (tests, benchmarks)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in expected(arch).items():
        if len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=generator) * (1 / fan_in) ** 0.5
        elif arch.kind == "srvgg" and name != "body.0.bias" and not name.endswith(".bias"):
            state[name] = torch.full(shape, 0.25)  # PReLU slopes
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.01
    return state


TINY = Arch("srvgg", scale=2, features=8, depth=2)
TINY_RRDB = Arch("rrdb", scale=2, features=8, depth=1, growth=4)


def upscale_frame(model: Any, arch: Arch, frame: Any, device: str, tile: int = 0, overlap: int = 16) -> Any:
    """One uint8 frame (H, W, 3) upscaled by the network, as uint8; `tile` > 0 runs it in tiles
    of that many input pixels a side (plus `overlap` on each side, cropped off)."""
    import numpy as np
    import torch

    height, width = frame.shape[:2]
    # x2 and x1 RRDB models unshuffle: every tile side must divide by 4 // scale.
    unit = 4 // arch.scale if arch.kind == "rrdb" else 1
    if height % unit or width % unit:
        raise ModelError(f"{WHAT}: this x{arch.scale} model needs frame sides that divide by {unit}.")
    image = torch.from_numpy(np.ascontiguousarray(frame)).to(device).permute(2, 0, 1)[None].float() / 255.0
    s = arch.scale
    with torch.inference_mode():
        if tile <= 0 or (height <= tile and width <= tile):
            out = model(image)
        else:
            tile = max(unit, tile - tile % unit)
            overlap = overlap - overlap % unit
            out = torch.zeros((1, 3, height * s, width * s), device=device)
            for top in range(0, height, tile):
                for left in range(0, width, tile):
                    bottom, right = min(top + tile, height), min(left + tile, width)
                    y0, x0 = max(0, top - overlap), max(0, left - overlap)
                    y1, x1 = min(height, bottom + overlap), min(width, right + overlap)
                    part = model(image[:, :, y0:y1, x0:x1])
                    out[:, :, top * s : bottom * s, left * s : right * s] = part[
                        :, :, (top - y0) * s : (bottom - y0) * s, (left - x0) * s : (right - x0) * s
                    ]
    return (out[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
