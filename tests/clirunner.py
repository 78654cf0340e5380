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


def run_tty(*args: str, columns: int = 80, timeout: float = 60, env: dict | None = None) -> tuple[int, str]:
    """Run tcptune on a pseudo-terminal ``columns`` wide; (exit code, what the screen got, CRs removed)."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of that size, COLUMNS as a shell would export it
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
            os.environ.update({"COLUMNS": str(columns), "NO_COLOR": "1", **(env or {})})
            os.execv(sys.executable, [sys.executable, "-m", "tcptune", *args])
        finally:
            os._exit(127)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
        else:
            os.kill(pid, 9)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace").replace("\r", "")
