"""Pure state-histogram logic: state names, aggregation, warnings tied to settings, report shape (the text view: tests/unit/test_render_states.py)."""

from __future__ import annotations

import json
import socket
from collections import Counter

import pytest

from tcptune.core.procfs import TcpRow
from tcptune.core.socket_summary import (
    NO_OWNER,
    UNKNOWN_OWNER,
    ListenerInfo,
    Summary,
    build_report,
    check_warnings,
    normalize_counts,
    resolve_process_groups,
    summarize_rows,
)
from tcptune.kernel.states import (
    ALL_STATES_MASK,
    STATE_NAMES,
    TCP_NEW_SYN_RECV,
    TcpState,
    parse_state_name,
    state_from_kernel,
    states_mask,
)


def test_kernel_numbers_match_tcp_states_h():
    assert [(s.name, int(s)) for s in TcpState] == [
        ("ESTABLISHED", 1),
        ("SYN_SENT", 2),
        ("SYN_RECV", 3),
        ("FIN_WAIT1", 4),
        ("FIN_WAIT2", 5),
        ("TIME_WAIT", 6),
        ("CLOSE", 7),
        ("CLOSE_WAIT", 8),
        ("LAST_ACK", 9),
        ("LISTEN", 10),
        ("CLOSING", 11),
    ]
    assert state_from_kernel(TCP_NEW_SYN_RECV) is TcpState.SYN_RECV
    assert state_from_kernel(13) is None and state_from_kernel(0) is None
    assert ALL_STATES_MASK == 0b111111111110
    assert states_mask([TcpState.LISTEN]) == 1 << 10 and states_mask([]) == ALL_STATES_MASK


@pytest.mark.parametrize(
    "text,state",
    [
        ("ESTAB", TcpState.ESTABLISHED),
        ("established", TcpState.ESTABLISHED),
        ("fin-wait-1", TcpState.FIN_WAIT1),
        ("FIN_WAIT1", TcpState.FIN_WAIT1),
        ("finwait2", TcpState.FIN_WAIT2),
        ("time-wait", TcpState.TIME_WAIT),
        ("SYN-RECV", TcpState.SYN_RECV),
        ("UNCONN", TcpState.CLOSE),
        (" close_wait ", TcpState.CLOSE_WAIT),
    ],
)
def test_state_spellings(text, state):
    assert parse_state_name(text) is state


def test_unknown_state_lists_the_names():
    with pytest.raises(ValueError, match="ESTABLISHED, SYN_SENT"):
        parse_state_name("SLEEPING")


def row(state, lport=80, peer="10.0.0.1", inode=1):
    return TcpRow(socket.AF_INET, state, "10.0.0.2", lport, peer, 5555, 0, 0, 0, inode)


def test_summarize_rows_groups_and_orphans():
    rows = [
        row(1),
        row(1, peer="10.0.0.9"),
        row(TCP_NEW_SYN_RECV, inode=0),
        row(3, inode=0),
        row(5, inode=0),
        row(5, inode=7),
        row(10, lport=80, peer="0.0.0.0", inode=9),
    ]
    s = summarize_rows(rows, "peer")
    assert s.counts[TcpState.ESTABLISHED] == 2 and s.counts[TcpState.SYN_RECV] == 2
    assert set(s.counts) == set(TcpState)
    assert s.orphans == 1  # FIN_WAIT2 without an inode
    assert s.groups[(TcpState.ESTABLISHED, "10.0.0.9")] == 1
    assert s.syn_recv_by_port == Counter({80: 2})
    assert s.listeners == [ListenerInfo("10.0.0.2", 80, 0, None, 9)]
    only = summarize_rows(rows, None, states={TcpState.FIN_WAIT2})
    assert sum(only.counts.values()) == 2


def test_process_groups_resolve_owners():
    groups = Counter({(TcpState.ESTABLISHED, 11): 2, (TcpState.TIME_WAIT, 0): 5, (TcpState.ESTABLISHED, 99): 1})
    out = resolve_process_groups(groups, {11: (42, "nginx")})
    assert out == Counter(
        {(TcpState.ESTABLISHED, (42, "nginx")): 2, (TcpState.TIME_WAIT, NO_OWNER): 5, (TcpState.ESTABLISHED, None): 1}
    )
    s = Summary("t", normalize_counts({1: 3, 6: 5}), out)
    report = build_report(s, [], "process")
    keys = [g["key"] for g in report["groups"]]
    assert keys == [NO_OWNER, "nginx[42]", UNKNOWN_OWNER]
    assert report["groups"][1]["pid"] == 42 and report["groups"][1]["name"] == "nginx"


