"""`tcptune doctor`: two samples of the kernel's counters, one socket dump, the settings -> findings.

Everything is read in the target network namespace (the source's): counters, sockstat,
sysctls and the sock_diag dump.  A --root tree (a saved bundle) has one sample of each
file, so nothing there is a rate; its findings come from sockets and settings alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcptune.core.counters import delta, merge, parse_snmp_text
from tcptune.core.diagnoses import CHECKS, diagnose
from tcptune.core.diagnoses.ephemeral import ephemeral_port_use, usable_ephemeral_ports
from tcptune.core.diagnoses.model import (
    BOOT_LINE_IGNORED,
    CLOSE_WAIT_MIN,
    FD_NEAR,
    NOT_PERSISTED,
    RISKY,
    SYN_SENT_PILE,
    UNREAD,
    ZERO_WINDOW,
    DoctorInput,
    Finding,
    Listener,
    ProcessSockets,
    SettingIssue,
    Stall,
    close_wait_leak,
)
from tcptune.core.ports import PortUse, parse_port_range
from tcptune.core.procfs import parse_sockstat
from tcptune.core.socket_summary import accept_queue_full
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host import clock
from tcptune.host.source import Source, SourceKind
from tcptune.kernel.states import TcpState

# Settings the checks read (absent keys are None: e.g. conntrack without nf_conntrack loaded).
SETTING_KEYS = (
    "net.core.somaxconn",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_synack_retries",
    "net.ipv4.tcp_syn_linear_timeouts",
    "net.ipv4.tcp_rto_max_ms",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_retries2",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_reuse_delay",
    "net.ipv4.tcp_timestamps",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_max",
)
# Global keys, absent in a child namespace (net/ipv4/sysctl_net_ipv4.c ipv4_table, registered
# for init_net only).
GLOBAL_KEYS = ("net.ipv4.tcp_max_orphans", "net.ipv4.tcp_mem")
COUNTER_FILES = ("net/netstat", "net/snmp")
MAX_INTERVAL = 3600.0


@dataclass
class DoctorReport:
    source: str
    seconds: float  # the window the rates are over; 0: one sample
    findings: list[Finding]
    settings: dict[str, str | None]
    states: dict[str, int]
    notes: list[str] = field(default_factory=list)
    busiest_destination: PortUse | None = None  # the largest share of the ephemeral ports (metrics export it)
    usable_ephemeral_ports: int | None = None  # the range minus the reserved ports; None: range unreadable

    @property
    def exit_code(self) -> int:
        return ExitCode.FINDINGS if self.findings else ExitCode.OK


def check_options(interval: float, checks: tuple[str, ...], idle_timeout: float | None = None) -> None:
    """Refuse bad input before anything is read (nothing is written either way)."""
    if not (0 <= interval <= MAX_INTERVAL):  # also refuses NaN
        raise TcptuneError(
            f"--interval {interval}: not between 0 and {MAX_INTERVAL:g} seconds",
            ExitCode.BAD_INPUT,
            hint="0 takes one sample",
        )
    if idle_timeout is not None and not (0 < idle_timeout <= 86400 * 7):
        raise TcptuneError(
            f"--idle-timeout {idle_timeout}: not a number of seconds above 0",
            ExitCode.BAD_INPUT,
            hint="the idle timeout of the load balancer or application in front, e.g. 350",
        )
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise TcptuneError(
            f"--check {unknown[0]}: no such check", ExitCode.BAD_INPUT, hint=f"one of {', '.join(CHECKS)}"
        )


def _syn_timeout(settings: dict[str, str | None]) -> float | None:
    from tcptune.kernel.timers.syn import predict_syn

    try:
        retries = int(settings["net.ipv4.tcp_syn_retries"] or "")
    except ValueError:
        return None
    linear = settings.get("net.ipv4.tcp_syn_linear_timeouts")
    rto_max = settings.get("net.ipv4.tcp_rto_max_ms")
    return predict_syn(
        retries,
        int(linear) if linear and linear.isdigit() else None,
        int(rto_max) / 1000 if rto_max and rto_max.isdigit() else None,
    ).give_up


class _Owners:
    """Who holds the sockets a check names, from /proc/*/fd, looked up only when a check needs it.

    Two lookups: ``samples()`` for the CLOSE_WAIT check (per process, the socket inodes among
    a sample of its fds when it has many: reading every fd cost 4-5 s at a million sockets)
    and ``index()`` for the few single sockets others name (full listeners, stalled sockets:
    exact, the walk stops when all are found).  ``start_samples()`` runs the first in a forked
    child while the dump is read (tcptune.host.owners.SampleInChild says why not a thread).
    """

    def __init__(self) -> None:
        self._index = None
        self._indexed: set[int] = set()  # the inodes the last index() was asked for
        self._samples = None
        self._child = None  # the forked sampler, once started
        self._facts: dict = {}  # pid -> ProcessFacts: one psutil look per process, however many findings name it
        self._open_fds: dict[int, int] = {}  # pid -> open fds, as the samples counted them

    def start_samples(self) -> None:
        from tcptune.host.owners import SampleInChild

        if self._child is None and self._samples is None:
            self._child = SampleInChild()

    def samples(self):
        """Each socket-holding process's (sampled) socket inodes: tcptune.host.owners.SocketSample."""
        if self._samples is None:
            if self._child is None:
                from tcptune.host.owners import sample_socket_fds

                self._samples = sample_socket_fds()
            else:
                self._samples = self._child.result()
            self._open_fds.update((h.pid, h.open_fds) for h in self._samples)
        return self._samples

    def index(self, inodes: set[int]):
        """(inode -> owner number, owners [(pid, name)], unreadable) covering ``inodes``."""
        from tcptune.host.owners import socket_owner_index

        if self._index is None or not inodes <= self._indexed:
            self._indexed |= inodes
            self._index = socket_owner_index(wanted=self._indexed)
        return self._index

    def facts(self, pid: int, name: str, open_fds: int | None = None):
        from tcptune.host.processes import ProcessFacts, process_facts

        if pid not in self._facts:
            known = open_fds if open_fds is not None else self._open_fds.get(pid)
            self._facts[pid] = process_facts(pid, known) or ProcessFacts(pid, name, None, None, None, None)
        return self._facts[pid]


def _synack_timeout(settings: dict[str, str | None]) -> float | None:
    from tcptune.kernel.timers.synack import predict_synack

    retries = settings.get("net.ipv4.tcp_synack_retries")
    cookies = settings.get("net.ipv4.tcp_syncookies")
    if not (retries and retries.isdigit()) or int(retries) > 63:
        return None
    return predict_synack(int(retries), syncookies=int(cookies) if cookies and cookies.isdigit() else None).give_up


def _listeners(found, live: bool, owners: _Owners) -> list[Listener]:
    """The dump's listeners; the owner of each full one (the /proc/*/fd walk runs only then)."""
    full = [x for x in found if accept_queue_full(x.accept_queue, x.backlog)]
    named: dict[int, str] = {}
    if full and live:
        index, procs, _ = owners.index({x.inode for x in full})
        for x in full:
            if x.inode in index:
                named[x.inode] = owners.facts(*procs[index[x.inode]]).label()
    return [
        Listener(x.address, x.port, x.accept_queue, x.backlog, named.get(x.inode))
        for x in found
        if x.backlog is not None
    ]


def _close_wait_sample() -> dict[int, int] | None:
    """cookie -> inode of the CLOSE_WAIT sockets now (None when sock_diag is unavailable)."""
    from tcptune.core.inet_diag import SockDiagUnavailable
    from tcptune.host.sockdiag import sockets_in_state
    from tcptune.kernel.states import TcpState

    try:
        return sockets_in_state(TcpState.CLOSE_WAIT)
    except SockDiagUnavailable:
        return None


def _may_hold_close_wait(texts: dict[str, str]) -> bool:
    """Can this namespace hold CLOSE_WAIT_MIN CLOSE_WAIT sockets?  Tcp CurrEstab counts the
    sockets in ESTABLISHED or CLOSE_WAIT (tcp_set_state() in net/ipv4/tcp.c decrements it only
    on leaving one of the two; measured on 6.18: 500000 with 400000 ESTABLISHED and 100000
    CLOSE_WAIT), so below the mark the owners need not be looked at."""
    try:
        established = _counters({k: v for k, v in texts.items() if k == "net/snmp"}).get("Tcp", {}).get("CurrEstab")
    except TcptuneError:
        return True  # an unreadable snmp file: look anyway
    return established is None or established >= CLOSE_WAIT_MIN


def _close_wait_owners(
    before: dict[int, int] | None, owners: _Owners, after: dict[int, int] | None = None
) -> list[ProcessSockets]:
    """The processes holding CLOSE_WAIT sockets that close_wait_leak() names; with a first sample,
    only the sockets (by cookie) that were in CLOSE_WAIT then too.  ``after``: the second sample
    when the main dump took it already (None: a dump of its own)."""
    if after is None:
        after = _close_wait_sample()
    if not after:
        return []
    stayed = after if before is None else {c: i for c, i in after.items() if c in before}
    if len(stayed) < CLOSE_WAIT_MIN:
        return []
    wanted = set(stayed.values())
    out = []
    for h in owners.samples():
        n = len(h.sockets & wanted)
        close_wait, sockets = h.scaled(n), h.scaled(len(h.sockets))
        if n and close_wait_leak(close_wait, sockets):
            facts = owners.facts(h.pid, "?")
            out.append(
                ProcessSockets(
                    facts.label(),
                    facts.pid,
                    close_wait,
                    sockets,
                    facts.open_fds,
                    facts.fd_limit,
                    before is not None,
                    sampled_fds=h.read if h.sampled else 0,
                )
            )
    return sorted(out, key=lambda p: (-p.close_wait, p.pid))


def _stalls(stalled, owners: _Owners) -> list[Stall]:
    """The dump's stalled sockets by owner and role (not reading; waiting on a zero window)."""
    from tcptune.core.inet_diag import RQUEUE_FULLISH, TIMER_PROBE0

    if not stalled:
        return []
    index, procs, _ = owners.index({s.inode for s in stalled})
    groups: dict = {}
    for s in stalled:
        for role, hit, size in (
            (UNREAD, s.rqueue >= RQUEUE_FULLISH, s.rqueue),
            (ZERO_WINDOW, s.timer == TIMER_PROBE0, s.wqueue),
        ):
            if hit:
                g = groups.setdefault(
                    (index.get(s.inode), role), [0, 0, f"{s.local}:{s.local_port} <- {s.peer}:{s.peer_port}"]
                )
                g[0] += 1
                g[1] = max(g[1], size)
    out = []
    for (idx, role), (n, largest, example) in sorted(groups.items(), key=lambda kv: (-kv[1][1], kv[0][1])):
        label = "(no owner)" if idx is None else owners.facts(*procs[idx]).label()
        out.append(Stall(label, role, n, largest, example))
    return out


