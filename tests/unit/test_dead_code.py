"""No dead code in the package: vulture finds nothing but the names tests/vulture_whitelist.py explains."""

from __future__ import annotations

import subprocess
import sys


def test_vulture_finds_no_unused_code(repo_root):
    r = subprocess.run(
        [sys.executable, "-m", "vulture", "tcptune", "tests/vulture_whitelist.py", "--min-confidence", "60"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
