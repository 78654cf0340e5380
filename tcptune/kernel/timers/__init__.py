"""Pure models of the kernel's TCP timers: what a probe should see.

This package holds what every model shares (events, predictions, jiffies, timer-wheel
slack, the timewait table's limit); each probe's model is one module in it (syn,
synack, fin_timeout, keepalive, tw_reuse), named like the probe in tcptune/probe/.

The comparison of a prediction with what was observed is tcptune.core.verdict.

Each ``predict_*`` takes setting values (never a path, a socket or the clock) and
returns a :class:`Prediction`: the events a probe should observe, each with its
time ``t`` in seconds from the probe's first packet, and when the kernel gives up.

The rules are those of Linux 6.x (net/ipv4/tcp_timer.c, inet_connection_sock.c,
tcp.c, tcp_input.c, tcp_minisocks.c, tcp_ipv4.c); where a rule changed across
versions the caller passes the value that the running kernel has (a sysctl that is
absent is passed as None).  The probes in tcptune.probe check these models against
the running kernel; on this machine's 6.18 they agree.

The timewait table's limit is net/ipv4/inet_timewait_sock.c's.

Where the release that changed a rule could not be verified, the caller passes the
kernel version (a tuple) and the model says the rule is unverified past
``VERIFIED_UP_TO``.

Timer slack: TCP's timers are ordinary timer-wheel timers (kernel/time/timer.c),
which never fire early but are rounded *up* to the granularity of the wheel level
the delay falls in: 1 jiffy for delays under 63 jiffies, then 8x coarser per level
(at HZ=250 a 1 s timer may fire up to 32 ms late, a 4 s one up to 256 ms late,
a 32 s one up to 2 s late).  :func:`timer_slack` computes that bound, and
tcptune.core.verdict allows it on the late side of each timer-driven event, on top of
the stated tolerance max(30 ms, 3 %).

Where the kernel compares *real* elapsed time with a limit (the SYN time cap in
retransmits_timed_out()), that lateness decides the outcome: each timer is re-armed
from the moment the previous one actually fired, so lateness adds up.  When the
limit falls inside the accumulated bound the model does not guess: the prediction
carries every outcome the rules allow (:attr:`Prediction.alternatives`) and
the verdict (tcptune.core.verdict.compare_prediction) accepts any of them.

Times are computed in jiffies as the kernel does (``hz``: CONFIG_HZ; None when it is
unknown, then 1 ms jiffies and the worst timer slack of the common HZ values).
"""

from __future__ import annotations

from dataclasses import dataclass

# include/net/tcp.h
TCP_TIMEOUT_INIT = 1.0  # initial RTO of a SYN / SYN-ACK (tcp_timeout_init() without BPF)
TCP_RTO_MAX = 120.0  # default cap; tcp_rto_max_ms (6.15+) makes it per-netns
TCP_TIMEWAIT_LEN = 60.0  # TIME_WAIT length; not a sysctl (tcp_fin_timeout is NOT it)

DEFAULT_ABS_TOL = 0.030
DEFAULT_REL_TOL = 0.03
# The HZ values kernels are built with; when the running kernel's HZ is unknown the
# slack allowed is the worst of these.
COMMON_HZ = (100, 250, 300, 1000)

# The newest kernel whose rules these models were checked against, by source and by
# probing (this machine).  Past it, rules that a later patch is known to change are
# reported as unverified (see predict_synack).
VERIFIED_UP_TO = (6, 18)

