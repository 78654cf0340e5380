"""A large `trace --read` runs in two processes, each tracing half of the connections
(ops/trace.py): what they write together is what the two halves write in one process, byte
for byte, and what one tracer writes while no half has more than KEEP_DONE finished
connections to follow (past that each half lets its own go: the JSON's order and which late
segment still joins its connection are the halves')."""

from __future__ import annotations

import ipaddress
import os
import random
import struct
from pathlib import Path

import pytest
from clirunner import run_cli

from tcptune.core.pcap import ACK, FIN, PSH, RST, SYN, PcapWriter, ReadStats, read_batches, shard_of
from tcptune.core.trace import annotate_batches, finished_batches
from tcptune.errors import TcptuneError
from tcptune.host import forked
from tcptune.ops import trace as ops_trace
from tcptune.render.output import Output
from tcptune.render.trace import (
    render_connection_items,
    render_json_document,
    render_step_items,
)

DATA = Path(__file__).resolve().parents[1] / "data/pcap"


def _frame(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int, length: int) -> bytes:
    """Ethernet, then IPv4 (the decoder's fast path) or IPv6 (its general one)."""
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq % (1 << 32), ack % (1 << 32), 5 << 4, flags, 1000, 0, 0)
    if ":" in src:
        addrs = ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
        ip = struct.pack(">IHBB32s", 6 << 28, 20 + length, 6, 64, addrs)
        return b"\0" * 12 + b"\x86\xdd" + ip + tcp + bytes(length)
    addrs = bytes(map(int, src.split("."))) + bytes(map(int, dst.split(".")))
    ip = struct.pack(">BBHHHBBH8s", 0x45, 0, 40 + length, 0, 0x4000, 64, 6, 0, addrs)
    return b"\0" * 12 + b"\x08\x00" + ip + tcp + bytes(length)


def _busy_capture(path: Path, connections: int, seed: int = 7) -> None:
    """Connections that overlap, on 4-tuples used again, some refused, some resent, some
    never answered or cut off by the capture's end: every way a step is emitted late."""
    rnd = random.Random(seed)
    t, live = 0.0, []
    with open(path, "wb") as fh:
        w = PcapWriter(fh)
        for i in range(connections):
            v6 = rnd.random() < 0.2
            cl = ("fd00::1" if v6 else "10.0.0.1", 32768 + 2 * rnd.randrange(400))  # even ports, as Linux's connect()
            sv = ("fd00::2" if v6 else "10.0.0.2", rnd.choice((80, 443)))
            j, k = rnd.randrange(1 << 32), rnd.randrange(1 << 32)
            kind = rnd.random()
            if kind < 0.1:
                script = [(cl, sv, SYN, j, 0, 0), (sv, cl, RST | ACK, 0, j + 1, 0)]
            elif kind < 0.15:
                script = [(cl, sv, SYN, j, 0, 0), (cl, sv, SYN, j, 0, 0)]
            else:
                n = rnd.randrange(1, 4)
                script = [(cl, sv, SYN, j, 0, 0), (sv, cl, SYN | ACK, k, j + 1, 0), (cl, sv, ACK, j + 1, k + 1, 0)]
                script += [(cl, sv, PSH | ACK, j + 1 + 100 * m, k + 1, 100) for m in range(n)]
                if rnd.random() < 0.2:
                    script.append(script[-1])  # resent
                end = j + 1 + 100 * n
                script += [
                    (sv, cl, ACK, k + 1, end, 0),
                    (cl, sv, FIN | ACK, end, k + 1, 0),
                    (sv, cl, FIN | ACK, k + 1, end + 1, 0),
                    (cl, sv, ACK, end + 1, k + 2, 0),
                ]
            live.append(script)
            # interleave: write a few segments of the open connections
            while len(live) > 5 or (i == connections - 1 and live):
                s = rnd.choice(live)
                (src, sport), (dst, dport), flags, seq, ack, length = s.pop(0)
                t += 0.0001
                w.write(t, _frame(src, dst, sport, dport, flags, seq, ack, length))
                if not s or (i == connections - 1 and rnd.random() < 0.01):
                    live.remove(s)  # (some are cut off by the end of the capture)


