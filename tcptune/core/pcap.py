"""Reading TCP segments from pcap and pcapng, streamed, without a per-packet dissection library.

Formats: classic pcap (microsecond and nanosecond magic, either byte order) and pcapng
(section header, interface description, enhanced and simple packet blocks; other blocks
skipped).  Link types: Ethernet (with 802.1Q tags), Linux cooked v1 and v2, BSD loopback
(NULL), raw IP.  Only IPv4/IPv6 TCP segments come out; everything else is counted and
skipped.  The reader holds one record at a time, so memory does not grow with the file.

Pure: it reads from a binary stream it is handed; opening the file is the host's job.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import compress
from typing import BinaryIO, NamedTuple

from tcptune.errors import ExitCode, TcptuneError

MAX_RECORD = 256 << 10  # a captured packet larger than this is not a packet (jumbo + headers is 9k)

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# link-layer types (www.tcpdump.org/linktypes.html)
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LINUX_SLL, LINK_IPV4, LINK_IPV6, LINK_LINUX_SLL2 = (
    0,
    1,
    101,
    113,
    228,
    229,
    276,
)
_RAW_ALIASES = {12, 14}  # DLT_RAW on some BSDs


class Segment(NamedTuple):
    """One TCP segment.  A NamedTuple, not a frozen dataclass: it is made once per packet, and a
    frozen dataclass's __init__ (object.__setattr__ per field) costs three times as much."""

    t: float  # seconds since the epoch, as the capture says
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int
    ack: int
    window: int
    length: int  # TCP payload bytes (from the IP length, not the snapshot)

    def has(self, bits: int) -> bool:
        return self.flags & bits == bits

    @property
    def letters(self) -> str:
        """tcpdump's flag letters: S, S., ., P., F., R., R. ..."""
        return _LETTERS[self.flags & 0xFF]


def _letters(flags: int) -> str:
    out = "".join(c for bit, c in ((SYN, "S"), (FIN, "F"), (PSH, "P"), (RST, "R"), (URG, "U")) if flags & bit)
    return out + ("." if flags & ACK else "") or "none"


LETTERS = _LETTERS = tuple(_letters(f) for f in range(256))  # per segment, twice (text and JSON): worked out once


@dataclass
class ReadStats:
    records: int = 0
    tcp: int = 0
    skipped: int = 0  # not IP/TCP, or truncated before the TCP header


def _bad(source: str, why: str) -> TcptuneError:
    return TcptuneError(
        f"{source}: {why}", ExitCode.BAD_INPUT, hint="pass a pcap or pcapng file (tcpdump -w, Wireshark)"
    )


def _read_exact(stream: BinaryIO, n: int, source: str, what: str) -> bytes | None:
    data = stream.read(n)
    if not data:
        return None
    if len(data) < n:
        raise _bad(source, f"truncated {what} ({len(data)} of {n} bytes)")
    return data


def shard_of(sport: int, dport: int) -> int:
    """Which of two halves a connection is in (trace --read splits its work by it): the same
    for both directions (the ports' XOR), and bits 0 and 1 both count: Linux's connect()
    prefers even ephemeral ports (__inet_hash_connect in net/ipv4/inet_hashtables.c, since
    4.6; measured on 6.18: 200 of 200 connect() ports even, bind() to port 0 odd), so bit 0
    alone would put a client's connections to one server port all in one half."""
    return _PARITY[(sport ^ dport) & 3]


_PARITY = (0, 1, 1, 0)  # of bits 0 and 1


