"""What every read-only use case asks of a source first: its kernel version, its values.

Shared by audit, show and explain (tcptune.ops.audit, tcptune.ops.inspect).
"""

from __future__ import annotations

from collections.abc import Iterable

from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.source import SourceKind, kernel_version
from tcptune.kernel.version import Version


def release_of(host) -> Version | None:
    return kernel_version(host)


def release_note(host, release: Version | None) -> str | None:
    """A note when the source does not say its kernel version (defaults of the newest known kernel are assumed)."""
    if release is not None:
        return None
    where = {
        SourceKind.ROOT: "proc/sys/kernel/osrelease is missing",
        SourceKind.DUMP: "the dump has no kernel.osrelease line",
    }.get(host.kind, "the kernel release is unreadable")
    if host.kind in (SourceKind.ROOT, SourceKind.DUMP) and host.kernel_release():
        where = "its kernel.osrelease is not a kernel version"
    return (
        f"kernel version unknown ({where}): defaults of the newest kernel tcptune knows are assumed, "
        "and keys removed from older kernels are not judged"
    )


def require_tcp_keys(host) -> None:
    """Exit 2 when a source has no net.ipv4.tcp_* key at all: a wrong directory or dump, not a kernel."""
    if not any(k.startswith("net.ipv4.tcp_") for k in host.list_sysctls(("net/ipv4",))):
        where = "proc/sys/net/ipv4" if host.kind is SourceKind.ROOT else "it"
        raise TcptuneError(
            f"{host.label}: no net.ipv4.tcp_* keys in {where}; not a TCP-capable source",
            ExitCode.BAD_INPUT,
            hint="a snapshot needs proc/sys/net/ipv4/tcp_* files (see SOURCE OPTIONS in tcptune(8)); a dump needs `sysctl -a` output",
        )


def read_value(host, key: str) -> str | None:
    """``key``'s value, or None when absent or not readable without privileges (shown as absent)."""
    try:
        return host.read_sysctl(key)
    except TcptuneError as exc:
        if exc.exit_code == ExitCode.PRIVILEGES:
            return None
        raise


def read_values(host, keys: Iterable[str]) -> dict[str, str | None]:
    return {k: read_value(host, k) for k in sorted(keys)}
