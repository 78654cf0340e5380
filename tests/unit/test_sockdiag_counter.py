"""DumpCounter: per-state counts of sock_diag dump buffers whose messages have mixed lengths.

The buffers here are built the way the kernel builds them (include/uapi/linux/netlink.h
struct nlmsghdr + include/uapi/linux/inet_diag.h struct inet_diag_msg + attributes):
full sockets (124 bytes with attributes), TIME_WAIT socks (88) and request socks
(96) interleaved as in an established-hash walk.  The live kernel side is covered
by tests/netns/test_states_netns.py, which compares the counts with `ss`.
"""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.core.inet_diag import (
    NLM_F_DUMP_INTR,
    NLM_F_MULTI,
    SOCK_DIAG_BY_FAMILY,
    TCPDIAG_GETSOCK,
    DiagTable,
    DumpCounter,
)
from tcptune.errors import TcptuneError

SEQ, PORTID = 0x2345_6789, 4242
STATES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11]  # all but LISTEN, which has its own dump


def msg(
    state: int,
    length: int = 124,
    *,
    sport: int = 80,
    rtype: int = TCPDIAG_GETSOCK,
    seq: int = SEQ,
    flags: int = NLM_F_MULTI,
    family: int = 2,
    body: bytes = b"",
) -> bytes:
    hdr = struct.pack("=IHHII", length, rtype, flags, seq, PORTID)
    diag = struct.pack("=BBBB", family, state, 0, 0) + struct.pack(">HH", sport, 40000)
    rest = length - len(hdr) - len(diag)
    payload = (body + bytes(rest))[:rest]
    return hdr + diag + payload


class Spy(DumpCounter):
    """Counts the buffers that missed the fast path (the regex framing) and were parsed one by one."""

    exact_buffers = 0

    def _exact(self, buf, end):
        self.exact_buffers += 1
        return super()._exact(buf, end)


def count(buffers, rtype=TCPDIAG_GETSOCK):
    c = Spy(rtype, SEQ, PORTID)
    for b in buffers:
        c.feed(bytearray(b), len(b))
    table = DiagTable()
    c.finish(table)
    return table, c


def test_mixed_lengths_counted_in_one_pass_with_pending_request_ports():
    rng = random.Random(7)
    truth, ports, buf = Counter(), Counter(), b""
    for _ in range(300):
        state = rng.choice(STATES)
        length = {6: 88, 3: 96}.get(state, 124)  # TIME_WAIT and request socks are short
        port = rng.choice([80, 443, 8080])
        buf += msg(state, length, sport=port)
        truth[state] += 1
        if state == 3:
            ports[port] += 1
    table, c = count([buf])
    assert dict(table.counts) == dict(truth)
    assert dict(table.syn_recv_by_port) == dict(ports)
    assert c.exact_buffers == 0 and not table.interrupted


def test_new_syn_recv_folds_into_syn_recv():
    table, _ = count([msg(12, 96, sport=22) + msg(3, 96, sport=22) + msg(1)])
    assert dict(table.counts) == {3: 2, 1: 1}
    assert dict(table.syn_recv_by_port) == {22: 2}


def test_dump_interrupted_flag_is_seen_and_its_message_still_counted():
    table, c = count([msg(1) + msg(6, 88, flags=NLM_F_MULTI | NLM_F_DUMP_INTR) + msg(1)])
    assert dict(table.counts) == {1: 2, 6: 1} and table.interrupted and c.exact_buffers == 0


def test_header_bytes_inside_a_body_with_another_sequence_number_are_not_counted():
    # An IPv6 peer address chosen to look like a header: without our random
    # sequence number it matches nothing.
    forged = struct.pack("=HHII", TCPDIAG_GETSOCK, NLM_F_MULTI, SEQ ^ 1, PORTID) + b"\x0a\x01"
    table, c = count([msg(1, body=b"\0" * 24 + forged) + msg(8)])
    assert dict(table.counts) == {1: 1, 8: 1} and c.exact_buffers == 0


