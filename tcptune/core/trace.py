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

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat

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
SENT_SLACK = 1024  # more than SENT_KEEP before the oldest are dropped
SENT_AFTER_DONE = 64  # of them, once both ends are CLOSED or TIME_WAIT


@dataclass(slots=True)
class _End:
    name: str  # "client" | "server"
    state: str = UNKNOWN
    isn: int | None = None
    next_seq: int | None = None  # one past the highest sequence number sent (SYN and FIN count)
    fin_seq: int | None = None  # sequence number of its FIN
    last_ack: int | None = None  # of its last pure ACK, for dup-ACK marks
    sent: dict = field(default_factory=dict)  # (seq, flags) -> (times sent, last time) for retransmissions
    time_wait_marked: bool = False


@dataclass(slots=True)
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
    _rel_seq: int = 0
    _rel_ack: int = 0
    label_absolute: str = ""

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


# A step: one segment annotated, as the --read hot path passes it on (a list, not an object:
# made once per packet, and the pending SYN's server state is corrected when its reply comes).
(
    S_CONN,
    S_T,
    S_SENDER,
    S_SEG,
    S_LABEL,
    S_MARKS,
    S_RETRANS,
    S_CLIENT,
    S_SERVER,
    S_REL_SEQ,
    S_REL_ACK,
    S_LABEL_ABS,
    S_FIRST,
    S_ANN,
    S_KEY,
) = range(15)
# S_KEY: where the step comes in the capture's output, for merging the halves of a sharded
# --read (core/pcap.read_batches with a shard): 2 x the segment's position when it is emitted as it is read, one
# less when a pending SYN is emitted before the segment that answered it, END + its
# connection's first position when it is emitted at the capture's end.
END = 1 << 62


def step_annotated(st: list) -> Annotated:
    """The step as an ``Annotated`` (the one the connection keeps, or one made now)."""
    ann = st[S_ANN]
    if ann is None:
        seg = st[S_SEG]
        ann = st[S_ANN] = Annotated(
            st[S_T],
            st[S_SENDER],
            seg if type(seg) is Segment else _new(Segment, seg),
            st[S_LABEL],
            st[S_MARKS],
            st[S_RETRANS],
            {"client": st[S_CLIENT], "server": st[S_SERVER]},
            None,
            st[S_REL_SEQ],
            st[S_REL_ACK],
            st[S_LABEL_ABS],
        )
    return ann


_new = tuple.__new__


@dataclass(slots=True)
class Connection:
    client: str  # "addr:port"
    server: str
    joined_mid: bool
    packets: list[Annotated] = field(default_factory=list)
    final_states: dict[str, str] = field(default_factory=dict)
    kernel_states: dict[str, str] | None = None  # the kernel's own, where the sockets were local
    first: int = field(default=0, repr=False)  # S_KEY of its first segment: which connection it is, in --read
    key: int = field(default=0, repr=False)  # where --read --json writes it (as S_KEY: when it was finished)

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
    """The state of one connection (the Tracer feeds it)."""

    __slots__ = (
        "start",
        "server_end",
        "joined",
        "conn",
        "client",
        "server",
        "pending",
        "key",
        "steps",
        "retired",
        "server_sent",
    )

    def __init__(self, first: tuple):
        t, src, sport, dst, dport, flags = first[:6]
        self.start = t
        syn_only = flags & 0x12 == SYN
        # The client sends the first SYN; a SYN-ACK first means the SYN was missed.
        if syn_only or flags & 0x12 != SYN | ACK:
            c, s = (src, sport), (dst, dport)
        else:
            c, s = (dst, dport), (src, sport)
        self.server_end = s  # (address, port): a segment from anything else is the client's
        self.joined = not syn_only
        self.conn = Connection(_endpoint(*c), _endpoint(*s), not syn_only)
        if syn_only:
            self.client, self.server = _End("client", CLOSED), _End("server", LISTEN)
        else:
            self.client, self.server = _End("client"), _End("server")
        self.pending: list | None = None  # a SYN's step, held until its reply says what it did
        self.key: tuple = ()
        self.steps = 0
        self.retired = False  # among the finished connections still followed (Tracer._done)
        self.server_sent = False

    @property
    def done(self) -> bool:
        """Both ends CLOSED or TIME_WAIT, nothing waiting for its reply."""
        return self.pending is None and self.client.state in DONE_STATES and self.server.state in DONE_STATES

    def correct_pending(self, server_state: str) -> None:
        p = self.pending
        p[S_SERVER] = server_state
        if p[S_ANN] is not None:
            p[S_ANN].states_after["server"] = server_state

    def finish(self, out: list) -> None:
        p = self.pending
        if p is not None:
            if p[S_SERVER] == SYN_RECV and not self.server_sent:
                # never answered: the capture cannot say whether anything listens
                self.correct_pending(UNKNOWN)
                self.server.state = UNKNOWN
                p[S_MARKS].append("no answer seen")
            out.append(p)
            self.pending = None
        self.conn.final_states = {"client": self.client.state, "server": self.server.state}


