"""`tcptune trace --read FILE`: a capture's TCP connections, annotated segment by segment.

The file is streamed: memory holds the connections' state, not the packets, so a capture of
millions of packets is read in constant memory when printed as text.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from tcptune.core.pcap import ReadStats, Segment, read_segments
from tcptune.core.trace import Annotated, Connection, annotate
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
