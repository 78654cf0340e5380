"""Netlink sock_diag (inet_diag) dumps of the TCP socket table: the socket I/O.

HOST layer: opens the netlink socket, sends the requests and receives the buffers; every
byte is decoded by tcptune.core.inet_diag (pure, replayable from recorded dumps).

Each dump of the established hash costs the kernel a walk of all its buckets, so how many
dumps are asked for matters as much as how they are read: the listening hash in its own
small dump (for the listener details: addresses, accept queues, backlogs), then ONE dump of
every other state, both families in one walk (AF_UNSPEC), whatever the view (counts, or
columns for --by).  The dump is received on a second thread while the previous buffer is
decoded.
"""

from __future__ import annotations

import os
import socket
import struct

from tcptune.core.inet_diag import (
    LISTEN_MASK,
    NETLINK_SOCK_DIAG,
    RECV_BUF,
    DiagTable,
    DumpCounter,
    SockDiagUnavailable,
    consume,
    is_last_buffer,
    lookup_reply,
    lookup_request,
    reply_type,
    request,
)
from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.states import ALL_STATES_MASK


def open_diag_socket() -> socket.socket:
    try:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise SockDiagUnavailable(f"netlink sock_diag socket: {exc.strerror}") from exc


def dump_table(
    families=(socket.AF_INET, socket.AF_INET6),
    states: int = ALL_STATES_MASK,
    by: str | None = None,
    port_range: tuple[int, int] | None = None,
) -> DiagTable:
    """Count TCP sockets per state (and per group when ``by`` is given) in the current network namespace.

    ``states`` is an inet_diag idiag_states bitmask (tcptune.kernel.states.states_mask).
    ``by``: None or 'state' (counts only), 'local-port', 'peer' or 'process' (groups keyed by
    local port or peer address string; for 'process' the state and inode columns, for the
    caller to join with the owners; for 'dest' the sockets with a local port in ``port_range``
    per (local address, peer address, peer port), in table.destinations).
    Raises SockDiagUnavailable when netlink sock_diag is not usable (the caller falls back to /proc).
    """
    kinds = [(True, LISTEN_MASK & states), (False, states & ~LISTEN_MASK)]
    kinds = [(listen, m) for listen, m in kinds if m]
    # Unpredictable (the counter finds headers by their bytes); os.urandom, not secrets,
    # which would import hashlib on the start-up path.
    seq0 = int.from_bytes(os.urandom(4), "little") >> 2 | 1
    with open_diag_socket() as sock:
        if set(families) == {socket.AF_INET, socket.AF_INET6}:
            table = DiagTable()
            # forked (if at all) before the first dump starts its receiving thread
            dest_keys = _dest_keys_for(by, port_range)
            try:
                for seq, (listen, mask) in enumerate(kinds, seq0):
                    _dump(sock, socket.AF_UNSPEC, mask, seq, by, listen, table, port_range, dest_keys)
                return table
            except SockDiagUnavailable:
                pass  # a kernel without the compat request: per family below
        table = DiagTable()
        seq = seq0 + 100
        for family in families:
            for listen, mask in kinds:
                seq += 1
                _dump(sock, family, mask, seq, by, listen, table, port_range)
    return table


# From this many TCP sockets (sockstat), doctor's dest view counts its keys in a forked child,
# beside the decoding: at a million sockets (235k destinations) the counting is ~0.6 s of the
# decoding's ~1.3 s.  Below it, a fork costs more than it saves.
FORK_KEYS_MIN = 200_000


class ForkedDestKeys:
    """tcptune.core.inet_diag.DestKeys run in a forked child: ``add`` streams the keys to it."""

    def __init__(self, forked) -> None:
        self._child = forked

    @staticmethod
    def count(stream) -> dict:
        from tcptune.core.inet_diag import DestKeys

        keys = DestKeys()
        while header := stream.read(5):
            k, m = struct.unpack("=BI", header)
            keys.add(k, stream.read(k * m), stream.read(m), stream.read(m))
        return keys.busiest()

    def add(self, k: int, keys: bytes, in_range: bytes, syn_sent: bytes) -> None:
        m = len(in_range)
        self._child.send(struct.pack("=BI", k, m), keys, in_range, syn_sent or bytes(m))

    def busiest(self) -> dict:
        out = self._child.result()
        if out is None:
            raise TcptuneError("the process counting the dump's destinations failed", ExitCode.INTERNAL)
        return out


def _dest_keys_for(by, port_range):
    """Where the dest view's keys are counted: a forked child for a big table, else in process (None)."""
    if by != "dest" or _tcp_sockets() < FORK_KEYS_MIN:
        return None
    from tcptune.host.forked import Forked

    child = Forked(ForkedDestKeys.count, feed=True)
    return ForkedDestKeys(child) if child.running else None