def _in_initial_netns() -> bool | None:
    """sysctl.d is applied at boot in the initial network namespace; another one starts from the defaults.
    None: cannot tell (/proc/1/ns/net unreadable, as inside some containers)."""
    import os

    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return None


def _setting_issues(source: Source, notes: list[str]) -> list[SettingIssue]:
    """What `tcptune audit` (kernel-default: the risky values) and `audit --persisted` say, as issues."""
    from pathlib import Path

    from tcptune.ops.audit import audit_persisted, audit_profile

    try:
        risky = [
            SettingIssue(f.key, RISKY, f.actual, None, f.risky_reason or f.reason, f.source)
            for f in audit_profile(source).findings
            if f.risky
        ]
    except TcptuneError as exc:
        notes.append(f"settings not audited: {exc}")
        return []
    if source.kind is SourceKind.ROOT:
        root = Path(source.root)  # the tree's /, holding its etc/sysctl.d
    elif source.kind is SourceKind.LIVE and (initial := _in_initial_netns()):
        root = Path("/")
    else:
        why = (
            "cannot tell whether this is the initial network namespace (/proc/1/ns/net unreadable)"
            if source.kind is SourceKind.LIVE and initial is None
            else "not the initial network namespace: sysctl.d does not apply here at boot"
        )
        notes.append(f"{why}, so what a reboot keeps (audit --persisted) is not judged")
        return risky
    try:
        persisted = audit_persisted(source, root).findings
    except TcptuneError as exc:
        notes.append(f"boot values not compared: {exc}")
        return risky
    lost = [
        SettingIssue(f.key, NOT_PERSISTED, f.actual, f.expected, f.reason.split(";")[0], f.source)
        for f in persisted
        if f.verdict == "drift"
    ]
    ignored = [
        SettingIssue(f.key, BOOT_LINE_IGNORED, None, f.expected, f.reason, f.source)
        for f in persisted
        if f.verdict == "unsupported"
    ]
    return risky + lost + ignored


