"""`tcptune trace`: the tutorials' tcpdump walkthroughs, with both ends' states."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt

EXAMPLE = """
Examples:

  tcpdump -i lo -w hs.pcap 'tcp port 8888'   # then, in another shell: nc -l 8888 / nc 127.0.0.1 8888

  tcptune trace --read hs.pcap               # SYN J, SYN-ACK K ack J+1, ACK K+1 ... with states

  tcptune trace --read big.pcapng --port 443 --json
"""


@app.command("trace", epilog=EXAMPLE)
def trace_cmd(
    read: Annotated[str, typer.Option("--read", metavar="FILE", help="A pcap or pcapng capture to annotate.")],
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
    from tcptune.cli.common import emit_json
    from tcptune.ops.trace import TraceFilter, read_trace
    from tcptune.render.output import Output
    from tcptune.render.trace import render_trace_json, render_trace_text

    run = read_trace(read, TraceFilter(port, host))
    if json_out:
        conns = list({id(c): c for c, _ in run.items}.values())
        emit_json(render_trace_json(conns, run.source, run.stats))
        return
    out = Output.detect(sys.stdout)
    for line in render_trace_text(run.items, out):
        sys.stdout.write(line + "\n")
    sys.stdout.write(
        "\n" + out.line(f"{run.stats.tcp} TCP segments of {run.stats.records} packets read from {read}") + "\n"
    )