def _rel(letter: str, off: int) -> str:
    return letter if off == 0 else f"{letter}+{off}"


def _label(flags: int, from_client: bool, seq_off: int, ack_key: int, length: int) -> str:
    """The tutorials' label, sequence numbers relative to each side's ISN (J: the client's, K: the server's).
    ``ack_key``: the ack relative to the peer's ISN, or ~ack when that ISN is not known yet
    (then the raw number is shown)."""
    me, peer = ("J", "K") if from_client else ("K", "J")
    ack = (_rel(peer, ack_key) if ack_key >= 0 else str(~ack_key)) if flags & ACK else None
    return _compose(flags, _rel(me, seq_off), _rel(me, (seq_off + length) % MOD), ack, length)


def _label_absolute(flags: int, seq: int, ack: int, length: int) -> str:
    """The label with the raw sequence numbers (--absolute)."""
    acked = str(ack % MOD) if flags & ACK else None
    return _compose(flags, str(seq % MOD), str((seq + length) % MOD), acked, length)


def _compose(flags: int, seq: str, end: str, ack: str | None, length: int) -> str:
    """A label from its numbers as shown: ``seq`` the first byte's, ``end`` the one after the
    data (and a FIN), ``ack`` the acknowledgment (None without ACK)."""
    acks = f", ack {ack}" if ack is not None else ""
    if flags & RST:
        return "RST" + acks
    if flags & SYN:
        return f"SYN-ACK {seq}{acks}" if flags & ACK else f"SYN {seq}"
    if flags & FIN:
        data = f", {length} bytes" if length else ""
        return f"FIN {end}{acks}{data}"
    if length:
        return f"data {seq}:{end} ({length} bytes){acks}"
    return f"ACK {ack}" if ack is not None else "segment with no flags"


def _next_states(f: int, me: str, peer: str, acks_peer_fin: bool) -> tuple[str, str, bool]:
    """RFC 9293 3.3.2 for both ends: ``me`` sent a segment with flags ``f``, ``peer`` received
    it.  The new states, and whether it was a refusal (a RST answering a SYN)."""
    if f & RST:
        return CLOSED, CLOSED, bool(peer == SYN_SENT and f & ACK)
    # what sending does to me
    if f & SYN and not f & ACK:
        me = SYN_RECV if me == SYN_RECV else SYN_SENT
    elif f & SYN:  # SYN-ACK (in a simultaneous open the second one comes from an ESTABLISHED end)
        me = SYN_RECV if me != ESTABLISHED else ESTABLISHED
    elif f & FIN:
        if me == CLOSE_WAIT and not acks_peer_fin:
            # its FIN left before the peer's arrived: it was in FIN_WAIT1 and is now
            # CLOSING, like the peer (simultaneous close)
            me = CLOSING
        else:
            me = {ESTABLISHED: FIN_WAIT1, CLOSE_WAIT: LAST_ACK, SYN_RECV: FIN_WAIT1}.get(me, me)
    if f & ACK and me == SYN_SENT and not f & SYN:
        me = ESTABLISHED
    # what receiving does to the peer
    if f & SYN and not f & ACK:
        # a SYN arriving at a socket in SYN_SENT: simultaneous open
        peer = SYN_RECV if peer in (LISTEN, SYN_SENT, UNKNOWN, CLOSED) else peer
    elif f & SYN:
        if peer == SYN_SENT:
            peer = ESTABLISHED
        elif peer == SYN_RECV:  # simultaneous open: both sent SYN, now the SYN-ACKs cross
            peer = ESTABLISHED
    else:
        if f & ACK and peer == SYN_RECV:
            peer = ESTABLISHED
        if acks_peer_fin:
            peer = {FIN_WAIT1: FIN_WAIT2, CLOSING: TIME_WAIT, LAST_ACK: CLOSED}.get(peer, peer)
        if f & FIN:
            peer = {
                ESTABLISHED: CLOSE_WAIT,
                FIN_WAIT1: CLOSING,  # both FINs crossed: simultaneous close
                FIN_WAIT2: TIME_WAIT,
            }.get(peer, peer)
    return me, peer, False


