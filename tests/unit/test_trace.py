"""trace: the pcap/pcapng reader on real tcpdump captures, the state machine on hand-made sequences, bad input."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
from clirunner import one_line_error, run_cli, run_tty
from hypothesis import given, settings
from hypothesis import strategies as st
from pcaputil import read_segments

from tcptune.core.pcap import ACK, FIN, RST, SYN, ReadStats, Segment
from tcptune.core.trace import trace_connections
from tcptune.errors import TcptuneError

DATA = Path(__file__).resolve().parents[1] / "data/pcap"
CASES = sorted(DATA.glob("*.pcap"))


def _trace(path: Path):
    with open(path, "rb") as fh:
        return trace_connections(read_segments(fh, str(path)))


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_each_capture_gives_its_expected_labels_and_states(path):
    expected = json.loads(path.with_suffix(".expected.json").read_text())
    got = [
        {
            "client": c.client.split(":")[0],
            "server": c.server,
            "final_states": c.final_states,
            "packets": [[a.sender, a.segment.letters, a.label, *a.states_after.values()] for a in c.packets],
        }
        for c in _trace(path)
    ]
    assert got == expected


def test_pcapng_reads_the_same_segments_as_pcap():
    def segs(name):
        with open(DATA / name, "rb") as fh:
            return [(s.src, s.sport, s.flags, s.seq, s.ack, s.length) for s in read_segments(fh, name)]

    assert segs("handshake-teardown-nc.pcapng") == segs("handshake-teardown-nc.pcap")


def seg(t, frm, flags, seq, ack=0, length=0, window=100):
    a, b = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    (src, sport), (dst, dport) = (a, b) if frm == "c" else (b, a)
    return Segment(t, src, sport, dst, dport, flags, seq, ack, window, length)


def states(conn):
    return [tuple(p.states_after.values()) for p in conn.packets]


def test_four_segment_close_walks_every_state():
    (c,) = trace_connections(
        [
            seg(0, "c", SYN, 100),
            seg(0.1, "s", SYN | ACK, 500, 101),
            seg(0.2, "c", ACK, 101, 501),
            seg(1, "c", FIN | ACK, 101, 501),
            seg(1.1, "s", ACK, 501, 102),
            seg(2, "s", FIN | ACK, 501, 102),
            seg(2.1, "c", ACK, 102, 502),
        ]
    )
    assert states(c) == [
        ("SYN_SENT", "SYN_RECV"),
        ("ESTABLISHED", "SYN_RECV"),
        ("ESTABLISHED", "ESTABLISHED"),
        ("FIN_WAIT1", "CLOSE_WAIT"),
        ("FIN_WAIT2", "CLOSE_WAIT"),
        ("TIME_WAIT", "LAST_ACK"),
        ("TIME_WAIT", "CLOSED"),
    ]
    assert [p.label for p in c.packets] == [
        "SYN J",
        "SYN-ACK K, ack J+1",
        "ACK K+1",
        "FIN J+1, ack K+1",
        "ACK J+2",
        "FIN K+1, ack J+2",
        "ACK K+2",
    ]


def test_simultaneous_close_goes_through_closing():
    (c,) = trace_connections(
        [
            seg(0, "c", SYN, 100),
            seg(0, "s", SYN | ACK, 500, 101),
            seg(0, "c", ACK, 101, 501),
            seg(1, "c", FIN | ACK, 101, 501),
            seg(1, "s", FIN | ACK, 501, 101),  # sent before the client's FIN arrived: acks only 101
            seg(1.1, "c", ACK, 102, 502),
            seg(1.1, "s", ACK, 502, 102),
        ]
    )
    assert states(c)[3:] == [
        ("FIN_WAIT1", "CLOSE_WAIT"),
        ("CLOSING", "CLOSING"),
        ("CLOSING", "TIME_WAIT"),
        ("TIME_WAIT", "TIME_WAIT"),
    ]


def test_simultaneous_open_reaches_established_on_both_sides():
    (c,) = trace_connections(
        [
            seg(0, "c", SYN, 100),
            seg(0, "s", SYN, 500),
            seg(0.1, "c", SYN | ACK, 100, 501),
            seg(0.1, "s", SYN | ACK, 500, 101),
        ]
    )
    assert states(c)[-1] == ("ESTABLISHED", "ESTABLISHED")
    assert ("SYN_RECV", "SYN_RECV") in states(c)


def test_simultaneous_open_as_the_kernel_does_it_on_loopback():
    """The SYNs cross, each end answers the other's SYN with its own SYN-ACK (its SYN sent on
    with an ACK: tcp_rcv_synsent_state_process, then tcp_send_synack), then each end ACKs the
    SYN-ACK it took as a duplicate: what `trace --scenario simultaneous-open` captures."""
    (c,) = trace_connections(
        [
            seg(0.0, "c", SYN, 100),
            seg(0.2, "s", SYN, 500),
            seg(0.4, "s", SYN | ACK, 500, 101),
            seg(0.6, "c", SYN | ACK, 100, 501),
            seg(0.8, "c", ACK, 101, 501),
            seg(1.0, "s", ACK, 501, 101),
        ]
    )
    assert [(p.sender, p.label) for p in c.packets] == [
        ("client", "SYN J"),
        ("server", "SYN K"),
        ("server", "SYN-ACK K, ack J+1"),
        ("client", "SYN-ACK J, ack K+1"),
        ("client", "ACK K+1"),
        ("server", "ACK J+1"),
    ]
    assert states(c) == [
        ("SYN_SENT", "SYN_RECV"),
        ("SYN_RECV", "SYN_RECV"),
        ("ESTABLISHED", "SYN_RECV"),
        ("ESTABLISHED", "ESTABLISHED"),
        ("ESTABLISHED", "ESTABLISHED"),
        ("ESTABLISHED", "ESTABLISHED"),
    ]
    # the SYN-ACK is not a resend of the same end's SYN (same sequence number, new segment)
    assert [p.retransmission for p in c.packets] == [0] * 6 and not any(p.marks for p in c.packets)
    # a SYN-ACK sent again is one
    (h,) = trace_connections([seg(0, "c", SYN, 10), seg(0.1, "s", SYN | ACK, 50, 11), seg(1.1, "s", SYN | ACK, 50, 11)])
    assert [p.retransmission for p in h.packets] == [0, 0, 1]


def test_a_capture_without_the_syn_says_joined_mid_connection_and_does_not_guess():
    (c,) = trace_connections([seg(0, "c", ACK, 101, 501, length=10), seg(0.1, "s", ACK, 501, 111)])
    assert c.joined_mid
    assert states(c) == [("?", "?"), ("?", "?")]


def test_a_lost_segment_resent_is_marked_with_its_gap():
    (c,) = trace_connections(
        [
            seg(0, "c", SYN, 100),
            seg(0, "s", SYN | ACK, 500, 101),
            seg(0, "c", ACK, 101, 501),
            seg(1, "c", ACK | 0x08, 101, 501, length=5),
            seg(1.25, "c", ACK | 0x08, 101, 501, length=5),
        ]
    )
    assert c.packets[-1].retransmission == 1
    assert "retransmission 1, 0.250 s after the previous" in c.packets[-1].marks


def test_a_rst_after_data_closes_both_ends():
    (c,) = trace_connections(
        [seg(0, "c", SYN, 1), seg(0, "s", SYN | ACK, 9, 2), seg(0, "c", ACK, 2, 10), seg(1, "s", RST | ACK, 10, 2)]
    )
    assert c.final_states == {"client": "CLOSED", "server": "CLOSED"}


def _pcap(records: list[bytes], linktype: int = 1) -> bytes:
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    return head + b"".join(struct.pack("<IIII", 0, 0, len(r), len(r)) + r for r in records)


@pytest.mark.parametrize(
    "data,why",
    [
        (b"", "empty"),
        (b"hello world, not a capture", "unknown magic"),
        (_pcap([b"\x00" * 40])[:-10], "truncated"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 1 << 30, 0), "claims"),
    ],
)
def test_bad_captures_are_one_clear_error(data, why):
    with pytest.raises(TcptuneError) as exc:
        list(read_segments(io.BytesIO(data), "f"))
    assert why in str(exc.value) and exc.value.exit_code == 2


def test_the_cli_refuses_a_capture_with_no_tcp_and_a_fifo(tmp_path):
    f = tmp_path / "udp.pcap"
    f.write_bytes(_pcap([b"\x00" * 14 + b"\x45" + b"\x00" * 8 + b"\x11" + b"\x00" * 30]))  # IPv4 UDP
    r = run_cli("trace", "--read", str(f))
    assert r.returncode == 2 and "none of them TCP" in one_line_error(r)
    import os

    os.mkfifo(tmp_path / "fifo")
    r = run_cli("trace", "--read", str(tmp_path / "fifo"), timeout=10)
    assert r.returncode == 2 and "FIFO" in one_line_error(r)


def test_the_cli_json_has_the_documented_shape():
    r = run_cli("trace", "--read", str(DATA / "handshake-teardown-nc.pcap"), "--json")
    assert r.returncode == 0, r.stderr
    (conn,) = json.loads(r.stdout)["connections"]
    first = conn["packets"][0]
    assert set(first) >= {"t", "from", "flags", "seq_rel", "ack_rel", "len", "label", "retransmission"}
    assert (first["flags"], first["seq_rel"], first["ack_rel"], first["label"]) == ("S", 0, None, "SYN J")
    assert first["states_after"] == {"client": "SYN_SENT", "server": "SYN_RECV"}
    assert conn["final_states"] == {"client": "TIME_WAIT", "server": "CLOSED"}


@pytest.mark.parametrize("columns", [80, 200])
def test_the_two_lane_view_fits_the_terminal(columns):
    code, screen = run_tty("trace", "--read", str(DATA / "handshake-teardown-nc.pcap"), columns=columns)
    assert code == 0, screen
    assert max(len(line) for line in screen.splitlines()) <= columns
    assert "SYN-ACK K, ack J+1" in screen


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_after_a_valid_header_read_or_fail_cleanly(tail):
    stats = ReadStats()
    try:
        for _ in read_segments(io.BytesIO(_pcap([]) + tail), "f", stats):
            pass
    except TcptuneError as exc:
        assert exc.exit_code == 2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 2e9, allow_nan=False),
            st.integers(0, 0x3F),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 1400),
        ),
        max_size=20,
    )
)
def test_pcap_writer_output_reads_back_segment_for_segment(records):
    from framebuild import frame

    from tcptune.core.pcap import PcapWriter

    buf = io.BytesIO()
    w = PcapWriter(buf)
    for t, flags, seq, ack, length in records:
        w.write(t, frame(flags, seq, ack, length))
    buf.seek(0)
    got = list(read_segments(buf, "written"))
    assert [(s.flags, s.seq, s.ack, s.length) for s in got] == [(f, s, a, n) for _, f, s, a, n in records]
    assert all(abs(s.t - r[0]) <= 1e-6 * max(1.0, r[0]) for s, r in zip(got, records, strict=True))


def _many_connections(n):
    out, t = [], 0.0
    for i in range(n):
        a, b = ("10.0.0.1", 1024 + i % 60000), ("10.0.0.2", 80)
        for frm, flags, seq, ack in [
            ("c", SYN, 0, 0),
            ("s", SYN | ACK, 100, 1),
            ("c", ACK, 1, 101),
            ("c", FIN | ACK, 1, 101),
            ("s", FIN | ACK, 101, 2),
            ("c", ACK, 2, 102),
        ]:
            t += 0.001
            (src, sport), (dst, dport) = (a, b) if frm == "c" else (b, a)
            out.append(Segment(t, src, sport, dst, dport, flags, seq, ack, 100, 0))
    return out


def test_forgetting_finished_connections_bounds_memory_and_changes_no_annotation():
    from tcptune.core.trace import KEEP_DONE, S_CONN, S_LABEL, Tracer, finished_batches

    segs = _many_connections(3 * KEEP_DONE)
    tracer = Tracer(keep=False, forget=True)
    most = 0
    for s in segs:
        tracer.feed(s)
        tracer.forgotten.clear()
        most = max(most, len(tracer.trackers))
    assert most == KEEP_DONE + 1
    kept = trace_connections(segs)
    labels: dict[int, list[str]] = {}
    streamed = []
    for steps, finished in finished_batches([segs[:1000], segs[1000:]]):
        for step in steps:
            labels.setdefault(step[S_CONN].first, []).append(step[S_LABEL])
        streamed += finished
    assert len(streamed) == len(kept) == 3 * KEEP_DONE
    assert sorted((c.client, labels[c.first], c.final_states["client"]) for c in streamed) == sorted(
        (c.client, [p.label for p in c.packets], c.final_states["client"]) for c in kept
    )


def test_a_kernel_disagreement_is_in_the_json_and_the_text():
    from tcptune.render.output import Output
    from tcptune.render.trace import render_packet

    (c,) = trace_connections([seg(0, "c", SYN, 10), seg(0.1, "s", SYN | ACK, 50, 11), seg(0.2, "c", ACK, 11, 51)])
    ack = c.packets[-1]
    ack.kernel_states = {"client": "ESTABLISHED", "server": "SYN_RECV"}
    j = ack.to_json()
    assert j["states_source"] == "kernel" and j["disagrees"] == ["server"]
    assert j["states_after"] == {"client": "ESTABLISHED", "server": "ESTABLISHED"}
    lines = "\n".join(render_packet(ack, Output(width=80))).splitlines()
    assert all(len(line) <= 80 for line in lines)
    text = " ".join(" ".join(lines).split())
    assert "DIFFERS from the packets (server ESTABLISHED)" in text
    ack.kernel_states = {"client": "ESTABLISHED", "server": "ESTABLISHED"}
    assert "agrees" in "\n".join(render_packet(ack, Output(width=80))) and ack.to_json()["disagrees"] == []
    assert c.packets[0].to_json()["states_source"] == "inferred"


def test_absolute_labels_carry_the_raw_numbers():
    from tcptune.core.trace import annotate, connections_of

    (c,) = connections_of(annotate([seg(0, "c", SYN, 10), seg(0.1, "s", SYN | ACK, 50, 11)], absolute=True))
    assert [p.label_text(True) for p in c.packets] == ["SYN 10", "SYN-ACK 50, ack 11"]
    assert [p.label for p in c.packets] == ["SYN J", "SYN-ACK K, ack J+1"]
    assert c.packets[1].to_json(absolute=True)["label"] == "SYN-ACK 50, ack 11"


def test_a_new_syn_on_a_finished_4_tuple_is_a_new_connection():
    close = [
        seg(0, "c", SYN, 10),
        seg(0.1, "s", SYN | ACK, 50, 11),
        seg(0.2, "c", ACK, 11, 51),
        seg(0.3, "c", FIN | ACK, 11, 51),
        seg(0.4, "s", FIN | ACK, 51, 12),
        seg(0.5, "c", ACK, 12, 52),
    ]
    again = [seg(1.0, "c", SYN, 9000), seg(1.1, "s", SYN | ACK, 700, 9001)]
    first, second = trace_connections(close + again)
    assert first.final_states == {"client": "TIME_WAIT", "server": "CLOSED"}
    assert [p.label for p in second.packets] == ["SYN J", "SYN-ACK K, ack J+1"]
    # a SYN retransmitted on a live connection is not one
    (only,) = trace_connections([seg(0, "c", SYN, 10), seg(1, "c", SYN, 10)])
    assert [p.retransmission for p in only.packets] == [0, 1]


@pytest.mark.parametrize("absolute", [False, True])
def test_the_streamed_json_is_the_same_document(absolute):
    from tcptune.render.trace import render_json_document, render_trace_json

    conns = [c for p in CASES for c in _trace(p)]
    stats = ReadStats(records=7, tcp=5)
    streamed = json.loads(
        "".join(render_json_document(map(connection_json(absolute), conns), "x.pcap", stats, absolute))
    )
    assert streamed == render_trace_json(conns, "x.pcap", stats, absolute)
    empty = json.loads("".join(render_json_document([], "x.pcap", stats)))
    assert empty["connections"] == []


def connection_json(absolute: bool = False):
    """What --read --json writes of a connection, from its Annotated packets: to_json's fields,
    each packet json.dumps'd on one line (the reference the hand-formatted path must equal)."""
    dumps = json.JSONEncoder(allow_nan=False).encode

    def connection(conn) -> str:
        fields = []
        for key, value in conn.to_json(absolute).items():
            if key == "packets" and value:
                body = ",\n        ".join(map(dumps, value))
                fields.append(f'      "packets": [\n        {body}\n      ]')
            else:
                fields.append(f"      {dumps(key)}: {dumps(value)}")
        return "{\n" + ",\n".join(fields) + "\n    }"

    return connection