def test_a_buffer_that_does_not_frame_is_parsed_message_by_message():
    # The first message is not one of ours (another type): the pattern framing
    # fails, and the exact parse counts what is ours.
    foreign = struct.pack("=IHHII", 20, 0x1, 0, SEQ, PORTID) + bytes(4)  # NLMSG_NOOP
    table, c = count([foreign + msg(1) + msg(3, 96, sport=25)])
    assert c.exact_buffers == 1
    assert dict(table.counts) == {1: 1, 3: 1} and dict(table.syn_recv_by_port) == {25: 1}


def test_per_family_reply_type_is_matched_too():
    table, c = count(
        [msg(1, rtype=SOCK_DIAG_BY_FAMILY) + msg(8, rtype=SOCK_DIAG_BY_FAMILY, family=10)], rtype=SOCK_DIAG_BY_FAMILY
    )
    assert dict(table.counts) == {1: 1, 8: 1} and c.exact_buffers == 0


def test_truncated_buffer_is_a_clear_error_not_a_wrong_count():
    buf = msg(1) + msg(8)[:60]
    with pytest.raises(TcptuneError, match="message length"):
        count([buf])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(STATES + [12]),
            st.integers(22, 64).map(lambda w: 4 * w),
            st.integers(0, 65535),
            st.binary(max_size=40),
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 4),
)
def test_any_mix_of_lengths_and_bodies_counts_exactly(messages, pieces):
    truth, ports, msgs = Counter(), Counter(), []
    for state, length, port, body in messages:
        msgs.append(msg(state, length, sport=port, body=body))
        s = 3 if state == 12 else state
        truth[s] += 1
        if s == 3:
            ports[port] += 1
    # Split into buffers at message boundaries, as the kernel fills skbs.
    k = max(1, len(msgs) // pieces)
    buffers = [b"".join(msgs[i : i + k]) for i in range(0, len(msgs), k)]
    table, c = count(buffers)
    assert dict(table.counts) == dict(truth)
    assert dict(table.syn_recv_by_port) == dict(ports)
    assert c.exact_buffers == 0


def dest_msg(state: int, length: int, sport: int, src: bytes, dst: bytes, dport: int, family: int = 2) -> bytes:
    hdr = struct.pack("=IHHII", length, TCPDIAG_GETSOCK, NLM_F_MULTI, SEQ, PORTID)
    diag = struct.pack("=BBBB", family, state, 0, 0) + struct.pack(">HH", sport, dport)
    diag += src.ljust(16, b"\0") + dst.ljust(16, b"\0")
    return hdr + diag + bytes(length - len(hdr) - len(diag))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 65535).flatmap(lambda lo: st.tuples(st.just(lo), st.integers(lo, 65535))),
    st.lists(
        st.tuples(
            st.sampled_from(STATES),
            st.integers(1, 65535),
            st.sampled_from([b"\x0a\0\0\x01", b"\x7f\0\0\x01"]),
            st.sampled_from([b"\x0a\0\0\x09", b"\xc0\xa8\0\x01"]),
            st.sampled_from([80, 443, 5000]),
        ),
        max_size=200,
    ),
    st.frozensets(st.integers(1, 65535), max_size=12),
)
def test_the_dest_view_counts_exactly_the_sockets_whose_local_port_is_in_range(port_range, socks, listening):
    """Against the per-socket truth: the translate/big-integer selection has no off-by-one at either end,
    and no socket on a listener's port counts (connect() never picks a port bind() holds)."""
    import socket

    lo, hi = port_range
    socks = socks + [(1, lo, b"\x0a\0\0\x01", b"\x0a\0\0\x09", 80), (1, hi, b"\x0a\0\0\x01", b"\x0a\0\0\x09", 80)]
    socks += [(1, p, b"\x0a\0\0\x01", b"\x0a\0\0\x09", 80) for p in (lo - 1, hi + 1) if 0 < p < 65536]
    socks += [(1, p, b"\x7f\0\0\x01", b"\x0a\0\0\x09", 443) for p in listening]  # accepted on a listener's port
    truth, syn_sent = Counter(), Counter()
    buf = b""
    for state, sport, src, dst, dport in socks:
        buf += dest_msg(state, {6: 88, 3: 96}.get(state, 124), sport, src, dst, dport)
        if lo <= sport <= hi and sport not in listening:
            truth[(socket.inet_ntoa(src), socket.inet_ntoa(dst), dport)] += 1
        if state == 2:  # SYN_SENT, whatever its port
            syn_sent[(socket.inet_ntoa(src), socket.inet_ntoa(dst), dport)] += 1
    c = DumpCounter(TCPDIAG_GETSOCK, SEQ, PORTID, "dest", port_range=port_range, exclude_ports=listening)
    c.feed(bytearray(buf), len(buf))
    table = DiagTable()
    c.finish(table)
    assert table.destinations == truth
    assert table.syn_sent_destinations == syn_sent


