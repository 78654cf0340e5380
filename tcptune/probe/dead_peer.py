"""Probe `dead-peer`: how long until an established connection notices its peer is gone.

The client and server exchange a byte each way (so the client has an RTT sample and its RTO
is the loopback one), then the server socket gets a filter that drops everything and the
client sends one more byte: it is never ACKed.  The client retransmits it (a tail loss probe,
then the RTO timer, doubling up to tcp_rto_max_ms) until tcp_write_timeout() gives up and the
socket fails with ETIMEDOUT (see predict_dead_peer).  --user-timeout sets TCP_USER_TIMEOUT on
the client, which replaces the tcp_retries2 budget.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from typing import TYPE_CHECKING

from tcptune.probe.spec import SOCKET_FILTER, ModelInput, ProbeOption, ProbeSpec

if TYPE_CHECKING:  # probe modules load at every command start: heavy imports are local
    from tcptune.kernel.timers import Prediction
    from tcptune.probe.base import Context, Observation
    from tcptune.probe.capture import Segment


def analyze(segments: list[Segment], server_port: int | None = None) -> list[tuple[float, str, int, str]]:
    """The client's last data segment (t=0) and every retransmission of it (capture or pcap)."""
    return retransmissions(segments, server_port, lambda s: s.length > 0, "data", "retransmit")


def retransmissions(segments, server_port, first_of, first: str, again: str) -> list[tuple[float, str, int, str]]:
    """The last segment to the server that ``first_of`` accepts, and every later copy of it
    (same sequence number): the probe's unanswered segment and its retransmissions."""
    mine = [s for s in segments if first_of(s) and (server_port is None or s.dport == server_port)]
    if not mine:
        return []
    last = mine[-1]
    copies = [s for s in mine if (s.sport, s.dport, s.seq) == (last.sport, last.dport, last.seq)]
    return [(s.t, first if i == 0 else again, i, "") for i, s in enumerate(copies)]


def connected_pair(socks: list[socket.socket], lst: socket.socket, port: int) -> tuple[socket.socket, socket.socket]:
    """A client and its accepted server socket on 127.0.0.1:port, after one byte each way:
    the client has an RTT sample, so its RTO is srtt + tcp_rto_min_us (__tcp_set_rto())."""
    from tcptune.probe.base import LOOPBACK

    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    socks.append(c)
    c.settimeout(5)
    c.connect((LOOPBACK, port))
    srv, _ = lst.accept()
    socks.append(srv)
    srv.settimeout(5)
    c.sendall(b"?")
    srv.recv(1)
    srv.sendall(b"!")
    c.recv(1)
    time.sleep(0.02)  # let the delayed ACK of the server's byte go out before the peer goes silent
    return c, srv


def run(ctx: Context, obs: Observation) -> None:
    from tcptune.probe.base import DROP_ALL, POLL_S, closing_all, listener, maybe_capture, silence, tcp_info

    with closing_all() as socks:
        lst, port = listener(socks)
        with maybe_capture(ctx, port, obs) as cap:
            c, srv = connected_pair(socks, lst, port)
            ut = ctx.options.get("user_timeout")
            if ut is not None:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(ut))
            obs.measured["rto_s"] = tcp_info(c).rto_us / 1e6
            base = tcp_info(c).total_retrans
            silence(srv, DROP_ALL)  # the peer goes silent
            c.setblocking(False)
            obs.started = time.time()
            ctx.begin()
            c.send(b"x")  # never ACKed
            if cap is None:
                obs.add(obs.started, "data", 0, "send() called (no capture)")
            poller = select.poll()
            poller.register(c, select.POLLERR)
            seen, prev = 0, time.time()
            while not ctx.expired():
                before = time.time()  # the state checked below is at least this recent
                ready = poller.poll(POLL_S * 1000)
                now = time.time()
                if cap is None:
                    try:
                        n = tcp_info(c).total_retrans - base  # the loss probe counts too (__tcp_retransmit_skb())
                    except OSError:
                        n = seen
                    for k in range(seen + 1, n + 1):
                        obs.add(now, "retransmit", k, "TCP_INFO total_retrans", since=prev)
                    seen = max(seen, n)
                    ctx.events_seen = seen
                if ready:
                    err = c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    name = errno.errorcode.get(err, str(err))
                    what = "etimedout" if err == errno.ETIMEDOUT else "socket_error"
                    obs.add(now, what, 0, f"socket error {name}", since=prev)
                    obs.measured["socket_error"] = name
                    break
                prev = before
                ctx.tick()
            time.sleep(0.05)
            obs.watched_until = time.time()
            obs.measured["client_port"] = c.getsockname()[1]


def rto_of(m: ModelInput) -> float:
    """The client's measured RTO, or the loopback one from tcp_rto_min_us before it is measured."""
    from tcptune.kernel.timers.retries import loopback_rto

    measured = m.measured.get("rto_s")
    return float(measured) if measured else loopback_rto(m.settings.get("tcp_rto_min_us"), m.hz)


def predict(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers.retries import predict_dead_peer

    return predict_dead_peer(
        m.need("tcp_retries2"),
        rto_of(m),
        m.rto_max_s(),
        retries1=m.settings.get("tcp_retries1"),
        user_timeout_ms=m.options.get("user_timeout"),
        hz=m.hz,
    )


def budget_with_the_120s_cap(m: ModelInput) -> Prediction:
    """The rule before 6.15 (and the old explain texts): TCP_RTO_MAX, not the socket's cap."""
    from tcptune.kernel.timers.retries import predict_dead_peer

    return predict_dead_peer(m.need("tcp_retries2"), rto_of(m), None, hz=m.hz)


SPEC = ProbeSpec(
    name="dead-peer",
    summary="Retransmissions of unacknowledged data to a silent peer and when the socket fails (tcp_retries2).",
    example="sysctl -w net.ipv4.tcp_rto_max_ms=1000 net.ipv4.tcp_retries2=4; tcptune probe dead-peer",
    settings=(
        "net.ipv4.tcp_retries2",
        "net.ipv4.tcp_retries1",
        "net.ipv4.tcp_rto_max_ms",
        "net.ipv4.tcp_rto_min_us",
    ),
    predict=predict,
    wrong_model=budget_with_the_120s_cap,
    quick={"tcp_retries2": 4, "tcp_rto_max_ms": 1000},
    run=run,
    analyze=analyze,
    not_in_packets=("etimedout",),  # retries1 is optional: predicted, never observed
    needs=frozenset({SOCKET_FILTER}),
    options=(
        ProbeOption(
            "--user-timeout",
            "MS",
            "Set TCP_USER_TIMEOUT (ms) on the probe's socket: it replaces the tcp_retries2 budget.",
        ),
    ),
    outcome="ETIMEDOUT",
    order=45,
)
