"""/proc/net/tcp and tcp6 parsing on real captures (tests/data/proc_net_tcp.SOURCE) and malformed input.

Case by case (one file and its expected rows each): tests/unit/test_procfs_cases.py.
"""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.core.procfs import ProcWarning, parse_proc_net_tcp, parse_sockstat
from tcptune.core.socket_summary import summarize_rows

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


def _zoo(data_dir):
    r4, w4 = parse_proc_net_tcp((data_dir / "proc_net_tcp.zoo").read_text(), socket.AF_INET, "tcp")
    r6, w6 = parse_proc_net_tcp((data_dir / "proc_net_tcp6.zoo").read_text(), socket.AF_INET6, "tcp6")
    return r4, w4, r6, w6


def test_real_capture_counts_equal_ss(data_dir):
    r4, w4, r6, w6 = _zoo(data_dir)
    assert w4 == [] and w6 == []
    assert len(r4) == 39 and len(r6) == 39
    summary = summarize_rows(r4 + r6, None)
    ss = Counter(
        SS_TO_NAME[line.split()[0]] for line in (data_dir / "proc_net_tcp.zoo.ss-tan").read_text().splitlines()[1:]
    )
    assert {s.name: n for s, n in summary.counts.items() if n} == dict(ss)


def test_addresses_ports_and_fields(data_dir):
    r4, _, r6, _ = _zoo(data_dir)
    first = r4[0]  # "0: 0100007F:950B 00000000:0000 0A ... 4877368"
    assert (first.local_address, first.local_port, first.state, first.inode) == ("127.0.0.1", 0x950B, 10, 4877368)
    assert first.remote_address == "0.0.0.0" and first.remote_port == 0
    assert r4[3].state == 8 and r4[3].rx_queue == 1  # CLOSE_WAIT with the peer's FIN counted in rx_queue
    # IPv6: four little-endian 32-bit words; ::1 is 00000000 00000000 00000000 01000000
    assert r6[0].local_address == "::1" and r6[0].remote_address == "::"
    assert r6[3].remote_address == "::1" and r6[3].state == 1
    assert {r.family for r in r6} == {socket.AF_INET6}


def test_request_and_timewait_socks_have_no_inode(data_dir):
    r4, _, r6, _ = _zoo(data_dir)
    for r in r4 + r6:
        if r.state in (3, 6):  # SYN_RECV request socks, TIME_WAIT
            assert r.inode == 0
    syn = summarize_rows(r4 + r6, None).syn_recv_by_port
    assert sorted(syn.values()) == [3, 3]


def test_truncated_file_reports_the_line_and_keeps_the_rest(data_dir):
    text = (data_dir / "proc_net_tcp.zoo").read_text()
    cut = text[: text.index("\n", len(text) // 2) + 40]  # ends in the middle of a line
    rows, warnings = parse_proc_net_tcp(cut, socket.AF_INET, "/proc/net/tcp")
    assert len(warnings) == 1
    w = warnings[0]
    assert w.file == "/proc/net/tcp" and w.line == cut.count("\n") + 1
    assert "truncated" in w.reason
    assert str(w).startswith(f"/proc/net/tcp:{w.line}: ")
    assert len(rows) == cut.count("\n") - 1


ZOO4 = Path(__file__).resolve().parents[1] / "data" / "proc_net_tcp.zoo"
_fieldish = st.text(alphabet="0123456789ABCDEFabcdef:-x \t", max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(_fieldish, st.text(max_size=60)), max_size=20),
    st.sampled_from([socket.AF_INET, socket.AF_INET6]),
)
def test_malformed_lines_never_raise(fields, family):
    text = "  sl  local_address rem_address st\n" + "\n".join(fields)
    rows, warnings = parse_proc_net_tcp(text, family, "fuzz")
    assert all(isinstance(w, ProcWarning) for w in warnings)
    body = text.split("\n")[1:]
    assert len(rows) + len(warnings) <= len(body)
    assert all(2 <= w.line <= len(body) + 1 for w in warnings)
    for r in rows:
        assert 1 <= r.state <= 13 and 0 <= r.local_port <= 0xFFFF


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_real_lines_never_raise(data):
    lines = ZOO4.read_text().splitlines()
    i = data.draw(st.integers(1, len(lines) - 1))
    line = lines[i]
    a = data.draw(st.integers(0, len(line)))
    b = data.draw(st.integers(a, len(line)))
    junk = data.draw(st.text(max_size=8))
    mutated = line[:a] + junk + line[b:]
    rows, warnings = parse_proc_net_tcp("\n".join([lines[0], mutated]), socket.AF_INET, "m")
    assert len(rows) + len(warnings) <= 1 + mutated.count("\n") + mutated.count("\r")


def test_sockstat():
    text = "sockets: used 10\nTCP: inuse 5 orphan 2 tw 7 alloc 9 mem 1\nUDP: inuse 0 mem 0\n"
    assert parse_sockstat(text)["TCP"] == {"inuse": 5, "orphan": 2, "tw": 7, "alloc": 9, "mem": 1}
    assert parse_sockstat("garbage\nTCP: inuse x orphan 3")["TCP"] == {"orphan": 3}
