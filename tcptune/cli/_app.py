"""The Typer application object; command modules import it and add their commands."""

from __future__ import annotations

import typer

from tcptune import __version__

app = typer.Typer(
    name="tcptune",
    help=(
        "Audit, tune and prove the Linux kernel's TCP behaviour.\n\n"
        "Reads net.ipv4.tcp_* and friends, audits them against profiles, applies profiles "
        "safely, counts sockets per TCP state and runs probes that show what the kernel really does.\n\n"
        "Exit codes: 0 ok, 1 findings (drift, differs, rejected write), 2 bad input, 3 needs privileges, "
        "70 an internal error (a bug: please report it). "
        "Add --traceback anywhere for the Python stack of an error."
    ),
    no_args_is_help=True,
    # bash, zsh and fish: `tcptune --install-completion`, or --show-completion to see the script
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tcptune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    traceback: bool = typer.Option(
        False, "--traceback", help="On error, print the Python stack as well as the one-line message."
    ),
) -> None:
    """Audit, tune and prove the Linux kernel's TCP behaviour."""
