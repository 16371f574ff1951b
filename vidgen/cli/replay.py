"""`vidgen replay SIDECAR|VIDEO`: run again exactly as recorded, optionally with changes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from vidgen import families, sidecar
from vidgen.cli import _options as o
from vidgen.cli._run import run_resolved, setup_logging
from vidgen.config import Layer, resolve
from vidgen.errors import InputError


def replay(
    ctx: typer.Context,
    source: Annotated[
        Path, typer.Argument(help="A sidecar .json, or a video vidgen made (its sidecar or embedded metadata).")
    ],
    set_: o.Set = None,
    out: o.Out = None,
    overwrite: o.Overwrite = False,
    dry_run: o.DryRun = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Run a recorded generation again: same config, seed, model revision and inputs.

    Without --set the frames match the original on the same device and versions. The new video is
    written beside the original as NAME-replay.EXT unless --out says otherwise.

        vidgen replay outputs/t2v-a-red-fox-running-through-fresh-snow-7.json --set sampling.num_inference_steps=80
    """
    ctx.meta["vidgen.json"] = json_
    setup_logging(quiet)
    data = sidecar.read(source)
    config, notes = sidecar.replay_config(data, overwrite=overwrite)
    for note in notes:
        logging.getLogger("vidgen").warning(note)
    layers = [Layer(label=f"replay:{source.name}", data=config, origin=str(source))]
    layers += o.flag_layers({"out": out, "overwrite": overwrite, "set_": set_})
    resolved = resolve(config["mode"], [], layers, families.defaults_layer)

    def same_inputs(plan: Any) -> None:
        changed = sidecar.changed_inputs(data, plan.inputs.record, plan.resolved.config.inputs.model_dump())
        if changed:
            raise InputError(
                f"{changed[0]} has changed since the recorded run (its pixels differ); replay needs the same "
                "input, or point elsewhere on purpose with --set inputs.NAME=PATH."
            )

    run_resolved(
        resolved,
        dry_run=dry_run,
        as_json=json_,
        quiet=quiet,
        check=same_inputs,
        extra={"replay_of": {"path": str(source), "created_at": data.get("created_at")}},
    )
