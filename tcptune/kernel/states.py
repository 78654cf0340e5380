"""TCP states as the kernel numbers them (pure).

Values are those of include/net/tcp_states.h (enum { TCP_ESTABLISHED = 1, ... }),
which both /proc/net/tcp (the hex ``st`` column) and inet_diag
(``inet_diag_msg.idiag_state``) report, and which inet_diag's ``idiag_states``
request bitmask is indexed by (bit ``1 << state``).

Names are the ones netstat(8) and /proc tutorials use (ESTABLISHED, SYN_RECV,
FIN_WAIT1, ...).  ``ss`` spells them differently (ESTAB, SYN-RECV, FIN-WAIT-1);
``SS_NAMES`` maps them so output can be compared with ``ss``.
"""

from __future__ import annotations

from enum import IntEnum


class TcpState(IntEnum):
    # include/net/tcp_states.h
    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11


# Kernel-internal states that never appear under their own name in user-facing
# counts (include/net/tcp_states.h):
#  - TCP_NEW_SYN_RECV (12) is a request sock (a pending connection, struct
#    request_sock).  inet_diag reports them with idiag_state = TCP_SYN_RECV
#    (net/ipv4/inet_diag.c: inet_req_diag_fill sets r->idiag_state = TCP_SYN_RECV)
#    and /proc/net/tcp prints them as state 03 (net/ipv4/tcp_ipv4.c:
#    get_openreq4 prints TCP_SYN_RECV), so both sources count them as SYN_RECV.
#  - TCP_BOUND_INACTIVE (13, kernel >= 6.7) is a bound, not listening, socket;
#    inet_diag returns it only when bit 13 is asked for and `ss -a` leaves it out.
TCP_NEW_SYN_RECV = 12
TCP_BOUND_INACTIVE = 13

STATE_NAMES: tuple[str, ...] = tuple(s.name for s in TcpState)

# inet_diag idiag_states bitmask of the eleven user-visible states (bits 1..11),
# the same set `ss -a` asks for.
ALL_STATES_MASK = 0
for _s in TcpState:
    ALL_STATES_MASK |= 1 << int(_s)
del _s

# ss(8) spelling (iproute2 misc/ss.c sstate_name[]).
SS_NAMES: dict[TcpState, str] = {
    TcpState.ESTABLISHED: "ESTAB",
    TcpState.SYN_SENT: "SYN-SENT",
    TcpState.SYN_RECV: "SYN-RECV",
    TcpState.FIN_WAIT1: "FIN-WAIT-1",
    TcpState.FIN_WAIT2: "FIN-WAIT-2",
    TcpState.TIME_WAIT: "TIME-WAIT",
    TcpState.CLOSE: "UNCONN",
    TcpState.CLOSE_WAIT: "CLOSE-WAIT",
    TcpState.LAST_ACK: "LAST-ACK",
    TcpState.LISTEN: "LISTEN",
    TcpState.CLOSING: "CLOSING",
}
_BY_SS_NAME = {v: k for k, v in SS_NAMES.items()}


def state_from_kernel(value: int) -> TcpState | None:
    """The user-visible state for a kernel state number; request socks count as SYN_RECV."""
    if value == TCP_NEW_SYN_RECV:
        return TcpState.SYN_RECV
    try:
        return TcpState(value)
    except ValueError:
        return None


def parse_state_name(text: str) -> TcpState:
    """Accept ESTABLISHED, established, ESTAB, fin-wait-1, FIN_WAIT1, syn-recv ... -> TcpState.

    Raises ValueError naming the accepted spellings.
    """
    t = text.strip().upper()
    if t in _BY_SS_NAME:
        return _BY_SS_NAME[t]
    norm = t.replace("-", "_")
    if norm in TcpState.__members__:
        return TcpState[norm]
    squashed = norm.replace("_", "")
    for s in TcpState:
        if s.name.replace("_", "") == squashed:
            return s
    raise ValueError(f"unknown TCP state {text!r}; use one of {', '.join(STATE_NAMES)}")


def states_mask(states) -> int:
    """inet_diag idiag_states bitmask for an iterable of TcpState (empty -> all eleven)."""
    mask = 0
    for s in states:
        mask |= 1 << int(s)
    return mask or ALL_STATES_MASK
