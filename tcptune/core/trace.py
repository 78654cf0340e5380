"""Trace annotation: captured TCP segments grouped into connections, labelled as the tutorials
label them, with the state of both ends after every segment (pure).

States follow RFC 9293 section 3.3.2 (the state diagram, with simultaneous open and close),
applied to what a capture on the path shows: a segment seen is taken as sent by one end and
received by the other.  Labels are the tutorials' (SYN J, SYN-ACK K, ack J+1, ACK K+1, FIN M,
ACK M+1), with every sequence number written relative to its side's ISN: J for the client,
K for the server.  A capture that starts after the SYN says "joined mid-connection" and
leaves the states unknown rather than guess.

One segment of look-ahead per connection: a SYN's effect on the server (SYN_RECV, or still
CLOSED when the reply is a RST) is known only from the reply.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from tcptune.core.pcap import ACK, FIN, RST, SYN, Segment

UNKNOWN = "?"
CLOSED, LISTEN, SYN_SENT, SYN_RECV, ESTABLISHED = "CLOSED", "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED"
FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT = (
    "FIN_WAIT1",
    "FIN_WAIT2",
    "CLOSE_WAIT",
    "CLOSING",
    "LAST_ACK",
    "TIME_WAIT",
)
TIME_WAIT_LEN = 60.0  # TCP_TIMEWAIT_LEN (include/net/tcp.h): not a sysctl, whatever tutorials say
MOD = 1 << 32
SENT_KEEP = 4096  # segments per end remembered to recognise retransmissions


@dataclass
class _End:
    name: str  # "client" | "server"
    letter: str  # J | K
    state: str = UNKNOWN
    isn: int | None = None
    next_seq: int | None = None  # one past the highest sequence number sent (SYN and FIN count)
    fin_seq: int | None = None  # sequence number of its FIN
    last_ack: int | None = None  # of its last pure ACK, for dup-ACK marks
    sent: dict = field(default_factory=dict)  # (seq, flags) -> (times sent, last time) for retransmissions
    time_wait_marked: bool = False


@dataclass
class Annotated:
    """One segment as trace prints it."""

    t: float  # since the connection's first segment
    sender: str  # client | server
    segment: Segment
    label: str
    marks: list[str]
    retransmission: int  # 0: first transmission, n: the n-th resend
    states_after: dict[str, str]  # inferred from the packets
    kernel_states: dict[str, str] | None = None  # read from the kernel after this segment, where it could be

    @property
    def states_source(self) -> str:
        return "inferred" if self.kernel_states is None else "kernel"

    @property
    def disagreements(self) -> list[str]:
        """Ends whose inferred state is known and not the kernel's (shown, never hidden)."""
        if self.kernel_states is None:
            return []
        return [e for e, st in self.states_after.items() if st != UNKNOWN and self.kernel_states.get(e) != st]

    def to_json(self, absolute: bool = False) -> dict:
        s = self.segment
        ack = s.flags & ACK
        return {
            "t": round(self.t, 6),
            "from": self.sender,
            "flags": s.letters,
            "seq_rel": self._rel_seq,
            "ack_rel": self._rel_ack if ack else None,
            "seq": s.seq,
            "ack": s.ack if ack else None,
            "len": s.length,
            "window": s.window,
            "label": self.label_text(absolute),
            "marks": self.marks,
            "retransmission": self.retransmission,
            "states_after": dict(self.states_after),
            "states_source": self.states_source,
            "kernel_states": None if self.kernel_states is None else dict(self.kernel_states),
            "disagrees": self.disagreements,
        }

    def label_text(self, absolute: bool = False) -> str:
        """The label; with ``absolute`` the raw sequence numbers instead of J+n / K+n."""
        return self.label_absolute if absolute and self.label_absolute else self.label

    _rel_seq: int = 0
    _rel_ack: int = 0
    label_absolute: str = ""


@dataclass
class Connection:
    client: str  # "addr:port"
    server: str
    joined_mid: bool
    packets: list[Annotated] = field(default_factory=list)
    final_states: dict[str, str] = field(default_factory=dict)
    kernel_states: dict[str, str] | None = None  # the kernel's own, where the sockets were local

    @property
    def disagreements(self) -> list[str]:
        """Ends whose inferred state is not the kernel's (shown, never hidden)."""
        if self.kernel_states is None:
            return []
        return [end for end, st in self.final_states.items() if self.kernel_states.get(end) != st]

    def to_json(self, absolute: bool = False) -> dict:
        return {
            "client": self.client,
            "server": self.server,
            "joined_mid_connection": self.joined_mid,
            "packets": [p.to_json(absolute) for p in self.packets],
            "final_states": dict(self.final_states),
            "kernel_final_states": None if self.kernel_states is None else dict(self.kernel_states),
        }


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


