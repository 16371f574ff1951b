"""Final latents: caught on their way into the VAE, saved beside the output, decoded again.

A family names where its pipeline hands the denoised latents to the VAE (`Family.catches`):
UNet-era pipelines call `pipe.decode_latents` after any trimming they do (CogVideoX 1.5's
padding frames); LTX calls `pipe.vae.decode` after mixing in its decode noise, which it draws
from the generator, so the latents caught there need no generator to decode again. vidgen wraps
those calls for one pipeline call: the tensors are kept, written when --save-latents asks or
when the decode fails (an out-of-memory at the VAE no longer throws the denoising away), and
`vidgen decode` hands them to the family's decode later with other decode options. A family
with sound catches its audio latents too (LTX-2), so the decoded video keeps its sound.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen.core.errors import InputError
from vidgen.core.limits import MAX_DEPTH, MAX_LATENTS_ELEMENTS, depth, pseudo_file
from vidgen.families.base import Catch

FORMAT = "vidgen-latents/1"
# Prefix of the tensors saved beside the latents for the family's step after decoding.
KEPT = "kept."
# Prefix of the other tensors caught with the latents (LTX-2's audio latents, LTX's decode
# timestep): `Captured.tensors`, by name.
TENSOR = "tensor."
# The main catch: its tensor is `Captured.latents`, its other arguments the decode arguments.
MAIN = "latents"


@dataclass
class Captured:
    latents: Any = None  # the tensor the main catch received
    args: list[Any] = field(default_factory=list)  # its other arguments (tensors by reference)
    kwargs: dict[str, Any] = field(default_factory=dict)
    decoding: bool = False  # True once the VAE runs: an error then is a decode failure
    # uint8 arrays the family's step after decoding needs (Family.postprocess_inputs), saved
    # beside the latents so `vidgen decode` repeats that step.
    kept: dict[str, Any] = field(default_factory=dict)
    # The other caught tensors, and tensor arguments of the main catch (named "latents.ARG").
    tensors: dict[str, Any] = field(default_factory=dict)


def _resolve(pipe: Any, target: str) -> tuple[Any, str]:
    """("vae", "decode") for "vae.decode": the object that owns the method, and its name."""
    *path, name = target.split(".")
    owner = pipe
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def _by_reference(captured: Captured, key: str, value: Any) -> Any:
    """A tensor argument of the main catch is saved as a tensor and recorded by name."""
    import torch

    if isinstance(value, torch.Tensor):
        captured.tensors[key] = value
        return {"tensor": key}
    return value


@contextmanager
def capture(
    pipe: Any, before_decode: Callable[[], None] | None = None, catches: dict[str, Catch] | None = None
) -> Iterator[Captured]:
    """Wrap each catch's method (default: `pipe.decode_latents`) for the duration of one
    pipeline call."""
    captured = Captured()
    wrapped: list[tuple[Any, str]] = []

    def wrap(name: str, catch: Catch) -> None:
        owner, method = _resolve(pipe, catch.target)
        original = getattr(owner, method)

        def caught(*args: Any, **kwargs: Any) -> Any:
            if catch.take == "arg":
                keep(args[0], args[1:], kwargs)
            if catch.decodes and not captured.decoding:
                captured.decoding = True
                if before_decode is not None:
                    before_decode()
            result = original(*args, **kwargs)
            if catch.take == "result":
                keep(result, (), {})
            return result

        def keep(tensor: Any, args: Any, kwargs: dict[str, Any]) -> None:
            if name != MAIN:
                captured.tensors[name] = tensor
                return
            captured.latents = tensor
            captured.args = [_by_reference(captured, f"{MAIN}.{i}", value) for i, value in enumerate(args)]
            captured.kwargs = {key: _by_reference(captured, f"{MAIN}.{key}", value) for key, value in kwargs.items()}

        # An instance attribute shadows the class's method; removing it restores the original.
        setattr(owner, method, caught)
        wrapped.append((owner, method))

    try:
        for name, catch in (catches or {MAIN: Catch("decode_latents")}).items():
            wrap(name, catch)
        yield captured
    finally:
        for owner, method in wrapped:
            delattr(owner, method)


def save(path: Path, captured: Captured, meta: dict[str, Any]) -> dict[str, Any]:
    """Write the latents and what is needed to decode them (atomically); returns the record."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    tensor = captured.latents.detach().to("cpu").contiguous()
    kept = {f"{KEPT}{name}": torch.from_numpy(np.ascontiguousarray(array)) for name, array in captured.kept.items()}
    others = {f"{TENSOR}{name}": value.detach().to("cpu").contiguous() for name, value in captured.tensors.items()}
    info = {
        "format": FORMAT,
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "shape": list(tensor.shape),
        "decode_args": captured.args,
        "decode_kwargs": captured.kwargs,
        **({"kept": sorted(captured.kept)} if captured.kept else {}),
        **({"tensors": sorted(captured.tensors)} if captured.tensors else {}),
        **meta,
    }
    from vidgen.io import media

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Named like media's temporary files (owner in the name), so a later run can sweep it.
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.{media.owner_tag()}.", suffix=".part", dir=path.parent)
        os.close(handle)
    except OSError as exc:
        raise media.write_error(path.parent, exc) from None
    try:
        save_file({"latents": tensor, **kept, **others}, temp, metadata={"vidgen": json.dumps(info)})
        os.chmod(temp, 0o666 & ~media._umask())  # like the video beside it, not mkstemp's 0600
        os.replace(temp, path)
    except OSError as exc:
        raise media.write_error(path, exc, "cannot write latents to") from None
    except Exception as exc:
        # safetensors reports a failed write (a full disk) as SafetensorError, the errno in its text.
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise media.write_error(path, OSError(int(code[1]), str(exc)), "cannot write latents to") from None
    finally:
        Path(temp).unlink(missing_ok=True)
    shapes = {name: list(value.shape) for name, value in captured.tensors.items() if value.ndim > 1}
    return {
        "path": str(path),
        "shape": info["shape"],
        "dtype": info["dtype"],
        **({"tensors": shapes} if shapes else {}),
    }