def read_batches(
    stream: BinaryIO, source: str, stats: ReadStats | None = None, shard: int | None = None
) -> Iterator[list[tuple]]:
    """The capture's TCP segments a chunk of the file at a time, each as a plain tuple in
    ``Segment``'s field order (making the NamedTuple is a fifth of decoding; the tracer reads
    the fields by position).  A bad record ends it with the error after the segments before it.

    ``shard`` (0 or 1): only the segments of that half (shard_of), each batch as a pair
    (segments, keys): a key is 2 x the segment's position among all the capture's TCP
    segments, by which the halves' output merges back into the capture's order.  A pair comes
    for every chunk, empty or not, and the chunks are the same whoever reads (the halves stay
    in step); ``stats`` count every segment."""
    stats = stats if stats is not None else ReadStats()
    head = stream.read(4)
    if len(head) < 4:
        raise _bad(source, "empty or not a capture file")
    if head == b"\x0a\x0d\x0d\x0a":
        batch: list[tuple] = []
        pos = 0
        for seg in _pcapng(stream, head, source, stats):
            batch.append(seg)
            if len(batch) >= 4096:
                yield batch if shard is None else half_of(batch, shard, pos)
                pos += 2 * len(batch)
                batch = []
        if batch or shard is not None:
            yield batch if shard is None else half_of(batch, shard, pos)
        return
    magic = head
    for order in ("<", ">"):
        (m,) = struct.unpack(order + "I", magic)
        if m in (0xA1B2C3D4, 0xA1B23C4D):
            yield from _pcap(stream, order, 1e-6 if m == 0xA1B2C3D4 else 1e-9, source, stats, shard)
            return
    raise _bad(source, "not a pcap or pcapng file (unknown magic)")


