"""`tcptune states`: how many TCP sockets are in each state, and who holds them."""

from __future__ import annotations

import sys
import time
from enum import Enum
from typing import Annotated

import typer

from tcptune.cli import completion
from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, RootOpt, emit_json, open_source
from tcptune.errors import ExitCode, TcptuneError

# The --by choices (Typer takes them from an Enum); the values are what ops and JSON use.
By = Enum("By", {v.replace("-", "_"): v for v in ("state", "local-port", "peer", "process")}, type=str)


def _parse_states(values: list[str] | None):
    from tcptune.kernel.states import parse_state_name

    out = set()
    for v in values or []:
        for part in v.split(","):
            if not part.strip():
                continue
            try:
                out.add(parse_state_name(part))
            except ValueError as exc:
                raise TcptuneError(f"--state {part}: {exc}", ExitCode.BAD_INPUT) from None
    return out or None


ByOpt = Annotated[
    By | None, typer.Option("--by", help="Also group sockets by state, local port, peer address or owning process.")
]
StateOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--state",
        metavar="STATE",
        help="Only these states (repeat or comma-separate: ESTABLISHED, time-wait, FIN-WAIT-2 ...).",
        autocompletion=completion.state_names,
    ),
]
TopOpt = Annotated[
    int, typer.Option("--top", metavar="N", min=0, help="Show the N largest groups with --by (0 = all).")
]
WatchOpt = Annotated[
    float | None,
    typer.Option(
        "--watch",
        metavar="SECONDS",
        min=0.1,
        help="Redraw every SECONDS with the change since the previous sample (Ctrl-C stops).",
    ),
]
CountOpt = Annotated[
    int | None, typer.Option("--count", metavar="N", min=1, help="With --watch: stop after N samples.")
]


@app.command("states")
def states_cmd(
    by: ByOpt = None,
    state: StateOpt = None,
    ipv4: Annotated[bool, typer.Option("--ipv4", "-4", help="Only IPv4 sockets.")] = False,
    ipv6: Annotated[bool, typer.Option("--ipv6", "-6", help="Only IPv6 sockets.")] = False,
    top: TopOpt = 20,
    watch: WatchOpt = None,
    count: CountOpt = None,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Count TCP sockets per state (IPv4 and IPv6), with bars, totals and warnings tied to settings.

    Pending connection requests count as SYN_RECV, as `ss` shows them.  Reads the kernel
    through netlink sock_diag; --root snapshots (and hosts without sock_diag) through
    /proc/net/tcp and tcp6.

    Examples: tcptune states;  tcptune states --by process --state close-wait;
    tcptune states --by local-port --top 5;  tcptune states --watch 2 --netns web1
    """
    if count is not None and watch is None:
        raise TcptuneError("--count only makes sense with --watch", ExitCode.BAD_INPUT)
    states = _parse_states(state)
    host = open_source(root, None, netns)
    try:
        _run(host, by.value if by else None, states, _families(ipv4, ipv6), top or None, watch, count, json_out)
    except KeyboardInterrupt:
        if watch is None:
            raise


def _families(ipv4: bool, ipv6: bool) -> tuple[int, ...]:
    import socket

    if ipv4 and not ipv6:
        return (socket.AF_INET,)
    if ipv6 and not ipv4:
        return (socket.AF_INET6,)
    return (socket.AF_INET, socket.AF_INET6)


def _run(host, by, states, families, top, watch, count, json_out) -> None:
    """Sample, render, and with --watch repeat every WATCH seconds (COUNT times)."""
    from tcptune.core.socket_summary import build_report
    from tcptune.ops.sockets import sample
    from tcptune.render.output import Output

    out = Output.detect(sys.stdout)
    previous = None
    n = 0
    while True:
        s = sample(host, by, states, families)
        report = build_report(s.summary, s.warnings, by, top, previous, only=states)
        n += 1
        if json_out and watch is None:
            emit_json(report)
        elif json_out:
            import json

            report["time"] = time.time()
            sys.stdout.write(json.dumps(report, separators=(",", ":")) + "\n")
        else:
            from tcptune.render.states import render, watch_header

            if watch is not None:
                sys.stdout.write(watch_header(out, watch, n == 1))
            sys.stdout.write(render(report, by, out) + "\n")
        sys.stdout.flush()
        if watch is None or (count is not None and n >= count):
            return
        previous = report["states"]
        time.sleep(watch)
