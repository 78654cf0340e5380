"""Sysctl key names: validation and the key <-> /proc/sys path mapping (pure).

Every key is checked here *before* any file under /proc/sys is opened, so a
profile or a command line can never make tcptune read or write outside
``proc/sys/net`` (no ``..``, no ``/`` components, no NUL, nothing outside net.*).
"""

from __future__ import annotations

import re

from tcptune.errors import ExitCode, TcptuneError

# A component is what sysctl(8) prints between dots.  Interface names may hold
# characters such as '-' or '@'; sysctl(8) writes a '.' inside a name as '/', which
# tcptune does not support (it never needs per-interface keys).
_COMPONENT = re.compile(r"[A-Za-z0-9_\-@:+]+\Z")
ALLOWED_PREFIXES = ("net.",)
MAX_KEY_LENGTH = 256
# Keys whose value is a secret (the TCP Fast Open cookie key): never listed or printed.
SECRET_KEYS = frozenset({"net.ipv4.tcp_fastopen_key"})


def normalize_key(key: str) -> str:
    """Return the dotted form of ``key`` ('net/ipv4/x' -> 'net.ipv4.x') after validating it.

    Raises TcptuneError (exit 2) for anything that is not a plain net.* key.
    """
    if not isinstance(key, str) or not key:
        raise TcptuneError("empty sysctl key", ExitCode.BAD_INPUT, hint="keys look like net.ipv4.tcp_syn_retries")
    if "\x00" in key:
        raise TcptuneError(f"sysctl key {key!r} contains a NUL byte", ExitCode.BAD_INPUT)
    if len(key) > MAX_KEY_LENGTH:
        raise TcptuneError(f"sysctl key {key[:40]!r}... is longer than {MAX_KEY_LENGTH} characters", ExitCode.BAD_INPUT)
    # No strip(): " net.ipv4.tcp_syn_retries", a tab or an NBSP around a key is a typo the
    # key grammar of tcptune-profile(5) does not allow, not the key itself.
    dotted = key
    if key != key.strip():
        raise TcptuneError(
            f"sysctl key {key!r} has whitespace around it",
            ExitCode.BAD_INPUT,
            hint="remove it; keys look like net.ipv4.tcp_syn_retries",
        )
    if "/" in dotted:
        if dotted.startswith("/") or "." in dotted:
            raise TcptuneError(
                f"sysctl key {key!r} is not a plain key name",
                ExitCode.BAD_INPUT,
                hint="write it dotted, like net.ipv4.tcp_syn_retries",
            )
        dotted = dotted.replace("/", ".")
    parts = dotted.split(".")
    if any(p in ("", "..") or not _COMPONENT.match(p) for p in parts):
        raise TcptuneError(
            f"sysctl key {key!r} is not a valid key name",
            ExitCode.BAD_INPUT,
            hint="keys look like net.ipv4.tcp_syn_retries",
        )
    if not dotted.startswith(ALLOWED_PREFIXES) or len(parts) < 3:
        raise TcptuneError(
            f"sysctl key {key!r} is outside net.*",
            ExitCode.BAD_INPUT,
            hint="tcptune only reads and writes net.* keys",
        )
    return dotted


def key_to_relpath(key: str) -> str:
    """'net.ipv4.tcp_syn_retries' -> 'proc/sys/net/ipv4/tcp_syn_retries' (validated)."""
    return "proc/sys/" + normalize_key(key).replace(".", "/")
