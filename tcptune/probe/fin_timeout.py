"""Probe `fin-timeout`: how long an orphaned FIN_WAIT2 socket lives.

The client connects, then close()s: its FIN is ACKed by the server socket, which
then stays open and silent (CLOSE_WAIT), so the orphaned client sits in FIN_WAIT2
until tcp_fin_time() runs out (see predict_fin_timeout).  The end sends no packet;
it is seen when the 4-tuple leaves the socket table (timewait sockets in the
FIN_WAIT2 substate are listed with state 05 too), seen in FIN_WAIT2 or not.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

from tcptune.probe.spec import ModelInput, ProbeSpec, timewait_facts

if TYPE_CHECKING:  # probe modules load at every command start: heavy imports are local
    from tcptune.kernel.timers import Prediction
    from tcptune.probe.base import Context, Observation
    from tcptune.probe.capture import Segment


def analyze(segments: list[Segment], server_port: int | None = None) -> list[tuple[float, str, int, str]]:
    """The client's FIN and the server's ACK of it (live capture or pcap)."""
    from tcptune.probe.capture import ACK, FIN

    fins = [s for s in segments if s.has(FIN) and (server_port is None or s.dport == server_port)]
    if not fins:
        return []
    fin = fins[0]
    out = [(fin.t, "fin", 0, "")]
    for s in segments:
        if (
            (s.sport, s.dport) == (fin.dport, fin.sport)
            and s.has(ACK)
            and s.t >= fin.t
            and s.ack == (fin.seq + fin.length + 1) % (1 << 32)
        ):
            out.append((s.t, "fin_acked", 0, ""))
            break
    return out


def run(ctx: Context, obs: Observation) -> None:
    from tcptune.kernel.states import TcpState
    from tcptune.probe.base import LOOPBACK, POLL_S, closing_all, find_entry, listener, maybe_capture, tcp_info

    with closing_all() as socks:
        lst, port = listener(socks)
        with maybe_capture(ctx, port, obs) as cap:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(5)
            c.connect((LOOPBACK, port))
            srv, _ = lst.accept()
            socks.append(srv)  # stays open and silent: the client never gets a FIN
            cport = c.getsockname()[1]
            time.sleep(0.01)
            obs.measured["rto_s"] = tcp_info(c).rto_us / 1e6  # tcp_fin_time() floors at 3.5 x this
            obs.started = time.time()
            ctx.begin()
            c.close()  # orphan it: FIN goes out
            t_close = time.time()
            if cap is None:
                obs.add(t_close, "fin", 0, "close() called (no capture)")
            seen = False
            prev = time.time()
            while not ctx.expired():
                before = time.time()  # the state checked below is at least this recent
                e = find_entry(cport, port)
                now = time.time()
                if e is not None and e.state == TcpState.FIN_WAIT2:
                    if not seen and cap is None:
                        obs.add(now, "fin_acked", 0, "FIN_WAIT2 in the socket table", since=prev)
                    seen = True
                    ctx.events_seen = 1
                elif e is None:
                    # The 4-tuple existed before close(), so its absence now means the socket is
                    # gone, whether or not a FIN_WAIT2 phase was ever long enough to poll (a full
                    # timewait table, tcp_max_tw_buckets, closes the orphan at once).
                    obs.add(
                        now,
                        "fin_wait2_expired",
                        0,
                        "gone from the socket table" + ("" if seen else " (never seen in FIN_WAIT2)"),
                        since=prev,
                    )
                    break
                elif e.state not in (TcpState.FIN_WAIT1, TcpState.FIN_WAIT2):
                    obs.notes.append(f"client socket went to state {e.state} instead of leaving FIN_WAIT2")
                    break
                prev = before
                ctx.tick()
                time.sleep(POLL_S)
            obs.watched_until = time.time()
            obs.measured["client_port"] = cport


def predict(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers import fin_timeout as model

    return model.predict_fin_timeout(m.need("tcp_fin_timeout"), m.measured.get("rto_s", 0.2), **m.timewait())


def one_second_longer(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers import fin_timeout as model

    return model.predict_fin_timeout(m.need("tcp_fin_timeout") + 1, m.measured.get("rto_s", 0.2))


SPEC = ProbeSpec(
    name="fin-timeout",
    summary="Lifetime of an orphaned FIN_WAIT2 socket (tcp_fin_timeout, floored at 3.5 x RTO; split when over 60 s).",
    example="sysctl -w net.ipv4.tcp_fin_timeout=2; tcptune probe fin-timeout",
    # tcp_max_tw_buckets: a full timewait table means no FIN_WAIT2/TIME_WAIT socket (inet_twsk_alloc())
    settings=("net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_max_tw_buckets"),
    predict=predict,
    wrong_model=one_second_longer,
    quick={"tcp_fin_timeout": 1},
    run=run,
    analyze=analyze,
    not_in_packets=("fin_wait2_expired",),
    facts=timewait_facts,
    outcome="socket gone",
    order=30,
)