def _reopened(times: int = 3):
    """A connection closed, then the same 4-tuple used again (each time a new connection)."""
    out = []
    for n, t in enumerate(range(times)):
        j, k = 10 + 1000 * n, 50 + 1000 * n
        out += [
            seg(t, "c", SYN, j),
            seg(t + 0.1, "s", SYN | ACK, k, j + 1),
            seg(t + 0.2, "c", ACK, j + 1, k + 1),
            seg(t + 0.3, "c", FIN | ACK, j + 1, k + 1),
            seg(t + 0.4, "s", FIN | ACK, k + 1, j + 2),
            seg(t + 0.5, "c", ACK, j + 2, k + 2),
        ]
    return out


# the server's SYN was seen, then the client's crossed it and the capture ends: an answer
# (the server's SYN) was seen, so no "no answer seen" guess, in the text as in the JSON
_CROSSED_SYNS = [seg(0, "c", SYN, 10), seg(0.01, "s", SYN, 50), seg(0.02, "c", SYN, 10)]


@pytest.mark.parametrize(
    "segs",
    [_reopened(), _CROSSED_SYNS, *(list(read_segments(open(p, "rb"), p.name)) for p in CASES)],
    ids=["reopened", "crossed-syns", *(p.name for p in CASES)],
)
@pytest.mark.parametrize("absolute", [False, True])
def test_the_streamed_text_is_the_text_of_the_kept_connections(segs, absolute):
    """--read's batch path (steps) prints what the Annotated path prints, a header per connection."""
    from tcptune.core.trace import annotate_batches
    from tcptune.render.output import Output
    from tcptune.render.trace import render_step_items, render_trace_text

    out = Output(width=80)
    items = render_step_items(annotate_batches([segs[:2], segs[2:]], absolute), out, absolute)
    streamed = "".join(text for got in items for _, text in got)
    conns = trace_connections(segs, absolute)
    kept = "\n".join(render_trace_text([(c, a) for c in conns for a in c.packets], out, absolute)) + "\n"
    assert streamed == kept
    assert streamed.count("\nconnection ") == len(conns)


