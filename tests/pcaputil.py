"""Read a pcap back into the probes' Segment type, decoded exactly as a live capture is.

Only the tests read pcaps (to prove that a --pcap file tells the same story as the live
run), so this lives here and not in the package.
"""

from __future__ import annotations

import os

from tcptune.probe.capture import Segment, segment_of


def read_pcap(path: str | os.PathLike[str]) -> list[Segment]:
    """The TCP segments of a pcap file (a written --pcap or tcpdump -w)."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import rdpcap

    pkts = rdpcap(str(path))
    out = []
    for p in pkts:
        try:
            seg = segment_of(float(p.time), p, IP, TCP)
        except Exception:  # noqa: BLE001 - a malformed packet in the file is skipped, not fatal
            seg = None
        if seg is not None:
            out.append(seg)
    return out