class _Tracker:
    """The state of one connection, fed its segments in order."""

    def __init__(self, first: Segment, keep: bool = True, absolute: bool = False):
        self.keep, self.absolute = keep, absolute
        self.start = first.t
        syn_only = first.flags & SYN and not first.flags & ACK
        synack = first.flags & SYN and first.flags & ACK
        # The client sends the first SYN; a SYN-ACK first means the SYN was missed.
        if syn_only or not synack:
            c, s = (first.src, first.sport), (first.dst, first.dport)
        else:
            c, s = (first.dst, first.dport), (first.src, first.sport)
        self.addr = {c: "client", s: "server"}
        self.conn = Connection(_endpoint(*c), _endpoint(*s), joined_mid=not syn_only)
        self.ends = {"client": _End("client", "J"), "server": _End("server", "K")}
        if syn_only:
            self.ends["client"].state = CLOSED
            self.ends["server"].state = LISTEN
        self.pending: Annotated | None = None

    @property
    def done(self) -> bool:
        """Both ends CLOSED or TIME_WAIT, nothing waiting for its reply."""
        return (
            self.pending is None
            and self.ends["client"].state in DONE_STATES
            and self.ends["server"].state in DONE_STATES
        )

    def feed(self, seg: Segment) -> Iterator[Annotated]:
        sender = self.addr.get((seg.src, seg.sport), "client")
        me, peer = self.ends[sender], self.ends["server" if sender == "client" else "client"]
        if self.pending is not None:
            client_syn = self.pending.sender == "client" and self.pending.segment.flags & (SYN | ACK) == SYN
            # the reply to a SYN tells what the SYN did to the server: RST -> it had no listener
            if client_syn and sender == "server" and seg.flags & RST:
                self.pending.states_after["server"] = CLOSED
            elif client_syn and sender == "client" and seg.flags & SYN:
                # the client sent its SYN again: the server never answered the first
                self.pending.states_after["server"] = self.ends["server"].state = UNKNOWN
            yield self.pending
            self.pending = None
        ann = self._annotate(seg, sender, me, peer)
        if self.keep:
            self.conn.packets.append(ann)
        self.last = ann
        if seg.flags & SYN and not seg.flags & ACK:
            self.pending = ann
        else:
            yield ann

    def finish(self) -> Iterator[Annotated]:
        if self.pending is not None:
            p = self.pending
            if p.states_after.get("server") == SYN_RECV and not any(x.sender == "server" for x in self.conn.packets):
                # never answered: the capture cannot say whether anything listens
                p.states_after["server"] = self.ends["server"].state = UNKNOWN
                p.marks.append("no answer seen")
            yield p
            self.pending = None
        self.conn.final_states = {k: e.state for k, e in self.ends.items()}

    # -- one segment ------------------------------------------------------------
    def _annotate(self, seg: Segment, sender: str, me: _End, peer: _End) -> Annotated:
        marks: list[str] = []
        if me.isn is None:
            me.isn = seg.seq if not self.conn.joined_mid or seg.flags & SYN else (seg.seq - 1) % MOD
        retrans = self._retransmission(seg, me, marks)
        label = self._label(seg, me, peer)
        label_abs = self._label(seg, me, peer, absolute=True) if self.absolute else ""
        if not self.conn.joined_mid:
            self._transition(seg, me, peer, marks)
        elif seg.flags & RST:
            me.state = peer.state = CLOSED
        end = (seg.seq + seg.length + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)) % MOD
        if me.next_seq is None or _after(end, me.next_seq):
            me.next_seq = end
        if seg.flags & FIN:
            me.fin_seq = (seg.seq + seg.length) % MOD
        if seg.window == 0 and not seg.flags & RST:
            marks.append("zero window")
        ann = Annotated(
            t=seg.t - self.start,
            sender=sender,
            segment=seg,
            label=label,
            marks=marks,
            retransmission=retrans,
            states_after={k: e.state for k, e in self.ends.items()},
        )
        ann.label_absolute = label_abs
        ann._rel_seq = (seg.seq - me.isn) % MOD
        ann._rel_ack = (seg.ack - peer.isn) % MOD if peer.isn is not None else seg.ack
        return ann

    def _retransmission(self, seg: Segment, me: _End, marks: list[str]) -> int:
        carries = seg.length or seg.flags & (SYN | FIN)
        if not carries or seg.flags & RST:
            if (
                seg.flags == ACK
                and me.next_seq is not None
                and seg.length <= 1
                and (seg.seq + 1) % MOD == me.next_seq
                and me.state in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT2)
            ):
                marks.append("keepalive probe (seq = snd_una - 1)")
            elif seg.flags == ACK and seg.length == 0 and me.last_ack == seg.ack:
                marks.append("dup ACK")
            if seg.flags == ACK and seg.length == 0:
                me.last_ack = seg.ack
            return 0
        key = (seg.seq, seg.flags & (SYN | FIN), seg.length)
        count, last = me.sent.get(key, (0, seg.t))
        me.sent[key] = (count + 1, seg.t)
        if len(me.sent) > SENT_KEEP:  # bounded: a resend of something sent that long ago is not looked for
            del me.sent[next(iter(me.sent))]
        if count:
            marks.append(f"retransmission {count}, {seg.t - last:.3f} s after the previous")
        return count

    def _rel(self, end: _End, value: int, absolute: bool = False) -> str:
        if absolute:
            return str(value % MOD)
        if end.isn is None:
            return str(value)
        off = (value - end.isn) % MOD
        return end.letter if off == 0 else f"{end.letter}+{off}"

    def _label(self, seg: Segment, me: _End, peer: _End, absolute: bool = False) -> str:
        f = seg.flags

        def rel(end: _End, value: int) -> str:
            return self._rel(end, value, absolute)

        ack = f", ack {rel(peer, seg.ack)}" if f & ACK else ""
        if f & RST:
            return "RST" + ack
        if f & SYN:
            return f"SYN-ACK {rel(me, seg.seq)}{ack}" if f & ACK else f"SYN {rel(me, seg.seq)}"
        if f & FIN:
            data = f", {seg.length} bytes" if seg.length else ""
            return f"FIN {rel(me, seg.seq + seg.length)}{ack}{data}"
        if seg.length:
            start, stop = rel(me, seg.seq), rel(me, seg.seq + seg.length)
            return f"data {start}:{stop} ({seg.length} bytes){ack}"
        return f"ACK {rel(peer, seg.ack)}" if f & ACK else "segment with no flags"

    def _transition(self, seg: Segment, me: _End, peer: _End, marks: list[str]) -> None:
        """RFC 9293 3.3.2 for both ends: ``me`` sent ``seg``, ``peer`` received it."""
        f = seg.flags
        if f & RST:
            if peer.state == SYN_SENT and f & ACK:
                marks.append("connection refused: no listener on that port")
            me.state = peer.state = CLOSED
            return
        acks_peer_fin = f & ACK and peer.fin_seq is not None and seg.ack == (peer.fin_seq + 1) % MOD
        # what sending does to me
        if f & SYN and not f & ACK:
            me.state = SYN_RECV if me.state == SYN_RECV else SYN_SENT
        elif f & SYN:  # SYN-ACK (in a simultaneous open the second one comes from an ESTABLISHED end)
            me.state = SYN_RECV if me.state != ESTABLISHED else ESTABLISHED
        elif f & FIN:
            if me.state == CLOSE_WAIT and not acks_peer_fin:
                # its FIN left before the peer's arrived: it was in FIN_WAIT1 and is now
                # CLOSING, like the peer (simultaneous close)
                me.state = CLOSING
            else:
                me.state = {ESTABLISHED: FIN_WAIT1, CLOSE_WAIT: LAST_ACK, SYN_RECV: FIN_WAIT1}.get(me.state, me.state)
        if f & ACK and me.state == SYN_SENT and not f & SYN:
            me.state = ESTABLISHED
        # what receiving does to the peer
        if f & SYN and not f & ACK:
            # a SYN arriving at a socket in SYN_SENT: simultaneous open
            peer.state = SYN_RECV if peer.state in (LISTEN, SYN_SENT, UNKNOWN, CLOSED) else peer.state
        elif f & SYN:
            if peer.state == SYN_SENT:
                peer.state = ESTABLISHED
            elif peer.state == SYN_RECV:  # simultaneous open: both sent SYN, now the SYN-ACKs cross
                peer.state = ESTABLISHED
        else:
            if f & ACK and peer.state == SYN_RECV:
                peer.state = ESTABLISHED
            if acks_peer_fin:
                peer.state = {FIN_WAIT1: FIN_WAIT2, CLOSING: TIME_WAIT, LAST_ACK: CLOSED}.get(peer.state, peer.state)
            if f & FIN:
                peer.state = {
                    ESTABLISHED: CLOSE_WAIT,
                    FIN_WAIT1: CLOSING,  # both FINs crossed: simultaneous close
                    FIN_WAIT2: TIME_WAIT,
                }.get(peer.state, peer.state)
        for end in (me, peer):
            if end.state == TIME_WAIT and not end.time_wait_marked:
                marks.append(f"{end.name} enters TIME_WAIT for {TIME_WAIT_LEN:.0f} s (TCP_TIMEWAIT_LEN)")
                end.time_wait_marked = True


