"""`tcptune metrics`: what only tcptune knows, gathered for Prometheus (node_exporter's textfile collector).

Socket states per family, each listener's accept queue and backlog (bounded: the ports
asked for, else the top N), the audit against a profile, doctor's findings over a short
window.  node_exporter already exports the raw counters (node_netstat_*, node_sockstat_*):
those are not repeated.  A failure is a result too (success 0), so that a stale or broken
collector can be alerted on.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from tcptune.core.diagnoses.model import Finding
from tcptune.core.ports import PortUse
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.source import Source, kernel_version

DEFAULT_TOP = 10
MAX_PORTS = 64  # label cardinality stays bounded whatever is asked


@dataclass(frozen=True)
class ListenerQueue:
    address: str
    port: int
    queue: int
    backlog: int


@dataclass
class MetricsData:
    version: str
    kernel: str | None
    profile: str
    states: dict[tuple[str, str], int] = field(default_factory=dict)  # (family, state) -> sockets
    listeners: list[ListenerQueue] = field(default_factory=list)
    drift: dict[str, bool] = field(default_factory=dict)  # key -> differs from the profile
    verdicts: dict[str, int] = field(default_factory=dict)  # audit verdict -> findings
    findings: list[Finding] = field(default_factory=list)
    # the destination holding the largest share of the ephemeral ports (None: no socket holds one)
    busiest_destination: PortUse | None = None
    usable_ephemeral_ports: int | None = None  # None: ip_local_port_range unreadable, or doctor failed
    success: bool = True
    error: str | None = None


def parse_ports(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    ports = []
    for part in text.split(","):
        part = part.strip()
        if not (part.isascii() and part.isdigit() and len(part) <= 5 and 0 < int(part) < 65536):
            raise TcptuneError(f"--ports {text}: {part!r} is not a port (1-65535)", ExitCode.BAD_INPUT)
        ports.append(int(part))
    if len(ports) > MAX_PORTS:
        raise TcptuneError(f"--ports: at most {MAX_PORTS} ports (each is a series)", ExitCode.BAD_INPUT)
    return tuple(dict.fromkeys(ports))


def _states_and_listeners(source: Source, ports: tuple[int, ...], top: int, data: MetricsData) -> None:
    from tcptune.ops.sockets import collect_summary

    listeners = []
    for family, label in ((socket.AF_INET, "ipv4"), (socket.AF_INET6, "ipv6")):
        summary = collect_summary(source, families=(family,))
        for state, n in summary.counts.items():
            data.states[(label, state.name.lower())] = n
        listeners += [x for x in summary.listeners if x.backlog is not None]
    if ports:
        chosen = [x for x in listeners if x.port in ports]
    else:  # the fullest first, then by port: stable from run to run
        chosen = sorted(listeners, key=lambda x: (-x.accept_queue / max(x.backlog, 1), x.port, x.address))[:top]
    data.listeners = [ListenerQueue(x.address, x.port, x.accept_queue, x.backlog) for x in chosen]


def _audit(source: Source, prof, kb, data: MetricsData) -> None:
    from tcptune.core.audit import audit

    current = source.read_sysctls(sorted(set(prof.settings) | {p.key for p in kb if p.warn}))
    for f in audit(prof, current, kb, kernel_version(source), source_kind=source.kind.value):
        data.verdicts[f.verdict] = data.verdicts.get(f.verdict, 0) + 1
        if f.key in prof.settings and f.verdict in ("ok", "drift"):
            data.drift[f.key] = f.verdict == "drift"


def collect_metrics(
    source: Source, *, profile: str, ports: tuple[int, ...] = (), top: int = DEFAULT_TOP, interval: float = 1.0
) -> MetricsData:
    """Everything one scrape file holds; an error in any part makes success False, not an exception."""
    from tcptune import __version__
    from tcptune.host.profile_files import load_profile
    from tcptune.kernel.kb import load_kb
    from tcptune.ops.doctor import check_options, run_doctor

    # The caller's mistakes (a wrong --profile, a bad --interval) are errors before anything
    # is collected; what goes wrong while collecting is a result with success 0.
    check_options(interval, ())
    kb = load_kb()
    prof = load_profile(profile, kb=kb)
    data = MetricsData(__version__, source.kernel_release(), prof.name)
    try:
        _states_and_listeners(source, ports, top, data)
        _audit(source, prof, kb, data)
        report = run_doctor(source, interval)
        data.findings = report.findings
        data.busiest_destination = report.busiest_destination
        data.usable_ephemeral_ports = report.usable_ephemeral_ports
    except TcptuneError as exc:
        data.success, data.error = False, str(exc)
    return data
