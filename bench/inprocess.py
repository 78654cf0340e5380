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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cprofile", metavar="ARGS", help="tcptune arguments to profile in process")
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
        if args.cprofile:
            import cProfile
            import io
            import pstats

            from tcptune.cli import main as cli_main

            prof = cProfile.Profile()
            prof.enable()
            sys.stdout = io.StringIO()
            try:
                cli_main(args.cprofile.split())
            except SystemExit:
                pass
            finally:
                sys.stdout = sys.__stdout__
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    finally:
        run.stop_workers(pids, pipes)


if __name__ == "__main__":
    main()
