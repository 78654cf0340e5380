"""Writing DIR/tcptune.prom for node_exporter's textfile collector: never a half-written file.

The collector reads every *.prom file at each scrape; a file caught mid-write is a scrape
error.  So: a temp file in the same directory whose name does not end in .prom, fsync,
rename over the old one, fsync the directory (host/fsio.py replace_at).
"""

from __future__ import annotations

import os

from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.fsio import replace_at

FILE_NAME = "tcptune.prom"


def write_textfile(directory: str, text: str) -> str:
    """Atomically make DIRECTORY/tcptune.prom hold ``text`` (mode 0644); the path written."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise TcptuneError(
            f"--textfile {directory}: {exc.strerror}",
            ExitCode.PRIVILEGES if isinstance(exc, PermissionError) else ExitCode.BAD_INPUT,
            hint="the directory node_exporter's --collector.textfile.directory names",
        ) from None
    try:
        replace_at(dfd, FILE_NAME, text.encode(), 0o644)  # via .tcptune.prom.tcptune-PID.tmp: not *.prom
    except OSError as exc:
        raise TcptuneError(
            f"--textfile {directory}: cannot write {FILE_NAME}: {exc.strerror}",
            ExitCode.PRIVILEGES if isinstance(exc, PermissionError) else ExitCode.FINDINGS,
        ) from None
    finally:
        os.close(dfd)
    return os.path.join(directory, FILE_NAME)
