"""`vidgen decode LATENTS`: finish a video from its saved final latents, with other decode options."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from vidgen import families
from vidgen.cli import _options as o
from vidgen.cli._run import RichProgress, setup_logging
from vidgen.config import Layer, resolve

# The recorded run's output format wins unless --format or --out says otherwise.
_KEEP_FORMAT = {"format": None}


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
    overwrite: o.Overwrite = False,
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
    cheaper decode options instead of denoising from scratch. The video goes where the run
    would have written it, unless --out says otherwise.

        vidgen decode outputs/t2v-a-fox-7.latents.safetensors --vae-tiling
    """
    from vidgen import generate, latents

    ctx.meta["vidgen.json"] = json_
    setup_logging(quiet)
    _tensor, info = latents.load(source)
    config = info["config"]
    original = Path(info["output"])
    target = Path(out) if out else original
    if out and (target.is_dir() or out.endswith(("/", "\\"))):
        target = target / original.name
    layers = [Layer(label=f"latents:{source.name}", data=config, origin=str(source))]
    layers += o.flag_layers(
        {
            "out": str(target),
            "format_": format_,
            "fps": fps,
            "crf": crf,
            "codec": codec,
            "overwrite": overwrite,
            "device": device,
            "dtype": dtype,
            "offload": offload,
            "vae_tiling": vae_tiling,
            "vae_slicing": vae_slicing,
            "decode_chunk": decode_chunk,
            "set_": set_,
        }
    )
    if format_ is None and out:
        # --out names the file: its extension decides, not the recorded run's --format.
        layers.append(Layer(label="cli:--out", data={"output": _KEEP_FORMAT}, origin="--out"))
    resolved = resolve(config["mode"], [], layers, families.defaults_layer)
    progress = RichProgress() if sys.stderr.isatty() and not quiet else None
    result = generate.decode(source, resolved, progress)
    if json_:
        row = result["record"]["output"]
        body = {
            "outputs": [
                {
                    "path": str(result["path"]),
                    "sidecar": str(result["sidecar"]),
                    "seed": result["record"]["seed"],
                    **{key: row[key] for key in ("frames", "width", "height", "fps")},
                }
            ],
            "exit_code": 0,
        }
        typer.echo(json.dumps(body))
    else:
        typer.echo(str(result["path"]))
