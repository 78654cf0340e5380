"""Recorded sock_diag dumps replayed through the decoders, and the decoders fed what the kernel never sends.

tests/data/inet_diag/<case>.bin holds the buffers a kernel sent for one dump request, as
received (tests/data/inet_diag/SOURCE.md says how they were made); <case>.json the request
and what `ss` saw at the same moment.  Replaying them needs no privileges and no namespace,
so the decoders are checked against real kernel bytes on every run, as `ss -F` does with a
dump file.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcptune.core.inet_diag import (
    LISTEN_MASK,
    NLMSG_DONE,
    DiagTable,
    DumpCounter,
    SockDiagUnavailable,
    consume,
    reply_type,
)
from tcptune.errors import TcptuneError
from tcptune.kernel.states import TcpState

DATA = Path(__file__).resolve().parents[1] / "data" / "inet_diag"
CASES = sorted(p.stem for p in DATA.glob("*.bin"))
VIEWS = (None, "local-port", "peer", "process")


def load(case: str) -> tuple[dict, list[bytes]]:
    meta = json.loads((DATA / f"{case}.json").read_text())
    raw = (DATA / f"{case}.bin").read_bytes()
    buffers, off = [], 0
    while off < len(raw):
        (n,) = struct.unpack_from("<I", raw, off)
        buffers.append(raw[off + 4 : off + 4 + n])
        off += 4 + n
    if meta["byteorder"] != sys.byteorder:
        pytest.skip(f"{case} was recorded on a {meta['byteorder']}-endian machine")
    return meta, buffers


def replay(meta: dict, buffers, by=None) -> DiagTable:
    counter = DumpCounter(
        reply_type(meta["family"]), meta["seq"], meta["portid"], by, listeners=meta["states_mask"] == LISTEN_MASK
    )
    consume([(bytearray(b), len(b)) for b in buffers], counter, meta["family"])
    table = DiagTable()
    counter.finish(table)
    return table


def test_there_are_recordings():
    assert {"unspec-listen", "unspec-rest", "inet-all", "inet6-all"} <= set(CASES)
    assert (DATA / "SOURCE.md").exists()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("by", VIEWS)
def test_replay_matches_what_ss_saw(case, by):
    meta, buffers = load(case)
    want = meta["expected"]
    table = replay(meta, buffers, by)
    assert {s.name: n for s, n in table.counts.items()} == want["counts"]
    if by == "local-port":
        assert sorted([TcpState(s).name, p, n] for (s, p), n in table.groups.items()) == want["local_port"]
    elif by == "peer":
        assert sorted([TcpState(s).name, a, n] for (s, a), n in table.groups.items()) == want["peer"]
    elif by == "process":
        assert sorted(table.sock_inodes) == want["inodes"]
        assert len(table.sock_states) == len(table.sock_inodes)
    if meta["states_mask"] == LISTEN_MASK:
        got = sorted([x.address, x.port, x.accept_queue, x.backlog, x.inode] for x in table.listeners)
        assert got == want["listeners"]
    assert not table.interrupted


def test_recordings_hold_every_state_and_several_message_lengths():
    meta, buffers = load("unspec-rest")
    assert set(meta["expected"]["counts"]) >= {"ESTABLISHED", "SYN_SENT", "SYN_RECV", "TIME_WAIT", "CLOSE_WAIT"}
    lengths = set()
    for b in buffers:
        off = 0
        while off + 16 <= len(b):
            n = struct.unpack_from("=I", b, off)[0]
            lengths.add(n)
            off += n
    assert len(lengths) >= 3  # full sockets, request socks, TIME_WAIT socks (+ NLMSG_DONE)


# -- what the kernel never sends (issue 9 #18) ------------------------------------------


def _counter(by=None):
    return DumpCounter(reply_type(0), 7, 42, by)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 15, 16, 19])
def test_a_reply_shorter_than_any_message_is_an_error(n):
    buf = bytearray(struct.pack("=IHHII", 16, 18, 2, 7, 42) + bytes(8))[:n]
    with pytest.raises(TcptuneError, match=f"a reply of {n} bytes"):
        consume([(buf, n)], _counter(), 0)


@pytest.mark.parametrize("end", range(0, 16))
def test_feed_on_a_few_bytes_is_an_error_not_a_struct_error(end):
    c = _counter()
    buf = bytearray(struct.pack("=IHHII", 88, 18, 2, 7, 42))[:end]
    if end == 0:
        c.feed(buf, end)  # nothing to count
        return
    with pytest.raises(TcptuneError, match="never sends"):
        c.feed(buf, end)


def test_a_dump_without_done_is_an_error():
    meta, buffers = load("unspec-rest")
    counter = DumpCounter(reply_type(meta["family"]), meta["seq"], meta["portid"])
    cut = bytearray(buffers[-1])
    done = struct.pack("=IH", 20, NLMSG_DONE)
    assert cut[-20:-14] == done
    del cut[-20:]  # the last buffer without its NLMSG_DONE
    with pytest.raises(TcptuneError, match="without NLMSG_DONE"):
        consume([(bytearray(b), len(b)) for b in buffers[:-1]] + ([(cut, len(cut))] if cut else []), counter, 0)


def test_short_first_reply_on_a_real_socket_returns_within_a_second():
    # _count_dump used to wait forever for the rest of a 16-19 byte reply: the reader thread
    # stopped, the consumer asked for more.  A datagram socket pair stands in for netlink.
    from tcptune.host.sockdiag import received

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        counter = _counter()
        b.send(struct.pack("=IHHII", 16, 18, 2, 7, 42) + b"\0\0")  # 18 bytes, neither DONE nor ERROR
        done = []

        def run():
            try:
                consume(received(a, counter.tail), counter, 0)
            except TcptuneError as exc:
                done.append(str(exc))

        t = threading.Thread(target=run, daemon=True)
        t0 = time.monotonic()
        t.start()
        t.join(5)
        assert done and "a reply of 18 bytes" in done[0] and time.monotonic() - t0 < 1.5


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_recordings_never_crash(data):
    case = data.draw(st.sampled_from(CASES))
    meta, buffers = load(case)
    buffers = [bytearray(b) for b in buffers]
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buffers) - 1))
        b = buffers[i]
        kind = data.draw(st.sampled_from(["flip", "cut", "splice", "drop"]))
        if kind == "flip" and b:
            j = data.draw(st.integers(0, len(b) - 1))
            b[j] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del b[data.draw(st.integers(0, len(b))) :]
        elif kind == "splice":
            j = data.draw(st.integers(0, len(b)))
            b[j:j] = data.draw(st.binary(max_size=64))
        elif kind == "drop" and len(buffers) > 1:
            del buffers[i]
    by = data.draw(st.sampled_from(VIEWS))
    try:
        table = replay(meta, buffers, by)
    except (TcptuneError, SockDiagUnavailable):
        return
    assert sum(table.counts.values()) >= 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4), st.sampled_from(VIEWS), st.booleans())
def test_random_buffers_never_crash(blobs, by, listeners):
    counter = DumpCounter(reply_type(0), 7, 42, by, listeners=listeners)
    try:
        consume([(bytearray(b), len(b)) for b in blobs], counter, 0)
    except (TcptuneError, SockDiagUnavailable):
        return
    counter.finish(DiagTable())


def test_counts_are_kept_per_state_byte_not_per_message():
    # The same recording read as one buffer per message is still the same table.
    meta, buffers = load("inet-all")
    whole = replay(meta, buffers)
    pieces = []
    for b in buffers:
        off = 0
        while off + 16 <= len(b):
            n = struct.unpack_from("=I", b, off)[0]
            pieces.append(b[off : off + n])
            off += n
    assert Counter(whole.counts) == Counter(replay(meta, pieces).counts)
