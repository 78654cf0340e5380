"""`tcptune states`: how many TCP sockets are in each state, and who holds them."""

from __future__ import annotations

import sys
import time
from enum import Enum
from typing import Annotated

import typer

from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, RootOpt, SysctlDumpOpt, emit_json, open_source, use_color
from tcptune.errors import ExitCode, TcptuneError


class By(str, Enum):
    state = "state"
    local_port = "local-port"
    peer = "peer"
    process = "process"


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


def _sample(host, by, states, families):
    from tcptune.core.socket_summary import SETTING_KEYS, check_warnings
    from tcptune.host.sockdiag import collect_summary

    summary = collect_summary(host, by, states, families)
    settings = host.read_sysctls(SETTING_KEYS)
    warnings = check_warnings(summary, settings, by=by)
    return summary, warnings


def _render(report: dict, by: str | None) -> str:
    from tabulate import tabulate

    from tcptune.core.socket_summary import group_rows, histogram_rows

    uni = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "") in ("utf8",)
    color = use_color()
    out = [f"TCP sockets from {report['source']}: {report['total']} total"]
    headers = ["STATE", "COUNT"] + (["CHANGE"] if "changes" in report else []) + [""]
    rows = histogram_rows(report, width=40, unicode=uni)
    total_row = (
        ["TOTAL", report["total"]] + ([f"{sum(report['changes'].values()):+d}"] if "changes" in report else []) + [""]
    )
    out.append(
        tabulate(
            rows + [total_row],
            headers=headers,
            tablefmt="simple",
            disable_numparse=True,
            colalign=("left", "right") + (("right",) if "changes" in report else ()) + ("left",),
        )
    )
    if by and by != "state":
        label = {"local-port": "LOCAL PORT", "peer": "PEER", "process": "PROCESS"}[by]
        out.append("")
        out.append(
            tabulate(
                group_rows(report, width=30, unicode=uni),
                headers=[label, "SOCKETS", "STATES", ""],
                tablefmt="simple",
                disable_numparse=True,
                colalign=("left", "right", "left", "left"),
            )
        )
    for note in report.get("notes", []):
        out.append(f"note: {note}")
    for w in report["warnings"]:
        prefix = "\x1b[33mwarning\x1b[0m" if color else "warning"
        out.append(f"{prefix}: {w['message']} [key: {w['key']}]")
    return "\n".join(out)


@app.command("states")
def states_cmd(
    by: Annotated[
        By | None,
        typer.Option("--by", help="Also group sockets by state, local port, peer address or owning process."),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help="Only these states (repeat or comma-separate: ESTABLISHED, time-wait, FIN-WAIT-2 ...).",
        ),
    ] = None,
    ipv4: Annotated[bool, typer.Option("--ipv4", "-4", help="Only IPv4 sockets.")] = False,
    ipv6: Annotated[bool, typer.Option("--ipv6", "-6", help="Only IPv6 sockets.")] = False,
    top: Annotated[
        int, typer.Option("--top", metavar="N", min=0, help="Show the N largest groups with --by (0 = all).")
    ] = 20,
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            metavar="SECONDS",
            min=0.1,
            help="Redraw every SECONDS with the change since the previous sample (Ctrl-C stops).",
        ),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", metavar="N", min=1, help="With --watch: stop after N samples.")
    ] = None,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    sysctl_dump: SysctlDumpOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Count TCP sockets per state (IPv4 and IPv6), with bars, totals and warnings tied to settings.

    Pending connection requests count as SYN_RECV, as `ss` shows them.  Reads the kernel
    through netlink sock_diag; --root snapshots (and hosts without sock_diag) through
    /proc/net/tcp and tcp6.
    """
    import socket

    from tcptune.core.socket_summary import build_report

    if ipv4 and ipv6:
        families = (socket.AF_INET, socket.AF_INET6)
    elif ipv4:
        families = (socket.AF_INET,)
    elif ipv6:
        families = (socket.AF_INET6,)
    else:
        families = (socket.AF_INET, socket.AF_INET6)
    if count is not None and watch is None:
        raise TcptuneError("--count only makes sense with --watch", ExitCode.BAD_INPUT)
    states = _parse_states(state)
    by_value = by.value if by else None
    if sysctl_dump:
        raise TcptuneError(
            f"--sysctl-dump {sysctl_dump}: a sysctl dump has no socket table",
            ExitCode.BAD_INPUT,
            hint="`tcptune states` reads the live host, --netns, or --root DIR holding proc/net/tcp",
        )
    host = open_source(root, sysctl_dump, netns)
    previous = None
    n = 0
    try:
        while True:
            summary, warnings = _sample(host, by_value, states, families)
            report = build_report(summary, warnings, by_value, top or None, previous)
            n += 1
            if json_out:
                if watch is None:
                    emit_json(report)
                else:
                    import json

                    report["time"] = time.time()
                    sys.stdout.write(json.dumps(report, separators=(",", ":")) + "\n")
            else:
                text = _render(report, by_value)
                if watch is not None and sys.stdout.isatty():
                    sys.stdout.write("\x1b[H\x1b[2J")
                elif watch is not None and n > 1:
                    sys.stdout.write("\n")
                if watch is not None:
                    sys.stdout.write(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + f"  every {watch:g}s\n")
                sys.stdout.write(text + "\n")
            sys.stdout.flush()
            if watch is None or (count is not None and n >= count):
                break
            previous = report["states"]
            time.sleep(watch)
    except KeyboardInterrupt:
        if watch is None:
            raise
