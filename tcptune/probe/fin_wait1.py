"""Probe `fin-wait1`: an orphaned socket whose FIN is never acknowledged.

The client and server exchange a byte each way (an RTT sample: the client's RTO is the
loopback one), the server socket gets a filter that drops everything, and the client
close()s: its FIN is never ACKed, so the orphan stays in FIN_WAIT1 retransmitting it (a tail
loss probe, then the RTO timer) until tcp_write_timeout() gives up on tcp_orphan_retries
(see predict_fin_wait1) and destroys it, sending nothing.  The end is seen when the 4-tuple
leaves the socket table.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tcptune.probe.spec import SOCKET_FILTER, ModelInput, ProbeSpec

if TYPE_CHECKING:  # probe modules load at every command start: heavy imports are local
    from tcptune.kernel.timers import Prediction
    from tcptune.probe.base import Context, Observation
    from tcptune.probe.capture import Segment

ORPHANS = "orphans"  # the fact orphan_facts() adds


def orphan_facts(read_proc_text) -> dict:
    """The machine-wide count of orphaned TCP sockets, /proc/net/sockstat "orphan"
    (tcp_orphan_count_sum(), the count tcp_too_many_orphans() compares with tcp_max_orphans)."""
    from tcptune.core.procfs import parse_sockstat

    return {ORPHANS: parse_sockstat(read_proc_text("net/sockstat") or "").get("TCP", {}).get("orphan")}


def analyze(segments: list[Segment], server_port: int | None = None) -> list[tuple[float, str, int, str]]:
    """The client's FIN (t=0) and every retransmission of it (capture or pcap)."""
    from tcptune.probe.capture import FIN
    from tcptune.probe.dead_peer import retransmissions

    return retransmissions(segments, server_port, lambda s: s.has(FIN), "fin", "fin_retransmit")


def run(ctx: Context, obs: Observation) -> None:
    from tcptune.kernel.states import TcpState
    from tcptune.probe.base import DROP_ALL, POLL_S, closing_all, find_entry, listener, maybe_capture, silence, tcp_info
    from tcptune.probe.dead_peer import connected_pair

    with closing_all() as socks:
        lst, port = listener(socks)
        with maybe_capture(ctx, port, obs) as cap:
            c, srv = connected_pair(socks, lst, port)
            obs.measured["rto_s"] = tcp_info(c).rto_us / 1e6
            cport = c.getsockname()[1]
            silence(srv, DROP_ALL)  # the FIN will never be ACKed
            socks.remove(c)
            obs.started = time.time()
            ctx.begin()
            c.close()  # orphan it: the FIN goes out
            if cap is None:
                obs.add(obs.started, "fin", 0, "close() called (no capture)")
            seen, prev = 0, time.time()
            while not ctx.expired():
                before = time.time()  # the state checked below is at least this recent
                e = find_entry(cport, port)
                now = time.time()
                if e is None:
                    obs.add(now, "orphan_destroyed", 0, "gone from the socket table", since=prev)
                    break
                if e.state != TcpState.FIN_WAIT1:
                    obs.notes.append(f"the orphan went to state {e.state} instead of staying in FIN_WAIT1")
                    break
                if cap is None and e.retransmits > seen:
                    # sock_diag's retransmit count is icsk_retransmits: RTO expiries only.  The loss
                    # probe (#1) precedes the first of them: seen then, it happened since the FIN.
                    if seen == 0:
                        obs.add(now, "fin_retransmit", 1, "before the first RTO retransmission", since=obs.started)
                    for k in range(seen + 1, e.retransmits + 1):
                        obs.add(now, "fin_retransmit", k + 1, "sock_diag retransmits", since=prev)
                    seen = e.retransmits
                    ctx.events_seen = seen
                prev = before
                ctx.tick()
                time.sleep(POLL_S)
            obs.watched_until = time.time()
            obs.measured["client_port"] = cport


def predict(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers.retries import predict_fin_wait1
    from tcptune.probe.dead_peer import rto_of

    return predict_fin_wait1(
        m.need("tcp_orphan_retries"),
        rto_of(m),
        m.rto_max_s(),
        max_orphans=m.settings.get("tcp_max_orphans"),
        orphans=m.measured.get(ORPHANS),
        hz=m.hz,
    )


def zero_means_eight(m: ModelInput) -> Prediction:
    """The old explain text: 0 is read as 8 unless an ICMP error arrived (no "alive" rule)."""
    from tcptune.kernel.timers.retries import predict_fin_wait1
    from tcptune.probe.dead_peer import rto_of

    return predict_fin_wait1(m.need("tcp_orphan_retries") or 8, rto_of(m), m.rto_max_s(), hz=m.hz)


SPEC = ProbeSpec(
    name="fin-wait1",
    summary="FIN retransmissions of an orphan whose FIN is never ACKed and when it is destroyed (tcp_orphan_retries).",
    example="sysctl -w net.ipv4.tcp_rto_max_ms=1000 net.ipv4.tcp_orphan_retries=0; tcptune probe fin-wait1",
    # tcp_max_orphans is global: inside a network namespace it reads as absent
    settings=(
        "net.ipv4.tcp_orphan_retries",
        "net.ipv4.tcp_rto_max_ms",
        "net.ipv4.tcp_rto_min_us",
        "net.ipv4.tcp_max_orphans",
    ),
    predict=predict,
    wrong_model=zero_means_eight,
    quick={"tcp_orphan_retries": 0, "tcp_rto_max_ms": 1000},
    run=run,
    analyze=analyze,
    not_in_packets=("orphan_destroyed",),
    needs=frozenset({SOCKET_FILTER}),
    facts=orphan_facts,
    outcome="orphan destroyed",
    order=35,
)
