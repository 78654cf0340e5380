"""Netlink sock_diag (inet_diag) dumps of the TCP socket table, read without per-socket objects.

HOST layer: opens netlink sockets and /proc/*/fd.

Why it is shaped like this: at a million sockets the kernel's own dump is most of
the cost (0.65-0.77 s on the 2-core bench machine, bench/README.md), so Python may
add almost nothing per socket.  A dump arrives as netlink messages of ``struct
nlmsghdr`` + ``struct inet_diag_msg`` (include/uapi/linux/inet_diag.h) +
attributes.  Each dump of the established hash costs the kernel a walk of all its
buckets, so how many dumps are asked for matters as much as how they are read.

Counts only (``tcptune states`` without --by): the listening hash in its own small
dump (for the backlog details), then ONE dump of every other state, both families
in one walk (AF_UNSPEC).  Its messages have three interleaved lengths (full
sockets with attributes, timewait socks, request socks), so StateCounter finds
the headers by the bytes they share and reads their state bytes in C
(_count_dump); the dump is received on a second thread while the previous buffer
is counted.

Grouped (--by local-port/peer/process): one dump per socket kind, with the
kernel-side ``idiag_states`` bitmask: LISTEN, SYN_RECV + TIME_WAIT (request and
timewait socks, both a bare inet_diag_msg: net/ipv4/inet_diag.c
inet_req_diag_fill, which reports a TCP_NEW_SYN_RECV request sock as TCP_SYN_RECV
as `ss` shows it, and inet_twsk_diag_fill) and everything else.  Within one such
dump every message has the same length, so a received buffer is a strided array:
``buf[17::L]`` is the ``idiag_state`` byte of every message,
``buf[84:].cast('I')[::L//4]`` every inode, and grouping runs in C (Counter over
zip).  The layout is proved, not assumed: the ``nlmsg_len`` and ``nlmsg_type`` of
every message in a run are compared in bulk, and where lengths differ the buffer
is cut into runs of equal length (a mixed buffer is still parsed correctly, only
slower).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from itertools import compress, repeat

from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.states import ALL_STATES_MASK, TCP_NEW_SYN_RECV, TcpState

NETLINK_SOCK_DIAG = 4  # include/uapi/linux/netlink.h
SOCK_DIAG_BY_FAMILY = 20  # include/uapi/linux/sock_diag.h
# The pre-sock_diag request (include/uapi/linux/inet_diag.h, struct inet_diag_req).  The
# kernel still serves it (net/ipv4/inet_diag.c inet_diag_dump_compat) with
# sdiag_family = AF_UNSPEC: ONE walk of the hash tables returns IPv4 and IPv6 sockets,
# where the per-family requests `ss` sends walk the established hash once per family.
TCPDIAG_GETSOCK = 18
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10  # the table changed while it was dumped (ss ignores it too)
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH

# struct inet_diag_msg offsets from the start of the netlink message (16-byte nlmsghdr):
#   __u8 idiag_family, idiag_state, idiag_timer, idiag_retrans;
#   struct inet_diag_sockid { __be16 sport, dport; __be32 src[4], dst[4]; __u32 if; __u32 cookie[2]; };
#   __u32 idiag_expires, idiag_rqueue, idiag_wqueue, idiag_uid, idiag_inode;
OFF_FAMILY = 16
OFF_STATE = 17
OFF_SPORT = 20
OFF_DPORT = 22
OFF_SRC = 24
OFF_DST = 40
OFF_RQUEUE = 72
OFF_WQUEUE = 76
OFF_INODE = 84
MIN_MSG = 88  # nlmsghdr + inet_diag_msg

# Netlink hands out at most one skb per recvmsg(); the kernel sizes dump skbs from
# the largest buffer userspace offered, capped at 32 KiB (net/netlink/af_netlink.c
# netlink_recvmsg: max_recvmsg_len).  A larger buffer costs nothing.
RECV_BUF = 1 << 17

# TIME_WAIT socks and request socks are both reported with no attributes (same message
# length), so they share one dump; full sockets carry attributes (longer messages).
_KIND_MASKS = (
    ("listen", 1 << TcpState.LISTEN),
    ("mini", (1 << TcpState.SYN_RECV) | (1 << TcpState.TIME_WAIT)),
)
_LISTEN_MASK = 1 << TcpState.LISTEN
_REST_MASK = ALL_STATES_MASK & ~((1 << TcpState.LISTEN) | (1 << TcpState.SYN_RECV) | (1 << TcpState.TIME_WAIT))

GROUP_KEYS = ("state", "local-port", "peer", "process")


class SockDiagUnavailable(Exception):
    """Netlink sock_diag cannot be used here (no NETLINK_SOCK_DIAG, inet_diag not built, ...)."""


@dataclass
class Listener:
    family: int
    address: str
    port: int
    accept_queue: int  # idiag_rqueue = sk_ack_backlog for LISTEN (net/ipv4/tcp_diag.c tcp_diag_get_info)
    backlog: int  # idiag_wqueue = sk_max_ack_backlog: listen() backlog capped by net.core.somaxconn
    inode: int


@dataclass
class DiagTable:
    """What one pass over the kernel's TCP table found (values only; rendering is tcptune.core.socket_summary)."""

    counts: Counter = field(default_factory=Counter)  # TcpState value -> sockets
    groups: Counter = field(default_factory=Counter)  # (TcpState value, key) -> sockets, when grouped
    listeners: list = field(default_factory=list)  # Listener
    syn_recv_by_port: Counter = field(default_factory=Counter)  # local port -> pending requests
    orphans: int | None = None  # FIN_WAIT1/FIN_WAIT2/CLOSING/LAST_ACK without an inode, when computed
    interrupted: bool = False  # the kernel flagged NLM_F_DUMP_INTR
    # by='process': the raw state byte and inode of every socket, 5 bytes a socket
    # (a dict or Counter keyed per socket would cost ~200 bytes each at a million).
    sock_states: bytearray = field(default_factory=bytearray)
    sock_inodes: array = field(default_factory=lambda: array("I"))


