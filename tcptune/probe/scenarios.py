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
    run: Callable[[socket.socket, int], tuple[socket.socket | None, list]]  # (listener, port) -> (client, keep-alive)


def _sysctl(key: str, value: str) -> None:
    with open("/proc/sys/" + key.replace(".", "/"), "w") as fh:
        fh.write(value)


def _connect(port: int) -> socket.socket:
    c = socket.socket()
    c.connect((SERVER, port))
    return c


def _handshake(srv, port):
    c = _connect(port)
    a, _ = srv.accept()
    return c, [a]


def _teardown(srv, port):
    c = _connect(port)
    a, _ = srv.accept()
    c.sendall(b"hello\n")
    a.recv(100)
    c.close()  # FIN from the client ...
    time.sleep(0.3)  # ... the server acknowledges it at once and closes later: four segments
    a.close()
    return None, []


def _time_wait(srv, port):
    c = _connect(port)
    a, _ = srv.accept()
    c.close()
    a.recv(1)
    a.close()  # the FIN answers at once: the three-segment close, the client in TIME_WAIT
    return None, []


def _half_close(srv, port):
    c = _connect(port)
    a, _ = srv.accept()
    c.shutdown(socket.SHUT_WR)  # the client is done sending; the server never closes
    a.recv(1)
    return c, [a]


def _refused(srv, port):
    srv.close()  # nobody listens on the port any more: the SYN meets a RST
    c = socket.socket()
    c.connect_ex((SERVER, port))
    return c, []


def _drop_all(sock: socket.socket) -> None:
    from tcptune.probe.base import DROP_ALL
    from tcptune.probe.capture import attach_filter

    attach_filter(sock, DROP_ALL)


def _syn_sent(srv, port):
    _drop_all(srv)  # the listener's filter drops every SYN: as an iptables DROP on the server
    c = socket.socket()
    c.settimeout(10)
    try:
        c.connect((SERVER, port))
    except OSError:
        pass  # ETIMEDOUT after tcp_syn_retries
    return c, []


def _syn_recv(srv, port):
    from tcptune.probe.base import DROP_ACK
    from tcptune.probe.capture import attach_filter

    attach_filter(srv, DROP_ACK)  # the client's final ACK never arrives: the server stays in SYN_RECV
    c = _connect(port)
    time.sleep(3.5)  # tcp_synack_retries=1: one SYN-ACK retransmission, then the request is dropped
    return c, []


def _fin_wait1(srv, port):
    c = _connect(port)
    a, _ = srv.accept()
    _drop_all(a)  # the server's socket now drops everything: the client's FIN is never acknowledged
    c.close()  # orphaned in FIN_WAIT1, retransmitting its FIN until tcp_orphan_retries
    time.sleep(3.0)
    return None, [a]


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("handshake", "the three-way handshake: SYN J, SYN-ACK K ack J+1, ACK K+1", (), _handshake),
        Scenario("teardown", "the four-segment close: FIN M, ACK M+1, FIN N, ACK N+1", (), _teardown),
        Scenario("time-wait", "the three-segment close and the client's 60 s in TIME_WAIT", (), _time_wait),
        Scenario("half-close", "shutdown(SHUT_WR): the client holds FIN_WAIT2, the server CLOSE_WAIT", (), _half_close),
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


def run_scenario(name: str, capture_frames: Callable) -> tuple[list[tuple[float, bytes]], dict, object]:
    """Run one scenario under ``capture_frames(port)`` (a context manager yielding a capture).

    Returns the captured frames, the kernel's states at the end and the capture's stats.
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
    with capture_frames(port) as cap:
        client, keep = sc.run(srv, port)
        time.sleep(0.2)
        cap.drain()
        states = kernel_states(port)
    frames = cap.snapshot()
    for s in [client, *keep, srv]:
        if s is not None:
            s.close()
    return frames, states, cap.stats
