"""Read a pcap back into the probes' Segment type, decoded exactly as a live capture is
(core/pcap.py serves both), to prove that a --pcap file tells the same story as the live run.
"""

from __future__ import annotations

import os

from tcptune.core.pcap import Segment, read_segments


def read_pcap(path: str | os.PathLike[str]) -> list[Segment]:
    """The TCP segments of a pcap file (a written --pcap or tcpdump -w)."""
    with open(path, "rb") as fh:
        return list(read_segments(fh, str(path)))
