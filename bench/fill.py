"""Fill the *current* (private!) network namespace with loopback TCP sockets in a mix of states.

Used by bench/run.py, which unshares a network namespace first.  Never run this in the
host's namespace: ``ensure_private_netns()`` checks.

How each state is made (all on 127.0.0.0/8, which is local on lo):
- LISTEN: the listeners themselves.
- ESTABLISHED: connect() + accept(); both ends stay open.
- FIN_WAIT2 / CLOSE_WAIT: the client shutdown(SHUT_WR)s; the server never closes.
- TIME_WAIT: the client closes, then the server: the client (active closer) waits
  TCP_TIMEWAIT_LEN = 60 s (include/net/tcp.h) - so TIME_WAIT sockets are made last.
- SYN_SENT: connect() to a listener whose classic-BPF socket filter drops every packet:
  the SYN never reaches TCP, the client keeps retransmitting (tcp_syn_retries).
- SYN_RECV: a listener whose filter drops segments with the ACK flag: the request sock
  (TCP_NEW_SYN_RECV) is made, the client's final ACK is dropped, the server keeps
  retransmitting SYN-ACKs (tcp_synack_retries); the client is ESTABLISHED.

Clients bind to many source addresses (127.S.x.y) with IP_BIND_ADDRESS_NO_PORT so the
kernel picks ports per 4-tuple and a million connections fit.
"""

from __future__ import annotations

import ctypes
import os
import resource
import socket
import struct

SO_ATTACH_FILTER = 26
IP_BIND_ADDRESS_NO_PORT = 24
DROP_ALL = [(0x06, 0, 0, 0)]  # ret #0
# ldb [13] (TCP flags: the filter sees the TCP header at offset 0); jset #0x10 (ACK) -> drop
DROP_ACK = [(0x30, 0, 0, 13), (0x45, 0, 1, 0x10), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF)]

# Fraction of N sockets per kind.  ESTABLISHED also gets the SYN_RECV clients.
MIX = {
    "est_pairs": 0.175,  # 2 sockets each: 35 %
    "cw_pairs": 0.10,  # CLOSE_WAIT + FIN_WAIT2: 20 %
    "syn_recv": 0.05,  # request sock + ESTABLISHED client: 10 %
    "syn_sent": 0.05,  # 5 %
    "time_wait": 0.30,  # 30 %
}


def attach_filter(sock: socket.socket, prog) -> None:
    arr = (ctypes.c_ubyte * (8 * len(prog)))()
    for i, (code, jt, jf, k) in enumerate(prog):
        struct.pack_into("=HBBI", arr, 8 * i, code, jt, jf, k)
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }; the kernel copies it.
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HP", len(prog), ctypes.addressof(arr)))


def ensure_private_netns(original_ino: int) -> None:
    """Refuse to go on unless this process left the namespace it started in (``original_ino``)."""
    if os.stat("/proc/self/ns/net").st_ino == original_ino:
        raise SystemExit("refusing to fill the host's network namespace; run bench/run.py (it unshares one)")


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (raising the hard one needs CAP_SYS_RESOURCE,
    which this machine's root lacks: the hard limit is 20000, so sockets are spread over
    many worker processes)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def fds_needed(n: int) -> int:
    """File descriptors the mix holds open for ``n`` sockets (TIME_WAIT and request socks hold none)."""
    return int(n * (2 * MIX["est_pairs"] + 2 * MIX["cw_pairs"] + MIX["syn_recv"] + MIX["syn_sent"])) + 8


def workers_for(n: int, nofile: int) -> int:
    per = max(1000, nofile - 200)
    return max(1, -(-fds_needed(n) // per))


def plan(n: int, workers: int) -> list[dict[str, int]]:
    """Per-worker counts of each kind for about ``n`` sockets in total."""
    out = []
    for w in range(workers):
        out.append({k: int(n * f) // workers + (1 if w < int(n * f) % workers else 0) for k, f in MIX.items()})
    return out


class Filler:
    def __init__(self, worker: int):
        self.worker = worker
        self.keep: list[socket.socket] = []
        self.src_i = 0

    def _src(self) -> str:
        # 127.(20+worker).x.y: 65k source addresses per worker, 1 in 256 ports-per-address rotation
        self.src_i += 1
        i = self.src_i % 4096
        return f"127.{20 + self.worker}.{1 + i // 250}.{1 + i % 250}"

    def _client(self) -> socket.socket:
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        c.bind((self._src(), 0))
        return c

    def listener(self, prog=None, backlog: int = 4096) -> socket.socket:
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((f"127.0.{self.worker}.1", 0))
        if prog:
            attach_filter(lst, prog)
        lst.listen(backlog)
        self.keep.append(lst)
        return lst

    def pairs(self, lst: socket.socket, count: int, then=None) -> None:
        addr = lst.getsockname()
        keep = self.keep
        for _ in range(count):
            c = self._client()
            c.connect(addr)
            s, _ = lst.accept()
            if then is None:
                keep.append(c)
                keep.append(s)
            else:
                then(c, s)

    def half_closed(self, lst, count):
        def then(c, s):
            c.shutdown(socket.SHUT_WR)  # client FIN_WAIT2, server CLOSE_WAIT (it never closes)
            self.keep.append(c)
            self.keep.append(s)

        self.pairs(lst, count, then)

    def time_wait(self, lst, count):
        def then(c, s):
            c.close()  # active closer -> FIN_WAIT2 -> TIME_WAIT once the server's FIN arrives
            s.close()

        self.pairs(lst, count, then)

    def pending(self, lst, count):
        addr = lst.getsockname()
        for _ in range(count):
            c = self._client()
            c.setblocking(False)
            try:
                c.connect(addr)
            except BlockingIOError:
                pass
            self.keep.append(c)


def fill(worker: int, counts: dict[str, int]) -> Filler:
    f = Filler(worker)
    main = f.listener(backlog=65535)
    f.pairs(main, counts["est_pairs"])
    f.half_closed(main, counts["cw_pairs"])
    sent = f.listener(DROP_ALL)
    f.pending(sent, counts["syn_sent"])
    left = counts["syn_recv"]
    while left > 0:  # a listener holds at most its backlog of request socks
        chunk = min(left, 60000)
        f.pending(f.listener(DROP_ACK, backlog=65535), chunk)
        left -= chunk
    f.time_wait(main, counts["time_wait"])
    return f
