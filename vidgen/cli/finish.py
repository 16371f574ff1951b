"""`vidgen interpolate CLIP` and `vidgen upscale CLIP`: finish a clip that is already on disk."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vidgen.cli import _options as o
from vidgen.cli._run import RichProgress, finish_lines, setup_logging
from vidgen.core.errors import ConfigError
from vidgen.core.terminal import escape

Clip = Annotated[Path, typer.Argument(help="The clip: a video vidgen made (its sidecar is carried on) or any other.")]
Weights = Annotated[
    str,
    typer.Option("--model", metavar="FILE|REPO:PATH", help="The weights file (see the command's description)."),
]


def interpolate(
    ctx: typer.Context,
    source: Clip,
    model: Weights,
    by: Annotated[
        str,
        typer.Option("--by", metavar="x2|x4|FPSfps", help="A factor (2, x2, x4) or a target frame rate (32fps)."),
    ] = "x2",
    out: o.Out = None,
    format_: o.Format = None,
    crf: o.Crf = None,
    codec: o.Codec = None,
    overwrite: o.Overwrite = False,
    allow_pickle: o.AllowPickle = None,
    device: o.Device = None,
    dry_run: o.DryRun = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """More frames in the same time: RIFE frame interpolation (Practical-RIFE 4.25/4.26 IFNet).

    x2 on a 9-frame 8 fps clip gives 17 frames at 16 fps: the 9 originals are kept and one new
    frame goes between each pair; a target rate (--by 24fps) places new frames where that rate
    needs them. The sound is kept as it is (the duration does not change). The new clip goes
    beside the old one as NAME-x2.EXT unless --out says otherwise. tiny:rife tries it offline
    with random weights.

        vidgen interpolate outputs/t2v-a-fox-7.mp4 --model rife.safetensors
    """
    output = (out, format_, crf, codec, overwrite)
    _run(ctx, "interpolate", source, model, {"by": by}, output, allow_pickle, device, dry_run, json_, quiet)


def upscale(
    ctx: typer.Context,
    source: Clip,
    model: Weights,
    tile: Annotated[
        int | None,
        typer.Option(
            "--tile",
            min=0,
            max=8192,
            metavar="PX",
            help="Tiles of PX input pixels a side (default 512, or the largest that fits --vram or the GPU's "
            "free memory; 0: whole frames).",
        ),
    ] = None,
    vram: Annotated[
        float | None,
        typer.Option("--vram", min=0.01, max=4096, metavar="GiB", help="Choose the tile to fit a card of this size."),
    ] = None,
    scale: Annotated[
        float | None,
        typer.Option("--scale", metavar="2|2.25|4", help="Kandinsky6SRPipeline: the factor (default 2)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, max=100, help="Kandinsky6SRPipeline: denoising steps (default 4).")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", min=0, help="Kandinsky6SRPipeline: the seed of its noise (default: the clip's, else 0)."
        ),
    ] = None,
    out: o.Out = None,
    format_: o.Format = None,
    crf: o.Crf = None,
    codec: o.Codec = None,
    overwrite: o.Overwrite = False,
    allow_pickle: o.AllowPickle = None,
    device: o.Device = None,
    dry_run: o.DryRun = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Upscale every frame of a clip with a Real-ESRGAN network (SRVGGNetCompact or RRDBNet).

    The weights decide the factor (realesr-animevideov3: x4). Other architectures (SwinIR, HAT,
    DAT, SPAN, ...) load through spandrel when it is installed (pip install 'vidgen[spandrel]').
    Frames run in tiles so a large clip fits memory (--vram: the largest tile that fits). The
    sound is kept. The new clip goes beside the old one as NAME-up4.EXT unless --out says
    otherwise. tiny:realesrgan tries it offline with random weights.

    --model may also name a Kandinsky6SRPipeline (a diffusers folder, Hub repo or
    tiny:kandinsky6-sr): diffusion video super-resolution of 4k+1-frame clips with sides
    divisible by 16, x2, x2.25 or x4 (--scale), seeded (--seed).

    On NAME.latents.safetensors (LTX, LTX-2: --save-latents) --model names the family's latent
    upsampler instead (REPO[/SUBFOLDER], a folder or tiny:NAME): it doubles the latents before
    the VAE decodes them (no second denoising pass), and LTX-2 keeps its sound.

        vidgen upscale outputs/t2v-a-fox-7.mp4 \\
            --model realesr-animevideov3.safetensors
    """
    output = (out, format_, crf, codec, overwrite)
    if source.name.endswith(".latents.safetensors"):
        _latents(ctx, source, model, output, allow_pickle, device, dry_run, json_, quiet)
        return
    settings = {"tile": tile, "scale": scale, "steps": steps, "seed": seed}
    settings = {name: value for name, value in settings.items() if value is not None}
    _run(ctx, "upscale", source, model, settings, output, allow_pickle, device, dry_run, json_, quiet, vram)


