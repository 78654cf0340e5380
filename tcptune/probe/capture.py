"""Packet capture on ``lo`` for the probes: the only module that imports scapy (lazily).

The capture is an AF_PACKET socket bound to ``lo`` with a classic-BPF program we
assemble here and attach with SO_ATTACH_FILTER *before* binding, so the kernel copies
only TCP segments to or from the probe's port into Python, and nothing slips in
before the filter is in place.  No libpcap or tcpdump is needed (scapy's own
``filter=`` would need one of them to compile the expression).  Needs CAP_NET_RAW.

Each segment crosses ``lo`` twice (once leaving, once arriving); like libpcap we keep
only the arriving copy (sll_pkttype != PACKET_OUTGOING).  Kernel receive timestamps
(SO_TIMESTAMPNS) give the packet times.  scapy decodes the frames and writes pcap.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

from tcptune.core.pcap import LINK_ETHERNET, Segment, decode_frame
from tcptune.errors import ExitCode, TcptuneError

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS

# TCP flag bits (RFC 9293)
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10

# classic BPF opcodes (include/uapi/linux/filter.h, bpf_common.h)
BPF_LD_H_ABS = 0x28
BPF_LD_B_ABS = 0x30
BPF_LD_H_IND = 0x48
BPF_LDX_B_MSH = 0xB1
BPF_JEQ_K = 0x15
BPF_JSET_K = 0x45
BPF_RET_K = 0x06


def port_filter_program(port: int) -> list[tuple[int, int, int, int]]:
    """A classic-BPF program for a 14-byte-header link (lo): accept IPv4 TCP
    segments, unfragmented, whose source or destination port is ``port``.

    Instructions are (code, jt, jf, k); jumps count from the next instruction.
    """
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    keep, drop = 0x40000, 0
    return [
        (BPF_LD_H_ABS, 0, 0, 12),  # 0: ethertype
        (BPF_JEQ_K, 0, 10, ETH_P_IP),  # 1: not IPv4 -> 12 drop
        (BPF_LD_B_ABS, 0, 0, 23),  # 2: IP protocol
        (BPF_JEQ_K, 0, 8, socket.IPPROTO_TCP),  # 3: not TCP -> 12 drop
        (BPF_LD_H_ABS, 0, 0, 20),  # 4: flags + fragment offset
        (BPF_JSET_K, 6, 0, 0x1FFF),  # 5: a later fragment has no TCP header -> 12 drop
        (BPF_LDX_B_MSH, 0, 0, 14),  # 6: X = IP header length
        (BPF_LD_H_IND, 0, 0, 14),  # 7: source port
        (BPF_JEQ_K, 2, 0, port),  # 8: -> 11 keep
        (BPF_LD_H_IND, 0, 0, 16),  # 9: destination port
        (BPF_JEQ_K, 0, 1, port),  # 10: -> 11 keep, else 12 drop
        (BPF_RET_K, 0, 0, keep),  # 11
        (BPF_RET_K, 0, 0, drop),  # 12
    ]


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER a classic-BPF program (works on any socket, no privileges)."""
    import ctypes  # lazily: only the probes need it, and not every command start should pay for it

    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def can_capture() -> tuple[bool, str]:
    """Whether an AF_PACKET socket can be opened here (CAP_NET_RAW)."""
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        return False, "packet capture needs CAP_NET_RAW"
    except OSError as exc:
        return False, f"packet capture unavailable: {exc.strerror}"
    s.close()
    return True, ""


def parse_frame(t: float, frame: bytes) -> Segment | None:
    """Decode one captured Ethernet frame (lo) with the same reader as trace --read and pcaps
    (core/pcap.py): no per-packet dissection library; Ethernet padding never counts as payload."""
    return decode_frame(LINK_ETHERNET, frame, t)


