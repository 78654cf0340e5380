"""`tcptune trace --read` on a large pcap: packets per second against tcpdump, and peak RSS.

    python3 bench/trace_read.py 100000 1000000 [--keep] [--shape bulk]

Writes /tmp/trace_bench/N.pcap (not committed; --keep leaves it) with core/pcap.PcapWriter:
connections of 9 segments each (handshake, 100 bytes of data and its ACK, a four-segment close)
between 10.0.0.1 and 10.0.0.2:80, the client port cycling so connections follow one another
as on a busy server.  ``--shape bulk``: /tmp/trace_bench/N-bulk.pcap, connections of 10 000
data segments of 1448 bytes with an ACK every other one, so labels and lines hardly repeat
(the memo tables miss, as on a real bulk transfer).  Then, in one run, for each N: `tcptune trace --read FILE --json`,
`tcptune trace --read FILE` (text), both to /dev/null, and `tcpdump -nn -r FILE` to /dev/null;
wall and CPU time and peak RSS of each child (wait4's rusage), median of --repeat rounds.
Every child runs with TZ=UTC (see timed()).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tcptune.core.pcap import ACK, FIN, PSH, SYN, PcapWriter  # noqa: E402

OUT = Path("/tmp/trace_bench")
ETH = b"\x00" * 12 + b"\x08\x00"
SRC, DST = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def frame(src: bytes, dst: bytes, sport: int, dport: int, flags: int, seq: int, ack: int, payload: int) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65000, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + 20 + payload, 0, 0x4000, 64, 6, 0, src, dst)
    return ETH + ip + tcp + bytes(payload)


def _bulk(cl: tuple, sv: tuple, j: int, k: int) -> list[tuple]:
    script = [(*cl, SYN, j, 0, 0), (*sv, SYN | ACK, k, j + 1, 0), (*cl, ACK, j + 1, k + 1, 0)]
    off = 1
    for i in range(10000):
        script.append((*cl, PSH | ACK, j + off, k + 1, 1448))
        off += 1448
        if i % 2:
            script.append((*sv, ACK, k + 1, j + off, 0))
    script += [
        (*cl, FIN | ACK, j + off, k + 1, 0),
        (*sv, FIN | ACK, k + 1, j + off + 1, 0),
        (*cl, ACK, j + off + 1, k + 2, 0),
    ]
    return script


def make_pcap(n: int, shape: str = "short") -> Path:
    path = OUT / (f"{n}.pcap" if shape == "short" else f"{n}-{shape}.pcap")
    if path.exists():
        return path
    OUT.mkdir(exist_ok=True)
    t = 1_700_000_000.0
    with open(path, "wb") as fh:
        w = PcapWriter(fh)
        conn = 0
        while w.count < n:
            sport = 1024 + conn % 60000
            j, k = (conn * 7919) % (1 << 32), (conn * 104729 + 12345) % (1 << 32)
            cl, sv = (SRC, DST, sport, 80), (DST, SRC, 80, sport)
            script = [
                (*cl, SYN, j, 0, 0),
                (*sv, SYN | ACK, k, j + 1, 0),
                (*cl, ACK, j + 1, k + 1, 0),
                (*cl, PSH | ACK, j + 1, k + 1, 100),
                (*sv, ACK, k + 1, j + 101, 0),
                (*cl, FIN | ACK, j + 101, k + 1, 0),
                (*sv, ACK, k + 1, j + 102, 0),
                (*sv, FIN | ACK, k + 1, j + 102, 0),
                (*cl, ACK, j + 102, k + 2, 0),
            ]
            if shape == "bulk":
                script = _bulk(cl, sv, j, k)
            for args in script:
                if w.count >= n:
                    break
                t += 0.00001
                w.write(t, frame(*args[:5], args[5] % (1 << 32), args[6] % (1 << 32), args[7]))
            conn += 1
    return path


def timed(argv: list[str]) -> dict:
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        # TZ set: without it glibc's localtime() stats /etc/localtime for every packet tcpdump
        # prints (measured: 1M packets 6.1 s with TZ unset, 2.2 s with TZ=UTC, the difference
        # all system time); a tcpdump slowed by that would flatter the ratio
        p = subprocess.Popen(argv, stdout=devnull, stderr=subprocess.PIPE, env={**os.environ, "TZ": "UTC"})
        _, status, ru = os.wait4(p.pid, 0)
        err = p.stderr.read().decode() if p.stderr else ""
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{argv} exited {code}: {err}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "max_rss_mib": ru.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="+", type=int)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--shape", choices=("short", "bulk"), default="short")
    ns = ap.parse_args()
    tcpdump = shutil.which("tcpdump")
    tcptune = [sys.executable, "-m", "tcptune", "trace", "--read"]
    results = {}
    for n in ns.sizes:
        path = make_pcap(n, ns.shape)
        tools = {"trace --json": [*tcptune, str(path), "--json"], "trace (text)": [*tcptune, str(path)]}
        if tcpdump:
            tools["tcpdump -nn -r"] = [tcpdump, "-nn", "-r", str(path)]
        rows = {name: [] for name in tools}
        for r in range(ns.repeat):
            order = list(tools.items()) if r % 2 == 0 else list(reversed(tools.items()))
            for name, argv in order:
                rows[name].append(timed(argv))
        summary = {}
        for name, runs in rows.items():
            wall = statistics.median(x["wall_s"] for x in runs)
            summary[name] = {
                "wall_s": round(wall, 3),
                "cpu_s": round(statistics.median(x["cpu_s"] for x in runs), 3),
                "packets_per_s": round(n / wall),
                "max_rss_mib": round(max(x["max_rss_mib"] for x in runs), 1),
            }
        if tcpdump:
            base = summary["tcpdump -nn -r"]["packets_per_s"]
            for name in summary:
                summary[name]["x_tcpdump"] = round(summary[name]["packets_per_s"] / base, 2)
        results[n] = summary
        print(f"{n} packets ({path.stat().st_size >> 20} MiB):")
        for name, s in summary.items():
            print(f"  {name:16} {s}")
        if not ns.keep:
            path.unlink()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
