"""`tcptune states` against the kernel: sockets in nine states, IPv4 and IPv6, in a private netns.

Each state is made with the tool's own loopback sockets (no firewall):
- ESTABLISHED: connect + accept;  FIN_WAIT2 / CLOSE_WAIT: the client shutdown(SHUT_WR)s.
- TIME_WAIT: the client closes first, then the server.
- FIN_WAIT1: the server's socket gets a drop-all classic-BPF filter, then the client
  half-closes: its FIN is never ACKed.
- LAST_ACK: the client half-closes, then gets a drop-all filter; the server closes:
  the server's FIN is never ACKed.
- SYN_SENT: a listener whose filter drops every packet: SYNs vanish.
- SYN_RECV: a listener whose filter drops segments carrying ACK: the request sock
  stays (TCP_NEW_SYN_RECV, shown as SYN_RECV) while the client is ESTABLISHED.
The histogram must equal `ss -tan`'s counts from both sources (netlink and /proc).
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections import Counter

from nsutil import run_in_netns

SO_ATTACH_FILTER = 26
DROP_ALL = [(0x06, 0, 0, 0)]
DROP_ACK = [(0x30, 0, 0, 13), (0x45, 0, 1, 0x10), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF)]
SS_TO_NAME = {
    "ESTAB": "ESTABLISHED",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
}


def attach(sock, prog):
    arr = (ctypes.c_ubyte * (8 * len(prog)))()
    for i, (code, jt, jf, k) in enumerate(prog):
        struct.pack_into("=HBBI", arr, 8 * i, code, jt, jf, k)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HP", len(prog), ctypes.addressof(arr)))


def make_zoo(family: int, n: int = 3) -> list:
    """Sockets in nine states; returns the objects that must stay alive."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    keep = []

    def listener(prog=None, backlog=128):
        lst = socket.socket(family, socket.SOCK_STREAM)
        lst.bind((host, 0))
        if prog:
            attach(lst, prog)
        lst.listen(backlog)
        keep.append(lst)
        return lst

    def pair(lst):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.connect(lst.getsockname()[:2])
        s, _ = lst.accept()
        keep.extend([c, s])
        return c, s

    def pending(lst):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(lst.getsockname()[:2])
        except BlockingIOError:
            pass
        keep.append(c)

    main = listener()
    for _ in range(n):
        pair(main)
    for _ in range(n):
        c, s = pair(main)
        c.shutdown(socket.SHUT_WR)
    for _ in range(n):
        c, s = pair(main)
        keep.remove(c)
        keep.remove(s)
        c.close()
        time.sleep(0.005)
        s.close()
    for _ in range(n):
        c, s = pair(main)
        attach(s, DROP_ALL)
        c.shutdown(socket.SHUT_WR)
    for _ in range(n):
        c, s = pair(main)
        c.shutdown(socket.SHUT_WR)
        time.sleep(0.005)
        attach(c, DROP_ALL)
        s.shutdown(socket.SHUT_WR)
    blackhole = listener(DROP_ALL)
    for _ in range(n):
        pending(blackhole)
    half_open = listener(DROP_ACK)
    for _ in range(n):
        pending(half_open)
    time.sleep(0.2)
    return keep


def ss_counts(*args) -> dict:
    out = subprocess.run(["ss", "-tan", *args], capture_output=True, text=True, check=True).stdout
    c = Counter(SS_TO_NAME[line.split(None, 1)[0]] for line in out.splitlines()[1:])
    return {name: c.get(name, 0) for name in SS_TO_NAME.values()}


EXPECTED_STATES = {
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
}


def _compare_sources():
    keep = make_zoo(socket.AF_INET) + make_zoo(socket.AF_INET6)
    from tcptune.host.source import Host
    from tcptune.kernel.states import STATE_NAMES
    from tcptune.ops.sockets import collect_summary, summary_from_proc

    host = Host("/")
    results = {}
    for _ in range(3):  # retry if a retransmission moved a socket between the reads
        ss = ss_counts()
        nl = collect_summary(host)
        proc = summary_from_proc(host, None, None, (socket.AF_INET, socket.AF_INET6))
        ss_after = ss_counts()
        results = {
            "ss": ss,
            "netlink": {s.name: n for s, n in nl.counts.items()},
            "proc": {s.name: n for s, n in proc.counts.items()},
            "proc_notes": proc.notes,
            "ss4": ss_counts("-4"),
            "ss6": ss_counts("-6"),
            "v4": {s.name: n for s, n in collect_summary(host, families=(socket.AF_INET,)).counts.items()},
            "v6": {s.name: n for s, n in collect_summary(host, families=(socket.AF_INET6,)).counts.items()},
        }
        if ss == ss_after:
            break
    assert set(results["netlink"]) == set(STATE_NAMES)
    del keep
    return results