def _retransmitting(stalled) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(s.peer for s in stalled if s.retrans))


def _fd_heavy(owners: _Owners) -> list[ProcessSockets]:
    from tcptune.host.processes import socket_owners_near_fd_limit

    out = []
    for pid, open_fds, limit in socket_owners_near_fd_limit(FD_NEAR):
        facts = owners.facts(pid, "?", open_fds)  # psutil for the few the screen found: name, user, the limit
        if facts.open_fds is not None or facts.fd_limit is not None:
            out.append(ProcessSockets(facts.label(), pid, 0, 0, facts.open_fds or open_fds, facts.fd_limit or limit))
    return out


BUNDLE_META = "tcptune-bundle.json"
BUNDLE_FORMAT = "tcptune-bundle/1"
BEFORE = ".before"  # the first sample's files in a bundle: proc/net/netstat.before


@dataclass
class _Window:
    first: dict[str, str]  # proc-relative path -> text, e.g. "net/netstat"
    second: dict[str, str]
    seconds: float


def _read_texts(source: Source, suffix: str = "") -> dict[str, str]:
    texts = {}
    for rel in COUNTER_FILES:
        text = source.read_proc_text(rel + suffix)
        if text is None:
            raise TcptuneError(
                f"{source.label}: no proc/{rel}{suffix} to read the kernel's counters from",
                ExitCode.BAD_INPUT,
                hint="doctor reads the live host, --netns, or a --root tree saved with proc/net/netstat and snmp",
            )
        texts[rel] = text
    return texts


