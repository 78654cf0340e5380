"""Who may write what: rights, read-only mounts and read-only keys, checked before any write.

Also the one place that explains a kernel EPERM which is not about rights: root gets EPERM
for some values (a congestion control the namespace may not choose), and telling root to
"run as root" sends them looking in the wrong place.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tcptune.core.mountinfo import find_mount, parse_cap_eff
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.source import SourceKind

CAP_NET_ADMIN = 12


def may_write_sysctls() -> bool:
    """Does this task pass the kernel's rights check for /proc/sys/net?

    net_ctl_permissions() (net/sysctl_net.c) lets a task write when its euid is root *or*
    it has CAP_NET_ADMIN over the namespace: measured on 6.18, root without
    CAP_NET_ADMIN can still write tcp_syn_retries, and uid 65534 cannot.
    """
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as fh:
            cap = parse_cap_eff(fh.read())
    except OSError:
        cap = None
    return cap is not None and bool(cap >> CAP_NET_ADMIN & 1)


def check_can_write(host, probe_key: str | None) -> None:
    """Refuse early (exit 3) when writes would fail for lack of rights; nothing is changed yet."""
    if host.kind is SourceKind.DUMP:
        raise TcptuneError(
            "cannot apply to a sysctl dump", ExitCode.BAD_INPUT, hint="apply works on a live host, --root or --netns"
        )
    if host.is_live and not may_write_sysctls():
        raise TcptuneError(
            "changing sysctls needs root or CAP_NET_ADMIN", ExitCode.PRIVILEGES, hint="run as root or use --dry-run"
        )
    target = host.sysctl_path(probe_key) if probe_key else host.root / "proc/sys/net"
    try:
        real = os.path.realpath(target if Path(target).exists() else host.root / "proc/sys/net")
        with open("/proc/self/mountinfo") as fh:
            mount = find_mount(fh.read(), real)
    except OSError:
        mount = None
    if mount is not None and mount.read_only:
        raise TcptuneError(
            f"{real} is on the read-only mount {mount.mount_point} ({mount.fstype}); nothing was changed",
            ExitCode.PRIVILEGES,
            hint="containers usually mount /proc/sys read-only: run on the host, in a privileged container, or use --dry-run",
        )


def read_only_keys(host, current: dict[str, str | None]) -> set[str]:
    """Present keys that have no write bit at all here.

    Global keys (net.core.rmem_max, ...) are shown mode 0444 inside a non-initial
    network namespace (measured on 6.18).  The mode, not access(2), decides: a
    read-only *mount* must stay an error (exit 3, check_can_write), not turn
    every key into a silent skip.
    """
    out = set()
    for key, value in current.items():
        if value is None:
            continue
        try:
            mode = os.stat(host.sysctl_path(key)).st_mode
        except OSError:
            continue
        if not mode & 0o222:
            out.add(key)
    return out


CC_KEY = "net.ipv4.tcp_congestion_control"
CC_ALLOWED_KEY = "net.ipv4.tcp_allowed_congestion_control"


def refused_value(host, key: str, value: str, exc: TcptuneError) -> TcptuneError:
    """``exc`` (a failed write) as the user should read it.

    An EPERM for a task that passes the rights check (may_write_sysctls) is the kernel
    refusing the *value*: exit 1 like any rejected value, saying what the kernel refused.
    The one case met so far: tcp_set_default_congestion_control() (net/ipv4/tcp_cong.c)
    returns -EPERM when a non-initial network namespace asks for an algorithm without
    TCP_CONG_NON_RESTRICTED, i.e. one not listed in tcp_allowed_congestion_control
    (measured on 6.18 in `unshare -n`: allowed "reno bbr", available "reno bbr cubic",
    writing cubic gives EPERM, reno works).
    """
    cause = exc.__cause__
    if not isinstance(cause, OSError) or cause.errno != errno.EPERM or not host.is_live or not may_write_sysctls():
        return exc
    if key == CC_KEY:
        allowed = host.read_sysctl(CC_ALLOWED_KEY)
        if allowed is not None and value not in allowed.split():
            return TcptuneError(
                f"{key}: the kernel refused {value!r} (EPERM): outside the initial network namespace only the "
                f"algorithms in {CC_ALLOWED_KEY} ({allowed}) may be chosen, and {value} is not one of them",
                ExitCode.FINDINGS,
                hint=f"add {value} to {CC_ALLOWED_KEY} in the host's initial namespace, or choose one of {allowed}",
            )
    return TcptuneError(
        f"{key}: the kernel refused {value!r} with EPERM although this process may write sysctls: "
        "a rule about the value, not about privileges",
        ExitCode.FINDINGS,
        hint="see the kernel's documentation of this key (Documentation/networking/ip-sysctl.rst) for the values it takes here",
    )
