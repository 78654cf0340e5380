"""The `states` use case: one sample of the TCP socket table, its owners and the warnings it earns.

Chooses the source: netlink sock_diag for the live host or --netns (falling back to
/proc/net/tcp{,6} when sock_diag is unavailable), /proc/net/tcp{,6} for a --root tree;
joins sockets with their owning processes for --by process; reads the settings the
warnings compare with.  Returns a typed result and never prints.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from tcptune.core.socket_summary import (
    SETTING_KEYS,
    ListenerInfo,
    Summary,
    Warning_,
    check_warnings,
    group_by_owner,
    normalize_counts,
    resolve_process_groups,
    summarize_rows,
)
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.source import SourceKind

BOTH_FAMILIES = (socket.AF_INET, socket.AF_INET6)


@dataclass
class StatesSample:
    summary: Summary
    warnings: list[Warning_]


def sample(host, by: str | None = None, states=None, families=BOTH_FAMILIES) -> StatesSample:
    """One sample of the table ``host`` stands for, with the warnings tied to its settings."""
    summary = collect_summary(host, by, states, families)
    warnings = check_warnings(summary, host.read_sysctls(SETTING_KEYS), by=by)
    return StatesSample(summary, warnings)


def collect_summary(
    host, by: str | None = None, states=None, families=BOTH_FAMILIES, port_range: tuple[int, int] | None = None
) -> Summary:
    """Read the socket table ``host`` stands for: netlink for the live host (or --netns),
    /proc/net/tcp{,6} for a --root snapshot or when netlink is unavailable.

    ``port_range`` (ip_local_port_range; only without ``by``): also count Summary.destinations,
    the sockets per (local address, peer address, peer port) holding a port of the range, from
    the same single dump.
    ``states``: a set of TcpState (None = all).  For by='process' the groups come back
    keyed by owner ((pid, name), tcptune.core.socket_summary.NO_OWNER, or None when not visible).
    """
    from tcptune.core.inet_diag import SockDiagUnavailable
    from tcptune.kernel.states import states_mask

    if host.kind is SourceKind.DUMP:
        raise TcptuneError(
            f"{host.label} holds sysctl values, not a socket table",
            ExitCode.BAD_INPUT,
            hint="`tcptune states` reads the live host, --netns, or --root DIR holding proc/net/tcp",
        )
    if by == "process" and not host.is_live:
        raise TcptuneError(
            f"--by process needs running processes; {host.label} is a snapshot",
            ExitCode.BAD_INPUT,
            hint="use --by local-port or --by peer with --root",
        )
    if port_range is not None and by is not None:
        raise ValueError("port_range is counted by its own view: not together with by")
    if not host.is_live:
        return summary_from_proc(host, by, states, families, port_range)
    from tcptune.host.sockdiag import dump_table

    try:
        table = dump_table(families, states_mask(states or ()), "dest" if port_range else by, port_range)
    except SockDiagUnavailable as exc:
        summary = summary_from_proc(host, by, states, families, port_range)
        summary.notes.insert(0, f"netlink sock_diag unavailable ({exc}); read /proc/net/tcp and tcp6 instead")
        if by == "process":
            index, owners = _owners()
            summary.groups = resolve_process_groups(summary.groups, {ino: owners[i] for ino, i in index.items()})
        return summary
    summary = Summary(
        source="netlink sock_diag" + ("" if host.label == "live host" else f" ({host.label})"),
        counts=normalize_counts(table.counts),
        groups=table.groups,
        listeners=[ListenerInfo(x.address, x.port, x.accept_queue, x.backlog, x.inode) for x in table.listeners],
        syn_recv_by_port=table.syn_recv_by_port,
        group_totals=table.group_totals if by in ("local-port", "peer") else None,
        destinations=table.destinations if port_range else None,
        syn_sent_destinations=table.syn_sent_destinations if port_range else None,
        close_wait=table.close_wait if port_range else None,
        stalled=table.stalled,
    )
    # /proc/net/sockstat "orphan" is tcp_orphan_count, the host-wide number the
    # kernel compares with tcp_max_orphans (net/ipv4/tcp.c tcp_check_oom).
    summary.orphans = _sockstat_orphans(host)
    if table.interrupted:
        summary.notes.append("the kernel flagged the dump as interrupted (sockets changed while it was read)")
    if by == "process":
        index, owners = _owners()
        summary.groups = group_by_owner(table.sock_states, table.sock_inodes, index, owners)
    return summary


def _owners():
    from tcptune.host.owners import socket_owner_index

    index, owners, _unreadable = socket_owner_index()
    return index, owners


def _sockstat_orphans(host) -> int | None:
    from tcptune.core.procfs import parse_sockstat

    text = host.read_proc_text("net/sockstat")
    return None if text is None else parse_sockstat(text).get("TCP", {}).get("orphan")


def summary_from_proc(host, by, states, families, port_range=None) -> Summary:
    """The Summary of ROOT/proc/net/tcp and tcp6 (the families asked for)."""
    from tcptune.core.procfs import parse_proc_net_tcp

    rows, notes, read = [], [], []
    for family, rel in ((socket.AF_INET, "net/tcp"), (socket.AF_INET6, "net/tcp6")):
        if family not in families:
            continue
        text = host.read_proc_text(rel)
        if text is None:
            continue
        path = str(host.proc_path(rel))
        read.append(path)
        r, warns = parse_proc_net_tcp(text, family, source=path)
        rows.extend(r)
        notes.extend(str(w) for w in warns)
    if not read:
        raise TcptuneError(
            f"{host.label}: no proc/net/tcp or proc/net/tcp6 to read",
            ExitCode.BAD_INPUT,
            hint="a --root snapshot needs proc/net/tcp (copy /proc/net/tcp and tcp6 into DIR/proc/net/)",
        )
    summary = summarize_rows(rows, by, states, source=" + ".join(read), port_range=port_range)
    summary.notes.extend(notes)
    return summary
