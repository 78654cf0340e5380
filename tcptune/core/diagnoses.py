"""Doctor's checks: counters, sockets, settings and owners joined into findings (pure).

Input is two samples of the kernel's counters ``seconds`` apart, one socket summary, the
settings and sockstat; output is a list of findings, each with its evidence (every number
and where it came from), the keys or program to look at, the fix and a source.  A rate
over the window triggers a finding, never a since-boot total: a host up for a year has
ListenOverflows from long ago that say nothing about now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tcptune.core.counters import Delta
from tcptune.core.ports import TIME_WAIT_SECONDS, parse_port_range, parse_reserved_ports, port_use, usable_ports
from tcptune.core.socket_summary import accept_queue_full
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

    def to_row(self) -> list:
        return [self.label, self.pid, self.close_wait, self.sockets, self.open_fds, self.fd_limit, self.persisted]


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


def _int(settings: Mapping[str, str | None], key: str, index: int = 0) -> int | None:
    value = settings.get(key)
    try:
        return int(value.split()[index]) if value else None
    except (ValueError, IndexError):
        return None


def _moved(inp: DoctorInput, group: str, name: str) -> Delta | None:
    """The counter's delta when it moved in the window (None with one sample or no change)."""
    if inp.seconds <= 0:
        return None
    d = inp.counter(group, name)
    return d if d is not None and d.change > 0 else None


def _ev(d: Delta) -> Evidence:
    return Evidence(f"{d.name} +{d.change} in {d.seconds:.1f} s ({d.per_second:.1f}/s)", d.where)


def _setting(inp: DoctorInput, key: str) -> Evidence:
    return Evidence(f"{key} = {inp.settings.get(key)}", f"/proc/sys/{key.replace('.', '/')}")


def check_accept_queue(inp: DoctorInput) -> list[Finding]:
    moved = [d for d in (_moved(inp, "TcpExt", n) for n in ("ListenOverflows", "ListenDrops")) if d]
    full = [lst for lst in inp.listeners if accept_queue_full(lst.accept_queue, lst.backlog)]
    if not moved and not full:
        return []
    somaxconn = _int(inp.settings, "net.core.somaxconn")
    evidence = [_ev(d) for d in moved]
    limits = []
    for lst in full:
        who = f" held by {lst.owner}" if lst.owner else ""
        capped = somaxconn is not None and lst.backlog >= somaxconn
        evidence.append(
            Evidence(
                f"{lst.address}:{lst.port}{who}: {lst.accept_queue} waiting to be accepted, backlog {lst.backlog}",
                "sock_diag LISTEN socket idiag_rqueue/idiag_wqueue",
            )
        )
        limits.append("net.core.somaxconn" if capped else f"the listen() backlog of {lst.owner or 'the program'}")
    abort = _int(inp.settings, "net.ipv4.tcp_abort_on_overflow")
    effect = (
        "clients get a RST (tcp_abort_on_overflow=1)"
        if abort == 1
        else "the server drops the client's final ACK and resends its SYN-ACK while the client already "
        "believes it is connected (tcp_abort_on_overflow=0)"
    )
    evidence.append(_setting(inp, "net.core.somaxconn"))
    return [
        Finding(
            "accept-queue",
            CRITICAL if moved and full else WARNING,
            f"accept queue overflow: {len(full)} listener(s) full now; {effect}",
            tuple(evidence),
            tuple(dict.fromkeys(limits or ["net.core.somaxconn", "the program's listen() backlog"])),
            "make the program accept faster (more workers), or raise its listen() backlog together with "
            "net.core.somaxconn, which caps it",
            "tcp_check_req() and tcp_conn_request() in net/ipv4; ip-sysctl.rst tcp_abort_on_overflow",
        )
    ]


