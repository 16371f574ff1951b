"""The `vidgen` command line, and its single error boundary.

Nothing here imports torch or diffusers at import time, so `vidgen --help` stays instant.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Annotated, Any

import typer

from vidgen import __version__
from vidgen.cli._help import HelpCommand, HelpGroup
from vidgen.config.settings import traceback_requested
from vidgen.core import stopping
from vidgen.core.errors import ExitCode, VidgenError, is_oom
from vidgen.core.stopping import Terminated
from vidgen.core.terminal import escape


def _on_signal(signum: int, frame: Any) -> None:
    # The first signal stops the run; later ones must not break off the cleanup it started.
    for other in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)
    stopping.request(signum)
    if not stopping.deferring():  # during a fork, check() raises it right after
        raise Terminated(signum)


def _on_interrupt(signum: int, frame: Any) -> None:
    stopping.request(signum)
    if not stopping.deferring():
        raise KeyboardInterrupt


def _install_signal_handlers() -> None:
    stopping.reset()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:  # `nohup` set SIGHUP to ignore: keep that
            signal.signal(signum, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_interrupt)


def _fail(ctx: typer.Context, code: int, message: str, answered: bool = False) -> None:
    """One line on stderr and the exit code; with --json also the JSON answer, unless the
    command already printed one that carries the error (`answered`)."""
    from vidgen.models.parallel import report_error

    if report_error(message, int(code)):
        # A rank of `--gpus N`: vidgen's launcher prints the first rank's error, once.
        raise typer.Exit(int(code))
    # Messages quote prompts, paths and ids from files: escaped, they stay one plain line.
    typer.echo(f"Error: {escape(message)}", err=True)
    if ctx.meta.get("vidgen.json") and not answered:
        typer.echo(json.dumps({"outputs": [], "exit_code": int(code), "error": message}))
    raise typer.Exit(int(code))


class _Boundary(HelpGroup):
    """Turns every failure into one line on stderr and the exit code of DESIGN.md §5."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        ctx.meta["vidgen.argv"] = list(args)  # checked inside the boundary, by invoke
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:
        from vidgen import families

        if families.PLUGIN_ERROR:
            _fail(ctx, ExitCode.CONFIG, families.PLUGIN_ERROR)
        try:
            _check_argv(ctx)
            result = super().invoke(ctx)
            stopping.check()  # a signal recorded during a late fork still stops with its code
            return result
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors keep Typer's exit 2
            raise
        except VidgenError as exc:
            if ctx.meta.get("vidgen.traceback"):
                raise
            _fail(ctx, exc.exit_code, str(exc), getattr(exc, "answered", False))
        except BrokenPipeError:
            # The reader went away (`vidgen presets list | head`): stop quietly, as `cat` would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(128 + signal.SIGPIPE) from None
        except Terminated as exc:
            name = signal.Signals(exc.signum).name
            _fail(ctx, 128 + exc.signum, f"stopped by {name}; no partial file was left under a final name.")
        except KeyboardInterrupt:
            _fail(ctx, ExitCode.INTERRUPTED, "interrupted; no partial file was left under a final name.")
        except OSError as exc:
            if ctx.meta.get("vidgen.traceback") or not exc.filename:
                raise
            # A file system refusal vidgen did not foresee (VIDGEN_CACHE a file or read-only, a
            # full disk under the model cache): a write error that names the place.
            from vidgen.io.media import write_error

            hint = "check that path (VIDGEN_CACHE, --out) and its permissions"
            _fail(ctx, ExitCode.WRITE, str(write_error(exc.filename, exc, "cannot use", hint)))
        except Exception as exc:
            if ctx.meta.get("vidgen.traceback"):
                raise
            if is_oom(exc):
                # An allocation failure outside a run's phases (a batch report, a decode's encode).
                _fail(
                    ctx, ExitCode.OUT_OF_MEMORY, "the process ran out of memory; use fewer --frames or a smaller size."
                )
            text = str(exc).strip().splitlines()
            detail = f": {text[0]}" if text else ""
            _fail(
                ctx,
                ExitCode.ERROR,
                f"internal error ({type(exc).__name__}{detail}); rerun with --traceback or VIDGEN_TRACEBACK=1 "
                "and report it.",
            )


def _check_argv(ctx: typer.Context) -> None:
    """Every argument is UTF-8 text: bytes a shell passed that are not (`$'\\xe9'`) are refused
    here, once for every command, before any of them reaches a prompt, a path or a file name."""
    from vidgen.core import text

    argv = ctx.meta.get("vidgen.argv") or []
    for number, arg in enumerate(argv, start=1):
        try:
            text.check(arg, f"command-line argument {number}")
        except VidgenError:
            ctx.meta["vidgen.json"] = "--json" in argv  # no command ran to say: answer as it would
            raise


app = typer.Typer(
    cls=_Boundary,
    name="vidgen",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Generate videos with the open diffusion models in Hugging Face diffusers.",
    epilog="Quick start, offline on CPU:\n\n"
    '    vidgen t2v "a red fox running through fresh snow" --preset tiny-cogvideox',
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vidgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the full traceback of an error (or set VIDGEN_TRACEBACK=1).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.meta["vidgen.traceback"] = traceback or traceback_requested()


def _register() -> None:
    from vidgen.cli import (
        animate,
        batch,
        control,
        decode,
        doctor,
        finish,
        gallery,
        i2v,
        inspect,
        ls,
        models,
        presets,
        preview,
        replay,
        serve,
        t2v,
        v2v,
    )

    app.command(cls=HelpCommand, rich_help_panel="Generate")(t2v.t2v)
    app.command(cls=HelpCommand, rich_help_panel="Generate")(i2v.i2v)
    app.command(cls=HelpCommand, rich_help_panel="Generate")(v2v.v2v)
    app.command(cls=HelpCommand, rich_help_panel="Generate")(animate.animate)
    app.command(cls=HelpCommand, rich_help_panel="Generate")(control.control)
    app.command(cls=HelpCommand, rich_help_panel="Generate")(replay.replay)
    app.command(cls=HelpCommand, rich_help_panel="Generate")(batch.batch)
    app.command(cls=HelpCommand, rich_help_panel="Generate")(decode.decode)
    app.command(cls=HelpCommand, rich_help_panel="Generate")(preview.preview)
    app.command(cls=HelpCommand, rich_help_panel="Generate")(serve.serve)
    app.command(cls=HelpCommand, rich_help_panel="Finish")(finish.interpolate)
    app.command(cls=HelpCommand, rich_help_panel="Finish")(finish.upscale)
    app.add_typer(presets.app, name="presets", rich_help_panel="Information")
    app.command(cls=HelpCommand, rich_help_panel="Information")(models.models)
    app.command(cls=HelpCommand, rich_help_panel="Information")(inspect.inspect)
    app.command(cls=HelpCommand, rich_help_panel="Information")(ls.ls)
    app.command(cls=HelpCommand, rich_help_panel="Information")(gallery.gallery)
    app.command(cls=HelpCommand, rich_help_panel="Information")(doctor.doctor)


_register()


def main() -> None:
    _install_signal_handlers()
    app(prog_name="vidgen")
