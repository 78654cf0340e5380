"""`tcptune probe syn|synack|fin-timeout|keepalive|tw-reuse|all`: prove what the kernel does.

Each probe reads the settings that govern it, predicts the timeline with the pure
model in tcptune.kernel.timers, watches its own loopback sockets in the current
(or --netns) network namespace and compares.  Exit 0 matches, 1 differs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, RootOpt, SysctlDumpOpt, emit_json, open_source, use_color
from tcptune.errors import ExitCode, TcptuneError

probe_app = typer.Typer(
    help=(
        "Prove what the kernel really does: SYN and SYN-ACK retransmissions, FIN_WAIT2 lifetime, keepalive, "
        "TIME_WAIT reuse.  Uses only the probe's own sockets on 127.0.0.1 in the namespace being audited "
        "(no firewall or interface changes).  Exit 0 matches, 1 differs."
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
NoCaptureOpt = Annotated[
    bool,
    typer.Option(
        "--no-capture",
        help="Do not capture packets; time events from TCP_INFO and the socket table (what happens without CAP_NET_RAW).",
    ),
]

DEFAULT_MAX_WAIT = 30.0


def _host(root, sysctl_dump, netns):
    if root or sysctl_dump:
        which = "--root" if root else "--sysctl-dump"
        raise TcptuneError(
            f"probe cannot use {which}: a probe runs sockets on a live kernel",
            ExitCode.BAD_INPUT,
            hint="run it on the host, or in a namespace with --netns",
        )
    host = open_source(None, None, netns)
    return host


def _progress():
    """Progress and time left on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None, lambda: None

    def show(name, elapsed, left, events):
        sys.stderr.write(
            f"\r\x1b[Kprobe {name}: {elapsed:5.1f} s watched, {left:5.1f} s left at most, {events} event(s) so far"
        )
        sys.stderr.flush()

    def clear():
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()

    return show, clear