def _frame(s: Segment) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", s.sport, s.dport, s.seq, s.ack, 5 << 4, s.flags, s.window, 0, 0)
    addrs = bytes(map(int, s.src.split("."))) + bytes(map(int, s.dst.split(".")))
    ip = struct.pack(">BBHHHBBH8s", 0x45, 0, 40 + s.length, 0, 0x4000, 64, 6, 0, addrs)
    return b"\0" * 12 + b"\x08\x00" + ip + tcp + bytes(s.length)


def test_each_connection_on_a_reused_4_tuple_gets_its_header_in_the_cli(tmp_path):
    from tcptune.core.pcap import PcapWriter

    path = tmp_path / "reused.pcap"
    with open(path, "wb") as fh:
        w = PcapWriter(fh)
        for s in _reopened(40):  # a forgotten connection's id() was reused by a later one: no header
            w.write(s.t, _frame(s))
    r = run_cli("trace", "--read", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\nconnection ") == 40


_MARKED = [
    seg(0, "c", SYN, 10),
    seg(0.1, "s", SYN | ACK, 50, 11),
    seg(0.2, "c", ACK, 11, 51),
    seg(0.3, "c", ACK, 11, 51, length=100),
    seg(0.9, "c", ACK, 11, 51, length=100),  # resent
    seg(1.0, "s", ACK, 51, 111, window=0),
    seg(1.0, "s", ACK, 51, 111),  # dup ACK
    seg(9.0, "c", ACK, 110, 51),  # keepalive probe
    seg(9.5, "c", RST | ACK, 111, 51),
]


@pytest.mark.parametrize(
    "segs",
    [_reopened(), _CROSSED_SYNS, _MARKED, *(list(read_segments(open(p, "rb"), p.name)) for p in CASES)],
    ids=["reopened", "crossed-syns", "marked", *(p.name for p in CASES)],
)
@pytest.mark.parametrize("absolute", [False, True])
def test_the_json_written_from_steps_is_json_dumps_of_to_json(segs, absolute):
    """--read --json formats each kept step by hand: byte for byte what the encoder makes of
    Annotated.to_json (float repr, null, key order, escaped labels and marks)."""
    from tcptune.core.trace import finished_batches
    from tcptune.render.trace import render_connection_items

    from_steps = sorted(
        "".join(text)
        for items in render_connection_items(finished_batches([segs], absolute), absolute)
        for _, text in items
    )
    from_annotated = sorted(map(connection_json(absolute), trace_connections(segs, absolute)))
    assert from_steps == from_annotated
    assert any(p["marks"] for c in map(json.loads, from_steps) for p in c["packets"]) or segs is not _MARKED


@pytest.mark.parametrize("json_out", [False, True])
def test_reading_a_capture_makes_no_reference_cycles(json_out):
    """--read runs with the cycle collector off (ops/trace.read_trace): memory stays flat only
    if the path leaves nothing for the collector to find."""
    import gc

    from tcptune.core.trace import annotate_batches, finished_batches
    from tcptune.render.output import Output
    from tcptune.render.trace import render_connection_items, render_step_items

    segs = _reopened(30) + _MARKED + _CROSSED_SYNS + [s for p in CASES for s in read_segments(open(p, "rb"), p.name)]
    batches = [segs[i : i + 7] for i in range(0, len(segs), 7)]
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        if json_out:
            written = "".join(
                "".join(text) for items in render_connection_items(finished_batches(batches)) for _, text in items
            )
        else:
            written = "".join(t for got in render_step_items(annotate_batches(batches), Output()) for _, t in got)
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()
    assert "SYN-ACK K, ack J+1" in written


ISSUE_SCENARIOS = [
    "handshake",
    "teardown",
    "refused",
    "syn-sent",
    "syn-recv",
    "fin-wait1",
    "half-close",
    "simultaneous-open",
    "simultaneous-close",
    "time-wait",
]


def test_scenario_list_says_what_each_of_the_issues_scenarios_shows_and_the_man_page_has_them():
    r = run_cli("trace", "--scenario", "list")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[2:] if line.strip()}
    assert sorted(rows) == sorted(ISSUE_SCENARIOS)
    assert "SYN_SENT -> SYN_RECV -> ESTABLISHED" in " ".join(r.stdout.split())
    man = (Path(__file__).resolve().parents[2] / "man/tcptune.8").read_text().replace("\\-", "-")
    assert all(name in man for name in ISSUE_SCENARIOS)


