"""`tcptune trace --read FILE`: a capture's TCP connections, annotated segment by segment.

The file is streamed: memory holds the connections' state, not the packets, so a capture of
millions of packets is read in constant memory when printed as text.

A large capture is read by two processes: the connections are split in two halves by their
ports (core/pcap.shard_of), this process traces and renders one, a forked child the other
(each reads the whole file: decoding is a fifth of the work), and the halves' output is merged
back into the capture's order a batch at a time (S_KEY).  The split is the same with one
process (a small file, one CPU, no fork): the output does not depend on which ran.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import compress, tee
from operator import itemgetter
from typing import Any

from tcptune.core.pcap import ReadStats, Segment, half_of, read_batches
from tcptune.core.trace import (
    Annotated,
    Connection,
    annotate_batches,
    connection_ends,
    finished_batches,
    trace_connections,
)
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.forked import END, ForkedStream, spare_cpu
from tcptune.host.spill import SpillFile
from tcptune.host.tree import OwnOffset, open_regular

FORK_MIN_BYTES = 4 << 20  # below this a second process costs more than it saves (fork, pipe: milliseconds)
LEAD_MAX = (
    4 << 20
)  # characters of this half's output that may wait for the other's (a bulk transfer's 10k segments: 1.5 Mi)


@dataclass
class TraceFilter:
    port: int | None = None
    host: str | None = None

    def keeps(self, seg: tuple) -> bool:
        """``seg``: a Segment or a tuple in its field order (t, src, sport, dst, dport, ...)."""
        if self.port is not None and self.port not in (seg[2], seg[4]):
            return False
        return self.host is None or self.host in (seg[1], seg[3])


# What one half's output is made with: given the half's steps (text: core/trace.annotate_batches)
# or steps and finished connections (JSON: core/trace.finished_batches), a batch at a time,
# and where to put text aside (JSON: host/spill.SpillFile), each batch's pieces of output with
# their keys (render/trace.render_step_items: a string per segment, or render_connection_items:
# a list of strings and (offset, bytes) in the spill per connection).
HalfRenderer = Callable[[Iterator, SpillFile | None], Iterable[list[tuple[int, Any]]]]


@dataclass
class TraceRun:
    """The rendered output a batch at a time, in the capture's order (``chunks``: text, a
    string per segment; JSON, the strings of each connection, in the order they are let go (Connection.key), as an
    iterator to write from); then ``stats`` once they are consumed."""

    source: str
    chunks: Iterator[list]
    stats: ReadStats = field(default_factory=ReadStats)


def read_trace(
    path: str, render: HalfRenderer, keep: TraceFilter | None = None, packets: bool = False, absolute: bool = False
) -> TraceRun:
    """Text (``packets`` False): ``render`` gets steps; JSON: connections, each with its
    segments once finished.  Either way memory does not grow with the file."""
    keep = keep or TraceFilter()
    try:
        fd = open_regular(path, "--read")
    except OSError as exc:
        code = ExitCode.PRIVILEGES if isinstance(exc, PermissionError) else ExitCode.BAD_INPUT
        raise TcptuneError(f"--read {path}: {exc.strerror}", code) from None
    stats = ReadStats()

    def batches(stream, counts: ReadStats, shard: int | None) -> Iterator:
        # The cycle collector off while reading: the path makes a few containers per packet
        # (a step, its marks, the segment) and no reference cycles (tests/unit/test_trace.py
        # checks), so its passes every 700 allocations found nothing and took a third of the
        # text view's time.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            chunks = read_batches(stream, path, counts, shard)
            if keep.port is not None or keep.host is not None:
                keeps = keep.keeps
                if shard is None:
                    chunks = ([s for s in batch if keeps(s)] for batch in chunks)
                else:
                    chunks = _kept_pairs(chunks, keeps)
            yield from chunks
        finally:
            if was_enabled:
                gc.enable()
        if counts.records and not counts.tcp:
            raise TcptuneError(f"{path}: {counts.records} packets, none of them TCP", ExitCode.BAD_INPUT)

    def half(keyed_batches: Iterator[tuple[list, list[int]]], spill: SpillFile | None) -> Iterable[list]:
        core = finished_batches if packets else annotate_batches
        return render(core(keyed_batches, absolute, keyed=True), spill)

    def merge(items: list, more) -> list:
        """One batch: this half's pieces and the other's, in the capture's order."""
        if more is END:
            raise TcptuneError("the two halves of the capture ended apart", ExitCode.INTERNAL)
        if packets:  # a connection held whole is one string; one spilled, its pieces read when written
            items = [(key, p[0] if len(p) == 1 else _pieces(p, spills[0])) for key, p in items]
            more = [(key, p[0] if len(p) == 1 else _pieces(p, spills[1])) for key, p in more]
        if more:
            items += more
            items.sort(key=_KEY)
        return [text for _, text in items]

    # --json: each half's long connections go to a file of its own, made before the fork so
    # that this process can read back what the child put there
    spills = (SpillFile("--read --json"), SpillFile("--read --json")) if packets else (None, None)

    def merged() -> Iterator[list]:
        # read_batches reads 64 KiB at a time itself: no buffering under it
        with os.fdopen(fd, "rb", buffering=0) as stream:
            child = None
            try:
                if os.fstat(fd).st_size >= FORK_MIN_BYTES and spare_cpu() and _opened(spills):
                    child = ForkedStream(lambda: half(batches(OwnOffset(fd), ReadStats(), 1), spills[1]))
                if child is not None and child.running:
                    own = iter(half(batches(stream, stats, 0), spills[0]))
                    ready, wait = child.ready, child.wait
                else:  # both halves here, from one reading of the file, in step
                    ours, theirs = tee(batches(stream, stats, None))
                    own, other = iter(half(_half_of(ours, 0), spills[0])), iter(half(_half_of(theirs, 1), spills[1]))
                    wait = partial(next, other, END)
                    ready = lambda: [wait()]  # noqa: E731
                # This half runs ahead of the other by up to LEAD_MAX characters of its
                # output: on long transfers one after another the work comes to one half at
                # a time, and waiting for the child at every batch made the halves take
                # turns.  The child runs ahead of this one by what its pipe holds.
                mine: deque = deque()  # (batch, its characters)
                theirs_ready: deque = deque()
                size = _json_size if packets else _text_size
                ahead = 0

                def flush() -> Iterator[list]:
                    """The batches this half is ahead by, each with the other's."""
                    while mine:
                        if not theirs_ready:
                            theirs_ready.append(wait())
                        yield merge(mine.popleft()[0], theirs_ready.popleft())

                try:
                    for items in own:
                        mine.append((items, chars := size(items)))
                        ahead += chars
                        if not theirs_ready:
                            theirs_ready.extend(ready())
                        while ahead > LEAD_MAX and not theirs_ready:
                            theirs_ready.append(wait())
                        while mine and theirs_ready:
                            done, chars = mine.popleft()
                            ahead -= chars
                            yield merge(done, theirs_ready.popleft())
                except TcptuneError:
                    # a bad record: what came before it is written first (the other half
                    # stopped at the same record, after sending its batches before it)
                    with contextlib.suppress(TcptuneError):
                        yield from flush()
                    raise
                yield from flush()
                if theirs_ready or wait() is not END:
                    raise TcptuneError("the two halves of the capture ended apart", ExitCode.INTERNAL)
            finally:
                if child is not None:
                    child.close()
                for spill in spills:
                    if spill is not None:
                        spill.close()

    return TraceRun(path, merged(), stats)


