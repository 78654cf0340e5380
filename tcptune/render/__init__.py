"""Rendering helpers: tables (tabulate, imported lazily), colour, wrapped text.

Rendering takes plain values and returns strings; it never reads the machine.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence

_COLORS = {
    "ok": "32",
    "drift": "31",
    "warning": "33",
    "unsupported": "36",
    "removed": "35",
    "differs": "31",
    "matches": "32",
}


def colorize(word: str, color: bool) -> str:
    code = _COLORS.get(word)
    return f"\x1b[{code}m{word}\x1b[0m" if color and code else word


def render_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, maxcolwidths: Sequence[int | None] | None = None
) -> str:
    from tabulate import tabulate

    rows = [["" if c is None else c for c in r] for r in rows]
    return tabulate(
        rows,
        headers=list(headers),
        tablefmt="simple",
        disable_numparse=True,
        maxcolwidths=list(maxcolwidths) if maxcolwidths else None,
    )


def wrap(text: str, width: int = 78, indent: str = "") -> str:
    return "\n".join(
        textwrap.fill(p, width=width, initial_indent=indent, subsequent_indent=indent)
        for p in text.split("\n\n")
        if p.strip()
    )


def bar(count: int, largest: int, width: int = 30, unicode: bool = True) -> str:
    """A horizontal bar proportional to count/largest (at least one cell for a non-zero count)."""
    if largest <= 0 or count <= 0:
        return ""
    cells = max(1, round(width * count / largest))
    return ("█" if unicode else "#") * cells
