"""One output object: what the terminal can show, read once, and the pieces every renderer uses.

``Output.detect(stream)`` is the only place tcptune asks whether it writes to a terminal,
how wide it is, whether colour is wanted and whether the encoding can show unicode.  The
renderers (one module per command family) take an ``Output`` and return strings; they never
look at ``sys`` or the environment themselves, so a test can render at 80 or 200 columns by
building ``Output(width=80)``.

Piped output is never cut or wrapped to a width (``width=None``): a script reading a
table gets every character.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Words that carry a verdict get a colour on a terminal; nothing else is coloured.
_COLORS = {
    "ok": "32",
    "matches": "32",
    "drift": "31",
    "differs": "31",
    "warning": "33",
    "unsupported": "36",
    "removed": "35",
    "corrupt": "31",
}
_RESET = "\x1b[0m"
COLUMN_GAP = 2  # tabulate's "simple" format puts two spaces between columns
MIN_COLUMN = 8  # a wrapped column narrower than this is unreadable; the table overflows instead


@dataclass(frozen=True)
class Output:
    """Facts about where text goes.  ``width`` None: not a terminal, never wrap or cut."""

    color: bool = False
    unicode: bool = True
    width: int | None = None
    tty: bool = False

    @classmethod
    def detect(cls, stream, environ: dict[str, str] | None = None) -> Output:
        """Read the terminal facts of ``stream`` (sys.stdout) and the environment once.

        Colour only on a terminal, never when NO_COLOR is set and not empty (no-color.org).
        Width from COLUMNS, else the terminal (shutil.get_terminal_size asks the tty).
        """
        env = os.environ if environ is None else environ
        try:
            tty = bool(stream.isatty())
        except (AttributeError, ValueError, OSError):
            tty = False
        encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "").replace("_", "")
        width = None
        if tty:
            columns = env.get("COLUMNS", "")
            width = int(columns) if columns.isdigit() and int(columns) > 0 else shutil.get_terminal_size().columns
        return cls(color=tty and not env.get("NO_COLOR"), unicode=encoding == "utf8", width=width, tty=tty)

    # -- words -----------------------------------------------------------------
    def paint(self, word: str, as_word: str | None = None) -> str:
        """``word`` in the colour of the verdict ``as_word`` (default: itself), on a colour terminal."""
        code = _COLORS.get(as_word or word)
        return f"\x1b[{code}m{word}{_RESET}" if self.color and code else word

    def symbol(self, fancy: str, plain: str) -> str:
        return fancy if self.unicode else plain

    def clear_screen(self) -> str:
        """Cursor home and erase the display (ECMA-48 CUP, ED) on a terminal; nothing elsewhere."""
        return "\x1b[H\x1b[2J" if self.tty else ""

    # -- paragraphs ------------------------------------------------------------
    def wrap(self, text: str, indent: str = "", subsequent: str | None = None, *, cap: int | None = None) -> str:
        """Paragraphs (split on blank lines) filled to the terminal width, at word boundaries.

        Off a terminal the width is ``cap`` (default 78: explain texts read as prose in a
        pager too); on one, the terminal width, at most ``cap`` when given.
        """
        width = self.width or cap or 78
        if cap and self.width:
            width = min(width, cap)
        width = max(width, len(indent) + 20)
        sub = indent if subsequent is None else subsequent
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        return "\n".join(
            textwrap.fill(" ".join(p.split()), width=width, initial_indent=indent, subsequent_indent=sub)
            for p in paragraphs
        )

    def line(self, text: str, indent: str = "  ") -> str:
        """One message (a warning, a note) wrapped at words to the terminal; unchanged off a terminal."""
        if self.width is None or len(text) <= self.width:
            return text
        return textwrap.fill(text, width=max(self.width, 30), subsequent_indent=indent, break_on_hyphens=False)

    # -- tables ----------------------------------------------------------------
    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        flexible: Sequence[int] = (),
        caps: dict[int, int] | None = None,
    ) -> str:
        """A plain table that fits the terminal.

        ``flexible``: the columns (by index) that may wrap, at word boundaries, to make the
        table fit, widest first; the others keep their width.  ``caps``: a column's
        largest width even off a terminal (long free text that should wrap in any case).
        """
        from tabulate import tabulate

        rows = [["" if c is None else str(c) for c in r] for r in rows]
        maxcol = fit_columns(headers, rows, self.width, flexible, caps or {})
        return tabulate(
            rows,
            headers=list(headers),
            tablefmt="simple",
            disable_numparse=True,
            maxcolwidths=maxcol if any(w is not None for w in maxcol) else None,
        )

    def bar(self, count: int, largest: int, cells: int) -> str:
        """A horizontal bar proportional to count/largest (at least one cell for a non-zero count)."""
        if largest <= 0 or count <= 0 or cells <= 0:
            return ""
        return self.symbol("█", "#") * max(1, round(cells * count / largest))

    @staticmethod
    def json(data) -> str:
        return json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"


def visible_len(text: str) -> int:
    """Length on screen: ANSI colour sequences take no columns."""
    out, i = 0, 0
    while i < len(text):
        if text[i] == "\x1b":
            end = text.find("m", i)
            i = len(text) if end < 0 else end + 1
            continue
        out += 1
        i += 1
    return out


def _natural(cells: Iterable[str]) -> int:
    return max((max((visible_len(part) for part in c.split("\n")), default=0) for c in cells), default=0)


def fit_columns(
    headers: Sequence[str], rows: list[list[str]], width: int | None, flexible: Sequence[int], caps: dict[int, int]
) -> list[int | None]:
    """Per-column wrap widths (None: leave alone) so the table is at most ``width`` wide.

    Shrinks the widest flexible column first, never below MIN_COLUMN or its longest word
    (a word is never split), and applies ``caps`` whatever the width.
    """
    n = len(headers)
    # tabulate's "simple" format makes a column at least its header plus MIN_PADDING (2) wide
    natural = [max(_natural(r[i] for r in rows if i < len(r)), visible_len(headers[i]) + 2) for i in range(n)]
    widths = [min(natural[i], caps[i]) if i in caps else natural[i] for i in range(n)]
    if width is not None:
        floor = {
            i: max(MIN_COLUMN, visible_len(headers[i]) + 2, _longest_word(r[i] for r in rows if i < len(r)))
            for i in flexible
        }
        excess = sum(widths) + COLUMN_GAP * (n - 1) - width
        while excess > 0:  # one column at a time, widest first: at most a few hundred steps
            shrinkable = [i for i in flexible if widths[i] > floor[i]]
            if not shrinkable:
                break
            widths[max(shrinkable, key=lambda j: widths[j])] -= 1
            excess -= 1
    return [widths[i] if widths[i] < natural[i] else None for i in range(n)]


def _longest_word(cells: Iterable[str]) -> int:
    return max((max((len(w) for w in c.split()), default=0) for c in cells), default=0)