_KEY = itemgetter(0)


def _text_size(items: list[tuple[int, str]]) -> int:
    return sum(len(text) for _, text in items)


def _json_size(items: list[tuple[int, list]]) -> int:
    """Characters of the connections' texts, those spilled counted as their bytes on disk."""
    return sum(len(p) if isinstance(p, str) else p[1] for _, pieces in items for p in pieces)


def _opened(spills: tuple[SpillFile | None, ...]) -> bool:
    """Both halves' spill files made before a fork (so both processes have them).  When that
    fails the halves run here instead, and a spill is made only if one is needed (so a
    capture of short connections reads with no room in $TMPDIR)."""
    try:
        for spill in spills:
            if spill is not None:
                spill.open()
    except TcptuneError:
        return False
    return True


def _pieces(pieces: list, spill: SpillFile) -> Iterator[str]:
    """A connection's text from its pieces: strings, or (offset, bytes) in its half's spill,
    read when written (one piece in memory at a time)."""
    for piece in pieces:
        yield piece if isinstance(piece, str) else spill.read(*piece)


def _kept_pairs(pairs: Iterable[tuple[list, list[int]]], keeps) -> Iterator[tuple[list, list[int]]]:
    for segs, keys in pairs:
        sel = [keeps(s) for s in segs]
        yield list(compress(segs, sel)), list(compress(keys, sel))


