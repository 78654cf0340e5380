"""HOST layer: durable file writes relative to an open directory, never through a symlink.

Shared by the snapshot store (tcptune.host.transaction) and tcptune's sysctl.d file
(tcptune.host.sysctld_files): both must never show a half-written file, nor be redirected by a
link planted in their directory.
"""

from __future__ import annotations

import contextlib
import os

CREATE_EXCL = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_all(fd: int, data: bytes) -> None:
    """write(2) until all of ``data`` is written (a regular file may take it in pieces)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replace_at(dfd: int, name: str, data: bytes, mode: int, tmp: str) -> None:
    """Atomically make ``name`` in directory ``dfd`` hold ``data`` with ``mode``.

    Temp file ``tmp`` (created O_EXCL|O_NOFOLLOW; a leftover of our own pid is
    replaced), fsync, rename over ``name``, fsync the directory.  On failure the temp
    file is removed and ``name`` is untouched.
    """
    try:
        fd = os.open(tmp, CREATE_EXCL, mode, dir_fd=dfd)
    except FileExistsError:  # our own leftover (the same pid, an earlier killed run)
        os.unlink(tmp, dir_fd=dfd)
        fd = os.open(tmp, CREATE_EXCL, mode, dir_fd=dfd)
    try:
        try:
            os.fchmod(fd, mode)  # not narrowed by the umask
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    os.fsync(dfd)
