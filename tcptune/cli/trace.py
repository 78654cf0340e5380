"""`tcptune trace`: the tutorials' tcpdump walkthroughs, with both ends' states."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt
from tcptune.errors import ExitCode, TcptuneError

EXAMPLE = """
Examples:

  tcpdump -i lo -w hs.pcap 'tcp port 8888'   # then, in another shell: nc -l 8888 / nc 127.0.0.1 8888

  tcptune trace --read hs.pcap               # SYN J, SYN-ACK K ack J+1, ACK K+1 ... with states

  tcptune trace --read big.pcapng --port 443 --json

  tcptune trace --scenario list               # the tutorials' experiments, run in a private namespace

  tcptune trace --scenario syn-sent           # a SYN never answered: retransmissions, then the give-up
"""


def _scenarios(incomplete: str) -> list[str]:
    from tcptune.ops.trace import scenario_names

    return [n for n in ["list", *scenario_names()] if n.startswith(incomplete)]


@app.command("trace", epilog=EXAMPLE)
def trace_cmd(
    read: Annotated[
        str | None, typer.Option("--read", metavar="FILE", help="A pcap or pcapng capture to annotate.")
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(
            "--scenario",
            metavar="NAME|list",
            help="Run a tutorial's experiment on loopback in a new private network namespace (needs root) and trace it.",
            autocompletion=_scenarios,
        ),
    ] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="Only connections on this port.")] = None,
    host: Annotated[
        str | None, typer.Option("--host", metavar="ADDR", help="Only connections with this address.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Group a capture's TCP segments into connections and label each as the tutorials do
    (SYN J, SYN-ACK K, ack J+1, ACK K+1, FIN M, ACK M+1), with the state of both ends after it.

    States are inferred with the TCP state machine (RFC 9293 3.3.2); sequence numbers are
    relative to each side's ISN (J: client, K: server).
    """
    if (read is None) == (scenario is None):
        raise TcptuneError(
            "give --read FILE or --scenario NAME", ExitCode.BAD_INPUT, hint="tcptune trace --scenario list"
        )
    if scenario is not None:
        _scenario(scenario, json_out)
    else:
        _read(read, port, host, json_out)


def _read(path: str, port: int | None, host: str | None, json_out: bool) -> None:
    from tcptune.cli.common import emit_json
    from tcptune.core.trace import connections_of
    from tcptune.ops.trace import TraceFilter, read_trace
    from tcptune.render.output import Output
    from tcptune.render.trace import render_trace_json, render_trace_text

    run = read_trace(path, TraceFilter(port, host))
    if json_out:
        emit_json(render_trace_json(connections_of(run.items), run.source, run.stats))
        return
    out = Output.detect(sys.stdout)
    for line in render_trace_text(run.items, out):
        sys.stdout.write(line + "\n")
    summary = f"{run.stats.tcp} TCP segments of {run.stats.records} packets read from {path}"
    sys.stdout.write("\n" + out.line(summary) + "\n")


def _scenario(name: str, json_out: bool) -> None:
    from tcptune.cli.common import emit_json
    from tcptune.ops.trace import run_scenario, scenario_names
    from tcptune.render.output import Output
    from tcptune.render.trace import render_kernel_check, render_scenario_list, render_trace_json, render_trace_text

    out = Output.detect(sys.stdout)
    if name == "list":
        typer.echo(render_scenario_list(scenario_names(), out))
        return
    run = run_scenario(name)
    if json_out:
        emit_json({**render_trace_json(run.connections, f"scenario {name}", run.stats), "notes": run.notes})
        return
    for line in render_trace_text([(c, a) for c in run.connections for a in c.packets], out):
        typer.echo(line)
    for c in run.connections:
        for line in render_kernel_check(c, out):
            typer.echo(line)
    for note in run.notes:
        typer.echo(out.line(f"note: {note}"))
