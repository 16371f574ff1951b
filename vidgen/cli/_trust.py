"""The flags that grant what no file may grant, shared by the commands that read files.

They are command-line only on purpose: none of them is a config field, so no preset, manifest,
sidecar or latents file can set them.
"""

from __future__ import annotations

from typing import Annotated

import typer

RUN = "Run"

AllowInputs = Annotated[
    bool,
    typer.Option(
        "--allow-inputs",
        help="Let the replayed file or manifest read inputs it names outside its own folder, and URLs "
        "(check them first: vidgen lists them).",
        rich_help_panel=RUN,
    ),
]
SkipMemoryCheck = Annotated[
    bool,
    typer.Option(
        "--skip-memory-check",
        help="With --memory manual: run even when the planned peak is far above this machine's memory.",
        rich_help_panel=RUN,
    ),
]
NoServer = Annotated[
    bool,
    typer.Option(
        "--no-server",
        help="Run in this process even when a `vidgen serve` is up (by default the run goes to it, which "
        "keeps its models loaded; set VIDGEN_NO_SERVER=1 to do this always).",
        rich_help_panel=RUN,
    ),
]
