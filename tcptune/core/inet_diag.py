"""The inet_diag message layout and the counters that read a dump without a Python step per socket (pure).

Bytes in, values out: tcptune.host.sockdiag sends the requests built here and hands every
received buffer to ``consume``; a test replays recorded buffers the same way.

A dump arrives as netlink messages of ``struct nlmsghdr`` + ``struct inet_diag_msg``
(include/uapi/linux/inet_diag.h) + attributes.  At a million sockets the kernel's own
dump is most of the cost (bench/README.md), so Python may add almost nothing per socket.
A dump of full sockets, TIME_WAIT socks and request socks interleaves three message
lengths in hash order (runs average ~7 messages at a million sockets), so the messages
cannot be read as one strided array.  Instead every message header is found by its bytes:
nlmsg_type, nlmsg_flags (NLM_F_MULTI, perhaps with NLM_F_DUMP_INTR), our nlmsg_seq and our
port id are the same on every message of the dump (net/ipv4/inet_diag.c:
inet_sk_diag_fill, inet_twsk_diag_fill and inet_req_diag_fill all nlmsg_put(skb, portid,
seq, type, ..., NLM_F_MULTI)).  One regex pass per buffer copies the bytes from
nlmsg_type up to the last field a view needs (the state byte; the local port; the peer
address; the inode) of each message into one record array, and every column is a strided
slice of it, counted in C (``bytes.count``, ``Counter`` over fixed-width keys).

A match inside a message body would need those 12 bytes there, including the sequence
number, which is random per dump and never leaves this process and the kernel.  Each
buffer is still checked: its first message must start at 0, its last must end at the
buffer's end, and there must be room for every match; a buffer that fails is parsed
message by message (same records, slower).
"""

from __future__ import annotations

import errno
import heapq
import os
import re
import socket
import struct
import sys
from array import array
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import and_, itemgetter, rshift

from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.states import TCP_NEW_SYN_RECV, TcpState, state_from_kernel

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
DONE_LEN = 20  # nlmsghdr + the int dump_done_errno (net/netlink/af_netlink.c netlink_dump_done)

# struct inet_diag_msg offsets from the start of the netlink message (16-byte nlmsghdr):
#   __u8 idiag_family, idiag_state, idiag_timer, idiag_retrans;
#   struct inet_diag_sockid { __be16 sport, dport; __be32 src[4], dst[4]; __u32 if; __u32 cookie[2]; };
#   __u32 idiag_expires, idiag_rqueue, idiag_wqueue, idiag_uid, idiag_inode;
OFF_FLAGS = 6
OFF_FAMILY = 16
OFF_STATE = 17
OFF_SPORT = 20
OFF_DPORT = 22
OFF_SRC = 24
OFF_DST = 40
OFF_COOKIE = 60  # idiag_cookie[2]: sock_gen_cookie(), unique per socket for the boot (net/core/sock_diag.c)
OFF_RQUEUE = 72
OFF_WQUEUE = 76
OFF_INODE = 84
MIN_MSG = 88  # nlmsghdr + inet_diag_msg

# Netlink hands out at most one skb per recvmsg(); the kernel sizes dump skbs from
# the largest buffer userspace offered, capped at 32 KiB (net/netlink/af_netlink.c
# netlink_recvmsg: max_recvmsg_len).  A larger buffer costs nothing.
RECV_BUF = 1 << 17

LISTEN_MASK = 1 << TcpState.LISTEN

