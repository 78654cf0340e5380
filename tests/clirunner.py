"""The one way tests run the command line: this interpreter's `python -m tcptune`.

Never the `tcptune` first on PATH, which may be a stale install of another checkout.
Colour off and a wide COLUMNS unless a test asks otherwise, stdin empty (not a terminal).
"""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    *args: str, env: dict | None = None, stdin: str | bytes | None = "", timeout: float = 60, cwd=None
) -> subprocess.CompletedProcess:
    e = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tcptune", *args],
        capture_output=True,
        text=not isinstance(stdin, bytes),
        env=e,
        input=stdin,
        timeout=timeout,
        cwd=cwd,
    )


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed run; fails the test on a traceback or several lines."""
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("tcptune: error: "), err
    return lines[0]
