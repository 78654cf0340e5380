"""TCP state histograms: aggregation, grouping, warnings tied to settings, data for rendering (pure).

Sources (netlink decoded by tcptune.core.inet_diag, /proc text by tcptune.core.procfs; chosen
by tcptune.ops.sockets) hand over counts and groups; setting values and owner maps come in as
plain values.  Nothing here reads the machine or the clock; tcptune.render.states draws it.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tcptune.kernel.states import TcpState, state_from_kernel

# Warn when a count reaches this fraction of the limit that governs it.
NEAR_LIMIT = 0.8
# A listener whose pending requests reach this fraction of its backlog.
BACKLOG_FRACTION = 0.5
MIN_PENDING = 16  # below this many pending requests a full-looking queue is noise
CLOSE_WAIT_PER_PROCESS = 100  # CLOSE_WAIT sockets held by one process worth a warning

NO_OWNER = "(no owner)"  # TIME_WAIT, request socks, orphans: inode 0 (no struct socket left)
UNKNOWN_OWNER = "(owner not visible)"  # inode not found in any readable /proc/*/fd

ORPHAN_STATES = (TcpState.FIN_WAIT1, TcpState.FIN_WAIT2, TcpState.CLOSING, TcpState.LAST_ACK)

SETTING_KEYS = (
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_max_syn_backlog",
    "net.core.somaxconn",
    "net.ipv4.tcp_fin_timeout",
)


@dataclass
class ListenerInfo:
    address: str
    port: int
    accept_queue: int
    backlog: int | None  # sk_max_ack_backlog; None from /proc (not printed there)
    inode: int = 0


@dataclass
class Summary:
    """One sample of the socket table, whatever the source."""

    source: str
    counts: dict = field(default_factory=dict)  # TcpState -> sockets
    groups: Counter = field(default_factory=Counter)  # (TcpState, key) -> sockets
    listeners: list = field(default_factory=list)  # ListenerInfo
    syn_recv_by_port: Counter = field(default_factory=Counter)
    orphans: int | None = None  # sockets the kernel counts against tcp_max_orphans
    group_totals: Counter | None = None  # key -> sockets, when the source counted them (netlink)
    notes: list = field(default_factory=list)  # strings: malformed /proc lines, interrupted dumps
    # (local address, peer address, peer port) -> sockets with a local port in the ephemeral
    # range, when asked for (doctor's port-exhaustion check); LISTEN not counted
    destinations: Counter | None = None
    syn_sent_destinations: Counter | None = None  # with destinations: the SYN_SENT sockets, whatever their port
    close_wait: dict | None = None  # with destinations, from netlink: CLOSE_WAIT socket cookie -> inode
    stalled: list = field(default_factory=list)  # tcptune.core.inet_diag.Stalled, with destinations (netlink)


@dataclass(frozen=True)
class Warning_:
    key: str
    message: str

    def to_json(self) -> dict:
        return {"key": self.key, "message": self.message}


def normalize_counts(raw) -> dict[TcpState, int]:
    """Kernel state numbers (or TcpState) -> all eleven TcpState with zeros filled in."""
    out = {s: 0 for s in TcpState}
    for k, v in dict(raw).items():
        s = state_from_kernel(int(k))
        if s is not None:
            out[s] += int(v)
    return out


def summarize_rows(
    rows: Iterable,
    by: str | None,
    states: set | None = None,
    source: str = "/proc",
    port_range: tuple[int, int] | None = None,
) -> Summary:
    """Aggregate tcptune.core.procfs.TcpRow rows (both files) into a Summary.

    ``states``: a set of TcpState to keep (None = all).  ``by``: None, 'state', 'local-port', 'peer' or 'process'; for
    'process' groups are keyed by inode (the caller maps inodes to owners).  ``port_range``: also count
    Summary.destinations, as the netlink 'dest' view does.
    """
    counts: Counter = Counter()
    groups: Counter = Counter()
    syn_recv: Counter = Counter()
    listeners = []
    orphans = 0
    destinations: Counter | None = None if port_range is None else Counter()
    syn_sent_destinations: Counter | None = None if port_range is None else Counter()
    lo, hi = port_range or (1, 0)
    taken: set[int] = set()  # listeners' ports, never ephemeral (as the netlink 'dest' view)
    if destinations is not None:
        rows = list(rows)
        taken = {r.local_port for r in rows if state_from_kernel(r.state) == TcpState.LISTEN}
    for r in rows:
        s = state_from_kernel(r.state)
        if s is None or (states and s not in states):
            continue
        counts[s] += 1
        if destinations is not None and s != TcpState.LISTEN and lo <= r.local_port <= hi and r.local_port not in taken:
            destinations[(r.local_address, r.remote_address, r.remote_port)] += 1
        if syn_sent_destinations is not None and s == TcpState.SYN_SENT:
            syn_sent_destinations[(r.local_address, r.remote_address, r.remote_port)] += 1
        if s == TcpState.LISTEN:
            listeners.append(ListenerInfo(r.local_address, r.local_port, r.rx_queue, None, r.inode))
        elif s == TcpState.SYN_RECV:
            syn_recv[r.local_port] += 1
        if s in ORPHAN_STATES and r.inode == 0:
            orphans += 1
        if by in (None, "state"):
            continue
        key = {"local-port": r.local_port, "peer": r.remote_address, "process": r.inode}[by]
        groups[(s, key)] += 1
    summary = Summary(source, normalize_counts(counts), groups, listeners, syn_recv, orphans)
    summary.destinations = destinations
    summary.syn_sent_destinations = syn_sent_destinations
    return summary


def _int(value) -> int | None:
    try:
        return int(str(value).split()[0])
    except (TypeError, ValueError, IndexError):
        return None


def owner_label(owner) -> str:
    if owner is None:
        return UNKNOWN_OWNER
    if owner == NO_OWNER:
        return NO_OWNER
    pid, name = owner
    return f"{name}[{pid}]"


def group_by_owner(sock_states: bytes, sock_inodes, index: dict[int, int], owners: list) -> Counter:
    """(TcpState, owner) -> sockets from the per-socket state and inode columns of a dump.

    ``index`` maps inode -> position in ``owners`` ((pid, name)); the join runs in C
    (Counter over zip), one Python step per (state, owner) pair, not per socket.
    Inode 0 (TIME_WAIT, request socks, orphans: no struct socket) is NO_OWNER; an inode
    in no readable /proc/*/fd is None (not visible).
    """
    no_owner = -1
    index[0] = no_owner
    try:
        joined = Counter(zip(sock_states, map(index.get, sock_inodes)))
    finally:
        del index[0]
    out: Counter = Counter()
    for (s, idx), c in joined.items():
        state = state_from_kernel(s)
        if state is not None:
            out[(state, None if idx is None else (NO_OWNER if idx == no_owner else owners[idx]))] += c
    return out


def resolve_process_groups(groups: Counter, owners: dict) -> Counter:
    """(state, inode) groups -> (state, owner) where owner is (pid, name), NO_OWNER or None (not visible)."""
    out: Counter = Counter()
    for (s, ino), c in groups.items():
        out[(s, NO_OWNER if ino == 0 else owners.get(ino))] += c
    return out


def check_warnings(
    summary: Summary, settings: dict, close_wait_threshold: int = CLOSE_WAIT_PER_PROCESS, by: str | None = None
) -> list[Warning_]:
    """Warnings that tie what the table shows to the setting that governs it.

    ``settings`` maps SETTING_KEYS to their values (str or int; None when unknown).
    For by='process', ``summary.groups`` must already be keyed by owner.
    """
    v = {k: _int(settings.get(k)) for k in SETTING_KEYS}
    return (
        _time_wait_warnings(summary, v)
        + _request_queue_warnings(summary, v)
        + _accept_queue_warnings(summary.listeners, v["net.core.somaxconn"])
        + _close_wait_warnings(summary, close_wait_threshold, by)
        + _orphan_warnings(summary, v)
    )


def _time_wait_warnings(summary: Summary, v: dict) -> list[Warning_]:
    tw, tw_max = summary.counts.get(TcpState.TIME_WAIT, 0), v["net.ipv4.tcp_max_tw_buckets"]
    if tw_max is None or not tw or tw < NEAR_LIMIT * tw_max:
        return []
    # net/ipv4/inet_timewait_sock.c inet_twsk_alloc: no TIME_WAIT sock once
    # tw_refcount reaches sysctl_max_tw_buckets; tcp_time_wait() then closes the
    # socket at once ("TCP: time wait bucket table overflow", TCPTimeWaitOverflow).
    return [
        Warning_(
            "net.ipv4.tcp_max_tw_buckets",
            f"{tw} TIME_WAIT sockets are {tw / tw_max:.0%} of net.ipv4.tcp_max_tw_buckets={tw_max}; beyond it the "
            'kernel skips TIME_WAIT ("time wait bucket table overflow"), risking old duplicates on reused 4-tuples',
        )
    ]


def _request_queue_warnings(summary: Summary, v: dict) -> list[Warning_]:
    """Pending requests (SYN_RECV) against the listen backlog and, without syncookies, tcp_max_syn_backlog."""
    syncookies, max_syn = v["net.ipv4.tcp_syncookies"], v["net.ipv4.tcp_max_syn_backlog"]
    somaxconn = v["net.core.somaxconn"]
    out = []
    backlog_of = {}
    for lst in summary.listeners:
        if lst.backlog is not None:
            backlog_of[lst.port] = min(backlog_of.get(lst.port, lst.backlog), lst.backlog)
    for port, pending in sorted(summary.syn_recv_by_port.items()):
        if pending < MIN_PENDING:
            continue
        backlog = backlog_of.get(port)
        if backlog and pending >= BACKLOG_FRACTION * backlog:
            # net/ipv4/tcp_input.c tcp_conn_request: a full request queue
            # (inet_csk_reqsk_queue_is_full: qlen >= sk_max_ack_backlog) means syncookies
            # or, with tcp_syncookies=0, dropped SYNs.  The backlog is listen()'s, capped
            # by net.core.somaxconn.
            capped = somaxconn is not None and backlog >= somaxconn
            out.append(
                Warning_(
                    "net.core.somaxconn",
                    f"port {port}: {pending} pending connections (SYN_RECV) fill {pending / backlog:.0%} of its listen "
                    f"backlog {backlog}"
                    + (
                        f" (capped by net.core.somaxconn={somaxconn})"
                        if capped
                        else " (set by the application's listen(); net.core.somaxconn caps it)"
                    ),
                )
            )
        if syncookies == 0 and max_syn and pending >= BACKLOG_FRACTION * max_syn:
            # tcp_conn_request without syncookies drops SYNs from unproven peers once
            # max_syn_backlog - qlen < max_syn_backlog / 4.
            out.append(
                Warning_(
                    "net.ipv4.tcp_syncookies",
                    f"port {port}: {pending} SYN_RECV with net.ipv4.tcp_syncookies=0; at 3/4 of "
                    f"net.ipv4.tcp_max_syn_backlog={max_syn} the kernel drops new SYNs instead of answering with cookies",
                )
            )
    if syncookies == 0 and not summary.syn_recv_by_port and max_syn:
        total = summary.counts.get(TcpState.SYN_RECV, 0)
        if total >= max(MIN_PENDING, BACKLOG_FRACTION * max_syn):
            out.append(
                Warning_(
                    "net.ipv4.tcp_syncookies",
                    f"{total} SYN_RECV with net.ipv4.tcp_syncookies=0 and net.ipv4.tcp_max_syn_backlog={max_syn}",
                )
            )
    return out


def _close_wait_warnings(summary: Summary, threshold: int, by: str | None) -> list[Warning_]:
    if by != "process":
        cw = summary.counts.get(TcpState.CLOSE_WAIT, 0)
        if cw < threshold:
            return []
        return [
            Warning_(
                "application",
                f"{cw} CLOSE_WAIT sockets: peers closed and the application has not called close(); "
                "`tcptune states --by process --state CLOSE_WAIT` shows which process holds them",
            )
        ]
    per_owner: Counter = Counter()
    for (s, owner), n in summary.groups.items():
        if s == TcpState.CLOSE_WAIT and owner not in (None, NO_OWNER):
            per_owner[owner] += n
    return [
        Warning_(
            "application",
            f"{owner_label(owner)} holds {n} CLOSE_WAIT sockets: the peer closed and this process never called "
            "close(); no sysctl reclaims them, fix or restart the application",
        )
        for owner, n in per_owner.most_common()
        if n >= threshold
    ]


def _orphan_warnings(summary: Summary, v: dict) -> list[Warning_]:
    orphans, max_orphans = summary.orphans, v["net.ipv4.tcp_max_orphans"]
    if orphans is None or not max_orphans or orphans < NEAR_LIMIT * max_orphans:
        return []
    # net/ipv4/tcp.c tcp_check_oom: past tcp_max_orphans orphans are reset
    # ("too many orphaned sockets").
    fin = v["net.ipv4.tcp_fin_timeout"]
    return [
        Warning_(
            "net.ipv4.tcp_max_orphans",
            f"{orphans} orphaned sockets ({summary.counts.get(TcpState.FIN_WAIT2, 0)} in FIN_WAIT2) are "
            f"{orphans / max_orphans:.0%} of net.ipv4.tcp_max_orphans={max_orphans}; beyond it the kernel resets them"
            + (f" (FIN_WAIT2 orphans live net.ipv4.tcp_fin_timeout={fin} s)" if fin is not None else ""),
        )
    ]


def accept_queue_full(queue: int, backlog: int | None) -> bool:
    """include/net/sock.h sk_acceptq_is_full(): more waiting than sk_max_ack_backlog (listen(0)
    holds one).  None: no limit known (/proc/net/tcp does not print it), so no verdict."""
    return backlog is not None and queue > backlog


def _accept_queue_warnings(listeners, somaxconn: int | None) -> list[Warning_]:
    """Listeners whose accept queue (connections the application has not accept()ed) is full.

    For a LISTEN socket inet_diag reports the queue length (idiag_rqueue = sk_ack_backlog)
    and its limit (idiag_wqueue = sk_max_ack_backlog: the listen() backlog capped by
    net.core.somaxconn; net/ipv4/tcp_diag.c tcp_diag_get_info).  The kernel calls it full
    when the length is above the limit (include/net/sock.h sk_acceptq_is_full), and then
    drops new SYNs (tcp_conn_request) and completed handshakes (tcp_v4_syn_recv_sock), the
    ListenOverflows/ListenDrops counters: clients wait in SYN_SENT and retransmit.
    /proc/net/tcp has no limit (backlog None): no verdict from there.
    """
    out = []
    for lst in listeners:
        q, limit = lst.accept_queue, lst.backlog
        if limit is None or not (accept_queue_full(q, limit) or (q >= MIN_PENDING and q >= NEAR_LIMIT * limit)):
            continue
        full = "full" if accept_queue_full(q, limit) else f"{q / limit:.0%} full"
        capped = somaxconn is not None and limit >= somaxconn > 0
        out.append(
            Warning_(
                "net.core.somaxconn" if capped else "application",
                f"port {lst.port} ({lst.address}): accept queue {full}, {q} connections wait for accept() with a "
                f"backlog of {limit}; the kernel drops new connections to it (ListenOverflows)"
                + (
                    f"; the backlog is capped by net.core.somaxconn={somaxconn}"
                    if capped
                    else "; the application accepts too slowly or asked listen() for too small a backlog"
                ),
            )
        )
    return out


def group_label(by: str, key) -> str:
    if by == "process":
        return owner_label(key)
    if by == "state":
        return key.name
    return str(key)


def _rank(group: tuple) -> tuple:
    return group[1], group[2]  # total (descending: it is negated), then label


def build_groups(summary: Summary, by: str, top: int | None) -> tuple[list[dict], dict | None]:
    """Groups sorted by total (desc), each {'key', 'total', 'states'} (+ 'pid', 'name' for process;
    'port' and, for a listening port, 'listeners' for local-port), and what --top left out:
    {'groups': N, 'sockets': M}, or None when every group is shown.

    At a million sockets there can be ~10^5 groups and --top shows 20: the ranking looks
    at (total, label) per group and only the groups shown get their per-state dict.
    """
    if by == "state":
        totals = {s: n for s, n in summary.counts.items() if n}
    elif summary.group_totals is not None:
        totals = summary.group_totals
    else:
        totals = Counter()
        for (_s, key), n in summary.groups.items():
            totals[key] += n
    ranked = [(key, -n, group_label(by, key)) for key, n in totals.items()]
    chosen = heapq.nsmallest(top, ranked, key=_rank) if top else sorted(ranked, key=_rank)
    if by == "state":
        states_of = {s: {s: totals[s]} for s, _, _ in chosen}
    elif top:  # a few groups: look their states up
        get = summary.groups.get
        states_of = {key: {s: n for s in TcpState if (n := get((s, key)))} for key, _, _ in chosen}
    else:
        states_of = {key: Counter() for key, _, _ in chosen}
        for (s, key), n in summary.groups.items():
            if (c := states_of.get(key)) is not None:
                c[s] += n
    listening: dict = {}
    if by == "local-port":
        for lst in summary.listeners:
            listening.setdefault(lst.port, []).append(
                {"address": lst.address, "accept_queue": lst.accept_queue, "backlog": lst.backlog}
            )
    rows = []
    for key, neg_total, label in chosen:
        states = states_of[key]
        g = {"key": label, "total": -neg_total, "states": {s.name: states[s] for s in TcpState if states.get(s)}}
        if by == "process":
            g["pid"] = key[0] if isinstance(key, tuple) else None
            g["name"] = key[1] if isinstance(key, tuple) else None
        if by == "local-port":
            g["port"] = key
            if key in listening:
                g["listeners"] = listening[key]
        rows.append(g)
    more = None
    if len(chosen) < len(totals):
        shown = -sum(neg for _, neg, _ in chosen)
        more = {"groups": len(totals) - len(chosen), "sockets": sum(totals.values()) - shown}
    return rows, more


def build_report(
    summary: Summary,
    warnings: list,
    by: str | None = None,
    top: int | None = None,
    previous: dict | None = None,
    only: set | None = None,
) -> dict:
    """The JSON-ready report (shape documented in tcptune(8)).

    ``only``: the states --state asked for; the others were not counted, so they are left
    out rather than shown as zeros.
    """
    names = [s.name for s in TcpState if not only or s in only]
    states = {name: summary.counts.get(TcpState[name], 0) for name in names}
    report = {"source": summary.source, "states": states, "total": sum(states.values())}
    if by:
        report["by"] = by
        report["groups"], more = build_groups(summary, by, top)
        if more:
            report["more"] = more
    if previous is not None:
        report["changes"] = {k: states[k] - previous.get(k, 0) for k in names}
    report["warnings"] = [w.to_json() for w in warnings]
    if summary.notes:
        report["notes"] = list(summary.notes)
    return report