@dataclass(frozen=True)
class CaptureStats:
    """The kernel's counters for the capture socket (packet_getsockopt() PACKET_STATISTICS):
    ``packets`` received (both copies of each lo segment, after the filter), ``drops``
    lost because the socket's receive buffer was full."""

    packets: int
    drops: int

    def to_json(self) -> dict:
        return {"packets": self.packets, "drops": self.drops}


class Capture:
    """Capture TCP segments of one port on ``lo`` in a background thread.

    Use as a context manager; ``frames`` holds (time, raw frame) and ``segments()``
    decodes them.  After close(), ``stats`` holds the kernel's counts for the socket
    (PACKET_STATISTICS: frames that passed the filter, and those dropped because the
    receive buffer was full), so a lossy capture can say so.
    """

    def __init__(self, port: int, ifname: str = "lo"):
        self.port = port
        self.ifname = ifname
        self.frames: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._out: list[tuple[float, bytes]] = []
        self.stats: CaptureStats | None = None

    def __enter__(self) -> Capture:
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing yet
        except PermissionError as exc:
            raise TcptuneError("packet capture needs CAP_NET_RAW", ExitCode.PRIVILEGES, hint="run as root") from exc
        try:
            attach_filter(s, port_filter_program(self.port))
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((self.ifname, ETH_P_ALL))  # only now do packets flow, already filtered
        except BaseException:
            s.close()
            raise
        self._sock = s
        self._thread = threading.Thread(target=self._run, name=f"tcptune-capture-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        s = self._sock
        assert s is not None
        cmsg_space = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([s], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            while True:
                try:
                    data, anc, _flags, addr = s.recvmsg(65535, cmsg_space, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    return
                outgoing = len(addr) > 2 and addr[2] == PACKET_OUTGOING
                ts = None
                for level, ctype, cdata in anc:
                    if level == socket.SOL_SOCKET and ctype == SCM_TIMESTAMPNS and len(cdata) >= 16:
                        sec, nsec = struct.unpack("qq", cdata[:16])
                        ts = sec + nsec / 1e9
                with self._lock:
                    (self._out if outgoing else self.frames).append((ts if ts is not None else time.time(), data))

    def drain(self, settle: float = 0.05) -> None:
        """Give the reader a moment to pick up frames already queued."""
        time.sleep(settle)

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._sock is not None:
            try:  # struct tpacket_stats {tp_packets, tp_drops} (include/uapi/linux/if_packet.h)
                packets, drops = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
                self.stats = CaptureStats(packets, drops)
            except OSError:
                pass
            self._sock.close()
            self._sock = None

    def snapshot(self) -> list[tuple[float, bytes]]:
        with self._lock:
            return merge_copies(self.frames, self._out)

    def segments(self) -> list[Segment]:
        out = []
        for t, frame in self.snapshot():
            seg = parse_frame(t, frame)
            if seg is not None:
                out.append(seg)
        return out


def merge_copies(
    incoming: list[tuple[float, bytes]], outgoing: list[tuple[float, bytes]], window: float = 0.05
) -> list[tuple[float, bytes]]:
    """One frame per segment: the arriving copy, or the leaving copy when the
    arriving one was not captured (identical bytes within ``window`` s)."""
    out = list(incoming)
    for t, data in outgoing:
        if not any(d == data and -window <= ti - t <= window for ti, d in incoming):
            out.append((t, data))
    out.sort(key=lambda f: f[0])
    return out


def write_pcap(path, frames: list[tuple[float, bytes]]) -> int:
    """Write frames as a pcap (link type Ethernet, as tcpdump -i lo records)."""
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    pkts = []
    for t, frame in frames:
        p = Ether(frame)
        p.time = t
        pkts.append(p)
    try:
        wrpcap(str(path), pkts, linktype=1)
    except OSError as exc:
        raise TcptuneError(f"--pcap {path}: cannot write: {exc.strerror}", ExitCode.BAD_INPUT) from exc
    return len(pkts)
