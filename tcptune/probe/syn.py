"""Probe `syn`: an unanswered connect() on loopback, its SYN retransmissions and ETIMEDOUT.

A listening socket whose socket filter drops every segment makes the kernel discard
the client's SYNs silently (tcp_v4_rcv() -> tcp_filter() on the listener), so the
client retransmits on its own schedule until tcp_write_timeout() gives up.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from typing import TYPE_CHECKING

from tcptune.probe.spec import SOCKET_FILTER, ModelInput, ProbeSpec

if TYPE_CHECKING:  # probe modules load at every command start: heavy imports are local
    from tcptune.kernel.timers import Prediction
    from tcptune.probe.base import Context, Observation
    from tcptune.probe.capture import Segment


def analyze(segments: list[Segment], server_port: int | None = None) -> list[tuple[float, str, int, str]]:
    """The client's SYN and its retransmissions, from captured segments (live or pcap)."""
    from tcptune.probe.capture import ACK, SYN

    syns = [s for s in segments if s.has(SYN) and not s.flags & ACK and (server_port is None or s.dport == server_port)]
    if not syns:
        return []
    first = syns[0]
    mine = [s for s in syns if (s.sport, s.dport, s.seq) == (first.sport, first.dport, first.seq)]
    return [(s.t, "syn" if i == 0 else "syn_retransmit", i, "") for i, s in enumerate(mine)]


def run(ctx: Context, obs: Observation) -> None:
    from tcptune.probe.base import DROP_ALL, LOOPBACK, POLL_S, closing_all, listener, maybe_capture, tcp_info

    with closing_all() as socks:
        _lst, port = listener(socks, DROP_ALL)
        with maybe_capture(ctx, port, obs) as cap:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(c)
            c.setblocking(False)
            poller = select.poll()
            poller.register(c, select.POLLOUT | select.POLLERR)
            obs.started = time.time()
            ctx.begin()
            try:
                c.connect((LOOPBACK, port))
            except BlockingIOError:
                pass
            sent_at = time.time()
            seen_retrans = 0
            if cap is None:
                obs.add(sent_at, "syn", 0, "connect() called (no capture)")
            prev = time.time()
            while not ctx.expired():
                before = time.time()  # the state checked below is at least this recent
                ready = poller.poll(POLL_S * 1000)
                now = time.time()
                if cap is None:
                    try:
                        info = tcp_info(c)
                    except OSError:
                        info = None
                    if info is not None and info.total_retrans > seen_retrans:
                        for k in range(seen_retrans + 1, info.total_retrans + 1):
                            obs.add(now, "syn_retransmit", k, "TCP_INFO total_retrans", since=prev)
                        seen_retrans = info.total_retrans
                        ctx.events_seen = seen_retrans
                elif cap is not None:
                    ctx.events_seen = len(cap.frames)
                if ready:
                    err = c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    name = errno.errorcode.get(err, str(err)) if err else "connected"
                    what = "connect_timeout" if err == errno.ETIMEDOUT else "connect_result"
                    obs.add(now, what, 0, f"connect() -> {name}", since=prev)
                    break
                prev = before
                ctx.tick()
            obs.watched_until = time.time()
            obs.measured["client_port"] = c.getsockname()[1]


def predict(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers import syn as model

    return model.predict_syn(
        m.need("tcp_syn_retries"), m.settings.get("tcp_syn_linear_timeouts"), m.rto_max_s(), hz=m.hz
    )


def textbook(m: ModelInput) -> Prediction:
    """The tutorials' 1, 2, 4 ... s schedule: what the probe must tell apart from the kernel."""
    from tcptune.kernel.timers import syn as model

    return model.predict_syn_textbook(m.need("tcp_syn_retries"))


SPEC = ProbeSpec(
    name="syn",
    summary=(
        "SYN retransmissions of an unanswered connect() and when it fails (tcp_syn_retries, "
        "tcp_syn_linear_timeouts, RTO cap, time cap)."
    ),
    example="sysctl -w net.ipv4.tcp_syn_retries=2; tcptune probe syn",
    settings=("net.ipv4.tcp_syn_retries", "net.ipv4.tcp_syn_linear_timeouts", "net.ipv4.tcp_rto_max_ms"),
    predict=predict,
    wrong_model=textbook,
    quick={"tcp_syn_retries": 1, "tcp_syn_linear_timeouts": 4},
    run=run,
    analyze=analyze,
    not_in_packets=("connect_timeout", "connect_result"),
    needs=frozenset({SOCKET_FILTER}),
    order=10,
)