def _after(a: int, b: int) -> bool:
    """a is later than b in sequence space (RFC 9293 modular comparison)."""
    return 0 < (a - b) % MOD < (1 << 31)


DONE_STATES = frozenset((CLOSED, TIME_WAIT))
KEEP_DONE = 1024  # finished connections still followed when packets are not kept (late ACKs, retransmissions)


class Tracer:
    """Push form of ``annotate``: feed segments one at a time (a live capture), then finish.

    ``keep``: each connection keeps its annotated segments (for JSON).
    ``forget``: memory is bounded however long the capture (--read): a connection whose ends
    are both CLOSED or TIME_WAIT is followed while it is one of the last KEEP_DONE to finish,
    then finished and handed over in ``forgotten`` (a later segment of it starts a connection
    "joined mid-connection").
    ``absolute``: also label with raw sequence numbers (--absolute).
    """

    def __init__(self, keep: bool = True, absolute: bool = False, forget: bool = False) -> None:
        self.keep, self.absolute, self.forget = keep, absolute, forget
        self.trackers: dict[tuple, _Tracker] = {}
        self.order: list[_Tracker] = []
        self.forgotten: list[Connection] = []  # finished and no longer followed; the caller empties it
        self._done: dict[tuple, None] = {}  # insertion-ordered: the oldest finished first

    def feed(self, seg: Segment) -> list[tuple[Connection, Annotated]]:
        a, b = (seg.src, seg.sport), (seg.dst, seg.dport)
        key = (a, b) if a < b else (b, a)
        tr = self.trackers.get(key)
        if tr is None or (seg.flags & SYN and not seg.flags & ACK and tr.done and seg.seq != tr.ends["client"].isn):
            # a new SYN on a 4-tuple whose connection is over (CLOSED or TIME_WAIT: RFC 9293
            # 3.6.1 lets a SYN reopen it) is a new connection, not a segment of the old one
            old_tr = self.trackers.get(key)
            if old_tr is not None and self.forget:  # a new connection on the same 4-tuple
                self._done.pop(key, None)
                self.forgotten.append(old_tr.conn)
            tr = self.trackers[key] = _Tracker(seg, self.keep, self.absolute)
            if not self.forget:
                self.order.append(tr)
        out = [(tr.conn, ann) for ann in tr.feed(seg)]
        if self.forget and tr.done and key not in self._done:
            self._done[key] = None
            if len(self._done) > KEEP_DONE:
                old = next(iter(self._done))
                del self._done[old]
                gone = self.trackers.pop(old)
                for _ in gone.finish():
                    pass  # nothing pending: both ends are done
                self.forgotten.append(gone.conn)
        return out

    def finish(self) -> list[tuple[Connection, Annotated]]:
        out = []
        trackers = list(self.trackers.values()) if self.forget else self.order
        for tr in trackers:
            out.extend((tr.conn, ann) for ann in tr.finish())
        if self.forget:
            self.forgotten.extend(tr.conn for tr in trackers)
            self.trackers.clear()
        return out


