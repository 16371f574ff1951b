"""Final latents: caught on their way into the VAE, saved beside the output, decoded again.

Every family whose pipeline decodes through `pipe.decode_latents` hands that method the
denoised latents, after any trimming the pipeline does (CogVideoX 1.5's padding frames). vidgen
wraps the method for one call: the latents are kept, written when --save-latents asks or when
the decode fails (an out-of-memory at the VAE no longer throws the denoising away), and
`vidgen decode` calls the same method on them later with other decode options.
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

from vidgen.errors import InputError
from vidgen.limits import MAX_DEPTH, MAX_LATENTS_ELEMENTS, depth, pseudo_file

FORMAT = "vidgen-latents/1"
# Prefix of the tensors saved beside the latents for the family's step after decoding.
KEPT = "kept."


@dataclass
class Captured:
    latents: Any = None  # the tensor decode_latents received
    args: list[Any] = field(default_factory=list)  # its other arguments, JSON-able
    kwargs: dict[str, Any] = field(default_factory=dict)
    decoding: bool = False  # True while the VAE runs: an error then is a decode failure
    # uint8 arrays the family's step after decoding needs (Family.postprocess_inputs), saved
    # beside the latents so `vidgen decode` repeats that step.
    kept: dict[str, Any] = field(default_factory=dict)


@contextmanager
def capture(pipe: Any, before_decode: Callable[[], None] | None = None) -> Iterator[Captured]:
    """Wrap `pipe.decode_latents` for the duration of one pipeline call."""
    captured = Captured()
    original = pipe.decode_latents

    def decode_latents(latents: Any, *args: Any, **kwargs: Any) -> Any:
        captured.latents, captured.args, captured.kwargs = latents, list(args), dict(kwargs)
        captured.decoding = True
        if before_decode is not None:
            before_decode()
        result = original(latents, *args, **kwargs)
        captured.decoding = False
        return result

    pipe.decode_latents = decode_latents
    try:
        yield captured
    finally:
        # The instance attribute shadowed the class method; removing it restores the original.
        del pipe.decode_latents


def save(path: Path, captured: Captured, meta: dict[str, Any]) -> dict[str, Any]:
    """Write the latents and what is needed to decode them (atomically); returns the record."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    tensor = captured.latents.detach().to("cpu").contiguous()
    kept = {f"{KEPT}{name}": torch.from_numpy(np.ascontiguousarray(array)) for name, array in captured.kept.items()}
    info = {
        "format": FORMAT,
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "shape": list(tensor.shape),
        "decode_args": captured.args,
        "decode_kwargs": captured.kwargs,
        **({"kept": sorted(captured.kept)} if captured.kept else {}),
        **meta,
    }
    from vidgen import media

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Named like media's temporary files (owner in the name), so a later run can sweep it.
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.{media.owner_tag()}.", suffix=".part", dir=path.parent)
        os.close(handle)
    except OSError as exc:
        raise media.write_error(path.parent, exc) from None
    try:
        save_file({"latents": tensor, **kept}, temp, metadata={"vidgen": json.dumps(info)})
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
    return {"path": str(path), "shape": info["shape"], "dtype": info["dtype"]}


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
    import numpy as np
    from safetensors import SafetensorError, safe_open

    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return {}
    kept: dict[str, Any] = {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            for name in names:
                key = f"{KEPT}{name}"
                if key not in handle.keys():  # noqa: SIM118
                    raise InputError(f"{path} lists kept pixels {name!r} it does not hold; it is damaged.")
                if math.prod(handle.get_slice(key).get_shape()) > MAX_LATENTS_ELEMENTS:
                    raise InputError(f"{path} holds more kept pixels than any supported model makes.")
                array = handle.get_tensor(key).numpy()
                if array.dtype != np.uint8:
                    raise InputError(f"{path} holds kept pixels {name!r} that are not 8-bit; it is damaged.")
                kept[name] = array
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a latents file vidgen wrote ({exc}).") from None
    return kept