MEMO_MAX = 4096  # entries per memo table: the common shapes fit many times over, and a capture whose
# offsets keep growing (bulk data) misses anyway; 65536 made a bulk capture's RSS 14 MiB larger


class _Memo(dict):
    """A bounded memo: cleared when full (labels with growing offsets would fill it)."""

    __slots__ = ("fn",)

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def __missing__(self, key: tuple):
        if len(self) > MEMO_MAX:
            self.clear()
        value = self[key] = self.fn(*key)
        return value


def _shape(
    flags: int, from_client: bool, seq_off: int, ack_key: int, length: int, me: str, peer: str, acks_fin: bool
) -> tuple[str, str, str, bool]:
    if flags == ACK and ack_key >= 0:  # data and its ACKs: a bulk transfer misses the memo with every segment
        me_letter, peer_letter = ("J", "K") if from_client else ("K", "J")
        ack = f"{peer_letter}+{ack_key}" if ack_key else peer_letter
        if length:
            label = f"data {_rel(me_letter, seq_off)}:{_rel(me_letter, (seq_off + length) % MOD)} ({length} bytes), ack {ack}"
        else:
            label = f"ACK {ack}"
    else:
        label = _label(flags, from_client, seq_off, ack_key, length)
    return (label, *_STATES[flags, me, peer, acks_fin])


# The state machine alone, for the segments whose labels miss the table below (their numbers
# are new): it has few entries
_STATES = _Memo(_next_states)
# The labels and the state machine as a table: (flags, from the client, seq and ack relative
# to the ISNs, length, my state, the peer's, does it ack the peer's FIN) -> (label, my new
# state, the peer's, a refusal), filled from _label and _next_states as combinations occur.
_SHAPES = _Memo(_shape)
_FLAG_BITS = RST | SYN | FIN | ACK  # all the state machine and the labels look at
_KEEPALIVE_STATES = frozenset((ESTABLISHED, CLOSE_WAIT, FIN_WAIT2))
_KEEPALIVE = "keepalive probe (seq = snd_una - 1)"
_ENTERS_TW = {
    end: f"{end} enters TIME_WAIT for {TIME_WAIT_LEN:.0f} s (TCP_TIMEWAIT_LEN)" for end in ("client", "server")
}


DONE_STATES = frozenset((CLOSED, TIME_WAIT))
KEEP_DONE = 1024  # finished connections still followed when packets are not kept (late ACKs, retransmissions)


