"""`tcptune metrics`: Prometheus text for node_exporter's textfile collector."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from tcptune.cli import completion
from tcptune.cli._app import app
from tcptune.cli.common import NetnsOpt, open_source

EXAMPLE = """
Examples:

  tcptune metrics                                   # print the exposition text

  tcptune metrics --textfile /var/lib/prometheus/node-exporter --profile web-server

  tcptune metrics --ports 80,443 --textfile DIR     # listener series for these ports only

A systemd timer that refreshes the file every minute and alerting rules: contrib/ in the
source tree, and tcptune(8).
"""


TextfileOpt = Annotated[
    str | None,
    typer.Option("--textfile", metavar="DIR", help="Write DIR/tcptune.prom atomically instead of printing."),
]
ProfileOpt = Annotated[
    str,
    typer.Option(
        "--profile",
        "-p",
        metavar="NAME|FILE",
        help="Audit against this profile.",
        autocompletion=completion.profile_names,
    ),
]
PortsOpt = Annotated[
    str | None, typer.Option("--ports", metavar="N,...", help="Listener series for these ports (default: top N).")
]
TopOpt = Annotated[int, typer.Option("--top", min=1, max=64, help="Listeners to export without --ports.")]
IntervalOpt = Annotated[
    float, typer.Option("--interval", metavar="SECONDS", help="doctor's counter window (0: one sample).")
]


@app.command("metrics", epilog=EXAMPLE)
def metrics_cmd(
    textfile: TextfileOpt = None,
    profile: ProfileOpt = "kernel-default",
    ports: PortsOpt = None,
    top: TopOpt = 10,
    interval: IntervalOpt = 1.0,
    netns: NetnsOpt = None,
) -> None:
    """Export socket states, listener queues, audit drift and doctor findings as Prometheus metrics.

    Exit 0 when the collection succeeded, 1 when part of it failed (the file then says
    tcptune_last_run_success 0), 2 for bad input.
    """
    from tcptune.ops.metrics import collect_metrics, parse_ports
    from tcptune.render.metrics import render_prometheus

    if textfile is not None and not textfile.strip():
        from tcptune.errors import ExitCode, TcptuneError

        raise TcptuneError("--textfile is empty", ExitCode.BAD_INPUT, hint="pass the textfile collector's directory")
    wanted = parse_ports(ports)
    data = collect_metrics(open_source(None, None, netns), profile=profile, ports=wanted, top=top, interval=interval)
    text = render_prometheus(data, time.time())
    if textfile is None:
        sys.stdout.write(text)
    else:
        from tcptune.host.textfile import write_textfile

        write_textfile(textfile, text)
    if data.error:
        sys.stderr.write(f"tcptune: error: {data.error}\n")
    raise typer.Exit(0 if data.success else 1)
