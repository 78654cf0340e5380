"""Probe `keepalive`: an idle connection with SO_KEEPALIVE whose peer stops answering.

The client sets SO_KEEPALIVE (and no TCP_KEEP* overrides) before connecting, so its
keepalive timer starts with the connection.  Once accepted, the server socket gets a
filter that drops everything, so the probes go unanswered: the client sends
tcp_keepalive_probes of them, tcp_keepalive_intvl apart, then a RST, and its socket
fails with ETIMEDOUT (tcp_keepalive_timer()).
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
    """The client's SYN (t=0), handshake, keepalive probes and final RST (capture or pcap)."""
    from tcptune.probe.capture import ACK, RST, SYN

    syns = [s for s in segments if s.has(SYN) and not s.flags & ACK and (server_port is None or s.dport == server_port)]
    if not syns:
        return []
    syn = syns[0]
    cport, sport = syn.sport, syn.dport
    out = []
    established = None
    k = 0
    for s in segments:
        if (s.sport, s.dport) != (cport, sport) or s.t < syn.t:
            continue
        if s.flags & SYN:
            out.append((s.t, "syn", 0, ""))
        elif s.flags & RST:
            out.append((s.t, "reset_timeout", 0, "RST from the client"))
        elif s.has(ACK) and s.length == 0:
            if established is None:
                established = s
                out.append((s.t, "established", 0, "handshake ACK"))
            elif s.seq == (established.seq - 1) % (1 << 32):  # a probe re-sends the last byte's seq - 1
                k += 1
                out.append((s.t, "keepalive_probe", k, ""))
    return [e for e in out if e[1] != "syn" or e is out[0]]  # the first SYN is t=0; a retransmitted one is not an event


def run(ctx: Context, obs: Observation) -> None:
    from tcptune.probe.base import DROP_ALL, LOOPBACK, POLL_S, closing_all, listener, maybe_capture, silence, tcp_info

    with closing_all() as socks:
        lst, port = listener(socks)
        with maybe_capture(ctx, port, obs) as cap:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(c)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            c.settimeout(5)
            obs.started = time.time()
            ctx.begin()
            if cap is None:
                obs.add(obs.started, "syn", 0, "connect() called (no capture)")
            c.connect((LOOPBACK, port))
            t_est = time.time()
            srv, _ = lst.accept()
            socks.append(srv)
            silence(srv, DROP_ALL)  # the peer goes silent
            if cap is None:
                obs.add(t_est, "established", 0, "connect() returned (no capture)")
            c.setblocking(False)
            poller = select.poll()
            poller.register(c, select.POLLIN | select.POLLERR)
            seen = 0
            prev = time.time()
            while not ctx.expired():
                before = time.time()  # the state checked below is at least this recent
                ready = poller.poll(POLL_S * 1000)
                now = time.time()
                if cap is None:
                    try:
                        p = tcp_info(c).probes
                    except OSError:
                        p = seen
                    for k in range(seen + 1, p + 1):
                        obs.add(now, "keepalive_probe", k, "TCP_INFO probes", since=prev)
                    seen = max(seen, p)
                    ctx.events_seen = seen
                if ready:
                    err = c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if cap is None or err != errno.ETIMEDOUT:
                        obs.add(
                            now,
                            "reset_timeout" if err == errno.ETIMEDOUT else "socket_error",
                            0,
                            f"socket error {errno.errorcode.get(err, err)}",
                            since=prev,
                        )
                    obs.measured["socket_error"] = errno.errorcode.get(err, str(err))
                    break
                prev = before
                ctx.tick()
            time.sleep(0.05)
            obs.watched_until = time.time()
            obs.measured["client_port"] = c.getsockname()[1] if c.fileno() >= 0 else None


def predict(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers import keepalive as model

    return model.predict_keepalive(
        m.need("tcp_keepalive_time"), m.need("tcp_keepalive_intvl"), m.need("tcp_keepalive_probes")
    )


def one_probe_too_many(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers import keepalive as model

    return model.predict_keepalive(
        m.need("tcp_keepalive_time"), m.need("tcp_keepalive_intvl"), m.need("tcp_keepalive_probes") + 1
    )


SPEC = ProbeSpec(
    name="keepalive",
    summary="Keepalive idle time, interval and probe count on an SO_KEEPALIVE socket whose peer goes silent.",
    example=(
        "sysctl -w net.ipv4.tcp_keepalive_time=2 net.ipv4.tcp_keepalive_intvl=1 net.ipv4.tcp_keepalive_probes=2; "
        "tcptune probe keepalive"
    ),
    settings=("net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"),
    predict=predict,
    wrong_model=one_probe_too_many,
    quick={"tcp_keepalive_time": 1, "tcp_keepalive_intvl": 1, "tcp_keepalive_probes": 1},
    run=run,
    analyze=analyze,
    needs=frozenset({SOCKET_FILTER}),
    order=40,
)
