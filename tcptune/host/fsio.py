"""HOST layer: durable file writes relative to an open directory, never through a symlink.

Shared by the snapshot store (tcptune.host.statedir) and tcptune's sysctl.d file
(tcptune.host.sysctld_files): both must never show a half-written file, nor be redirected by a
link planted in their directory, and both clean up the temp files of a writer that was
killed (SIGKILL between create and rename) by the same rule: ``clean_stale_temps``.
"""

from __future__ import annotations

import contextlib
import os
import stat

CREATE_EXCL = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_all(fd: int, data: bytes) -> None:
    """write(2) until all of ``data`` is written (a regular file may take it in pieces)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replace_at(dfd: int, name: str, data: bytes, mode: int) -> None:
    """Atomically make ``name`` in directory ``dfd`` hold ``data`` with ``mode``.

    Temp file ``temp_name(name)`` (created O_EXCL|O_NOFOLLOW; a leftover of our own pid is
    replaced), fsync, rename over ``name``, fsync the directory.  On failure the temp
    file is removed and ``name`` is untouched.
    """
    tmp = temp_name(name)
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


def temp_name(name: str) -> str:
    """The temp file ``replace_at`` writes ``name`` through: it carries the writer's pid."""
    return f".{name}.tcptune-{os.getpid()}.tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def clean_stale_temps(dfd: int, name: str | None = None) -> None:
    """Remove ``temp_name(name)`` files in ``dfd`` (any name when None) whose writer is gone.

    The one rule: a temp file is stale when the pid in its name is not a running process,
    or is this process (a leftover of an earlier run that had the same pid; this process
    is not writing one now).  Only regular files are removed; the name alone decides, so a
    temp file of a writer still running, in this or another tcptune, is never touched.
    """
    for entry in os.listdir(dfd):
        base, sep, rest = entry.rpartition(".tcptune-")
        pid = rest[: -len(".tmp")]
        if not (sep and base.startswith(".") and rest.endswith(".tmp") and pid.isdigit()):
            continue
        if name is not None and base != f".{name}":
            continue
        if int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.stat(entry, dir_fd=dfd, follow_symlinks=False).st_mode):
                os.unlink(entry, dir_fd=dfd)


def trust_problem(st: os.stat_result, want_dir: bool) -> str | None:
    """Why a state or lock path cannot be trusted: wrong type, another owner, or writable by others."""
    euid = os.geteuid()
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != euid:
        return f"owned by uid {st.st_uid}, not by uid {euid} (this process)"
    if st.st_mode & 0o022:
        who = "group and others" if st.st_mode & 0o022 == 0o022 else "others" if st.st_mode & 0o002 else "its group"
        return f"writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def fsync_dir(d) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_output(path: str, what: str):
    """A new or truncated regular file opened for binary writing (trace --pcap); one clear
    error (exit 2) when it cannot be."""
    from tcptune.errors import ExitCode, TcptuneError

    try:
        return open(path, "wb", buffering=1 << 16)  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise TcptuneError(f"{what} {path}: cannot write: {exc.strerror}", ExitCode.BAD_INPUT) from None
