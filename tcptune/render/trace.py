"""Trace output: a two-lane view (client | arrow | server, as the tutorials draw it) or JSON."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Iterator
from typing import Protocol

from tcptune.core.pcap import ACK, LETTERS
from tcptune.core.trace import (
    MEMO_MAX,
    S_CLIENT,
    S_CONN,
    S_FIRST,
    S_KEY,
    S_LABEL,
    S_LABEL_ABS,
    S_MARKS,
    S_REL_ACK,
    S_REL_SEQ,
    S_RETRANS,
    S_SEG,
    S_SENDER,
    S_SERVER,
    S_T,
    Annotated,
    Connection,
)
from tcptune.render.output import Output

TIME_W, STATE_W = 9, 11
MIN_LANE = 24


def _lane_width(out: Output) -> int:
    width = out.width or 80
    return max(MIN_LANE, width - TIME_W - 2 * STATE_W - 6)


_JOINED = "  joined mid-connection: the capture has no SYN, so the states are unknown"


def _columns(lane: int) -> str:
    return f"{'t (s)':>{TIME_W}} {'client':<{STATE_W}} {'':^{lane}}  {'server'}"


def render_header(conn: Connection, out: Output) -> list[str]:
    lines = ["", out.line(f"connection {conn.client} (client) -> {conn.server} (server)")]
    if conn.joined_mid:
        lines.append(out.line(_JOINED))
    lines.append(_columns(_lane_width(out)))
    return lines


def _wrap(text: str, width: int) -> list[str]:
    """textwrap.wrap(text, width), without its regular expressions (15 us a line) in the case
    the labels are: words of printable ASCII one space apart, no hyphen, none wider than the
    line, where its greedy fill is this one (tests/unit/test_trace.py checks them equal)."""
    words = text.split(" ")
    # (printable ASCII with no double, leading or trailing space: no empty word; all at C speed)
    if (
        "-" in text
        or not (text.isascii() and text.isprintable())
        or "  " in text
        or text[0] == " "
        or text[-1] == " "
        or max(map(len, words)) > width
    ):
        return textwrap.wrap(text, width)
    lines, line = [], words[0]
    for w in words[1:]:
        if len(line) + 1 + len(w) <= width:
            line += " " + w
        else:
            lines.append(line)
            line = w
    lines.append(line)
    return lines


def _body(sender: str, letters: str, label: str, length: int, client: str, server: str, lane: int) -> str:
    """A packet's lines but the time column of its first: all of it repeats from packet to packet."""
    text = f"[{letters}] {label}"
    if length and "bytes" not in label:
        text += f" ({length} bytes)"
    body = [text] if len(text) <= lane - 4 else _wrap(text, lane - 4)
    lines = []
    for i, chunk in enumerate(body):
        last = i == len(body) - 1
        if sender == "client":
            arrow = f"{chunk} ".ljust(lane - 1, "-") + ">" if last else f"{chunk}".ljust(lane)
        else:
            arrow = "<" + f" {chunk}".rjust(lane - 1, "-") if last else f"{chunk}".rjust(lane)
        left = client if last else ""
        right = server if last else ""
        lines.append(f" {left:<{STATE_W}} {arrow}  {right}".rstrip())
    return ("\n" + " " * TIME_W).join(lines)


def _mark_line(mark: str, out: Output) -> str:
    return out.line(f"{'':{TIME_W}}   ^ {mark}", indent=" " * (TIME_W + 5))


_TIME = f"%{TIME_W}.6f"  # the % operator: half the time of format() for the same digits


def render_packet(ann: Annotated, out: Output, absolute: bool = False) -> list[str]:
    s = ann.segment
    body = _body(
        ann.sender,
        s.letters,
        ann.label_text(absolute),
        s.length,
        ann.states_after["client"],
        ann.states_after["server"],
        _lane_width(out),
    )
    lines = (_TIME % ann.t + body).split("\n")
    for mark in [*ann.marks, *_kernel_mark(ann)]:
        lines.append(_mark_line(mark, out))
    return lines