def _half_of(batches: Iterable[list[tuple]], shard: int) -> Iterator[tuple[list, list[int]]]:
    """What read_batches(..., shard) gives, from batches of every segment (kept by the filter or not)."""
    pos = 0
    for batch in batches:
        yield half_of(batch, shard, pos)
        pos += 2 * len(batch)


def scenario_names() -> dict[str, str]:
    """Each scenario and what it shows (trace --scenario list)."""
    from tcptune.probe.scenarios import SCENARIOS

    return {name: sc.shows for name, sc in SCENARIOS.items()}


@dataclass
class ScenarioRun:
    name: str
    connections: list[Connection]
    stats: ReadStats
    notes: list[str] = field(default_factory=list)


def _state_name(number: int | None) -> str:
    from tcptune.kernel.states import state_from_kernel

    state = state_from_kernel(number) if number is not None else None
    return "CLOSED" if state is None else state.name


class KernelStates:
    """Both ends' states of connections as the kernel has them, by sock_diag lookups on the
    4-tuple (host/sockdiag.py).  Only ends whose address is this host's are asked for: a socket
    elsewhere has no state here.  ``None`` when no end is local or sock_diag is unusable."""

    def __init__(self) -> None:
        self._local: dict[str, bool] = {}
        self.usable = True

    def _is_local(self, addr: str) -> bool:
        from tcptune.host.sockdiag import is_local_address

        if addr not in self._local:
            self._local[addr] = is_local_address(addr)
        return self._local[addr]

    def read(self, conns: list[Connection]) -> list[dict[str, str] | None]:
        from tcptune.core.inet_diag import SockDiagUnavailable
        from tcptune.core.trace import connection_ends
        from tcptune.host.sockdiag import lookup_states

        asks: list[tuple[int, str, tuple[str, int, str, int]]] = []
        for i, conn in enumerate(conns):
            (ca, cp), (sa, sp) = connection_ends(conn)
            if self._is_local(ca):
                asks.append((i, "client", (ca, cp, sa, sp)))
            if self._is_local(sa):
                asks.append((i, "server", (sa, sp, ca, cp)))
        out: list[dict[str, str] | None] = [None] * len(conns)
        if not asks or not self.usable:
            return out
        try:
            states = lookup_states([t for _, _, t in asks])
        except SockDiagUnavailable:
            self.usable = False
            return out
        for (i, end, _), number in zip(asks, states, strict=True):
            out[i] = {**(out[i] or {}), end: _state_name(number)}
        return out


@dataclass
class LiveOptions:
    interface: str = "lo"
    absolute: bool = False
    port: int | None = None
    host: str | None = None
    count: int | None = None
    duration: float | None = None
    pcap: str | None = None


class LiveRun:
    """A live capture being traced: ``items()`` yields each annotated segment as it arrives,
    the kernel's states of both ends read after each burst of segments (when no later segment
    had arrived meanwhile), and ends on --count, --duration or Ctrl-C; then ``connections``,
    ``stats`` and ``notes`` are filled."""

    def __init__(self, opts: LiveOptions):
        self.opts = opts
        self.source = f"live on {opts.interface}"
        self.stats = ReadStats()
        self.notes: list[str] = []
        self.connections: list[Connection] = []
        self.interrupted = False

    def items(self) -> Iterator[tuple[Connection, Annotated]]:
        import time

        from tcptune.core.pcap import PcapWriter, decode_frame
        from tcptune.core.trace import Tracer
        from tcptune.probe.capture import LiveCapture

        o = self.opts
        tracer = Tracer(absolute=o.absolute)
        kernel = KernelStates()
        seen: dict[int, Connection] = {}
        writer = out = None
        with LiveCapture(o.interface, o.port, o.host) as cap:
            if o.pcap is not None:
                from tcptune.host.fsio import create_output

                out = create_output(o.pcap, "--pcap")
                writer = PcapWriter(out, cap.linktype)
            try:
                deadline = None if o.duration is None else time.monotonic() + o.duration
                while not cap.interrupted:
                    left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
                    if left <= 0:
                        break
                    ready: list[tuple[Connection, Annotated]] = []
                    touched: dict[int, Connection] = {}
                    for t, frame in cap.burst(left):
                        if o.count is not None and self.stats.tcp >= o.count:
                            break
                        self.stats.records += 1
                        if writer is not None:
                            writer.write(t, frame)
                        seg = decode_frame(cap.linktype, frame, t)
                        if seg is None:
                            self.stats.skipped += 1
                            continue
                        self.stats.tcp += 1
                        for conn, ann in tracer.feed(seg):
                            ready.append((conn, ann))
                        conn = tracer.tracker_of(seg).conn
                        touched[id(conn)] = conn
                        seen.setdefault(id(conn), conn)
                    if touched:
                        conns = list(touched.values())
                        states = kernel.read(conns)
                        if not cap.pending():  # nothing arrived while reading: the states follow the last segment
                            for conn, ks in zip(conns, states, strict=True):
                                if ks is not None:
                                    conn.packets[-1].kernel_states = ks
                    if out is not None:
                        out.flush()
                    yield from ready
                    if o.count is not None and self.stats.tcp >= o.count:
                        break
                self.interrupted = cap.interrupted
            finally:
                if out is not None:
                    out.close()
        yield from tracer.finish()
        self.connections = list(seen.values())
        for conn, ks in zip(self.connections, kernel.read(self.connections), strict=True):
            if ks is not None and len(ks) == 2:
                conn.kernel_states = ks
        if cap.stats is not None and cap.stats.drops:
            self.notes.append(f"the capture lost {cap.stats.drops} frame(s): the trace may miss segments")
        if self.interrupted:
            self.notes.append("interrupted (Ctrl-C): what was captured until then")
        if writer is not None:
            self.notes.append(f"{writer.count} frame(s) written to {o.pcap}")


