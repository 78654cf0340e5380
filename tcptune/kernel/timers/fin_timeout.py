"""The FIN_WAIT2 model: how long an orphaned socket whose FIN was ACKed lives (tcp_fin_time())."""

from __future__ import annotations

from tcptune.kernel.timers import TCP_TIMEWAIT_LEN, Event, Prediction, tw_table_full


def fin_time(fin_timeout: float, rto: float) -> float:
    """tcp_fin_time() in include/net/tcp.h: max(tcp_fin_timeout, 3.5 * RTO)
    (``(rto << 2) - (rto >> 1)``), linger2 unset."""
    return max(float(fin_timeout), 3.5 * rto)


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