class Tracer:
    """Push form of ``annotate``: feed segments one at a time (a live capture) or a batch at a
    time (``feed_batch``: --read), then finish.

    ``keep``: each connection keeps its annotated segments (live, scenarios); else each
    segment's step (S_*) is only handed on (--read).
    ``forget``: memory is bounded however long the capture (--read): a connection whose ends
    are both CLOSED or TIME_WAIT is followed while it is one of the last KEEP_DONE to finish,
    then finished and handed over in ``forgotten`` (a later segment of it starts a connection
    "joined mid-connection").
    ``absolute``: also label with raw sequence numbers (--absolute).
    """

    def __init__(self, keep: bool = True, absolute: bool = False, forget: bool = False) -> None:
        self.keep, self.absolute, self.forget = keep, absolute, forget
        self.trackers: dict[tuple, _Tracker] = {}  # by the sorted pair of (address, port)
        self._by_way: dict[tuple, tuple[_Tracker, bool]] = {}  # (src, sport, dst, dport) -> tracker, from client
        self.order: list[_Tracker] = []
        self.forgotten: list[Connection] = []  # finished and no longer followed; the caller empties it
        # the oldest finished first; an OrderedDict, not a dict: taking a dict's first key
        # walks the holes its deletions left at the front (0.44 against 0.18 us a connection)
        self._done: OrderedDict[tuple, None] = OrderedDict()

    def tracker_of(self, seg: Segment) -> _Tracker:
        return self._by_way[(seg.src, seg.sport, seg.dst, seg.dport)][0]

    def feed(self, seg: Segment) -> list[tuple[Connection, Annotated]]:
        steps: list[list] = []
        self.feed_batch((seg,), steps)
        return [(st[S_CONN], step_annotated(st)) for st in steps]

    def _start(self, seg: tuple, hit: tuple | None, order: int) -> tuple[_Tracker, bool]:
        """A tracker for the connection ``seg`` opens; ``hit``: the one its 4-tuple had;
        ``order``: the segment's S_KEY."""
        src, sport, dst, dport = seg[1], seg[2], seg[3], seg[4]
        a, b = (src, sport), (dst, dport)
        tr = _Tracker(seg)
        tr.conn.first = order
        key = tr.key = (a, b) if a < b else (b, a)
        if hit is not None and self.forget:
            # a new SYN on a 4-tuple whose connection is over (CLOSED or TIME_WAIT: RFC 9293
            # 3.6.1 lets a SYN reopen it) is a new connection, not a segment of the old one
            old = hit[0]
            self._done.pop(key, None)
            old.finish([])  # its final states (it is done: nothing pending)
            old.conn.key = order - 1
            self.forgotten.append(old.conn)
        if not self.forget:
            self.order.append(tr)
        self.trackers[key] = tr  # (in the old one's place, if any: the order of finish())
        # from the client: from anything but the server's end (both, when a socket talks to itself)
        s = tr.server_end
        way_back = self._by_way[(dst, dport, src, sport)] = (tr, b != s)
        way = self._by_way[(src, sport, dst, dport)] = (tr, a != s)
        return way if a != b else way_back

    def _retire(self, tr: _Tracker, order: int) -> None:
        """``tr`` just finished: follow it while it is one of the last KEEP_DONE to, then forget it."""
        tr.retired = True
        for end in (tr.client, tr.server):
            # what a finished connection still resends is its last segments (a FIN whose ACK
            # was lost): keep those, not up to SENT_KEEP of a bulk transfer's per connection
            # followed (1024 of them held 100 MiB at 100 connections of 10 000 segments)
            if len(end.sent) > SENT_AFTER_DONE:
                end.sent = dict(list(end.sent.items())[-SENT_AFTER_DONE:])
        done = self._done
        done[tr.key] = None
        if len(done) > KEEP_DONE:
            old, _ = done.popitem(last=False)
            gone = self.trackers.pop(old)
            (a, ap), (b, bp) = old
            for way in ((a, ap, b, bp), (b, bp, a, ap)):
                if self._by_way.get(way, (None,))[0] is gone:
                    del self._by_way[way]
            gone.finish([])  # nothing pending: both ends are done
            gone.conn.key = order
            self.forgotten.append(gone.conn)

    def feed_batch(self, segs, out: list, keys: Iterable[int] | None = None) -> None:
        """Annotate ``segs`` (Segments, or plain tuples in Segment's field order) and append
        each step, once it can be annotated, to ``out``; ``keys``: each segment's S_KEY (its
        position x 2: shard_batches), where the order of the output matters.  The whole
        per-segment path in one loop with its names bound locally: it runs a million times on
        a large capture."""
        by_way, forget, keep, absolute = self._by_way, self.forget, self.keep, self.absolute
        emit = out.append
        shapes = _SHAPES
        done_states, keepalive_states = DONE_STATES, _KEEPALIVE_STATES
        for seg, order in zip(segs, repeat(0) if keys is None else keys):
            t, src, sport, dst, dport, f, seq, ack, win, length = seg
            hit = by_way.get((src, sport, dst, dport))
            if hit is None or (f & 0x12 == SYN and hit[0].done and seq != hit[0].client.isn):
                hit = self._start(seg, hit, order)
            tr, from_client = hit
            if from_client:
                me, peer, sender = tr.client, tr.server, "client"
            else:
                me, peer, sender = tr.server, tr.client, "server"
                tr.server_sent = True
            p = tr.pending
            if p is not None:
                if p[S_SENDER] == "client":  # a pending step is a bare SYN
                    # the reply to a SYN tells what the SYN did to the server: RST -> it had no listener
                    if not from_client and f & RST:
                        tr.correct_pending(CLOSED)
                    elif from_client and f & SYN:
                        # the client sent its SYN again: the server never answered the first
                        tr.correct_pending(UNKNOWN)
                        tr.server.state = UNKNOWN
                p[S_KEY] = order - 1
                emit(p)
                tr.pending = None
            conn = tr.conn
            joined = tr.joined
            marks: list[str] = []
            isn = me.isn
            if isn is None:
                isn = me.isn = seq if not joined or f & SYN else (seq - 1) % MOD
            # retransmission, keepalive probe, dup ACK
            if not (length or f & 0x03) or f & RST:
                retrans = 0
                if f == ACK:
                    nxt = me.next_seq
                    if nxt is not None and length <= 1 and (seq + 1) % MOD == nxt and me.state in keepalive_states:
                        marks.append(_KEEPALIVE)
                    elif length == 0 and me.last_ack == ack:
                        marks.append("dup ACK")
                    if length == 0:
                        me.last_ack = ack
            else:
                sent = me.sent
                # a SYN-ACK after the same end's bare SYN (simultaneous open, RFC 9293 figure 8)
                # is its SYN sent on with an ACK, not a resend: the ACK bit is in the key for SYNs
                rkey = (seq, f & 0x12 if f & SYN else f & 0x03, length)
                before = sent.get(rkey)
                if before is None:
                    sent[rkey] = (1, t)
                    retrans = 0
                else:
                    retrans, last = before
                    sent[rkey] = (retrans + 1, t)
                    marks.append(f"retransmission {retrans}, {t - last:.3f} s after the previous")
                if len(sent) > SENT_KEEP + SENT_SLACK:
                    # bounded: a resend of something sent that long ago is not looked for; the
                    # oldest go SENT_SLACK at a time (a dict's first key, one at a time, is found
                    # by walking the holes the deletions before left)
                    me.sent = dict(list(sent.items())[-SENT_KEEP:])
            # label and states: one lookup in the memo of both
            fl = f & _FLAG_BITS
            seq_off = (seq - isn) % MOD
            pisn = peer.isn
            rel_ack = ((ack - pisn) % MOD if pisn is not None else ack) if f & ACK else 0
            pfin = peer.fin_seq
            acks_fin = bool(f & ACK) and pfin is not None and ack == (pfin + 1) % MOD
            label, ms, ps, refused = shapes[
                fl, from_client, seq_off, rel_ack if pisn is not None else ~ack, length, me.state, peer.state, acks_fin
            ]
            label_abs = _label_absolute(f, seq, ack, length) if absolute else ""
            if not joined:
                me.state, peer.state = ms, ps
                cs, ss = (ms, ps) if from_client else (ps, ms)
                if refused:
                    marks.append("connection refused: no listener on that port")
                elif ms == TIME_WAIT or ps == TIME_WAIT:
                    for end in (me, peer):
                        if end.state == TIME_WAIT and not end.time_wait_marked:
                            marks.append(_ENTERS_TW[end.name])
                            end.time_wait_marked = True
            else:
                if f & RST:
                    me.state = peer.state = CLOSED
                cs, ss = tr.client.state, tr.server.state
            end_seq = (seq + length + (f & SYN and 1) + (f & FIN)) % MOD
            nxt = me.next_seq
            if nxt is None or 0 < (end_seq - nxt) % MOD < 0x80000000:
                me.next_seq = end_seq
            if f & FIN:
                me.fin_seq = (seq + length) % MOD
            if win == 0 and not f & RST:
                marks.append("zero window")
            st = [
                conn,
                t - tr.start,
                sender,
                seg,
                label,
                marks,
                retrans,
                cs,
                ss,
                seq_off,
                rel_ack,
                label_abs,
                not tr.steps,
                None,
                order,
            ]
            tr.steps += 1
            if keep:
                conn.packets.append(step_annotated(st))
            if f & 0x12 == SYN:
                tr.pending = st
            else:
                emit(st)
                if forget and not tr.retired and cs in done_states and ss in done_states:
                    self._retire(tr, order)

    def finish_steps(self, out: list) -> None:
        """The steps still held (a SYN with no reply seen), then every connection's final states."""
        # in order of their first segments (a 4-tuple's second connection takes the first's
        # place in self.trackers)
        trackers = sorted(self.trackers.values(), key=_first) if self.forget else self.order
        for tr in trackers:
            held = len(out)
            tr.finish(out)
            for st in out[held:]:
                st[S_KEY] = END + tr.conn.first
            tr.conn.key = END + tr.conn.first
        if self.forget:
            self.forgotten.extend(tr.conn for tr in trackers)
            self.trackers.clear()
            self._by_way.clear()

    def finish(self) -> list[tuple[Connection, Annotated]]:
        out: list[list] = []
        self.finish_steps(out)
        return [(st[S_CONN], step_annotated(st)) for st in out]


