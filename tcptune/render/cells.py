"""Cell text shared by the renderers of show, explain, audit and profiles."""

from __future__ import annotations

from tcptune.render.output import Output, visible_len

# A value longer than this is cut in a table (the JSON output has it whole): an 8 MiB value
# once turned one audit row into 381,000 lines.
MAX_CELL = 200


def clip(text: str | None, absent: str = "(absent)") -> str:
    if text is None:
        return absent
    if len(text) <= MAX_CELL:
        return text
    return f"{text[: MAX_CELL - 40]}... ({len(text)} characters; --json shows all)"


def piped_caps(out: Output, caps: dict[int, int]) -> dict[int, int] | None:
    """Column caps for output that is not a terminal (free text wrapped as it always was);
    on a terminal the table is fitted to its width instead."""
    return caps if out.width is None else None


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 parameter', '2 parameters'."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def fits(text: str, out: Output) -> bool:
    """Does every line of ``text`` fit the terminal (always true off a terminal)?"""
    return out.width is None or all(visible_len(line) <= out.width for line in text.split("\n"))


def block(out: Output, head: str, *paragraphs: str) -> str:
    """One record for a terminal too narrow for its table: a head line, then indented paragraphs."""
    lines = [out.line(head)]
    lines += [out.wrap(p, indent="    ") for p in paragraphs if p]
    return "\n".join(lines)