def test_histogram_equals_ss_for_netlink_and_proc():
    r = run_in_netns(_compare_sources)
    nonzero = {k for k, v in r["ss"].items() if v}
    assert EXPECTED_STATES <= nonzero, f"the zoo did not produce every state: {r['ss']}"
    assert r["netlink"] == r["ss"]
    assert r["proc"] == r["ss"]
    assert r["proc_notes"] == []
    assert r["v4"] == r["ss4"]
    assert r["v6"] == r["ss6"]
    assert r["ss4"]["SYN_RECV"] == 3 and r["ss6"]["SYN_RECV"] == 3


def _cli_in_zoo(args):
    keep = make_zoo(socket.AF_INET) + make_zoo(socket.AF_INET6)
    out = subprocess.run([sys.executable, "-m", "tcptune", "states", *args], capture_output=True, text=True)
    ss = ss_counts()
    del keep
    return out.returncode, out.stdout, out.stderr, ss


def _cli_in_zoo_owner(args):
    # The sockets belong to this forked child: its pid, and its name as the kernel
    # has it ("python3" or "pytest", depending on how the suite was started).
    with open("/proc/self/comm") as fh:
        me = (os.getpid(), fh.read().strip())
    return (*_cli_in_zoo(args), me)


def test_cli_json_matches_ss_and_groups():
    rc, out, err, ss = run_in_netns(_cli_in_zoo, ["--json", "--by", "local-port"])
    assert rc == 0, err
    report = json.loads(out)
    assert report["states"] == ss
    assert report["total"] == sum(ss.values())
    assert report["by"] == "local-port"
    assert sum(g["total"] for g in report["groups"]) <= report["total"]
    # each SYN_RECV listener port has 3 pending requests
    syn = [g for g in report["groups"] if g["states"].get("SYN_RECV")]
    assert sorted(g["states"]["SYN_RECV"] for g in syn) == [3, 3]


def test_cli_by_process_names_this_process_and_ownerless():
    rc, out, err, ss, (pid, name) = run_in_netns(_cli_in_zoo_owner, ["--json", "--by", "process", "--top", "0"])
    assert rc == 0, err
    report = json.loads(out)
    keys = {g["key"]: g for g in report["groups"]}
    owned = [g for g in report["groups"] if g["pid"]]
    assert [(g["pid"], g["name"]) for g in owned] == [(pid, name)]
    # TIME_WAIT and request socks have no struct socket, so no owner
    no_owner = keys["(no owner)"]
    assert no_owner["states"] == {"SYN_RECV": ss["SYN_RECV"], "TIME_WAIT": ss["TIME_WAIT"]}
    assert owned[0]["total"] + no_owner["total"] == report["total"]


def _state_filter():
    keep = make_zoo(socket.AF_INET) + make_zoo(socket.AF_INET6)
    out = subprocess.run(
        [sys.executable, "-m", "tcptune", "states", "--json", "--state", "time-wait,SYN-RECV", "--ipv6"],
        capture_output=True,
        text=True,
    )
    del keep
    return out.returncode, out.stdout, out.stderr


def test_state_and_family_filters_ask_the_kernel_for_less():
    rc, out, err = run_in_netns(_state_filter)
    assert rc == 0, err
    states = json.loads(out)["states"]
    assert {k: v for k, v in states.items() if v} == {"TIME_WAIT": 3, "SYN_RECV": 3}


def _close_wait_warning():
    keep = make_zoo(socket.AF_INET, n=4)
    from tcptune.core.socket_summary import SETTING_KEYS, check_warnings
    from tcptune.host.source import Host
    from tcptune.ops.sockets import collect_summary

    host = Host("/")
    summary = collect_summary(host, "process")
    w = check_warnings(summary, host.read_sysctls(SETTING_KEYS), close_wait_threshold=4, by="process")
    del keep
    with open("/proc/self/comm") as fh:
        me = f"{fh.read().strip()}[{os.getpid()}]"
    return me, [(x.key, x.message) for x in w]


def test_close_wait_held_by_one_process_is_named():
    me, warnings = run_in_netns(_close_wait_warning)
    cw = [m for k, m in warnings if k == "application"]
    assert len(cw) == 1 and cw[0].startswith(f"{me} holds 4 CLOSE_WAIT")


