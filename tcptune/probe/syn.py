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

from tcptune.probe.base import (
    DROP_ALL,
    LOOPBACK,
    POLL_S,
    Context,
    Observation,
    closing_all,
    listener,
    maybe_capture,
    tcp_info,
)
from tcptune.probe.capture import ACK, SYN, Segment

NAME = "syn"


def analyze(segments: list[Segment], server_port: int | None = None) -> list[tuple[float, str, int, str]]:
    """The client's SYN and its retransmissions, from captured segments (live or pcap)."""
    syns = [s for s in segments if s.has(SYN) and not s.flags & ACK and (server_port is None or s.dport == server_port)]
    if not syns:
        return []
    first = syns[0]
    mine = [s for s in syns if (s.sport, s.dport, s.seq) == (first.sport, first.dport, first.seq)]
    return [(s.t, "syn" if i == 0 else "syn_retransmit", i, "") for i, s in enumerate(mine)]


def run(ctx: Context) -> Observation:
    obs = Observation(NAME, "capture")
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
            obs.measured["server_port"] = port
        if cap is not None:
            obs.raw_events.extend(analyze(obs.segments, port))
    return obs
