"""Doctor's checks: counters, sockets, settings and owners joined into findings (pure).

Input is two samples of the kernel's counters ``seconds`` apart, one socket summary, the
settings and sockstat; output is a list of findings, each with its evidence (every number
and where it came from), the keys or program to look at, the fix and a source.  A rate
over the window triggers a finding, never a since-boot total: a host up for a year has
ListenOverflows from long ago that say nothing about now.
"""

from __future__ import annotations

from collections.abc import Callable

from tcptune.core.diagnoses.ephemeral import check_ephemeral_ports
from tcptune.core.diagnoses.liveness import check_dead_peers
from tcptune.core.diagnoses.model import SEVERITIES, DoctorInput, Finding
from tcptune.core.diagnoses.owners import check_close_wait, check_fd_limit, check_receiver_not_reading
from tcptune.core.diagnoses.queues import check_accept_queue, check_orphans_and_memory, check_syn_queue, check_time_wait
from tcptune.core.diagnoses.settings import check_settings
from tcptune.core.diagnoses.traffic import check_conntrack, check_resets, check_retransmissions, check_syn_sent

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