def _syncookies_off_backlog_full():
    # Per-namespace sysctls, inside the private namespace only.
    with open("/proc/sys/net/ipv4/tcp_syncookies", "w") as fh:
        fh.write("0")
    with open("/proc/sys/net/ipv4/tcp_max_syn_backlog", "w") as fh:
        fh.write("40")
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    attach(lst, DROP_ACK)
    lst.listen(32)
    clients = []
    for _ in range(24):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(lst.getsockname())
        except BlockingIOError:
            pass
        clients.append(c)
    time.sleep(0.2)
    out = subprocess.run([sys.executable, "-m", "tcptune", "states", "--json"], capture_output=True, text=True)
    return out.returncode, out.stdout, out.stderr, lst.getsockname()[1]


def test_syn_recv_warnings_name_backlog_and_syncookies():
    rc, out, err, port = run_in_netns(_syncookies_off_backlog_full)
    assert rc == 0, err
    report = json.loads(out)
    keys = {w["key"]: w["message"] for w in report["warnings"]}
    assert report["states"]["SYN_RECV"] >= 16
    assert "net.ipv4.tcp_syncookies" in keys and f"port {port}" in keys["net.ipv4.tcp_syncookies"]
    assert "net.core.somaxconn" in keys and "listen backlog 32" in keys["net.core.somaxconn"]


def _mixed_lengths_in_one_dump():
    keep = make_zoo(socket.AF_INET) + make_zoo(socket.AF_INET6)
    from tcptune.core.inet_diag import DiagTable, DumpCounter, consume, reply_type, request
    from tcptune.host.sockdiag import open_diag_socket, received
    from tcptune.kernel.states import ALL_STATES_MASK

    # One dump of every state mixes full sockets, TIME_WAIT and request socks (different
    # message lengths) in the same buffers: every view must still count right.
    lengths, tables = set(), {}
    with open_diag_socket() as sock:
        for seq, by in enumerate((None, "local-port", "peer", "process"), 7):
            sock.send(request(socket.AF_INET, ALL_STATES_MASK, seq))
            counter = DumpCounter(reply_type(socket.AF_INET), seq, sock.getsockname()[0], by)
            buffers = [(bytes(b[:n]), n) for b, n in received(sock, counter.tail)]
            for buf, n in buffers:
                off = 0
                while off + 16 <= n:
                    length = struct.unpack_from("=I", buf, off)[0]
                    lengths.add(length)
                    off += length
            consume(buffers, counter, socket.AF_INET)
            tables[by] = table = DiagTable()
            counter.finish(table)
    ss = ss_counts("-4")
    del keep
    return (
        sorted(lengths),
        {by: {int(s): n for s, n in t.counts.items()} for by, t in tables.items()},
        ss,
        {by: sum(t.groups.values()) for by, t in tables.items()},
        len(tables["process"].sock_inodes),
    )


def test_buffers_with_mixed_message_lengths():
    lengths, counts, ss, grouped, inodes = run_in_netns(_mixed_lengths_in_one_dump)
    assert len(lengths) >= 3  # full sockets, request socks, TIME_WAIT (and NLMSG_DONE)
    from tcptune.kernel.states import TcpState

    for by in counts:
        assert {TcpState(k).name: v for k, v in counts[by].items()} == {k: v for k, v in ss.items() if v}, by
    assert grouped["local-port"] == grouped["peer"] == sum(ss.values())
    assert inodes == sum(ss.values())


def _full_accept_queue():
    # listen(0): the kernel's limit is 0, so one completed connection waiting for accept()
    # already makes the queue full (sk_acceptq_is_full: 1 > 0); the other clients' SYNs are
    # dropped and they stay in SYN_SENT, retransmitting.
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    clients = []
    for _ in range(5):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(lst.getsockname())
        except BlockingIOError:
            pass
        clients.append(c)
    time.sleep(0.3)
    argv = [sys.executable, "-m", "tcptune", "states", "--by", "local-port"]
    j = subprocess.run([*argv, "--json"], capture_output=True, text=True)
    t = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, NO_COLOR="1"))
    return j.returncode, j.stdout, j.stderr, t.stdout, lst.getsockname()[1], ss_counts()


def test_full_accept_queue_is_warned_and_shown():
    rc, out, err, text, port, ss = run_in_netns(_full_accept_queue)
    assert rc == 0, err
    report = json.loads(out)
    assert ss["SYN_SENT"] >= 3  # clients the full queue turned away
    (group,) = [g for g in report["groups"] if g["port"] == port]
    assert group["listeners"] == [{"address": "127.0.0.1", "accept_queue": 1, "backlog": 0}]
    (w,) = [w for w in report["warnings"] if "accept queue" in w["message"]]
    assert w["key"] == "application" and w["message"].startswith(f"port {port} (127.0.0.1): accept queue full")
    row = next(line for line in text.splitlines() if line.startswith(str(port)))
    assert row.split()[2] == "1/0"
