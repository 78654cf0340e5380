"""The /proc/*/fd walk hands its fd counts on, and the fd-limit screen judges walked pids from them."""

from __future__ import annotations

import os
import resource
import socket

from tcptune.host.owners import socket_owner_index
from tcptune.host.processes import socket_owners_near_fd_limit


def test_the_walk_counts_each_processes_fds_and_indexes_its_sockets():
    with socket.socket() as s:
        counts: dict[int, int] = {}
        index, owners, _ = socket_owner_index(fd_counts=counts)
        mine = len(os.listdir("/proc/self/fd"))
        assert abs(counts[os.getpid()] - mine) <= 2  # each listing sees its own directory fd
        inode = os.fstat(s.fileno()).st_ino
        assert owners[index[inode]][0] == os.getpid()


def test_the_screen_takes_a_walked_pids_count_and_sockets_from_the_walk():
    """A child at 95 of its 100 fds, holding sockets: judged from the walk's numbers, not listed again."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a low limit and sockets up to 95 fds
        try:
            os.close(ready_r)
            os.close(hold_w)  # else its read below never sees the parent's end close
            resource.setrlimit(resource.RLIMIT_NOFILE, (100, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            held = [socket.socket() for _ in range(95 - len(os.listdir("/proc/self/fd")) + 1)]
            os.write(ready_w, str(len(os.listdir("/proc/self/fd")) - 1).encode())
            os.read(hold_r, 1)
            del held
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        n = int(os.read(ready_r, 16) or b"0")  # b"": the child failed before it was ready
        assert 90 <= n <= 100
        assert (pid, n, 100) in socket_owners_near_fd_limit(0.9)  # listed by the screen itself
        assert (pid, 97, 100) in socket_owners_near_fd_limit(0.9, walked=({pid: 97}, {pid}))  # the walk's count
        # walked, but no socket among its fds: no socket owner, whatever its count
        assert all(p != pid for p, _, _ in socket_owners_near_fd_limit(0.9, walked=({pid: 97}, set())))
        # walked below the mark: the walk's count is all the screen looks at
        assert all(p != pid for p, _, _ in socket_owners_near_fd_limit(0.9, walked=({pid: 3}, {pid})))
    finally:
        os.close(hold_w)
        os.waitpid(pid, 0)
