"""Parsers for `key = value` sysctl text: `sysctl -a` dumps and sysctl.d(5) files (pure).

Both formats are lines of ``key = value``.  sysctl.d(5) also allows comments
starting with '#' or ';', a leading '-' on the key (ignore a failure to set it),
and keys written with '/' separators.  Values keep their inner words, with
whitespace normalised to single spaces (tcp_rmem "4096\t131072\t6291456" and
"4096 131072 6291456" compare equal).
"""

from __future__ import annotations

from dataclasses import dataclass

from tcptune.errors import ExitCode, TcptuneError
from tcptune.values import normalize_value

# Bounds checked at parse time, before any value is compared, printed or parsed further.
# A value of 64 KiB is far beyond any TCP sysctl (the longest, ip_local_reserved_ports,
# lists port ranges); an 8 MiB one once made `audit` print 381,000 lines.
MAX_VALUE_CHARS = 64 * 1024
# utsname.release is __NEW_UTS_LEN = 64 characters (include/uapi/linux/utsname.h).
MAX_OSRELEASE_CHARS = 64
ASCII_SPACE = " \t\n\r\v\f"


@dataclass(frozen=True)
class SysctlLine:
    key: str  # dotted, as written (not validated: dumps hold kernel.*, vm.* ... too)
    value: str
    line: int
    ignore_failure: bool = False  # sysctl.d '-key = value'


def _bad(source: str, lineno: int, line: str, why: str) -> TcptuneError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return TcptuneError(f"{source}:{lineno}: {why}: {shown!r}", ExitCode.BAD_INPUT)


def parse_sysctl_lines(text: str, source: str, *, conf: bool = False) -> list[SysctlLine]:
    """Parse ``text``; ``conf=True`` accepts the sysctl.d(5) extras.  Raises on any malformed line."""
    out: list[SysctlLine] = []
    # Lines end at "\n" only, as procps sysctl and systemd-sysctl read them: str.splitlines()
    # would also split at U+2028, U+0085, form feed and friends, turning one line the loaders
    # see (and reject) into two that tcptune would take.  Ends are trimmed of ASCII
    # whitespace only (C isspace(); a trailing "\r" of a CRLF file goes too).
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(ASCII_SPACE)
        if not line or line.startswith("#") or (conf and line.startswith(";")):
            continue
        if "\x00" in line:
            raise _bad(source, lineno, line.replace("\x00", "\\0"), "NUL byte in line")
        key, sep, value = line.partition("=")
        if not sep:
            if not conf and line.startswith("sysctl: "):
                # `sysctl -a 2>&1` mixes in "sysctl: permission denied on key ..."; not a value.
                continue
            raise _bad(source, lineno, line, "expected `key = value`")
        key = key.strip(ASCII_SPACE)
        ignore = False
        if conf and key.startswith("-"):
            ignore, key = True, key[1:].strip(ASCII_SPACE)
        if not key or any(c.isspace() for c in key):
            raise _bad(source, lineno, line, "bad key")
        if "/" in key and "." not in key:
            key = key.replace("/", ".")
        if len(value) > MAX_VALUE_CHARS:
            raise _bad(
                source, lineno, line, f"value of {key[:60]} is over {MAX_VALUE_CHARS >> 10} KiB; no sysctl is that long"
            )
        if key == "kernel.osrelease" and len(value.strip()) > MAX_OSRELEASE_CHARS:
            raise _bad(
                source, lineno, line, f"kernel.osrelease is over {MAX_OSRELEASE_CHARS} characters; no kernel release is"
            )
        out.append(SysctlLine(key, normalize_value(value), lineno, ignore))
    return out


def parse_sysctl_dump(text: str, source: str = "<dump>") -> dict[str, str]:
    """`sysctl -a` output -> {key: value}; later lines win, as when sysctl reads them."""
    values = {ln.key: ln.value for ln in parse_sysctl_lines(text, source)}
    if not values:
        raise TcptuneError(f"{source}: no `key = value` lines; is this `sysctl -a` output?", ExitCode.BAD_INPUT)
    return values
