"""The tutorials' experiments, re-enacted on loopback with the tool's own sockets (trace --scenario).

Each scenario is what shared/seeds' tcpdump walkthroughs do by hand (nc -l, telnet, an
iptables DROP rule), with socket filters instead of a firewall, as the probes do.  It runs
in the current network namespace, which the caller has made private (host/netns.py
enter_private_netns): the sysctls it shortens (tcp_syn_retries ...) are that namespace's.
It returns the two ends' addresses and, when it ends, the kernel's own state of each end
from /proc/net/tcp, for trace to set beside the states it inferred from the packets.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

SERVER = "127.0.0.1"


@dataclass(frozen=True)
class Scenario:
    name: str
    shows: str  # what the tutorial uses it to show
    settings: tuple[tuple[str, str], ...]  # sysctls set in the private namespace first
    # (listener, port, step) -> (client, keep-alive); step() after each action reads the kernel's states
    run: Callable[[socket.socket, int, Callable[[], None]], tuple[socket.socket | None, list]]


def _sysctl(key: str, value: str) -> None:
    with open("/proc/sys/" + key.replace(".", "/"), "w") as fh:
        fh.write(value)


def _connect(port: int) -> socket.socket:
    c = socket.socket()
    c.connect((SERVER, port))
    return c


def _handshake(srv, port, step):
    c = _connect(port)
    a, _ = srv.accept()
    step()
    return c, [a]


def _teardown(srv, port, step):
    c = _connect(port)
    a, _ = srv.accept()
    step()
    c.sendall(b"hello\n")
    a.recv(100)
    step()
    c.close()  # FIN from the client ...
    time.sleep(0.3)  # ... the server acknowledges it at once and closes later: four segments
    step()
    a.close()
    step()
    return None, []


def _time_wait(srv, port, step):
    c = _connect(port)
    a, _ = srv.accept()
    step()
    c.close()
    a.recv(1)
    a.close()  # the FIN answers at once: the three-segment close, the client in TIME_WAIT
    step()
    return None, []


def _half_close(srv, port, step):
    c = _connect(port)
    a, _ = srv.accept()
    step()
    c.shutdown(socket.SHUT_WR)  # the client is done sending; the server never closes
    a.recv(1)
    step()
    return c, [a]


def _refused(srv, port, step):
    srv.close()  # nobody listens on the port any more: the SYN meets a RST
    c = socket.socket()
    c.connect_ex((SERVER, port))
    step()
    return c, []


def _drop_all(sock: socket.socket) -> None:
    from tcptune.probe.base import DROP_ALL
    from tcptune.probe.capture import attach_filter

    attach_filter(sock, DROP_ALL)


def _syn_sent(srv, port, step):
    _drop_all(srv)  # the listener's filter drops every SYN: as an iptables DROP on the server
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex((SERVER, port))  # EINPROGRESS: the SYN is out, the client in SYN_SENT
    step()
    time.sleep(1.5)  # the retransmission at the first RTO (1 s) ...
    step()
    time.sleep(2.3)  # ... and at 1 + 2 s the client gives up (tcp_syn_retries=1): nothing on the wire
    return c, []


def _syn_recv(srv, port, step):
    from tcptune.probe.base import DROP_ACK
    from tcptune.probe.capture import attach_filter

    attach_filter(srv, DROP_ACK)  # the client's final ACK never arrives: the server stays in SYN_RECV
    c = _connect(port)
    step()  # the kernel's server end is SYN_RECV where the packets say ESTABLISHED: shown
    time.sleep(3.5)  # tcp_synack_retries=1: one SYN-ACK retransmission, then the request is dropped
    return c, []


def _fin_wait1(srv, port, step):
    c = _connect(port)
    a, _ = srv.accept()
    step()
    _drop_all(a)  # the server's socket now drops everything: the client's FIN is never acknowledged
    c.close()  # orphaned in FIN_WAIT1, retransmitting its FIN until tcp_orphan_retries
    step()  # the server never took the FIN: ESTABLISHED in the kernel, CLOSE_WAIT from the packets
    time.sleep(3.0)
    return None, [a]


SO_DETACH_FILTER = 27  # include/uapi/asm-generic/socket.h


def _simultaneous_close(srv, port, step):
    c = _connect(port)
    a, _ = srv.accept()
    step()
    # Each end's socket drops whatever reaches it, so both FINs are on the wire before either
    # is taken in (on loopback a FIN is otherwise delivered inside the close() that sends it):
    # the capture shows them cross, as RFC 9293 figure 13 draws it.
    _drop_all(c)
    _drop_all(a)
    c.shutdown(socket.SHUT_WR)
    a.shutdown(socket.SHUT_WR)
    for s in (c, a):
        s.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    time.sleep(1.0)  # the FINs' retransmissions (RTO >= 200 ms, TCP_RTO_MIN) are taken in: both end in TIME_WAIT
    step()
    return c, [a]


PACE = ("rate", "3kbit", "burst", "1600", "limit", "30000")  # a 74-byte SYN every ~200 ms


def _pace_loopback() -> None:
    """A token-bucket qdisc (tbf) on lo of this private namespace, its bucket emptied: every
    segment then waits ~200 ms before it goes out and arrives.  On loopback a segment is
    otherwise taken in inside the call that sends it, so two SYNs can never cross: the
    first would meet a port with nobody in SYN_SENT yet.  (netem would delay too, but this
    kernel has no CONFIG_NET_SCH_NETEM; tbf is built in.)  The capture sees each segment as
    it leaves the qdisc, so the trace shows the order they arrive in."""
    import subprocess

    from tcptune.errors import ExitCode, TcptuneError
    from tcptune.host.netns import in_entered_netns

    if not in_entered_netns():  # never shape the host's own loopback
        raise TcptuneError("simultaneous-open: not in a private network namespace", ExitCode.INTERNAL)
    try:
        subprocess.run(["tc", "qdisc", "replace", "dev", "lo", "root", "tbf", *PACE], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        why = exc.stderr.decode(errors="replace").strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        raise TcptuneError(
            f"simultaneous-open: cannot pace loopback with tc tbf: {why}",
            ExitCode.PRIVILEGES,
            hint="needs tc (iproute2) and the tbf qdisc (CONFIG_NET_SCH_TBF)",
        ) from None
    # the bucket starts full (burst bytes): a datagram of nearly that size to ourselves empties
    # it (UDP: not captured, the capture keeps TCP only), so the first SYN waits too
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind((SERVER, 0))
        u.sendto(b"\0" * 1500, u.getsockname())


def _simultaneous_open(srv, port, step):
    # The seed's experiment: A on port 7777 connects to B's 8888 while B, on 8888, connects
    # to A's 7777 (here: the capture's port and an ephemeral one).  Neither listens.
    srv.close()
    a, b = socket.socket(), socket.socket()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    a.bind((SERVER, port))
    b.bind((SERVER, 0))
    _pace_loopback()
    for s, peer in ((a, b), (b, a)):  # both SYNs are out (queued in the qdisc) before either arrives
        s.setblocking(False)
        s.connect_ex(peer.getsockname())  # EINPROGRESS: SYN_SENT
    # each SYN meets a socket in SYN_SENT: SYN_RECV and a SYN-ACK (tcp_rcv_synsent_state_process,
    # "simultaneous open"); each SYN-ACK then makes its receiver ESTABLISHED.  The kernel's
    # states are read between the paced segments.
    for _ in range(14):
        time.sleep(0.1)
        step()
    return a, [b]


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("handshake", "the three-way handshake: SYN J, SYN-ACK K ack J+1, ACK K+1", (), _handshake),
        Scenario("teardown", "the four-segment close: FIN M, ACK M+1, FIN N, ACK N+1", (), _teardown),
        Scenario("time-wait", "the three-segment close and the client's 60 s in TIME_WAIT", (), _time_wait),
        Scenario("half-close", "shutdown(SHUT_WR): the client holds FIN_WAIT2, the server CLOSE_WAIT", (), _half_close),
        Scenario(
            "simultaneous-open",
            "both ends connect() to each other at once: the SYNs cross, each end goes SYN_SENT -> SYN_RECV -> "
            "ESTABLISHED (loopback paced by a tbf qdisc so both SYNs leave before either arrives)",
            (),
            _simultaneous_open,
        ),
        Scenario(
            "simultaneous-close",
            "both ends close at once: the FINs cross, each end goes through CLOSING, both end in TIME_WAIT",
            (),
            _simultaneous_close,
        ),
        Scenario("refused", "a SYN to a port with no listener is answered with RST", (), _refused),
        Scenario(
            "syn-sent",
            "a SYN never answered (the tutorial's iptables DROP): retransmissions, then connect() gives up",
            (("net.ipv4.tcp_syn_retries", "1"), ("net.ipv4.tcp_syn_linear_timeouts", "0")),
            _syn_sent,
        ),
        Scenario(
            "syn-recv",
            "a SYN-ACK never acknowledged: the server in SYN_RECV resends it, the client thinks it is connected",
            (("net.ipv4.tcp_synack_retries", "1"),),
            _syn_recv,
        ),
        Scenario(
            "fin-wait1",
            "a FIN never acknowledged: the orphan retransmits it in FIN_WAIT1 until the kernel gives up",
            (("net.ipv4.tcp_orphan_retries", "1"),),
            _fin_wait1,
        ),
    )
}


def kernel_states(server_port: int) -> dict[tuple[str, int, str, int], int]:
    """(local address, port, remote address, port) -> kernel state number, from /proc/net/tcp."""
    from tcptune.core.procfs import parse_proc_net_tcp

    with open("/proc/net/tcp") as fh:
        rows, _ = parse_proc_net_tcp(fh.read())
    return {
        (r.local_address, r.local_port, r.remote_address, r.remote_port): r.state
        for r in rows
        if server_port in (r.local_port, r.remote_port)
    }


@dataclass(frozen=True)
class Checkpoint:
    """After ``frames`` captured frames, the kernel's state number of each socket seen so far,
    keyed (local address, port, remote address, port); None: no such socket."""

    frames: int
    states: dict[tuple[str, int, str, int], int | None]


def _checkpoint(cap) -> Checkpoint | None:
    """The kernel's states of every socket the capture has seen, read by sock_diag lookups
    when the wire is quiet; None if a frame arrived while they were read (the states would
    follow a segment not yet counted)."""
    from tcptune.core.pcap import LINK_ETHERNET, decode_frame
    from tcptune.host.sockdiag import lookup_states

    cap.drain()
    frames = cap.snapshot()
    tuples = set()
    for t, frame in frames:
        seg = decode_frame(LINK_ETHERNET, frame, t)
        if seg is not None:
            tuples.add((seg.src, seg.sport, seg.dst, seg.dport))
            tuples.add((seg.dst, seg.dport, seg.src, seg.sport))
    keys = sorted(tuples)
    states = dict(zip(keys, lookup_states(keys), strict=True))
    cap.drain(0.02)
    if len(cap.snapshot()) != len(frames):
        return None
    return Checkpoint(len(frames), states)


def run_scenario(name: str, capture_frames: Callable) -> tuple[list[tuple[float, bytes]], dict, object, list]:
    """Run one scenario under ``capture_frames(port)`` (a context manager yielding a capture).

    Returns the captured frames, the kernel's states at the end, the capture's stats and the
    checkpoints (the kernel's states after each step of the experiment).
    Sockets stay open until the states are read, then close with the namespace.
    """
    sc = SCENARIOS[name]
    for key, value in sc.settings:
        _sysctl(key, value)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((SERVER, 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    checkpoints: list[Checkpoint] = []
    with capture_frames(port) as cap:

        def step() -> None:
            cp = _checkpoint(cap)
            if cp is not None:
                checkpoints.append(cp)

        client, keep = sc.run(srv, port, step)
        time.sleep(0.2)
        cap.drain()
        states = kernel_states(port)
    frames = cap.snapshot()
    for s in [client, *keep, srv]:
        if s is not None:
            s.close()
    return frames, states, cap.stats, checkpoints
