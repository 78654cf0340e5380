"""Read a pcap back into the probes' Segment type, decoded exactly as a live capture is
(core/pcap.py serves both), to prove that a --pcap file tells the same story as the live run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

from tcptune.core.pcap import ReadStats, Segment, read_batches


def read_segments(stream: BinaryIO, source: str, stats: ReadStats | None = None) -> Iterator[Segment]:
    """Every TCP segment of a capture as a Segment (read_batches hands out plain tuples)."""
    for batch in read_batches(stream, source, stats):
        for fields in batch:
            yield Segment(*fields)


def read_pcap(path: str | os.PathLike[str]) -> list[Segment]:
    """The TCP segments of a pcap file (a written --pcap or tcpdump -w)."""
    with open(path, "rb") as fh:
        return list(read_segments(fh, str(path)))
