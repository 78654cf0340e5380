"""`tcptune doctor`: two samples of the kernel's counters, one socket dump, the settings -> findings.

Everything is read in the target network namespace (the source's): counters, sockstat,
sysctls and the sock_diag dump.  A --root tree (a saved bundle) has one sample of each
file, so nothing there is a rate; its findings come from sockets and settings alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcptune.core.counters import Counters, delta, merge, parse_snmp_text
from tcptune.core.diagnoses import CHECKS, DoctorInput, Finding, Listener, diagnose
from tcptune.core.procfs import parse_sockstat
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host import clock
from tcptune.host.source import Source, SourceKind

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
    "net.ipv4.tcp_syn_linear_timeouts",
    "net.ipv4.tcp_rto_max_ms",
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

    @property
    def exit_code(self) -> int:
        return ExitCode.FINDINGS if self.findings else ExitCode.OK


def check_options(interval: float, checks: tuple[str, ...]) -> None:
    """Refuse bad input before anything is read (nothing is written either way)."""
    if not (0 <= interval <= MAX_INTERVAL):  # also refuses NaN
        raise TcptuneError(
            f"--interval {interval}: not between 0 and {MAX_INTERVAL:g} seconds",
            ExitCode.BAD_INPUT,
            hint="0 takes one sample",
        )
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise TcptuneError(
            f"--check {unknown[0]}: no such check", ExitCode.BAD_INPUT, hint=f"one of {', '.join(CHECKS)}"
        )


def _sample(source: Source) -> tuple[Counters, float]:
    parts = []
    for rel in COUNTER_FILES:
        text = source.read_proc_text(rel)
        if text is None:
            raise TcptuneError(
                f"{source.label}: no proc/{rel} to read the kernel's counters from",
                ExitCode.BAD_INPUT,
                hint="doctor reads the live host, --netns, or a --root tree saved with proc/net/netstat and snmp",
            )
        parts.append(parse_snmp_text(text, f"proc/{rel}"))
    return merge(*parts), clock.now()


def _syn_timeout(settings: dict[str, str | None]) -> float | None:
    from tcptune.kernel.timers import predict_syn

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


def _listeners(found, live: bool) -> list[Listener]:
    """The dump's listeners; the owner of each full one (the /proc/*/fd walk runs only then)."""
    # sk_acceptq_is_full() (include/net/sock.h): more waiting than sk_max_ack_backlog
    full = [x for x in found if x.backlog is not None and x.accept_queue > x.backlog]
    owners: dict[int, str] = {}
    if full and live:
        from tcptune.host.processes import process_facts
        from tcptune.host.sockdiag import socket_owner_index

        index, procs, _ = socket_owner_index()
        for x in full:
            if x.inode in index:
                pid, name = procs[index[x.inode]]
                facts = process_facts(pid)
                owners[x.inode] = facts.label() if facts else f"{name} (pid {pid})"
    return [
        Listener(x.address, x.port, x.accept_queue, x.backlog, owners.get(x.inode))
        for x in found
        if x.backlog is not None
    ]


def run_doctor(source: Source, interval: float = 2.0, checks: tuple[str, ...] = ()) -> DoctorReport:
    check_options(interval, checks)
    if source.kind is SourceKind.DUMP:
        raise TcptuneError(
            f"{source.label} holds sysctl values, not counters or sockets",
            ExitCode.BAD_INPUT,
            hint="doctor reads the live host, --netns, or a --root tree",
        )
    from tcptune.host.sockdiag import collect_summary

    notes = []
    first, t1 = _sample(source)
    if source.is_live and interval > 0:
        clock.wait(interval)
        second, t2 = _sample(source)
    else:
        second, t2 = first, t1
        if not source.is_live and interval > 0:
            notes.append("a saved tree holds one sample: no counter rates, findings come from sockets and settings")
    summary = collect_summary(source)
    settings = source.read_sysctls(SETTING_KEYS)
    hidden = [k for k in GLOBAL_KEYS if settings.get(k) is None]
    if hidden:
        notes.append(
            f"{', '.join(hidden)} are global and this network namespace does not show them: "
            "the orphan and TCP memory limits are judged only where they can be read"
        )
    sockstat = parse_sockstat(source.read_proc_text("net/sockstat") or "")
    listeners = _listeners(summary.listeners, source.is_live)
    inp = DoctorInput(
        counter=delta(first, second, t2 - t1),
        seconds=t2 - t1,
        settings=settings,
        states=summary.counts,
        listeners=listeners,
        sockstat=sockstat,
        syn_sent_timeout=_syn_timeout(settings),
    )
    return DoctorReport(
        source=source.label,
        seconds=round(t2 - t1, 3),
        findings=diagnose(inp, checks),
        settings=dict(settings),
        states={s.name: n for s, n in summary.counts.items()},
        notes=notes + list(summary.notes),
    )
