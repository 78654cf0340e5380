"""`tcptune doctor`: what is wrong with this host's TCP, joined from counters, sockets and settings."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, RootOpt, emit_json, open_source

EXAMPLE = """
Examples:

  tcptune doctor                      # two samples 2 s apart, findings by severity

  tcptune doctor --interval 10 --check accept-queue --check syn-queue

  tcptune doctor --netns web1 --json  # a container's network namespace, as JSON

  tcptune doctor --bundle web1.tar.gz # then elsewhere: tar xzf web1.tar.gz -C d; tcptune doctor --root d
"""


def _check_names(incomplete: str) -> list[str]:
    from tcptune.core.diagnoses import CHECKS

    return [c for c in CHECKS if c.startswith(incomplete)]


IntervalOpt = Annotated[
    float, typer.Option("--interval", metavar="SECONDS", help="Seconds between the two counter samples (0: one).")
]
CheckOpt = Annotated[
    list[str] | None,
    typer.Option("--check", metavar="NAME", help="Run only this check (repeatable).", autocompletion=_check_names),
]
IdleOpt = Annotated[
    float | None,
    typer.Option(
        "--idle-timeout",
        metavar="SECONDS",
        help="The idle timeout in front (load balancer, NAT, application): are dead peers noticed before it?",
    ),
]
BundleOpt = Annotated[
    str | None,
    typer.Option(
        "--bundle",
        metavar="FILE.tar.gz",
        help="Also save everything read, so that `doctor --root` on the unpacked file gives the same findings.",
    ),
]


@app.command("doctor", epilog=EXAMPLE)
def doctor_cmd(
    interval: IntervalOpt = 2.0,
    check: CheckOpt = None,
    idle_timeout: IdleOpt = None,
    bundle: BundleOpt = None,
    root: RootOpt = None,
    netns: NetnsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Diagnose: accept and SYN queue overflows, TIME_WAIT and orphan limits, ephemeral ports per
    destination, TCP memory, retransmissions, resets, SYN_SENT pile-ups, CLOSE_WAIT leaks, fd limits
    and conntrack, each with its evidence and fix.

    Counters are rates over --interval, never since-boot totals. Exit 0 no findings, 1 findings.
    """
    from tcptune.ops.doctor import check_options, run_doctor
    from tcptune.render.doctor import render_doctor_json, render_doctor_text
    from tcptune.render.output import Output

    checks = tuple(check or ())
    check_options(interval, checks, idle_timeout)  # before entering a namespace or reading anything
    source = open_source(root, None, netns)
    report = run_doctor(source, interval, checks, bundle=bundle, idle_timeout=idle_timeout)
    if json_out:
        emit_json(render_doctor_json(report))
    else:
        typer.echo(render_doctor_text(report, Output.detect(sys.stdout)))
    raise typer.Exit(report.exit_code)
