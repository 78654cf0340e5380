"""The one rule for comparing and writing sysctl values: only the words count.

/proc/sys prints vectors (tcp_rmem) tab separated and sysctl(8) space separated; the
kernel's integer parsers skip any whitespace between fields (proc_get_long() after
skipping spaces, kernel/sysctl.c), so ``4096\\t131072 6291456`` and ``4096 131072 6291456``
are the same value.  Every module that compares, stores or writes a value uses this.
"""

from __future__ import annotations


def normalize_value(value: object) -> str:
    """The whitespace-insensitive form of a sysctl value (words joined by one space)."""
    return " ".join(str(value).split())


def values_equal(a: object | None, b: object | None) -> bool:
    """Equal as the kernel reads them; None (absent) equals only None."""
    if a is None or b is None:
        return a is b
    return normalize_value(a) == normalize_value(b)


def json_value(value: object | None) -> int | list[int] | str | None:
    """A sysctl value as JSON shows it: a number as a number, a vector of numbers as a list,
    anything else as the string (as nstat -j does with counters).

    ``"60"`` -> 60, ``"4096 131072 6291456"`` -> [4096, 131072, 6291456], ``"cubic"`` and
    ``"8080,9000-9010"`` stay strings, None (absent) stays None.  The text forms keep the
    kernel's spelling; only the JSON view is typed.
    """
    if value is None or isinstance(value, int):
        return value
    words = str(value).split()
    if not words or not all(_is_int(w) for w in words):
        return normalize_value(value) if words else str(value)
    numbers = [int(w) for w in words]
    return numbers[0] if len(numbers) == 1 else numbers


def _is_int(word: str) -> bool:
    digits = word[1:] if word[:1] == "-" else word
    # ASCII digits only, and never longer than a u64 (int() of a huge string is slow)
    return digits.isascii() and digits.isdigit() and len(digits) <= 20
