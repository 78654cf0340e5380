"""Options every command shares, and the one place a command gets its data source.

Source options: the live host (default), ``--root DIR``, ``--sysctl-dump FILE|-``
and ``--netns NAME|PID|PATH``.  Output options: ``--json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tcptune.errors import ExitCode, TcptuneError

SOURCE_PANEL = "Where to read from"

RootOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--root",
        metavar="DIR",
        help="Read a directory shaped like / (proc/sys/net, proc/net): a saved snapshot or a container's root.",
        rich_help_panel=SOURCE_PANEL,
    ),
]
SysctlDumpOpt = Annotated[
    Optional[str],
    typer.Option(
        "--sysctl-dump",
        metavar="FILE|-",
        help="Read values from `sysctl -a` output (a file, or - for stdin): `ssh host sysctl -a | tcptune audit --sysctl-dump -`.",
        rich_help_panel=SOURCE_PANEL,
    ),
]
NetnsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--netns",
        metavar="NAME|PID|PATH",
        help="Enter this network namespace first (`ip netns` name, a pid, or /proc/PID/ns/net). Needs CAP_SYS_ADMIN.",
        rich_help_panel=SOURCE_PANEL,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (shape in tcptune(8)) instead of a table.")]

MAX_DUMP_BYTES = 16 * 1024 * 1024


def read_dump_text(spec: str) -> tuple[str, str]:
    """(text, label) of a --sysctl-dump argument; '-' is stdin."""
    if spec == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise TcptuneError(
                "--sysctl-dump -: stdin is a terminal", ExitCode.BAD_INPUT, hint="pipe `sysctl -a` into tcptune"
            )
        data = sys.stdin.buffer.read(MAX_DUMP_BYTES + 1)
        label = "<stdin>"
    else:
        try:
            with open(spec, "rb") as fh:
                data = fh.read(MAX_DUMP_BYTES + 1)
        except OSError as exc:
            raise TcptuneError(f"--sysctl-dump {spec}: {exc.strerror}", ExitCode.BAD_INPUT) from exc
        label = spec
    if len(data) > MAX_DUMP_BYTES:
        raise TcptuneError(f"{label}: larger than {MAX_DUMP_BYTES >> 20} MiB; not a sysctl dump", ExitCode.BAD_INPUT)
    try:
        return data.decode("utf-8"), label
    except UnicodeDecodeError as exc:
        raise TcptuneError(f"{label}: not UTF-8 text (byte {exc.start})", ExitCode.BAD_INPUT) from exc


def open_source(root: Optional[Path] = None, sysctl_dump: Optional[str] = None, netns: Optional[str] = None):
    """Build the Host (or DumpHost) a command reads from, entering --netns first."""
    given = [name for name, v in (("--root", root), ("--sysctl-dump", sysctl_dump), ("--netns", netns)) if v]
    if len(given) > 1:
        raise TcptuneError(f"{' and '.join(given)} cannot be combined", ExitCode.BAD_INPUT, hint="pick one source")
    from tcptune.host import DumpHost, Host

    if sysctl_dump:
        from tcptune.sysctlconf import parse_sysctl_dump

        text, label = read_dump_text(sysctl_dump)
        return DumpHost(parse_sysctl_dump(text, source=label), label)
    if netns:
        from tcptune.netns import enter_netns

        enter_netns(netns)
        return Host("/")
    return Host(root or "/")


def use_color() -> bool:
    """Colour only on a terminal and never when NO_COLOR is set (https://no-color.org)."""
    return "NO_COLOR" not in os.environ and sys.stdout.isatty()


def emit_json(data) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
