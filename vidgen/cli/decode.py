"""`vidgen decode LATENTS`: finish a video from its saved final latents, with other decode options."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vidgen import families
from vidgen.cli import _options as o
from vidgen.cli._run import RichProgress, setup_logging
from vidgen.config import Layer, Resolved, resolve
from vidgen.core.errors import InputError, oom_guard


def decode(
    ctx: typer.Context,
    source: Annotated[
        Path, typer.Argument(help="A .latents.safetensors file written by --save-latents or by a failed decode.")
    ],
    out: o.Out = None,
    format_: o.Format = None,
    fps: o.Fps = None,
    crf: o.Crf = None,
    codec: o.Codec = None,
    audio: o.Audio = None,
    overwrite: o.Overwrite = False,
    allow_pickle: o.AllowPickle = None,
    device: o.Device = None,
    dtype: o.DType = None,
    offload: o.Offload = None,
    vae_tiling: o.VaeTiling = None,
    vae_slicing: o.VaeSlicing = None,
    decode_chunk: o.DecodeChunk = None,
    set_: o.Set = None,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Decode saved final latents into the video, loading only the VAE.

    A run that ran out of memory in the VAE decode saves its latents; decode them again with
    cheaper decode options instead of denoising from scratch. The video goes beside the latents
    file (NAME.latents.safetensors -> NAME.mp4), unless --out says otherwise: never to a path
    stored in the file.

        vidgen decode outputs/t2v-a-fox-7.latents.safetensors --vae-tiling
    """
    from vidgen.io import trust
    from vidgen.run import generate, latents

    ctx.meta["vidgen.json"] = json_
    setup_logging(quiet)
    _tensor, info = latents.load(source)
    config = info.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("output", {}), dict):
        raise InputError(f"{source} has no usable config in its metadata; it is not a latents file vidgen wrote.")
    flags = {
        "format_": format_,
        "fps": fps,
        "crf": crf,
        "codec": codec,
        "audio": audio,
        "overwrite": overwrite,
        "device": device,
        "dtype": dtype,
        "offload": offload,
        "vae_tiling": vae_tiling,
        "vae_slicing": vae_slicing,
        "decode_chunk": decode_chunk,
        "allow_pickle": allow_pickle,
        "set_": set_,
    }
    resolved = resolved_from_latents(source, config, info.get("output"), out, flags)
    # Decode reads no inputs: only the limits and the pickle permission apply.
    trust.check_cost(resolved.config)
    trust.check_pickles(resolved)
    progress = RichProgress() if sys.stderr.isatty() and not quiet else None
    hint = "try --vae-tiling, --vae-slicing or --decode-chunk 1."
    try:
        with oom_guard("decode", lambda exc: f"the decode ran out of memory ({exc.__class__.__name__}); {hint}"):
            result = generate.decode(source, resolved, progress)
    finally:
        if progress is not None:
            progress.finish()
    _print_result(result, json_)


def resolved_from_latents(
    source: Path, config: dict, recorded: object, out: str | None, flags: dict[str, object]
) -> Resolved:
    """The decode's config: the recorded run's, its output beside the latents file (or --out),
    under the flags given now. `recorded` is the output path the file names."""
    from vidgen.io.outputs import FORMATS

    format_ = flags["format_"]
    # Where the file says its video went is not where this one goes: beside the latents file,
    # or --out. The recorded path only lends its format.
    recorded_format = _recorded_format(config, recorded)
    default = _beside(source, format_ or recorded_format)
    target = Path(out) if out else default
    if out and (target.is_dir() or out.endswith(("/", "\\"))):
        target = target / default.name
    label = f"latents:{source.name}"
    layers = [Layer(label=label, data=config, origin=str(source))]
    if not out:
        layers.append(Layer("decode:beside", {"output": {"path": str(target)}}, "beside the latents file"))
    layers += o.flag_layers({"out": str(target) if out else None, **flags})
    if format_ is None:
        # The output's extension decides its format, not the recorded run's --format; a name
        # without one (a png folder) keeps the recorded format.
        keep = None if target.suffix.lower().lstrip(".") in FORMATS else recorded_format
        layers.append(Layer(label="cli:--out" if out else label, data={"output": {"format": keep}}, origin="--out"))
    mode = config.get("mode")
    if not isinstance(mode, str) or mode not in families.DEFAULT_PRESETS:
        raise InputError(f"{source} records mode {mode!r}, which vidgen does not have; it cannot be decoded.")
    return resolve(mode, [], layers, families.defaults_layer)


def _print_result(result: Any, as_json: bool) -> None:
    """The decoded video's path on stdout, or with --json the same object a run prints."""
    if not as_json:
        typer.echo(str(result.path))
        return
    row = result.record["output"]
    body = {
        "outputs": [
            {
                "path": str(result.path),
                "sidecar": str(result.sidecar),
                "seed": result.record["seed"],
                **{key: row[key] for key in ("frames", "width", "height", "fps")},
            }
        ],
        "exit_code": 0,
    }
    typer.echo(json.dumps(body))


def _recorded_format(config: dict, output: object) -> str | None:
    """The recorded run's format: its output.format, else the suffix of the path it recorded."""
    from vidgen.io.outputs import FORMATS

    candidates = [config["output"].get("format"), Path(str(output or "")).suffix.lower().lstrip(".")]
    return next((fmt for fmt in candidates if fmt in FORMATS), None)


def _beside(source: Path, fmt: str | None) -> Path:
    """NAME.EXT beside NAME.latents.safetensors (a png folder: NAME)."""
    stem = source.name.removesuffix(".safetensors").removesuffix(".latents") or "decoded"
    fmt = fmt or "mp4"
    return source.with_name(stem if fmt == "png" else f"{stem}.{fmt}")
