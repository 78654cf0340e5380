"""Parsers for /proc/net text formats (pure: text in, values out).

/proc/net/tcp and /proc/net/tcp6 are printed by net/ipv4/tcp_ipv4.c (tcp4_seq_show:
get_tcp4_sock, get_openreq4, get_timewait4_sock) and net/ipv6/tcp_ipv6.c
(get_tcp6_sock, ...), one socket per line after a header:

    sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ...
     0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 ...

Addresses are the raw __be32 words printed with %08X as *host-order* integers, so on a
little-endian machine 127.0.0.1 reads 0100007F; an IPv6 address is four such words.
Ports are printed already in host order (%04X of ntohs()).  ``st`` is the kernel state
number (include/net/tcp_states.h); request socks are printed as 03 (get_openreq4 passes
TCP_SYN_RECV) and TIME_WAIT socks as 06, both with inode 0.

Malformed or truncated lines never raise: they come back as ``ProcWarning`` (file, line
number, reason) and are skipped.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import NamedTuple

from tcptune.kernel.states import TCP_BOUND_INACTIVE, TcpState


class TcpRow(NamedTuple):
    family: int  # socket.AF_INET or AF_INET6
    state: int  # kernel state number (TcpState value)
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    tx_queue: int
    rx_queue: int  # for LISTEN: the accept queue length (sk_ack_backlog)
    uid: int
    inode: int  # 0 for TIME_WAIT, request socks and orphans
    retransmits: int = 0  # the retrnsmt column: icsk_retransmits (get_tcp4_sock(), %08X), 0 for TIME_WAIT


@dataclass(frozen=True)
class ProcWarning:
    file: str
    line: int
    reason: str
    text: str

    def __str__(self) -> str:
        shown = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return f"{self.file}:{self.line}: {self.reason}; skipped: {shown!r}"


def _addr(hexaddr: str, family: int, byteorder: str) -> str:
    fmt = "<I" if byteorder == "little" else ">I"
    if family == socket.AF_INET:
        if len(hexaddr) != 8:
            raise ValueError(f"IPv4 address {hexaddr!r} is not 8 hex digits")
        return socket.inet_ntop(socket.AF_INET, struct.pack(fmt, int(hexaddr, 16)))
    if len(hexaddr) != 32:
        raise ValueError(f"IPv6 address {hexaddr!r} is not 32 hex digits")
    raw = b"".join(struct.pack(fmt, int(hexaddr[i : i + 8], 16)) for i in range(0, 32, 8))
    addr = ipaddress.IPv6Address(raw)
    return str(addr.ipv4_mapped or addr)


def _endpoint(field: str, family: int, byteorder: str) -> tuple[str, int]:
    host, sep, port = field.partition(":")
    if not sep or len(port) != 4:
        raise ValueError(f"address {field!r} is not ADDR:PORT")
    return _addr(host, family, byteorder), int(port, 16)


def parse_proc_net_tcp(
    text: str, family: int = socket.AF_INET, source: str = "/proc/net/tcp", byteorder: str = "little"
) -> tuple[list[TcpRow], list[ProcWarning]]:
    """Rows of /proc/net/tcp (family AF_INET) or /proc/net/tcp6 (AF_INET6), and warnings for bad lines.

    ``byteorder`` is that of the machine that printed the file (x86 and arm64: little).
    """
    rows: list[TcpRow] = []
    warnings: list[ProcWarning] = []
    lines = text.split("\n")
    for no, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped:
            continue
        if no == 1 or stripped.startswith("sl "):
            if not stripped.startswith("sl"):
                warnings.append(ProcWarning(source, no, "expected the 'sl local_address ...' header", line))
            continue
        f = stripped.split()
        try:
            if len(f) < 10 or not f[0].endswith(":"):
                raise ValueError(f"{len(f)} fields, expected at least 10 (truncated line?)")
            int(f[0][:-1])  # slot number
            laddr, lport = _endpoint(f[1], family, byteorder)
            raddr, rport = _endpoint(f[2], family, byteorder)
            if len(f[3]) != 2:
                raise ValueError(f"state {f[3]!r} is not 2 hex digits")
            state = int(f[3], 16)
            if not TcpState.ESTABLISHED <= state <= TCP_BOUND_INACTIVE:
                raise ValueError(f"state {f[3]} is not a TCP state")
            txq, sep, rxq = f[4].partition(":")
            if not sep:
                raise ValueError(f"queues {f[4]!r} are not TX:RX")
            tx, rx = int(txq, 16), int(rxq, 16)
            retrans = int(f[6], 16)
            uid = int(f[7])
            inode = int(f[9])
            if uid < 0 or inode < 0:
                raise ValueError("negative uid or inode")
        except ValueError as exc:
            warnings.append(ProcWarning(source, no, str(exc), line))
            continue
        rows.append(TcpRow(family, state, laddr, lport, raddr, rport, tx, rx, uid, inode, retrans))
    return rows, warnings


def parse_sockstat(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/sockstat ('TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1') -> {'TCP': {'inuse': 5, ...}}.

    Lines or pairs that do not parse are left out.
    """
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        proto, sep, rest = line.partition(":")
        if not sep:
            continue
        f = rest.split()
        vals = {}
        for k, v in zip(f[0::2], f[1::2]):
            try:
                vals[k] = int(v)
            except ValueError:
                continue
        out[proto.strip()] = vals
    return out