def _one_process(path: Path, json_out: bool, absolute: bool = False) -> str:
    """The output of the unsplit path: one tracer over the whole capture (the same as the
    halves' while fewer than KEEP_DONE connections finish in a half while others are followed)."""
    with open(path, "rb") as fh:
        batches = read_batches(fh, str(path), stats := ReadStats())
        if json_out:
            items = render_connection_items(finished_batches(batches, absolute), absolute)
            return "".join(render_json_document((t for got in items for _, t in got), str(path), stats, absolute))
        items = render_step_items(annotate_batches(batches, absolute), Output(width=80), absolute)
        return "".join(text for got in items for _, text in got)


def _read(path: Path, json_out: bool, absolute: bool = False) -> str:
    out = Output(width=80)
    if json_out:
        run = ops_trace.read_trace(
            str(path), lambda got, spill: render_connection_items(got, absolute, spill), packets=True, absolute=absolute
        )
        pieces = (c for chunk in run.chunks for c in chunk)
        return "".join(render_json_document(pieces, run.source, run.stats, absolute))
    run = ops_trace.read_trace(str(path), lambda s, _: render_step_items(s, out, absolute), absolute=absolute)
    return "".join("".join(chunk) for chunk in run.chunks)


@pytest.fixture
def forks(monkeypatch):
    """Every file is read by two processes; the list holds the children started."""
    started = []
    real = forked.ForkedStream

    def counted(work):
        child = real(work)
        started.append(child.pid)
        return child

    monkeypatch.setattr(ops_trace, "FORK_MIN_BYTES", 0)
    monkeypatch.setattr(ops_trace, "spare_cpu", lambda: True)
    monkeypatch.setattr(ops_trace, "ForkedStream", counted)
    return started


@pytest.mark.parametrize("json_out", [False, True])
@pytest.mark.parametrize("absolute", [False, True])
@pytest.mark.parametrize("lead", [0, 1000, 4 << 20])
def test_two_processes_write_what_one_tracer_writes(tmp_path, forks, monkeypatch, json_out, absolute, lead):
    """However far this half may run ahead of the child's (LEAD_MAX characters)."""
    monkeypatch.setattr(ops_trace, "LEAD_MAX", lead)
    path = tmp_path / "busy.pcap"
    _busy_capture(path, 600)
    assert _read(path, json_out, absolute) == _one_process(path, json_out, absolute)
    assert len(forks) == 1 and forks[0] is not None


@pytest.mark.parametrize("json_out", [False, True])
def test_a_port_filter_read_in_two_processes_as_in_one(tmp_path, forks, json_out):
    path = tmp_path / "busy.pcap"
    _busy_capture(path, 600, seed=9)
    keep = ops_trace.TraceFilter(port=443)
    out = Output(width=80)
    if json_out:
        run = ops_trace.read_trace(str(path), lambda got, spill: render_connection_items(got, False, spill), keep, True)
        got = "".join(render_json_document((c for chunk in run.chunks for c in chunk), run.source, run.stats))
    else:
        run = ops_trace.read_trace(str(path), lambda s, _: render_step_items(s, out), keep)
        got = "".join("".join(chunk) for chunk in run.chunks)
    with open(path, "rb") as fh:
        stats = ReadStats()
        batches = ([s for s in b if keep.keeps(s)] for b in read_batches(fh, str(path), stats))
        if json_out:
            items = render_connection_items(finished_batches(batches))
            want = "".join(render_json_document((t for g in items for _, t in g), str(path), stats))
        else:
            want = "".join(t for g in render_step_items(annotate_batches(batches), out) for _, t in g)
    assert got == want and ":443" in got and ":80 " not in got and "fd00::" in got
    assert len(forks) == 1


@pytest.mark.parametrize("path", sorted(DATA.glob("*.pcap*")), ids=lambda p: p.name)
@pytest.mark.parametrize("json_out", [False, True])
def test_the_captures_read_in_two_processes_as_in_one(path, forks, json_out):
    assert _read(path, json_out) == _one_process(path, json_out)