def live_trace(opts: LiveOptions) -> LiveRun:
    """Check the options (exit 2 on a bad one) before anything is opened."""
    import ipaddress

    if opts.host is not None:
        try:
            ipaddress.ip_address(opts.host)
        except ValueError:
            raise TcptuneError(
                f"--host {opts.host}: not an IPv4 or IPv6 address", ExitCode.BAD_INPUT, hint="e.g. --host 127.0.0.1"
            ) from None
    if opts.count is not None and opts.count < 1:
        raise TcptuneError(f"--count {opts.count}: must be at least 1", ExitCode.BAD_INPUT)
    if opts.duration is not None and not opts.duration > 0:
        raise TcptuneError(f"--duration {opts.duration}: must be more than 0 seconds", ExitCode.BAD_INPUT)
    return LiveRun(opts)


def run_scenario(name: str, absolute: bool = False) -> ScenarioRun:
    """Run a tutorial's experiment in a new private network namespace and trace it.

    This process moves into that namespace for good (it is a one-shot command): the
    sysctls the scenario shortens and every packet stay there.
    """
    from tcptune.core.pcap import LINK_ETHERNET, decode_frame
    from tcptune.host.netns import enter_private_netns
    from tcptune.probe.capture import Capture
    from tcptune.probe.scenarios import SCENARIOS
    from tcptune.probe.scenarios import run_scenario as play

    if name not in SCENARIOS:
        raise TcptuneError(
            f"--scenario {name}: no such scenario", ExitCode.BAD_INPUT, hint=f"one of {', '.join(SCENARIOS)}, or list"
        )
    enter_private_netns()
    frames, kernel, cap_stats, checkpoints = play(name, Capture)
    stats = ReadStats()
    segments: list[Segment | None] = []
    for t, frame in frames:
        stats.records += 1
        seg = decode_frame(LINK_ETHERNET, frame, t)
        stats.tcp += seg is not None
        segments.append(seg)
    conns = trace_connections((s for s in segments if s is not None), absolute)
    by_segment = {id(a.segment): (c, a) for c in conns for a in c.packets}
    for cp in checkpoints:
        # the states read after the experiment's step belong to the last segment captured by then
        last = next((s for s in reversed(segments[: cp.frames]) if s is not None), None)
        if last is None:
            continue
        conn, ann = by_segment[id(last)]
        (ca, cport), (sa, sport) = connection_ends(conn)
        ann.kernel_states = {
            "client": _state_name(cp.states.get((ca, cport, sa, sport))),
            "server": _state_name(cp.states.get((sa, sport, ca, cport))),
        }
    for c in conns:
        (caddr, cport), (saddr, sport) = connection_ends(c)
        c.kernel_states = {
            "client": _state_name(kernel.get((caddr, cport, saddr, sport))),
            "server": _state_name(kernel.get((saddr, sport, caddr, cport))),
        }
    notes = []
    if cap_stats is not None and cap_stats.drops:
        notes.append(f"the capture lost {cap_stats.drops} frame(s): the trace may miss segments")
    return ScenarioRun(name, conns, stats, notes)
