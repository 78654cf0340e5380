"""Regenerate tests/data/kb_netns_defaults-<major.minor>.txt.

Reads every knowledge-base key in the initial network namespace (read only) and
in a fresh one (`unshare -n`, where per-netns keys hold kernel defaults).
Nothing is written anywhere but stdout.  Run as root from the repo:

    python3 tests/data/kb_capture.py > tests/data/kb_netns_defaults-6.18.txt
"""

import datetime
import json
import os
import platform
import subprocess
import sys


def snapshot(keys):
    out = {}
    for key in keys:
        path = "/proc/sys/" + key.replace(".", "/")
        if not os.path.exists(path):
            out[key] = ["-", "-"]
            continue
        with open(path) as fh:
            value = " ".join(fh.read().split())
        out[key] = [value, "rw" if os.access(path, os.W_OK) else "ro"]
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(snapshot(json.loads(sys.stdin.read()))))
        sys.exit(0)
    from tcptune.kernel.kb import load_kb

    keys = sorted(p.key for p in load_kb())
    host = snapshot(keys)
    child = subprocess.run(
        ["unshare", "-n", sys.executable, os.path.abspath(__file__), "--child"],
        input=json.dumps(keys), capture_output=True, text=True, check=True,
    )
    fresh = json.loads(child.stdout)
    print(f"# SOURCE: Linux {platform.release()} {platform.machine()}; tests/data/kb_capture.py, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}")
    print("# columns: key<TAB>host value<TAB>host mode<TAB>fresh-netns value<TAB>fresh-netns mode  ('-' = absent)")
    print("# host = initial network namespace (read only); fresh netns = `unshare -n` (kernel defaults)")
    for key in keys:
        print("\t".join([key, *host[key], *fresh[key]]))
