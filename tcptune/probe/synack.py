"""Probe `synack`: a request left in SYN_RECV, its SYN-ACK retransmissions and its drop.

The listener's socket filter drops every segment carrying ACK: the client's SYN gets
through, the client's final handshake ACK does not (tcp_v4_rcv() runs the
listener's filter for segments that match a request socket too), so the server keeps
the request and retransmits its SYN-ACK (reqsk_timer_handler()) until it drops it.
The drop sends nothing; it is seen when the request leaves the socket table.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

from tcptune.probe.spec import SOCKET_FILTER, ModelInput, ProbeSpec

if TYPE_CHECKING:  # probe modules load at every command start: heavy imports are local
    from tcptune.kernel.timers import Prediction
    from tcptune.probe.base import Context, Observation
    from tcptune.probe.capture import Segment


def analyze(segments: list[Segment], server_port: int | None = None) -> list[tuple[float, str, int, str]]:
    """The server's SYN-ACK and its retransmissions (live capture or pcap)."""
    from tcptune.probe.capture import ACK, SYN

    sa = [s for s in segments if s.has(SYN | ACK) and (server_port is None or s.sport == server_port)]
    if not sa:
        return []
    first = sa[0]
    mine = [s for s in sa if (s.sport, s.dport, s.seq) == (first.sport, first.dport, first.seq)]
    return [(s.t, "synack" if i == 0 else "synack_retransmit", i, "") for i, s in enumerate(mine)]


def run(ctx: Context, obs: Observation) -> None:
    from tcptune.kernel.states import TcpState
    from tcptune.probe.base import (
        DROP_ACK,
        LOOPBACK,
        POLL_S,
        SETTLE_S,
        closing_all,
        find_entry,
        listener,
        maybe_capture,
    )

    with closing_all() as socks:
        _lst, port = listener(socks, DROP_ACK)
        with maybe_capture(ctx, port, obs) as cap:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(c)
            c.settimeout(5)
            obs.started = time.time()
            ctx.begin()
            c.connect((LOOPBACK, port))  # completes on the client side: it got the SYN-ACK
            t_conn = time.time()
            cport = c.getsockname()[1]
            if cap is None:
                obs.add(t_conn, "synack", 0, "client connected (no capture)")
            seen, present, last = 0, False, None
            prev = time.time()
            while not ctx.expired():
                before = time.time()  # the state checked below is at least this recent
                e = find_entry(port, cport, (TcpState.SYN_RECV,))
                now = time.time()
                if e is not None:
                    present = True
                    if cap is None and e.retransmits > seen:
                        for k in range(seen + 1, e.retransmits + 1):
                            obs.add(now, "synack_retransmit", k, "socket table retrnsmt", since=prev)
                    seen = max(seen, e.retransmits)
                    ctx.events_seen = seen
                elif present:
                    obs.add(now, "request_dropped", 0, "request left SYN_RECV", since=prev)
                    last = now
                    break
                prev = before
                ctx.tick()
                time.sleep(POLL_S)
            if last is not None:  # keep watching briefly for stray SYN-ACKs
                time.sleep(SETTLE_S)
            obs.watched_until = time.time()
            obs.measured["client_port"] = cport


def predict(m: ModelInput) -> Prediction:
    # whether tcp_rto_max_ms applies depends on the kernel (see predict_synack)
    from tcptune.kernel.timers import synack as model

    return model.predict_synack(
        m.need("tcp_synack_retries"),
        m.rto_max_s(),
        hz=m.hz,
        syncookies=m.settings.get("tcp_syncookies"),
        kernel=m.kernel,
    )


def one_retry_too_many(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers import synack as model

    return model.predict_synack(m.need("tcp_synack_retries") + 1, hz=m.hz)


SPEC = ProbeSpec(
    name="synack",
    summary="SYN-ACK retransmissions of a request stuck in SYN_RECV and when it is dropped (tcp_synack_retries).",
    example="sysctl -w net.ipv4.tcp_synack_retries=1; tcptune probe synack",
    # tcp_rto_max_ms: not applied to the request timer through 6.18 (see predict_synack);
    # tcp_syncookies=2: no request socket at all
    settings=("net.ipv4.tcp_synack_retries", "net.ipv4.tcp_rto_max_ms", "net.ipv4.tcp_syncookies"),
    predict=predict,
    wrong_model=one_retry_too_many,
    quick={"tcp_synack_retries": 1},
    run=run,
    analyze=analyze,
    not_in_packets=("request_dropped",),
    needs=frozenset({SOCKET_FILTER}),
    order=20,
)
