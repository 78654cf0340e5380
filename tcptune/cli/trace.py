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

  tcptune trace --port 8888 --count 10       # live on lo (root), both ends' states

  tcptune trace -i eth0 --host 192.0.2.7 --duration 30 --pcap seen.pcap --json

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
    interface: Annotated[
        str | None,
        typer.Option("--interface", "-i", metavar="IF", help="Live: the interface to capture on (default lo)."),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", "-c", metavar="N", help="Live: stop after N TCP segments.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", metavar="S", help="Live: stop after S seconds.")
    ] = None,
    pcap: Annotated[
        str | None,
        typer.Option(
            "--pcap", metavar="FILE", help="Live: also write what was captured as a pcap (tcpdump -r, --read)."
        ),
    ] = None,
    absolute: Annotated[
        bool, typer.Option("--absolute", help="Raw sequence numbers in the labels, not relative to each ISN.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Group a capture's TCP segments into connections and label each as the tutorials do
    (SYN J, SYN-ACK K, ack J+1, ACK K+1, FIN M, ACK M+1), with the state of both ends after it.

    Without --read or --scenario it captures live (root or CAP_NET_RAW; Ctrl-C ends it and
    prints what was seen), with a kernel-side filter, and reads each local end's state from the
    kernel (sock_diag) after each burst of segments: a disagreement is shown.
    States are inferred with the TCP state machine (RFC 9293 3.3.2); sequence numbers are
    relative to each side's ISN (J: client, K: server) unless --absolute.
    """
    live = {"--interface": interface, "--count": count, "--duration": duration, "--pcap": pcap}
    given = [opt for opt, v in live.items() if v is not None]
    if read is not None and scenario is not None:
        raise TcptuneError("give --read FILE or --scenario NAME, not both", ExitCode.BAD_INPUT)
    if (read is not None or scenario is not None) and given:
        what = "--read" if read is not None else "--scenario"
        raise TcptuneError(
            f"{', '.join(given)}: live-capture options, not for {what}",
            ExitCode.BAD_INPUT,
            hint="drop them, or drop " + what + " to capture live",
        )
    if scenario is not None:
        if port is not None or host is not None:
            raise TcptuneError("--port/--host: not for --scenario (it picks its own)", ExitCode.BAD_INPUT)
        _scenario(scenario, json_out, absolute)
    elif read is not None:
        _read(read, port, host, json_out, absolute)
    else:
        from tcptune.ops.trace import LiveOptions

        _live(LiveOptions(interface or "lo", absolute, port, host, count, duration, pcap), json_out, absolute)


def _read(path: str, port: int | None, host: str | None, json_out: bool, absolute: bool) -> None:
    from tcptune.ops.trace import TraceFilter, read_trace
    from tcptune.render.output import Output
    from tcptune.render.trace import render_connection_items, render_json_document, render_step_items

    keep = TraceFilter(port, host)
    if json_out:
        from itertools import chain

        run = read_trace(path, lambda got, spill: render_connection_items(got, absolute, spill), keep, True, absolute)
        sys.stdout.writelines(render_json_document(chain.from_iterable(run.chunks), run.source, run.stats, absolute))
        return
    out = Output.detect(sys.stdout)
    run = read_trace(path, lambda steps, _spill: render_step_items(steps, out, absolute), keep, False, absolute)
    for pieces in run.chunks:  # one write per batch of packets
        sys.stdout.write("".join(pieces))
    summary = f"{run.stats.tcp} TCP segments of {run.stats.records} packets read from {path}"
    sys.stdout.write("\n" + out.line(summary) + "\n")


def _live(opts, json_out: bool, absolute: bool) -> None:
    from tcptune.cli.common import emit_json
    from tcptune.core.trace import connections_of
    from tcptune.ops.trace import live_trace
    from tcptune.render.output import Output
    from tcptune.render.trace import render_kernel_check, render_trace_json, render_trace_text

    run = live_trace(opts)
    if json_out:
        conns = connections_of(run.items())
        emit_json({**render_trace_json(conns, run.source, run.stats, absolute), "notes": run.notes})
        return
    out = Output.detect(sys.stdout)
    for line in render_trace_text(run.items(), out, absolute):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()  # as each segment arrives
    for c in run.connections:
        for line in render_kernel_check(c, out):
            sys.stdout.write(line + "\n")
    summary = f"{run.stats.tcp} TCP segments captured {run.source}"
    sys.stdout.write("\n" + out.line(summary) + "\n")
    for note in run.notes:
        sys.stdout.write(out.line(f"note: {note}") + "\n")


def _scenario(name: str, json_out: bool, absolute: bool) -> None:
    from tcptune.cli.common import emit_json
    from tcptune.ops.trace import run_scenario, scenario_names
    from tcptune.render.output import Output
    from tcptune.render.trace import render_kernel_check, render_scenario_list, render_trace_json, render_trace_text

    out = Output.detect(sys.stdout)
    if name == "list":
        typer.echo(render_scenario_list(scenario_names(), out))
        return
    run = run_scenario(name, absolute)
    if json_out:
        emit_json({**render_trace_json(run.connections, f"scenario {name}", run.stats, absolute), "notes": run.notes})
        return
    for line in render_trace_text([(c, a) for c in run.connections for a in c.packets], out, absolute):
        typer.echo(line)
    for c in run.connections:
        for line in render_kernel_check(c, out):
            typer.echo(line)
    for note in run.notes:
        typer.echo(out.line(f"note: {note}"))
