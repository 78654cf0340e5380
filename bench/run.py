#!/usr/bin/env python3
"""Benchmark `tcptune states` against ss, netstat, psutil and a bare netlink dump.

    sudo python3 bench/run.py 10000 100000 1000000 [--workers N] [--repeat 5] [--slow-timeout 600]
        [--baseline OTHER_CHECKOUT] [--no-others]

For each size N: unshare a private network namespace (never the host's), set that
namespace's own sysctls so N sockets fit, fill it with N loopback sockets in a mix of
states (bench/fill.py), then time, in the same run, every tool as a subprocess
(wall time, and peak RSS from wait4), and check that `tcptune states --json` counts
equal `ss -tan`'s.  Results: a markdown table on stdout and JSON in bench/results-N.json.

TIME_WAIT sockets live 60 s (TCP_TIMEWAIT_LEN), so they are made last and the fast
tools run first; the counts check runs straight after filling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import fill  # noqa: E402

PY = sys.executable
FLOOR = [PY, str(HERE / "floor.py"), "--ss"]
FLOOR_UNSPEC = [PY, str(HERE / "floor.py")]
# The tcptune under test: `python -m tcptune` of the interpreter running this script, so
# PYTHONPATH (or the install) decides which tree is timed, never a stale `tcptune` on PATH.
TCPTUNE = [PY, "-m", "tcptune"]
NO_OWNER_CHECKS = [
    arg
    for check in ("accept-queue", "syn-queue", "time-wait", "ephemeral-ports", "orphans-memory", "retransmissions")
    + ("resets", "syn-sent", "settings", "conntrack", "dead-peers")
    for arg in ("--check", check)
]


def tools_fast() -> list:
    return [
        ("floor: bare netlink dump (python, read+discard)", FLOOR),
        ("floor, one AF_UNSPEC request", FLOOR_UNSPEC),
        ("tcptune states", [*TCPTUNE, "states"]),
        ("tcptune states --json", [*TCPTUNE, "states", "--json"]),
        ("tcptune states --by peer", [*TCPTUNE, "states", "--by", "peer"]),
        ("tcptune states --by local-port", [*TCPTUNE, "states", "--by", "local-port"]),
        # doctor reads the same dump plus the counters, sockstat and sysctls (issue 12: <= 2x states)
        ("tcptune doctor --interval 0", [*TCPTUNE, "doctor", "--interval", "0"]),
        ("tcptune doctor --interval 0 --json", [*TCPTUNE, "doctor", "--interval", "0", "--json"]),
        # the same without the checks that name processes (close-wait, fd-limit, receiver-not-reading):
        # what the /proc/*/fd walk they need costs, by difference
        ("tcptune doctor --interval 0, no owner checks", [*TCPTUNE, "doctor", "--interval", "0", *NO_OWNER_CHECKS]),
        ("ss -tan | wc -l", ["sh", "-c", "ss -tan | wc -l >/dev/null"]),
        ("ss -s", ["sh", "-c", "ss -s >/dev/null"]),
    ]


def tools_slow(others: bool) -> list:
    out = [("tcptune states --by process", [*TCPTUNE, "states", "--by", "process"])]
    if others:
        out += [
            ("netstat -ant", ["sh", "-c", "netstat -ant >/dev/null"]),
            ("netstat -antp", ["sh", "-c", "netstat -antp >/dev/null 2>&1"]),
            ("psutil.net_connections('tcp')", [PY, "-c", "import psutil; psutil.net_connections('tcp')"]),
        ]
    return out


SETTLE_SECONDS = 3

SS_TO_NAME = {
    "ESTAB": "ESTABLISHED",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
}


def setup_netns() -> None:
    from tcptune.host.netns import unshare_netns

    original = os.stat("/proc/self/ns/net").st_ino
    unshare_netns()
    fill.ensure_private_netns(original)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Per-network-namespace sysctls only (these files belong to the namespace just made).
    for key, value in {
        "net/ipv4/ip_local_port_range": "1024 65535",
        "net/ipv4/tcp_max_tw_buckets": "4000000",
        "net/core/somaxconn": "65535",
        "net/ipv4/tcp_max_syn_backlog": "1000000",
        "net/ipv4/tcp_syn_retries": "20",
        "net/ipv4/tcp_synack_retries": "20",
    }.items():
        with open(f"/proc/sys/{key}", "w") as fh:
            fh.write(value)


def start_workers(n: int, workers: int):
    pipes = []
    pids = []
    for w, counts in enumerate(fill.plan(n, workers)):
        ready_r, ready_w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(hold_w)
            code = 0
            try:
                f = fill.fill(w, counts)
                os.write(ready_w, f"{len(f.keep)}\n".encode())
                os.read(hold_r, 1)  # hold the sockets until the parent closes the pipe
            except BaseException as exc:  # noqa: BLE001
                os.write(ready_w, f"ERR {exc!r}\n".encode())
                code = 1
            os._exit(code)
        os.close(ready_w)
        os.close(hold_r)
        pipes.append((ready_r, hold_w))
        pids.append(pid)
    fds = 0
    for ready_r, _ in pipes:
        msg = os.read(ready_r, 4096).decode().strip()
        if msg.startswith("ERR") or not msg:
            raise SystemExit(f"filler failed: {msg}")
        fds += int(msg)
    return pids, pipes, fds


def stop_workers(pids, pipes) -> None:
    for ready_r, hold_w in pipes:
        os.close(hold_w)
        os.close(ready_r)
    for pid in pids:
        os.waitpid(pid, 0)


def timed(argv, timeout: float | None = None) -> dict:
    # Peak RSS through /usr/bin/time -f %M: wait4() on a child forked from this (large)
    # Python process reports the parent's pre-exec high-water mark, not the tool's.
    import tempfile

    rss_file = tempfile.NamedTemporaryFile(prefix="bench-rss-", delete=False)
    rss_file.close()
    argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *argv]
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = bytearray()
    deadline = None if timeout is None else t0 + timeout
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    while True:
        left = None if deadline is None else max(0.0, deadline - time.perf_counter())
        if left == 0.0:
            p.kill()
            os.wait4(p.pid, 0)
            return {"seconds": None, "timeout": timeout}
        if sel.select(left):
            chunk = os.read(p.stdout.fileno(), 1 << 20)
            if not chunk:
                break
            out += chunk
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    with open(rss_file.name) as fh:
        rss_kb = int(fh.read().split()[-1])
    os.unlink(rss_file.name)
    # CPU seconds (user + system, the child and what it waited for: the kernel's dump work is
    # system time): steadier than wall time when other jobs share the cores.
    cpu = ru.ru_utime + ru.ru_stime
    return {"seconds": dt, "cpu": cpu, "max_rss_mb": rss_kb / 1024, "rc": p.returncode, "stdout": bytes(out)}


def ss_counts() -> Counter:
    out = subprocess.run(["ss", "-tan"], capture_output=True, text=True, check=True).stdout
    c = Counter()
    for line in out.splitlines()[1:]:
        c[SS_TO_NAME[line.split(None, 1)[0]]] += 1
    return c


def sockstat_tw() -> int:
    with open("/proc/net/sockstat") as fh:
        for line in fh:
            if line.startswith("TCP:"):
                f = line.split()
                return int(f[f.index("tw") + 1])
    return -1


def baseline_tools(tools: list, tree: str | None) -> list:
    """The tcptune rows again, run from another checkout (PYTHONPATH=tree): before/after in one run."""
    if not tree:
        return []
    return [(f"before: {name}", ["env", f"PYTHONPATH={tree}", *argv]) for name, argv in tools if argv[:3] == TCPTUNE]


def bench_size(n: int, workers: int, repeat: int, slow_timeout: float, baseline: str | None, others: bool) -> dict:
    t0 = time.perf_counter()
    pids, pipes, fds = start_workers(n, workers)
    fill_s = time.perf_counter() - t0
    time.sleep(SETTLE_SECONDS)  # let the fillers' exit and the kernel's softirq work die down
    res: dict = {"n_target": n, "fill_seconds": fill_s, "fds_held": fds, "tools": {}, "loadavg_before": os.getloadavg()}
    try:
        # Counts: tcptune --json then ss, back to back (TIME_WAIT may expire between them).
        tj = timed([*TCPTUNE, "states", "--json"])
        ss = ss_counts()
        ours = json.loads(tj["stdout"])["states"]
        ours = {k: v for k, v in ours.items() if v}
        res["counts_tcptune"] = ours
        res["counts_ss"] = dict(ss)
        res["counts_equal"] = ours == dict(ss)
        res["total"] = sum(ss.values())
        # Round-robin, so that drift (TIME_WAIT timers, the fill's after-effects) hits every tool alike.
        fast = tools_fast()
        fast += baseline_tools(fast, baseline)
        runs: dict = {name: [] for name, _ in fast}
        for i in range(repeat):
            # Round-robin, every other round in reverse: sockets that expire meanwhile (TIME_WAIT
            # lives 60 s) or load from elsewhere must not favour the tools that run late.
            for name, argv in fast if i % 2 == 0 else fast[::-1]:
                runs[name].append(timed(argv))
        for name, _ in fast:
            res["tools"][name] = summarize(runs[name])
        # In-process: the dump alone, without interpreter start-up (before the slow tools,
        # while the TIME_WAIT sockets are still there).
        res["in_process"] = in_process(min(repeat, 3))
        slow = tools_slow(others)
        ours = slow[:1] + baseline_tools(slow, baseline)  # tcptune's own rows: every round, alternating
        runs = {name: [] for name, _ in ours}
        for i in range(repeat):
            for name, argv in ours if i % 2 == 0 else ours[::-1]:
                runs[name].append(timed(argv, slow_timeout))
        for name, _ in ours:
            res["tools"][name] = summarize(runs[name])
        for name, argv in slow[1:]:  # the other slow tools once at 100k and more
            res["tools"][name] = summarize([timed(argv, slow_timeout) for _ in range(1 if n >= 100000 else repeat)])
        res["tw_at_end"] = sockstat_tw()
    finally:
        stop_workers(pids, pipes)
    return res


def in_process(repeat: int) -> dict:
    import floor

    from tcptune.host import sockdiag

    out = {}
    for name, fn in (
        ("floor discard_dump() per family, as ss", lambda: floor.discard_dump((2, 10))),
        ("floor discard_dump() one AF_UNSPEC request", lambda: floor.discard_dump()),
        ("dump_table() counts", lambda: sockdiag.dump_table()),
        ("dump_table(by='local-port')", lambda: sockdiag.dump_table(by="local-port")),
        ("dump_table(by='peer')", lambda: sockdiag.dump_table(by="peer")),
        # doctor's one dump: counts plus the ephemeral-port groups (issue 12: <= --by local-port's cost)
        ("dump_table(by='dest')", lambda: sockdiag.dump_table(by="dest", port_range=(1024, 65535))),
    ):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[name] = sorted(times)[len(times) // 2]
    return out


def summarize(runs: list[dict]) -> dict:
    ok = [r for r in runs if r.get("seconds") is not None]
    if not ok:
        return {"seconds": None, "timeout": runs[0].get("timeout")}
    secs = sorted(r["seconds"] for r in ok)
    return {
        "seconds": secs[len(secs) // 2],
        "runs": len(ok),
        "cpu": sorted(r["cpu"] for r in ok)[len(ok) // 2],
        "max_rss_mb": max(r["max_rss_mb"] for r in ok),
        "rc": ok[0]["rc"],
    }


def table(res: dict) -> str:
    floor = res["tools"]["floor: bare netlink dump (python, read+discard)"]["seconds"]
    floor1 = res["tools"]["floor, one AF_UNSPEC request"]["seconds"]
    sstan = res["tools"]["ss -tan | wc -l"]["seconds"]
    floor_cpu = res["tools"]["floor: bare netlink dump (python, read+discard)"]["cpu"]
    lines = [
        f"### {res['total']} sockets (target {res['n_target']}), counts equal to ss: {res['counts_equal']}",
        "",
        "| tool | seconds (median) | x floor | x one-walk floor | x `ss -tan \\| wc -l` | CPU s (median) | x floor CPU | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in res["tools"].items():
        if r["seconds"] is None:
            lines.append(f"| {name} | > {r['timeout']} (killed) | | | | | | |")
            continue
        lines.append(
            f"| {name} | {r['seconds']:.3f} | {r['seconds'] / floor:.2f} | {r['seconds'] / floor1:.2f} | "
            f"{r['seconds'] / sstan:.2f} | {r['cpu']:.3f} | {r['cpu'] / floor_cpu:.2f} | {r['max_rss_mb']:.0f} |"
        )
    lines.append("")
    lines.append(
        "In-process (no interpreter start-up): " + ", ".join(f"{k} {v:.3f} s" for k, v in res["in_process"].items())
    )
    lines.append(f"Load average before timing: {', '.join(f'{x:.2f}' for x in res['loadavg_before'])}.")
    lines.append(
        f"Fill took {res['fill_seconds']:.1f} s; TIME_WAIT at start {res['counts_ss'].get('TIME_WAIT', 0)}, at end {res['tw_at_end']}."
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sizes", nargs="+", type=int)
    ap.add_argument("--workers", type=int, default=0, help="filler processes (default: enough for the fd limit)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--slow-timeout", type=float, default=600.0)
    ap.add_argument("--baseline", metavar="TREE", help="also time the tcptune rows from this checkout (PYTHONPATH)")
    ap.add_argument("--no-others", action="store_true", help="skip netstat and psutil (netstat -antp: ~4 min at 1M)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (it unshares a network namespace)")
    setup_netns()
    nofile = fill.raise_nofile()
    for n in args.sizes:
        workers = args.workers or fill.workers_for(n, nofile)
        res = bench_size(n, workers, args.repeat, args.slow_timeout, args.baseline, not args.no_others)
        res["workers"] = workers
        (HERE / f"results-{n}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(table(res), flush=True)
        print(flush=True)
        time.sleep(61)  # let TIME_WAIT from this size expire before the next


if __name__ == "__main__":
    main()
