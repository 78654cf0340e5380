"""What every probe shares: loopback sockets, socket filters, TCP_INFO, the socket
table, the clock, progress and cleanup.

Probes are their own layer (like tcptune.host.source): they open sockets and read the
clock, but only ever on 127.0.0.1 in the current network namespace, and never
change sysctls, firewall rules or interfaces.  A socket filter (SO_ATTACH_FILTER,
no privileges) on the probe's own socket is what makes the kernel drop segments.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.timers import Event
from tcptune.probe.capture import (
    BPF_JSET_K,
    BPF_LD_B_ABS,
    BPF_RET_K,
    Capture,
    CaptureStats,
    Segment,
    attach_filter,
    can_capture,
)

LOOPBACK = "127.0.0.1"
POLL_S = 0.005  # how often socket state is polled
SETTLE_S = 0.15  # after the last expected event, keep watching this long for extras

# Socket filters for a TCP socket see the segment from its TCP header on
# (tcp_filter() in net/ipv4/tcp_ipv4.c runs with skb->data at the TCP header).
DROP_ALL = [(BPF_RET_K, 0, 0, 0)]
DROP_ACK = [  # drop every segment with ACK set: SYNs pass, the handshake's final ACK does not
    (BPF_LD_B_ABS, 0, 0, 13),  # TCP flags byte
    (BPF_JSET_K, 0, 1, 0x10),
    (BPF_RET_K, 0, 0, 0),
    (BPF_RET_K, 0, 0, 0x40000),
]


@dataclass
class Observation:
    """What a probe saw.  Times are absolute (CLOCK_REALTIME, like packet stamps)
    until :meth:`events` makes them relative to the first one."""

    probe: str
    source: str = "capture"  # "capture", "socket" (TCP_INFO / socket table, no packets) or "pcap"
    raw_events: list[tuple] = field(default_factory=list)  # (abs t, what, n, detail[, uncertainty])
    segments: list[Segment] = field(default_factory=list)
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    capture_stats: CaptureStats | None = None  # the capture socket's kernel counters, after it closed
    started: float = 0.0  # absolute time the probe started its first action
    watched_until: float = 0.0  # absolute time it stopped watching
    measured: dict = field(default_factory=dict)  # socket facts the model needs (e.g. the RTO)
    notes: list[str] = field(default_factory=list)

    def add(self, t: float, what: str, n: int = 0, detail: str = "", since: float | None = None) -> None:
        """Record an event seen at ``t``; ``since``: the previous poll, when it was not yet seen."""
        self.raw_events.append((t, what, n, detail, 0.0 if since is None else max(0.0, t - since)))

    def finish(self) -> None:
        """Stamp the end of the watch however the probe ended (Ctrl-C included, when the
        probe's own loop could not)."""
        now = time.time()
        if not self.started:  # ended before the probe's first action
            self.started = now
        if not self.watched_until:
            self.watched_until = now

    @property
    def t0(self) -> float:
        firsts = [e[0] for e in self.raw_events]
        return min(firsts) if firsts else self.started

    def events(self, t0: float | None = None) -> list[Event]:
        """Events relative to ``t0`` (default: the first event, the probe's first packet)."""
        t0 = self.t0 if t0 is None else t0
        out = []
        for t, what, n, detail, *rest in self.raw_events:
            out.append(Event(t - t0, what, n, 0.0, detail, uncertainty=rest[0] if rest else 0.0))
        return sorted(out, key=lambda e: e.t)

    @property
    def watched_for(self) -> float:
        return max(0.0, self.watched_until - self.t0)


Progress = Callable[[str, float, float, int], None]  # (probe, elapsed, left, events so far)


@dataclass
class Context:
    """How a probe should run: how long it may wait, whether to capture, progress."""

    max_wait: float
    capture: bool = True
    progress: Progress | None = None
    name: str = ""
    options: Mapping[str, object] = field(default_factory=dict)  # the probe's own options (ProbeSpec.options)
    _start: float = 0.0
    _last_tick: float = 0.0
    events_seen: int = 0
    timed_out: bool = False  # the watch ended at max_wait, not because the kernel gave up

    def begin(self) -> None:
        self._start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    @property
    def left(self) -> float:
        return max(0.0, self.max_wait - self.elapsed)

    def expired(self) -> bool:
        self.timed_out = self.elapsed >= self.max_wait
        return self.timed_out

    def tick(self) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last_tick >= 0.2:
            self._last_tick = now
            self.progress(self.name, self.elapsed, self.left, self.events_seen)


def capture_possible(ctx: Context) -> tuple[bool, str]:
    if not ctx.capture:
        return False, "capture disabled"
    return can_capture()


@contextlib.contextmanager
def closing_all() -> Iterator[list[socket.socket]]:
    """Collect sockets; all are closed (with RST, no lingering state) on exit,
    including on Ctrl-C."""
    socks: list[socket.socket] = []
    try:
        yield socks
    finally:
        for s in reversed(socks):
            with contextlib.suppress(OSError):
                if s.fileno() >= 0 and s.type == socket.SOCK_STREAM:
                    abort_on_close(s)
                s.close()


def abort_on_close(s: socket.socket) -> None:
    """SO_LINGER {on, 0}: close() sends RST and frees the socket at once."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def silence(sock: socket.socket, prog) -> None:
    """Attach a dropping socket filter to one of the probe's TCP sockets.

    Mainline Linux lets anyone do this: net/core/filter.c __get_filter() refuses
    (EPERM) only a socket locked with SO_LOCK_FILTER.  Some kernels' security policy
    refuses it on TCP sockets anyway: measured on this project's 6.18 test kernel (BPF
    LSM active), an unprivileged TCP socket gets EPERM, a UDP socket does not, and
    CAP_NET_ADMIN (not CAP_NET_RAW) lifts it.  That is a privilege problem: exit 3."""
    try:
        attach_filter(sock, prog)
    except PermissionError:
        raise TcptuneError(
            "the kernel refused SO_ATTACH_FILTER on the probe's TCP socket (EPERM): this probe needs a privilege here",
            ExitCode.PRIVILEGES,
            hint="run it as root or with CAP_NET_ADMIN (which lifts the refusal on kernels tested); "
            "--no-capture does not help, the filter is how the probe makes packets go unanswered",
        ) from None


def listener(socks: list[socket.socket], prog=None) -> tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    socks.append(s)
    s.bind((LOOPBACK, 0))
    if prog is not None:
        silence(s, prog)
    s.listen(16)
    return s, s.getsockname()[1]


@contextlib.contextmanager
def maybe_capture(ctx: Context, port: int, obs: Observation) -> Iterator[Capture | None]:
    """Capture the probe's port when allowed and possible; the frames, decoded segments and
    the kernel's packet/drop counts land in ``obs`` however the probe ends (Ctrl-C too)."""
    obs.measured["server_port"] = port
    ok, why = capture_possible(ctx)
    if not ok:
        obs.source = "socket"
        if why != "capture disabled":
            obs.notes.append(f"{why}: times come from TCP_INFO and the socket table instead of packets")
        yield None
        return
    obs.source = "capture"
    cap = Capture(port)
    try:
        with cap:
            try:
                yield cap
            finally:
                cap.drain()
                obs.frames = cap.snapshot()
                obs.segments = cap.segments()
    finally:
        obs.capture_stats = cap.stats