def check_syn_queue(inp: DoctorInput) -> list[Finding]:
    drop = _moved(inp, "TcpExt", "TCPReqQFullDrop")
    cookies = _moved(inp, "TcpExt", "TCPReqQFullDoCookies")
    sent = _moved(inp, "TcpExt", "SyncookiesSent")
    if not (drop or cookies or sent):
        return []
    syncookies = _int(inp.settings, "net.ipv4.tcp_syncookies")
    evidence = [_ev(d) for d in (drop, cookies, sent) if d]
    evidence += [_setting(inp, "net.ipv4.tcp_syncookies"), _setting(inp, "net.ipv4.tcp_max_syn_backlog")]
    evidence.append(Evidence(f"SYN_RECV sockets: {inp.states.get(TcpState.SYN_RECV, 0)}", "sock_diag dump"))
    backlog_of = {lst.port: lst.backlog for lst in inp.listeners}
    for port, pending in sorted(inp.syn_recv_by_port.items(), key=lambda kv: (-kv[1], kv[0]))[:PORT_EVIDENCE]:
        limit = f" of listen backlog {backlog_of[port]}" if port in backlog_of else ""
        evidence.append(
            Evidence(
                f"port {port}: {pending} requests in SYN_RECV{limit} (the queue is full at the backlog; "
                f"without syncookies new SYNs drop from 3/4 of tcp_max_syn_backlog)",
                "sock_diag dump: request sockets by local port; tcp_conn_request()",
            )
        )
    if inp.synack_timeout:
        evidence.append(
            Evidence(
                f"each request holds its slot up to {inp.synack_timeout:.0f} s while the SYN-ACK is resent "
                f"(tcp_synack_retries={inp.settings.get('net.ipv4.tcp_synack_retries')})",
                "tcptune.kernel.timers.synack predict_synack(): reqsk_timer_handler()",
            )
        )
    if drop:
        severity = CRITICAL if syncookies == 0 else WARNING
        summary = "SYN queue full: new connections are being dropped" + (
            " and syncookies are off" if syncookies == 0 else ""
        )
    else:
        severity, summary = (
            WARNING,
            "SYN queue full: the kernel is answering with syncookies (a flood or a small backlog)",
        )
    return [
        Finding(
            "syn-queue",
            severity,
            summary,
            tuple(evidence),
            (
                "net.ipv4.tcp_max_syn_backlog",
                "net.ipv4.tcp_syncookies",
                "net.core.somaxconn",
                "net.ipv4.tcp_synack_retries",
            ),
            "keep tcp_syncookies=1; raise tcp_max_syn_backlog and the listen() backlog for legitimate load; "
            "a flood is answered upstream",
            "tcp_conn_request() and tcp_syn_flood_action() in net/ipv4/tcp_input.c",
        )
    ]


def check_time_wait(inp: DoctorInput) -> list[Finding]:
    cap = _int(inp.settings, "net.ipv4.tcp_max_tw_buckets")
    tw = inp.states.get(TcpState.TIME_WAIT, 0)
    overflow = _moved(inp, "TcpExt", "TCPTimeWaitOverflow")
    near = cap is not None and cap > 0 and tw >= NEAR * cap
    if not (near or overflow):
        return []
    evidence = [Evidence(f"TIME_WAIT sockets: {tw}", "sock_diag dump"), _setting(inp, "net.ipv4.tcp_max_tw_buckets")]
    evidence += [_ev(overflow)] if overflow else []
    return [
        Finding(
            "time-wait",
            WARNING,
            f"TIME_WAIT at {tw} of tcp_max_tw_buckets {cap}"
            + (
                "; past the cap the kernel closes without TIME_WAIT (it only counts TCPTimeWaitOverflow, it logs nothing)"
                if overflow
                else ""
            ),
            tuple(evidence),
            ("net.ipv4.tcp_max_tw_buckets",),
            "a large TIME_WAIT count alone is not a problem; never lower the cap. Raise it if the table "
            "fills, or reuse connections (keep-alive, pooling)",
            "tcp_time_wait() in net/ipv4/tcp_minisocks.c",
        )
    ]


