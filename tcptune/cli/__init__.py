"""The command line: the only layer that imports Typer, and the one error boundary.

Each command group lives in its own module and registers itself on ``app``.
Modules keep heavy imports (scapy, psutil, tabulate) inside functions so that
``tcptune audit`` starts fast.
"""

from __future__ import annotations

import os
import sys

import typer

from tcptune import __version__
from tcptune.errors import ExitCode, TcptuneError

app = typer.Typer(
    name="tcptune",
    help=(
        "Audit, tune and prove the Linux kernel's TCP behaviour.\n\n"
        "Reads net.ipv4.tcp_* and friends, audits them against profiles, applies profiles "
        "safely, counts sockets per TCP state and runs probes that show what the kernel really does.\n\n"
        "Exit codes: 0 ok, 1 findings (drift, differs, rejected write), 2 bad input, 3 needs privileges. "
        "Add --traceback anywhere for the Python stack of an error."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tcptune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    traceback: bool = typer.Option(False, "--traceback", help="On error, print the Python stack as well as the one-line message."),
) -> None:
    """Audit, tune and prove the Linux kernel's TCP behaviour."""


# Command modules register themselves on `app` when imported.
from tcptune.cli import inspect as _inspect  # noqa: E402,F401  show, explain
from tcptune.cli import profiles as _profiles  # noqa: E402,F401  profiles, audit


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    # --traceback is accepted anywhere on the line (tcptune audit --traceback ...).
    show_tb = "--traceback" in args or os.environ.get("TCPTUNE_TRACEBACK") == "1"
    args = [a for a in args if a != "--traceback"]
    try:
        app(args=args, prog_name="tcptune")
    except TcptuneError as exc:
        if show_tb:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"tcptune: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("tcptune: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        # `tcptune show | head`: the reader went away; that's not an error.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        sys.exit(ExitCode.OK)
