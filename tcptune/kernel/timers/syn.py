"""The SYN model: an unanswered connect(), its retransmissions and ETIMEDOUT (net/ipv4/tcp_timer.c)."""

from __future__ import annotations

import math

from tcptune.kernel.timers import (
    TCP_RTO_MAX,
    TCP_TIMEOUT_INIT,
    Event,
    Prediction,
    _hz,
    jiffies_to_msecs,
    msecs_to_jiffies,
    timer_slack,
)


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
