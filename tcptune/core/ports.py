"""Ephemeral ports: the range connect() draws from, what is usable of it, and who uses it most (pure).

connect() without a bound port picks one in __inet_hash_connect() (net/ipv4/inet_hashtables.c):
it walks ip_local_port_range, skips ip_local_reserved_ports (inet_is_local_reserved_port())
and ports a bind() holds, and takes a port whose 4-tuple with this destination is free
(__inet_check_established()).  Ports connect() took are shared between destinations, so
the limit is per (local address, peer address, peer port): that many sockets, TIME_WAIT
included (their 4-tuple stays taken 60 s, TCP_TIMEWAIT_LEN), and the next connect() to
that destination fails with EADDRNOTAVAIL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TIME_WAIT_SECONDS = 60  # include/net/tcp.h TCP_TIMEWAIT_LEN (60 * HZ), not a sysctl


def parse_port_range(value: str | None) -> tuple[int, int] | None:
    """'32768\\t60999' -> (32768, 60999); None when absent or not two ascending ports."""
    try:
        lo, hi = (int(x) for x in (value or "").split())
    except ValueError:
        return None
    return (lo, hi) if 0 < lo <= hi <= 65535 else None


def parse_reserved_ports(value: str | None) -> list[tuple[int, int]]:
    """'8000-8010,9000' (proc_do_large_bitmap's format) -> [(8000, 8010), (9000, 9000)]; bad parts skipped."""
    out = []
    for part in (value or "").replace("\n", ",").split(","):
        first, _, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            continue
        if 0 <= lo <= hi <= 65535:
            out.append((lo, hi))
    return out


def usable_ports(port_range: tuple[int, int], reserved: list[tuple[int, int]]) -> int:
    """Ports connect() can pick: the range minus the reserved ports inside it (overlaps counted once)."""
    lo, hi = port_range
    cut = 0
    last = lo - 1  # the highest reserved port counted so far
    for r_lo, r_hi in sorted(reserved):
        r_lo, r_hi = max(r_lo, last + 1), min(r_hi, hi)
        if r_lo <= r_hi:
            cut += r_hi - r_lo + 1
            last = r_hi
    return hi - lo + 1 - cut


@dataclass(frozen=True)
class PortUse:
    """One destination's share of the ephemeral ports."""

    local: str  # the local address the sockets use
    peer: str
    peer_port: int
    in_use: int  # sockets on this 4-tuple's destination with a local port in the range (TIME_WAIT included)
    usable: int

    @property
    def ratio(self) -> float:
        return self.in_use / self.usable if self.usable > 0 else 1.0

    def to_json(self) -> dict:
        return {
            "local": self.local,
            "peer": self.peer,
            "peer_port": self.peer_port,
            "in_use": self.in_use,
            "usable": self.usable,
            "ratio": round(self.ratio, 4),
        }


def port_use(destinations: Mapping[tuple[str, str, int], int], usable: int, top: int | None = None) -> list[PortUse]:
    """The destinations by share of the usable ports, busiest first (ties by address: stable output)."""
    ranked = sorted(destinations.items(), key=lambda kv: (-kv[1], kv[0]))
    return [PortUse(local, peer, port, n, usable) for (local, peer, port), n in ranked[:top]]