SETTINGS = {
    "net.ipv4.tcp_max_tw_buckets": "1000",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.tcp_max_orphans": "100",
    "net.ipv4.tcp_max_syn_backlog": "128",
    "net.core.somaxconn": "4096",
    "net.ipv4.tcp_fin_timeout": "60",
}


def keys_of(ws):
    return [w.key for w in ws]


def test_no_warnings_on_a_quiet_table():
    s = Summary("t", normalize_counts({1: 50, 6: 10, 10: 2}), orphans=0)
    assert check_warnings(s, SETTINGS) == []


def test_time_wait_near_max_tw_buckets():
    s = Summary("t", normalize_counts({6: 800}))
    [w] = check_warnings(s, SETTINGS)
    assert w.key == "net.ipv4.tcp_max_tw_buckets" and "800" in w.message and "80%" in w.message
    assert check_warnings(Summary("t", normalize_counts({6: 799})), SETTINGS) == []
    assert check_warnings(s, {**SETTINGS, "net.ipv4.tcp_max_tw_buckets": None}) == []


def test_syn_recv_fills_listen_backlog_and_syncookies_off():
    s = Summary(
        "t",
        normalize_counts({3: 70}),
        listeners=[ListenerInfo("0.0.0.0", 443, 0, 128)],
        syn_recv_by_port=Counter({443: 70}),
    )
    assert keys_of(check_warnings(s, SETTINGS)) == ["net.core.somaxconn"]
    ws = check_warnings(s, {**SETTINGS, "net.ipv4.tcp_syncookies": "0"})
    assert keys_of(ws) == ["net.core.somaxconn", "net.ipv4.tcp_syncookies"]
    assert "port 443" in ws[1].message and "tcp_max_syn_backlog=128" in ws[1].message
    capped = check_warnings(s, {**SETTINGS, "net.core.somaxconn": "128"})
    assert "capped by net.core.somaxconn=128" in capped[0].message
    small = Summary(
        "t",
        normalize_counts({3: 10}),
        listeners=[ListenerInfo("0.0.0.0", 443, 0, 16)],
        syn_recv_by_port=Counter({443: 10}),
    )
    assert check_warnings(small, SETTINGS) == []  # fewer than MIN_PENDING


def test_syn_recv_from_proc_without_backlog_uses_totals():
    s = Summary("t", normalize_counts({3: 100}))
    assert keys_of(check_warnings(s, {**SETTINGS, "net.ipv4.tcp_syncookies": "0"})) == ["net.ipv4.tcp_syncookies"]


def test_close_wait_names_the_process():
    groups = Counter({(TcpState.CLOSE_WAIT, (7, "app")): 150, (TcpState.CLOSE_WAIT, (8, "ok")): 3})
    s = Summary("t", normalize_counts({8: 153}), groups)
    [w] = check_warnings(s, SETTINGS, by="process")
    assert w.key == "application" and "app[7] holds 150 CLOSE_WAIT" in w.message
    [w2] = check_warnings(s, SETTINGS)
    assert "--by process" in w2.message


def test_orphans_near_max_orphans():
    s = Summary("t", normalize_counts({5: 85}), orphans=85)
    [w] = check_warnings(s, SETTINGS)
    assert w.key == "net.ipv4.tcp_max_orphans" and "85 in FIN_WAIT2" in w.message and "tcp_fin_timeout=60" in w.message


def test_report_shape_is_stable_json():
    s = Summary("netlink", normalize_counts({1: 3, TCP_NEW_SYN_RECV: 1}), notes=["x"])
    r = build_report(s, check_warnings(s, SETTINGS), previous={"ESTABLISHED": 5})
    assert list(r) == ["source", "states", "total", "changes", "warnings", "notes"]
    assert list(r["states"]) == list(STATE_NAMES) and r["total"] == 4
    assert r["changes"]["ESTABLISHED"] == -2 and r["changes"]["SYN_RECV"] == 1
    json.dumps(r)
    g = build_report(Summary("t", normalize_counts({1: 3})), [], by="state")
    assert g["groups"] == [{"key": "ESTABLISHED", "total": 3, "states": {"ESTABLISHED": 3}}]