# How far into each message a view reads (the record holds bytes 4 .. end).
_RECORD_END = {None: OFF_DPORT, "state": OFF_DPORT, "local-port": OFF_DPORT, "peer": OFF_DST + 16}
_RECORD_END["process"] = OFF_INODE + 4
# One socket followed across samples (doctor's CLOSE_WAIT check): cookie and inode.
_RECORD_END["cookies"] = OFF_INODE + 4
# Doctor's view: both ports and both addresses (ephemeral-port use per destination), and the
# timer, Recv-Q and inode of the few sockets whose receiver is not reading.
_RECORD_END["dest"] = OFF_INODE + 4
TIMER_PROBE0 = 4  # idiag_timer of a socket in zero-window probing (inet_sk_diag_fill(): ICSK_TIME_PROBE0)
_IS_SYN_SENT = bytes(1 if i == TcpState.SYN_SENT else 0 for i in range(256))
_IS_CLOSE_WAIT = bytes(1 if i == TcpState.CLOSE_WAIT else 0 for i in range(256))
_IS_PROBE0 = bytes(1 if i == TIMER_PROBE0 else 0 for i in range(256))
_NONZERO = bytes([0]) + bytes([1]) * 255
# States whose retransmissions are data or FIN (icsk_retransmits): ESTABLISHED, FIN_WAIT1,
# CLOSE_WAIT, LAST_ACK, CLOSING.  SYN_SENT and SYN_RECV ones are SYNs and SYN-ACKs, which the
# syn-sent and syn-queue checks judge by destination and listener; counting them here made
# 10^5 "retransmitting" records out of a half-open population.
_DATA_STATE = bytes(
    1
    if i in (TcpState.ESTABLISHED, TcpState.FIN_WAIT1, TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.CLOSING)
    else 0
    for i in range(256)
)
# by='dest': the destinations kept, busiest first; the rest are counted, never formatted (at a
# million sockets there can be 10^6 of them, mostly of one socket each).
DEST_KEEP = 64
# idiag_rqueue is a native u32: the bytes that are nonzero from 64 KiB up
_RQUEUE_HIGH = (2, 3) if sys.byteorder == "little" else (0, 1)
RQUEUE_FULLISH = 1 << 16  # Recv-Q from this many bytes up counts as a receiver not reading
_IS_INET = bytes(1 if i == socket.AF_INET else 0 for i in range(256))
_IS_INET6 = bytes(0 if i == socket.AF_INET else 1 for i in range(256))  # what is not AF_INET: 16-byte addresses
_SYN_STATES = (TcpState.SYN_RECV, TCP_NEW_SYN_RECV)
_KNOWN = {*map(int, TcpState), TCP_NEW_SYN_RECV}
_SELECT = {code: bytes(1 if i == code else 0 for i in range(256)) for code in _SYN_STATES}
# state byte -> TcpState (None: not a state); request socks count as SYN_RECV (state_from_kernel).
# Built from the members, not by asking state_from_kernel for all 256 bytes (244 ValueErrors
# on every start).
_STATE_OF = tuple(state_from_kernel(i) if i in _KNOWN else None for i in range(256))
# The same as plain ints, for the group keys: a tuple holding an int is built ~3x faster than
# one holding an enum member, and (int, key) finds (TcpState, key) in a dict (equal hashes).
_STATE_INT = tuple(None if x is None else int(x) for x in _STATE_OF)
# local-port keys: the state byte and the port's two bytes packed in a native u32 so that
# key >> 16 is the state and key & 0xFFFF the port, whatever the byte order.
_PORT_KEY = (0, 1, 2) if sys.byteorder == "little" else (3, 2, 1)  # positions of port low, port high, state


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


@dataclass(frozen=True)
class Stalled:
    """A socket whose data is not moving: its peer's window is zero (timer 4), it is retransmitting
    (idiag_retrans > 0), or its Recv-Q is large."""

    state: int
    local: str
    local_port: int
    peer: str
    peer_port: int
    timer: int  # idiag_timer: 4 = zero-window probe
    retrans: int  # idiag_retrans: icsk_retransmits, consecutive retransmissions of the oldest unacked data
    rqueue: int  # bytes received and not read (tcp_diag_get_info(): rcv_nxt - copied_seq)
    wqueue: int  # bytes not yet acknowledged (write_seq - snd_una)
    inode: int


