"""Pure models of the kernel's TCP timers: what a probe should see.

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

import math
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


# --------------------------------------------------------------------------- SYN
def _model_timeout_j(boundary: int, rto_base_j: int, rto_max_j: int) -> int:
    """tcp_model_timeout() in net/ipv4/tcp_timer.c, in jiffies (6.15+: tcp_rto_max(sk)
    instead of TCP_RTO_MAX)."""
    ratio = rto_max_j // rto_base_j
    thresh = ratio.bit_length() - 1 if ratio > 0 else 0  # ilog2()
    if boundary <= thresh:
        return ((2 << boundary) - 1) * rto_base_j
    return ((2 << thresh) - 1) * rto_base_j + (boundary - thresh) * rto_max_j


def model_timeout(boundary: int, rto_base: float, rto_max: float, hz: int | None = None) -> float:
    """tcp_model_timeout() in net/ipv4/tcp_timer.c: the time (s) a doubling schedule
    starting at ``rto_base`` and capped at ``rto_max`` takes for ``boundary``
    retransmissions.  It ignores tcp_syn_linear_timeouts, which is why a SYN with
    linear timeouts can hit this time cap before its retry count."""
    h = _hz(hz)
    base_j = max(1, int(round(rto_base * h)))
    max_j = msecs_to_jiffies(int(round(rto_max * 1000)), h)
    return jiffies_to_msecs(_model_timeout_j(boundary, base_j, max_j), h) / 1000.0


def predict_syn(
    syn_retries: int,
    linear_timeouts: int | None = None,
    rto_max: float | None = None,
    *,
    rto_init: float = TCP_TIMEOUT_INIT,
    hz: int | None = None,
) -> Prediction:
    """An unanswered connect(): the client's SYN retransmissions and ETIMEDOUT.

    net/ipv4/tcp_timer.c (6.5+):
    - tcp_retransmit_timer(): after each retransmission the RTO stays at its initial
      1 s while ``total_rto <= tcp_syn_linear_timeouts`` in SYN_SENT, then doubles
      (``min(rto << 1, tcp_rto_max(sk))``); the timer is re-armed from the moment
      this expiry ran, so each timer's lateness carries into every later time.
    - tcp_write_timeout(), run when the timer fires, before retransmitting: give up
      when ``retransmits >= tcp_syn_retries + tcp_syn_linear_timeouts`` or when
      retransmits_timed_out(): the REAL time since the first SYN (retrans_stamp, ms)
      >= tcp_model_timeout(tcp_syn_retries, 1 s), the doubling schedule's length,
      linear or not.  Checked only once something was retransmitted.
    - net/ipv4/tcp.c tcp_init_sock() (6.15+): the cap is
      msecs_to_jiffies(tcp_rto_max_ms), i.e. rounded up to whole jiffies.

    When the time cap falls between an expiry's ideal time and that time plus the
    timers' accumulated slack, the kernel may give up there or retransmit once more:
    the primary timeline is the punctual one and each earlier give-up is an
    alternative.  ``linear_timeouts`` None: a kernel before 6.5 (no such sysctl,
    pure doubling).  ``rto_max`` None: 120 s (TCP_RTO_MAX; tcp_rto_max_ms appeared
    in 6.15).  Per-socket TCP_SYNCNT and TCP_USER_TIMEOUT override these rules and
    are not modelled (the probe sets neither).
    """
    if syn_retries < 1 or syn_retries > 127:
        raise ValueError(f"tcp_syn_retries={syn_retries} is outside 1..127")
    h = _hz(hz)
    lin = linear_timeouts or 0
    cap_ms = int(round((TCP_RTO_MAX if rto_max is None else rto_max) * 1000))
    rto_max_j = msecs_to_jiffies(cap_ms, h)
    init_j = min(max(1, int(round(rto_init * h))), rto_max_j)
    max_retx = syn_retries + lin  # linear timeouts add to the count in SYN_SENT only
    time_cap = model_timeout(syn_retries, rto_init, cap_ms / 1000.0, hz)
    time_cap_ms = int(round(time_cap * 1000))  # whole ms, as jiffies_to_msecs() gives it
    events = [Event(0.0, "syn")]
    forks: list[Prediction] = []
    t_j, rto_j, retx, late = 0, init_j, 0, 0.0
    settings = {
        "tcp_syn_retries": syn_retries,
        "tcp_syn_linear_timeouts": linear_timeouts,
        "rto_max_s": rto_max_j / h,
        "initial_rto_s": init_j / h,
        "time_cap_s": time_cap,
        "hz": hz,
    }
    while True:
        t_j += rto_j  # the timer fires
        delay = rto_j / h
        late += timer_slack(delay, hz)
        t = t_j / h
        if retx >= max_retx:
            events.append(
                Event(t, "connect_timeout", 0, delay, f"ETIMEDOUT after {retx} retransmissions (retry count)")
            )
            break
        if retx > 0:
            t_ms = t_j * 1000 / h
            # elapsed is compared in whole ms: at least floor(t_ms) (timers are never
            # early), less than t_ms + the accumulated slack + 1 ms
            if math.floor(t_ms + 1e-9) >= time_cap_ms:
                events.append(
                    Event(
                        t,
                        "connect_timeout",
                        0,
                        delay,
                        f"ETIMEDOUT after {retx} retransmissions (time cap {time_cap:g} s, tcp_model_timeout)",
                    )
                )
                break
            if t_ms + late * 1000 + 1 > time_cap_ms:
                need = time_cap_ms - t_ms
                why = (
                    f"expiry #{retx + 1} is due at {t:g} s; if the timers so far ran {need:.0f} ms late or more "
                    f"in all (timer-wheel slack allows up to {late * 1000:.0f} ms) the time cap {time_cap:g} s is "
                    f"reached there: ETIMEDOUT after {retx} retransmissions"
                )
                alt = events + [
                    Event(
                        t,
                        "connect_timeout",
                        0,
                        delay,
                        f"ETIMEDOUT after {retx} retransmissions (time cap {time_cap:g} s reached late)",
                    )
                ]
                forks.append(Prediction("syn", settings, tuple(alt), t, "connect_timeout", (why,), why=why))
        retx += 1
        events.append(Event(t, "syn_retransmit", retx, delay))
        if retx > lin:  # total_rto > tcp_syn_linear_timeouts: exponential from here
            rto_j = min(rto_j * 2, rto_max_j)
    notes = [
        f"gives up at the first timer expiry with >= {max_retx} retransmissions or >= {time_cap:g} s since the "
        "first SYN (real time, so the timers' lateness counts)"
    ]
    if rto_max is not None and rto_max_j * 1000 / h != cap_ms:
        notes.append(f"tcp_rto_max_ms={cap_ms} is rounded up to whole jiffies at HZ={h}: {rto_max_j * 1000 / h:g} ms")
    for f in forks:
        notes.append(f"ambiguous: {f.why}; either outcome is accepted")
    return Prediction("syn", settings, tuple(events), t, "connect_timeout", tuple(notes), tuple(forks))


def predict_syn_textbook(syn_retries: int) -> Prediction:
    """The schedule the old tutorials print (1, 2, 4, ... s, give up after the last
    doubling): a deliberately naive model, used to show that a probe says 'differs'."""
    events = [Event(0.0, "syn")]
    t, rto = 0.0, 1.0
    for k in range(1, syn_retries + 1):
        t += rto
        events.append(Event(t, "syn_retransmit", k, rto))
        rto *= 2
    t += rto
    events.append(Event(t, "connect_timeout", 0, rto, "textbook"))
    return Prediction("syn", {"tcp_syn_retries": syn_retries, "model": "textbook"}, tuple(events), t, "connect_timeout")


# --------------------------------------------------------------------------- SYN-ACK
SYNACK_RETRIES_HONOURED = 63  # req->num_timeout shifts a u64 (tcp_reqsk_timeout()); 64+ is undefined
_SAFE_SHIFT_ANY_HZ = 54  # HZ << 54 fits in a u64 for every HZ up to 1023 (1000 << 54 < 2**64)


def _synack_timeline(retries: int, base_j: int, cap_j: int, h: int, cap_label: str) -> tuple[list[Event], float, int]:
    """reqsk_timer_handler(): expire at the expiry where num_timeout >= retries, else
    resend and re-arm for tcp_reqsk_timeout() = min((u64)timeout << num_timeout, cap).
    Returns the events, the drop time and how many timers the u64 shift wrapped."""
    events = [Event(0.0, "synack")]
    t_j, num_timeout, wrapped = 0, 0, 0
    delay_j = min(base_j, cap_j)
    while True:
        t_j += delay_j
        t = t_j / h
        timer = max(delay_j, 1) / h  # a 0-jiffy timer still waits for the next tick
        if num_timeout >= retries:
            events.append(
                Event(t, "request_dropped", 0, timer, f"after {num_timeout} SYN-ACK retransmissions ({cap_label})")
            )
            return events, t, wrapped
        events.append(Event(t, "synack_retransmit", num_timeout + 1, timer))
        num_timeout += 1
        shifted = (base_j << num_timeout) & U64  # unsigned overflow wraps (defined for num_timeout < 64)
        if shifted < min(base_j << num_timeout, cap_j):
            wrapped += 1
        delay_j = min(shifted, cap_j)


def predict_synack(
    synack_retries: int,
    rto_max: float | None = None,
    *,
    rto_init: float = TCP_TIMEOUT_INIT,
    hz: int | None = None,
    syncookies: int | None = None,
    kernel: tuple[int, ...] | None = None,
) -> Prediction:
    """A request sitting in SYN_RECV whose final ACK never arrives.

    net/ipv4/inet_connection_sock.c reqsk_timer_handler(): at each expiry,
    syn_ack_recalc() expires the request when ``num_timeout >= tcp_synack_retries``
    (no TCP_DEFER_ACCEPT; one request, so the queue-pressure pruning is not
    involved); otherwise the SYN-ACK is resent and the timer re-armed for
    min(1 s << num_timeout, 120 s).  No linear phase.

    ``rto_max`` is the listener's tcp_rto_max_ms (s).  Through 6.18 the request
    timer ignores it (reqsk_timeout(req, TCP_RTO_MAX); measured on 6.18: with
    tcp_rto_max_ms=2000 the SYN-ACKs still went out at 1, 3, 7 s).  A net-next patch
    of Nov 2025, "tcp: Apply max RTO to non-TFO SYN+ACK", makes tcp_reqsk_timeout()
    use min(timeout, tcp_rto_max(listener)); which release carries it was not
    verified, so on a kernel newer than ``VERIFIED_UP_TO`` both are alternatives.

    tcp_syncookies=2 (net/ipv4/tcp_input.c tcp_conn_request(): ``syncookies == 2``
    always wants a cookie): no request socket is kept, so there is nothing to
    retransmit or drop.

    Limits: request_sock.num_timeout is a 7-bit field and tcp_reqsk_timeout() computes
    ``(u64)req->timeout << req->num_timeout``: a shift of 64 or more is undefined, so
    tcp_synack_retries > 63 cannot be honoured (refused); below that a shift that
    overflows wraps and the min() with the cap then yields a short timer (modelled).
    """
    if synack_retries < 0 or synack_retries > 255:
        raise ValueError(f"tcp_synack_retries={synack_retries} is outside 0..255")
    h = _hz(hz)
    base_j = max(1, int(round(rto_init * h)))
    if syncookies == 2:
        watch = rto_init + timer_slack(rto_init, hz) + 1.0
        note = (
            "tcp_syncookies=2: every SYN is answered with a cookie SYN-ACK and no request socket is kept "
            "(tcp_conn_request()), so nothing sits in SYN_RECV: no SYN-ACK retransmission and no drop, whatever "
            f"tcp_synack_retries says; checked by watching {watch:g} s for a retransmission"
        )
        return Prediction(
            "synack",
            {"tcp_synack_retries": synack_retries, "tcp_syncookies": 2},
            (Event(0.0, "synack"),),
            None,
            "",
            (note,),
            watch_s=watch,
            absence_is_evidence=True,
        )
    if synack_retries > SYNACK_RETRIES_HONOURED:
        raise ValueError(
            f"tcp_synack_retries={synack_retries} cannot be honoured by the kernel: tcp_reqsk_timeout() shifts a u64 by "
            "req->num_timeout (undefined from 64) and num_timeout is a 7-bit field (wraps at 128); use 0..63"
        )
    if hz is None and synack_retries > _SAFE_SHIFT_ANY_HZ:
        raise ValueError(
            f"tcp_synack_retries={synack_retries}: whether 1 s << num_timeout overflows depends on HZ, "
            "which is unknown here"
        )
    cap_j = int(TCP_RTO_MAX * h)
    events, drop, wrapped = _synack_timeline(synack_retries, base_j, cap_j, h, "120 s cap")
    notes = []
    if wrapped:
        notes.append(
            f"tcp_reqsk_timeout(): (u64)timeout << num_timeout overflows for the last {wrapped} timer(s) at "
            f"HZ={h}; min() with the cap then gives a short timer, so those SYN-ACKs go out back to back "
            "(read from the source, not measured: observing it takes hours)"
        )
    alternatives: tuple[Prediction, ...] = ()
    settings = {
        "tcp_synack_retries": synack_retries,
        "rto_max_s": TCP_RTO_MAX,
        "initial_rto_s": base_j / h,
        "tcp_syncookies": syncookies,
        "hz": hz,
    }
    newer = kernel is not None and tuple(kernel[:2]) > VERIFIED_UP_TO
    if rto_max is not None and newer:
        lcap_j = msecs_to_jiffies(int(round(rto_max * 1000)), h)
        why = (
            f"kernel {'.'.join(map(str, kernel[:2]))} is newer than {VERIFIED_UP_TO[0]}.{VERIFIED_UP_TO[1]}: whether the "
            "request timer applies tcp_rto_max_ms (net-next patch 'tcp: Apply max RTO to non-TFO SYN+ACK', "
            "Nov 2025) is unverified here"
        )
        alt_events, alt_drop, _ = _synack_timeline(
            synack_retries, base_j, min(lcap_j, cap_j), h, f"tcp_rto_max_ms cap {lcap_j / h:g} s"
        )
        if [e.t for e in alt_events] != [e.t for e in events]:
            alternatives = (
                Prediction(
                    "synack",
                    settings,
                    tuple(alt_events),
                    alt_drop,
                    "request_dropped",
                    (why + f"; if it does: SYN-ACKs capped at {lcap_j / h:g} s",),
                    why=why,
                ),
            )
            notes.append(why + f"; both the 120 s cap and the {lcap_j / h:g} s cap are accepted")
        else:
            notes.append(why + " (no difference for these settings)")
    elif rto_max is not None:
        notes.append(
            "tcp_rto_max_ms does not cap the SYN-ACK timer on this kernel (reqsk_timeout(req, TCP_RTO_MAX); "
            "measured on 6.18)"
        )
    return Prediction("synack", settings, tuple(events), drop, "request_dropped", tuple(notes), alternatives)


# --------------------------------------------------------------------------- FIN_WAIT2
def fin_time(fin_timeout: float, rto: float) -> float:
    """tcp_fin_time() in include/net/tcp.h: max(tcp_fin_timeout, 3.5 * RTO)
    (``(rto << 2) - (rto >> 1)``), linger2 unset."""
    return max(float(fin_timeout), 3.5 * rto)


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


def predict_fin_timeout(
    fin_timeout: float,
    rto: float = 0.2,
    *,
    tw_count: int | None = None,
    max_tw_buckets: int | None = None,
) -> Prediction:
    """An orphaned socket (closed by its owner) whose peer ACKs the FIN but never
    sends its own: how long it stays in FIN_WAIT2.

    net/ipv4/tcp_input.c tcp_rcv_state_process() case TCP_FIN_WAIT1 (and
    net/ipv4/tcp.c __tcp_close() when the ACK was already processed), on an orphan:
    tmo = tcp_fin_time(); if tmo <= TCP_TIMEWAIT_LEN the socket becomes a timewait
    socket in substate FIN_WAIT2 living tmo (tcp_time_wait(), which also floors the
    time at 3.5 * RTO); otherwise the full socket keeps a keepalive timer of tmo -
    60 s and tcp_keepalive_timer() then calls tcp_time_wait(sk, TCP_FIN_WAIT2,
    tcp_fin_time() - 60 s), so the total is (tmo - 60) + max(tmo - 60, 3.5 * RTO).

    tcp_max_tw_buckets (per netns): when the timewait table is full
    (:func:`tw_table_full`) tcp_time_wait() (net/ipv4/tcp_minisocks.c) gets no
    timewait socket and just calls tcp_done(): the orphan vanishes at once (<= 60 s
    case) or at tmo - 60 s (> 60 s case), silently.  ``tw_count`` is the count just
    before the probe.
    Events: "fin" (t=0), "fin_acked" (FIN_WAIT2 begins, ~0 on loopback),
    "fin_wait2_expired" (the socket is gone; no packet is sent).
    """
    tmo = fin_time(fin_timeout, rto)
    full = tw_table_full(tw_count, max_tw_buckets)
    settings = {
        "tcp_fin_timeout": fin_timeout,
        "rto_s": rto,
        "tcp_max_tw_buckets": max_tw_buckets,
        "timewait_sockets": tw_count,
    }
    if full:
        table = (
            f"the timewait table is full ({tw_count} timewait sockets, tcp_max_tw_buckets={max_tw_buckets}): "
            "tcp_time_wait() gets no timewait socket and closes the orphan (tcp_done(), TCPTimeWaitOverflow)"
        )
        if tmo <= TCP_TIMEWAIT_LEN:
            life, timer, detail = 0.0, 0.0, "closed at once: no timewait socket (tcp_max_tw_buckets reached)"
            note = table + " as soon as its FIN is ACKed"
        else:
            life = timer = tmo - TCP_TIMEWAIT_LEN
            detail = f"keepalive timer {life:g} s, then no timewait socket (tcp_max_tw_buckets reached)"
            note = table + f" when its {life:g} s keepalive timer (tcp_fin_time() - 60 s) fires"
        # the ACK of the FIN is a packet a capture sees; with no FIN_WAIT2 phase to poll, a socket-table source cannot
        events = (
            Event(0.0, "fin"),
            Event(0.0, "fin_acked", optional=True),
            Event(life, "fin_wait2_expired", 0, timer, detail),
        )
        return Prediction("fin-timeout", settings, events, life, "fin_wait2_expired", (note,))
    events = [Event(0.0, "fin"), Event(0.0, "fin_acked")]
    if tmo <= TCP_TIMEWAIT_LEN:
        life = tmo
        events.append(Event(life, "fin_wait2_expired", 0, life, f"timewait socket in FIN_WAIT2 for {tmo:g} s"))
        note = f"lifetime = max(tcp_fin_timeout, 3.5 x RTO) = max({fin_timeout:g}, {3.5 * rto:.3f}) = {tmo:g} s"
    else:
        first = tmo - TCP_TIMEWAIT_LEN
        second = max(first, 3.5 * rto)
        life = first + second
        events.append(
            Event(
                life,
                "fin_wait2_expired",
                0,
                second,
                f"keepalive timer {first:g} s, then timewait FIN_WAIT2 {second:g} s",
                (first,),
            )
        )
        note = (
            f"tcp_fin_time() = {tmo:g} s > 60 s: the kernel waits {first:g} s as a full socket and "
            f"then {second:g} s as a timewait socket, {life:g} s in all"
        )
    notes = [note]
    if max_tw_buckets is not None and tw_count is not None and 0 <= max_tw_buckets - tw_count <= 1:
        notes.append(
            f"the timewait table is nearly full ({tw_count} of {max_tw_buckets}): another connection closing "
            "first would make the kernel close this orphan at once instead"
        )
    return Prediction("fin-timeout", settings, tuple(events), life, "fin_wait2_expired", tuple(notes))


# --------------------------------------------------------------------------- keepalive
def predict_keepalive(keepalive_time: float, keepalive_intvl: float, keepalive_probes: int) -> Prediction:
    """An idle ESTABLISHED socket with SO_KEEPALIVE (no TCP_KEEP* overrides, no
    TCP_USER_TIMEOUT: neither is modelled) whose peer stops answering.

    t=0 is the client's SYN (the probe's first packet).  SO_KEEPALIVE set before
    connect() only flags the socket (tcp_set_keepalive() ignores a CLOSE socket);
    net/ipv4/tcp_input.c tcp_finish_connect() arms the keepalive timer when the
    SYN-ACK arrives, and net/ipv4/tcp_timer.c tcp_keepalive_timer() measures idle
    time from the last segment received (keepalive_time_elapsed()), i.e. that
    SYN-ACK: the first probe goes out keepalive_time after "established" (the
    handshake's last ACK, ~0 on loopback), then one every keepalive_intvl; when a
    timer fires with ``probes_out >= keepalive_probes`` the kernel sends a RST and
    the socket fails with ETIMEDOUT.
    Events: "syn" (t=0), "established", "keepalive_probe" 1..N, "reset_timeout".
    """
    events = [Event(0.0, "syn"), Event(0.0, "established")]
    t = float(keepalive_time)
    delay = float(keepalive_time)
    for k in range(1, keepalive_probes + 1):
        events.append(Event(t, "keepalive_probe", k, delay))
        delay = float(keepalive_intvl)
        t += delay
    events.append(Event(t, "reset_timeout", 0, delay, f"RST and ETIMEDOUT after {keepalive_probes} unanswered probes"))
    settings = {
        "tcp_keepalive_time": keepalive_time,
        "tcp_keepalive_intvl": keepalive_intvl,
        "tcp_keepalive_probes": keepalive_probes,
    }
    note = (
        "first probe keepalive_time after the handshake completes (idle time counts from the last segment "
        "received); per-socket TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT and TCP_USER_TIMEOUT would override this "
        "and are not modelled"
    )
    return Prediction("keepalive", settings, tuple(events), t, "reset_timeout", (note,))


# --------------------------------------------------------------------------- TIME_WAIT reuse
def predict_tw_reuse(
    tw_reuse: int,
    timestamps: int,
    reuse_delay_ms: int | None,
    *,
    loopback: bool = True,
    tw_count: int | None = None,
    max_tw_buckets: int | None = None,
) -> Prediction:
    """Can connect() pick a local port whose 4-tuple sits in TIME_WAIT, and when?

    net/ipv4/tcp_ipv4.c tcp_twsk_unique(), reached from __inet_hash_connect() with
    ``twp`` set (an autobound connect(), as the probe's): reuse needs the TIME_WAIT
    socket to hold a peer timestamp (tcp_timestamps on for the old connection) and
    tcp_tw_reuse 1, or 2 with a loopback address.  With tcp_tw_reuse_delay (merged
    after 6.13; the caller passes None when the sysctl is absent) the test is
    time_after32(tcp_clock_ms(), tw_entry_stamp + delay): after (delay, delay+1] ms.
    Before it the test was time_after32(ktime_get_seconds(), tw_ts_recent_stamp):
    reuse once the seconds counter next ticks, anywhere in (0, 1] s after the last
    timestamped segment (the peer's FIN), not exactly 1 s.  Otherwise the 4-tuple
    frees when the TIME_WAIT socket dies, TCP_TIMEWAIT_LEN = 60 s after it was created.

    With the timewait table full (:func:`tw_table_full`) tcp_time_wait() creates no
    TIME_WAIT socket at all: the 4-tuple is free at once.
    Not what the probe does: connect() after an explicit bind() to the port reaches
    tcp_twsk_unique() with ``twp == NULL`` and reuses whenever the old connection had
    timestamps, whatever tcp_tw_reuse and tcp_tw_reuse_delay say.
    Events: "fin" (t=0), "time_wait" (~0), "reuse_ok".
    """
    settings = {
        "tcp_tw_reuse": tw_reuse,
        "tcp_timestamps": timestamps,
        "tcp_tw_reuse_delay": reuse_delay_ms,
        "loopback": loopback,
        "tcp_max_tw_buckets": max_tw_buckets,
        "timewait_sockets": tw_count,
    }
    bind_note = (
        "not modelled here: connect() after an explicit bind() to the port (SO_REUSEADDR) reuses a TIME_WAIT "
        "4-tuple at once whenever the old connection had timestamps, whatever tcp_tw_reuse says "
        "(tcp_twsk_unique() with twp == NULL; measured on 6.18 with tcp_tw_reuse=0)"
    )
    if tw_table_full(tw_count, max_tw_buckets):
        note = (
            f"the timewait table is full ({tw_count} timewait sockets, tcp_max_tw_buckets={max_tw_buckets}): the "
            "closing client gets no TIME_WAIT socket (tcp_time_wait() -> tcp_done()), so the 4-tuple is free at once"
        )
        events = (
            Event(0.0, "fin"),
            Event(
                0.0,
                "time_wait",
                optional=True,
                detail="the client may still ACK the peer's FIN, but holds no TIME_WAIT",
            ),
            Event(0.0, "reuse_ok", 0, 0.0, "no TIME_WAIT socket (tcp_max_tw_buckets reached)"),
        )
        return Prediction("tw-reuse", settings, events, 0.0, "reuse_ok", (note, bind_note), absence_is_evidence=True)
    enabled = tw_reuse == 1 or (tw_reuse == 2 and loopback)
    can = enabled and timestamps != 0
    events = [Event(0.0, "fin"), Event(0.0, "time_wait")]
    notes = []
    if can:
        if reuse_delay_ms is None:
            t, window, detail = 1.0, 1.0, "when the seconds clock next ticks, (0, 1] s (no tcp_tw_reuse_delay)"
        else:
            t, window, detail = reuse_delay_ms / 1000.0, 0.0, f"tcp_tw_reuse_delay {reuse_delay_ms} ms"
        events.append(Event(t, "reuse_ok", 0, 0.0, detail, window=window))
        notes.append(f"reuse allowed {detail}")
        if tw_reuse == 2:
            notes.append(
                "tcp_tw_reuse=2 allows this on loopback only: connections to other addresses get no early "
                "reuse and wait for TIME_WAIT to end (60 s)"
            )
    else:
        why = []
        if not enabled:
            why.append(f"tcp_tw_reuse={tw_reuse}" + (" (loopback only, this is not loopback)" if tw_reuse == 2 else ""))
        if timestamps == 0:
            why.append("tcp_timestamps=0 (no peer timestamp in the TIME_WAIT socket)")
        t = TCP_TIMEWAIT_LEN
        events.append(Event(t, "reuse_ok", 0, TCP_TIMEWAIT_LEN, "only when TIME_WAIT ends (60 s)"))
        notes.append("no reuse: " + ", ".join(why) + "; the 4-tuple is free when TIME_WAIT ends after 60 s")
    if max_tw_buckets is not None and tw_count is not None and 0 <= max_tw_buckets - tw_count <= 1:
        notes.append(
            f"the timewait table is nearly full ({tw_count} of {max_tw_buckets}): another connection closing "
            "first would leave this one without TIME_WAIT (4-tuple free at once)"
        )
    notes.append(bind_note)
    return Prediction("tw-reuse", settings, tuple(events), t, "reuse_ok", tuple(notes), absence_is_evidence=True)
