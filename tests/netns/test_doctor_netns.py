"""doctor in private network namespaces: each condition made for real fires its check; a clean one is quiet.

Each scenario runs in a forked child inside a fresh namespace (nsutil.run_in_netns) that
builds the condition with its own loopback sockets, runs the doctor use case in process
(and the CLI once), and hands the findings back.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from nsutil import netns_argv, run_in_netns

from tcptune.host.source import Host
from tcptune.ops.doctor import run_doctor


def _findings(interval=0.0, checks=()):
    report = run_doctor(Host("/"), interval, checks)
    return [(f.check, f.severity, f.summary, [e.what for e in f.evidence], f.look_at) for f in report.findings]


def test_a_fresh_namespace_has_no_findings_and_exits_0():
    r = subprocess.run(
        netns_argv([sys.executable, "-m", "tcptune", "doctor", "--interval", "0.2", "--json"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["findings"] == [] and out["window_seconds"] > 0


def _accept_overflow():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)  # a queue of one, never accepted
    port = srv.getsockname()[1]
    clients = []

    def connect_more():  # clients arrive during the window, so ListenOverflows moves in it
        for _ in range(10):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            clients.append(c)
            time.sleep(0.05)

    t = threading.Thread(target=connect_more)
    t.start()
    found = _findings(interval=1.0, checks=("accept-queue",))
    t.join()
    with open("/proc/self/comm") as fh:  # "python" or "pytest", as this run was started
        me = fh.read().strip()
    return port, me, found


def test_a_listener_that_never_accepts_is_a_critical_accept_queue_finding_with_its_owner():
    port, me, found = run_in_netns(_accept_overflow)
    ((check, severity, summary, evidence, look_at),) = found
    assert (check, severity) == ("accept-queue", "critical")
    assert any(e.startswith(f"127.0.0.1:{port} held by {me}") and "backlog 0" in e for e in evidence), evidence
    assert any(e.startswith("ListenOverflows +") for e in evidence)
    assert look_at[0].startswith(f"the listen() backlog of {me}")


def _time_wait_near_cap():
    with open("/proc/sys/net/ipv4/tcp_max_tw_buckets", "w") as fh:
        fh.write("10")
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    for _ in range(50):  # the client closes first: its end goes to TIME_WAIT
        c = socket.create_connection(("127.0.0.1", port))
        a, _ = srv.accept()
        c.close()
        time.sleep(0.002)
        a.close()
    return _findings(checks=("time-wait",))


def test_time_wait_at_a_tiny_cap_warns_and_never_advises_lowering_it():
    ((check, severity, summary, evidence, _),) = run_in_netns(_time_wait_near_cap)
    assert (check, severity) == ("time-wait", "warning")
    assert "of tcp_max_tw_buckets 10" in summary


def _resets():
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()

    def refused():
        time.sleep(0.2)
        for _ in range(5):
            s = socket.socket()
            s.connect_ex(("127.0.0.1", port))
            s.close()

    t = threading.Thread(target=refused)
    t.start()
    found = _findings(interval=1.0, checks=("resets",))
    t.join()
    return found


def test_connects_to_a_closed_port_during_the_window_show_as_resets():
    ((check, severity, summary, _, _),) = run_in_netns(_resets)
    assert (check, severity) == ("resets", "info")
    assert "5 connects that failed" in summary and "5 RSTs sent" in summary


def test_bad_options_are_refused_before_anything_is_read():
    for args in (["--interval", "nan"], ["--interval", "-1"], ["--check", "nosuch"]):
        r = subprocess.run([sys.executable, "-m", "tcptune", "doctor", *args], capture_output=True, text=True)
        assert r.returncode == 2, (args, r.stderr)


def _bundle_round_trip(tmpdir: str):
    import tarfile

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    clients = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        clients.append(c)
    path = f"{tmpdir}/b.tar.gz"
    live = run_doctor(Host("/"), 0.5, bundle=path)
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert all(m.isreg() and m.mode == 0o644 for m in tar.getmembers())
        tar.extractall(f"{tmpdir}/root", filter="data")
    return names, live.findings, live.seconds


def test_a_bundle_read_back_with_root_gives_the_same_findings(tmp_path):
    names, live, seconds = run_in_netns(_bundle_round_trip, str(tmp_path))
    assert {"tcptune-bundle.json", "proc/net/netstat.before", "proc/net/netstat", "proc/net/tcp"} <= set(names)
    assert "proc/sys/net/ipv4/tcp_fastopen_key" not in names  # the TFO key is never saved
    again = run_doctor(Host(tmp_path / "root"), 2.0)
    assert [(f.check, f.severity, f.summary) for f in again.findings] == [
        (f.check, f.severity, f.summary) for f in live
    ]
    assert any(f.check == "accept-queue" for f in live)
    assert again.seconds == seconds
    r = subprocess.run(
        [sys.executable, "-m", "tcptune", "doctor", "--root", str(tmp_path / "root"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and json.loads(r.stdout)["findings"], r.stderr


def _ephemeral_ports(clients: int, fill: bool):
    """A 10-port ip_local_port_range and ``clients`` connections to one listener (more until EADDRNOTAVAIL)."""
    import errno

    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as fh:
        fh.write("40000 40009")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 5000))  # outside the range: the listener holds no ephemeral port
    srv.listen(64)
    held, refused = [], None
    for _ in range(clients):
        held.append(socket.create_connection(("127.0.0.1", 5000)))
    if fill:
        try:
            for _ in range(20):
                held.append(socket.create_connection(("127.0.0.1", 5000)))
        except OSError as exc:
            refused = exc.errno == errno.EADDRNOTAVAIL
    report = run_doctor(Host("/"), 0.0, ("ephemeral-ports",))
    found = [(f.check, f.severity, f.summary, [e.what for e in f.evidence], f.look_at) for f in report.findings]
    return len(held), refused, found, report.busiest_destination


def test_connections_to_one_peer_until_eaddrnotavail_are_a_critical_ephemeral_ports_finding():
    held, refused, found, busiest = run_in_netns(_ephemeral_ports, 0, True)
    assert (held, refused) == (10, True)
    ((check, severity, summary, evidence, look_at),) = found
    assert (check, severity) == ("ephemeral-ports", "critical")
    assert summary.startswith("127.0.0.1 -> 127.0.0.1:5000 uses 10 of 10 usable") and "EADDRNOTAVAIL" in summary
    assert any(e.startswith("net.ipv4.ip_local_port_range = 40000") and e.endswith("40009") for e in evidence)
    assert any(e.startswith("sustainable: 10 ports / 60 s") for e in evidence), evidence
    assert any("tcp_tw_reuse=2 with timestamps" in e and "tcp_tw_reuse_delay (1000 ms)" in e for e in evidence), (
        evidence
    )
    assert look_at[0] == "net.ipv4.ip_local_port_range"
    assert (busiest.in_use, busiest.usable, busiest.peer_port) == (10, 10, 5000)


def test_eight_of_ten_ephemeral_ports_warn_and_two_do_not():
    _, _, found, _ = run_in_netns(_ephemeral_ports, 8, False)
    ((check, severity, summary, _, _),) = found
    assert (check, severity) == ("ephemeral-ports", "warning")
    assert "uses 8 of 10 usable" in summary
    _, _, found, busiest = run_in_netns(_ephemeral_ports, 2, False)
    assert found == [] and (busiest.in_use, busiest.ratio) == (2, 0.2)


def _server_child(port: int, close_on_eof: bool, nofile: int | None = None, reads: bool = True) -> int:
    """Fork a server that accepts on ``port`` and, on the peer's FIN, closes or (a leak) keeps the socket;
    with ``reads`` False it never reads at all.

    Returns its pid once it listens; the caller ends it with os.kill(pid).
    """
    import os
    import resource
    import selectors

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the server: never returns
        try:
            os.close(rfd)
            os.closerange(3, wfd)  # what the test process had open is not the server's
            os.closerange(wfd + 1, 1 << 16)
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("127.0.0.1", port))
            srv.listen(128)
            sel = selectors.DefaultSelector()
            sel.register(srv, selectors.EVENT_READ)
            held = []  # a socket object nobody refers to would be closed by the collector
            os.write(wfd, b"1")
            while True:
                for key, _ in sel.select():
                    if key.fileobj is srv:
                        conn, _ = srv.accept()
                        held.append(conn)
                        if reads:
                            sel.register(conn, selectors.EVENT_READ)
                    elif not key.fileobj.recv(1 << 20):  # the peer's FIN
                        sel.unregister(key.fileobj)
                        if close_on_eof:
                            held.remove(key.fileobj)
                            key.fileobj.close()
        finally:
            os._exit(0)
    os.close(wfd)
    assert os.read(rfd, 1) == b"1"
    os.close(rfd)
    return pid


def _close_wait(close_on_eof: bool):
    import os
    import signal

    pid = _server_child(6000, close_on_eof)
    try:
        clients = [socket.create_connection(("127.0.0.1", 6000)) for _ in range(30)]
        for c in clients:  # FIN from each client: the server's ends go to CLOSE_WAIT
            c.close()
        time.sleep(0.3)
        report = run_doctor(Host("/"), 0.5, ("close-wait",))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    found = [(f.check, f.severity, f.summary, [e.what for e in f.evidence], f.look_at) for f in report.findings]
    return pid, found


def test_a_server_that_never_closes_after_the_peers_fin_is_a_close_wait_leak_with_its_pid():
    pid, found = run_in_netns(_close_wait, False)
    ((check, severity, summary, evidence, look_at),) = found
    assert (check, severity) == ("close-wait", "warning")
    assert f"(pid {pid}" in summary and "30 peers closed" in summary and "never expires" in summary
    assert "30 CLOSE_WAIT sockets, 97% of its 31 sockets; all 30 were in CLOSE_WAIT" in evidence[0], evidence
    assert "open fds of RLIMIT_NOFILE" in evidence[1]
    assert look_at[0].startswith("the program ")


def test_the_same_server_closing_on_eof_leaves_no_close_wait_finding():
    _, found = run_in_netns(_close_wait, True)
    assert found == []


def _fd_limit(nofile: int):
    import os
    import signal

    pid = _server_child(6001, False, nofile=nofile)
    try:
        clients = [socket.create_connection(("127.0.0.1", 6001)) for _ in range(20)]
        time.sleep(0.3)  # the server has accepted them: 26 fds (3 std, its pipe, epoll, listener, 20 connections)
        report = run_doctor(Host("/"), 0.0, ("fd-limit",))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    del clients
    return pid, [(f.check, f.severity, f.summary, [e.what for e in f.evidence]) for f in report.findings]


def test_a_socket_owner_at_its_rlimit_nofile_is_an_fd_limit_finding_and_a_roomy_one_is_not():
    pid, found = run_in_netns(_fd_limit, 27)
    ((check, severity, summary, evidence),) = found
    assert (check, severity) == ("fd-limit", "warning")
    assert f"(pid {pid}" in summary and "of its 27 open files" in summary
    assert evidence[0].endswith("26 open fds of RLIMIT_NOFILE 27 (96%)")
    assert evidence[1].endswith("holds sockets in this network namespace")
    _, found = run_in_netns(_fd_limit, 1024)
    assert found == []


def _syn_sent(drop: bool):
    from test_states_netns import DROP_ALL, attach

    srv = socket.socket()
    if drop:
        attach(srv, DROP_ALL)  # tcp_filter() runs for the listener too: every SYN is dropped
    srv.bind(("127.0.0.1", 7000))
    srv.listen(128)
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 7001))
    quiet.listen(128)
    clients = []
    for port, n in ((7000, 60), (7001, 3)):
        for _ in range(n):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            clients.append(c)
    time.sleep(0.2)
    from tcptune.kernel.timers.syn import predict_syn

    with open("/proc/sys/net/ipv4/tcp_syn_linear_timeouts") as fh:  # 6.18: the first retries are linear
        give_up = predict_syn(6, int(fh.read())).give_up
    return give_up, _findings(checks=("syn-sent",))


def test_syns_to_a_listener_that_drops_them_pile_up_in_syn_sent_named_by_destination():
    give_up, ((check, severity, summary, evidence, look_at),) = run_in_netns(_syn_sent, True)
    assert (check, severity) == ("syn-sent", "warning")
    assert (
        summary == f"60 of 60 connections waiting in SYN_SENT go to 127.0.0.1:7000; each gives up after {give_up:.1f} s"
    )
    assert "127.0.0.1 -> 127.0.0.1:7000: 60 in SYN_SENT" in evidence and not any(":7001" in e for e in evidence)
    assert any(e.startswith(f"connect() gives up after {give_up:.1f} s (tcp_syn_retries=6") for e in evidence)
    assert look_at[1].startswith("the peer 127.0.0.1:7000")
    assert run_in_netns(_syn_sent, False)[1] == []


def _not_reading(reads: bool):
    import os
    import signal

    pid = _server_child(6002, False, reads=reads)
    sent = 0
    try:
        c = socket.create_connection(("127.0.0.1", 6002))
        c.setblocking(False)
        stop = time.monotonic() + 1.5

        def send():  # until the receiver's window closes (EAGAIN), during doctor's window
            nonlocal sent
            chunk = bytes(65536)
            while time.monotonic() < stop:
                try:
                    sent += c.send(chunk)
                except BlockingIOError:
                    time.sleep(0.01)

        t = threading.Thread(target=send)
        t.start()
        time.sleep(0.2)
        report = run_doctor(Host("/"), 0.5, ("receiver-not-reading",))
        t.join()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    found = [(f.check, f.severity, f.summary, [e.what for e in f.evidence], f.look_at) for f in report.findings]
    return pid, os.getpid(), sent, found


def test_a_server_that_never_reads_is_named_and_its_sender_waits_on_a_zero_window():
    pid, me, sent, found = run_in_netns(_not_reading, False)
    ((check, severity, summary, evidence, look_at),) = found
    assert (check, severity) == ("receiver-not-reading", "warning")
    assert f"(pid {pid}" in summary and "is not reading: 1 socket(s) hold up to" in summary
    assert any(f"(pid {me}" in e and "sending zero-window probes" in e for e in evidence), evidence
    assert any(e.startswith("TCPToZeroWindowAdv +") for e in evidence), evidence
    assert f"(pid {pid}" in look_at[0] and sent > 65536


def test_a_server_that_reads_leaves_no_receiver_finding():
    *_, sent, found = run_in_netns(_not_reading, True)
    assert found == [] and sent > 1 << 20


def _risky_settings(tmpdir: str):
    for key, value in (("tcp_syncookies", "0"), ("tcp_keepalive_time", "600")):
        with open(f"/proc/sys/net/ipv4/{key}", "w") as fh:
            fh.write(value)
    live = run_doctor(Host("/"), 0.0, ("settings",), bundle=f"{tmpdir}/b.tar.gz")
    return [(f.check, f.severity, f.summary, f.look_at) for f in live.findings], live.notes


def test_a_risky_value_is_a_settings_finding_and_a_saved_tree_says_what_a_reboot_loses(tmp_path):
    import tarfile

    found, notes = run_in_netns(_risky_settings, str(tmp_path))
    ((check, severity, summary, look_at),) = found  # keepalive_time is not risky, only changed
    assert (check, severity, look_at) == ("settings", "warning", ("net.ipv4.tcp_syncookies",))
    assert summary.startswith("net.ipv4.tcp_syncookies = 0 is risky: syncookies disabled")
    assert any("(audit --persisted) is not judged" in n for n in notes)  # a child namespace: no sysctl.d
    # the same values as a plain saved tree (no bundle record) with a sysctl.d of its own
    root = tmp_path / "root"
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        tar.extractall(root, filter="data")
    (root / "tcptune-bundle.json").unlink()
    from tcptune.host.sysctld_files import read_config_files

    saved = {p for p, text in read_config_files(Path("/")) if text is not None}
    assert all((root / p.lstrip("/")).is_file() for p in saved)  # the bundle keeps this host's sysctl.d
    for d in ("etc", "run", "usr", "lib"):  # ... which this test replaces with its own
        shutil.rmtree(root / d, ignore_errors=True)
    (root / "etc/sysctl.d").mkdir(parents=True)
    (root / "etc/sysctl.d/90-web.conf").write_text("net.ipv4.tcp_syncookies = 0\nnet.ipv4.tcp_tw_recycle = 1\n")
    report = run_doctor(Host(root), 0.0, ("settings",))
    by_summary = {f.summary.split(":")[0]: f for f in report.findings}
    assert [f.severity for f in report.findings] == ["warning", "info", "info"], by_summary
    lost = by_summary["1 running value(s) will not survive a reboot"]
    assert lost.look_at == ("net.ipv4.tcp_keepalive_time",)  # syncookies=0 is persisted (badly, but kept)
    assert "the next boot sets 7200" in lost.evidence[0].what
    ignored = by_summary["1 sysctl.d line(s) set keys this kernel does not have"]
    assert ignored.look_at == ("net.ipv4.tcp_tw_recycle",) and "/etc/sysctl.d/90-web.conf" in ignored.evidence[0].what


def _syn_queue(syncookies: int, drop_acks: bool):
    from test_states_netns import DROP_ACK, attach

    with open("/proc/sys/net/ipv4/tcp_syncookies", "w") as fh:
        fh.write(str(syncookies))
    srv = socket.socket()
    if drop_acks:
        attach(srv, DROP_ACK)  # the handshakes never complete: requests stay in SYN_RECV
    srv.bind(("127.0.0.1", 7100))
    srv.listen(8)
    clients = []

    def connect_more():  # during the window, so the counters move in it
        time.sleep(0.1)
        for _ in range(40):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", 7100))
            clients.append(c)

    t = threading.Thread(target=connect_more)
    t.start()
    found = _findings(interval=1.0, checks=("syn-queue",))
    t.join()
    return found


def test_a_listener_whose_filter_drops_acks_fills_its_syn_queue_critical_without_syncookies():
    ((check, severity, summary, evidence, look_at),) = run_in_netns(_syn_queue, 0, True)
    assert (check, severity) == ("syn-queue", "critical")
    assert "dropped and syncookies are off" in summary
    assert any(e.startswith("TCPReqQFullDrop +") for e in evidence), evidence
    assert "net.ipv4.tcp_syncookies = 0" in evidence and look_at[0] == "net.ipv4.tcp_max_syn_backlog"
    assert any(e.startswith("port 7100: ") and "in SYN_RECV of listen backlog 8" in e for e in evidence), evidence
    assert any(e.startswith("each request holds its slot up to 63 s") for e in evidence), evidence
    ((check, severity, summary, evidence, _),) = run_in_netns(_syn_queue, 1, True)
    assert (check, severity) == ("syn-queue", "warning") and "answering with syncookies" in summary
    assert any(e.startswith("TCPReqQFullDoCookies +") for e in evidence), evidence
    assert run_in_netns(_syn_queue, 0, False) == []  # the same clients, accepted by the kernel's handshake


SKF_AD_RANDOM = 0xFFFFF000 + 56  # SKF_AD_OFF + SKF_AD_RANDOM (include/uapi/linux/filter.h): prandom_u32()


def _retransmissions(drop_share: float):
    from test_states_netns import attach

    srv = socket.socket()
    if drop_share:
        # classic BPF: drop a segment when a random u32 is at most the share of 2^32
        attach(
            srv,
            [
                (0x20, 0, 0, SKF_AD_RANDOM),
                (0x25, 0, 1, int(drop_share * 2**32)),
                (0x06, 0, 0, 0xFFFFFFFF),
                (0x06, 0, 0, 0),
            ],
        )
    srv.bind(("127.0.0.1", 7200))
    srv.listen(8)
    c = socket.socket()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)  # many small segments, not loopback's 64 KiB
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.connect(("127.0.0.1", 7200))
    a, _ = srv.accept()  # inherits the listener's filter (sk_clone_lock())
    stop = time.monotonic() + 1.6

    def read():
        a.settimeout(0.2)
        while time.monotonic() < stop + 0.5:
            try:
                if not a.recv(1 << 16):
                    return
            except TimeoutError:
                continue

    def write():
        while time.monotonic() < stop:
            c.send(bytes(2000))
            time.sleep(0.002)

    threads = [threading.Thread(target=read), threading.Thread(target=write)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    found = _findings(interval=1.0, checks=("retransmissions",))
    for t in threads:
        t.join()
    return found


def test_a_filter_dropping_a_twentieth_of_the_segments_is_a_retransmission_hot_spot():
    # 5 %: about 2000 segments in the window, 3-5 % of them retransmitted (a fifth would push the
    # sender into RTO backoff, with too few segments left in the window to judge)
    ((check, severity, summary, evidence, _),) = run_in_netns(_retransmissions, 0.05)
    assert (check, severity) == ("retransmissions", "warning")
    assert float(summary.split("%")[0]) > 1 and "of sent segments were retransmissions" in summary
    assert evidence[0].startswith("RetransSegs +") and evidence[1].startswith("OutSegs +")
    assert run_in_netns(_retransmissions, 0.0) == []