def check_orphans_and_memory(inp: DoctorInput) -> list[Finding]:
    out = []
    tcp = inp.sockstat.get("TCP", {})
    cap = _int(inp.settings, "net.ipv4.tcp_max_orphans")
    orphans = tcp.get("orphan")
    abort = _moved(inp, "TcpExt", "TCPAbortOnMemory")
    if (orphans is not None and cap and orphans >= NEAR * cap) or abort:
        ev = [
            Evidence(f"orphans: {orphans}", "/proc/net/sockstat TCP orphan"),
            _setting(inp, "net.ipv4.tcp_max_orphans"),
        ]
        out.append(
            Finding(
                "orphans",
                WARNING,
                f"orphaned sockets at {orphans} of tcp_max_orphans {cap}; past it the kernel resets them",
                tuple(ev + ([_ev(abort)] if abort else [])),
                ("net.ipv4.tcp_max_orphans", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_orphan_retries"),
                "find who closes so many connections with data unsent; raise tcp_max_orphans only with memory to spare",
                "tcp_check_oom() and tcp_too_many_orphans() in net/ipv4/tcp.c",
            )
        )
    pressure, hard = _int(inp.settings, "net.ipv4.tcp_mem", 1), _int(inp.settings, "net.ipv4.tcp_mem", 2)
    mem = tcp.get("mem")
    pressures = _moved(inp, "TcpExt", "TCPMemoryPressures")
    if (mem is not None and pressure and mem >= pressure) or pressures:
        ev = [Evidence(f"TCP memory: {mem} pages", "/proc/net/sockstat TCP mem"), _setting(inp, "net.ipv4.tcp_mem")]
        out.append(
            Finding(
                "tcp-memory",
                CRITICAL if mem is not None and hard and mem >= hard else WARNING,
                f"TCP memory at {mem} pages, pressure threshold {pressure}, limit {hard}",
                tuple(ev + ([_ev(pressures)] if pressures else [])),
                ("net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"),
                "find the sockets with large queues (receivers not reading); raise tcp_mem only with RAM to spare",
                "tcp_under_memory_pressure() and sk_mem_schedule(); ip-sysctl.rst tcp_mem",
            )
        )
    return out


def check_retransmissions(inp: DoctorInput) -> list[Finding]:
    sent, retrans = _moved(inp, "Tcp", "OutSegs"), _moved(inp, "Tcp", "RetransSegs")
    if not sent or not retrans or sent.change < MIN_SEGMENTS:
        return []
    share = retrans.change / sent.change
    if share <= RETRANS_SHARE:
        return []
    extra = [d for d in (_moved(inp, "TcpExt", "TCPSynRetrans"), _moved(inp, "TcpExt", "TCPTimeouts")) if d]
    peers = sorted(inp.retransmitting.items(), key=lambda kv: (-kv[1], kv[0]))[:PORT_EVIDENCE]
    evidence = [_ev(d) for d in (retrans, sent, *extra)]
    evidence += [
        Evidence(f"{peer}: {n} socket(s) retransmitting at the dump", "sock_diag idiag_retrans (icsk_retransmits) > 0")
        for peer, n in peers
    ]
    return [
        Finding(
            "retransmissions",
            WARNING,
            f"{share:.1%} of sent segments were retransmissions"
            + (f"; most retransmitting sockets go to {peers[0][0]}" if peers else ""),
            tuple(evidence),
            (f"the path to {peers[0][0]}" if peers else "the path to the busiest peers (tcptune states --by peer)",),
            "look for loss on the path (NIC drops, a congested link, a firewall dropping); tuning rarely fixes loss",
            "RFC 6298; tcp_retransmit_skb() in net/ipv4/tcp_output.c",
        )
    ]


RESET_MEANINGS = {
    ("Tcp", "OutRsts"): "RSTs sent",
    ("Tcp", "EstabResets"): "established connections reset",
    ("Tcp", "AttemptFails"): "connects that failed (RST or timeout in SYN_SENT/SYN_RECV)",
    ("TcpExt", "TCPAbortOnData"): "closed with unread data (the kernel sent RST)",
    ("TcpExt", "TCPAbortOnClose"): "closed by the program with data still unread",
    ("TcpExt", "TCPAbortOnLinger"): "closed with SO_LINGER 0",
}


def check_resets(inp: DoctorInput) -> list[Finding]:
    moved = [(d, RESET_MEANINGS[key]) for key in RESET_MEANINGS if (d := _moved(inp, *key))]
    if not moved:
        return []
    return [
        Finding(
            "resets",
            INFO,
            "connections are being reset: " + ", ".join(f"{d.change} {m}" for d, m in moved),
            tuple(Evidence(f"{d.name} +{d.change} in {d.seconds:.1f} s ({m})", d.where) for d, m in moved),
            ("the programs on both ends",),
            "connects to closed ports, programs closing with unread data, or SO_LINGER 0; rarely a sysctl",
            "tcp_send_active_reset() and tcp_reset() in net/ipv4",
        )
    ]


def check_syn_sent(inp: DoctorInput) -> list[Finding]:
    n = inp.states.get(TcpState.SYN_SENT, 0)
    if n < SYN_SENT_PILE:
        return []
    wait = f"; each gives up after {inp.syn_sent_timeout:.1f} s" if inp.syn_sent_timeout else ""
    ranked = sorted(inp.syn_sent_destinations.items(), key=lambda kv: (-kv[1], kv[0]))[:PORT_EVIDENCE]
    evidence = [Evidence(f"SYN_SENT sockets: {n}", "sock_diag dump")]
    evidence += [
        Evidence(f"{local} -> {peer}:{port}: {c} in SYN_SENT", "sock_diag dump of the SYN_SENT sockets, by destination")
        for (local, peer, port), c in ranked
    ]
    if inp.syn_sent_timeout:
        evidence.append(
            Evidence(
                f"connect() gives up after {inp.syn_sent_timeout:.1f} s (tcp_syn_retries="
                f"{inp.settings.get('net.ipv4.tcp_syn_retries')}, unanswered SYNs with exponential backoff)",
                "tcptune.kernel.timers.syn predict_syn(): tcp_write_timeout() in net/ipv4/tcp_timer.c",
            )
        )
    evidence.append(_setting(inp, "net.ipv4.tcp_syn_retries"))
    if ranked:
        (_, peer, port), c = ranked[0]
        summary = f"{c} of {n} connections waiting in SYN_SENT go to {peer}:{port}{wait}"
        look = f"the peer {peer}:{port} (down, or a firewall dropping SYNs)"
    else:
        summary, look = f"{n} connections waiting in SYN_SENT{wait}", "the peers (tcptune states --by peer)"
    return [
        Finding(
            "syn-sent",
            WARNING,
            summary,
            tuple(evidence),
            ("net.ipv4.tcp_syn_retries", look),
            "a peer is down or filtered; lower tcp_syn_retries (or set a connect timeout in the program) to fail fast",
            "tcp_write_timeout() in net/ipv4/tcp_timer.c",
        )
    ]


def check_conntrack(inp: DoctorInput) -> list[Finding]:
    count = _int(inp.settings, "net.netfilter.nf_conntrack_count")
    cap = _int(inp.settings, "net.netfilter.nf_conntrack_max")
    if count is None or not cap or count < NEAR * cap:
        return []
    return [
        Finding(
            "conntrack",
            CRITICAL if count >= 0.95 * cap else WARNING,
            f"conntrack table at {count} of {cap}; when full, new connections are dropped (clients see SYN timeouts)",
            (_setting(inp, "net.netfilter.nf_conntrack_count"), _setting(inp, "net.netfilter.nf_conntrack_max")),
            ("net.netfilter.nf_conntrack_max",),
            "raise nf_conntrack_max (and the hash size), or exempt heavy traffic from tracking",
            "nf_conntrack_alloc() in net/netfilter/nf_conntrack_core.c",
        )
    ]


PORT_EVIDENCE = 5  # destinations listed in the ephemeral-ports finding


def usable_ephemeral_ports(settings: Mapping[str, str | None]) -> int | None:
    """ip_local_port_range minus ip_local_reserved_ports (None when the range is unreadable)."""
    port_range = parse_port_range(settings.get("net.ipv4.ip_local_port_range"))
    if port_range is None:
        return None
    return usable_ports(port_range, parse_reserved_ports(settings.get("net.ipv4.ip_local_reserved_ports")))


def ephemeral_port_use(inp: DoctorInput, top: int | None = None):
    """The destinations by share of the usable ephemeral ports, busiest first ([] when the range is unknown)."""
    usable = usable_ephemeral_ports(inp.settings)
    if usable is None or not inp.destinations:
        return []
    return port_use(inp.destinations, usable, top)


def _tw_reuse_effect(inp: DoctorInput, peer: str) -> str:
    reuse = _int(inp.settings, "net.ipv4.tcp_tw_reuse")
    timestamps = _int(inp.settings, "net.ipv4.tcp_timestamps")
    loopback = peer.startswith("127.") or peer == "::1"
    if timestamps == 0:
        return "tcp_timestamps=0: tcp_tw_reuse cannot act (it needs timestamps, for PAWS), TIME_WAIT ports stay taken"
    delay = _int(inp.settings, "net.ipv4.tcp_tw_reuse_delay")
    # before 6.14 the delay is a fixed second (tcp_twsk_unique(): time_after32(now, ts_recent_stamp))
    older = f"older than tcp_tw_reuse_delay ({delay} ms)" if delay is not None else "more than 1 s old"
    if reuse == 1 or (reuse == 2 and loopback):
        return (
            f"tcp_tw_reuse={reuse} with timestamps: connect() may take over a 4-tuple in TIME_WAIT once it is "
            f"{older}, when the peer sent timestamps too"
        )
    return (
        f"tcp_tw_reuse={reuse}: TIME_WAIT 4-tuples to this peer are not reused"
        + (" (2 reuses loopback only)" if reuse == 2 else "")
        + f"; tcp_tw_reuse=1 (with tcp_timestamps on both ends) lets connect() take over ones {older}"
    )


def check_ephemeral_ports(inp: DoctorInput) -> list[Finding]:
    used = ephemeral_port_use(inp, PORT_EVIDENCE)
    near = [u for u in used if u.ratio >= NEAR]
    if not near:
        return []
    worst = near[0]
    evidence = [
        Evidence(
            f"{u.local} -> {u.peer}:{u.peer_port}: {u.in_use} sockets hold ephemeral ports, {u.ratio:.0%} of the "
            f"{u.usable} usable",
            "sock_diag dump: sockets per (local address, peer address, peer port) with a local port in "
            "ip_local_port_range, TIME_WAIT included",
        )
        for u in near
    ]
    evidence += [_setting(inp, "net.ipv4.ip_local_port_range"), _setting(inp, "net.ipv4.ip_local_reserved_ports")]
    evidence.append(
        Evidence(
            f"sustainable: {worst.usable} ports / {TIME_WAIT_SECONDS} s of TIME_WAIT = "
            f"{worst.usable / TIME_WAIT_SECONDS:.1f} new connections/s "
            "to one destination when this side closes first",
            "include/net/tcp.h TCP_TIMEWAIT_LEN (60 s, fixed)",
        )
    )
    evidence.append(
        Evidence(_tw_reuse_effect(inp, worst.peer), "net/ipv4/tcp_ipv4.c tcp_twsk_unique(); ip-sysctl.rst tcp_tw_reuse")
    )
    evidence += [_setting(inp, "net.ipv4.tcp_tw_reuse"), _setting(inp, "net.ipv4.tcp_timestamps")]
    full = worst.in_use >= worst.usable
    return [
        Finding(
            "ephemeral-ports",
            CRITICAL if full else WARNING,
            f"{worst.local} -> {worst.peer}:{worst.peer_port} uses {worst.in_use} of {worst.usable} usable ephemeral "
            "ports" + ("; further connect()s to it fail with EADDRNOTAVAIL" if full else ""),
            tuple(evidence),
            (
                "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_tw_reuse",
                "the client program's connection reuse",
            ),
            "reuse connections (keep-alive, pooling); widen ip_local_port_range or add local addresses or peer "
            "ports; a client that bind()s before connect() takes its port without knowing the destination and "
            "cannot share it: set IP_BIND_ADDRESS_NO_PORT before bind()",
            "__inet_hash_connect() and __inet_check_established() in net/ipv4/inet_hashtables.c; ip-sysctl.rst "
            "ip_local_port_range, IP_BIND_ADDRESS_NO_PORT in ip(7)",
        )
    ]


def _fds(p: ProcessSockets) -> Evidence:
    share = f" ({p.open_fds / p.fd_limit:.0%})" if p.open_fds is not None and p.fd_limit else ""
    return Evidence(
        f"{p.label}: {p.open_fds} open fds of RLIMIT_NOFILE {p.fd_limit}{share}",
        "psutil Process.num_fds() and rlimit(RLIMIT_NOFILE)",
    )


def check_close_wait(inp: DoctorInput) -> list[Finding]:
    out = []
    for p in inp.close_wait_owners:
        if not close_wait_leak(p.close_wait, p.sockets):
            continue
        stayed = (
            f"; all {p.close_wait} were in CLOSE_WAIT {inp.window_seconds_cw:.1f} s earlier too (same socket cookies)"
            if p.persisted
            else " (one sample: not followed over time)"
        )
        evidence = [
            Evidence(
                f"{p.label}: {p.close_wait} CLOSE_WAIT sockets, {p.close_wait / max(p.sockets, 1):.0%} of its "
                f"{p.sockets} sockets{stayed}",
                "sock_diag dumps of CLOSE_WAIT (idiag_cookie, idiag_inode) joined with /proc/PID/fd",
            ),
            _fds(p),
        ]
        out.append(
            Finding(
                "close-wait",
                CRITICAL if near_fd_limit(p.open_fds, p.fd_limit) else WARNING,
                f"{p.label} leaks CLOSE_WAIT sockets: {p.close_wait} peers closed and it never called close(); "
                "the kernel never expires these",
                tuple(evidence),
                (f"the program {p.label}",),
                "fix the program to close() when read() returns 0 (the peer's FIN); restarting it frees them now. "
                "No sysctl reclaims CLOSE_WAIT (tcp_fin_timeout is FIN_WAIT2's)",
                "tcp_fin() in net/ipv4/tcp_input.c: ESTABLISHED -> CLOSE_WAIT, left only by the program's close()",
            )
        )
    return out


def check_receiver_not_reading(inp: DoctorInput) -> list[Finding]:
    drop = _moved(inp, "TcpExt", "TCPZeroWindowDrop")
    to_zero = _moved(inp, "TcpExt", "TCPToZeroWindowAdv")
    unread = [s for s in inp.stalls if s.role == UNREAD]
    waiting = [s for s in inp.stalls if s.role == ZERO_WINDOW]
    # A large Recv-Q alone is any busy receiver between two reads; it counts when a window
    # actually closed: a sender here probing, a zero window advertised or data dropped on one.
    if not (waiting or drop or (unread and to_zero)):
        return []
    evidence = [
        Evidence(
            f"{s.label}: {s.sockets} socket(s) with unread data (up to {s.largest} bytes in Recv-Q), e.g. {s.example}",
            "sock_diag idiag_rqueue (rcv_nxt - copied_seq) >= 64 KiB",
        )
        for s in unread
    ]
    evidence += [
        Evidence(
            f"{s.label}: {s.sockets} socket(s) sending zero-window probes (up to {s.largest} bytes waiting in "
            f"Send-Q), e.g. {s.example}",
            "sock_diag idiag_timer 4 (ICSK_TIME_PROBE0: the peer advertised a zero window)",
        )
        for s in waiting
    ]
    moved = [_moved(inp, "TcpExt", n) for n in ("TCPToZeroWindowAdv", "TCPZeroWindowDrop", "TCPFromZeroWindowAdv")]
    evidence += [_ev(d) for d in moved if d]
    if unread:
        top = max(unread, key=lambda s: (s.largest, s.sockets))
        summary = f"{top.label} is not reading: {top.sockets} socket(s) hold up to {top.largest} unread bytes"
    elif waiting:
        summary = (
            f"{sum(s.sockets for s in waiting)} socket(s) wait on a peer's zero window (the receiver does not read)"
        )
    else:
        summary = f"{drop.change} segments dropped on a zero receive window"
    return [
        Finding(
            "receiver-not-reading",
            WARNING if waiting or drop else INFO,
            summary,
            tuple(evidence),
            tuple(dict.fromkeys(f"the program {s.label}" for s in unread or waiting)) or ("the receiving programs",),
            "the receiving program reads too slowly or not at all (blocked, overloaded, a deadlock); a bigger "
            "tcp_rmem only delays the stall. The sender keeps probing and never times out while the peer answers",
            "tcp_probe_timer() and tcp_send_probe0() in net/ipv4/tcp_timer.c and tcp_output.c; tcp_select_window()",
        )
    ]


def check_settings(inp: DoctorInput) -> list[Finding]:
    """audit's verdicts as findings: each risky value; the values a reboot would change; sysctl.d lines that do nothing."""
    out = [
        Finding(
            "settings",
            WARNING,
            f"{i.key} = {i.value} is risky: {i.reason}",
            (Evidence(f"{i.key} = {i.value}", f"/proc/sys/{i.key.replace('.', '/')}"), Evidence(i.reason, i.source)),
            (i.key,),
            f"set {i.key} back (tcptune explain {i.key} gives the default and why), with tcptune apply --persist",
            i.source,
        )
        for i in inp.setting_issues
        if i.kind == RISKY
    ]
    lost = [i for i in inp.setting_issues if i.kind == NOT_PERSISTED]
    if lost:
        out.append(
            Finding(
                "settings",
                INFO,
                f"{len(lost)} running value(s) will not survive a reboot: "
                + ", ".join(i.key for i in lost[:5])
                + (", ..." if len(lost) > 5 else ""),
                tuple(
                    Evidence(
                        f"{i.key} = {i.value}, the next boot sets {i.expected} ({i.reason})",
                        i.source or "tcptune audit --persisted",
                    )
                    for i in lost
                ),
                tuple(i.key for i in lost),
                "persist what was meant (tcptune apply --persist, or a sysctl.d file), or set back what was a "
                "test; `tcptune audit --persisted` lists them",
                "sysctl.d(5); tcptune audit --persisted",
            )
        )
    ignored = [i for i in inp.setting_issues if i.kind == BOOT_LINE_IGNORED]
    if ignored:
        out.append(
            Finding(
                "settings",
                INFO,
                f"{len(ignored)} sysctl.d line(s) set keys this kernel does not have: "
                + ", ".join(i.key for i in ignored[:5]),
                tuple(Evidence(f"{i.key}: {i.reason}", i.source or "sysctl.d") for i in ignored),
                tuple(i.key for i in ignored),
                "remove the lines (the key was removed or renamed; `tcptune explain KEY` says since when)",
                "sysctl.d(5); tcptune audit --persisted",
            )
        )
    return out


def check_fd_limit(inp: DoctorInput) -> list[Finding]:
    return [
        Finding(
            "fd-limit",
            CRITICAL if p.open_fds is not None and p.fd_limit and p.open_fds >= p.fd_limit else WARNING,
            f"{p.label} holds sockets and is at {p.open_fds} of its {p.fd_limit} open files: accept() and "
            "socket() fail with EMFILE at the limit (the listener's queue then fills)",
            (
                _fds(p),
                Evidence(f"{p.label} holds sockets in this network namespace", "/proc/PID/fd socket:[inode] links"),
            ),
            (f"the program {p.label}", "its LimitNOFILE= (systemd) or ulimit -n"),
            "raise the program's RLIMIT_NOFILE (systemd LimitNOFILE=, or ulimit -n before it starts), or find "
            "what it leaks (close-wait, idle connections); fs.file-max is the system-wide cap, rarely the one hit",
            "alloc_fd() in fs/file.c (EMFILE past RLIMIT_NOFILE); getrlimit(2)",
        )
        for p in inp.fd_heavy
        if near_fd_limit(p.open_fds, p.fd_limit)
    ]


TCP_RTO_MIN = 0.2  # include/net/tcp.h: the base of tcp_retries2's time budget (tcp_write_timeout())


def check_dead_peers(inp: DoctorInput) -> list[Finding]:
    """Against --idle-timeout: does the kernel notice a dead peer before the middlebox forgets it?"""
    if inp.idle_timeout is None:
        return []
    from tcptune.kernel.timers import TCP_RTO_MAX
    from tcptune.kernel.timers.keepalive import predict_keepalive
    from tcptune.kernel.timers.syn import model_timeout

    ktime = _int(inp.settings, "net.ipv4.tcp_keepalive_time")
    intvl = _int(inp.settings, "net.ipv4.tcp_keepalive_intvl")
    probes = _int(inp.settings, "net.ipv4.tcp_keepalive_probes")
    retries2 = _int(inp.settings, "net.ipv4.tcp_retries2")
    rto_max_ms = _int(inp.settings, "net.ipv4.tcp_rto_max_ms")
    out = []
    if ktime is not None and intvl is not None and probes is not None and ktime >= inp.idle_timeout:
        detect = predict_keepalive(ktime, intvl, probes).give_up
        out.append(
            Finding(
                "dead-peers",
                WARNING,
                f"the first keepalive is sent after {ktime} s of idleness, not before the {inp.idle_timeout:g} s "
                f"idle timeout: the middlebox forgets the connection first (a dead peer is noticed after "
                f"{detect:.0f} s at the earliest)",
                tuple(
                    _setting(inp, k)
                    for k in (
                        "net.ipv4.tcp_keepalive_time",
                        "net.ipv4.tcp_keepalive_intvl",
                        "net.ipv4.tcp_keepalive_probes",
                    )
                ),
                ("net.ipv4.tcp_keepalive_time", "the program's SO_KEEPALIVE / TCP_KEEPIDLE"),
                f"set tcp_keepalive_time (or the program's TCP_KEEPIDLE) below {inp.idle_timeout:g} s; it acts "
                "only on sockets with SO_KEEPALIVE (`tcptune probe keepalive` shows the schedule)",
                "tcp_keepalive_timer() in net/ipv4/tcp_timer.c",
            )
        )
    if retries2 is not None:
        rto_max = TCP_RTO_MAX if rto_max_ms is None else rto_max_ms / 1000
        # tcp_write_timeout(): ETIMEDOUT once the time since the first unacknowledged
        # retransmission exceeds tcp_model_timeout(tcp_retries2, TCP_RTO_MIN), capped by the
        # socket's RTO cap (tcp_rto_max(sk) since 6.15)
        budget = model_timeout(retries2, TCP_RTO_MIN, rto_max)
        if budget > inp.idle_timeout:
            out.append(
                Finding(
                    "dead-peers",
                    INFO,
                    f"with unacknowledged data, a dead peer is given up after at least {budget:.1f} s "
                    f"(tcp_retries2={retries2}), more than the {inp.idle_timeout:g} s idle timeout",
                    (_setting(inp, "net.ipv4.tcp_retries2"), _setting(inp, "net.ipv4.tcp_rto_max_ms")),
                    ("net.ipv4.tcp_retries2", "the program's TCP_USER_TIMEOUT"),
                    "set TCP_USER_TIMEOUT in the program, or lower tcp_retries2 (8 gives about 100 s with the "
                    "default cap); ip-sysctl.rst tcp_retries2",
                    "tcp_write_timeout() and tcp_model_timeout() in net/ipv4/tcp_timer.c",
                )
            )
    return out


CHECKS: dict[str, Callable[[DoctorInput], list[Finding]]] = {
    "accept-queue": check_accept_queue,
    "syn-queue": check_syn_queue,
    "time-wait": check_time_wait,
    "ephemeral-ports": check_ephemeral_ports,
    "orphans-memory": check_orphans_and_memory,
    "retransmissions": check_retransmissions,
    "resets": check_resets,
    "syn-sent": check_syn_sent,
    "close-wait": check_close_wait,
    "fd-limit": check_fd_limit,
    "receiver-not-reading": check_receiver_not_reading,
    "settings": check_settings,
    "conntrack": check_conntrack,
    "dead-peers": check_dead_peers,
}


def diagnose(inp: DoctorInput, only: tuple[str, ...] = ()) -> list[Finding]:
    """Every finding of the checks named in ``only`` (all when empty), most severe first."""
    findings = [f for name, check in CHECKS.items() if not only or name in only for f in check(inp)]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))