def _latents(
    ctx: typer.Context,
    source: Path,
    model: str,
    output: tuple[str | None, str | None, int | None, str | None, bool],
    allow_pickle: bool | None,
    device: str | None,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """`vidgen upscale NAME.latents.safetensors --model UPSAMPLER`: decode with the latents doubled."""
    from vidgen.cli.decode import _print_result, resolved_from_latents
    from vidgen.core.errors import InputError
    from vidgen.io import trust
    from vidgen.run import generate, latents

    out, format_, crf, codec, overwrite = output
    ctx.meta["vidgen.json"] = as_json
    setup_logging(quiet)
    _tensor, info = latents.load(source)
    config = info.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("output", {}), dict):
        raise InputError(f"{source} has no usable config in its metadata; it is not a latents file vidgen wrote.")
    stem = source.name.removesuffix(".latents.safetensors")
    fmt = format_ or "mp4"
    target = out or str(source.with_name(f"{stem}-up2" + ("" if fmt == "png" else f".{fmt}")))
    flags = {"format_": format_, "crf": crf, "codec": codec, "overwrite": overwrite, "device": device,
             "allow_pickle": allow_pickle}  # fmt: skip
    resolved = resolved_from_latents(source, config, info.get("output"), target, flags)
    trust.check_cost(resolved.config)
    trust.check_pickles(resolved)
    if dry_run:
        typer.echo(f"# would upsample the latents of {escape(source)} x2 with {escape(model)} and decode them")
        typer.echo(f"# would write: {escape(resolved.config.output.path)}")
        return
    progress = RichProgress() if sys.stderr.isatty() and not quiet else None
    try:
        result = generate.decode(source, resolved, progress, upsampler=model)
    finally:
        if progress is not None:
            progress.finish()
    _print_result(result, as_json)


def _run(
    ctx: typer.Context,
    step: str,
    source: Path,
    model: str,
    settings: dict[str, Any],
    output: tuple[str | None, str | None, int | None, str | None, bool],
    allow_pickle: bool | None,
    device: str | None,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
    vram: float | None = None,
) -> None:
    from pydantic import ValidationError

    from vidgen.config.schema import FinishStep
    from vidgen.models.loader import resolve_device
    from vidgen.run import refinish

    out, format_, crf, codec, overwrite = output
    ctx.meta["vidgen.json"] = as_json
    setup_logging(quiet)
    try:
        spec = FinishStep(step=step, model=model, **settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--by" if step == "interpolate" else f"--{first['loc'][0]}"
        raise ConfigError(f"{flag}: {first['msg'].removeprefix('Value error, ')}.") from None
    request = refinish.Request(
        source, spec, out, overwrite, bool(allow_pickle), resolve_device(device or "auto"), crf, codec, format_, vram
    )
    if dry_run:
        step, priced, probe = refinish.plan(request)
        path, side = refinish.target(request, refinish.label(step, probe.fps or 8.0))
        if as_json:
            typer.echo(json.dumps({"dry_run": True, "finish": [priced], "outputs": [{"path": str(path), "sidecar":
                                   str(side)}], "exit_code": 0}))  # fmt: skip
            return
        for line in finish_lines([priced]):
            typer.echo(f"# {escape(line)}")
        typer.echo(f"# would write: {escape(path)} (+ {escape(side)})")
        return
    progress = RichProgress() if sys.stderr.isatty() and not quiet else None
    try:
        done = refinish.run(request, progress)
    finally:
        if progress is not None:
            progress.finish()
    if not as_json:
        typer.echo(escape(done.path))
        return
    row = done.record["output"]
    body = {
        "outputs": [
            {
                "path": str(done.path),
                "sidecar": str(done.sidecar),
                "seed": done.record.get("seed"),
                **{key: row[key] for key in ("frames", "width", "height", "fps")},
            }
        ],
        "exit_code": 0,
    }
    typer.echo(json.dumps(body))
