"""What doctor's checks read and what they say: inputs, findings, evidence, thresholds (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tcptune.core.counters import Delta
from tcptune.kernel.states import TcpState

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES = (CRITICAL, WARNING, INFO)
NEAR = 0.8  # a count at 80 % of the limit that governs it is worth a look
RETRANS_SHARE = 0.01  # more than 1 % of sent segments retransmitted
MIN_SEGMENTS = 200  # below this many segments in the window a share is noise
SYN_SENT_PILE = 50


@dataclass(frozen=True)
class Evidence:
    what: str  # "ListenOverflows +14 in 2.0 s"
    source: str  # "/proc/net/netstat TcpExt ListenOverflows"

    def to_json(self) -> dict:
        return {"what": self.what, "source": self.source}


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str
    summary: str
    evidence: tuple[Evidence, ...]
    look_at: tuple[str, ...]  # sysctl keys or programs
    fix: str
    source: str  # kernel doc section or function

    def to_json(self) -> dict:
        return {
            "check": self.check,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": [e.to_json() for e in self.evidence],
            "look_at": list(self.look_at),
            "fix": self.fix,
            "source": self.source,
        }


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    accept_queue: int  # idiag_rqueue of a LISTEN socket: sk_ack_backlog
    backlog: int  # idiag_wqueue: sk_max_ack_backlog = min(listen() backlog, net.core.somaxconn)
    owner: str | None = None  # "nginx (pid 812)"


@dataclass(frozen=True)
class ProcessSockets:
    """A process a check names: its CLOSE_WAIT sockets, its sockets, its fds against RLIMIT_NOFILE."""

    label: str  # "nginx (pid 812, user www-data, 40/1024 fds)"
    pid: int
    close_wait: int = 0  # CLOSE_WAIT sockets it holds (in both samples, when there were two)
    sockets: int = 0  # socket fds it holds (any kind: /proc/PID/fd "socket:[...]"; 0 for fd-limit: not counted)
    open_fds: int | None = None
    fd_limit: int | None = None  # RLIMIT_NOFILE soft limit
    persisted: bool = False  # the CLOSE_WAIT sockets were matched by cookie across two samples
    sampled_fds: int = 0  # fds read when close_wait and sockets are estimates from a sample (0: all read, exact)

    def to_row(self) -> list:
        return [
            self.label,
            self.pid,
            self.close_wait,
            self.sockets,
            self.open_fds,
            self.fd_limit,
            self.persisted,
            self.sampled_fds,
        ]


@dataclass(frozen=True)
class Stall:
    """One process's sockets whose data does not move."""

    label: str  # the owner, or "(no owner)"
    role: str  # UNREAD: it is not reading (Recv-Q >= 64 KiB); ZERO_WINDOW: its peer is not (persist timer)
    sockets: int
    largest: int  # bytes: the largest Recv-Q (unread) or Send-Q (zero window)
    example: str  # "127.0.0.1:6002 <- 127.0.0.1:40123"

    def to_row(self) -> list:
        return [self.label, self.role, self.sockets, self.largest, self.example]


UNREAD, ZERO_WINDOW = "unread", "zero-window"


@dataclass(frozen=True)
class SettingIssue:
    """What audit knows about one key: a risky value, or a value the next boot will not keep."""

    key: str
    kind: str  # RISKY, NOT_PERSISTED, BOOT_LINE_IGNORED
    value: str | None  # the running value
    expected: str | None  # for NOT_PERSISTED: what the next boot sets
    reason: str
    source: str

    def to_row(self) -> list:
        return [self.key, self.kind, self.value, self.expected, self.reason, self.source]


RISKY, NOT_PERSISTED, BOOT_LINE_IGNORED = "risky", "not-persisted", "boot-line-ignored"
CLOSE_WAIT_MANY = 100  # CLOSE_WAIT sockets in one process: a leak whatever else it holds
CLOSE_WAIT_MIN = 16  # below this many, even a large share is a handful of slow closes
CLOSE_WAIT_SHARE = 0.5
FD_NEAR = 0.9  # open fds at 90 % of RLIMIT_NOFILE: the next accept()/socket() fails with EMFILE soon


def close_wait_leak(close_wait: int, sockets: int) -> bool:
    """Does one process's CLOSE_WAIT count look like a leak (absolute, or as a share of its sockets)?"""
    return close_wait >= CLOSE_WAIT_MANY or (
        close_wait >= CLOSE_WAIT_MIN and close_wait >= CLOSE_WAIT_SHARE * max(sockets, 1)
    )


def near_fd_limit(open_fds: int | None, fd_limit: int | None) -> bool:
    return open_fds is not None and bool(fd_limit) and open_fds >= FD_NEAR * fd_limit


@dataclass
class DoctorInput:
    """One window's worth of facts about one network namespace."""

    counter: Callable[[str, str], Delta | None]  # core.counters.delta(before, after, seconds)
    seconds: float  # the window; 0: one sample, nothing is a rate
    settings: Mapping[str, str | None]  # sysctl key -> value (None: absent here)
    states: Mapping[TcpState, int]  # socket counts by state
    listeners: list[Listener] = field(default_factory=list)
    sockstat: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # "TCP" -> {"inuse": .., "mem": ..}
    syn_sent_timeout: float | None = None  # seconds until connect() gives up, from the SYN model
    synack_timeout: float | None = None  # seconds a request waits in SYN_RECV for the final ACK (SYN-ACK model)
    syn_recv_by_port: Mapping[int, int] = field(default_factory=dict)  # listener port -> pending requests
    idle_timeout: float | None = None  # a load balancer's or the application's idle timeout (--idle-timeout)
    # (local address, peer address, peer port) -> sockets holding a port of ip_local_port_range
    # (TIME_WAIT included), from the same dump as ``states``
    destinations: Mapping[tuple[str, str, int], int] = field(default_factory=dict)
    syn_sent_destinations: Mapping[tuple[str, str, int], int] = field(default_factory=dict)  # SYN_SENT by dest
    retransmitting: Mapping[str, int] = field(default_factory=dict)  # peer -> sockets retransmitting now
    setting_issues: list[SettingIssue] = field(default_factory=list)  # from ops.audit (profile and --persisted)
    stalls: list[Stall] = field(default_factory=list)  # from the dump's timer and Recv-Q columns
    close_wait_owners: list[ProcessSockets] = field(default_factory=list)  # processes close_wait_leak() names
    fd_heavy: list[ProcessSockets] = field(default_factory=list)  # socket owners near_fd_limit() names
    window_seconds_cw: float = 0.0  # how far apart the two CLOSE_WAIT samples were (0: one sample)


def setting_int(settings: Mapping[str, str | None], key: str, index: int = 0) -> int | None:
    value = settings.get(key)
    try:
        return int(value.split()[index]) if value else None
    except (ValueError, IndexError):
        return None


def window_delta(inp: DoctorInput, group: str, name: str) -> Delta | None:
    """The counter's delta when it moved in the window (None with one sample or no change)."""
    if inp.seconds <= 0:
        return None
    d = inp.counter(group, name)
    return d if d is not None and d.change > 0 else None


def delta_evidence(d: Delta) -> Evidence:
    return Evidence(f"{d.name} +{d.change} in {d.seconds:.1f} s ({d.per_second:.1f}/s)", d.where)


def setting_evidence(inp: DoctorInput, key: str) -> Evidence:
    return Evidence(f"{key} = {inp.settings.get(key)}", f"/proc/sys/{key.replace('.', '/')}")
