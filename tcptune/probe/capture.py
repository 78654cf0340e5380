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

from tcptune.core.pcap import LINK_ETHERNET, LINK_RAW, Segment, decode_frame
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


def start_filtered(s: socket.socket, program, ifname: str) -> None:
    """Filter, timestamp and size the AF_PACKET socket ``s``, then bind it to ``ifname``: the
    filter is attached before the bind, so no packet is ever seen unfiltered."""
    attach_filter(s, program)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((ifname, ETH_P_ALL))  # only now do packets flow, already filtered


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
            start_filtered(s, port_filter_program(self.port), self.ifname)
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


# --- trace's live capture: any interface, a port and/or a host, streamed ---------------------

BPF_LD_W_ABS = 0x20
BPF_AND_K = 0x54
BPF_JA = 0x05
ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE = 1, 772, 0xFFFE  # include/uapi/linux/if_arp.h
ETH_P_IPV6 = 0x86DD


def _assemble(items: list) -> list[tuple[int, int, int, int]]:
    """Classic BPF with named jump targets: an item is a label (str) or (code, jt, jf, k) where
    jt/jf are labels or 0 (the next instruction)."""
    where, n = {}, 0
    for it in items:
        if isinstance(it, str):
            where[it] = n
        else:
            n += 1
    prog: list[tuple[int, int, int, int]] = []
    for it in items:
        if isinstance(it, str):
            continue
        code, jt, jf, k = it
        here = len(prog) + 1
        jt, jf = (where[j] - here if isinstance(j, str) else j for j in (jt, jf))
        if code == BPF_JA:
            k, jt, jf = jt, 0, 0
        prog.append((code, jt, jf, k))
    return prog


def trace_filter_program(link_offset: int, port: int | None, host: str | None) -> list[tuple[int, int, int, int]]:
    """A classic-BPF program accepting IPv4/IPv6 TCP segments (unfragmented IPv4; IPv6 with TCP as
    the first next header) to or from ``port`` and ``host`` when given; ``link_offset`` is the
    link header's length (14 Ethernet and lo, 0 raw IP).  As tcpdump's 'tcp port N and host A'."""
    L = link_offset
    v4host = v6host = None
    if host is not None:
        import ipaddress

        ip = ipaddress.ip_address(host)
        if ip.version == 4:
            v4host = int(ip)
        else:
            v6host = [int.from_bytes(ip.packed[i : i + 4], "big") for i in range(0, 16, 4)]
    p: list = []
    if L == 14:
        p += [(BPF_LD_H_ABS, 0, 0, 12), (BPF_JEQ_K, "v4", 0, ETH_P_IP), (BPF_JEQ_K, "v6", "drop", ETH_P_IPV6)]
    else:
        p += [
            (BPF_LD_B_ABS, 0, 0, L),
            (BPF_AND_K, 0, 0, 0xF0),
            (BPF_JEQ_K, "v4", 0, 0x40),
            (BPF_JEQ_K, "v6", "drop", 0x60),
        ]
    p += ["v4", (BPF_LD_B_ABS, 0, 0, L + 9), (BPF_JEQ_K, 0, "drop", socket.IPPROTO_TCP)]
    p += [(BPF_LD_H_ABS, 0, 0, L + 6), (BPF_JSET_K, "drop", 0, 0x1FFF)]
    if v6host is not None:
        p += [(BPF_JA, "drop", 0, 0)]  # an IPv6 host: no IPv4 segment matches
    if v4host is not None:
        p += [(BPF_LD_W_ABS, 0, 0, L + 12), (BPF_JEQ_K, "v4host", 0, v4host)]
        p += [(BPF_LD_W_ABS, 0, 0, L + 16), (BPF_JEQ_K, "v4host", "drop", v4host), "v4host"]
    if port is not None:
        p += [(BPF_LDX_B_MSH, 0, 0, L), (BPF_LD_H_IND, 0, 0, L), (BPF_JEQ_K, "keep", 0, port)]
        p += [(BPF_LD_H_IND, 0, 0, L + 2), (BPF_JEQ_K, "keep", "drop", port)]
    else:
        p += [(BPF_JA, "keep", 0, 0)]
    p += ["v6", (BPF_LD_B_ABS, 0, 0, L + 6), (BPF_JEQ_K, 0, "drop", socket.IPPROTO_TCP)]
    if v4host is not None:
        p += [(BPF_JA, "drop", 0, 0)]
    if v6host is not None:
        for base, name in ((L + 8, "src"), (L + 24, "dst")):
            for i, word in enumerate(v6host):
                last = i == 3
                p += [(BPF_LD_W_ABS, 0, 0, base + 4 * i)]
                p += [(BPF_JEQ_K, "v6host" if last else 0, f"not-{name}", word)]
            p += [f"not-{name}"]
        p += [(BPF_JA, "drop", 0, 0), "v6host"]
    if port is not None:
        p += [(BPF_LD_H_ABS, 0, 0, L + 40), (BPF_JEQ_K, "keep", 0, port)]
        p += [(BPF_LD_H_ABS, 0, 0, L + 42), (BPF_JEQ_K, "keep", "drop", port)]
    p += ["keep", (BPF_RET_K, 0, 0, 0x40000), "drop", (BPF_RET_K, 0, 0, 0)]
    return _assemble(p)