@pytest.mark.parametrize("json_out", [False, True])
def test_one_cpu_gives_the_same_output_without_a_child(tmp_path, monkeypatch, json_out):
    path = tmp_path / "busy.pcap"
    _busy_capture(path, 300, seed=11)
    monkeypatch.setattr(ops_trace, "FORK_MIN_BYTES", 0)
    monkeypatch.setattr(ops_trace, "spare_cpu", lambda: False)
    monkeypatch.setattr(ops_trace, "ForkedStream", None)  # would raise if called
    assert _read(path, json_out) == _one_process(path, json_out)


@pytest.mark.parametrize("lead", [0, 4 << 20])
def test_a_truncated_capture_read_in_two_processes_gives_the_segments_then_the_error(
    tmp_path, forks, monkeypatch, lead
):
    monkeypatch.setattr(ops_trace, "LEAD_MAX", lead)
    path = tmp_path / "cut.pcap"
    _busy_capture(path, 200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])
    out = Output(width=80)
    run = ops_trace.read_trace(str(path), lambda s, _: render_step_items(s, out))
    seen = []
    with pytest.raises(TcptuneError, match="truncated") as err:
        for chunk in run.chunks:
            seen.append("".join(chunk))
    assert err.value.exit_code == 2
    with pytest.raises(TcptuneError):
        _one_process(path, False)
    assert "".join(seen).count("\nconnection ") > 150


def test_a_linux_clients_even_ports_fall_into_both_halves():
    for server in (80, 443, 8888):
        halves = [shard_of(port, server) for port in range(32768, 61000, 2)]
        assert 0.45 < sum(halves) / len(halves) < 0.55
        assert all(shard_of(port, server) == shard_of(server, port) for port in range(1024, 1100))


def test_a_helper_that_fails_is_an_internal_error_not_a_short_output():
    def work():
        yield [1]
        raise RuntimeError("boom")

    child = forked.ForkedStream(work)
    assert child.wait() == [1]
    with pytest.raises(TcptuneError) as err:
        child.wait()
    assert err.value.exit_code == 70
    assert child.pid is None


def test_a_helper_not_read_to_its_end_is_stopped_and_reaped():
    def work():
        while True:
            yield ["x" * 1000]

    child = forked.ForkedStream(work)
    pid = child.pid
    assert child.wait() == ["x" * 1000]
    child.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no longer our child