def _first(tr: _Tracker) -> int:
    return tr.conn.first


def annotate(
    segments: Iterable[Segment], keep: bool = True, absolute: bool = False, forget: bool = False
) -> Iterator[tuple[Connection, Annotated]]:
    """Each segment, as soon as it can be annotated, with the connection it belongs to."""
    tracer = Tracer(keep, absolute, forget)
    for seg in segments:
        yield from tracer.feed(seg)
        tracer.forgotten.clear()
    yield from tracer.finish()


def _keyed(batches: Iterable, keyed: bool) -> Iterator[tuple[list, Iterable[int]]]:
    """(segments, S_KEYs) pairs: as given (``keyed``) or numbered here."""
    if keyed:
        yield from batches
        return
    pos = 0
    for batch in batches:
        yield batch, range(pos, pos + 2 * len(batch), 2)
        pos += 2 * len(batch)


def annotate_batches(batches: Iterable, absolute: bool = False, keyed: bool = False) -> Iterator[list[list]]:
    """--read as text: the steps of each batch of segments (see S_*), in bounded memory (no
    segment kept, finished connections forgotten).  ``keyed``: the batches are (segments, S_KEYs)
    pairs (core/pcap.read_batches with a shard)."""
    tracer = Tracer(keep=False, absolute=absolute, forget=True)
    for batch, keys in _keyed(batches, keyed):
        out: list[list] = []
        tracer.feed_batch(batch, out, keys)
        tracer.forgotten.clear()
        yield out
    out = []
    tracer.finish_steps(out)
    yield out


def finished_batches(
    batches: Iterable, absolute: bool = False, keyed: bool = False
) -> Iterator[tuple[list[list], list[Connection]]]:
    """--read --json: for each batch of segments, the steps that could be annotated (S_*, as
    annotate_batches) and the connections finished with it (both ends CLOSED or TIME_WAIT and
    KEEP_DONE others finished since; Connection.key: where it is written); then what is left
    at the capture's end.  A connection's steps come in its order, and all before it is
    finished; it keeps none of them, so what it takes to hold them is the writer's choice
    (render/trace.ConnectionsJson).  ``keyed``: as annotate_batches."""
    tracer = Tracer(keep=False, absolute=absolute, forget=True)
    for batch, keys in _keyed(batches, keyed):
        out: list[list] = []
        tracer.feed_batch(batch, out, keys)
        yield out, tracer.forgotten
        tracer.forgotten = []
    out = []
    tracer.finish_steps(out)
    yield out, tracer.forgotten


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
