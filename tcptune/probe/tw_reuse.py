"""Probe `tw-reuse`: can a new outgoing connection take a 4-tuple held in TIME_WAIT?

The client connects and closes first (so the client ends in TIME_WAIT), the server
closes after.  Then new client sockets restricted to that one local port with
IP_LOCAL_PORT_RANGE (Linux 6.3+, and 6.1.32+ in 6.1 stable; a per-socket option: no sysctl
is touched) try to connect to the same server address: connect() fails with EADDRNOTAVAIL while
tcp_twsk_unique() refuses the TIME_WAIT 4-tuple, and succeeds once it allows it.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from typing import TYPE_CHECKING

from tcptune.errors import ExitCode, TcptuneError
from tcptune.probe.spec import ModelInput, ProbeSpec, timewait_facts

if TYPE_CHECKING:  # probe modules load at every command start: heavy imports are local
    from tcptune.kernel.timers import Prediction
    from tcptune.probe.base import Context, Observation
    from tcptune.probe.capture import Segment

# include/uapi/linux/in.h: commit 91d0b78c5177 (6.3), backported to 6.1.32 (6728486447ee in
# linux-6.1.y; ChangeLog-6.1.32 in Debian's linux 6.1.37-1 changelog; the probe runs on 6.1.192)
IP_LOCAL_PORT_RANGE = 51
ATTEMPT_EVERY_S = 0.005


def analyze(segments: list[Segment], server_port: int | None = None) -> list[tuple[float, str, int, str]]:
    """The client's FIN, and its ACK of the server's FIN: TIME_WAIT begins (capture or pcap)."""
    from tcptune.probe.capture import ACK, FIN

    fins = [s for s in segments if s.has(FIN) and (server_port is None or s.dport == server_port)]
    if not fins:
        return []
    fin = fins[0]
    out = [(fin.t, "fin", 0, "")]
    sfins = [s for s in segments if s.has(FIN) and (s.sport, s.dport) == (fin.dport, fin.sport) and s.t >= fin.t]
    if sfins:
        sfin = sfins[0]
        for s in segments:
            if (
                (s.sport, s.dport) == (fin.sport, fin.dport)
                and s.t >= sfin.t
                and s.has(ACK)
                and s.ack == (sfin.seq + sfin.length + 1) % (1 << 32)
            ):
                out.append((s.t, "time_wait", 0, "client ACKed the server's FIN"))
                break
    return out


def _attempt(port: int, lport: int) -> socket.socket | None:
    from tcptune.probe.base import LOOPBACK

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_LOCAL_PORT_RANGE, struct.pack("I", lport | (lport << 16)))
        except OSError as exc:
            raise TcptuneError(
                "the tw-reuse probe needs IP_LOCAL_PORT_RANGE (Linux 6.3+, or 6.1.32+ in 6.1 stable)",
                ExitCode.BAD_INPUT,
                hint=f"setsockopt failed: {exc.strerror}",
            ) from None
        s.settimeout(2)
        try:
            s.connect((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                s.close()
                return None
            raise
        if s.getsockname()[1] != lport:
            raise TcptuneError(
                f"IP_LOCAL_PORT_RANGE {lport} was not honoured (got {s.getsockname()[1]})",
                ExitCode.BAD_INPUT,
                hint="the port must lie in net.ipv4.ip_local_port_range",
            )
        return s
    except BaseException:
        s.close()
        raise


def _watch_time_wait(obs: Observation, lport: int, port: int, since: float) -> None:
    """Without a capture: record "time_wait" when the client's 4-tuple is seen in
    TIME_WAIT, not merely when the server closed (with a full timewait table it never
    gets there)."""
    from tcptune.kernel.states import TcpState
    from tcptune.probe.base import POLL_S, find_entry

    prev = since
    deadline = time.time() + 0.5
    while time.time() < deadline:
        before = time.time()
        e = find_entry(lport, port)
        now = time.time()
        if e is not None and e.state == TcpState.TIME_WAIT:
            obs.add(now, "time_wait", 0, "TIME_WAIT in the socket table", since=prev)
            return
        if e is None:
            obs.notes.append(f"the client's 4-tuple (port {lport}) left the socket table without a TIME_WAIT socket")
            return
        prev = before
        time.sleep(POLL_S)
    obs.notes.append(f"the client's 4-tuple (port {lport}) did not reach TIME_WAIT within 0.5 s")


def run(ctx: Context, obs: Observation) -> None:
    from tcptune.probe.base import LOOPBACK, abort_on_close, closing_all, listener, maybe_capture

    with closing_all() as socks:
        lst, port = listener(socks)
        with maybe_capture(ctx, port, obs) as cap:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(5)
            c.connect((LOOPBACK, port))
            lport = c.getsockname()[1]
            srv, _ = lst.accept()
            socks.append(srv)
            srv.settimeout(5)
            obs.started = time.time()
            ctx.begin()
            c.close()  # active close: the client will hold TIME_WAIT
            t_fin = time.time()
            srv.recv(1)  # EOF: the client's FIN arrived
            srv.close()
            t_tw = time.time()
            if cap is None:
                obs.add(t_fin, "fin", 0, "close() called (no capture)")
                _watch_time_wait(obs, lport, port, t_tw)
            attempts, reused = 0, False
            prev = time.time()
            while not ctx.expired():
                t_try = time.time()
                got = _attempt(port, lport)
                attempts += 1
                if got is not None:
                    socks.append(got)
                    abort_on_close(got)
                    obs.add(
                        time.time(),
                        "reuse_ok",
                        0,
                        f"connect() from port {lport} succeeded after {attempts - 1} refusals",
                        since=prev,
                    )
                    reused = True
                    break
                prev = t_try
                ctx.events_seen = attempts
                ctx.tick()
                time.sleep(ATTEMPT_EVERY_S)
            obs.watched_until = time.time()
            obs.measured.update(client_port=lport, attempts=attempts)
            if not reused:
                obs.notes.append(f"connect() from port {lport} was refused (EADDRNOTAVAIL) all {attempts} times")


def predict(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers import tw_reuse as model

    return model.predict_tw_reuse(
        m.need("tcp_tw_reuse"), m.need("tcp_timestamps"), m.settings.get("tcp_tw_reuse_delay"), **m.timewait()
    )


def too_early(m: ModelInput) -> Prediction:
    from tcptune.kernel.timers import tw_reuse as model

    return model.predict_tw_reuse(m.need("tcp_tw_reuse"), m.need("tcp_timestamps"), 100)


SPEC = ProbeSpec(
    name="tw-reuse",
    summary=(
        "Whether and when connect() may reuse a 4-tuple held in TIME_WAIT (tcp_tw_reuse, tcp_tw_reuse_delay, "
        "tcp_timestamps)."
    ),
    example="sysctl -w net.ipv4.tcp_tw_reuse=1 net.ipv4.tcp_tw_reuse_delay=500; tcptune probe tw-reuse",
    settings=(
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_tw_reuse_delay",
        "net.ipv4.tcp_timestamps",
        "net.ipv4.tcp_max_tw_buckets",
    ),
    predict=predict,
    wrong_model=too_early,
    quick={"tcp_tw_reuse": 1, "tcp_tw_reuse_delay": 1000, "tcp_timestamps": 1},
    run=run,
    analyze=analyze,
    not_in_packets=("reuse_ok",),
    facts=timewait_facts,
    outcome="reusable",
    order=50,
)