def _window(source: Source, interval: float, meta: dict | None, notes: list[str]) -> _Window:
    if meta is not None:  # a bundle: both samples and the window were saved
        return _Window(_read_texts(source, BEFORE), _read_texts(source), float(meta["window_seconds"]))
    first, t1 = _read_texts(source), clock.now()
    if not source.is_live or interval <= 0:
        if not source.is_live and interval > 0:
            notes.append("a saved tree holds one sample: no counter rates, findings come from sockets and settings")
        return _Window(first, first, 0.0)
    clock.wait(interval)
    return _Window(first, _read_texts(source), clock.now() - t1)


def _counters(texts: dict[str, str]):
    return merge(*(parse_snmp_text(text, f"proc/{rel}") for rel, text in texts.items()))


def _text_or_none(value) -> str | None:
    return None if value is None else str(value)


def _process_row(row: list) -> ProcessSockets:
    label, pid, close_wait, sockets, open_fds, fd_limit, persisted, *rest = row
    return ProcessSockets(
        str(label),
        int(pid),
        int(close_wait),
        int(sockets),
        None if open_fds is None else int(open_fds),
        None if fd_limit is None else int(fd_limit),
        bool(persisted),
        int(rest[0]) if rest else 0,  # bundles before the sampled count had 7 fields
    )


def _bundle_meta(source: Source) -> dict | None:
    """The bundle's own record (window, listener rows), when the --root tree is a doctor bundle."""
    if source.kind is not SourceKind.ROOT:
        return None
    text = source.read_file_text(BUNDLE_META)
    if text is None:
        return None
    import json

    try:
        meta = json.loads(text)
        if meta.get("format") != BUNDLE_FORMAT or not isinstance(meta.get("listeners"), list):
            raise ValueError("not a tcptune bundle record")
        meta["window_seconds"] = float(meta["window_seconds"])
        meta["listeners"] = [Listener(str(x[0]), int(x[1]), int(x[2]), int(x[3]), x[4]) for x in meta["listeners"]]
        for key in ("close_wait", "fd_heavy"):  # absent in bundles from before these checks
            meta[key] = [_process_row(row) for row in meta.get(key, [])]
        meta["close_wait_seconds"] = float(meta.get("close_wait_seconds", 0.0))
        meta["setting_issues"] = [SettingIssue(*map(_text_or_none, row)) for row in meta.get("setting_issues", [])]
        meta["retransmitting"] = {str(k): int(v) for k, v in meta.get("retransmitting", {}).items()}
        meta["stalls"] = [Stall(str(a), str(b), int(c), int(d), str(e)) for a, b, c, d, e in meta.get("stalls", [])]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        raise TcptuneError(f"{BUNDLE_META} in {source.label}: {exc}", ExitCode.BAD_INPUT) from None
    return meta


