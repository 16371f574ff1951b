"""`vidgen replay SIDECAR|VIDEO`: run again exactly as recorded, optionally with changes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from vidgen import families
from vidgen.cli import _options as o
from vidgen.cli import _trust as t
from vidgen.cli._run import run_resolved, setup_logging
from vidgen.config import Layer, resolve
from vidgen.core.errors import InputError
from vidgen.io import provenance, sidecar
from vidgen.io.trust import Grants

log = logging.getLogger("vidgen")


def replay(
    ctx: typer.Context,
    source: Annotated[
        Path, typer.Argument(help="A sidecar .json, or a video vidgen made (its sidecar or embedded metadata).")
    ],
    set_: o.Set = None,
    out: o.Out = None,
    overwrite: o.Overwrite = False,
    allow_pickle: o.AllowPickle = None,
    allow_inputs: t.AllowInputs = False,
    skip_memory_check: t.SkipMemoryCheck = False,
    dry_run: o.DryRun = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Run a recorded generation again: same config, seed, model revision and inputs.

    Without --set the frames match the original on the same device and versions. The new video is
    written beside the replayed file as NAME-replay.EXT unless --out says otherwise; never where
    the file says. Before loading, replay lists the models, LoRAs and inputs it will read, and
    stops (exit 5) when a weights file it recorded by sha256 is missing or has changed. A file
    that allows pickle weights, or names inputs outside its own folder or URLs, stops (exit 5, 4)
    until --allow-pickle or --allow-inputs says you trust it. An --enhance-prompt rewrite is reused
    without loading its LLM, unless --set changes the prompt or its enhancement settings.

        vidgen replay outputs/t2v-a-red-fox-7.json \\
            --set sampling.num_inference_steps=80
    """
    ctx.meta["vidgen.json"] = json_
    setup_logging(quiet)
    data = sidecar.read(source)
    config, notes = sidecar.replay_config(data, source, overwrite=overwrite, out_given=out is not None)
    for note in notes:
        log.warning(note)
    label = f"replay:{source.name}"
    layers = [Layer(label=label, data=config, origin=str(source))]
    layers += o.flag_layers({"out": out, "overwrite": overwrite, "allow_pickle": allow_pickle, "set_": set_})
    mode = config.get("mode")
    if not isinstance(mode, str) or mode not in families.DEFAULT_PRESETS:
        raise InputError(f"{source} records mode {mode!r}, which vidgen does not have; it cannot be replayed.")
    resolved = resolve(mode, [], layers, families.defaults_layer)
    grants = Grants(allow_inputs=allow_inputs, skip_memory_check=skip_memory_check, folders={label: source.parent})

    def announce() -> None:
        from vidgen.io import trust

        outside = [ref for ref, _ in trust.outside_inputs(resolved, grants.folders)]
        recorded = data.get("model") if isinstance(data.get("model"), dict) else {}
        log.info("replay of %s reads:", source)
        for line in trust.reads(resolved.config, recorded, outside):
            log.info("  %s", line)
        # Before anything is located or loaded: a changed checkpoint or LoRA would load without a
        # word and make other frames under the same name.
        provenance.check(data, resolved)

    def same_inputs(plan: Any) -> None:
        # An input named with --set is chosen on purpose, even under the recorded path.
        chosen = {key.split(".", 1)[1] for key, where in plan.resolved.sources.items() if key.startswith("inputs.")
                  and str(where).startswith("cli:")}  # fmt: skip
        changed = sidecar.changed_inputs(
            data, plan.inputs.record, plan.resolved.config.inputs.model_dump(), chosen=chosen
        )
        if changed:
            raise InputError(
                f"{changed[0]} has changed since the recorded run (its pixels differ); replay needs the same "
                "input, or point elsewhere on purpose with --set inputs.NAME=PATH."
            )
        _say_enhancement(plan)

    run_resolved(
        resolved,
        dry_run=dry_run,
        as_json=json_,
        quiet=quiet,
        check=same_inputs,
        extra={"replay_of": {"path": str(source), "created_at": data.get("created_at")}},
        grants=grants,
        announce=announce,
        recorded=(data.get("prompt_enhancement"), str(source)),
    )


def _say_enhancement(plan: Any) -> None:
    """Whether the recorded --enhance-prompt rewrite is reused (its LLM stays unloaded)."""
    if plan.enhanced is not None:
        log.info("  the recorded enhanced prompt is reused; the prompt enhancer is not loaded")
    elif plan.asked is not None:
        log.info("  the prompt or its enhancement settings differ from the recording: the enhancer runs again")
