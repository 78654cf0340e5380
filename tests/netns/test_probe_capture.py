"""The capture adapter: kernel-side port filter, decoding, pcap files (incl. malformed input)."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nsutil import run_in_netns

from tcptune.probe import capture as C


def flags(seg: C.Segment) -> str:
    """tcpdump's notation for the flags the probes look at."""
    return "".join(c for c, b in (("S", C.SYN), ("F", C.FIN), ("R", C.RST), (".", C.ACK)) if seg.flags & b)


def _two_servers():
    """Traffic on two loopback ports; capture only the first."""
    socks = []

    def server():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        socks.append(s)
        return s.getsockname()[1]

    a, b = server(), server()
    with C.Capture(a) as cap:
        for port in (a, b, b):
            c = socket.socket()
            c.connect(("127.0.0.1", port))
            c.sendall(b"hello")
            c.close()
        time.sleep(0.1)
    segs = cap.segments()
    for s in socks:
        s.close()
    return a, b, [(x.sport, x.dport, flags(x), x.length) for x in segs]


def test_kernel_filter_keeps_only_the_probe_port():
    a, b, segs = run_in_netns(_two_servers, timeout=30)
    assert segs, "nothing captured"
    assert all(a in (sp, dp) for sp, dp, _f, _p in segs), segs
    assert not any(b in (sp, dp) for sp, dp, _f, _p in segs)
    # each segment once (the arriving copy), the handshake first, the 5-byte payload seen
    assert segs[0][2] == "S" and segs[1][2] == "S." and segs[2][2] == "."
    assert any(p == 5 for *_x, p in segs)


def test_filter_program_shape():
    prog = C.port_filter_program(8080)
    assert prog[-1] == (C.BPF_RET_K, 0, 0, 0) and prog[-2][0] == C.BPF_RET_K
    for i, (code, jt, jf, _k) in enumerate(prog):  # every conditional jump lands inside the program
        if code & 0x07 == 0x05 and code != 0x05:  # BPF_JMP class, not BPF_JA
            assert i + 1 + jt < len(prog) and i + 1 + jf < len(prog)
    with pytest.raises(ValueError):
        C.port_filter_program(0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_parse_frame_never_crashes_on_garbage(frame):
    seg = C.parse_frame(1.0, frame)
    assert seg is None or isinstance(seg, C.Segment)


def test_truncated_tcp_frame_is_not_a_segment_with_negative_payload():
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    raw = bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=1, dport=2, flags="S"))
    seg = C.parse_frame(0.0, raw + b"\x00" * 6)  # Ethernet padding
    assert seg is not None and seg.length == 0 and flags(seg) == "S"