def half_of(batch: list[tuple], shard: int, pos: int) -> tuple[list[tuple], list[int]]:
    """Of a batch of segments, shard ``shard``'s, with their keys (2 x the position; ``pos``:
    the first one's): what read_batches(shard=) gives, from a batch of every segment."""
    sel = [shard_of(s[2], s[4]) == shard for s in batch]  # (pcapng, small files: _pcap has it in line)
    return list(compress(batch, sel)), list(compress(range(pos, pos + 2 * len(batch), 2), sel))


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes, fewer only at the end of the file: a read that returns less is read on,
    so every reader of the file cuts it into the same chunks."""
    data = stream.read(size)
    while 0 < len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return data


CHUNK = (
    1 << 16
)  # bytes read at a time: ~800 bench records per read() and per loop; a larger chunk only adds memory (1 MiB: +24 MiB RSS)
# Ethernet + IPv4 without options + TCP, the common frame, in one unpack at fixed offsets:
# ethertype, version/IHL, total length, fragment field, protocol, addresses, then TCP's
# ports, seq, ack, data offset, flags, window.
_ETH_V4_TCP = struct.Struct(">12xHBxH2xHxB2x8sHHIIBBH")
_V4_PAIRS: dict[bytes, tuple[str, str]] = {}  # the 8 address bytes -> both dotted quads: one lookup a packet
_FAST_MIN = 54  # the frame must hold the 20-byte TCP header (decode_frame's own test)


def _pcap(
    stream: BinaryIO, order: str, tick: float, source: str, stats: ReadStats, shard: int | None
) -> Iterator[list[tuple]]:
    rest = _read_exact(stream, 20, source, "file header")
    if rest is None:
        raise _bad(source, "truncated file header")
    linktype = struct.unpack(order + "I", rest[16:20])[0] & 0x0FFFFFFF
    rec = struct.Struct(order + "IIII").unpack_from
    fast = _ETH_V4_TCP.unpack_from if linktype == LINK_ETHERNET else None
    pairs, parity = _V4_PAIRS, _PARITY
    whole = shard is None
    buf, off, pos = b"", 0, 0
    while True:
        chunk = _read_full(stream, CHUNK)
        buf = buf[off:] + chunk if off < len(buf) else chunk
        off, size = 0, len(buf)
        if not chunk and not buf:
            return
        batch: list[tuple] = []
        keys: list[int] = []
        append, key = batch.append, keys.append
        records, tcp, error = 0, 0, None
        while off + 16 <= size:
            sec, frac, incl, _orig = rec(buf, off)
            if incl > MAX_RECORD:
                error = _bad(source, f"record {stats.records + records + 1} claims {incl} bytes; not a packet")
                break
            p = off + 16
            if not incl:  # as a read of 0 bytes: nothing there (the record-at-a-time reader said so too)
                error = _bad(source, "truncated packet")
                break
            if p + incl > size:
                if not chunk:  # the file ends inside this packet
                    error = _bad(
                        source, f"truncated packet ({size - p} of {incl} bytes)" if size > p else "truncated packet"
                    )
                break
            records += 1
            off = p + incl
            if fast is not None and incl >= _FAST_MIN:
                etype, vihl, total, frag, proto, addrs, sport, dport, seq, ack, doff, flags, win = fast(buf, p)
                if etype == 0x0800 and vihl == 0x45 and proto == 6 and not frag & 0x1FFF and doff >= 0x50:
                    tcp += 1
                    if not whole:
                        if parity[(sport ^ dport) & 3] != shard:
                            continue  # the other half's: no names, no tuple
                        key(pos + 2 * tcp)
                    names = pairs.get(addrs)
                    if names is None:
                        if len(pairs) > 65536:
                            pairs.clear()
                        names = pairs[addrs] = (_v4(addrs[:4]), _v4(addrs[4:]))
                    src, dst = names
                    length = total - 20 - (doff >> 4) * 4
                    append(
                        (sec + frac * tick, src, sport, dst, dport, flags, seq, ack, win, length if length > 0 else 0)
                    )
                    continue
            # anything else (VLAN tags, IP or odd TCP header lengths, IPv6, other link types): the general decoder
            seg = decode_frame(linktype, buf[p:off], sec + frac * tick, order)
            if seg is not None:
                tcp += 1
                if whole:
                    append(tuple(seg))
                elif parity[(seg[2] ^ seg[4]) & 3] == shard:
                    append(tuple(seg))
                    key(pos + 2 * tcp)
        stats.records += records
        stats.tcp += tcp
        stats.skipped += records - tcp
        pos += 2 * tcp
        if error is None and not chunk and off < size:
            error = _bad(source, f"truncated record header ({size - off} of 16 bytes)")
        if not whole:
            yield batch, keys
        elif batch:
            yield batch
        if error is not None:
            raise error
        if not chunk:
            return


def _pcapng(stream: BinaryIO, head: bytes, source: str, stats: ReadStats) -> Iterator[Segment]:
    order = "<"
    links: list[tuple[int, float]] = []  # per interface: link type, seconds per timestamp unit
    block_type = 0x0A0D0D0A
    first = True
    while True:
        if not first:
            head = stream.read(4)
            if not head:
                return
            if len(head) < 4:
                raise _bad(source, "truncated block")
        first = False
        tlen_raw = _read_exact(stream, 4, source, "block length")
        if tlen_raw is None:
            raise _bad(source, "truncated block")
        if head == b"\x0a\x0d\x0d\x0a":  # a section header: learn the byte order from its magic
            bom = _read_exact(stream, 4, source, "section header")
            if bom is None:
                raise _bad(source, "truncated section header")
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else ""
            if not order:
                raise _bad(source, "bad pcapng byte-order magic")
            (tlen,) = struct.unpack(order + "I", tlen_raw)
            if tlen < 28 or tlen > MAX_RECORD or tlen % 4:
                raise _bad(source, f"bad section header length {tlen}")
            _read_exact(stream, tlen - 12, source, "section header")
            links = []
            continue
        (block_type,) = struct.unpack(order + "I", head)
        (tlen,) = struct.unpack(order + "I", tlen_raw)
        if tlen < 12 or tlen > MAX_RECORD or tlen % 4:
            raise _bad(source, f"bad block length {tlen}")
        body = _read_exact(stream, tlen - 8, source, "block")
        if body is None:
            raise _bad(source, "truncated block")
        body = body[:-4]  # the trailing copy of the length
        if block_type == 1:  # interface description
            linktype = struct.unpack(order + "H", body[:2])[0]
            links.append((linktype, _if_tsresol(body[8:], order)))
        elif block_type == 6 and len(body) >= 20:  # enhanced packet
            iface, hi, lo, incl = struct.unpack(order + "IIII", body[:16])
            if iface >= len(links):
                raise _bad(source, f"packet on undeclared interface {iface}")
            linktype, unit = links[iface]
            stats.records += 1
            seg = decode_frame(linktype, body[20 : 20 + incl], ((hi << 32) | lo) * unit, order)
            if seg is None:
                stats.skipped += 1
            else:
                stats.tcp += 1
                yield seg
        elif block_type == 3 and links:  # simple packet: no timestamp
            stats.records += 1
            seg = decode_frame(links[0][0], body[4:], 0.0, order)
            if seg is None:
                stats.skipped += 1
            else:
                stats.tcp += 1
                yield seg


def _if_tsresol(options: bytes, order: str) -> float:
    """if_tsresol (option 9): 10^-n or 2^-n seconds per unit; microseconds by default."""
    off = 0
    while off + 4 <= len(options):
        code, length = struct.unpack(order + "HH", options[off : off + 4])
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = options[off + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -(v & 0x7F)
        off += 4 + (length + 3) // 4 * 4
    return 1e-6


def decode_frame(linktype: int, data: bytes, t: float, order: str = "<") -> Segment | None:
    """The TCP segment in one link-layer frame, or None."""
    if linktype == LINK_ETHERNET:
        if len(data) < 14:
            return None
        off, ethertype = 14, int.from_bytes(data[12:14], "big")
        while ethertype in (0x8100, 0x88A8) and len(data) >= off + 4:  # VLAN tags
            ethertype, off = int.from_bytes(data[off + 2 : off + 4], "big"), off + 4
        return _ip(data, off, ethertype, t)
    if linktype == LINK_LINUX_SLL:
        return _ip(data, 16, int.from_bytes(data[14:16], "big"), t) if len(data) >= 16 else None
    if linktype == LINK_LINUX_SLL2:
        return _ip(data, 20, int.from_bytes(data[0:2], "big"), t) if len(data) >= 20 else None
    if linktype == LINK_NULL:  # 4-byte address family in the capturing host's order
        if len(data) < 4:
            return None
        fam = struct.unpack(order + "I", data[:4])[0]
        return _ip(data, 4, 0x0800 if fam == 2 else 0x86DD, t)
    if linktype in (LINK_RAW, LINK_IPV4, LINK_IPV6, *_RAW_ALIASES):
        if not data:
            return None
        return _ip(data, 0, 0x0800 if data[0] >> 4 == 4 else 0x86DD, t)
    return None


_V4_NAMES: dict[bytes, str] = {}


def _v4(raw: bytes) -> str:
    """Dotted quad, remembered: a capture repeats few addresses, and formatting is a third of decoding."""
    name = _V4_NAMES.get(raw)
    if name is None:
        if len(_V4_NAMES) > 65536:
            _V4_NAMES.clear()
        name = _V4_NAMES[raw] = ".".join(map(str, raw))
    return name


def _ip(data: bytes, off: int, ethertype: int, t: float) -> Segment | None:
    if ethertype == 0x0800 and len(data) >= off + 20 and data[off] >> 4 == 4:
        ihl = (data[off] & 0x0F) * 4
        total = int.from_bytes(data[off + 2 : off + 4], "big")
        if data[off + 9] != 6 or ihl < 20 or int.from_bytes(data[off + 6 : off + 8], "big") & 0x1FFF:
            return None  # not TCP, or a later fragment
        src, dst = _v4(data[off + 12 : off + 16]), _v4(data[off + 16 : off + 20])
        return _tcp(data, off + ihl, total - ihl, src, dst, t)
    if ethertype == 0x86DD and len(data) >= off + 40 and data[off] >> 4 == 6:
        if data[off + 6] != 6:
            return None  # extension headers before TCP are not followed
        import ipaddress

        src = str(ipaddress.IPv6Address(data[off + 8 : off + 24]))
        dst = str(ipaddress.IPv6Address(data[off + 24 : off + 40]))
        return _tcp(data, off + 40, int.from_bytes(data[off + 4 : off + 6], "big"), src, dst, t)
    return None


_TCP = struct.Struct(">HHIIBBH")


def _tcp(data: bytes, off: int, tcp_len: int, src: str, dst: str, t: float) -> Segment | None:
    if len(data) < off + 20:
        return None
    sport, dport, seq, ack, doff, flags, window = _TCP.unpack_from(data, off)
    hlen = (doff >> 4) * 4
    if hlen < 20:
        return None
    return Segment(t, src, sport, dst, dport, flags, seq, ack, window, max(0, tcp_len - hlen))


class PcapWriter:
    """Classic pcap (microsecond magic, this machine's byte order), one record per frame, as
    tcpdump -w writes it: readable by ``read_segments``, tcpdump and Wireshark.  Pure: it writes
    to a binary stream it is handed."""

    def __init__(self, stream: BinaryIO, linktype: int = LINK_ETHERNET, snaplen: int = 262144):
        self.stream = stream
        self.count = 0
        self._rec = struct.Struct("=IIII")
        stream.write(struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))  # pcap_file_header

    def write(self, t: float, frame: bytes, orig_len: int | None = None) -> None:
        sec = int(t)
        usec = min(999999, round((t - sec) * 1e6))
        self.stream.write(self._rec.pack(sec, usec, len(frame), orig_len or len(frame)))
        self.stream.write(frame)
        self.count += 1