def render_step_items(
    batches: Iterable[list[list]], out: Output, absolute: bool = False
) -> Iterator[list[tuple[int, str]]]:
    """For each batch of steps, each step's lines (its connection's header before its first
    segment, then the packet, then its marks; every line ends in a newline) with the step's
    S_KEY: a half of a sharded --read is merged with the other by it.  A packet's line is its
    time and a body remembered by what it shows (sender, flags, label, length, states): on a
    large capture the same few bodies come back again and again."""
    lane = _lane_width(out)
    bodies: dict[tuple, str] = {}
    marks: dict[str, str] = {}
    letters, time_fmt, line_of = LETTERS, _TIME, out.line
    columns, joined = _columns(lane) + "\n", out.line(_JOINED) + "\n"
    for steps in batches:
        items: list[tuple[int, str]] = []
        add = items.append
        for st in steps:
            seg = st[S_SEG]
            label = st[S_LABEL_ABS] if absolute and st[S_LABEL_ABS] else st[S_LABEL]
            key = (st[S_SENDER], seg[5], label, seg[9], st[S_CLIENT], st[S_SERVER])
            body = bodies.get(key)
            if body is None:
                if len(bodies) > MEMO_MAX:
                    bodies.clear()
                body = bodies[key] = _body(key[0], letters[key[1] & 0xFF], *key[2:], lane) + "\n"
            text = time_fmt % st[S_T] + body
            for mark in st[S_MARKS]:
                line = marks.get(mark)
                if line is None:
                    if len(marks) > 4096:
                        marks.clear()
                    line = marks[mark] = _mark_line(mark, out) + "\n"
                text += line
            if st[S_FIRST]:  # render_header's lines, its two constant ones made once
                conn = st[S_CONN]
                head = "\n" + line_of(f"connection {conn.client} (client) -> {conn.server} (server)") + "\n"
                text = head + (joined if conn.joined_mid else "") + columns + text
            add((st[S_KEY], text))
        yield items


def _kernel_mark(ann: Annotated) -> list[str]:
    """Where the kernel's states were read after this segment: that they agree, or how they differ."""
    k = ann.kernel_states
    if k is None:
        return []
    said = ", ".join(f"{end} {k[end]}" for end in ("client", "server") if end in k)
    if not ann.disagreements:
        return [f"kernel (sock_diag): {said}: agrees"]
    inferred = ", ".join(f"{e} {ann.states_after[e]}" for e in ann.disagreements)
    return [f"kernel (sock_diag): {said}: DIFFERS from the packets ({inferred})"]


def render_trace_text(
    items: Iterable[tuple[Connection, Annotated]], out: Output, absolute: bool = False
) -> Iterable[str]:
    """Lines as the segments come; a connection's header before its first segment."""
    started: set[int] = set()
    for conn, ann in items:
        if id(conn) not in started:
            started.add(id(conn))
            yield from render_header(conn, out)
        yield from render_packet(ann, out, absolute)


def render_kernel_check(conn: Connection, out: Output) -> list[str]:
    """The kernel's own states of both ends beside the inferred ones; a disagreement is said."""
    if conn.kernel_states is None:
        return []
    k = conn.kernel_states
    line = f"kernel at the end: client {k['client']}, server {k['server']}"
    if conn.disagreements:
        inferred = ", ".join(f"{e} {conn.final_states[e]}" for e in conn.disagreements)
        line += (
            f"; DIFFERS from the packets ({inferred}): the kernel changed state with no segment on the wire "
            "to show it (a timer, or a segment the receiver dropped)"
        )
    else:
        line += ": agrees with the packets"
    return [out.line(line)]


def render_scenario_list(names: dict[str, str], out: Output) -> str:
    return out.table(["scenario", "what it shows"], sorted(names.items()), flexible=[1])


def render_trace_json(connections: list[Connection], source: str, stats, absolute: bool = False) -> dict:
    return {
        "source": source,
        "packets_read": stats.records,
        "tcp_segments": stats.tcp,
        "sequence_numbers": "absolute" if absolute else "relative",
        "connections": [c.to_json(absolute) for c in connections],
    }