@dataclass
class DiagTable:
    """What one pass over the kernel's TCP table found (values only; rendering is tcptune.render.states)."""

    counts: Counter = field(default_factory=Counter)  # TcpState -> sockets
    groups: Counter = field(default_factory=Counter)  # (TcpState, key) -> sockets, when grouped
    group_totals: Counter = field(default_factory=Counter)  # key -> sockets (local-port, peer)
    listeners: list = field(default_factory=list)  # Listener
    syn_recv_by_port: Counter = field(default_factory=Counter)  # local port -> pending requests
    interrupted: bool = False  # the kernel flagged NLM_F_DUMP_INTR
    # by='process': the raw state byte and inode of every socket, 5 bytes a socket
    # (a dict or Counter keyed per socket would cost ~200 bytes each at a million).
    sock_states: bytearray = field(default_factory=bytearray)
    sock_inodes: array = field(default_factory=lambda: array("I"))
    # by='cookies': each socket's idiag_cookie (native u64), in the order of sock_inodes
    sock_cookies: array = field(default_factory=lambda: array("Q"))
    # by='dest': (local address, peer address, peer port) -> sockets whose local port is in the
    # port range asked for and no listener's (LISTEN not counted: it has no peer), the DEST_KEEP
    # busiest only
    destinations: Counter = field(default_factory=Counter)
    syn_sent_destinations: Counter = field(default_factory=Counter)  # by='dest': every SYN_SENT socket, kept alike
    # by='dest': sockets in zero-window probing or with Recv-Q >= RQUEUE_FULLISH (few)
    stalled: list = field(default_factory=list)  # Stalled
    # by='dest': cookie -> inode of each CLOSE_WAIT socket (what sockets_in_state() gives, without a second dump)
    close_wait: dict = field(default_factory=dict)


def _port_table(port_range: tuple[int, int], exclude=frozenset()) -> bytes:
    """65536 bytes, 1 at each port in ``port_range`` and not in ``exclude``, indexed by the
    port's two network-order bytes read as a native u16 (as memoryview.cast("H") reads a
    column of idiag_sport)."""
    lo, hi = port_range
    net = bytearray(65536)  # indexed by the port itself
    net[lo : hi + 1] = bytes([1]) * (hi - lo + 1)
    for port in exclude:
        net[port] = 0
    if sys.byteorder == "big":
        return bytes(net)
    # little-endian: bytes (h, l) read as l << 8 | h, so the table is net transposed as 256 x 256
    out = bytearray(65536)
    for h in range(256):
        out[h::256] = net[h * 256 : (h + 1) * 256]
    return bytes(out)


def _both(a: bytes, b: bytes) -> bytes:
    """Per socket, 1 where both 0/1 columns are 1 (as big integers: one C step)."""
    return (int.from_bytes(a, "little") & int.from_bytes(b, "little")).to_bytes(len(a), "little")


def request(family: int, states: int, seq: int) -> bytes:
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


INET_DIAG_NOCOOKIE = 0xFFFFFFFF  # include/uapi/linux/inet_diag.h: "no cookie, match the 4-tuple"


def lookup_request(
    local_port: int, remote_port: int, address: bytes, seq: int = 1, remote: bytes | None = None
) -> bytes:
    """An exact lookup of one 4-tuple (both ends at ``address`` unless ``remote`` is given; 4 bytes:
    IPv4, 16: IPv6): SOCK_DIAG_BY_FAMILY without NLM_F_DUMP, so the kernel does one hash lookup
    (inet_diag_find_one_icsk())."""
    family = socket.AF_INET if len(address) == 4 else socket.AF_INET6
    src = address + bytes(16 - len(address))
    dst = (address if remote is None else remote) + bytes(16 - len(remote or address))
    sockid = (
        struct.pack(">HH", local_port, remote_port)
        + src
        + dst
        + struct.pack("=III", 0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
    )
    body = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    return struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0) + body


def lookup_reply(data: bytes) -> tuple[int, int, int, int] | None:
    """(kernel state, local port, remote port, idiag_retrans) from the answer to ``lookup_request``;
    None when the kernel has no socket for the 4-tuple (ENOENT).  Other errors raise OSError."""
    if len(data) < 20:
        return None
    mtype = struct.unpack_from("=H", data, 4)[0]
    if mtype == NLMSG_ERROR:
        err = -struct.unpack_from("=i", data, 16)[0]
        if err in (0, errno.ENOENT):
            return None
        raise OSError(err, os.strerror(err))
    if len(data) < OFF_DPORT + 2:
        raise _malformed("a sock_diag lookup reply shorter than its header")
    state, retrans = data[OFF_STATE], data[OFF_STATE + 2]  # idiag_state, idiag_timer, idiag_retrans
    lport, rport = struct.unpack_from(">HH", data, OFF_SPORT)
    return state, lport, rport, retrans