class LiveCapture:
    """trace's live capture: an AF_PACKET socket on one interface with ``trace_filter_program``
    attached before it receives anything, read in the caller's thread in bursts (what has arrived
    until the wire is quiet for ``QUIET`` s), so the caller can read the kernel's socket states
    between bursts.  Ctrl-C (SIGINT) sets ``interrupted`` instead of raising, so the caller ends
    cleanly with what it has.  On a loopback device each segment is seen twice; like libpcap only
    the arriving copy is kept.  Needs CAP_NET_RAW."""

    QUIET = 0.01

    def __init__(self, ifname: str, port: int | None, host: str | None):
        self.ifname, self.port, self.host = ifname, port, host
        self.interrupted = False
        self._sock: socket.socket | None = None
        self._old_handler = None
        self.linktype = LINK_ETHERNET
        self._loopback = False
        self.stats: CaptureStats | None = None

    def __enter__(self) -> LiveCapture:
        import signal

        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing yet
        except PermissionError as exc:
            raise TcptuneError(
                "live capture needs root or CAP_NET_RAW", ExitCode.PRIVILEGES, hint="run as root, or use --read FILE"
            ) from exc
        try:
            try:
                s.bind((self.ifname, 0))  # to learn the link type; still receives nothing
            except OSError as exc:
                raise TcptuneError(
                    f"--interface {self.ifname}: {exc.strerror}", ExitCode.BAD_INPUT, hint="see `ip link`"
                ) from None
            hatype = s.getsockname()[3]
            if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
                offset = 14
            elif hatype == ARPHRD_NONE:
                offset, self.linktype = 0, LINK_RAW
            else:
                raise TcptuneError(
                    f"--interface {self.ifname}: link type {hatype} is not Ethernet, loopback or raw IP",
                    ExitCode.BAD_INPUT,
                )
            self._loopback = hatype == ARPHRD_LOOPBACK
            start_filtered(s, trace_filter_program(offset, self.port, self.host), self.ifname)
        except BaseException:
            s.close()
            raise
        self._sock = s
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, _signum, _frame) -> None:
        self.interrupted = True

    def __exit__(self, *exc) -> None:
        import signal

        if self._old_handler is not None:
            signal.signal(signal.SIGINT, self._old_handler)
            self._old_handler = None
        if self._sock is not None:
            try:
                packets, drops = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
                self.stats = CaptureStats(packets, drops)
            except OSError:
                pass
            self._sock.close()
            self._sock = None

    def pending(self) -> bool:
        """Whether a frame is waiting (the wire was not quiet)."""
        assert self._sock is not None
        try:
            return bool(select.select([self._sock], [], [], 0)[0])
        except InterruptedError:
            return True

    def burst(self, timeout: float) -> list[tuple[float, bytes]]:
        """The frames that arrive within ``timeout`` s, read until the wire is quiet; [] if none."""
        s = self._sock
        assert s is not None
        out: list[tuple[float, bytes]] = []
        wait = timeout
        cmsg_space = socket.CMSG_SPACE(16)
        while not self.interrupted:
            ready, _, _ = select.select([s], [], [], wait)
            if not ready:
                break
            while True:
                try:
                    data, anc, _flags, addr = s.recvmsg(65535, cmsg_space, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                if self._loopback and len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                    continue
                ts = time.time()
                for level, ctype, cdata in anc:
                    if level == socket.SOL_SOCKET and ctype == SCM_TIMESTAMPNS and len(cdata) >= 16:
                        sec, nsec = struct.unpack("qq", cdata[:16])
                        ts = sec + nsec / 1e9
                out.append((ts, data))
            wait = self.QUIET
        return out
