"""Inside a private network namespace the source is named by its namespace, never "live host"."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from nsutil import require_netns


def test_audit_inside_unshare_names_the_namespace():
    require_netns()
    code = (
        "import os, subprocess, sys\n"
        "ino = os.stat('/proc/self/ns/net').st_ino\n"
        "r = subprocess.run([sys.executable, '-m', 'tcptune', 'audit', '--json'], capture_output=True, text=True)\n"
        "print(ino); print(r.stdout)\n"
    )
    r = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    ino, _, out = r.stdout.partition("\n")
    assert json.loads(out)["source"] == f"network namespace net:[{ino}]", r.stderr


def test_the_initial_namespace_is_the_live_host():
    if not os.path.exists("/proc/sys/net/core/netdev_max_backlog"):  # only the initial netns has it
        pytest.skip("the suite itself runs inside a network namespace: no initial one to compare with")
    r = subprocess.run([sys.executable, "-m", "tcptune", "show", "--json"], capture_output=True, text=True, timeout=60)
    assert json.loads(r.stdout)["source"] == "live host"
