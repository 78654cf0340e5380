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
