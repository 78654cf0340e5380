"""Ephemeral-port exhaustion per destination (local address, peer, peer port)."""

from __future__ import annotations

from collections.abc import Mapping

from tcptune.core.diagnoses.model import (
    CRITICAL,
    NEAR,
    WARNING,
    DoctorInput,
    Evidence,
    Finding,
    setting_evidence,
    setting_int,
)
from tcptune.core.ports import TIME_WAIT_SECONDS, parse_port_range, parse_reserved_ports, port_use, usable_ports

PORT_EVIDENCE = 5  # destinations listed in the ephemeral-ports finding


def usable_ephemeral_ports(settings: Mapping[str, str | None]) -> int | None:
    """ip_local_port_range minus ip_local_reserved_ports (None when the range is unreadable)."""
    port_range = parse_port_range(settings.get("net.ipv4.ip_local_port_range"))
    if port_range is None:
        return None
    return usable_ports(port_range, parse_reserved_ports(settings.get("net.ipv4.ip_local_reserved_ports")))


def ephemeral_port_use(inp: DoctorInput, top: int | None = None):
    """The destinations by share of the usable ephemeral ports, busiest first ([] when the range is unknown)."""
    usable = usable_ephemeral_ports(inp.settings)
    if usable is None or not inp.destinations:
        return []
    return port_use(inp.destinations, usable, top)


def _tw_reuse_effect(inp: DoctorInput, peer: str) -> str:
    reuse = setting_int(inp.settings, "net.ipv4.tcp_tw_reuse")
    timestamps = setting_int(inp.settings, "net.ipv4.tcp_timestamps")
    loopback = peer.startswith("127.") or peer == "::1"
    if timestamps == 0:
        return "tcp_timestamps=0: tcp_tw_reuse cannot act (it needs timestamps, for PAWS), TIME_WAIT ports stay taken"
    delay = setting_int(inp.settings, "net.ipv4.tcp_tw_reuse_delay")
    # before 6.14 the delay is a fixed second (tcp_twsk_unique(): time_after32(now, ts_recent_stamp))
    older = f"older than tcp_tw_reuse_delay ({delay} ms)" if delay is not None else "more than 1 s old"
    if reuse == 1 or (reuse == 2 and loopback):
        return (
            f"tcp_tw_reuse={reuse} with timestamps: connect() may take over a 4-tuple in TIME_WAIT once it is "
            f"{older}, when the peer sent timestamps too"
        )
    return (
        f"tcp_tw_reuse={reuse}: TIME_WAIT 4-tuples to this peer are not reused"
        + (" (2 reuses loopback only)" if reuse == 2 else "")
        + f"; tcp_tw_reuse=1 (with tcp_timestamps on both ends) lets connect() take over ones {older}"
    )


def check_ephemeral_ports(inp: DoctorInput) -> list[Finding]:
    used = ephemeral_port_use(inp, PORT_EVIDENCE)
    near = [u for u in used if u.ratio >= NEAR]
    if not near:
        return []
    worst = near[0]
    evidence = [
        Evidence(
            f"{u.local} -> {u.peer}:{u.peer_port}: {u.in_use} sockets hold ephemeral ports, {u.ratio:.0%} of the "
            f"{u.usable} usable",
            "sock_diag dump: sockets per (local address, peer address, peer port) with a local port in "
            "ip_local_port_range, TIME_WAIT included",
        )
        for u in near
    ]
    evidence += [
        setting_evidence(inp, "net.ipv4.ip_local_port_range"),
        setting_evidence(inp, "net.ipv4.ip_local_reserved_ports"),
    ]
    evidence.append(
        Evidence(
            f"sustainable: {worst.usable} ports / {TIME_WAIT_SECONDS} s of TIME_WAIT = "
            f"{worst.usable / TIME_WAIT_SECONDS:.1f} new connections/s "
            "to one destination when this side closes first",
            "include/net/tcp.h TCP_TIMEWAIT_LEN (60 s, fixed)",
        )
    )
    evidence.append(
        Evidence(_tw_reuse_effect(inp, worst.peer), "net/ipv4/tcp_ipv4.c tcp_twsk_unique(); ip-sysctl.rst tcp_tw_reuse")
    )
    evidence += [setting_evidence(inp, "net.ipv4.tcp_tw_reuse"), setting_evidence(inp, "net.ipv4.tcp_timestamps")]
    full = worst.in_use >= worst.usable
    return [
        Finding(
            "ephemeral-ports",
            CRITICAL if full else WARNING,
            f"{worst.local} -> {worst.peer}:{worst.peer_port} uses {worst.in_use} of {worst.usable} usable ephemeral "
            "ports" + ("; further connect()s to it fail with EADDRNOTAVAIL" if full else ""),
            tuple(evidence),
            (
                "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_tw_reuse",
                "the client program's connection reuse",
            ),
            "reuse connections (keep-alive, pooling); widen ip_local_port_range or add local addresses or peer "
            "ports; a client that bind()s before connect() takes its port without knowing the destination and "
            "cannot share it: set IP_BIND_ADDRESS_NO_PORT before bind()",
            "__inet_hash_connect() and __inet_check_established() in net/ipv4/inet_hashtables.c; ip-sysctl.rst "
            "ip_local_port_range, IP_BIND_ADDRESS_NO_PORT in ip(7)",
        )
    ]
