"""Where a key sits in a TOML file, for file:line error messages (pure, linear time).

tomllib gives values but no positions, so error messages find the line again here.  The
scanner reads each key the way TOML spells it -- bare, "basic" with escapes, 'literal',
dotted -- and skips the bodies of multi-line strings, so a line inside a string is never
taken for a key.  It is a hand-written loop over characters, not a regular expression:
every step moves forward, so no input can make it slower than linear (a backtracking
pattern once took 141 s on a string holding 8,000 spaces).

Only positions come from here; values always come from tomllib.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from tcptune.errors import ExitCode, TcptuneError

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}
_BLANK = " \t"


def err_at(origin: str, line: int | None, message: str, hint: str | None = None) -> TcptuneError:
    where = f"{origin}:{line}" if line else origin
    return TcptuneError(f"{where}: {message}", ExitCode.BAD_INPUT, hint=hint)


def _skip_blank(s: str, i: int) -> int:
    while i < len(s) and s[i] in _BLANK:
        i += 1
    return i


def _basic(s: str, i: int) -> tuple[str, int] | None:
    """A "basic" string starting after its opening quote: (text, index after the close)."""
    out = []
    while i < len(s):
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(s):
            e = s[i + 1]
            width = {"u": 4, "U": 8, "x": 2}.get(e)
            if width:
                digits = s[i + 2 : i + 2 + width]
                try:
                    out.append(chr(int(digits, 16)))
                except ValueError:
                    return None
                i += 2 + width
                continue
            out.append(_ESCAPES.get(e, e))
            i += 2
            continue
        out.append(c)
        i += 1
    return None


def parse_key(s: str, i: int) -> tuple[tuple[str, ...], int] | None:
    """A (dotted) TOML key at ``s[i:]``: (parts, index after it), or None when there is none."""
    parts: list[str] = []
    while True:
        i = _skip_blank(s, i)
        if i >= len(s):
            return None
        if s[i] == '"':
            got = _basic(s, i + 1)
            if got is None:
                return None
            part, i = got
        elif s[i] == "'":
            end = s.find("'", i + 1)
            if end < 0:
                return None
            part, i = s[i + 1 : end], end + 1
        else:
            start = i
            while i < len(s) and s[i] in _BARE:
                i += 1
            if i == start:
                return None
            part = s[start:i]
        parts.append(part)
        i = _skip_blank(s, i)
        if i < len(s) and s[i] == ".":
            i += 1
            continue
        return tuple(parts), i


def _multiline_close(s: str, i: int, quote: str) -> int:
    """Index after the closing triple quote of a multi-line string whose body starts at ``i``, or -1."""
    delim = quote * 3
    if quote == "'":
        end = s.find(delim, i)
        return -1 if end < 0 else end + 3
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s.startswith(delim, i):
            return i + 3
        i += 1
    return -1


def key_paths(text: str) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line number, "header" | "assign", full key path) for each table header and assignment.

    The path of an assignment includes its table: ``[settings]`` then ``net.ipv4.x = 1``
    gives ("settings", "net", "ipv4", "x").
    """
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    table: tuple[str, ...] = ()
    n = 0
    while n < len(lines):
        line, lineno = lines[n], n + 1
        n += 1
        i = _skip_blank(line, 0)
        if i >= len(line) or line[i] == "#":
            continue
        if line[i] == "[":
            got = parse_key(line, i + 2 if line.startswith("[[", i) else i + 1)
            if got is not None:
                table = got[0]
                yield lineno, "header", table
            continue
        got = parse_key(line, i)
        if got is None:
            continue
        parts, j = got
        if j >= len(line) or line[j] != "=":
            continue
        yield lineno, "assign", table + parts
        j = _skip_blank(line, j + 1)
        quote = line[j : j + 1]
        if quote in ('"', "'") and line.startswith(quote * 3, j):
            # Skip the string's body: its lines are text, not keys.
            close = _multiline_close(text, starts[lineno - 1] + j + 3, quote)
            if close < 0:
                return
            # Resume after the line holding the close: before the close it is string text.
            n = max(bisect.bisect_right(starts, close - 1), lineno)


class KeyLines:
    """First line of every key path (up to three parts deep), from one scan of the text.

    One scan, then dictionary look-ups: a profile with many settings stays linear.
    """

    def __init__(self, text: str):
        self.first: dict[tuple[str, ...], int] = {}
        self.inline: set[tuple[str, ...]] = set()  # settings written on one line (short form, inline table)
        for lineno, kind, path in key_paths(text):
            for depth in (1, 2, 3):
                if len(path) >= depth:
                    self.first.setdefault(path[:depth], lineno)
            if kind == "assign" and len(path) == 2:
                self.inline.add(path)

    def top(self, name: str) -> int | None:
        """Line of the top-level field ``name`` (an assignment, or a table such as [settings])."""
        return self.first.get((name,))

    def setting(self, key: str, field_name: str | None = None) -> int | None:
        """Line of a setting (its `[settings."KEY"]` header or its line under [settings]); with
        ``field_name``, the line of that field (an inline setting's own line holds them all)."""
        path = ("settings", key)
        if field_name is not None and path not in self.inline:
            line = self.first.get(path + (field_name,))
            if line is not None:
                return line
        return self.first.get(path)
