"""`vidgen serve`: keep models loaded for the `vidgen` calls of this user, and (with --http) for
HTTP clients; `--status` and `--stop` ask a running one."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from vidgen.core import stopping
from vidgen.core.errors import ConfigError, ExitCode
from vidgen.core.terminal import escape


def serve(
    ctx: typer.Context,
    status: Annotated[bool, typer.Option("--status", help="Say whether a server is up, and what it holds.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the running server (queued jobs stay queued).")] = False,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="HOST:PORT",
            help="Also answer HTTP (vidgen's job API and an OpenAI-style /v1/videos) at this address. "
            "Only 127.0.0.1 or ::1 go without a token; any other address needs one (made on first use, "
            "shown once). Needs `pip install vidgen[serve]`.",
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            metavar="DIR",
            help="The served folder (default: the current one): HTTP jobs read inputs from it and write "
            "into its outputs/.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Where HTTP jobs write (default: outputs/ in the served folder)."),
    ] = None,
    allow_inputs: Annotated[
        bool,
        typer.Option(
            "--allow-inputs",
            help="Let HTTP jobs read inputs outside the served folder, and URLs (requests are data, not permission).",
        ),
    ] = False,
    max_memory: Annotated[
        float | None,
        typer.Option(
            "--max-memory",
            metavar="GIB",
            min=0.0,
            help="Memory the kept models and a run may use together, as the planner estimates it "
            "(default: the GPU's free memory; no bound on a CPU). A model that needs more than the kept "
            "ones leave frees them, oldest first; one that needs more than this alone is refused (exit 6).",
        ),
    ] = None,
    keep: Annotated[int, typer.Option("--keep", min=1, metavar="N", help="Models kept loaded at most.")] = 2,
    json_: Annotated[bool, typer.Option("--json", help="--status: print one JSON object.")] = False,
) -> None:
    """Keep models loaded and run the generation commands of this user on them.

    While it runs, `vidgen t2v ...` (and i2v, v2v, animate, control) send their job here and
    print what they always print; a loop of calls pays for loading a model once. Jobs run one at
    a time, queued on disk: SIGTERM (or --stop) interrupts the running one and keeps it queued,
    and the next server runs what is queued.

        vidgen serve &
        for p in "a fox" "a cat"; do vidgen t2v "$p" --preset tiny-cogvideox; done
        vidgen serve --status
        vidgen serve --stop
    """
    from vidgen.serve import wire

    ctx.meta["vidgen.json"] = json_
    if status or stop:
        answer = wire.ask({"op": "stop" if stop else "status"})
        if answer is None:
            if json_:
                typer.echo(json.dumps({"running": False, "socket": str(wire.socket_path()), "exit_code": 1}))
            typer.echo(f"no vidgen server answers at {escape(wire.socket_path())}", err=True)
            raise typer.Exit(1)
        if stop:
            typer.echo("the vidgen server is stopping; its queued jobs stay queued.", err=True)
            return
        _print_status(answer.get("status") or {}, json_)
        return
    _run(http, root, out, allow_inputs, max_memory, keep)


def _print_status(status: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"running": True, **status, "exit_code": 0}))
        return
    jobs = status.get("jobs", {})
    lines = [
        f"vidgen server {status.get('version')} (pid {status.get('pid')}), up {status.get('uptime_seconds')} s",
        f"socket: {status.get('socket')}",
        f"http: {status.get('http') or 'off'}",
        f"served folder: {status.get('root')}",
        "jobs: " + ", ".join(f"{count} {name}" for name, count in jobs.items()),
        f"running: {status.get('current_job') or 'nothing'}",
    ]
    loaded = status.get("loaded") or []
    lines.append("loaded: " + (", ".join(f"{m['model']} on {m['device']}" for m in loaded) or "nothing"))
    for line in lines:
        typer.echo(escape(line))


def _run(
    http: str | None, root: Path | None, out: Path | None, allow_inputs: bool, max_memory: float | None, keep: int
) -> None:
    from vidgen.cli._command import NO_SERVER
    from vidgen.serve import wire
    from vidgen.serve.cache import GIB, Cache
    from vidgen.serve.server import Server

    handler = logging.StreamHandler(sys.stderr)  # the server's own stderr, not a job's
    handler.setFormatter(logging.Formatter("vidgen serve: %(message)s"))
    log = logging.getLogger("vidgen.serve")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    address = _address(http) if http else None
    if address is not None:
        from vidgen.serve import http as web

        web.check_installed()
    os.environ[NO_SERVER] = "1"  # the runs it makes are its own
    served = (root or Path.cwd()).resolve()
    if not served.is_dir():
        raise ConfigError(f"--root {root}: not a folder.")
    cache = Cache(max_memory * GIB if max_memory is not None else None, keep)
    server = Server(
        _run_argv,
        state=wire.state_dir(),
        sock=wire.socket_path(),
        root=served,
        out=out or Path("outputs"),
        allow_inputs=allow_inputs,
        cache=cache,
    )
    try:
        server.open()
    except OSError as exc:
        raise ConfigError(f"cannot listen at {wire.socket_path()}: {exc.strerror or exc}.") from None
    try:
        # torch and diffusers now, so the first job does not pay for them.
        from vidgen.run import generate  # noqa: F401

        if address is not None:
            from vidgen.serve import http as web

            server.http = web.start(server, *address)
            server._write_info()
        log.info("listening at %s%s", server.sock_path, f" and http://{server.http}" if server.http else "")
        server.serve_forever()
    finally:
        server.close()
        stopping.reset()  # the signal that stopped the server ended it well: exit 0
    log.info("stopped")


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--http {text}: write HOST:PORT, e.g. --http 127.0.0.1:8765.")
    return host, int(port)


def _run_argv(argv: list[str]) -> int:
    """A command line run by the CLI itself, as `vidgen ARGV` would run it."""
    from vidgen.cli import app

    try:
        app(args=argv, prog_name="vidgen", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else int(ExitCode.ERROR)
    return 0
