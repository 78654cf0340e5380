#!/usr/bin/env python3
"""Same output as another checkout?  Fill a private namespace with N sockets and run each
`tcptune states` variant from both trees (PYTHONPATH), back to back, comparing exit code,
stdout and stderr.  For a refactoring that must not change behaviour.

    sudo python3 bench/compare.py 20000 /path/to/other/checkout
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import fill  # noqa: E402
import run  # noqa: E402

run.setup_netns()
nofile = fill.raise_nofile()
n = int(sys.argv[1])
pids, pipes, _ = run.start_workers(n, fill.workers_for(n, nofile))
time.sleep(2)
try:
    for args in (
        ["--json"],
        ["--json", "--by", "local-port", "--top", "0"],
        ["--json", "--by", "peer", "--top", "0"],
        ["--json", "--by", "process", "--top", "0"],
        ["--json", "--by", "peer"],
        ["--by", "local-port"],
        ["--state", "syn-recv,listen", "--by", "local-port", "--json"],
        ["-6", "--json", "--by", "peer"],
    ):
        outs = []
        for tree in (sys.argv[2], str(HERE.parent)):
            env = dict(os.environ, PYTHONPATH=tree)
            t = time.perf_counter()
            r = subprocess.run(
                [sys.executable, "-m", "tcptune", "states", *args], capture_output=True, text=True, env=env
            )
            outs.append((r.returncode, r.stdout, r.stderr[-300:], time.perf_counter() - t))
        same = outs[0][:3] == outs[1][:3]
        print(
            " ".join(args), "SAME" if same else "DIFF", "seconds other/this:", [f"{o[3]:.2f}" for o in outs], flush=True
        )
        if not same:
            a, b = outs[0][1], outs[1][1]
            try:
                ja, jb = json.loads(a), json.loads(b)
                print(
                    " states equal:",
                    ja["states"] == jb["states"],
                    "groups equal:",
                    ja.get("groups") == jb.get("groups"),
                )
                if ja.get("groups") != jb.get("groups"):
                    print(ja.get("groups")[:3], jb.get("groups")[:3])
                    print(len(ja.get("groups")), len(jb.get("groups")))
            except Exception:
                print(a[:1500])
                print(b[:1500])
                print(outs[0][2], outs[1][2])
finally:
    run.stop_workers(pids, pipes)