def test_top_limits_groups():
    groups = Counter({(TcpState.ESTABLISHED, p): p for p in range(1, 30)})
    r = build_report(Summary("t", normalize_counts({1: 435}), groups), [], by="local-port", top=5)
    assert [g["port"] for g in r["groups"]] == [29, 28, 27, 26, 25]


# -- issue 10 #7: nothing left out silently ----------------------------------------------


def test_top_says_what_it_left_out():
    groups = Counter({(TcpState.ESTABLISHED, p): p for p in range(1, 30)})
    r = build_report(Summary("t", normalize_counts({1: 435}), groups), [], by="local-port", top=5)
    assert r["more"] == {"groups": 24, "sockets": 435 - (29 + 28 + 27 + 26 + 25)}
    everything = build_report(Summary("t", normalize_counts({1: 435}), groups), [], by="local-port")
    assert "more" not in everything and len(everything["groups"]) == 29


def test_state_filter_lists_only_the_states_asked_for():
    s = Summary("t", normalize_counts({6: 4}))
    r = build_report(s, [], only={TcpState.TIME_WAIT, TcpState.SYN_RECV}, previous={"TIME_WAIT": 1})
    assert list(r["states"]) == ["SYN_RECV", "TIME_WAIT"] and r["total"] == 4
    assert r["changes"] == {"SYN_RECV": 0, "TIME_WAIT": 3}


# -- issue 10 #3: a full accept queue --------------------------------------------------------


def test_full_accept_queue_warns_and_names_the_port():
    s = Summary("t", normalize_counts({10: 3}))
    s.listeners = [
        ListenerInfo("127.0.0.1", 8080, 1, 0),  # listen(0): one connection waiting is "full"
        ListenerInfo("0.0.0.0", 443, 3, 128),  # fine
        ListenerInfo("::", 80, 4096, 4096),  # at somaxconn
        ListenerInfo("10.0.0.1", 25, 7, None),  # from /proc: no limit known, no verdict
    ]
    ws = [w for w in check_warnings(s, SETTINGS) if "accept queue" in w.message]
    assert [(w.key, w.message.split("): ")[0] + ")") for w in ws] == [
        ("application", "port 8080 (127.0.0.1)"),
        ("net.core.somaxconn", "port 80 (::)"),
    ]
    assert "accept queue full, 1 connections wait for accept() with a backlog of 0" in ws[0].message
    assert "capped by net.core.somaxconn=4096" in ws[1].message


def test_local_port_groups_carry_their_listeners():
    s = Summary(
        "t", normalize_counts({10: 1, 1: 2}), Counter({(TcpState.LISTEN, 80): 1, (TcpState.ESTABLISHED, 80): 2})
    )
    s.listeners = [ListenerInfo("0.0.0.0", 80, 1, 0)]
    (g,) = build_report(s, [], by="local-port")["groups"]
    assert g["listeners"] == [{"address": "0.0.0.0", "accept_queue": 1, "backlog": 0}]


def test_summarize_rows_destinations_leave_out_the_listeners_ports():
    """The /proc path counts port use as the netlink 'dest' view does: a socket accept() made
    shares its listener's port, which connect() never picks (__inet_hash_connect())."""
    rows = [
        row(10, lport=40005, peer="0.0.0.0", inode=9),  # a listener inside the ephemeral range
        row(1, lport=40005, peer="10.0.0.7"),  # accepted on it
        row(1, lport=40001, peer="10.0.0.1"),  # connect()ed: an ephemeral port
        row(6, lport=40002, peer="10.0.0.1", inode=0),  # TIME_WAIT still holds its port
        row(1, lport=39999, peer="10.0.0.1"),  # outside the range
        row(2, lport=30000, peer="10.0.0.3"),  # SYN_SENT outside the range: in the SYN_SENT groups only
    ]
    s = summarize_rows(rows, None, port_range=(40000, 40009))
    assert s.destinations == Counter({("10.0.0.2", "10.0.0.1", 5555): 2})
    assert s.syn_sent_destinations == Counter({("10.0.0.2", "10.0.0.3", 5555): 1})
