"""Facts about the processes a finding names, through psutil: who runs them and how near their fd limit.

Only for the few processes a finding names: psutil builds an object per process, which
is right for one owner and wrong for a million sockets (the /proc/*/fd index does those).
"""

from __future__ import annotations

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


def process_facts(pid: int) -> ProcessFacts | None:
    """What psutil can tell about ``pid``; None when it is gone.  Unreadable fields stay None."""
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
        get(p.num_fds),
        limit[0] if limit else None,
    )