U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Event:
    """One thing a probe sees: a packet or a socket-level outcome."""

    t: float  # seconds from the probe's first packet
    what: str  # e.g. "syn", "syn_retransmit", "connect_timeout"
    n: int = 0  # ordinal among events of the same kind (retransmission 1, 2, ...)
    timer: float = 0.0  # length of the kernel timer whose expiry causes it (0: not timer driven)
    detail: str = ""
    chained: tuple[float, ...] = ()  # earlier timers in a chain since the previous event (their slack adds up)
    uncertainty: float = 0.0  # observed by polling: it happened at most this long before t
    window: float = 0.0  # the rule only places it somewhere in (t - window, t]
    optional: bool = False  # may not happen, or not be visible to every source: checked only when observed

    def as_dict(self) -> dict:
        d = {"t": round(self.t, 6), "what": self.what, "n": self.n}
        if self.uncertainty:
            d["uncertainty_s"] = round(self.uncertainty, 6)
        if self.window:
            d["window_s"] = round(self.window, 6)
        if self.optional:
            d["optional"] = True
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(frozen=True)
class Prediction:
    probe: str
    settings: dict
    events: tuple[Event, ...]
    give_up: float | None  # when the kernel gives up (None: never, within the model)
    give_up_what: str = ""
    notes: tuple[str, ...] = ()
    # Other timelines the kernel's rules allow when they do not decide (e.g. a time cap
    # inside the timers' accumulated slack).  core.verdict.compare_prediction() accepts any of them.
    alternatives: tuple[Prediction, ...] = ()
    why: str = ""  # for an alternative: when the kernel takes it
    watch_s: float | None = None  # how long a probe must watch when nothing ends the timeline
    absence_is_evidence: bool = False  # seeing nothing in the window is itself the check

    def timelines(self) -> tuple[Prediction, ...]:
        return (self, *self.alternatives)

    def horizon(self) -> float | None:
        """How long the probe must watch to see every timeline end (None: unbounded)."""
        ends = []
        for p in self.timelines():
            end = p.give_up if p.give_up is not None else p.watch_s
            if end is None:
                return None
            ends.append(max(end, p.watch_s or 0.0))
        return max(ends)


# --------------------------------------------------------------------------- jiffies
def msecs_to_jiffies(ms: int, hz: int) -> int:
    """include/linux/jiffies.h msecs_to_jiffies(): rounds up to whole jiffies."""
    return -(-int(ms) * hz // 1000)


def jiffies_to_msecs(j: int, hz: int) -> int:
    """include/linux/jiffies.h jiffies_to_msecs(): exact when HZ divides 1000, else rounded up."""
    return -(-int(j) * 1000 // hz)


def _hz(hz: int | None) -> int:
    # HZ unknown: compute in 1 ms jiffies (the sysctls are in ms, so nothing is rounded)
    return hz or 1000


# --------------------------------------------------------------------------- timer slack
def timer_slack(delay: float, hz: int | None) -> float:
    """Worst-case lateness (s) of a timer-wheel timer armed ``delay`` seconds ahead.

    kernel/time/timer.c: LVL_CLK_SHIFT=3, LVL_BITS=6; level n starts at
    LVL_START(n) = 63 << 3(n-1) jiffies and has granularity 8^n jiffies; the expiry
    is rounded up to the next slot of its level (calc_index()), so a timer fires
    between 0 and one granularity late.  ``hz`` None: the worst over COMMON_HZ.
    """
    if delay <= 0:
        return 0.0
    if hz is None:
        return max(timer_slack(delay, h) for h in COMMON_HZ)
    jiffies = delay * hz
    level = 0
    while level < 8 and jiffies >= (63 << (3 * level)):
        level += 1
    gran = 1 << (3 * level)
    return gran / hz


# --------------------------------------------------------------------------- the timewait table
def tw_table_full(tw_count: int | None, max_tw_buckets: int | None) -> bool:
    """inet_twsk_alloc() in net/ipv4/inet_timewait_sock.c returns NULL when
    ``refcount_read(&dr->tw_refcount) - 1 >= READ_ONCE(dr->sysctl_max_tw_buckets)``:
    the count of timewait sockets (TIME_WAIT and orphaned FIN_WAIT2, /proc/net/sockstat
    "tw") has reached tcp_max_tw_buckets.  refcount_read() is unsigned, so a negative
    limit means no limit (measured on 6.18: -1 still creates TIME_WAIT sockets).
    Unknown count or limit: assume not full."""
    if tw_count is None or max_tw_buckets is None or max_tw_buckets < 0:
        return False
    return tw_count >= max_tw_buckets
