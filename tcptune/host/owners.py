"""Who holds each socket: an index from socket inode to owning process, from /proc/*/fd.

HOST layer.  The fd walk is done here, not with psutil: ``psutil.Process.net_connections()``
reads every process's fds AND parses /proc/net/tcp{,6} once per process, building a Python
object per connection (11.4 s and 515 MB at a million sockets, bench/README.md, against
~2 s for this walk).  psutil names the owners (a handful of processes): its ``name()``
gives the full program name where /proc/PID/comm cuts it at 15 characters.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import partial
from itertools import repeat

from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.processes import fd_table_size

_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")


def socket_owner_index(
    proc: str = "/proc", wanted: set[int] | None = None
) -> tuple[dict[int, int], list[tuple[int, str]], int]:
    """(inode -> owner number, owners [(pid, name)], unreadable pids), one pass over /proc/*/fd.

    Built for a million sockets: per process the fd links are read with readlinkat()
    mapped in C, the socket inodes pulled out by one regex over the joined links, and
    the dict updated from a zip: no Python step per fd.  Pids are visited highest
    first so that a socket shared by several processes ends up credited to the lowest.
    ``wanted``: only these inodes' owners are needed (doctor's full listeners, stalled
    sockets): the walk stops once all are found.
    """
    index: dict[int, int] = {}
    pids_owning: list[int] = []
    unreadable = 0
    for pid in _pids(proc, highest_first=True):
        try:
            dfd = os.open(f"{proc}/{pid}/fd", _FD_DIR)
        except OSError:
            unreadable += 1
            continue
        try:
            links = _fd_links(dfd, os.listdir(dfd))
        except OSError:
            unreadable += 1
            continue
        finally:
            os.close(dfd)
        inodes = _SOCKET_LINK.findall("\n".join(links))
        if inodes:
            index.update(zip(map(int, inodes), repeat(len(pids_owning))))
            pids_owning.append(pid)
            if wanted is not None and wanted <= index.keys():
                break
    return index, [(pid, process_name(pid, proc)) for pid in pids_owning], unreadable


_FD_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _pids(proc: str, highest_first: bool = False) -> list[int]:
    try:
        return sorted((int(p) for p in os.listdir(proc) if p.isdigit()), reverse=highest_first)
    except OSError as exc:
        raise TcptuneError(f"cannot list {proc}: {exc.strerror}", ExitCode.BAD_INPUT) from exc


def _fd_links(dfd: int, names) -> list[str]:
    """The link targets of fd ``names`` in the fd directory ``dfd``; a name that is gone (the
    fd closed meanwhile, or a hole in a sample) is left out."""
    readlink = os.readlink
    try:
        return list(map(partial(readlink, dir_fd=dfd), names))
    except OSError:  # again, one by one
        links = []
        for name in names:
            try:
                links.append(readlink(name, dir_fd=dfd))
            except OSError:
                continue
        return links


# Fd links read per process by sample_socket_fds(); above this many open fds it reads a sample.
# Looking up one /proc/PID/fd/N costs ~5 us of kernel time on this machine, measured alike for
# readlink(), stat() and lstat() (so it is finding the fd entry, not formatting the link):
# 650k fds took 4-5 s, the single largest cost of doctor at a million sockets.  1024 evenly
# spaced fds estimate a share p to within 1.96 * sqrt(p (1 - p) / 1024), at most 3.1 points.
SAMPLE_FDS = 1024


@dataclass(frozen=True)
class SocketSample:
    """The socket inodes one process holds, from all its fds or from a sample of them."""

    pid: int
    open_fds: int  # its open fds
    read: int  # fd links read: open_fds when all were, else the sample's size
    sockets: frozenset[int]  # the socket inodes among those read

    @property
    def sampled(self) -> bool:
        return self.read < self.open_fds

    def scaled(self, n: int) -> int:
        """``n`` of the links read, as a count over all its fds (the same number when all were read)."""
        return round(n * self.open_fds / self.read) if self.sampled and self.read else n


def sample_socket_fds(proc: str = "/proc", sample: int = SAMPLE_FDS) -> list[SocketSample]:
    """Per process holding sockets: the socket inodes among (a sample of) its fds.

    A process with up to ``sample`` open fds has every link read (exact).  A bigger one has
    ``sample`` fds read at evenly spaced fd numbers: a systematic sample, so fds opened in
    phases (the oldest, leaked connections at the low numbers) are each represented in
    proportion; ``scaled()`` turns counts among them into estimates.  Where the fd table
    (FDSize in /proc/PID/status) is at most twice the open fds, the numbers are probed
    without listing the directory (a hole just fails; the open fd count is the directory's
    st_size: proc_fd_getattr() in fs/proc/fd.c, since 6.2; on 6.18 measured equal to the
    listing's count); a sparser table, or a kernel that reports 0 there, is listed and every
    k-th fd read.  Names are left to the caller: only the few
    processes a finding names need one.
    """
    out: list[SocketSample] = []
    for pid in _pids(proc):
        try:
            dfd = os.open(f"{proc}/{pid}/fd", _FD_DIR)
        except OSError:
            continue
        try:
            open_fds = os.fstat(dfd).st_size
            table = fd_table_size(pid, proc) if open_fds > sample else None
            if table and sample < open_fds <= table <= 2 * open_fds:
                # a dense table: probe evenly spaced fd numbers (a hole just fails), no listing
                probes = min(table, -(-sample * table // open_fds))
                links = _fd_links(dfd, [str(i * table // probes) for i in range(probes)])
            else:
                names = os.listdir(dfd)  # in fd order
                open_fds = len(names)
                if open_fds > sample:  # a sparse table (fds closed since it grew): every k-th fd
                    names = [names[i * open_fds // sample] for i in range(sample)]
                links = _fd_links(dfd, names)
                if open_fds <= sample:  # all read: as many as could be (one may have closed meanwhile)
                    open_fds = len(links)
        except OSError:
            continue
        finally:
            os.close(dfd)
        inodes = _SOCKET_LINK.findall("\n".join(links))
        if inodes:
            sockets = frozenset(map(int, inodes))
            out.append(SocketSample(pid, max(open_fds, len(links)), len(links), sockets))
    return out


class SampleInChild:
    """sample_socket_fds() in a forked child while doctor reads its dump (tcptune.host.forked says
    why not a thread: here the readlink() calls each waited for the GIL, and at a million sockets
    doctor took 1.3 s longer in wall time than its CPU time)."""

    def __init__(self, proc: str = "/proc", sample: int = SAMPLE_FDS) -> None:
        from tcptune.host.forked import Forked

        self._proc, self._sample = proc, sample
        self._child = Forked(self._rows)

    def _rows(self, _input) -> tuple:
        try:
            return (
                "ok",
                [(x.pid, x.open_fds, x.read, tuple(x.sockets)) for x in sample_socket_fds(self._proc, self._sample)],
            )
        except TcptuneError as exc:
            return ("error", exc.message, exc.exit_code, exc.hint)

    def result(self) -> list[SocketSample]:
        payload = self._child.result() or self._rows(None)  # no child, or it failed: here
        if payload[0] == "error":
            raise TcptuneError(payload[1], ExitCode(payload[2]), hint=payload[3])
        return [SocketSample(pid, open_fds, read, frozenset(socks)) for pid, open_fds, read, socks in payload[1]]


def process_name(pid: int, proc: str = "/proc") -> str:
    """The program name of ``pid`` ("?" when it is gone or hidden)."""
    if proc == "/proc":
        import psutil

        try:
            return psutil.Process(pid).name() or "?"
        except (psutil.Error, OSError):
            return "?"
    try:  # another procfs mount (psutil reads only its own PROCFS_PATH)
        with open(f"{proc}/{pid}/comm", "rb") as fh:
            return fh.read().decode("utf-8", "replace").strip() or "?"
    except OSError:
        return "?"
