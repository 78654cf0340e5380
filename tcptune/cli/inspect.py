"""`tcptune show` and `tcptune explain`: what the kernel has, and what it means."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tcptune.cli import completion
from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, RootOpt, SysctlDumpOpt, emit_json, open_source


@app.command("show")
def show(
    patterns: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[PATTERN]...",
            help="Only keys containing PATTERN, or matching a glob like 'tcp_keepalive_*'.",
            show_default=False,
            autocompletion=completion.sysctl_keys,
        ),
    ] = None,
    all_keys: Annotated[
        bool, typer.Option("--all", help="Also list knowledge-base keys this kernel does not have.")
    ] = False,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    sysctl_dump: SysctlDumpOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Show every TCP-related parameter: value, unit, kernel default, and whether it differs.

    Lists net.ipv4.tcp_* that this kernel has plus the net.core and net.ipv4 keys a TCP tuner
    needs (somaxconn, netdev_max_backlog, ip_local_port_range, ...).  A '*' in the last column
    marks a value that differs from the kernel default.

    Examples: tcptune show keepalive;  tcptune show 'tcp_*mem' --json
    """
    from tcptune.ops.inspect import show as show_op

    result = show_op(open_source(root, sysctl_dump, netns), patterns, all_keys=all_keys)
    if json_out:
        emit_json(result.to_json())
        return
    from tcptune.render.inspect import render_show
    from tcptune.render.output import Output

    typer.echo(render_show(result, Output.detect(sys.stdout)))


@app.command("explain")
def explain(
    key: Annotated[
        str,
        typer.Argument(
            help="A parameter, e.g. tcp_fin_timeout or net.core.somaxconn.", autocompletion=completion.sysctl_keys
        ),
    ],
    json_out: JsonOpt = False,
    root: RootOpt = None,
    sysctl_dump: SysctlDumpOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Explain a parameter: meaning, unit, range, default, kernel versions, scope, TCP states, source.

    Also shows its current value on the chosen source.  Example: tcptune explain tcp_fin_timeout
    (it governs orphaned FIN_WAIT2 sockets, not TIME_WAIT, which is fixed at 60 s).
    """
    from tcptune.ops.inspect import explain as explain_op
    from tcptune.ops.inspect import find_param

    param = find_param(key)  # before the source is opened: an unknown key needs no host
    result = explain_op(param, open_source(root, sysctl_dump, netns))
    if json_out:
        emit_json(result.to_json())
        return
    from tcptune.render.inspect import render_explain
    from tcptune.render.output import Output

    typer.echo(render_explain(result, Output.detect(sys.stdout)))
