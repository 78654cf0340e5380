"""The /proc/*/fd lookups doctor uses: the exact index (stopping once the wanted sockets are
found), the per-process fd sample behind the CLOSE_WAIT estimate, and the fd-limit screen."""

from __future__ import annotations

import os
import resource
import socket
from contextlib import contextmanager

from tcptune.core.diagnoses.owners import sample_margin
from tcptune.host.owners import sample_socket_fds, socket_owner_index
from tcptune.host.processes import socket_owners_near_fd_limit


@contextmanager
def child_holding(sockets: int, pipes: int, limit: int | None = None, sparse: int = 0):
    """A forked child holding ``sockets`` TCP sockets then ``pipes`` pipe pairs (fds in that
    order, as a server's oldest connections sit at its low fd numbers); yields (pid, inodes of
    its sockets, its open fds).  With ``limit`` (its RLIMIT_NOFILE), the counts are of open
    fds to reach: what it inherited counts too.  ``sparse``: first open and close that many
    pipe pairs, so its fd table is more than twice its open fds."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(hold_w)  # else its read below never sees the parent's end close
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            # the soft limit up to the hard one (a low soft default must not fail the big cases)
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit if limit is not None else hard, hard))
            if limit is not None:  # fill up to the mark, whatever it inherited
                have = len(os.listdir("/proc/self/fd")) - 1
                sockets, pipes = max(sockets - have, 0) if sockets else 0, max(pipes - have // 2, 0) if pipes else 0
            grown = [os.pipe() for _ in range(sparse)]
            held = [socket.socket() for _ in range(sockets)]
            held += [os.pipe() for _ in range(pipes)]
            for r, w in grown:  # the table stays as large as it grew (expand_files() never shrinks it)
                os.close(r)
                os.close(w)
            inodes = [os.fstat(s.fileno()).st_ino for s in held[:sockets]]
            opened = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own fd
            msg = f"{opened} " + " ".join(map(str, inodes))
            os.write(ready_w, msg.encode() + b"\n")
            os.read(hold_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        with os.fdopen(ready_r, "rb") as fh:
            words = fh.readline().split()
        assert words, "the child failed before it was ready"
        yield pid, {int(w) for w in words[1:]}, int(words[0])
    finally:
        os.close(hold_w)
        os.waitpid(pid, 0)


def test_the_index_finds_a_sockets_owner_and_stops_once_the_wanted_ones_are_found():
    with socket.socket() as s:
        inode = os.fstat(s.fileno()).st_ino
        index, owners, _ = socket_owner_index()
        assert owners[index[inode]][0] == os.getpid()
        partial_index, partial_owners, _ = socket_owner_index(wanted={inode})
        assert partial_owners[partial_index[inode]][0] == os.getpid()
        # pids are walked highest first and the walk stops at ours: no lower pid was read
        assert all(pid >= os.getpid() for pid, _name in partial_owners)


def test_a_small_process_has_every_fd_read_exactly():
    with child_holding(40, 10) as (pid, inodes, opened):
        (mine,) = [x for x in sample_socket_fds(sample=1024) if x.pid == pid]
        assert not mine.sampled
        assert mine.open_fds == mine.read == opened
        assert inodes <= mine.sockets
        assert mine.scaled(len(inodes)) == len(inodes)


def test_a_big_process_is_estimated_from_an_even_sample_within_its_stated_margin():
    """270 sockets then 315 pipe pairs (fits a hard limit of 1024): a sample of 120 must find about 30 % sockets."""
    with child_holding(270, 315) as (pid, inodes, opened):
        (mine,) = [x for x in sample_socket_fds(sample=120) if x.pid == pid]
        assert mine.sampled
        assert mine.open_fds == opened  # st_size of /proc/PID/fd: the open fds (6.2+)
        assert 120 <= mine.read < opened
        estimate = mine.scaled(len(mine.sockets & inodes))
        assert abs(estimate - 270) <= max(sample_margin(estimate, mine.read, mine.open_fds), 20)
        assert estimate != 0


def test_the_fd_limit_screen_names_a_socket_owner_near_its_limit_and_not_a_pipe_holder():
    with child_holding(90, 0, limit=100) as (with_sockets, _, n):
        with child_holding(0, 45, limit=100) as (with_pipes, _, m):
            assert n >= 90 and m >= 90
            found = socket_owners_near_fd_limit(0.9)
            assert (with_sockets, n, 100) in found
            assert all(pid != with_pipes for pid, _, _ in found)
        # below the mark: not named
        assert all(pid != with_sockets for pid, _, _ in socket_owners_near_fd_limit(0.99))


def test_a_sparse_fd_table_is_listed_and_every_kth_fd_read():
    """600 fds opened then closed: the table (FDSize 1024) is over twice the ~250 open fds, so
    the numbers are not probed blind; the listing's every k-th fd still finds ~30 % sockets."""
    with child_holding(75, 88, sparse=300) as (pid, inodes, opened):
        from tcptune.host.processes import fd_table_size

        assert fd_table_size(pid) > 2 * opened
        (mine,) = [x for x in sample_socket_fds(sample=60) if x.pid == pid]
        assert mine.sampled and mine.read == 60 and mine.open_fds == opened
        estimate = mine.scaled(len(mine.sockets & inodes))
        assert abs(estimate - 75) <= max(sample_margin(estimate, mine.read, mine.open_fds), 8)