def test_loopback_is_never_paced_outside_the_namespace_trace_made(monkeypatch):
    """The simultaneous-open scenario puts a tbf qdisc on lo: only in the private namespace
    enter_private_netns made, never in the one the tests (or a user) run in."""
    import subprocess

    from tcptune.probe import scenarios

    def no_tc(*args, **kwargs):
        raise AssertionError(f"tc was run: {args}")

    monkeypatch.setattr(subprocess, "run", no_tc)
    with pytest.raises(TcptuneError) as exc:
        scenarios._pace_loopback()
    assert "not in a private network namespace" in str(exc.value)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.text(alphabet="SYNACKFIJ+:0123456789()[].,byteswhl-", min_size=1, max_size=14), min_size=1, max_size=9),
    st.integers(8, 60),
)
def test_the_lane_wrap_is_textwrap(words, width):
    import textwrap

    from tcptune.render.trace import _wrap

    text = " ".join(words)
    assert _wrap(text, width) == textwrap.wrap(text, width)


def test_a_finished_connection_keeps_only_its_last_segments_for_resends():
    """Text --read follows 1024 finished connections: each keeps 64 segments per end to know a
    resend (its FIN again), not the 4096 of a bulk transfer (memory flat on bulk captures)."""
    from tcptune.core.trace import SENT_AFTER_DONE, Tracer

    segs = [seg(0, "c", SYN, 10), seg(0.1, "s", SYN | ACK, 50, 11), seg(0.2, "c", ACK, 11, 51)]
    segs += [seg(0.3 + i / 1000, "c", ACK, 11 + 100 * i, 51, length=100) for i in range(500)]
    end = 11 + 100 * 500
    segs += [seg(1.0, "c", FIN | ACK, end, 51), seg(1.1, "s", FIN | ACK, 51, end + 1), seg(1.2, "c", ACK, end + 1, 52)]
    tracer = Tracer(keep=False, forget=True)
    for s in segs:
        tracer.feed(s)
    (tr,) = tracer.trackers.values()
    assert tr.retired and len(tr.client.sent) == SENT_AFTER_DONE
    (again,) = tracer.feed(seg(1.5, "s", FIN | ACK, 51, end + 1))  # the server's FIN resent
    assert again[1].retransmission == 1


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("SYN-ACK J+1:09() .,\t\u00e9\u3000"), min_size=1, max_size=60), st.integers(8, 60)
)
def test_the_lane_wrap_is_textwrap_for_any_spacing(text, width):
    import textwrap

    from tcptune.render.trace import _wrap

    assert _wrap(text, width) == textwrap.wrap(text, width)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_a_json_word_is_what_the_encoder_makes(text):
    from tcptune.render.trace import _json_word

    assert _json_word(text, json.dumps) == json.dumps(text)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([ACK, ACK | RST, ACK | FIN, SYN, SYN | ACK, 0]),
    st.booleans(),
    st.integers(0, (1 << 32) - 1),
    st.integers(-(1 << 32), (1 << 32) - 1),
    st.integers(0, 65535),
)
def test_the_data_labels_made_in_line_are_the_label_function_s(flags, from_client, seq_off, ack_key, length):
    from tcptune.core.trace import ESTABLISHED, _label, _shape

    label = _shape(flags, from_client, seq_off, ack_key, length, ESTABLISHED, ESTABLISHED, False)[0]
    assert label == _label(flags, from_client, seq_off, ack_key, length)
