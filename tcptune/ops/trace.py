"""`tcptune trace --read FILE`: a capture's TCP connections, annotated segment by segment.

The file is streamed: memory holds the connections' state, not the packets, so a capture of
millions of packets is read in constant memory when printed as text.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from tcptune.core.pcap import ReadStats, Segment, read_segments
from tcptune.core.trace import Annotated, Connection, annotate, trace_connections
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.tree import open_regular


@dataclass
class TraceFilter:
    port: int | None = None
    host: str | None = None

    def keeps(self, seg: Segment) -> bool:
        if self.port is not None and self.port not in (seg.sport, seg.dport):
            return False
        return self.host is None or self.host in (seg.src, seg.dst)


@dataclass
class TraceRun:
    """The annotated segments as they come (``items``), then ``stats`` once they are consumed."""

    source: str
    items: Iterator[tuple[Connection, Annotated]]
    stats: ReadStats = field(default_factory=ReadStats)


def read_trace(path: str, keep: TraceFilter | None = None) -> TraceRun:
    keep = keep or TraceFilter()
    try:
        fd = open_regular(path, "--read")
    except OSError as exc:
        code = ExitCode.PRIVILEGES if isinstance(exc, PermissionError) else ExitCode.BAD_INPUT
        raise TcptuneError(f"--read {path}: {exc.strerror}", code) from None
    stats = ReadStats()

    def items() -> Iterator[tuple[Connection, Annotated]]:
        with os.fdopen(fd, "rb", buffering=1 << 20) as stream:
            yield from annotate(s for s in read_segments(stream, path, stats) if keep.keeps(s))
        if stats.records and not stats.tcp:
            raise TcptuneError(f"{path}: {stats.records} packets, none of them TCP", ExitCode.BAD_INPUT)

    return TraceRun(path, items(), stats)


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


def run_scenario(name: str) -> ScenarioRun:
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
    frames, kernel, cap_stats = play(name, Capture)
    stats = ReadStats()
    segments = []
    for t, frame in frames:
        stats.records += 1
        seg = decode_frame(LINK_ETHERNET, frame, t)
        if seg is not None:
            stats.tcp += 1
            segments.append(seg)
    conns = trace_connections(segments)
    for c in conns:
        (caddr, cport), (saddr, sport) = (_split(c.client), _split(c.server))
        c.kernel_states = {
            "client": _state_name(kernel.get((caddr, cport, saddr, sport))),
            "server": _state_name(kernel.get((saddr, sport, caddr, cport))),
        }
    notes = []
    if cap_stats is not None and cap_stats.drops:
        notes.append(f"the capture lost {cap_stats.drops} frame(s): the trace may miss segments")
    return ScenarioRun(name, conns, stats, notes)


def _split(endpoint: str) -> tuple[str, int]:
    addr, _, port = endpoint.rpartition(":")
    return addr.strip("[]"), int(port)
