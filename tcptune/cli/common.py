"""Options every command shares, and the one place a command gets its data source.

Source options: the live host (default), ``--root DIR``, ``--sysctl-dump FILE|-``
and ``--netns NAME|PID|PATH``.  Output options: ``--json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.source import open_source  # noqa: F401  (re-exported: the commands' one way in)

SOURCE_PANEL = "Where to read from"


def _not_empty(option: str, what: str, default: str = "the live host"):
    """A Typer parser that refuses an empty value instead of quietly meaning "the live host".

    `--netns "$(pidof -s nginx)"` with nginx not running passes "", and reading the host
    instead of the container (or, for apply, writing it) is the worst possible fallback.
    The check runs on the raw string: Path("") would already have become ".".
    """

    def parse(value: str):
        if value is None:
            return None
        if not value.strip():
            raise TcptuneError(
                f"{option} is empty; nothing was read",
                ExitCode.BAD_INPUT,
                hint=f"pass {what}, or leave {option} out for {default}; an unset variable or a `$(pidof ...)` that found nothing expands to an empty value",
            )
        return value

    parse.__name__ = option.lstrip("-").replace("-", "_")
    return parse


def _root_arg(value: str) -> Path:
    return Path(_not_empty("--root", "a directory")(value))


RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        metavar="DIR",
        parser=_root_arg,
        help="Read a directory shaped like / (proc/sys/net, proc/net): a saved snapshot or a container's root.",
        rich_help_panel=SOURCE_PANEL,
    ),
]
SysctlDumpOpt = Annotated[
    str | None,
    typer.Option(
        "--sysctl-dump",
        metavar="FILE|-",
        parser=_not_empty("--sysctl-dump", "a file or - for stdin"),
        help="Read values from `sysctl -a` output (a file, or - for stdin): `ssh host sysctl -a | tcptune audit --sysctl-dump -`.",
        rich_help_panel=SOURCE_PANEL,
    ),
]
NetnsOpt = Annotated[
    str | None,
    typer.Option(
        "--netns",
        metavar="NAME|PID|PATH",
        parser=_not_empty("--netns", "a namespace name, a pid or a path"),
        help="Enter this network namespace first (`ip netns` name, a pid, or /proc/PID/ns/net). Needs CAP_SYS_ADMIN.",
        rich_help_panel=SOURCE_PANEL,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (shape in tcptune(8)) instead of a table.")]


def emit_json(data) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