def run_doctor(
    source: Source,
    interval: float = 2.0,
    checks: tuple[str, ...] = (),
    *,
    bundle: str | None = None,
    idle_timeout: float | None = None,
) -> DoctorReport:
    check_options(interval, checks, idle_timeout)
    if source.kind is SourceKind.DUMP:
        raise TcptuneError(
            f"{source.label} holds sysctl values, not counters or sockets",
            ExitCode.BAD_INPUT,
            hint="doctor reads the live host, --netns, or a --root tree",
        )
    from tcptune.ops.sockets import collect_summary

    notes: list[str] = []
    meta = _bundle_meta(source)
    live = source.is_live and meta is None

    def wanted(check: str) -> bool:  # what only one check needs is read only when it runs
        return not checks or check in checks

    # the first CLOSE_WAIT sample goes with the first counter sample: the second, after the
    # window, keeps only the sockets (by cookie) that stayed
    owners = _Owners()
    cw_before = None
    cw_check = live and wanted("close-wait")
    if cw_check and interval > 0:
        cw_before = _close_wait_sample()
        if len(cw_before or ()) >= CLOSE_WAIT_MIN:  # close_wait_owners() will need the owners
            owners.start_samples()
    cw_start = clock.now()
    window = _window(source, interval, meta, notes)
    if cw_check and interval <= 0 and _may_hold_close_wait(window.second):
        # no window: the CLOSE_WAIT sockets come from the main dump below; the owners' fds
        # are sampled meanwhile, on the chance that enough of them are CLOSE_WAIT
        owners.start_samples()
    settings = source.read_sysctls(SETTING_KEYS)
    # the port groups come from the same single dump as the state counts (the 'dest' view)
    summary = collect_summary(source, port_range=parse_port_range(settings.get("net.ipv4.ip_local_port_range")))
    hidden = [k for k in GLOBAL_KEYS if settings.get(k) is None]
    if hidden:
        notes.append(
            f"{', '.join(hidden)} are global and this network namespace does not show them: "
            "the orphan and TCP memory limits are judged only where they can be read"
        )
    sockstat_text = source.read_proc_text("net/sockstat") or ""
    # past the pile-up threshold only: the SYN_SENT sockets by destination, from the same dump
    syn_sent = {}
    if wanted("syn-sent") and summary.counts.get(TcpState.SYN_SENT, 0) >= SYN_SENT_PILE:
        syn_sent = summary.syn_sent_destinations or {}
    listeners = meta["listeners"] if meta is not None else _listeners(summary.listeners, source.is_live, owners)
    retransmitting = meta["retransmitting"] if meta is not None else _retransmitting(summary.stalled)
    if meta is not None:  # a bundle: what the live run found about processes and settings
        setting_issues, stalls = meta["setting_issues"], meta["stalls"]
        close_wait, fd_heavy, cw_seconds = meta["close_wait"], meta["fd_heavy"], meta["close_wait_seconds"]
    elif live:
        setting_issues = _setting_issues(source, notes) if wanted("settings") else []
        stalls = _stalls(summary.stalled, owners) if wanted("receiver-not-reading") else []
        # the second CLOSE_WAIT dump only when enough could have stayed (the main dump's count, the first sample)
        enough = summary.counts.get(TcpState.CLOSE_WAIT, 0) >= CLOSE_WAIT_MIN and (
            cw_before is None or len(cw_before) >= CLOSE_WAIT_MIN
        )
        close_wait = (
            _close_wait_owners(cw_before, owners, summary.close_wait) if wanted("close-wait") and enough else []
        )
        fd_heavy = _fd_heavy(owners) if wanted("fd-limit") else []
        cw_seconds = clock.now() - cw_start if cw_before is not None else 0.0
    else:  # a saved tree that is no bundle
        setting_issues = _setting_issues(source, notes) if wanted("settings") else []
        stalls, close_wait, fd_heavy, cw_seconds = [], [], [], 0.0
        notes.append("a saved tree has no processes: the close-wait and fd-limit checks need the live host")
    inp = DoctorInput(
        counter=delta(_counters(window.first), _counters(window.second), window.seconds),
        seconds=window.seconds,
        settings=settings,
        states=summary.counts,
        listeners=listeners,
        sockstat=parse_sockstat(sockstat_text),
        syn_sent_timeout=_syn_timeout(settings),
        synack_timeout=_synack_timeout(settings),
        syn_recv_by_port=dict(summary.syn_recv_by_port),
        idle_timeout=idle_timeout,
        destinations=summary.destinations or {},
        syn_sent_destinations=syn_sent,
        setting_issues=setting_issues,
        stalls=stalls,
        retransmitting=retransmitting,
        close_wait_owners=close_wait,
        fd_heavy=fd_heavy,
        window_seconds_cw=cw_seconds,
    )
    busiest = ephemeral_port_use(inp, 1)
    report = DoctorReport(
        source=source.label,
        seconds=round(window.seconds, 3),
        findings=diagnose(inp, checks),
        settings=dict(settings),
        states={s.name: n for s, n in summary.counts.items()},
        notes=notes + list(summary.notes),
        busiest_destination=busiest[0] if busiest else None,
        usable_ephemeral_ports=usable_ephemeral_ports(settings),
    )
    if bundle is not None:
        _save_bundle(bundle, source, window, inp, sockstat_text, report)
    return report


