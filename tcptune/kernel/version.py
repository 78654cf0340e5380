"""Kernel release strings and version ranges (pure)."""

from __future__ import annotations

import re

from tcptune.errors import ExitCode, TcptuneError

Version = tuple[int, ...]
_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> Version:
    """'6.18.44-fc-v657' -> (6, 18, 44); '4.12' -> (4, 12, 0)."""
    m = _RELEASE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise TcptuneError(
            f"{text!r} is not a kernel version", ExitCode.BAD_INPUT, hint="versions look like 6.5 or 4.12.3"
        )
    return tuple(int(g or 0) for g in m.groups())


def format_version(v: Version) -> str:
    return ".".join(str(x) for x in (v[:2] if len(v) > 2 and v[2] == 0 else v))


_SPEC = re.compile(r"\s*(>=|<=|==|!=|>|<)?\s*([0-9][0-9.]*)\s*\Z")


def version_matches(version: Version, spec: str) -> bool:
    """Does ``version`` satisfy ``spec`` such as '>=4.12', '>=5.4,<6.0' or '6.5'?"""
    for part in spec.split(","):
        m = _SPEC.match(part)
        if not m:
            raise TcptuneError(
                f"kernel range {spec!r} is not understood",
                ExitCode.BAD_INPUT,
                hint='write e.g. ">=4.12" or ">=5.4,<6.0"',
            )
        op, want = m.group(1) or "==", parse_version(m.group(2))
        v = tuple(version[:3]) + (0,) * (3 - len(version))
        # "6.5" / "==6.5" means any 6.5.x: compare only the components written.
        n = len([c for c in m.group(2).split(".") if c])
        ok = {
            ">=": v >= want,
            "<=": v <= want,
            ">": v > want,
            "<": v < want,
            "==": v[:n] == want[:n],
            "!=": v[:n] != want[:n],
        }[op]
        if not ok:
            return False
    return True