def load(path: Path) -> tuple[Any, dict[str, Any]]:
    """(latents tensor, metadata) from a file `save` wrote."""
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        raise InputError(f"latents file {path} does not exist.")
    if not path.is_file() or pseudo_file(path):
        raise InputError(f"latents file {path} is not a regular file (a device, pipe or socket).")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensor = None
            if "latents" in handle.keys():  # noqa: SIM118
                # The header states the shape: refuse absurd ones before reading the data.
                shape = handle.get_slice("latents").get_shape()
                if math.prod(shape) > MAX_LATENTS_ELEMENTS:
                    raise InputError(
                        f"{path} holds latents of shape {list(shape)}, more than any supported model makes "
                        f"(at most {MAX_LATENTS_ELEMENTS:,} values)."
                    )
                if math.prod(shape) == 0:
                    raise InputError(
                        f"{path} holds empty latents (shape {list(shape)}): the run that wrote them denoised "
                        "nothing, so there is nothing to decode; run it again with more --steps."
                    )
                tensor = handle.get_tensor("latents")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a latents file vidgen wrote ({exc}).") from None
    try:
        info = json.loads(meta.get("vidgen", ""))
    except (json.JSONDecodeError, RecursionError):
        info = {}
    if not isinstance(info, dict) or depth(info) > MAX_DEPTH:
        info = {}
    if tensor is None or info.get("format") != FORMAT:
        raise InputError(f"{path} is not a latents file vidgen wrote (written with --save-latents).")
    return tensor, info


def load_kept(path: Path, names: Any) -> dict[str, Any]:
    """The uint8 arrays `save` kept beside the latents (`Captured.kept`), by name; `names` is
    what the file's metadata lists, so it is checked too (a file is data)."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return {}
    import torch

    kept = _read_named(path, names, KEPT, "kept pixels", lambda t: t.dtype == torch.uint8, "8-bit")
    return {name: tensor.numpy() for name, tensor in kept.items()}


def load_tensors(path: Path, names: Any) -> dict[str, Any]:
    """The other tensors `save` caught with the latents (`Captured.tensors`), by name; `names`
    is what the file's metadata lists, so it is checked too (a file is data)."""
    if names is None:
        return {}
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise InputError(f"{path} lists its tensors in a form vidgen does not write; it is damaged.")
    return _read_named(path, names, TENSOR, "a tensor", lambda t: t.is_floating_point(), "floating point")


def _read_named(
    path: Path, names: list[str], prefix: str, what: str, valid: Callable[[Any], bool], kind: str
) -> dict[str, Any]:
    """The tensors `prefix`+name for each listed name, each present, of a size some model
    makes, and `valid` (else the file is damaged: one line saying so)."""
    from safetensors import SafetensorError, safe_open

    found: dict[str, Any] = {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            for name in names:
                key = f"{prefix}{name}"
                if key not in handle.keys():  # noqa: SIM118
                    raise InputError(f"{path} lists {what} {name!r} it does not hold; it is damaged.")
                if math.prod(handle.get_slice(key).get_shape()) > MAX_LATENTS_ELEMENTS:
                    raise InputError(f"{path} holds {what} {name!r} larger than any supported model makes.")
                tensor = handle.get_tensor(key)
                if not valid(tensor):
                    raise InputError(f"{path} holds {what} {name!r} that is not {kind}; it is damaged.")
                found[name] = tensor
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a latents file vidgen wrote ({exc}).") from None
    return found


def arguments(path: Path, info: dict[str, Any], tensors: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The recorded decode arguments with tensor references ({"tensor": NAME}) replaced by the
    tensors the file holds."""
    args, kwargs = info.get("decode_args", []), info.get("decode_kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InputError(f"{path} records its decode arguments in a form vidgen does not write; it is damaged.")

    def value(item: Any) -> Any:
        if isinstance(item, dict) and set(item) == {"tensor"}:
            if item["tensor"] not in tensors:
                raise InputError(f"{path} refers to a tensor {item['tensor']!r} it does not hold; it is damaged.")
            return tensors[item["tensor"]]
        return item

    return [value(item) for item in args], {str(key): value(item) for key, item in kwargs.items()}


@dataclass(frozen=True)
class Checkpoint:
    """Where a resumable family (Family.resumable) keeps its finished windows: the file, and
    vidgen's atomic writer for it, so a family never writes files itself."""

    path: Path

    def save(self, tensor: Any, meta: dict[str, Any]) -> None:
        save(self.path, Captured(latents=tensor), meta)