def _save_bundle(path: str, source: Source, window: _Window, inp: DoctorInput, sockstat_text: str, report) -> None:
    """Everything doctor read, shaped like / so that `doctor --root` on it gives the same findings."""
    import json

    from tcptune import __version__
    from tcptune.core.keys import SECRET_KEYS, key_to_relpath
    from tcptune.host.bundle import write_bundle

    files: dict[str, bytes] = {}
    for rel, text in window.first.items():
        files[f"proc/{rel}{BEFORE}"] = text.encode()
    for rel, text in window.second.items():
        files[f"proc/{rel}"] = text.encode()
    files["proc/net/sockstat"] = sockstat_text.encode()
    for rel in ("net/tcp", "net/tcp6"):  # the socket table, as /proc prints it, for the state counts
        text = source.read_proc_text(rel)
        if text is not None:
            files[f"proc/{rel}"] = text.encode()
    keys = [k for k in {*source.list_sysctls(), *SETTING_KEYS} if k not in SECRET_KEYS]
    for key, value in source.read_sysctls(sorted(keys)).items():
        if value is not None:
            files[key_to_relpath(key)] = (value + "\n").encode()
    release = source.kernel_release()
    if release:
        files["proc/sys/kernel/osrelease"] = (release + "\n").encode()
    build = source.kernel_build()
    if build:  # the stable patch level where osrelease names only the ABI (Debian's 6.1.0-57-amd64)
        files["proc/sys/kernel/version"] = (build + "\n").encode()
    if source.kind is SourceKind.LIVE:  # the sysctl.d tree, for whoever reads the bundle
        from pathlib import Path

        from tcptune.host.sysctld_files import read_config_files

        try:
            for conf, text in read_config_files(Path("/")):
                if text is not None:
                    files[conf.lstrip("/")] = text.encode()
        except TcptuneError as exc:
            report.notes.append(f"sysctl.d not saved in the bundle: {exc}")
    meta = {
        "format": BUNDLE_FORMAT,
        "tcptune": __version__,
        "source": source.label,
        "window_seconds": window.seconds,
        # the dump's LISTEN rows: /proc/net/tcp does not print a listener's backlog
        "listeners": [[x.address, x.port, x.accept_queue, x.backlog, x.owner] for x in inp.listeners],
        # the processes the close-wait and fd-limit checks named (a bundle has no processes)
        "close_wait": [p.to_row() for p in inp.close_wait_owners],
        "fd_heavy": [p.to_row() for p in inp.fd_heavy],
        "close_wait_seconds": inp.window_seconds_cw,
        "stalls": [s.to_row() for s in inp.stalls],
        "retransmitting": dict(inp.retransmitting),
        # what audit and audit --persisted said (the sysctl.d tree below is saved for reading)
        "setting_issues": [i.to_row() for i in inp.setting_issues],
        "findings": [f.check for f in report.findings],
    }
    files[BUNDLE_META] = (json.dumps(meta, indent=1) + "\n").encode()
    write_bundle(path, files)