def _fmt_t(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def render(result: dict) -> str:
    from tabulate import tabulate

    color = use_color()
    out = []
    src = {"capture": "packets captured on lo", "socket": "TCP_INFO and the socket table (no capture)", None: "not run"}
    out.append(
        f"probe {result['probe']}: kernel {result.get('kernel') or '?'}, HZ {result.get('hz') or 'unknown'}, "
        f"times from {src.get(result.get('source'), result.get('source'))}"
    )
    settings = " ".join(f"{k}={'absent' if v is None else v}" for k, v in result["settings"].items())
    out.append(f"settings: {settings}")
    if result.get("measured", {}).get("rto_s") is not None:
        out.append(f"measured: socket RTO {result['measured']['rto_s'] * 1000:.0f} ms")
    for n in result.get("notes", []):
        out.append(f"  {n}")
    if result["comparison"]:
        rows = []
        for r in result["comparison"]:
            label = r["what"] + (f" #{r['n']}" if r["n"] else "")
            allowed = (
                "-"
                if r["allowed_early_s"] is None
                else f"-{r['allowed_early_s'] * 1000:.0f}/+{r['allowed_late_s'] * 1000:.0f} ms"
            )
            err = "-" if r["error_s"] is None else f"{r['error_s'] * 1000:+.0f} ms"
            ok = "ok" if r["ok"] else r.get("problem", "no")
            rows.append([label, _fmt_t(r["predicted_t"]), _fmt_t(r["observed_t"]), err, allowed, ok])
        out.append(
            tabulate(
                rows,
                headers=["EVENT", "PREDICTED s", "OBSERVED s", "ERROR", "ALLOWED", ""],
                tablefmt="simple",
                disable_numparse=True,
            )
        )
    else:
        out.append(
            "predicted: "
            + ", ".join(
                f"{e['what']}{' #' + str(e['n']) if e['n'] else ''} at {e['t']:g} s" for e in result["predicted"]
            )
        )
    for i, alt in enumerate(result.get("alternatives") or [], 1):
        mark = "  <- compared" if result.get("compared_with") == i - 1 else ""
        out.append(f"alternative outcome {i}: {alt['events'][-1]['what']} at {alt['give_up_s']:g} s{mark}")
    gu = result["give_up"]
    if gu["predicted_s"] is None and not gu["what"]:
        out.append("gives up: never (nothing to give up on, per the model)")
    else:
        possible = gu.get("possible_s") or []
        also = (" (possible: " + ", ".join(f"{x:g}" for x in possible) + " s)") if len(possible) > 1 else ""
        out.append(
            f"gives up: predicted {_fmt_t(gu['predicted_s'])} s ({gu['what']}){also}, "
            f"observed {_fmt_t(gu['observed_s'])} s"
        )
    verdict = result["verdict"]
    if color:
        verdict = {"matches": "\x1b[32mmatches\x1b[0m", "differs": "\x1b[31mdiffers\x1b[0m"}.get(verdict, verdict)
    out.append(f"verdict: {verdict} ({result['reason']})")
    return "\n".join(out)


def _run_one(name: str, root, sysctl_dump, netns, pcap, max_wait, no_capture, as_json) -> None:
    from tcptune.probe.runner import run_probe

    host = _host(root, sysctl_dump, netns)
    show, clear = _progress()
    try:
        result = run_probe(
            host, name, max_wait, pcap=str(pcap) if pcap else None, capture=not no_capture, progress=show
        )
    finally:
        clear()
    if as_json:
        emit_json(result)
    else:
        sys.stdout.write(render(result) + "\n")
    raise typer.Exit(ExitCode.FINDINGS if result["verdict"] == "differs" else ExitCode.OK)


def _command(name: str, doc: str):
    def cmd(
        pcap: PcapOpt = None,
        max_wait: MaxWaitOpt = DEFAULT_MAX_WAIT,
        no_capture: NoCaptureOpt = False,
        as_json: JsonOpt = False,
        root: RootOpt = None,
        sysctl_dump: SysctlDumpOpt = None,
        netns: NetnsOpt = None,
    ) -> None:
        _run_one(name, root, sysctl_dump, netns, pcap, max_wait, no_capture, as_json)

    cmd.__doc__ = doc
    probe_app.command(name)(cmd)


_command(
    "syn",
    "SYN retransmissions of an unanswered connect() and when it fails (tcp_syn_retries, tcp_syn_linear_timeouts, RTO cap, time cap).",
)
_command(
    "synack", "SYN-ACK retransmissions of a request stuck in SYN_RECV and when it is dropped (tcp_synack_retries)."
)
_command(
    "fin-timeout",
    "Lifetime of an orphaned FIN_WAIT2 socket (tcp_fin_timeout, floored at 3.5 x RTO; split when over 60 s).",
)
_command("keepalive", "Keepalive idle time, interval and probe count on an SO_KEEPALIVE socket whose peer goes silent.")
_command(
    "tw-reuse",
    "Whether and when connect() may reuse a 4-tuple held in TIME_WAIT (tcp_tw_reuse, tcp_tw_reuse_delay, tcp_timestamps).",
)


@probe_app.command("all")
def probe_all(
    pcap: PcapOpt = None,
    max_wait: MaxWaitOpt = DEFAULT_MAX_WAIT,
    no_capture: NoCaptureOpt = False,
    as_json: JsonOpt = False,
    root: RootOpt = None,
    sysctl_dump: SysctlDumpOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Run, one after another, every probe whose whole predicted timeline fits in --max-wait."""
    from tcptune.probe.runner import PROBES, kernel_hz, kernel_version, predict, read_facts, read_settings, run_probe

    host = _host(root, sysctl_dump, netns)
    hz = kernel_hz()
    kernel = kernel_version(host)
    results, skipped = [], []
    show, clear = _progress()
    for name in PROBES:
        try:
            pred = predict(name, read_settings(host, name), hz, read_facts(host, name), kernel)
        except TcptuneError as exc:
            skipped.append({"probe": name, "reason": str(exc)})
            continue
        horizon = pred.horizon()
        if horizon is None:
            skipped.append({"probe": name, "reason": "the model predicts no end to watch for"})
            continue
        if horizon + 1.0 > max_wait:
            skipped.append(
                {"probe": name, "reason": f"predicted to take {horizon:g} s, more than --max-wait {max_wait:g} s"}
            )
            continue
        path = None
        if pcap:
            path = str(pcap.with_name(f"{pcap.stem}-{name}{pcap.suffix or '.pcap'}"))
        try:
            results.append(run_probe(host, name, max_wait, pcap=path, capture=not no_capture, progress=show))
        finally:
            clear()
    verdict = (
        "differs" if any(r["verdict"] == "differs" for r in results) else ("matches" if results else "not_observed")
    )
    if as_json:
        emit_json({"probes": results, "skipped": skipped, "verdict": verdict})
    else:
        blocks = [render(r) for r in results]
        for s in skipped:
            blocks.append(f"probe {s['probe']}: skipped: {s['reason']}")
        blocks.append(f"overall: {verdict} ({len(results)} run, {len(skipped)} skipped)")
        sys.stdout.write("\n\n".join(blocks) + "\n")
    raise typer.Exit(ExitCode.FINDINGS if verdict == "differs" else ExitCode.OK)