def test_the_dest_view_names_v4_mapped_ipv6_sockets_as_their_ipv4_peer():
    mapped = b"\0" * 10 + b"\xff\xff" + b"\x7f\0\0\x01"
    buf = dest_msg(1, 124, 40001, mapped, mapped, 80, family=10) + dest_msg(
        1, 124, 40002, b"\x7f\0\0\x01", b"\x7f\0\0\x01", 80
    )
    c = DumpCounter(TCPDIAG_GETSOCK, SEQ, PORTID, "dest", port_range=(40000, 40009))
    c.feed(bytearray(buf), len(buf))
    table = DiagTable()
    c.finish(table)
    assert table.destinations == {("127.0.0.1", "127.0.0.1", 80): 2}
    with pytest.raises(ValueError):
        DumpCounter(TCPDIAG_GETSOCK, SEQ, PORTID, "dest")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2, 4]),
            st.sampled_from([0, 1, 65535, 65536, 1 << 24]),
            st.sampled_from([0, 0, 3]),
            st.sampled_from([1, 1, 2, 3, 4, 12]),  # ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, NEW_SYN_RECV
        ),
        max_size=120,
    )
)
def test_the_dest_view_keeps_exactly_the_probing_the_retransmitting_and_the_unread_sockets(socks):
    buf, truth = b"", []
    for i, (timer, rqueue, retrans, state) in enumerate(socks):
        m = bytearray(dest_msg(state, 124, 40000 + i, b"\x0a\0\0\x01", b"\x0a\0\0\x09", 80))
        m[18], m[19] = timer, retrans  # idiag_timer, idiag_retrans
        struct.pack_into("=III", m, 72, rqueue, 7, 0)  # idiag_rqueue, idiag_wqueue, idiag_uid
        struct.pack_into("=I", m, 84, 1000 + i)  # idiag_inode
        buf += bytes(m)
        # a SYN or SYN-ACK retransmitted is the syn-sent and syn-queue checks' business, not this one's
        if timer == 4 or rqueue >= 65536 or (retrans and state in (1, 4)):
            truth.append((40000 + i, timer, rqueue, 1000 + i))
    c = DumpCounter(TCPDIAG_GETSOCK, SEQ, PORTID, "dest", port_range=(40000, 40200))
    c.feed(bytearray(buf), len(buf))
    table = DiagTable()
    c.finish(table)
    assert [(s.local_port, s.timer, s.rqueue, s.inode) for s in table.stalled] == truth
    assert all((s.local, s.peer, s.peer_port, s.wqueue) == ("10.0.0.1", "10.0.0.9", 80, 7) for s in table.stalled)


def test_the_dest_view_keeps_the_busiest_destinations_only():
    """A million sockets can make 10^6 destinations: DEST_KEEP of them are formatted, the busiest."""
    from tcptune.core.inet_diag import DEST_KEEP

    buf = b""
    for peer in range(DEST_KEEP + 40):
        for i in range(1 + peer % 7):
            buf += dest_msg(1, 124, 40000 + i, b"\x0a\0\0\x01", bytes([10, 0, 1, peer]), 80)
    c = DumpCounter(TCPDIAG_GETSOCK, SEQ, PORTID, "dest", port_range=(40000, 40009))
    c.feed(bytearray(buf), len(buf))
    table = DiagTable()
    c.finish(table)
    assert len(table.destinations) == DEST_KEEP
    kept = sorted(table.destinations.values(), reverse=True)
    everyone = sorted((1 + peer % 7 for peer in range(DEST_KEEP + 40)), reverse=True)
    assert kept == everyone[:DEST_KEEP]
