"""Probe `accept-overflow`: a client that completes its handshake into a full accept queue.

The listener (backlog 1, never accept()s) first drops every segment with ACK set (a socket
filter), so the victim client's SYN makes a request and gets its SYN-ACK -- the client is
ESTABLISHED -- while its final ACK is lost.  The filter is then removed and two filler
clients connect normally: the accept queue holds two, more than the backlog of 1
(sk_acceptq_is_full()).  When the server resends its SYN-ACK (1 s later), the victim's ACK
meets the full queue: with tcp_abort_on_overflow=0 it is dropped and the SYN-ACKs go on
until the request is dropped; with 1 the server answers with a RST (see
predict_accept_overflow).  ListenOverflows and ListenDrops (/proc/net/netstat, this network
namespace) are read before and after, and polled while it runs.

A backlog of 1 rather than 0: the SYN queue counts as full when it holds more than the
backlog (inet_csk_reqsk_queue_is_full()), and a full one answers SYNs with cookies
(tcp_syncookies=1) or drops them (0); with 1 no SYN here ever finds it full.
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

SO_DETACH_FILTER = 27  # include/uapi/asm-generic/socket.h; Python's socket module lacks it
COUNTERS = ("ListenOverflows", "ListenDrops")


def listen_counters(text: str | None) -> dict[str, int | None]:
    """ListenOverflows and ListenDrops from /proc/net/netstat text (core/counters' parser)."""
    from tcptune.core.counters import parse_snmp_text
    from tcptune.errors import TcptuneError

    try:
        ext = parse_snmp_text(text or "", "/proc/net/netstat").get("TcpExt", {})
    except TcptuneError:
        ext = {}
    return {k: ext.get(k) for k in COUNTERS}


def _read_counters() -> dict[str, int | None]:
    try:
        with open("/proc/net/netstat") as fh:  # the probe's own network namespace
            return listen_counters(fh.read())
    except OSError:
        return dict.fromkeys(COUNTERS)


def analyze(segments: list[Segment], server_port: int | None = None) -> list[tuple[float, str, int, str]]:
    """The server's SYN-ACKs to the victim (its first SYN on the port), the victim's ACKs after
    each resent SYN-ACK, and a RST (capture or pcap)."""
    from tcptune.probe.capture import ACK, RST, SYN

    syns = [s for s in segments if s.has(SYN) and not s.flags & ACK and (server_port is None or s.dport == server_port)]
    if not syns:
        return []
    cport, sport = syns[0].sport, syns[0].dport
    out: list[tuple[float, str, int, str]] = []
    k = 0
    for s in segments:
        if (s.sport, s.dport) == (sport, cport):
            if s.has(SYN | ACK):
                out.append((s.t, "synack" if k == 0 else "synack_retransmit", k, ""))
                k += 1
            elif s.flags & RST:
                out.append((s.t, "reset", 0, "RST from the server"))
        elif (s.sport, s.dport) == (cport, sport) and s.flags == ACK and k > 1 and s.length == 0:
            out.append((s.t, "overflow_ack", k - 1, "the client's ACK of a resent SYN-ACK"))
    return out


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
        tcp_info,
    )

    with closing_all() as socks:
        lst, port = listener(socks, DROP_ACK)
        lst.listen(1)  # never accept()ed
        with maybe_capture(ctx, port, obs) as cap:
            before = _read_counters()
            victim = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(victim)
            victim.settimeout(5)
            obs.started = time.time()
            ctx.begin()
            victim.connect((LOOPBACK, port))  # ESTABLISHED here; its ACK is dropped by the filter
            if cap is None:
                obs.add(time.time(), "synack", 0, "client connected (no capture)")
            vport = victim.getsockname()[1]
            lst.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            for _ in range(2):  # fill the accept queue past the backlog of 1
                f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(f)
                f.settimeout(5)
                f.connect((LOOPBACK, port))
            victim.setblocking(False)
            poller = select.poll()
            poller.register(victim, select.POLLERR)
            seen, overflows, present, prev = 0, 0, False, time.time()
            while not ctx.expired():
                t_before = time.time()  # the state checked below is at least this recent
                ready = poller.poll(0)
                e = find_entry(port, vport, (TcpState.SYN_RECV,))
                count = _read_counters()["ListenOverflows"]
                now = time.time()
                if count is not None and before["ListenOverflows"] is not None:
                    for k in range(overflows + 1, count - before["ListenOverflows"] + 1):
                        obs.add(now, "listen_overflow", k, "ListenOverflows in /proc/net/netstat", since=prev)
                    overflows = max(overflows, count - before["ListenOverflows"])
                if ready:
                    err = victim.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if cap is None or err != errno.ECONNRESET:
                        what = "reset" if err == errno.ECONNRESET else "socket_error"
                        obs.add(now, what, 0, f"client socket error {errno.errorcode.get(err, err)}", since=prev)
                    obs.measured["socket_error"] = errno.errorcode.get(err, str(err))
                    break
                if e is not None:
                    present = True
                    if cap is None:
                        for k in range(seen + 1, e.retransmits + 1):
                            obs.add(now, "synack_retransmit", k, "sock_diag retransmits of the request", since=prev)
                    seen = max(seen, e.retransmits)
                    ctx.events_seen = seen
                elif present:
                    obs.add(now, "request_dropped", 0, "request left SYN_RECV", since=prev)
                    break
                prev = t_before
                ctx.tick()
                time.sleep(POLL_S)
            time.sleep(SETTLE_S)
            after = _read_counters()
            obs.watched_until = time.time()
            obs.measured["client_port"] = vport
            for k in COUNTERS:
                b, a = before[k], after[k]
                obs.measured[f"{k}_delta"] = None if a is None or b is None else a - b
            said = ", ".join(
                f"{k} +{obs.measured[f'{k}_delta']}" for k in COUNTERS if obs.measured[f"{k}_delta"] is not None
            )
            if obs.measured.get("socket_error") is None:
                # the client still believes it is connected
                obs.measured["client_state"] = TcpState(tcp_info(victim).state).name
                said += f"; the client socket is still {obs.measured['client_state']}"
            obs.notes.append(f"/proc/net/netstat of this namespace during the probe: {said or 'unreadable'}")


