"""One Ethernet/IPv4/TCP frame built by hand, for the pcap writer's round-trip test."""

from __future__ import annotations

import struct


def frame(flags: int, seq: int, ack: int, payload: int, sport: int = 40000, dport: int = 80) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65000, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + payload, 0, 0x4000, 64, 6, 0, b"\n\0\0\1", b"\n\0\0\2")
    return b"\0" * 12 + b"\x08\x00" + ip + tcp + bytes(payload)