def render_connection_items(
    batches: Iterable[tuple[list[list], list[Connection]]], absolute: bool = False, spill: Spill | None = None
) -> Iterator[list[tuple[int, list[Piece]]]]:
    """For each batch of core/trace.finished_batches (steps, finished connections), each
    finished connection's JSON text as pieces (ConnectionsJson) with its Connection.key: a
    half of a sharded --read --json is merged with the other by it.  ``spill``: where
    packets' lines go once too many are held."""
    writer = ConnectionsJson(absolute, spill)
    for steps, conns in batches:
        yield writer.batch(steps, conns)


def render_json_document(
    connections: Iterable[str | Iterable[str]], source: str, stats, absolute: bool = False
) -> Iterator[str]:
    """``render_trace_json``'s document around connections already written (render_connection_items),
    each a string or the strings that make it."""
    import json

    dumps = json.JSONEncoder(allow_nan=False).encode
    # the head goes out with the first connection: a file with no TCP at all is an error, not half a document
    head = f'{{\n  "source": {dumps(source)},\n'
    head += f'  "sequence_numbers": "{"absolute" if absolute else "relative"}",\n  "connections": ['
    sep = "\n    "
    for conn in connections:
        if isinstance(conn, str):
            yield head + sep + conn
        else:
            yield head + sep
            yield from conn
        head, sep = "", ",\n    "
    yield head + ("\n  ]" if sep != "\n    " else "]") + ",\n"
    yield f'  "packets_read": {stats.records},\n'
    yield f'  "tcp_segments": {stats.tcp}\n'
    yield "}\n"


class Spill(Protocol):
    """Text put away until it is wanted (host/spill.SpillFile: an unlinked temporary file)."""

    def put(self, text: str) -> tuple[int, int]:
        """Where it is now: (offset, bytes), as the one who reads it back needs them."""
        ...


# A piece of output as a half of --read hands it on: text, or where a spill holds it.
Piece = str | tuple[int, int]
HOLD_MAX = 4 << 20  # characters of packets' lines held in memory before they are spilled
_PACKET_SEP = ",\n        "


class ConnectionsJson:
    """--read --json: each step's line written as it comes (core/trace.finished_batches hands
    on a connection's steps in its order), held for its connection until the connection is
    finished, then the connection as pieces that make its text: its Connection.to_json with each
    packet json.dumps'd on one line (tests/unit/test_trace.py checks it byte for byte).  A connection's packets must all be inside its object, so a long one would be held
    whole: past HOLD_MAX characters held in all, every connection's lines so far go to
    ``spill`` (without one they stay) and its pieces say where, so memory stays flat however
    long the connections."""

    def __init__(self, absolute: bool = False, spill: Spill | None = None, hold_max: int | None = None) -> None:
        import json

        self.dumps = dumps = json.JSONEncoder(allow_nan=False).encode
        self.lines = _json_packets(dumps, absolute)
        self.spill, self.hold_max = spill, HOLD_MAX if hold_max is None else hold_max
        self.held: dict[int, list[str]] = {}  # Connection.first -> its lines not yet written
        self.spilled: dict[int, list[tuple[int, int]]] = {}  # Connection.first -> where its lines went
        self.size = 0  # characters held
        self.finals: dict[tuple, str] = {}  # both ends' final states come in few combinations

    def batch(self, steps: list[list], conns: list[Connection]) -> list[tuple[int, list[Piece]]]:
        self.size += self.lines(steps, self.held)
        if self.size > self.hold_max and self.spill is not None:
            self._spill_all()
        return [(conn.key, self.connection(conn)) for conn in conns]

    def _spill_all(self) -> None:
        for first, lines in self.held.items():
            if lines:
                self.spilled.setdefault(first, []).append(self.spill.put(_PACKET_SEP.join(lines)))
                lines.clear()
        self.size = 0

    def connection(self, conn: Connection) -> list[Piece]:
        dumps = self.dumps
        lines = self.held.pop(conn.first, [])
        self.size -= sum(map(len, lines))
        spilled = self.spilled.pop(conn.first, ())
        kernel = "null" if conn.kernel_states is None else dumps(dict(conn.kernel_states))
        fkey = tuple(conn.final_states.items())
        final = self.finals.get(fkey)
        if final is None:
            final = self.finals[fkey] = dumps(dict(conn.final_states))
        head = (
            f'{{\n      "client": {_json_word(conn.client, dumps)},\n'
            f'      "server": {_json_word(conn.server, dumps)},\n'
            f'      "joined_mid_connection": {"true" if conn.joined_mid else "false"},\n'
            f'      "packets": '
        )
        tail = f',\n      "final_states": {final},\n      "kernel_final_states": {kernel}\n    }}'
        if not spilled:
            packets = f"[\n        {_PACKET_SEP.join(lines)}\n      ]" if lines else "[]"
            return [head + packets + tail]
        pieces: list[Piece] = [head + "[\n        "]
        for where in spilled:
            pieces += (where, _PACKET_SEP)
        if lines:
            pieces.append(_PACKET_SEP.join(lines))
        else:
            pieces.pop()
        pieces.append("\n      ]" + tail)
        return pieces


