#!/usr/bin/env python3
"""Start-up time of `tcptune audit` (and what it imports), against bare Python.

Usage: python bench/startup.py [RUNS]
Runs each command RUNS times (default 30) after 3 warm-ups and prints the median and
the 90th percentile wall time, plus whether scapy/psutil/tabulate were imported.
Read-only: it audits the live host's values, writes nothing.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def timeit(argv: list[str], runs: int) -> tuple[float, float]:
    for _ in range(3):
        subprocess.run(argv, capture_output=True)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True)
        samples.append(time.perf_counter() - t)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    py = sys.executable
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import typer'": [py, "-c", "import typer"],
        "tcptune --version": [py, "-m", "tcptune", "--version"],
        "tcptune audit --json": [py, "-m", "tcptune", "audit", "--json"],
        "tcptune audit (table)": [py, "-m", "tcptune", "audit"],
    }
    print(f"{'command':32} {'median ms':>10} {'p90 ms':>8}")
    for name, argv in cases.items():
        med, p90 = timeit(argv, runs)
        print(f"{name:32} {med * 1000:10.1f} {p90 * 1000:8.1f}")
    probe = (
        "import sys\nfrom tcptune.cli import main\ntry:\n    main(['audit', '--json'])\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(','.join(m for m in ('scapy', 'psutil', 'tabulate') if m in sys.modules) or 'none')"
    )
    r = subprocess.run([py, "-c", probe], capture_output=True, text=True)
    print(f"heavy modules imported by `tcptune audit --json`: {r.stderr.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