# -- TCP_INFO (include/uapi/linux/tcp.h struct tcp_info) ------------------------
@dataclass(frozen=True)
class TcpInfo:
    state: int
    retransmits: int
    probes: int
    backoff: int
    rto_us: int
    total_retrans: int


def tcp_info(s: socket.socket) -> TcpInfo:
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    state, _ca, retransmits, probes, backoff = struct.unpack_from("BBBBB", raw, 0)
    rto = struct.unpack_from("I", raw, 8)[0]
    total_retrans = struct.unpack_from("I", raw, 100)[0] if len(raw) >= 104 else 0
    return TcpInfo(state, retransmits, probes, backoff, rto, total_retrans)


# -- the socket table (/proc/net/tcp of the current network namespace) ---------
@dataclass(frozen=True)
class TableEntry:
    local_port: int
    remote_port: int
    state: int
    retransmits: int


def socket_table() -> list[TableEntry]:
    """IPv4 TCP sockets from /proc/net/tcp (reads the current netns), parsed by core.procfs,
    with each row's retrnsmt count (synack counts SYN-ACK retransmissions from it when
    sock_diag is unavailable)."""
    from tcptune.core.procfs import parse_proc_net_tcp

    with open("/proc/net/tcp", "rb") as fh:
        rows, _warnings = parse_proc_net_tcp(fh.read().decode("ascii", "replace"))
    return [TableEntry(r.local_port, r.remote_port, r.state, r.retransmits) for r in rows]


def diag_lookup(local_port: int, remote_port: int, addr: str = LOOPBACK) -> TableEntry | None:
    """One 4-tuple's state via a sock_diag exact lookup (no dump).

    /proc/net/tcp walks the whole (host-wide) established hash and takes 100+ ms on
    a busy machine; SOCK_DIAG_BY_FAMILY without NLM_F_DUMP makes the kernel do one
    hash lookup (inet_diag_find_one_icsk() in net/ipv4/inet_diag.c), which also
    finds timewait and request sockets.  When nothing matches the 4-tuple the kernel
    may answer with a listener on the local port, or ENOENT (-> None).
    """
    from tcptune.core.inet_diag import NETLINK_SOCK_DIAG, lookup_reply, lookup_request

    msg = lookup_request(local_port, remote_port, socket.inet_aton(addr))
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.send(msg)
        data = nl.recv(8192)
    reply = lookup_reply(data)
    if reply is None:
        return None
    state, lport, rport, retrans = reply
    return TableEntry(lport, rport, state, retrans)


_use_diag: bool | None = None


def find_entry(local_port: int, remote_port: int | None = None, states: tuple[int, ...] = ()) -> TableEntry | None:
    """The socket with this local (and remote) port on 127.0.0.1, optionally only in ``states``."""
    global _use_diag
    if remote_port is not None and _use_diag is not False:
        try:
            e = diag_lookup(local_port, remote_port)
            _use_diag = True
        except OSError:
            _use_diag = False
        else:
            if e is None or e.remote_port != remote_port or (states and e.state not in states):
                return None
            return e
    for e in socket_table():
        if e.local_port == local_port and (remote_port is None or e.remote_port == remote_port):
            if not states or e.state in states:
                return e
    return None


def kernel_hz() -> int | None:
    """CONFIG_HZ of the running kernel (timer-wheel granularity), or None if unknown.
    Read from /proc/config.gz or /boot/config-RELEASE (the probe layer's own machine read)."""
    for path in ("/proc/config.gz", f"/boot/config-{os.uname().release}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", errors="replace") as fh:
                for line in fh:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=", 1)[1])
        except (OSError, ValueError, EOFError):
            continue
    return None