@pytest.mark.parametrize("json_out", [False, True])
def test_the_cli_reads_a_large_capture_as_the_halves_do_in_one_process(tmp_path, monkeypatch, json_out):
    """7000 connections on 1600 4-tuples: each half lets finished ones go (KEEP_DONE)."""
    path = tmp_path / "large.pcap"
    _busy_capture(path, 7000, seed=3)
    assert path.stat().st_size >= ops_trace.FORK_MIN_BYTES
    r = run_cli("trace", "--read", str(path), *(["--json"] if json_out else []), env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    monkeypatch.setattr(ops_trace, "spare_cpu", lambda: False)
    monkeypatch.setattr(ops_trace, "ForkedStream", None)  # would raise if called
    if json_out:
        assert r.stdout == _read(path, True)
    else:
        assert r.stdout.startswith(_read(path, False)) and "TCP segments of" in r.stdout


def _bulk_capture(path: Path, transfers: int, segments: int) -> None:
    """Long connections side by side: what --json would hold whole."""
    with open(path, "wb") as fh:
        w = PcapWriter(fh)
        t = 0.0
        for i in range(transfers):
            cl, sv = ("10.0.0.1", 40000 + i), ("10.0.0.2", 443)
            script = [(cl, sv, SYN, 0, 0, 0), (sv, cl, SYN | ACK, 0, 1, 0), (cl, sv, ACK, 1, 1, 0)]
            script += [(cl, sv, PSH | ACK, 1 + 100 * m, 1, 100) for m in range(segments)]
            end = 1 + 100 * segments
            script += [(cl, sv, FIN | ACK, end, 1, 0), (sv, cl, FIN | ACK, 1, end + 1, 0), (cl, sv, ACK, end + 1, 2, 0)]
            for (src, sport), (dst, dport), flags, seq, ack, length in script:
                t += 0.0001
                w.write(t, _frame(src, dst, sport, dport, flags, seq, ack, length))


def test_long_connections_spill_and_read_back_as_they_were(tmp_path, forks, monkeypatch):
    from tcptune.host.spill import SpillFile
    from tcptune.render import trace as render_trace

    path = tmp_path / "bulk.pcap"
    _bulk_capture(path, 6, 3000)
    monkeypatch.setattr(render_trace, "HOLD_MAX", 50_000)  # (the child is forked with it too)
    puts = []
    real_put = SpillFile.put

    def put(self, text):
        puts.append(len(text))
        return real_put(self, text)

    monkeypatch.setattr(SpillFile, "put", put)
    assert _read(path, True) == _one_process(path, True)
    assert len(forks) == 1 and len(puts) > 20  # (this process's puts: the child's are its own)


def test_the_lines_held_stay_under_the_bound(tmp_path):
    from tcptune.host.spill import SpillFile
    from tcptune.render.trace import ConnectionsJson

    path = tmp_path / "bulk.pcap"
    _bulk_capture(path, 4, 2000)
    spill = SpillFile("--read --json")
    writer = ConnectionsJson(spill=spill, hold_max=20_000)
    kept = ConnectionsJson()
    most, texts, same = 0, [], []
    with open(path, "rb") as fh:
        for steps, finished in finished_batches(read_batches(fh, str(path))):
            texts += [p for _, p in writer.batch(steps, finished)]
            same += [p for _, p in kept.batch(steps, finished)]
            most = max(most, writer.size)
    assert most < 20_000 + 200 * 1000  # the bound, and at most a batch's lines above it
    assert max(map(len, kept.held.values()), default=0) == 0
    read = ["".join(p if isinstance(p, str) else spill.read(*p) for p in pieces) for pieces in texts]
    assert read == ["".join(pieces) for pieces in same]
    assert any(not isinstance(p, str) for pieces in texts for p in pieces)
    spill.close()


def test_no_room_for_the_spill_is_one_clear_error(monkeypatch, tmp_path):
    import tempfile

    from tcptune.host.spill import SpillFile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    with pytest.raises(TcptuneError, match="cannot put long connections' packets aside in .*gone") as err:
        SpillFile("--read --json").put("x")
    assert err.value.exit_code == 2 and "TMPDIR" in str(err.value)


def test_no_room_for_a_spill_reads_short_connections_in_one_process(tmp_path, monkeypatch):
    import tempfile

    path = tmp_path / "busy.pcap"
    _busy_capture(path, 300, seed=13)
    monkeypatch.setattr(ops_trace, "FORK_MIN_BYTES", 0)
    monkeypatch.setattr(ops_trace, "spare_cpu", lambda: True)
    monkeypatch.setattr(ops_trace, "ForkedStream", None)  # would raise if called
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    assert _read(path, True) == _one_process(path, True)


def test_ctrl_c_during_a_read_in_two_processes_is_an_interruption_and_leaves_no_child(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "large.pcap"
    _busy_capture(path, 20000, seed=5)

    def as_a_terminal_job():  # its own group, SIGINT not ignored (a suite started in the background would)
        os.setpgrp()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    argv = [sys.executable, "-m", "tcptune", "trace", "--read", str(path), "--json"]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=as_a_terminal_job)
    children, deadline = [], time.monotonic() + 10
    while not children and p.poll() is None and time.monotonic() < deadline:
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as fh:
            children = fh.read().split()
        time.sleep(0.002)
    assert children, "the read ended before its helper could be seen"
    # Ctrl-C reaches the whole foreground group, in no set order: the child first here
    os.kill(int(children[0]), signal.SIGINT)
    time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert b"helper process" not in err
    assert not os.path.exists(f"/proc/{children[0]}")
