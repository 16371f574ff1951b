"""The weights files of finishing steps (--interpolate-model, --upscale): found as a path or
REPO[@REV]:PATH (through vidgen/models/checkpoints.py and the Hugging Face cache), checked
against their network from the header alone before anything runs, hashed for the sidecar, and
loaded strictly. Safetensors unless --allow-pickle; a pickle is read with weights_only=True.

Published files wrap their tensors in different ways: RIFE's flownet.pkl prefixes every name
with `module.` (it was saved from DistributedDataParallel), Real-ESRGAN's .pth files nest them
under `params_ema` or `params`. Both are unwrapped here, so a safetensors conversion of either
loads the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.core.errors import ModelError

STEPS = {"interpolate": "--interpolate-model", "upscale": "--upscale"}
_NESTS = ("params_ema", "params", "state_dict", "model")


@dataclass
class Weights:
    """A checked weights file: where it is, what it holds and which network reads it."""

    step: str
    source: str  # as typed
    path: Path
    format: str  # safetensors | pickle
    arch: Any  # rife.Arch | upscalers.Arch
    repo: str | None = None
    revision: str | None = None

    def record(self, sha256: str) -> dict[str, Any]:
        """The sidecar's description of the file (and of the network it holds)."""
        from vidgen.models.components import weights_record

        size = weights_record(self.path)["bytes"] if self.path.is_dir() else self.path.stat().st_size
        return {
            "source": self.source,
            "path": str(self.path),
            "repo": self.repo,
            "revision": self.revision,
            "sha256": sha256,
            "bytes": size,
            "format": self.format,
            **self.arch.record(),
        }


@dataclass(frozen=True)
class DiffusionSR:
    """A Kandinsky6SRPipeline (a diffusers folder, Hub repo or tiny:kandinsky6-sr): diffusion
    video super-resolution, x2, x2.25 or x4, stochastic (seeded)."""

    kind: str = "kandinsky6-sr"
    scale: int = 2  # the default factor; the step's `scale` chooses
    # The transformer's trained tiles (height, width) in output pixels.
    tiles: tuple[tuple[int, int], ...] = ((512, 512), (512, 768), (768, 512))

    def smallest(self, height: int, width: int, scale: float) -> tuple[int, int]:
        """The smallest input (height, width) the pipeline takes at `scale` for frames of this
        shape: its tile (the trained one closest in aspect), over the 2x or 4x path."""
        base = min(self.tiles, key=lambda hw: abs(hw[1] / hw[0] - width / height))
        path = 2 if scale == 2.25 else int(scale)
        return base[0] // path, base[1] // path

    def record(self) -> dict[str, Any]:
        return {"architecture": "Kandinsky6SRPipeline"}


PIPELINE_CLASSES = ("Kandinsky6SRPipeline",)


def _pipeline_source(source: str) -> bool:
    """Whether --upscale names a diffusers pipeline (tiny:NAME, a folder, a Hub repo id) rather
    than one weights file (a path or REPO:PATH)."""
    import re

    if source.startswith("tiny:"):
        return source.removeprefix("tiny:") not in TINY_FILES
    path = Path(source).expanduser()
    if path.exists():
        return path.is_dir()
    return re.fullmatch(r"[\w.-]+/[\w.-]+(@[\w.-]+)?", source) is not None


def _read_pipeline(step: str, source: str, what: str) -> Weights:
    """A diffusion super-resolution pipeline: located (a tiny one built), its class checked."""
    import json

    from vidgen.models.loader import locate

    _, where = locate(source.split("@")[0], True, what=what)
    index_file = Path(where) / "model_index.json"
    name = json.loads(index_file.read_text()).get("_class_name") if index_file.is_file() else None
    if name not in PIPELINE_CLASSES:
        raise ModelError(
            f"{what} {source} is a {name or 'folder without model_index.json'}, not a video super-resolution "
            f"pipeline vidgen runs ({', '.join(PIPELINE_CLASSES)}); use it for generating, or name a weights file."
        )
    config = Path(where) / "transformer" / "config.json"
    tiles = json.loads(config.read_text()).get("tile_sizes") if config.is_file() else None
    arch = DiffusionSR(tiles=tuple(tuple(tile) for tile in tiles)) if tiles else DiffusionSR()
    return Weights(step, source, Path(where), "diffusers", arch)


def _network(step: str) -> Any:
    from vidgen.models import rife, upscalers

    return rife if step == "interpolate" else upscalers


