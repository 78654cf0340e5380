"""`tcptune probe NAME|all`: prove what the kernel does.

One command per probe spec (tcptune.probe.spec.specs()), plus `all`.  Each reads the
settings that govern it, predicts the timeline with its model, watches its own loopback
sockets in the current (or --netns) network namespace and compares (tcptune.ops.probes);
the text comes from tcptune.render.probe.  Exit 0 matches, 1 differs.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated

import typer

from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, open_source
from tcptune.probe.spec import SOCKET_FILTER, specs

probe_app = typer.Typer(
    help=(
        "Prove what the kernel really does: SYN and SYN-ACK retransmissions, FIN_WAIT2 lifetime, keepalive, "
        "TIME_WAIT reuse.  Uses only the probe's own sockets on 127.0.0.1 in the namespace being audited "
        "(no firewall or interface changes).  Exit 0 matches, 1 differs, 3 a privilege is missing, "
        "130 interrupted (what was seen is still printed)."
    ),
    no_args_is_help=True,
)
app.add_typer(probe_app, name="probe")

PcapOpt = Annotated[
    Path | None,
    typer.Option(
        "--pcap",
        metavar="FILE",
        help="Write the captured packets to FILE (read with `tcpdump -r FILE`). With `all`: FILE-PROBE.pcap per probe.",
    ),
]
MaxWaitOpt = Annotated[
    float,
    typer.Option(
        "--max-wait",
        metavar="SECONDS",
        help="Watch at most this long per probe; later events are reported as not observed.",
    ),
]
_FILTERED = ", ".join(s.name for s in specs().values() if SOCKET_FILTER in s.needs)
NoCaptureOpt = Annotated[
    bool,
    typer.Option(
        "--no-capture",
        help=(
            "Do not capture packets; time events from TCP_INFO and the socket table, as without CAP_NET_RAW. "
            f"It does not lift other needs: {_FILTERED} attach a socket filter to a TCP socket, which some "
            "kernels refuse without CAP_NET_ADMIN (exit 3)."
        ),
    ),
]

DEFAULT_MAX_WAIT = 30.0


class _Status:
    """The status line on stderr while a probe waits, only when stderr is a terminal."""

    def __init__(self):
        from tcptune.render.output import Output

        self.out = Output.detect(sys.stderr)
        self.shown = 0

    def show(self, name, elapsed, left, events) -> None:
        from tcptune.render.probe import progress_line

        line = progress_line(name, elapsed, left, events, self.out)
        sys.stderr.write("\r" + line.ljust(self.shown))
        sys.stderr.flush()
        self.shown = len(line)

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * self.shown + "\r")
            sys.stderr.flush()
            self.shown = 0

    @property
    def progress(self):
        return self.show if self.out.tty else None


def _emit(result, as_json: bool, text) -> None:
    from tcptune.render.output import Output

    out = Output.detect(sys.stdout)
    sys.stdout.write(out.json(result.to_json()) if as_json else text(result, out) + "\n")


def _run_one(name: str, netns, pcap, max_wait, no_capture, as_json, options: dict) -> None:
    from tcptune.ops import probes
    from tcptune.render.probe import render_probe

    source = open_source(None, None, netns)
    status = _Status()
    try:
        result = probes.run_probe(
            source,
            name,
            max_wait,
            pcap=str(pcap) if pcap else None,
            capture=not no_capture,
            progress=status.progress,
            options=options,
        )
    finally:
        status.clear()
    _emit(result, as_json, render_probe)
    raise typer.Exit(probes.exit_code(result.verdict))


def _shared(
    pcap: PcapOpt = None,
    max_wait: MaxWaitOpt = DEFAULT_MAX_WAIT,
    no_capture: NoCaptureOpt = False,
    as_json: JsonOpt = False,
    netns: NetnsOpt = None,
) -> None:
    """The options every probe command has (its signature is the template of each command)."""


def _signature(spec) -> inspect.Signature:
    """_shared's options plus the spec's own (ProbeSpec.options), as Typer reads them."""
    base = inspect.signature(_shared, eval_str=True)
    own = [
        inspect.Parameter(
            o.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[o.kind | None, typer.Option(o.flag, metavar=o.metavar, help=o.help)],
        )
        for o in spec.options
    ]
    return base.replace(parameters=[*base.parameters.values(), *own])


def _register(spec, group: typer.Typer) -> None:
    def command(pcap, max_wait, no_capture, as_json, netns, **options) -> None:
        _run_one(spec.name, netns, pcap, max_wait, no_capture, as_json, options)

    command.__signature__ = _signature(spec)  # noqa: V101 - read by inspect.signature(), and so by Typer
    group.command(spec.name, help=f"{spec.summary}\n\nExample: {spec.example}")(command)


for _spec in specs().values():
    _register(_spec, probe_app)


def probe_all(
    pcap: PcapOpt = None,
    max_wait: MaxWaitOpt = DEFAULT_MAX_WAIT,
    no_capture: NoCaptureOpt = False,
    as_json: JsonOpt = False,
    netns: NetnsOpt = None,
) -> None:
    """Run, one after another, every probe whose whole predicted timeline fits in --max-wait.

    Example: tcptune probe all --max-wait 10 --pcap /tmp/p.pcap
    """
    from tcptune.ops import probes
    from tcptune.render.probe import render_all

    source = open_source(None, None, netns)
    status = _Status()
    try:
        result = probes.run_all(
            source, max_wait, pcap=str(pcap) if pcap else None, capture=not no_capture, progress=status.progress
        )
    finally:
        status.clear()
    _emit(result, as_json, render_all)
    raise typer.Exit(result.exit_code)


probe_app.command("all")(probe_all)
