"""Doctor's checks as pure functions: each fires on its condition and stays quiet without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcptune.core.counters import delta, merge, parse_snmp_text
from tcptune.core.diagnoses import CHECKS, diagnose
from tcptune.core.diagnoses.model import CRITICAL, INFO, WARNING, DoctorInput, Listener
from tcptune.kernel.states import TcpState

DATA = Path(__file__).resolve().parents[1] / "data/proc_net_snmp"
FRESH_SETTINGS = {
    "net.core.somaxconn": "4096",
    "net.ipv4.tcp_abort_on_overflow": "0",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.tcp_max_syn_backlog": "512",
    "net.ipv4.tcp_max_tw_buckets": "262144",
    "net.ipv4.tcp_max_orphans": "262144",
    "net.ipv4.tcp_mem": "188934 251913 377868",
    "net.ipv4.tcp_syn_retries": "6",
}


def _captured(which: str):
    return merge(*(parse_snmp_text((DATA / f"overflow-{which}-6.18.{f}").read_text(), f) for f in ("netstat", "snmp")))


def make(before=None, after=None, seconds=2.0, settings=None, states=None, **kw) -> DoctorInput:
    before = before or {}
    return DoctorInput(
        counter=delta(before, after if after is not None else before, seconds),
        seconds=seconds,
        settings={**FRESH_SETTINGS, **(settings or {})},
        states={s: 0 for s in TcpState} | (states or {}),
        **kw,
    )


def counters(**values):
    out: dict = {}
    for name, v in values.items():
        group, _, counter = name.partition("_")
        out.setdefault(group, {})[counter] = v
    return out


def test_a_quiet_fresh_namespace_gives_no_findings():
    fresh = merge(*(parse_snmp_text((DATA / f"fresh-netns-6.18.{f}").read_text(), f) for f in ("netstat", "snmp")))
    assert diagnose(make(fresh, fresh)) == []


def test_the_captured_overflow_with_a_full_listener_is_critical_and_names_the_limit():
    full = Listener("127.0.0.1", 8080, accept_queue=1, backlog=0, owner="server (pid 42)")
    (f,) = diagnose(make(_captured("before"), _captured("after"), 1.5, listeners=[full]), ("accept-queue",))
    assert f.severity == CRITICAL
    assert "ListenOverflows +14 in 1.5 s (9.3/s)" in [e.what for e in f.evidence]
    assert f.look_at == ("the listen() backlog of server (pid 42)",)
    assert "resends its SYN-ACK" in f.summary


def test_a_backlog_at_somaxconn_points_at_somaxconn():
    full = Listener("0.0.0.0", 80, accept_queue=4097, backlog=4096)
    (f,) = diagnose(make(listeners=[full]), ("accept-queue",))
    assert f.severity == WARNING and f.look_at == ("net.core.somaxconn",)


def test_overflows_in_the_past_alone_are_not_a_finding():
    # a year of uptime: ListenOverflows is large but does not move in the window
    old = counters(TcpExt_ListenOverflows=10_000, TcpExt_ListenDrops=10_000)
    assert diagnose(make(old, old)) == []
    assert diagnose(make(old, counters(TcpExt_ListenOverflows=10_000), seconds=0)) == []


@pytest.mark.parametrize("syncookies,severity", [("0", CRITICAL), ("1", WARNING)])
def test_syn_queue_drops_are_critical_only_without_syncookies(syncookies, severity):
    inp = make(
        counters(TcpExt_TCPReqQFullDrop=0),
        counters(TcpExt_TCPReqQFullDrop=30),
        settings={"net.ipv4.tcp_syncookies": syncookies},
    )
    (f,) = diagnose(inp, ("syn-queue",))
    assert f.severity == severity


def test_time_wait_near_the_cap_never_advises_lowering_it():
    inp = make(settings={"net.ipv4.tcp_max_tw_buckets": "10"}, states={TcpState.TIME_WAIT: 9})
    (f,) = diagnose(inp, ("time-wait",))
    assert "never lower the cap" in f.fix
    assert diagnose(make(states={TcpState.TIME_WAIT: 7}, settings={"net.ipv4.tcp_max_tw_buckets": "10"})) == []


def test_tcp_memory_over_the_hard_limit_is_critical():
    inp = make(sockstat={"TCP": {"mem": 400_000, "orphan": 0}})
    (f,) = diagnose(inp, ("orphans-memory",))
    assert (f.check, f.severity) == ("tcp-memory", CRITICAL)


def test_retransmissions_over_one_percent_of_a_busy_window():
    busy = make(counters(Tcp_OutSegs=0, Tcp_RetransSegs=0), counters(Tcp_OutSegs=1000, Tcp_RetransSegs=30))
    assert [f.check for f in diagnose(busy)] == ["retransmissions"]
    idle = make(counters(Tcp_OutSegs=0, Tcp_RetransSegs=0), counters(Tcp_OutSegs=50, Tcp_RetransSegs=5))
    assert diagnose(idle) == []


def test_resets_are_information_with_their_meaning():
    (f,) = diagnose(make(_captured("before"), _captured("after"), 1.5), ("resets",))
    assert f.severity == INFO
    assert "5 connects that failed" in f.summary


def test_conntrack_near_full():
    s = {"net.netfilter.nf_conntrack_count": "970", "net.netfilter.nf_conntrack_max": "1000"}
    (f,) = diagnose(make(settings=s), ("conntrack",))
    assert f.severity == CRITICAL


def test_findings_come_most_severe_first_and_every_check_is_named():
    inp = make(
        _captured("before"),
        _captured("after"),
        1.5,
        listeners=[Listener("127.0.0.1", 1, 1, 0)],
        states={TcpState.SYN_SENT: 60},
    )
    severities = [f.severity for f in diagnose(inp)]
    assert severities == sorted(severities, key=[CRITICAL, WARNING, INFO].index)
    assert set(CHECKS) >= {"accept-queue", "syn-queue", "time-wait", "resets", "syn-sent", "conntrack"}


def test_keepalive_after_the_idle_timeout_warns_and_the_retries2_budget_uses_the_rto_cap():
    ka = {"net.ipv4.tcp_keepalive_time": "7200", "net.ipv4.tcp_keepalive_intvl": "75"}
    ka |= {"net.ipv4.tcp_keepalive_probes": "9", "net.ipv4.tcp_retries2": "15"}
    found = diagnose(make(settings=ka, idle_timeout=350), ("dead-peers",))
    assert [(f.check, f.severity) for f in found] == [("dead-peers", WARNING), ("dead-peers", INFO)]
    assert "after 7200 s" in found[0].summary and "7875 s" in found[0].summary  # 7200 + 9 x 75
    assert "924.6 s" in found[1].summary  # tcp_model_timeout(15, 200 ms, 120 s)
    capped = diagnose(make(settings=ka | {"net.ipv4.tcp_rto_max_ms": "1000"}, idle_timeout=10), ("dead-peers",))
    assert "14.4 s" in capped[1].summary  # since 6.15 the budget uses the socket's own cap
    assert diagnose(make(settings=ka | {"net.ipv4.tcp_keepalive_time": "60"}, idle_timeout=4000)) == []


PORTS = {"net.ipv4.ip_local_port_range": "40000\t40099", "net.ipv4.tcp_tw_reuse": "2", "net.ipv4.tcp_timestamps": "1"}


@pytest.mark.parametrize(
    ("in_use", "reserved", "severity"),
    [(79, "", None), (80, "", WARNING), (99, "", WARNING), (90, "40000-40009", CRITICAL)],
)
def test_ephemeral_ports_per_destination_against_the_usable_ports(in_use, reserved, severity):
    dest = {("10.0.0.1", "10.0.0.9", 443): in_use, ("10.0.0.1", "10.0.0.8", 443): 5}
    settings = PORTS | {"net.ipv4.ip_local_reserved_ports": reserved}
    found = diagnose(make(settings=settings, destinations=dest), ("ephemeral-ports",))
    assert [f.severity for f in found] == ([severity] if severity else [])
    if found:
        usable = 90 if reserved else 100
        assert found[0].summary.startswith(f"10.0.0.1 -> 10.0.0.9:443 uses {in_use} of {usable} usable")
        assert (severity == CRITICAL) == ("EADDRNOTAVAIL" in found[0].summary)
        what = [e.what for e in found[0].evidence]
        assert f"sustainable: {usable} ports / 60 s of TIME_WAIT = {usable / 60:.1f} new connections/s" in what[3]
        assert "tcp_tw_reuse=2: TIME_WAIT 4-tuples to this peer are not reused (2 reuses loopback only)" in what[4]
        assert "IP_BIND_ADDRESS_NO_PORT" in found[0].fix


def test_ephemeral_ports_without_timestamps_say_tw_reuse_cannot_act():
    settings = PORTS | {"net.ipv4.tcp_timestamps": "0", "net.ipv4.tcp_tw_reuse": "1"}
    (f,) = diagnose(make(settings=settings, destinations={("::1", "::1", 80): 100}), ("ephemeral-ports",))
    assert any(e.what.startswith("tcp_timestamps=0: tcp_tw_reuse cannot act") for e in f.evidence)


def test_ephemeral_ports_with_an_unreadable_range_are_not_judged():
    settings = PORTS | {"net.ipv4.ip_local_port_range": None}
    assert diagnose(make(settings=settings, destinations={("a", "b", 1): 10**6}), ("ephemeral-ports",)) == []


@pytest.mark.parametrize(
    ("close_wait", "sockets", "fires"),
    [(100, 5000, True), (99, 5000, False), (16, 32, True), (16, 33, False), (15, 15, False)],
)
def test_close_wait_is_a_leak_by_count_or_by_share_of_the_process_sockets(close_wait, sockets, fires):
    from tcptune.core.diagnoses.model import ProcessSockets

    p = ProcessSockets("app (pid 7)", 7, close_wait, sockets, 40, 1024, True)
    found = diagnose(make(close_wait_owners=[p], window_seconds_cw=2.0), ("close-wait",))
    assert [f.severity for f in found] == ([WARNING] if fires else [])
    if fires:
        assert "were in CLOSE_WAIT 2.0 s earlier too" in found[0].evidence[0].what


def test_close_wait_near_the_fd_limit_is_critical_and_fd_limit_fires_at_90_percent():
    from tcptune.core.diagnoses.model import ProcessSockets

    leak = ProcessSockets("app (pid 7)", 7, 500, 600, 950, 1000, False)
    (f,) = diagnose(make(close_wait_owners=[leak]), ("close-wait",))
    assert f.severity == CRITICAL and "one sample: not followed over time" in f.evidence[0].what
    heavy = [ProcessSockets("a (pid 1)", 1, 0, 3, 899, 1000), ProcessSockets("b (pid 2)", 2, 0, 3, 900, 1000)]
    heavy.append(ProcessSockets("c (pid 3)", 3, 0, 3, 1000, 1000))
    found = diagnose(make(fd_heavy=heavy), ("fd-limit",))
    assert [(f.summary.split()[0], f.severity) for f in found] == [("c", CRITICAL), ("b", WARNING)]


def test_a_large_recv_q_alone_is_no_finding_until_a_window_closes():
    from tcptune.core.diagnoses.model import UNREAD, ZERO_WINDOW, Stall

    unread = Stall("app (pid 7)", UNREAD, 2, 900_000, "10.0.0.1:80 <- 10.0.0.2:40000")
    assert diagnose(make(stalls=[unread]), ("receiver-not-reading",)) == []
    moved = make(counters(TcpExt_TCPToZeroWindowAdv=0), counters(TcpExt_TCPToZeroWindowAdv=3), stalls=[unread])
    (f,) = diagnose(moved, ("receiver-not-reading",))
    assert f.severity == INFO and f.summary == "app (pid 7) is not reading: 2 socket(s) hold up to 900000 unread bytes"
    probing = Stall("client (pid 9)", ZERO_WINDOW, 4, 5000, "10.0.0.2:40000 <- 10.0.0.1:80")
    (f,) = diagnose(make(stalls=[probing]), ("receiver-not-reading",))
    assert f.severity == WARNING and f.summary.startswith("4 socket(s) wait on a peer's zero window")
    assert f.look_at == ("the program client (pid 9)",)
    dropped = make(counters(TcpExt_TCPZeroWindowDrop=0), counters(TcpExt_TCPZeroWindowDrop=5))
    (f,) = diagnose(dropped, ("receiver-not-reading",))
    assert f.severity == WARNING and f.summary == "5 segments dropped on a zero receive window"


def test_retransmissions_name_the_peers_whose_sockets_are_retransmitting_at_the_dump():
    busy = make(counters(Tcp_OutSegs=0, Tcp_RetransSegs=0), counters(Tcp_OutSegs=1000, Tcp_RetransSegs=50))
    busy.retransmitting = {"10.0.0.9": 3, "10.0.0.8": 1}
    (f,) = diagnose(busy, ("retransmissions",))
    assert f.summary == "5.0% of sent segments were retransmissions; most retransmitting sockets go to 10.0.0.9"
    assert [e.what for e in f.evidence][-2:] == [
        "10.0.0.9: 3 socket(s) retransmitting at the dump",
        "10.0.0.8: 1 socket(s) retransmitting at the dump",
    ]
    assert f.look_at == ("the path to 10.0.0.9",)


def test_a_sampled_close_wait_count_says_it_is_an_estimate_with_its_margin():
    """A process whose fds were sampled (1024 of 19714): 'about', how it was estimated, the 95 % margin."""
    from tcptune.core.diagnoses.model import ProcessSockets
    from tcptune.core.diagnoses.owners import check_close_wait, sample_margin

    p = ProcessSockets("app (pid 7)", 7, 3116, 19695, 19714, 20000, False, sampled_fds=1024)
    (f,) = check_close_wait(make(close_wait_owners=[p]))
    assert "about 3116 peers closed" in f.summary
    text = f.evidence[0].what
    assert "about 3116 CLOSE_WAIT sockets, 16% of its sockets (about 19695)" in text
    assert "1024 of its 19714 fds read" in text and "± 429 at 95 %" in text
    assert sample_margin(3116, 1024, 19714) == 429  # 1.96 * sqrt(.158 * .842 / 1024 * (1 - 1024 / 19714)) * 19714
    assert sample_margin(3116, 19714, 19714) == 0  # everything read: no margin
    exact = ProcessSockets("app (pid 7)", 7, 30, 31, 36, 20000, False)
    (g,) = check_close_wait(make(close_wait_owners=[exact]))
    assert "about" not in g.summary and "30 CLOSE_WAIT sockets, 97% of its 31 sockets" in g.evidence[0].what
