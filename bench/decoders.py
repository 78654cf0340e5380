#!/usr/bin/env python3
"""Time the sock_diag decoders alone, on a recorded dump: no kernel, no interpreter start-up.

    sudo python3 bench/decoders.py record 1000000 /tmp/dump-1M.pickle   # in a private netns it makes
    python3 bench/decoders.py time /tmp/dump-1M.pickle [--tree OTHER_CHECKOUT] [--repeat 3]

``record`` unshares a network namespace (never the host's), fills it with N sockets as
bench/run.py does (bench/fill.py) and saves the buffers of one dump of every socket, as the
kernel sent them, with their listeners' ports.  ``time`` feeds those buffers to
tcptune.core.inet_diag's DumpCounter for each view (counts, --by local-port, --by peer,
doctor's dest view) and prints the CPU seconds of the best of ``--repeat`` passes; with
``--tree`` the tcptune package of that checkout is timed instead (before/after, one file).
TIME_WAIT sockets live 60 s: ``record`` saves at once, so the file holds them.
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VIEWS = ("counts", "local-port", "peer", "dest")
PORT_RANGE = (1024, 65535)  # what bench/run.py sets in its namespace


def record(n: int, path: str) -> None:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    import fill
    import run

    from tcptune.host import sockdiag

    run.setup_netns()
    pids, pipes, _fds = run.start_workers(n, fill.workers_for(n, fill.raise_nofile()))
    try:
        saved = []
        real = sockdiag.received

        def keep(sock, tail):
            for buf, size in real(sock, tail):
                saved.append((tail, bytes(buf[:size])))
                yield buf, size

        sockdiag.received = keep
        table = sockdiag.dump_table(by="dest", port_range=PORT_RANGE)
        with open(path, "wb") as fh:
            pickle.dump({"buffers": saved, "listener_ports": sorted({x.port for x in table.listeners})}, fh)
        print(f"{len(saved)} buffers, {sum(len(b) for _, b in saved)} bytes, {sum(table.counts.values())} sockets")
    finally:
        run.stop_workers(pids, pipes)


def time_views(path: str, tree: str | None, repeat: int, views=VIEWS) -> None:
    sys.path.insert(0, tree or str(HERE.parent))
    from tcptune.core.inet_diag import DiagTable, DumpCounter, consume, reply_type

    with open(path, "rb") as fh:
        data = pickle.load(fh)
    dumps: dict[bytes, list] = {}
    for tail, buf in data["buffers"]:
        dumps.setdefault(tail, []).append((bytearray(buf), len(buf)))
    for view in views:
        by = None if view == "counts" else view
        best = None
        for _ in range(repeat):
            t = os.times()
            table = DiagTable()
            for i, (tail, buffers) in enumerate(dumps.items()):
                seq, portid = struct.unpack("=II", tail)
                listen = i == 0  # dump_table asks for the listeners first
                taken = frozenset(data["listener_ports"]) if by == "dest" and not listen else frozenset()
                counter = DumpCounter(
                    reply_type(socket.AF_UNSPEC),
                    seq,
                    portid,
                    by,
                    listeners=listen,
                    port_range=PORT_RANGE if by == "dest" else None,
                    exclude_ports=taken,
                )
                consume(iter(buffers), counter, socket.AF_UNSPEC)
                counter.finish(table)
            u = os.times()
            cpu = u.user + u.system - t.user - t.system
            best = cpu if best is None else min(best, cpu)
        print(f"{view:11} {best:.3f} s CPU (best of {repeat})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("sockets", type=int)
    r.add_argument("file")
    t = sub.add_parser("time")
    t.add_argument("file")
    t.add_argument("--tree", help="time the tcptune of this checkout")
    t.add_argument("--repeat", type=int, default=3)
    t.add_argument("--view", action="append", choices=VIEWS, help="only these views (default: all)")
    args = ap.parse_args()
    if args.cmd == "record":
        record(args.sockets, args.file)
    else:
        time_views(args.file, args.tree, args.repeat, tuple(args.view or VIEWS))


if __name__ == "__main__":
    main()