def annotate(
    segments: Iterable[Segment], keep: bool = True, absolute: bool = False, forget: bool = False
) -> Iterator[tuple[Connection, Annotated]]:
    """Each segment, as soon as it can be annotated, with the connection it belongs to."""
    tracer = Tracer(keep, absolute, forget)
    for seg in segments:
        yield from tracer.feed(seg)
        tracer.forgotten.clear()
    yield from tracer.finish()


def finished_connections(segments: Iterable[Segment], absolute: bool = False) -> Iterator[Connection]:
    """Each connection with its annotated segments once it is finished (both ends CLOSED or
    TIME_WAIT and KEEP_DONE others finished since, or the capture's end): in the order they
    finish, in memory bounded by the connections open at once, not by the capture's length."""
    tracer = Tracer(keep=True, absolute=absolute, forget=True)
    for seg in segments:
        tracer.feed(seg)
        if tracer.forgotten:
            yield from tracer.forgotten
            tracer.forgotten.clear()
    tracer.finish()
    yield from tracer.forgotten


def connection_ends(conn: Connection) -> tuple[tuple[str, int], tuple[str, int]]:
    """(address, port) of the client and of the server."""
    return _split(conn.client), _split(conn.server)


def _split(endpoint: str) -> tuple[str, int]:
    addr, _, port = endpoint.rpartition(":")
    return addr.strip("[]"), int(port)


def connections_of(items: Iterable[tuple[Connection, Annotated]]) -> list[Connection]:
    """The connections of an annotated stream, once each, in order of first segment."""
    seen: dict[int, Connection] = {}
    for conn, _ in items:
        seen.setdefault(id(conn), conn)
    return list(seen.values())


def trace_connections(segments: Iterable[Segment], absolute: bool = False) -> list[Connection]:
    """Every connection with all its annotated segments (scenarios, tests)."""
    return connections_of(annotate(segments, absolute=absolute))