def _request(family: int, states: int, seq: int) -> bytes:
    """A dump request; family 0 (AF_UNSPEC) means both families through TCPDIAG_GETSOCK."""
    if family == socket.AF_UNSPEC:
        # struct inet_diag_req: family, src_len, dst_len, ext, inet_diag_sockid (48), states, dbs
        body = struct.pack("=BBBB", 0, 0, 0, 0) + bytes(48) + struct.pack("=II", states, 0)
        mtype = TCPDIAG_GETSOCK
    else:
        # struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 zero bytes)
        body = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, states) + bytes(48)
        mtype = SOCK_DIAG_BY_FAMILY
    return struct.pack("=IHHII", 16 + len(body), mtype, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _reply_type(family: int) -> int:
    return TCPDIAG_GETSOCK if family == socket.AF_UNSPEC else SOCK_DIAG_BY_FAMILY


def open_diag_socket() -> socket.socket:
    try:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise SockDiagUnavailable(f"netlink sock_diag socket: {exc.strerror}") from exc


def iter_runs(sock: socket.socket, family: int, states: int, seq: int = 1):
    """Send one dump request; yield (memoryview, offset, msg_len, count, flags_intr) per run of equal-length messages.

    The memoryview is only valid until the next item is requested.
    """
    try:
        sock.send(_request(family, states, seq))
    except OSError as exc:
        raise SockDiagUnavailable(f"netlink sock_diag send: {exc.strerror}") from exc
    buf = bytearray(RECV_BUF)
    mv = memoryview(buf)
    unpack_hdr = struct.Struct("=IHH").unpack_from
    rtype = _reply_type(family)
    while True:
        n = sock.recv_into(buf)
        if n < 16:
            raise TcptuneError(f"netlink sock_diag: short message ({n} bytes)", ExitCode.BAD_INPUT)
        off = 0
        while off < n:
            length, mtype, flags = unpack_hdr(buf, off)
            if length < 16 or off + length > n:
                raise TcptuneError(f"netlink sock_diag: malformed message length {length} at {off}", ExitCode.BAD_INPUT)
            if mtype == NLMSG_DONE:
                return
            if mtype == NLMSG_ERROR:
                _raise_nlmsg_error(buf, off, family)
            if mtype != rtype or length < MIN_MSG:
                off += (length + 3) & ~3
                continue
            cnt = _run_length(mv, off, n, length, rtype)
            yield mv, off, length, cnt, bool(flags & NLM_F_DUMP_INTR)
            off += cnt * length


def _run_length(mv: memoryview, off: int, n: int, length: int, rtype: int = SOCK_DIAG_BY_FAMILY) -> int:
    """How many consecutive ``rtype`` messages of ``length`` bytes start at ``off``.

    Checks every message's nlmsg_len and nlmsg_type with strided slices (C loops):
    if message i has length L, message i+1 starts at off+(i+1)*L, so checking the
    lengths at every stride proves the layout.
    """
    if length & 3:  # netlink messages are 4-byte aligned (NLMSG_ALIGN); a run needs whole words
        return 1
    hi = (n - off) // length  # at most this many fit
    if hi <= 1:
        return 1
    want_len = _LEN_BYTES.get(length) or struct.pack("=I", length)
    step = length // 4

    def ok(k: int) -> bool:
        # Only lengths are compared in bulk: a message of another type in a dump is
        # NLMSG_DONE or NLMSG_ERROR, and the kernel ends the dump's last skb with it
        # (net/netlink/af_netlink.c netlink_dump_done), so it can only be the last one,
        # whose type is checked on its own.
        last = off + (k - 1) * length
        if mv[last + 4] | (mv[last + 5] << 8) != rtype:
            return False
        return mv[off : last + 4].cast("I")[::step].tobytes() == want_len * k

    if ok(hi):
        return hi
    lo = 1  # ok(lo) holds, ok(hi) fails: binary search for the longest valid prefix
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


_LEN_BYTES = {n: struct.pack("=I", n) for n in range(MIN_MSG, 512, 4)}


def _bytes_col(mv: memoryview, off: int, length: int, cnt: int, field_off: int) -> bytes:
    start = off + field_off
    return mv[start : start + (cnt - 1) * length + 1 : length].tobytes()


def _u32_col(mv: memoryview, off: int, length: int, cnt: int, field_off: int) -> memoryview:
    start = off + field_off
    return mv[start : start + (cnt - 1) * length + 4].cast("I")[:: length // 4]


def _u16_col(mv: memoryview, off: int, length: int, cnt: int, field_off: int) -> memoryview:
    start = off + field_off
    return mv[start : start + (cnt - 1) * length + 2].cast("H")[:: length // 2]


_SELECT = {code: bytes(1 if i == code else 0 for i in range(256)) for code in (TcpState.SYN_RECV, TCP_NEW_SYN_RECV)}
_ntohs = socket.ntohs


def _port_col(mv, off, length, cnt, field_off):
    hi = _bytes_col(mv, off, length, cnt, field_off)
    lo = _bytes_col(mv, off, length, cnt, field_off + 1)
    return zip(hi, lo)  # (high byte, low byte) of a big-endian port; joined after counting


def _addr_col(mv, off, length, cnt, family):
    if family == socket.AF_INET:
        return _u32_col(mv, off, length, cnt, OFF_DST).tolist()
    return zip(*(_u32_col(mv, off, length, cnt, OFF_DST + 4 * i).tolist() for i in range(4)))


def _fmt_addr(family: int, raw) -> str:
    import ipaddress

    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, struct.pack("=I", raw))
    addr = ipaddress.IPv6Address(struct.pack("=4I", *raw))
    return str(addr.ipv4_mapped or addr)


def _state_byte(s: int) -> int:
    # Request socks may report TCP_NEW_SYN_RECV on some kernels; fold them into SYN_RECV.
    return TcpState.SYN_RECV if s == TCP_NEW_SYN_RECV else s


def dump_table(
    families=(socket.AF_INET, socket.AF_INET6), states: int = ALL_STATES_MASK, by: str | None = None
) -> DiagTable:
    """Count TCP sockets per state (and per group when ``by`` is given) in the current network namespace.

    ``states`` is an inet_diag idiag_states bitmask (tcptune.kernel.states.states_mask).
    ``by``: None or 'state' (counts only), 'local-port', 'peer' or 'process' (groups keyed by
    local port, peer address string, or socket inode for the caller to map to owners).
    Raises SockDiagUnavailable when netlink sock_diag is not usable (the caller falls back to /proc).
    """
    if by not in (None, "state", "local-port", "peer", "process"):
        raise ValueError(f"unknown grouping {by!r}")
    if by in (None, "state"):
        # Counts only: listeners in their own (cheap) dump, everything else in ONE walk of
        # the established hash, whatever the mix of message lengths (_count_dump).
        kinds = [("listen", _LISTEN_MASK & states), ("count", states & ~_LISTEN_MASK)]
    else:
        # Columns per socket: one dump per kind keeps every message the same length.
        kinds = [(name, mask & states) for name, mask in _KIND_MASKS] + [("rest", _REST_MASK & states)]
    kinds = [(k, m) for k, m in kinds if m]
    both = set(families) == {socket.AF_INET, socket.AF_INET6}
    # Unpredictable (_count_dump finds headers by their bytes); os.urandom, not secrets,
    # which would import hashlib on the start-up path.
    seq0 = int.from_bytes(os.urandom(4), "little") >> 2 | 1
    with open_diag_socket() as sock:
        # Both families in one walk, unless the peer address width must be known per message.
        if both and by != "peer":
            table = DiagTable()
            try:
                for seq, (kind, mask) in enumerate(kinds, seq0):
                    _dump(sock, socket.AF_UNSPEC, kind, mask, seq, by, table)
                return table
            except SockDiagUnavailable:
                pass  # a kernel without the compat request: per family below
        table = DiagTable()
        seq = seq0 + 100
        for family in families:
            for kind, mask in kinds:
                seq += 1
                _dump(sock, family, kind, mask, seq, by, table)
    return table


def _dump(sock, family, kind, mask, seq, by, table: DiagTable) -> None:
    if kind == "count":
        _count_dump(sock, family, mask, seq, table)
    else:
        _dump_kind(sock, family, kind, mask, seq, by, table)


def _count_dump(sock, family: int, mask: int, seq: int, table: DiagTable) -> None:
    """Count one dump's sockets per state without walking its messages one by one.

    A dump of full sockets, TIME_WAIT socks and request socks interleaves three
    message lengths in hash order (runs average ~7 messages at a million sockets),
    so the strided columns of _dump_kind would cost a Python step per short run,
    and asking for each kind in its own dump costs the kernel one more walk of
    the established hash (0.17 s at a million sockets).  Instead every message
    header is found by its bytes: nlmsg_type, nlmsg_flags (NLM_F_MULTI, perhaps
    with NLM_F_DUMP_INTR), our nlmsg_seq and our port id are the same on every
    message of the dump (net/ipv4/inet_diag.c: inet_sk_diag_fill,
    inet_twsk_diag_fill and inet_req_diag_fill all nlmsg_put(skb, portid, seq,
    type, ..., NLM_F_MULTI)).  One regex pass per buffer copies the bytes from
    nlmsg_flags to idiag_sport of each message into one record array, and the
    columns are read from it with strided slices, in C.

    A match inside a message body would need those 12 bytes there, including
    the sequence number, which is random per dump and never leaves this
    process and the kernel.  Each buffer is still checked: its first message
    must start at 0, its last must end at the buffer's end, and there must be
    room for every match; a buffer that fails is parsed message by message
    (_count_exact).
    """
    rtype = _reply_type(family)
    try:
        sock.send(_request(family, mask, seq))
    except OSError as exc:
        raise SockDiagUnavailable(f"netlink sock_diag send: {exc.strerror}") from exc
    counter = StateCounter(rtype, seq, sock.getsockname()[0])
    for buf, n in _received(sock, counter.tail):
        mtype = buf[4] | (buf[5] << 8)
        if mtype == NLMSG_ERROR:
            _raise_nlmsg_error(buf, 0, family)
        if mtype == NLMSG_DONE:
            break
        last = _ends_dump(buf, n, counter.tail)
        counter.feed(buf, n - 20 if last else n)
        if last:
            break
    counter.finish(table)


def _ends_dump(buf, n: int, tail: bytes) -> bool:
    # The dump ends with NLMSG_DONE (20 bytes) carrying our seq and port id (``tail``),
    # the last message of the last buffer (net/netlink/af_netlink.c netlink_dump_done).
    return n >= 36 and struct.unpack_from("=IH", buf, n - 20) == (20, NLMSG_DONE) and buf[n - 12 : n - 4] == tail


def _received(sock, tail: bytes, pool: int = 8):
    """Yield (buffer, nbytes) for each buffer of a dump, received on a helper thread.

    The kernel fills the next dump buffer inside recvmsg() (netlink_recvmsg ->
    netlink_dump), with the GIL released, so a second thread receiving while
    this one counts the previous buffer overlaps the two: at a million sockets
    the counting (~0.08 s) hides behind the kernel's ~0.6 s.  A buffer is
    handed back to the pool once the caller asks for the next one.
    """
    import threading
    from queue import SimpleQueue

    full: SimpleQueue = SimpleQueue()
    free: SimpleQueue = SimpleQueue()
    for _ in range(pool):
        free.put(bytearray(RECV_BUF))
    stop = threading.Event()

    def receive() -> None:
        try:
            while not stop.is_set():
                buf = free.get()
                if buf is None:
                    return
                n = sock.recv_into(buf)
                full.put((buf, n))
                if n < 20 or (buf[4] | (buf[5] << 8)) in (NLMSG_DONE, NLMSG_ERROR) or _ends_dump(buf, n, tail):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            full.put((exc, 0))

    reader = threading.Thread(target=receive, name="tcptune-sockdiag", daemon=True)
    reader.start()
    try:
        while True:
            buf, n = full.get()
            if isinstance(buf, BaseException):
                if isinstance(buf, OSError):
                    raise TcptuneError(f"netlink sock_diag recv: {buf.strerror}", ExitCode.BAD_INPUT) from buf
                raise buf
            if n < 16:
                raise TcptuneError(f"netlink sock_diag: short message ({n} bytes)", ExitCode.BAD_INPUT)
            yield buf, n
            free.put(buf)
    finally:
        stop.set()
        free.put(None)  # wakes a reader waiting for a buffer
        reader.join()


class StateCounter:
    """Per-state counts (and pending requests per local port) of one dump's buffers; see _count_dump."""

    # Kept per message: nlmsg_flags (2), seq (4), pid (4), then family, state, timer, retrans, sport (2).
    REC = 16
    STATE = 11
    SPORT = 14

    def __init__(self, rtype: int, seq: int, portid: int):
        self.rtype = rtype
        self.tail = struct.pack("=II", seq, portid)
        flags = bytes([0x5B, NLM_F_MULTI, NLM_F_MULTI | NLM_F_DUMP_INTR, 0x5D])  # [\x02\x12]
        self.pat = re.compile(
            rb"(?s)"
            + re.escape(struct.pack("=H", rtype))
            + rb"("
            + flags
            + rb"\x00"
            + re.escape(self.tail)
            + rb"......)"
        )
        self.per_state = [0] * 256
        self.syn_hi, self.syn_lo = bytearray(), bytearray()
        self.interrupted = False
        self.exact_buffers = 0  # buffers that needed the message-by-message parse

    def feed(self, buf, end: int) -> None:
        """Count the messages in buf[:end] (whole messages, no NLMSG_DONE)."""
        R = self.REC
        rec = b"".join(self.pat.findall(buf, 0, end))
        m = len(rec) // R
        if self._framed(buf, end, m):
            st = rec[self.STATE :: R]
            if rec[0::R].count(NLM_F_MULTI) != m:
                self.interrupted = True
            for code in (TcpState.SYN_RECV, TCP_NEW_SYN_RECV):
                if code in st:  # the local port of each pending request, for the backlog warning
                    sel = st.translate(_SELECT[code])
                    self.syn_hi += bytes(compress(rec[self.SPORT :: R], sel))
                    self.syn_lo += bytes(compress(rec[self.SPORT + 1 :: R], sel))
        else:
            self.exact_buffers += 1
            st = self._exact(buf, end)
        per_state = self.per_state
        for s in set(st):
            per_state[s] += st.count(s)

    def _framed(self, buf, end: int, m: int) -> bool:
        """Do the m header matches frame buf[:end]: first message at 0, last one ending at ``end``?"""
        if m < 1 or m * MIN_MSG > end or buf[8:16] != self.tail or buf[4] | (buf[5] << 8) != self.rtype:
            return False
        q = buf.rfind(self.tail, 0, end) - 8  # the last header
        return q >= 0 and q + int.from_bytes(buf[q : q + 4], sys.byteorder) == end

    def _exact(self, buf, end: int) -> bytes:
        """Message by message: the state bytes; pending requests' ports and NLM_F_DUMP_INTR on the way."""
        states = bytearray()
        off = 0
        while off < end:
            length, mtype, flags = struct.unpack_from("=IHH", buf, off)
            if length < 16 or off + length > end:
                raise TcptuneError(f"netlink sock_diag: malformed message length {length} at {off}", ExitCode.BAD_INPUT)
            if mtype == self.rtype and length >= MIN_MSG:
                self.interrupted |= bool(flags & NLM_F_DUMP_INTR)
                s = buf[off + OFF_STATE]
                states.append(s)
                if s in (TcpState.SYN_RECV, TCP_NEW_SYN_RECV):
                    self.syn_hi.append(buf[off + OFF_SPORT])
                    self.syn_lo.append(buf[off + OFF_SPORT + 1])
            off += (length + 3) & ~3
        return bytes(states)

    def finish(self, table: DiagTable) -> None:
        for (hi, lo), c in Counter(zip(self.syn_hi, self.syn_lo)).items():
            table.syn_recv_by_port[(hi << 8) | lo] += c
        for s, c in enumerate(self.per_state):
            if c:
                table.counts[_state_byte(s)] += c
        table.interrupted |= self.interrupted


def _raise_nlmsg_error(buf, off: int, family: int):
    err = -struct.unpack_from("=i", buf, off + 16)[0]
    if err in (errno.ENOENT, errno.EOPNOTSUPP, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EINVAL):
        raise SockDiagUnavailable(f"inet_diag for family {family}: {os.strerror(err)}")
    raise TcptuneError(f"netlink sock_diag dump failed: {os.strerror(err)}", ExitCode.BAD_INPUT)


def _dump_kind(sock, family, kind, mask, seq, by, table: DiagTable) -> None:
    per_state = [0] * 256
    groups = table.groups
    port_groups: Counter = Counter()
    addr_groups: Counter = Counter()
    syn_recv_ports = table.syn_recv_by_port
    for mv, off, length, cnt, intr in iter_runs(sock, family, mask, seq):
        if intr:
            table.interrupted = True
        if kind == "listen":
            for i in range(cnt):
                table.listeners.append(_listener(mv, off + i * length))
        st = mv[off + OFF_STATE : off + OFF_STATE + (cnt - 1) * length + 1 : length].tobytes()
        for s in set(st):
            per_state[s] += st.count(s)
        if kind == "mini":
            # Pending requests per local port, for the listen-backlog warning.  Found with
            # bytes.find so the cost follows the (usually few) SYN_RECV, not TIME_WAIT.
            for code in (TcpState.SYN_RECV, TCP_NEW_SYN_RECV):
                many = st.count(code)
                if many > 16:  # many: select them in C (compress) from the port column
                    sel = st.translate(_SELECT[code])
                    for be, c in Counter(compress(_u16_col(mv, off, length, cnt, OFF_SPORT), sel)).items():
                        syn_recv_ports[_ntohs(be)] += c
                    continue
                i = st.find(code) if many else -1
                while i >= 0:
                    o = off + i * length + OFF_SPORT
                    syn_recv_ports[(mv[o] << 8) | mv[o + 1]] += 1
                    i = st.find(code, i + 1)
        if by is None or by == "state":
            continue
        if by == "local-port":
            port_groups.update(zip(st, _port_col(mv, off, length, cnt, OFF_SPORT)))
        elif by == "peer":
            addr_groups.update(zip(st, _addr_col(mv, off, length, cnt, family)))
        else:  # process: kept as columns, joined with the owner index by the caller
            table.sock_states += st
            table.sock_inodes.frombytes(_u32_col(mv, off, length, cnt, OFF_INODE).tobytes())
    counts = table.counts
    for s, c in enumerate(per_state):
        if c:
            counts[_state_byte(s)] += c
    for (s, (h, l_)), c in port_groups.items():
        groups[(_state_byte(s), (h << 8) | l_)] += c
    for (s, raw), c in addr_groups.items():
        groups[(_state_byte(s), _fmt_addr(family, raw))] += c


def _listener(mv, o) -> Listener:
    return Listener(
        family=mv[o + OFF_FAMILY],
        address=_fmt_src(mv, o),
        port=(mv[o + OFF_SPORT] << 8) | mv[o + OFF_SPORT + 1],
        accept_queue=struct.unpack_from("=I", mv, o + OFF_RQUEUE)[0],
        backlog=struct.unpack_from("=I", mv, o + OFF_WQUEUE)[0],
        inode=struct.unpack_from("=I", mv, o + OFF_INODE)[0],
    )


def _fmt_src(mv, o) -> str:
    family = mv[o + OFF_FAMILY]
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, mv[o + OFF_SRC : o + OFF_SRC + 4].tobytes())
    return socket.inet_ntop(socket.AF_INET6, mv[o + OFF_SRC : o + OFF_SRC + 16].tobytes())


def discard_dump(families=(socket.AF_INET, socket.AF_INET6), states: int = ALL_STATES_MASK) -> int:
    """The floor: dump requests read and thrown away.  Returns bytes read.

    ``families`` (AF_INET, AF_INET6) sends one request per family, as `ss` does;
    (AF_UNSPEC,) sends one TCPDIAG_GETSOCK request covering both.
    """
    total = 0
    buf = bytearray(RECV_BUF)
    with open_diag_socket() as sock:
        for seq, family in enumerate(families, 1):
            sock.send(_request(family, states, seq))
            while True:
                n = sock.recv_into(buf)
                total += n
                # The dump ends with NLMSG_DONE (20 bytes, the last message of the last skb).
                if n >= 20 and buf[n - 20 + 4] == NLMSG_DONE and buf[n - 20 + 5] == 0 and buf[n - 20] == 20:
                    break
                if n >= 16 and buf[4] == NLMSG_ERROR:
                    break
    return total


# -- owners: socket inode -> (pid, name) -------------------------------------------


_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")


def socket_owner_index(proc: str = "/proc") -> tuple[dict[int, int], list[tuple[int, str]], int]:
    """(inode -> owner number, owners [(pid, name)], unreadable pids), one pass over /proc/*/fd.

    Built for a million sockets: per process the fd links are read with readlinkat()
    mapped in C, the socket inodes pulled out by one regex over the joined links, and
    the dict updated from a zip: no Python step per fd.  Pids are visited highest
    first so that, a socket shared by several processes ends up credited to the lowest.
    """
    index: dict[int, int] = {}
    owners: list[tuple[int, str]] = []
    unreadable = 0
    readlink = os.readlink
    try:
        pids = sorted((int(p) for p in os.listdir(proc) if p.isdigit()), reverse=True)
    except OSError as exc:
        raise TcptuneError(f"cannot list {proc}: {exc.strerror}", ExitCode.BAD_INPUT) from exc
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    for pid in pids:
        try:
            dfd = os.open(f"{proc}/{pid}/fd", flags)
        except OSError:
            unreadable += 1
            continue
        try:
            names = os.listdir(dfd)
            try:
                links = list(map(partial(readlink, dir_fd=dfd), names))
            except OSError:  # an fd closed meanwhile: again, one by one
                links = []
                for name in names:
                    try:
                        links.append(readlink(name, dir_fd=dfd))
                    except OSError:
                        continue
        except OSError:
            unreadable += 1
            continue
        finally:
            os.close(dfd)
        inodes = _SOCKET_LINK.findall("\n".join(links))
        if not inodes:
            continue
        try:
            with open(f"{proc}/{pid}/comm", "rb") as fh:
                name = fh.read().decode("utf-8", "replace").strip()
        except OSError:
            name = "?"
        index.update(zip(map(int, inodes), repeat(len(owners))))
        owners.append((pid, name))
    return index, owners, unreadable


def group_by_owner(table: DiagTable, index: dict[int, int], owners: list) -> Counter:
    """(TcpState, owner) -> sockets, owner being (pid, name), NO_OWNER (inode 0) or None (not visible)."""
    from tcptune.core.socket_summary import NO_OWNER

    no_owner = -1
    index[0] = no_owner  # TIME_WAIT, request socks and orphans have no struct socket
    try:
        joined = Counter(zip(table.sock_states, map(index.get, table.sock_inodes)))
    finally:
        del index[0]
    out: Counter = Counter()
    for (s, idx), c in joined.items():
        owner = None if idx is None else (NO_OWNER if idx == no_owner else owners[idx])
        out[(_state_byte(s), owner)] += c
    return out


def read_sockstat(proc: str = "/proc") -> dict[str, int]:
    """The TCP line of /proc/net/sockstat: inuse, orphan, tw, alloc, mem (orphan is host-wide)."""
    try:
        with open(f"{proc}/net/sockstat") as fh:
            text = fh.read()
    except OSError:
        return {}
    from tcptune.core.procfs import parse_sockstat

    return parse_sockstat(text).get("TCP", {})


def monotonic() -> float:
    return time.monotonic()


# -- one sample as a tcptune.core.socket_summary.Summary ------------------------------------------


def collect_summary(host, by: str | None = None, states=None, families=(socket.AF_INET, socket.AF_INET6)):
    """Read the socket table ``host`` stands for: netlink for the live host (or --netns),
    /proc/net/tcp{,6} for a --root snapshot or when netlink is unavailable.

    ``states``: a set of TcpState (None = all).  For by='process' the groups come back
    keyed by owner ((pid, name), tcptune.core.socket_summary.NO_OWNER, or None when not visible).
    """
    from tcptune.core.socket_summary import ListenerInfo, Summary, normalize_counts, resolve_process_groups
    from tcptune.kernel.states import states_mask

    if getattr(host, "kind", None) == "dump":
        raise TcptuneError(
            f"{host.label} holds sysctl values, not a socket table",
            ExitCode.BAD_INPUT,
            hint="`tcptune states` reads the live host, --netns, or --root DIR holding proc/net/tcp",
        )
    if by == "process" and not host.is_live:
        raise TcptuneError(
            f"--by process needs running processes; {host.label} is a snapshot",
            ExitCode.BAD_INPUT,
            hint="use --by local-port or --by peer with --root",
        )
    summary = table = None
    if host.is_live:
        try:
            t = table = dump_table(families, states_mask(states or ()), by)
        except SockDiagUnavailable as exc:
            summary = _summary_from_proc(host, by, states, families)
            summary.notes.insert(0, f"netlink sock_diag unavailable ({exc}); read /proc/net/tcp and tcp6 instead")
        else:
            summary = Summary(
                source="netlink sock_diag" + ("" if host.label == "live host" else f" ({host.label})"),
                counts=normalize_counts(t.counts),
                groups=t.groups,
                listeners=[ListenerInfo(x.address, x.port, x.accept_queue, x.backlog, x.inode) for x in t.listeners],
                syn_recv_by_port=t.syn_recv_by_port,
            )
            # /proc/net/sockstat "orphan" is tcp_orphan_count, the host-wide number the
            # kernel compares with tcp_max_orphans (net/ipv4/tcp.c tcp_check_oom).
            summary.orphans = read_sockstat().get("orphan")
            if t.interrupted:
                summary.notes.append("the kernel flagged the dump as interrupted (sockets changed while it was read)")
    else:
        summary = _summary_from_proc(host, by, states, families)
    if by == "process":
        index, owners, _unreadable = socket_owner_index()
        if table is not None:
            summary.groups = group_by_owner(table, index, owners)
        else:  # /proc rows: groups keyed (state, inode)
            summary.groups = resolve_process_groups(summary.groups, {ino: owners[i] for ino, i in index.items()})
    return summary


def _summary_from_proc(host, by, states, families):
    from tcptune.core.procfs import parse_proc_net_tcp
    from tcptune.core.socket_summary import summarize_rows

    rows, notes, read = [], [], []
    for family, rel in ((socket.AF_INET, "net/tcp"), (socket.AF_INET6, "net/tcp6")):
        if family not in families:
            continue
        text = host.read_proc_text(rel)
        if text is None:
            continue
        path = str(host.proc_path(rel))
        read.append(path)
        r, warns = parse_proc_net_tcp(text, family, source=path)
        rows.extend(r)
        notes.extend(str(w) for w in warns)
    if not read:
        raise TcptuneError(
            f"{host.label}: no proc/net/tcp or proc/net/tcp6 to read",
            ExitCode.BAD_INPUT,
            hint="a --root snapshot needs proc/net/tcp (copy /proc/net/tcp and tcp6 into DIR/proc/net/)",
        )
    summary = summarize_rows(rows, by, states, source=" + ".join(read))
    summary.notes.extend(notes)
    return summary