def read(step: str, source: str, allow_pickle: bool, what: str | None = None) -> Weights:
    """The file behind `source`, checked against the step's network from its tensor names and
    shapes (no tensor data is read from a safetensors file). `what`: the option messages name
    (default: the generation commands' --interpolate-model / --upscale)."""
    from vidgen.models import checkpoints

    what = what or STEPS[step]
    if step == "upscale" and _pipeline_source(source):
        return _read_pipeline(step, source, what)
    if source.startswith("tiny:") and source.removeprefix("tiny:") in TINY_FILES:
        path, repo, revision = _tiny_file(step, source, what), None, None
    else:
        path, repo, revision = checkpoints.fetch(source, what)
    assert path is not None
    if not path.is_file():
        raise ModelError(f"{what} {source} does not exist; check the path.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from vidgen.models.components import safetensors_header

        header = safetensors_header(path, what, source)
        shapes = {name: tuple(info["shape"]) for name, info in header.items() if name != "__metadata__"}
        fmt = "safetensors"
    elif suffix in (".pkl", ".pth", ".pt", ".ckpt", ".bin"):
        if not allow_pickle:
            raise ModelError(
                f"{what} {source} is a pickle file ({suffix}), which can run code when loaded; use a .safetensors "
                "file, or add --allow-pickle only if you trust where it came from."
            )
        shapes = {name: tuple(tensor.shape) for name, tensor in _pickle_state(path, source, what, "meta").items()}
        fmt = "pickle"
    else:
        raise ModelError(f"{what} {source} is not a weights file; use a .safetensors file.")
    shapes = _unwrapped_names(shapes)
    if step == "upscale" and not _network(step).recognises(shapes):
        # Not Real-ESRGAN: spandrel detects the architecture from the tensors themselves. The
        # tensors are read again by `load` when the step runs, so what runs is what is hashed then.
        from vidgen.models import spandrel_sr

        spandrel_sr.library(source, what)  # installed, before the file is read whole
        arch = spandrel_sr.architecture(_state(path, fmt, source, what), source, what)
    else:
        arch = _network(step).architecture(shapes, source, what)
    return Weights(step, source, path, fmt, arch, repo, revision)


def _state(path: Path, fmt: str, source: str, what: str) -> dict[str, Any]:
    """Every tensor of the file, on the CPU, unwrapped."""
    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            return _unwrapped_names(load_file(str(path)))
        except Exception as exc:  # a truncated or corrupt file whose header read
            raise ModelError(f"{what} {source} cannot be read: {exc}") from None
    return _unwrapped_names(_pickle_state(path, source, what, "cpu"))


def _pickle_state(path: Path, source: str, what: str, device: str) -> dict[str, Any]:
    """The tensors of a pickle, read with weights_only=True (no code runs), unnested."""
    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True, mmap=device == "meta")
    except Exception as exc:  # not a torch pickle, or one holding more than tensors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{what} {source} is not a readable checkpoint: {first}") from None
    for key in _NESTS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ModelError(f"{what} {source} holds no tensors by name; is it a weights file?")
    return {name: tensor for name, tensor in state.items() if hasattr(tensor, "shape")}


def _unwrapped_names(state: dict[str, Any]) -> dict[str, Any]:
    """Names without DistributedDataParallel's `module.` prefix, where every name has it."""
    if state and all(name.startswith("module.") for name in state):
        return {name.removeprefix("module."): value for name, value in state.items()}
    return state


def load(weights: Weights, device: str) -> Any:
    """The network with the file's tensors, on `device` in float32 (a pipeline: loaded from its
    folder, safetensors only)."""
    if weights.format == "diffusers":
        import diffusers

        pipeline = diffusers.Kandinsky6SRPipeline.from_pretrained(str(weights.path), use_safetensors=True)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline.to(device)
    state = _state(weights.path, weights.format, weights.source, STEPS[weights.step])
    if getattr(weights.arch, "kind", None) == "spandrel":
        from vidgen.models import spandrel_sr

        return spandrel_sr.build(weights.arch, state, weights.source).to(device)
    return _network(weights.step).build(weights.arch, {k: v.float() for k, v in state.items()}).to(device)


def sha256(weights: Weights) -> str:
    """The file's sha256, through vidgen's hash cache."""
    from vidgen.models.components import file_sha256

    return file_sha256(weights.path)


# tiny:NAME weights files: random weights of narrow versions of the networks, written to the tiny
# model cache on first use, to try the options and the chain without downloading anything.
TINY_FILES = {"rife": "interpolate", "realesrgan": "upscale", "realesrgan-rrdb": "upscale"}


def _tiny_file(step: str, source: str, what: str) -> Path:
    """The file of tiny:NAME, written (atomically, seeded: the same everywhere) on first use."""
    import os
    import tempfile

    from vidgen.models import tiny, upscalers

    name = source.removeprefix("tiny:")
    if TINY_FILES[name] != step:
        other = [f"tiny:{n}" for n, s in TINY_FILES.items() if s == step]
        raise ModelError(f"{what} {source} is a tiny {TINY_FILES[name]} model; use {' or '.join(other)}.")
    path = tiny.folder(f"finish-{name}") / f"{name}.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{name}-", suffix=".safetensors", dir=path.parent)
        os.close(handle)
        try:
            save_tiny(step, Path(staging), arch=upscalers.TINY_RRDB if name == "realesrgan-rrdb" else None)
            os.replace(staging, path)
        finally:
            Path(staging).unlink(missing_ok=True)
    return path


def save_tiny(step: str, path: Path, seed: int = 0, arch: Any = None) -> Path:
    """Random weights of the step's tiny network written as safetensors at `path` (tests,
    benchmarks, trying the options offline)."""
    from safetensors.torch import save_file

    network = _network(step)
    arch = arch or network.TINY
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in network.random_weights(arch, seed).items()}, str(path))
    return path