def reply_type(family: int) -> int:
    return TCPDIAG_GETSOCK if family == socket.AF_UNSPEC else SOCK_DIAG_BY_FAMILY


def _malformed(what: str) -> TcptuneError:
    return TcptuneError(
        f"netlink sock_diag: {what}, which the kernel never sends",
        ExitCode.BAD_INPUT,
        hint="rerun; if it persists, report it with the kernel version (uname -r)",
    )


def _ends_with_done(buf, n: int, tail: bytes) -> bool:
    # The dump ends with NLMSG_DONE (20 bytes) carrying our seq and port id (``tail``),
    # the last message of the last buffer (net/netlink/af_netlink.c netlink_dump_done).
    return (
        n >= 16 + DONE_LEN
        and struct.unpack_from("=IH", buf, n - DONE_LEN) == (DONE_LEN, NLMSG_DONE)
        and buf[n - 12 : n - 4] == tail
    )


def is_last_buffer(buf, n: int, tail: bytes) -> bool:
    """Is this received buffer the last of its dump?  The receiver stops reading after it.

    ``consume`` ends on exactly these buffers (or raises), so a reader never waits for
    a buffer the kernel will not send.
    """
    return n < DONE_LEN or (buf[4] | (buf[5] << 8)) in (NLMSG_DONE, NLMSG_ERROR) or _ends_with_done(buf, n, tail)


def consume(buffers, counter: DumpCounter, family: int) -> None:
    """Feed one dump's received buffers ((buffer, nbytes) pairs) to ``counter`` until NLMSG_DONE."""
    tail = counter.tail
    for buf, n in buffers:
        if n < DONE_LEN:  # every reply holds a whole message; the shortest, NLMSG_DONE, is 20 bytes
            raise _malformed(f"a reply of {n} bytes")
        mtype = buf[4] | (buf[5] << 8)
        if mtype == NLMSG_ERROR:
            raise_nlmsg_error(buf, family)
        if mtype == NLMSG_DONE:
            return
        last = _ends_with_done(buf, n, tail)
        counter.feed(buf, n - DONE_LEN if last else n)
        if last:
            return
    raise _malformed("a dump that ended without NLMSG_DONE")


def raise_nlmsg_error(buf, family: int):
    err = -struct.unpack_from("=i", buf, 16)[0]
    if err in (errno.ENOENT, errno.EOPNOTSUPP, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EINVAL):
        raise SockDiagUnavailable(f"inet_diag for family {family}: {os.strerror(err)}")
    try:
        why = os.strerror(err)
    except (ValueError, OverflowError):
        why = f"error {err}"
    raise TcptuneError(f"netlink sock_diag dump failed: {why}", ExitCode.BAD_INPUT)


class DestKeys:
    """Counts the dest view's keys: per key width, the sockets whose local port is in range and,
    apart, the SYN_SENT ones; ``busiest()`` keeps the DEST_KEEP most frequent of each.

    A separate object so that the host can run it elsewhere (tcptune.host.sockdiag counts a
    big dump's keys in a forked child, in parallel with the decoding): ``add`` receives only
    bytes, ``busiest`` returns only bytes and ints.
    """

    def __init__(self) -> None:
        self.counted: dict[int, tuple[Counter, Counter]] = {}

    def add(self, k: int, keys: bytes, in_range: bytes, syn_sent: bytes) -> None:
        """``keys``: one k-byte key per socket; ``in_range``/``syn_sent``: 0/1 per socket (b"": none)."""
        dest, syn = self.counted.setdefault(k, (Counter(), Counter()))
        cut = list(struct.iter_unpack(f"{k}s", keys))  # 1-tuples: cheaper to make and count than slices
        n = in_range.count(1)
        if n:
            dest.update(cut if n == len(cut) else compress(cut, in_range))
        if 1 in syn_sent:  # whatever their port: doctor's syn-sent check, from this same dump
            syn.update(compress(cut, syn_sent))

    def busiest(self) -> dict[int, tuple[list, list]]:
        """key width -> ([(key, sockets)] in range, [(key, sockets)] SYN_SENT), DEST_KEEP each at most."""
        return {
            k: tuple(
                [(raw, c) for (raw,), c in heapq.nlargest(DEST_KEEP, counted.items(), key=itemgetter(1))]
                for counted in pair
            )
            for k, pair in self.counted.items()
        }