def _tcp_sockets() -> int:
    """TCP sockets in this namespace by /proc/net/sockstat{,6} (inuse + tw): a cheap estimate of the dump's size."""
    from tcptune.core.procfs import parse_sockstat

    total = 0
    for name, proto in (("sockstat", "TCP"), ("sockstat6", "TCP6")):
        try:
            with open(f"/proc/net/{name}", encoding="ascii", errors="replace") as fh:
                counts = parse_sockstat(fh.read()).get(proto, {})
        except OSError:
            continue
        total += counts.get("inuse", 0) + counts.get("tw", 0)
    return total


def _dump(
    sock, family: int, mask: int, seq: int, by, listen: bool, table: DiagTable, port_range=None, dest_keys=None
) -> None:
    try:
        sock.send(request(family, mask, seq))
    except OSError as exc:
        raise SockDiagUnavailable(f"netlink sock_diag send: {exc.strerror}") from exc
    # A listener's port is no ephemeral port: connect() never picks a port bound by bind()
    # (__inet_hash_connect() skips buckets with fastreuse >= 0), and the sockets accept()
    # made share it.  Measured on 6.18 in a private netns: ip_local_port_range 40000-40001 and a
    # listener on 40000 (with or without SO_REUSEADDR): connect() takes 40001, then EADDRNOTAVAIL.
    # The LISTEN dump runs first, so the listeners are known here.
    taken = frozenset(x.port for x in table.listeners) if by == "dest" and not listen else frozenset()
    counter = DumpCounter(
        reply_type(family),
        seq,
        sock.getsockname()[0],
        by,
        listeners=listen,
        port_range=port_range,
        exclude_ports=taken,
        dest_keys=None if listen else dest_keys,
    )
    consume(received(sock, counter.tail), counter, family)
    counter.finish(table)


def received(sock, tail: bytes, pool: int = 8):
    """Yield (buffer, nbytes) for each buffer of a dump, received on a helper thread.

    The kernel fills the next dump buffer inside recvmsg() (netlink_recvmsg ->
    netlink_dump), with the GIL released, so a second thread receiving while
    this one decodes the previous buffer overlaps the two: at a million sockets
    the counting (~0.08 s) hides behind the kernel's ~0.6 s.  A buffer is
    handed back to the pool once the caller asks for the next one.  The reader
    stops after the buffer ``is_last_buffer`` names, the one ``consume`` ends on.
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
                if is_last_buffer(buf, n, tail):
                    full.put((None, 0))  # the end, for a caller that reads on
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            full.put((exc, 0))

    reader = threading.Thread(target=receive, name="tcptune-sockdiag", daemon=True)
    reader.start()
    try:
        while True:
            buf, n = full.get()
            if buf is None:
                return
            if isinstance(buf, BaseException):
                if isinstance(buf, OSError):
                    raise TcptuneError(f"netlink sock_diag recv: {buf.strerror}", ExitCode.BAD_INPUT) from buf
                raise buf
            yield buf, n
            free.put(buf)
    finally:
        stop.set()
        free.put(None)  # wakes a reader waiting for a buffer
        # A reader blocked in recv() on an abandoned dump (the caller stopped early on a
        # bad reply) is a daemon thread; do not wait for it.
        reader.join(timeout=1.0)


def sockets_in_state(state: int) -> dict[int, int]:
    """socket cookie -> inode of every TCP socket in ``state`` (a TcpState), both families.

    The kernel filters by state while it walks (inet_diag_dump_icsk() checks idiag_states
    before filling a message), so a dump of a rare state is a walk of the hash and a few
    messages.  A cookie names one socket for the whole boot, where an inode or a 4-tuple
    may be reused: two of these dumps tell which sockets stayed.
    """
    table = dump_table(states=1 << state, by="cookies")
    return dict(zip(table.sock_cookies, table.sock_inodes, strict=True))


def lookup_states(tuples: list[tuple[str, int, str, int]]) -> list[int | None]:
    """The kernel's state number of each socket (local address, port, remote address, port),
    by one exact sock_diag lookup each (inet_diag_find_one_icsk(): one hash lookup, not a dump;
    it finds request and timewait sockets too).  None: no socket for that 4-tuple here.

    When the 4-tuple matches nothing the kernel may answer with the listener on the local port
    (its lookup falls back to the listening hash); that socket is not this connection's end, so
    it counts as none.  Raises SockDiagUnavailable when netlink sock_diag cannot be used.
    """
    out: list[int | None] = []
    with open_diag_socket() as sock:
        for seq, (laddr, lport, raddr, rport) in enumerate(tuples, 1):
            try:
                local, remote = _packed(laddr), _packed(raddr)
                sock.send(lookup_request(lport, rport, local, seq, remote))
                reply = lookup_reply(sock.recv(8192))
            except OSError as exc:
                raise SockDiagUnavailable(f"netlink sock_diag lookup: {exc.strerror}") from exc
            out.append(None if reply is None or reply[1:3] != (lport, rport) else reply[0])
    return out


def _packed(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


def is_local_address(addr: str) -> bool:
    """Whether ``addr`` is one of this network namespace's addresses: a UDP socket can bind to
    it (bind fails with EADDRNOTAVAIL otherwise; nothing is sent)."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((addr, 0))
    except OSError:
        return False
    return True
