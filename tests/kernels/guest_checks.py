"""Runs INSIDE a tests/kernels guest (see run_guest.py): the knowledge-base check and the probes.

    python3 tests/kernels/guest_checks.py [--only kb|probes] [--case NAME ...]

Writes to $TCPTUNE_GUEST_OUT (/out in the guest), which run_guest.py brings back:
- sysctl-a.txt, sysctl-a-netns.txt: `sysctl -a` of the initial and of a fresh namespace
- kb-junit.xml: tests/netns/test_kb_defaults.py run here, as the host suite runs it
  against 6.18, so every knowledge-base claim is checked against THIS kernel
- kb-values.json: what each knowledge-base key reads here (fresh netns and init netns)
- probes.json: each probe case's `tcptune probe NAME --json` result (the CLI's own entry
  point, in a fresh namespace with the case's sysctls), plus the same observation judged
  with the guest tolerance (see GUEST_LATE_S)
- timing.json: guest uptime at each step

Everything here runs in the guest, whose sysctls are its own; each case still gets a fresh
network namespace (tests/nsutil.py) so the cases start from the kernel's defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "netns")]  # nsutil, test_kb_defaults

OUT = Path(os.environ.get("TCPTUNE_GUEST_OUT", "/out"))

# Extra lateness allowed for guest runs only (seconds, on the late side of every event, on top
# of the probes' own tolerance and timer-wheel slack).  Measured (README.md, "Timer lateness"):
# under TCG on this shared 2-core host every event came within its timer-wheel slack, so the
# probes' own tolerance holds and the default is 0; a slower machine may set it.  Never the host.
GUEST_LATE_S = float(os.environ.get("TCPTUNE_GUEST_LATE_S", "0"))


def uptime() -> float:
    with open("/proc/uptime") as fh:
        return float(fh.read().split()[0])


def since(release: tuple[int, ...], version: tuple[int, ...]) -> bool:
    return tuple(release[:2]) >= version


def cases(release: tuple[int, ...]) -> dict[str, tuple[str, dict, dict]]:
    """name -> (probe, sysctls, options): the host suite's short settings (tests/netns/test_probe.py)
    where this kernel has the keys, so each version rule is exercised on the side this kernel is on."""
    c: dict[str, tuple[str, dict, dict]] = {
        # 6.1: no tcp_syn_linear_timeouts (6.5+): pure doubling 1, 2 then ETIMEDOUT at 7 s;
        # 6.12: its default 4 linear timeouts, then the time cap
        "syn-r2": ("syn", {"tcp_syn_retries": 2}, {}),
        "syn-r1-nocap": ("syn", {"tcp_syn_retries": 1}, {"capture": False}),
        "synack-r1": ("synack", {"tcp_synack_retries": 1}, {}),
        "synack-r2-nocap": ("synack", {"tcp_synack_retries": 2}, {"capture": False}),
        "synack-cookies2": ("synack", {"tcp_synack_retries": 1, "tcp_syncookies": 2}, {}),
        "synack-cookies2-nocap": ("synack", {"tcp_synack_retries": 1, "tcp_syncookies": 2}, {"capture": False}),
        "fin-1": ("fin-timeout", {"tcp_fin_timeout": 1}, {}),
        "fin-0-nocap": ("fin-timeout", {"tcp_fin_timeout": 0}, {"capture": False}),
        "fin-3": ("fin-timeout", {"tcp_fin_timeout": 3}, {}),
        "fin-61": ("fin-timeout", {"tcp_fin_timeout": 61}, {}),
        "fin-3-twfull-nocap": ("fin-timeout", {"tcp_fin_timeout": 3, "tcp_max_tw_buckets": 0}, {"capture": False}),
        "ka-1-1-2": ("keepalive", {"tcp_keepalive_time": 1, "tcp_keepalive_intvl": 1, "tcp_keepalive_probes": 2}, {}),
        "ka-2-1-1-nocap": (
            "keepalive",
            {"tcp_keepalive_time": 2, "tcp_keepalive_intvl": 1, "tcp_keepalive_probes": 1},
            {"capture": False},
        ),
        # no tcp_tw_reuse_delay before 6.14: reuse when the seconds clock ticks, (0, 1] s
        "tw-1": ("tw-reuse", {"tcp_tw_reuse": 1, "tcp_timestamps": 1}, {}),
        "tw-0": ("tw-reuse", {"tcp_tw_reuse": 0, "tcp_timestamps": 1}, {"max_wait": 1.5}),
        "tw-2-nocap": ("tw-reuse", {"tcp_tw_reuse": 2, "tcp_timestamps": 1}, {"capture": False}),
        "tw-no-timestamps": ("tw-reuse", {"tcp_tw_reuse": 1, "tcp_timestamps": 0}, {"max_wait": 1.5}),
        "tw-0-twfull": (
            "tw-reuse",
            {"tcp_tw_reuse": 0, "tcp_timestamps": 1, "tcp_max_tw_buckets": 0},
            {"max_wait": 1.5},
        ),
    }
    if since(release, (6, 5)):
        c["syn-r2-l0"] = ("syn", {"tcp_syn_retries": 2, "tcp_syn_linear_timeouts": 0}, {})
        c["syn-r2-l1-nocap"] = ("syn", {"tcp_syn_retries": 2, "tcp_syn_linear_timeouts": 1}, {"capture": False})
    if since(release, (6, 15)):
        c["syn-r4-l0-rtomax2s"] = (
            "syn",
            {"tcp_syn_retries": 4, "tcp_syn_linear_timeouts": 0, "tcp_rto_max_ms": 2000},
            {},
        )
    if since(release, (6, 14)):
        c["tw-1-500"] = ("tw-reuse", {"tcp_tw_reuse": 1, "tcp_tw_reuse_delay": 500, "tcp_timestamps": 1}, {})
    return c


# -- sysctl -a ---------------------------------------------------------------------------------
def record_sysctls() -> None:
    for name, argv in (("sysctl-a.txt", ["sysctl", "-a"]), ("sysctl-a-netns.txt", ["unshare", "-n", "sysctl", "-a"])):
        r = subprocess.run(argv, capture_output=True, text=True)
        (OUT / name).write_text(r.stdout)


# -- the knowledge base ----------------------------------------------------------------------------
def kb_check() -> dict:
    import pytest
    from nsutil import run_in_netns
    from test_kb_defaults import _read_all

    from tcptune.host.source import Host
    from tcptune.kernel.kb import load_kb

    os.environ["TCPTUNE_REQUIRE_NETNS"] = "1"
    rc = pytest.main(
        [
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(HERE.parent.parent),
            str(HERE.parent / "netns" / "test_kb_defaults.py"),
            "--junitxml",
            str(OUT / "kb-junit.xml"),
        ]
    )
    keys = sorted(load_kb().params)
    fresh = run_in_netns(_read_all, keys)
    host = Host("/")
    values = {
        k: {"fresh_netns": fresh["values"][k][0], "writable": fresh["values"][k][1], "init_netns": host.read_sysctl(k)}
        for k in keys
    }
    (OUT / "kb-values.json").write_text(json.dumps({"release": fresh["release"], "values": values}, indent=1))
    return {"pytest_exit": int(rc)}


# -- probes ---------------------------------------------------------------------------------------
def _probe_in_netns(probe: str, sysctls: dict, argv: list[str]) -> dict:
    """In the child's fresh namespace: set the case's sysctls, run `tcptune probe ...` through
    the CLI's entry point, return its exit code and output."""
    from tcptune.cli import main

    for k, v in sysctls.items():
        with open(f"/proc/sys/net/ipv4/{k}", "w") as fh:
            fh.write(f"{v}\n")
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return {"exit": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _predict(result: dict):
    """The model's prediction for a probe's JSON result, through the probe registry (ops/probes)."""
    from tcptune.kernel.version import parse_release
    from tcptune.ops.probes import predict
    from tcptune.probe.spec import ModelInput, get_spec

    mi = ModelInput(
        result["probe"],
        result["settings"],
        result["hz"],
        result.get("measured") or {},
        parse_release(result["kernel"], os.uname().version),  # runs in the guest that ran the probe
        result.get("options") or {},
    )
    return predict(get_spec(result["probe"]), mi)


def rejudge(result: dict, late_s: float, textbook: bool = False) -> dict:
    """The same observation compared with the model again, allowing ``late_s`` more lateness:
    the probe's tolerance widened for guest runs only (the probe has no option for it, see
    README.md).  ``textbook``: against the old tutorials' SYN schedule instead, which a kernel
    without tcp_syn_linear_timeouts (before 6.5) follows and a later one does not."""
    from tcptune.core.verdict import Tolerance, compare_prediction
    from tcptune.kernel.timers import Event
    from tcptune.kernel.timers.syn import predict_syn_textbook

    st = result["settings"]
    pred = predict_syn_textbook(st["tcp_syn_retries"]) if textbook else _predict(result)
    t = result["tolerance"]
    tol = Tolerance(abs_s=t["abs_s"], rel=t["rel"], hz=t["hz"], poll_s=t["poll_s"] + late_s)
    observed = [Event(e["t"], e["what"], e["n"], uncertainty=e.get("uncertainty_s", 0.0)) for e in result["observed"]]
    cmp = compare_prediction(pred, observed, tol, window=result["observed_for_s"])
    return {"verdict": cmp.verdict, "reason": cmp.reason, "late_s": late_s, "rows": cmp.rows}


def lateness(result: dict) -> dict:
    """How late the events came: ``margin_s``, per compared event, how far past its allowed late
    edge (<= 0: within the probe's tolerance), and ``excess_s``, how far past the kernel's own
    timer-wheel rounding (timers.timer_slack()): the lateness emulation adds."""
    from tcptune.kernel import timers as S

    pred = _predict(result)
    timers = {(ev.what, ev.n): ev for p in pred.timelines() for ev in p.events}
    margin, excess = [], []
    for r in result.get("comparison", []):
        if r.get("error_s") is None or not r.get("predicted_t"):
            continue
        margin.append(round(r["error_s"] - r["allowed_late_s"], 6))
        ev = timers.get((r["what"], r["n"]))
        if ev is not None and ev.timer:
            slack = sum(S.timer_slack(x, result["hz"]) for x in (ev.timer, *ev.chained))
            excess.append(round(r["error_s"] - slack, 6))
    return {"margin_s": margin, "excess_s": excess}


def run_probes(only: list[str]) -> dict:
    from nsutil import run_in_netns

    from tcptune.kernel.version import parse_release

    release = parse_release(os.uname().release, os.uname().version)
    results = {}
    for name, (probe, sysctls, opts) in cases(release).items():
        if only and name not in only:
            continue
        argv = ["probe", probe, "--json", "--max-wait", str(opts.get("max_wait", 20.0))]
        if not opts.get("capture", True):
            argv.append("--no-capture")
        t0 = uptime()
        try:
            r = run_in_netns(_probe_in_netns, probe, sysctls, argv, timeout=90)
        except BaseException as exc:  # noqa: BLE001 - recorded as that case's result
            r = {"exit": None, "stdout": "", "stderr": repr(exc)}
        entry = {"probe": probe, "sysctls": sysctls, "argv": argv, "exit": r["exit"], "stderr": r["stderr"][-2000:]}
        try:
            result = json.loads(r["stdout"])
        except ValueError:
            result = None
        if result is not None:
            entry["result"] = result
            entry["verdict"] = result["verdict"]
            entry.update(lateness(result))
            entry["guest"] = rejudge(result, GUEST_LATE_S) if result.get("observed") else None
            if probe == "syn" and result.get("observed"):
                entry["textbook"] = rejudge(result, GUEST_LATE_S, textbook=True)
        else:
            entry["verdict"] = "error"
        entry["took_s"] = round(uptime() - t0, 2)
        results[name] = entry
        print(f"{name}: {entry['verdict']} (guest tolerance: {(entry.get('guest') or {}).get('verdict')})", flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("kb", "probes"))
    ap.add_argument("--case", action="append", default=[], help="run only these probe cases")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    timing = {"start": uptime()}
    record_sysctls()
    timing["sysctl"] = uptime()
    summary: dict = {"release": os.uname().release, "guest_late_s": GUEST_LATE_S}
    # import once, before forking: under emulation an import of the CLI and scapy costs ~30 s
    import scapy.layers.inet  # noqa: F401
    import scapy.layers.l2  # noqa: F401

    import tcptune.cli  # noqa: F401
    import tcptune.ops.probes  # noqa: F401

    timing["imports"] = uptime()
    if a.only in (None, "kb"):
        summary["kb"] = kb_check()
        timing["kb"] = uptime()
    if a.only in (None, "probes"):
        probes = run_probes(a.case)
        (OUT / "probes.json").write_text(json.dumps(probes, indent=1))
        timing["probes"] = uptime()
    (OUT / "timing.json").write_text(json.dumps(timing))
    (OUT / "summary.json").write_text(json.dumps(summary))
    print(json.dumps({"timing": timing, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