def _json_word(text: str, dumps) -> str:
    """``dumps(text)``, without the encoder (1 us) for a text with nothing to escape: printable
    ASCII with no quote or backslash (addresses, labels)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return dumps(text)


def _json_packets(dumps, absolute: bool):
    """Annotated.to_json of each step, encoded as json.dumps would (same keys, same
    order, floats by repr), by string formatting: the dict and the encoder were two thirds of
    --json's time.  Labels and marks go through ``dumps``; the names of states, senders and
    flags are plain ASCII words."""
    times: dict[float, str] = {}  # round() and repr(float) are 0.8 us: times that come back are written once
    pieces: dict[tuple, tuple[str, str]] = {}  # what comes before and after the raw numbers

    def lines(steps: list[list], held: dict[int, list[str]]) -> int:
        """Each step's line, appended to its connection's in ``held``; the characters added."""
        size = 0
        for st in steps:
            _t, _s, _sp, _d, _dp, f, seq, ack, win, length = st[S_SEG]
            raw = st[S_T]
            ts = times.get(raw)
            if ts is None:
                if len(times) > MEMO_MAX:
                    times.clear()
                ts = times[raw] = repr(round(raw, 6))  # (-0.0 is a key of its own: 0.0 == -0.0, same hash)
                if raw == 0:
                    del times[raw]
            marks = st[S_MARKS]
            label = st[S_LABEL_ABS] if absolute and st[S_LABEL_ABS] else st[S_LABEL]
            key = (
                st[S_SENDER],
                f,
                st[S_REL_SEQ],
                st[S_REL_ACK],
                length,
                win,
                label,
                st[S_RETRANS],
                st[S_CLIENT],
                st[S_SERVER],
            )
            ends = None if marks else pieces.get(key)
            if ends is None:
                ack_rel = key[3] if f & ACK else "null"
                ends = (
                    f', "from": "{key[0]}", "flags": "{LETTERS[f & 0xFF]}", "seq_rel": {key[2]}, '
                    f'"ack_rel": {ack_rel}, "seq": ',
                    f', "len": {length}, "window": {win}, "label": {_json_word(label, dumps)}, '
                    f'"marks": {dumps(marks) if marks else "[]"}, "retransmission": {key[7]}, '
                    f'"states_after": {{"client": "{key[8]}", "server": "{key[9]}"}}, '
                    '"states_source": "inferred", "kernel_states": null, "disagrees": []}',
                )
                if not marks:
                    if len(pieces) > MEMO_MAX:
                        pieces.clear()
                    pieces[key] = ends
            head, tail = ends
            if f & ACK:
                line = f'{{"t": {ts}{head}{seq}, "ack": {ack}{tail}'
            else:
                line = f'{{"t": {ts}{head}{seq}, "ack": null{tail}'
            size += len(line)
            first = st[S_CONN].first
            got = held.get(first)
            if got is None:
                held[first] = [line]
            else:
                got.append(line)
        return size

    return lines
