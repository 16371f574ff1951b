"""Per-frame super-resolution through spandrel: the architectures ComfyUI and chaiNNer users load
(SwinIR, HAT, DAT, SPAN, OmniSR, old-layout ESRGAN, RealCUGAN, ... 40 in spandrel 0.4.2),
detected from the file's tensors.

Real-ESRGAN's two networks are vidgen's own (vidgen/models/upscalers.py) and need nothing more;
every other file goes to spandrel when it is installed (`pip install 'vidgen[spandrel]'`). vidgen
reads the tensors itself (safetensors, or a pickle with weights_only=True only under
--allow-pickle) and hands spandrel the state dict, so spandrel's own file loading never runs.

Only super-resolution models (spandrel's purpose "SR", x2 and up) are taken: a restoration
(x1), face or inpainting model is refused by what it is. spandrel pads a frame to the sizes its
network needs and crops the result, so any frame size runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vidgen.core.errors import ModelError

WHAT = "--upscale"
INSTALL = "pip install 'vidgen[spandrel]'"


@dataclass(frozen=True)
class Arch:
    """A spandrel network as read from a file."""

    id: str  # spandrel's architecture id: SPAN, SwinIR, HAT, ESRGAN, ...
    scale: int
    parameters: int
    tiling: str  # supported | discouraged | internal (spandrel's ModelTiling)
    version: str
    kind: str = "spandrel"

    def record(self) -> dict[str, Any]:
        return {
            "architecture": f"{self.id} (spandrel)",
            "scale": self.scale,
            "parameters": self.parameters,
            "library": f"spandrel {self.version}",
        }

    @property
    def reach(self) -> int:
        """Tile overlap: the networks' receptive fields are unknown here; 32 pixels covers the
        windows of the transformer models (SwinIR, HAT: 8-16) and a conv stack's reach."""
        return 32

    def working_bytes(self, height: int, width: int) -> int:
        """A rough bound on one tile's float32 activations: the feature maps of a 64-180-wide
        network kept a few times over at input size, plus the output."""
        return int(height * width * 4 * (192 * 2 + 3 * self.scale**2))


def library(source: str, what: str = WHAT) -> Any:
    """spandrel, or one line saying that the file is no Real-ESRGAN and what to install."""
    try:
        import spandrel
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "spandrel"
        why = (
            f"install spandrel: {INSTALL}"
            if missing == "spandrel"
            else f"spandrel is installed but cannot import {missing}: install the {missing} that matches your torch"
        )
        raise ModelError(
            f"{what} {source} is not weights of a network vidgen upscales with by itself (Real-ESRGAN's "
            f"SRVGGNetCompact or RRDBNet); other architectures (SwinIR, HAT, DAT, SPAN, ...) load through spandrel: "
            f"{why}."
        ) from None
    return spandrel


def _descriptor(state: dict[str, Any], source: str, what: str = WHAT) -> Any:
    """spandrel's model for the state dict, built on the CPU, or one line saying why not."""
    spandrel = library(source, what)
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ModelError(
            f"{what} {source} is not weights of a network vidgen or spandrel knows (Real-ESRGAN, SwinIR, HAT, DAT, "
            "SPAN, ...); pick an upscaling model's file."
        ) from None
    except Exception as exc:  # a known layout with missing or misshapen tensors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{what} {source} does not load as the network it looks like: {first}") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelError(f"{what} {source} is a {descriptor.architecture.name} inpainting model, not an upscaler.")
    name = descriptor.architecture.name
    if descriptor.purpose != "SR" or descriptor.scale < 2:
        raise ModelError(
            f"{what} {source} is a {name} {descriptor.purpose} model (x{descriptor.scale}), not a super-resolution "
            "one; upscaling takes models of x2 and more."
        )
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise ModelError(
            f"{what} {source} is a {name} model for {descriptor.input_channels}-channel images; video frames are RGB."
        )
    return descriptor


def architecture(state: dict[str, Any], source: str, what: str = WHAT) -> Arch:
    """The Arch of a file's tensors (name -> tensor), as spandrel detects and loads it; `what`
    is the option its messages name."""
    spandrel = library(source, what)
    descriptor = _descriptor(state, source, what)
    tiling = str(getattr(descriptor.tiling, "name", descriptor.tiling)).lower()
    count = sum(int(p.numel()) for p in descriptor.model.parameters())
    return Arch(descriptor.architecture.id, int(descriptor.scale), count, tiling, spandrel.__version__)


def build(arch: Arch, state: dict[str, Any], source: str) -> Any:
    """spandrel's model of the file, float32, in eval mode; called like a torch module on
    (1, 3, H, W) frames in 0-1 (spandrel pads and crops to the sizes its network needs)."""
    descriptor = _descriptor(state, source)
    if descriptor.architecture.id != arch.id or descriptor.scale != arch.scale:
        raise ModelError(f"{WHAT} {source} changed since it was checked; run the command again.")
    descriptor.model.float()
    return descriptor.eval()
