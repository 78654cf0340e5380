"""Facts about the processes a finding names, through psutil: who runs them and how near their fd limit.

Only for the few processes a finding names: psutil builds an object per process, which
is right for one owner and wrong for a million sockets (the /proc/*/fd index does those).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessFacts:
    pid: int
    name: str
    user: str | None
    cmdline: str | None
    open_fds: int | None
    fd_limit: int | None  # RLIMIT_NOFILE soft limit

    def label(self) -> str:
        who = f", user {self.user}" if self.user else ""
        fds = f", {self.open_fds}/{self.fd_limit} fds" if self.open_fds is not None and self.fd_limit else ""
        return f"{self.name} (pid {self.pid}{who}{fds})"


def process_facts(pid: int, open_fds: int | None = None) -> ProcessFacts | None:
    """What psutil can tell about ``pid``; None when it is gone.  Unreadable fields stay None.

    ``open_fds``: the count the caller has just listed, so psutil does not list the fd
    directory again (20k entries cost it ~20 ms).
    """
    import psutil

    try:
        p = psutil.Process(pid)
        name = p.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return ProcessFacts(pid, "?", None, None, None, None)

    def get(fn):
        try:
            return fn()
        except (psutil.Error, OSError):
            return None

    cmdline = get(p.cmdline)
    limit = get(lambda: p.rlimit(psutil.RLIMIT_NOFILE))
    return ProcessFacts(
        pid,
        name,
        get(p.username),
        " ".join(cmdline) if cmdline else None,
        open_fds if open_fds is not None else get(p.num_fds),
        limit[0] if limit else None,
    )


def _soft_nofile(pid: int, proc: str) -> int | None:
    """The soft 'Max open files' of /proc/PID/limits (fs/proc/base.c proc_pid_limits); None: unlimited/unreadable."""
    try:
        with open(f"{proc}/{pid}/limits", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Max open files"):
                    soft = line[len("Max open files") :].split()[0]
                    return int(soft) if soft.isdigit() else None
    except OSError:
        return None
    return None


def fd_table_size(pid: int, proc: str = "/proc") -> int | None:
    """FDSize of /proc/PID/status: the size of its fd table, above its highest open fd (task_state())."""
    try:
        with open(f"{proc}/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("FDSize:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def socket_owners_near_fd_limit(share: float, proc: str = "/proc") -> list[tuple[int, int, int]]:
    """(pid, open fds, soft RLIMIT_NOFILE) of the processes in this network namespace
    whose open fds reach ``share`` of their limit and that hold at least one socket.

    A screen over every process that costs a stat of its fd directory and small reads of its
    limits and status (no psutil object per process); only the few that pass have their fd
    links read, up to the first socket.  "In this network namespace" is /proc/PID/ns/net against our own: the
    processes whose sockets doctor's dump sees.
    """
    try:
        own = os.stat(f"{proc}/self/ns/net").st_ino
        pids = [int(p) for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return []
    out = []
    for pid in sorted(pids):
        try:
            if os.stat(f"{proc}/{pid}/ns/net").st_ino != own:
                continue
        except OSError:
            continue
        limit = _soft_nofile(pid, proc)
        if not limit:
            continue
        # FDSize (the fd table's size, fs/proc/array.c task_state()) bounds the open fds from
        # above: a process whose table is below the mark cannot be near its limit, and its fd
        # directory (a million entries, for a big server) is not listed.
        fdsize = fd_table_size(pid, proc)
        if fdsize is not None and fdsize < share * limit:
            continue
        fd_dir = f"{proc}/{pid}/fd"
        try:
            # the count without a listing where the kernel gives it: st_size is the number of
            # open fds (proc_fd_getattr() in fs/proc/fd.c, 6.2+; 0 before)
            open_fds = os.stat(fd_dir).st_size
            names = os.listdir(fd_dir) if open_fds == 0 else None
        except OSError:
            continue
        if names is not None:
            open_fds = len(names)
        if open_fds < share * limit:
            continue
        # the first socket link is enough: counting them all is a readlink per fd (2 s at a
        # million); without a listing, fd numbers in order (holes just fail) up to the table's end
        if names is None:
            names = map(str, range(fdsize if fdsize is not None else open_fds))
        if any(_is_socket(f"{fd_dir}/{name}") for name in names):
            out.append((pid, open_fds, limit))
    return out


def _is_socket(link: str) -> bool:
    try:
        return os.readlink(link).startswith("socket:")
    except OSError:
        return False