class DumpCounter:
    """Per-state counts, and the columns a view needs, of one dump's buffers; see the module docstring.

    ``by``: None/'state' (counts), 'local-port', 'peer' or 'process' (state + inode
    columns kept for the owner join).  ``listeners``: also decode each message as a
    Listener (the LISTEN dump; listeners are few).  Pending requests per local port are
    always collected, for the listen-backlog warning.
    """

    def __init__(
        self,
        rtype: int,
        seq: int,
        portid: int,
        by: str | None = None,
        listeners: bool = False,
        port_range: tuple[int, int] | None = None,
        exclude_ports=frozenset(),
        dest_keys=None,
    ):
        if by not in _RECORD_END:
            raise ValueError(f"unknown grouping {by!r}")
        if by == "dest" and port_range is None:
            raise ValueError("by='dest' counts the sockets in a port range: give port_range")
        self.port_ok = _port_table(port_range, exclude_ports) if by == "dest" else b""
        self.rtype = rtype
        self.by = by
        self.listeners = [] if listeners else None
        self.end = MIN_MSG if listeners else _RECORD_END[by]
        self.rec_len = self.end - 4  # a record holds message bytes 4 .. end
        self.tail = struct.pack("=II", seq, portid)
        flags = bytes([0x5B, NLM_F_MULTI, NLM_F_MULTI | NLM_F_DUMP_INTR, 0x5D])  # [\x02\x12]
        self.pat = re.compile(
            rb"(?s)("
            + re.escape(struct.pack("=H", rtype))
            + flags
            + rb"\x00"
            + re.escape(self.tail)
            + rb".{%d})" % (self.end - 16)
        )
        self.per_state = [0] * 256
        self.syn_hi, self.syn_lo = bytearray(), bytearray()
        self.keys: Counter = Counter()  # local-port: state|port packed in a u32; peer: 20-byte keys
        self.sock_states = bytearray()
        self.sock_inodes = array("I")
        self.sock_cookies = array("Q")
        self.stalled_records: list = []
        # by='dest': the destination keys' counter (DestKeys, or what the host gives, e.g. one in a child)
        self.dest_keys = (dest_keys if dest_keys is not None else DestKeys()) if by == "dest" else None
        self.interrupted = False

    def feed(self, buf, end: int) -> None:
        """Count the messages in buf[:end] (whole messages, no NLMSG_DONE)."""
        R = self.rec_len
        rec = b"".join(self.pat.findall(buf, 0, end))
        m = len(rec) // R
        if not self._framed(buf, end, m):
            rec = self._exact(buf, end)
            m = len(rec) // R
        if not m:
            return
        st = rec[OFF_STATE - 4 :: R]
        flags = rec[OFF_FLAGS - 4 :: R]
        if flags.count(NLM_F_MULTI) != m:
            self.interrupted |= any(f & NLM_F_DUMP_INTR for f in set(flags))
        sport = OFF_SPORT - 4
        for code in _SYN_STATES:
            if code in st:  # the local port of each pending request, for the backlog warning
                sel = st.translate(_SELECT[code])
                self.syn_hi += bytes(compress(rec[sport::R], sel))
                self.syn_lo += bytes(compress(rec[sport + 1 :: R], sel))
        per_state = self.per_state
        for s in set(st):
            per_state[s] += st.count(s)
        by = self.by
        if by == "local-port":
            # state, port high byte, port low byte, 0: one u32 key per socket, counted in C.
            keys = bytearray(4 * m)
            lo, hi, state = _PORT_KEY
            keys[lo::4] = rec[sport + 1 :: R]  # idiag_sport is big-endian: its second byte is the low one
            keys[hi::4] = rec[sport::R]
            keys[state::4] = st
            self.keys.update(memoryview(keys).cast("I"))
        elif by == "peer":
            # family, the 16 address bytes, state: one (peer, state) key per socket, counted in C.
            keys = bytearray(18 * m)
            keys[0::18] = rec[OFF_FAMILY - 4 :: R]
            dst = OFF_DST - 4
            for i in range(16):
                keys[1 + i :: 18] = rec[dst + i :: R]
            keys[17::18] = st
            self.keys.update(struct.iter_unpack("17sB", keys))
        elif by == "process":
            self.sock_states += st
            self.sock_inodes.frombytes(memoryview(rec).cast("I")[(OFF_INODE - 4) // 4 :: R // 4].tobytes())
        elif by == "cookies":
            self._take_cookies(rec, m, None)
        elif by == "dest" and self.listeners is None:
            self._pick_stalled(rec, m)
            self._count_destinations(rec, m, st)
            if TcpState.CLOSE_WAIT in st:  # doctor's CLOSE_WAIT check, from this same dump
                self._take_cookies(rec, m, st.translate(_IS_CLOSE_WAIT))
        if self.listeners is not None:
            self.listeners.extend(_listener(rec, i * R) for i in range(m))

    def _take_cookies(self, rec: bytes, m: int, sel: bytes | None) -> None:
        """Append the inode and cookie of each socket (of those ``sel`` marks 1) to sock_inodes/sock_cookies."""
        R = self.rec_len
        inodes = memoryview(rec).cast("I")[(OFF_INODE - 4) // 4 :: R // 4]
        cookies = bytearray(8 * m)
        for i in range(8):
            cookies[i::8] = rec[OFF_COOKIE - 4 + i :: R]
        if sel is None:
            self.sock_inodes.frombytes(inodes.tobytes())
            self.sock_cookies.frombytes(cookies)
        else:
            self.sock_inodes.extend(compress(inodes, sel))
            self.sock_cookies.extend(compress(memoryview(cookies).cast("Q"), sel))

    def _count_destinations(self, rec: bytes, m: int, st: bytes) -> None:
        """(family, peer port, local address, peer address) keys of the sockets whose local port is
        in range (and no listener's), and apart those of every SYN_SENT socket."""
        R = self.rec_len
        sport = OFF_SPORT - 4
        # the local port as a u16 per socket, looked up in a 64 Ki table: one C pass (map over a
        # memoryview), where range and exclusion tests per port byte took two translate()s per
        # listener port high byte (150 per buffer with the bench's listeners)
        ports = bytearray(2 * m)
        ports[0::2] = rec[sport::R]
        ports[1::2] = rec[sport + 1 :: R]
        sel = bytes(map(self.port_ok.__getitem__, memoryview(ports).cast("H")))
        n = sel.count(1)
        syn_sent = st.translate(_IS_SYN_SENT) if TcpState.SYN_SENT in st else None
        if not n and syn_sent is None:
            return
        # Keys are built column by column (strided copies, C loops) and cut by iter_unpack:
        # short keys hash and compare faster.  IPv4 sockets get 11-byte keys (the
        # addresses' first 4 bytes; the rest is zero for AF_INET), IPv6 ones 35: one key per
        # destination whichever buffer it is in.
        fam = rec[OFF_FAMILY - 4 :: R]
        if fam.count(socket.AF_INET) == m:
            parts = ((4, sel, syn_sent),)
        else:
            v4, v6 = fam.translate(_IS_INET), fam.translate(_IS_INET6)
            parts = (
                (4, _both(sel, v4), syn_sent and _both(syn_sent, v4)),
                (16, _both(sel, v6), syn_sent and _both(syn_sent, v6)),
            )
        for width, pick, pick_syn in parts:
            wanted, wanted_syn = 1 in pick, pick_syn is not None and 1 in pick_syn
            if not (wanted or wanted_syn):
                continue
            cols = [OFF_FAMILY - 4, OFF_DPORT - 4, OFF_DPORT - 3]
            cols += range(OFF_SRC - 4, OFF_SRC - 4 + width)
            cols += range(OFF_DST - 4, OFF_DST - 4 + width)
            k = len(cols)
            keys = bytearray(k * m)
            for i, col in enumerate(cols):
                keys[i::k] = rec[col::R]
            self.dest_keys.add(k, keys, pick, pick_syn if pick_syn is not None else b"")

    def _pick_stalled(self, rec: bytes, m: int) -> None:
        """Keep the records of sockets in zero-window probing, retransmitting, or with Recv-Q >= 64 KiB (C tests per column)."""
        R = self.rec_len
        rq = OFF_RQUEUE - 4
        probe0 = rec[OFF_STATE - 3 :: R].translate(_IS_PROBE0)
        retrans = rec[OFF_STATE - 2 :: R]
        data = int.from_bytes(rec[OFF_STATE - 4 :: R].translate(_DATA_STATE), "little")
        retrans_sel = int.from_bytes(retrans.translate(_NONZERO), "little") & data
        if 1 not in probe0 and not retrans_sel:
            hi, lo = (rec[rq + i :: R].translate(_NONZERO) for i in _RQUEUE_HIGH)
            if 1 not in hi and 1 not in lo:
                return  # the common buffer: nothing stalled, a few C scans
        sel = int.from_bytes(probe0, "little") | retrans_sel
        for i in _RQUEUE_HIGH:
            sel |= int.from_bytes(rec[rq + i :: R].translate(_NONZERO), "little")
        self.stalled_records.extend(compress(struct.iter_unpack(f"{R}s", rec), sel.to_bytes(m, "little")))

    def _framed(self, buf, end: int, m: int) -> bool:
        """Do the m header matches frame buf[:end]: first message at 0, last one ending at ``end``?"""
        if m < 1 or m * MIN_MSG > end or buf[8:16] != self.tail or buf[4] | (buf[5] << 8) != self.rtype:
            return False
        q = buf.rfind(self.tail, 0, end) - 8  # the last header
        return q >= 0 and q + int.from_bytes(buf[q : q + 4], sys.byteorder) == end

    def _exact(self, buf, end: int) -> bytes:
        """Message by message: the same records as the regex pass, for a buffer that does not frame."""
        out = bytearray()
        off = 0
        cut = self.end
        while off < end:
            if off + 16 > end:
                raise _malformed(f"{end - off} bytes after the last whole message at {off}")
            length, mtype = struct.unpack_from("=IH", buf, off)
            if length < 16 or off + length > end:
                raise _malformed(f"message length {length} at {off} of a {end}-byte reply")
            if mtype == self.rtype and length >= MIN_MSG:
                out += buf[off + 4 : off + cut]
            off += (length + 3) & ~3
        return bytes(out)

    def finish(self, table: DiagTable) -> None:
        for (hi, lo), c in Counter(zip(self.syn_hi, self.syn_lo)).items():
            table.syn_recv_by_port[(hi << 8) | lo] += c
        state_of = _STATE_OF
        for s, c in enumerate(self.per_state):
            if c and (state := state_of[s]) is not None:
                table.counts[state] += c
        groups = table.groups
        if self.by == "local-port" and self.keys:
            # (state, port) pairs built by map/zip in C, not a Python step per pair (there
            # can be ~10^5 of them at a million sockets).
            keys = list(self.keys)
            states = list(map(_STATE_INT.__getitem__, map(rshift, keys, repeat(16))))
            fresh = _valid(dict(zip(zip(states, map(and_, keys, repeat(0xFFFF))), self.keys.values())), states)
            _merge(groups, fresh)
            _merge(table.group_totals, _totals(fresh))
        elif self.by == "peer" and self.keys:
            keys = list(self.keys)
            raws = list(map(itemgetter(0), keys))
            names = _peer_names(set(raws))
            states = list(map(_STATE_INT.__getitem__, map(itemgetter(1), keys)))
            pairs = list(zip(states, map(names.__getitem__, raws)))
            fresh = dict(zip(pairs, self.keys.values()))
            if len(fresh) != len(pairs):
                # two raw addresses with one name (an IPv4 peer and the same one v4-mapped
                # on an IPv6 socket): add them up
                fresh = {}
                for pair, c in zip(pairs, self.keys.values()):
                    fresh[pair] = fresh.get(pair, 0) + c
            fresh = _valid(fresh, states)
            _merge(groups, fresh)
            _merge(table.group_totals, _totals(fresh))
        elif self.by == "process":
            table.sock_states += self.sock_states
            table.sock_inodes.extend(self.sock_inodes)
        elif self.by == "cookies":
            table.sock_inodes.extend(self.sock_inodes)
            table.sock_cookies.extend(self.sock_cookies)
        elif self.by == "dest":
            table.close_wait.update(zip(self.sock_cookies, self.sock_inodes, strict=True))
            for k, tops in self.dest_keys.busiest().items():
                width = (k - 3) // 2  # family, peer port, local address, peer address
                for into, top in zip((table.destinations, table.syn_sent_destinations), tops, strict=True):
                    for raw, c in top:  # one step per kept destination, not per socket
                        key = (
                            _fmt_addr(raw[0], raw[3 : 3 + width]),
                            _fmt_addr(raw[0], raw[3 + width :]),
                            (raw[1] << 8) | raw[2],
                        )
                        into[key] += c
            table.stalled.extend(_stalled(raw) for (raw,) in self.stalled_records)
        if self.listeners:
            table.listeners.extend(self.listeners)
        table.interrupted |= self.interrupted


def _valid(pairs: dict, states: list) -> dict:
    """``pairs`` without the keys whose state byte is no TCP state (never from the kernel)."""
    if None in states:
        return {k: c for k, c in pairs.items() if k[0] is not None}
    return pairs


def _totals(pairs: dict) -> dict:
    """(state, key) -> n  to  key -> n: one step per pair (a plain dict: Counter's __missing__ is slower)."""
    out: dict = {}
    get = out.get
    for (_s, key), n in pairs.items():
        out[key] = get(key, 0) + n
    return out


def _merge(into: Counter, more) -> None:
    """into += more, looping over the smaller of the two (the LISTEN dump adds a few keys)."""
    if len(into) < len(more):
        more = dict(more)
        for k, c in into.items():
            more[k] = more.get(k, 0) + c
        into.clear()
        dict.update(into, more)
    else:
        for k, c in more.items():
            into[k] += c


def _peer_names(raws: set) -> dict:
    """family byte + 16 address bytes -> the address as text; IPv4 ones through inet_ntop in C."""
    v4 = [r for r in raws if r[0] == socket.AF_INET]
    names = dict(zip(v4, map(socket.inet_ntop, repeat(socket.AF_INET), map(itemgetter(slice(1, 5)), v4))))
    if len(v4) != len(raws):
        names.update((r, _fmt_addr(r[0], r[1:])) for r in raws if r[0] != socket.AF_INET)
    return names


def _fmt_addr(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family != socket.AF_INET6:
        return f"family {family}"
    import ipaddress

    addr = ipaddress.IPv6Address(raw)
    return str(addr.ipv4_mapped or addr)


def _fmt_src(family: int, raw: bytes) -> str:
    # A listener's own address as `ss -ltn` prints it (a v4-mapped v6 address stays v6).
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return _fmt_addr(family, raw)


def _stalled(rec: bytes) -> Stalled:
    """One record (message bytes 4 .. 88) as a Stalled socket."""
    family = rec[OFF_FAMILY - 4]
    src, dst = OFF_SRC - 4, OFF_DST - 4
    rqueue, wqueue = struct.unpack_from("=II", rec, OFF_RQUEUE - 4)
    return Stalled(
        state=rec[OFF_STATE - 4],
        local=_fmt_addr(family, rec[src : src + 16]),
        local_port=int.from_bytes(rec[OFF_SPORT - 4 : OFF_SPORT - 2], "big"),
        peer=_fmt_addr(family, rec[dst : dst + 16]),
        peer_port=int.from_bytes(rec[OFF_DPORT - 4 : OFF_DPORT - 2], "big"),
        timer=rec[OFF_STATE - 3],
        retrans=rec[OFF_STATE - 2],
        rqueue=rqueue,
        wqueue=wqueue,
        inode=struct.unpack_from("=I", rec, OFF_INODE - 4)[0],
    )


def _listener(rec: bytes, o: int) -> Listener:
    """A LISTEN message's record (message bytes 4 .. 88 at ``o``) as a Listener."""
    family = rec[o + OFF_FAMILY - 4]
    src = o + OFF_SRC - 4
    return Listener(
        family=family,
        address=_fmt_src(family, rec[src : src + 16]),
        port=(rec[o + OFF_SPORT - 4] << 8) | rec[o + OFF_SPORT - 3],
        accept_queue=struct.unpack_from("=I", rec, o + OFF_RQUEUE - 4)[0],
        backlog=struct.unpack_from("=I", rec, o + OFF_WQUEUE - 4)[0],
        inode=struct.unpack_from("=I", rec, o + OFF_INODE - 4)[0],
    )
