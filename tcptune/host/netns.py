"""Entering another network namespace (setns), before any read of /proc/sys/net or /proc/net.

/proc/sys/net and /proc/net show the network namespace of the reading task, so
auditing a container means entering its namespace first.  Python 3.11 has no
os.setns, so this calls libc's setns(2) through ctypes.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tcptune.errors import ExitCode, TcptuneError


def netns_inode(proc: str = "/proc/self") -> int | None:
    """The inode of the network namespace of ``proc`` (/proc/self, /proc/PID), None if unreadable."""
    try:
        return os.stat(f"{proc}/ns/net").st_ino
    except OSError:
        return None


CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"  # where `ip netns add NAME` bind-mounts named namespaces


def _exists(path: Path, spec: str) -> bool:
    try:
        os.stat(path)
        return True
    except FileNotFoundError:
        return False
    except PermissionError:
        raise TcptuneError(
            f"--netns {spec}: permission denied on {path}",
            ExitCode.PRIVILEGES,
            hint="entering another process's network namespace needs root (CAP_SYS_ADMIN and CAP_SYS_PTRACE)",
        ) from None
    except OSError as exc:
        raise TcptuneError(f"--netns {spec}: cannot stat {path}: {exc.strerror}", ExitCode.BAD_INPUT) from None


def resolve_netns(spec: str) -> Path:
    """Map NAME | PID | PATH to a namespace file (no side effects besides stat)."""
    if not spec or "\x00" in spec:
        raise TcptuneError("--netns needs a name, a pid or a path", ExitCode.BAD_INPUT)
    if spec.isdigit():
        path = Path(f"/proc/{spec}/ns/net")
        if not _exists(path, spec):
            raise TcptuneError(f"--netns {spec}: no process with pid {spec}", ExitCode.BAD_INPUT)
        return path
    if "/" in spec:
        path = Path(spec)
    else:
        path = Path(NETNS_RUN_DIR) / spec
    if not _exists(path, spec):
        raise TcptuneError(
            f"--netns {spec}: {path} does not exist",
            ExitCode.BAD_INPUT,
            hint="see `ip netns list`, or pass a pid or a path such as /proc/PID/ns/net",
        )
    return path


def _libc_call(name: str, *args: int) -> int:
    """Call libc's ``name``; 0 on success, else errno.  ctypes is imported here, not at module
    load: every command imports this module (netns_inode) and ctypes.util costs ~8 ms."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return 0 if getattr(libc, name)(*args) == 0 else ctypes.get_errno()


def enter_netns(spec: str) -> Path:
    """Switch this process into the network namespace named by ``spec``.

    Needs CAP_SYS_ADMIN; raises TcptuneError with exit 3 otherwise.
    """
    path = resolve_netns(spec)
    try:
        # O_NONBLOCK: a FIFO named as --netns must not hang the open; setns() then says EINVAL.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except PermissionError as exc:
        raise TcptuneError(
            f"--netns {spec}: cannot open {path}: {exc.strerror}", ExitCode.PRIVILEGES, hint="run as root"
        ) from exc
    except OSError as exc:
        raise TcptuneError(f"--netns {spec}: cannot open {path}: {exc.strerror}", ExitCode.BAD_INPUT) from exc
    try:
        err = _libc_call("setns", fd, CLONE_NEWNET)
        if err:
            if err == errno.EPERM:
                raise TcptuneError(
                    f"--netns {spec}: entering a network namespace needs CAP_SYS_ADMIN",
                    ExitCode.PRIVILEGES,
                    hint="run as root, or run tcptune inside the namespace (e.g. `nsenter -n -t PID tcptune ...`)",
                )
            if err == errno.EINVAL:
                raise TcptuneError(f"--netns {spec}: {path} is not a network namespace", ExitCode.BAD_INPUT)
            raise TcptuneError(f"--netns {spec}: setns failed: {os.strerror(err)}", ExitCode.BAD_INPUT)
    finally:
        os.close(fd)
    return path


def unshare_netns() -> None:
    """Move this process into a brand-new, empty network namespace (used by tests and probes)."""
    err = _libc_call("unshare", CLONE_NEWNET)
    if err:
        raise TcptuneError(
            f"cannot create a network namespace: {os.strerror(err)}",
            ExitCode.PRIVILEGES,
            hint="needs CAP_SYS_ADMIN (run as root)",
        )


_ENTERED: list[int] = []  # the inode of the namespace enter_private_netns made, once it has


def in_entered_netns() -> bool:
    """This process is in the private namespace enter_private_netns made (the guard of
    anything that must never change the host's own network, e.g. a qdisc on lo)."""
    return bool(_ENTERED) and netns_inode() == _ENTERED[0]


def enter_private_netns() -> int:
    """Move this process into a new, empty network namespace with ``lo`` up; its inode.

    For experiments that must touch nothing of the host (trace --scenario): sysctls written
    and packets sent from here stay in the namespace, which ends with the process.
    """
    import fcntl
    import socket
    import struct

    before = netns_inode()
    unshare_netns()
    after = netns_inode()
    if after is None or after == before:
        raise TcptuneError(
            "unshare(CLONE_NEWNET) left this process in its namespace; nothing was run", ExitCode.INTERNAL
        )
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1  # include/uapi/linux/sockios.h, if.h
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, siocgifflags, req)[:18])[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))
    _ENTERED[:] = [after]
    return after
