#!/usr/bin/env python3
"""Fill a private network namespace with N sockets, then time (and optionally profile) views in process.

    sudo python3 bench/inprocess.py 1000000 [--rounds 5] [--cprofile 'states --by local-port']

For finding where the time of one view goes without the noise of interpreter start-up:
prints the median of ROUNDS for the bare dump (bench/floor.py) and each dump_table view,
then, with --cprofile, the top of a cProfile of the whole command run in process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import fill  # noqa: E402
import floor  # noqa: E402
import run  # noqa: E402


def median_time(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def decode_only(rounds: int) -> None:
    import os
    import struct

    from tcptune.core import inet_diag as d
    from tcptune.host.sockdiag import open_diag_socket

    seq = int.from_bytes(os.urandom(4), "little") >> 2 | 1
    buffers = []
    with open_diag_socket() as sock:
        sock.send(d.request(0, 0xFFE & ~d.LISTEN_MASK, seq))
        portid = sock.getsockname()[0]  # the kernel binds the port id on the first send
        tail = struct.pack("=II", seq, portid)
        while True:
            buf = bytearray(d.RECV_BUF)
            n = sock.recv_into(buf)
            buffers.append((buf, n))
            if d.is_last_buffer(buf, n, tail):
                break
    if os.environ.get("TCPTUNE_SAVE_DUMP"):  # for tuning the decoders offline, without a fill each time
        with open(os.environ["TCPTUNE_SAVE_DUMP"], "wb") as fh:
            fh.write(struct.pack("<III", seq, portid, len(buffers)))
            for buf, n in buffers:
                fh.write(struct.pack("<I", n) + buf[:n])
    for by in (None, "local-port", "peer", "process"):

        def run(by=by):
            c = d.DumpCounter(d.reply_type(0), seq, portid, by)
            d.consume(buffers, c, 0)
            c.finish(d.DiagTable())

        print(f"decode only, by {by!s:12s}  {median_time(run, rounds):.3f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cprofile", metavar="ARGS", action="append", help="tcptune arguments to profile (repeatable)")
    args = ap.parse_args()
    run.setup_netns()
    nofile = fill.raise_nofile()
    pids, pipes, _fds = run.start_workers(args.n, fill.workers_for(args.n, nofile))
    try:
        time.sleep(run.SETTLE_SECONDS)
        from tcptune.host import sockdiag

        views = {
            "floor (one AF_UNSPEC walk)": floor.discard_dump,
            "counts": sockdiag.dump_table,
            **{f"by {b}": (lambda b=b: sockdiag.dump_table(by=b)) for b in ("local-port", "peer", "process")},
        }
        for name, fn in views.items():
            print(f"{name:28s} {median_time(fn, args.rounds):.3f} s", flush=True)
        # The decoders alone, on buffers received once: their CPU cost without the kernel's.
        decode_only(args.rounds)
        for argv in args.cprofile or ():
            import cProfile
            import io
            import pstats

            from tcptune.cli import main as cli_main

            print(f"== tcptune {argv}", flush=True)
            t = time.perf_counter()
            prof = cProfile.Profile()
            prof.enable()
            sys.stdout = io.StringIO()
            try:
                cli_main(argv.split())
            except SystemExit:
                pass
            finally:
                sys.stdout = sys.__stdout__
            prof.disable()
            print(f"{time.perf_counter() - t:.3f} s under the profiler")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    finally:
        run.stop_workers(pids, pipes)


if __name__ == "__main__":
    main()