def predict(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers.retries import predict_accept_overflow

    return predict_accept_overflow(
        m.need("tcp_abort_on_overflow"),
        m.need("tcp_synack_retries"),
        syncookies=m.settings.get("tcp_syncookies"),
        hz=m.hz,
        kernel=m.kernel,
    )


def abort_flag_inverted(m: ModelInput) -> Prediction:
    """A model that reads tcp_abort_on_overflow backwards."""
    from tcptune.kernel.timers.retries import predict_accept_overflow

    return predict_accept_overflow(0 if m.need("tcp_abort_on_overflow") else 1, m.need("tcp_synack_retries"), hz=m.hz)


SPEC = ProbeSpec(
    name="accept-overflow",
    summary="What a client sees when its handshake completes into a full accept queue (tcp_abort_on_overflow).",
    example="sysctl -w net.ipv4.tcp_abort_on_overflow=0 net.ipv4.tcp_synack_retries=1; tcptune probe accept-overflow",
    settings=("net.ipv4.tcp_abort_on_overflow", "net.ipv4.tcp_synack_retries", "net.ipv4.tcp_syncookies"),
    predict=predict,
    wrong_model=abort_flag_inverted,
    quick={"tcp_abort_on_overflow": 0, "tcp_synack_retries": 1},
    run=run,
    analyze=analyze,
    not_in_packets=("listen_overflow", "request_dropped"),
    needs=frozenset({SOCKET_FILTER}),
    outcome="ends",
    order=25,
)
