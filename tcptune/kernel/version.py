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


# Debian's build string (kernel.version, uname -v) names the package version, whose upstream part
# is the stable release: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)".
_DEBIAN_BUILD = re.compile(r"\bDebian (\d+\.\d+\.\d+)\b")


def parse_release(osrelease: str, build: str | None = None) -> Version:
    """The kernel's version with its stable patch level, from kernel.osrelease and kernel.version.

    Debian's 6.1 names its kernel by the ABI, not the release: osrelease '6.1.0-57-amd64' is
    6.1.192, and only the build string (kernel.version, ``build``) says so.  A rule keyed on a
    stable release (tcp_shrink_window in 6.1.59) cannot match without it.  The build string is
    trusted only when the osrelease has no patch level and both agree on major.minor; otherwise
    (6.12.118+deb12-amd64, 6.18.44-fc-v1045, a build string without a version) the osrelease rules.
    """
    version = parse_version(osrelease)
    if build and version[2] == 0:
        m = _DEBIAN_BUILD.search(build)
        if m:
            stable = parse_version(m.group(1))
            if stable[:2] == version[:2]:
                return stable
    return version


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
