"""The SYN-ACK model: a request in SYN_RECV, its SYN-ACK retransmissions and its drop
(net/ipv4/inet_connection_sock.c reqsk_timer_handler())."""

from __future__ import annotations

from tcptune.kernel.timers import (
    TCP_RTO_MAX,
    TCP_TIMEOUT_INIT,
    U64,
    VERIFIED_UP_TO,
    Event,
    Prediction,
    _hz,
    msecs_to_jiffies,
    timer_slack,
)

SYNACK_RETRIES_HONOURED = 63  # req->num_timeout shifts a u64 (reqsk_timeout()); 64+ is undefined
_SAFE_SHIFT_ANY_HZ = 54  # HZ << 54 fits in a u64 for every HZ up to 1023 (1000 << 54 < 2**64)


def _synack_timeline(retries: int, base_j: int, cap_j: int, h: int, cap_label: str) -> tuple[list[Event], float, int]:
    """reqsk_timer_handler(): expire at the expiry where num_timeout >= retries, else
    resend and re-arm for reqsk_timeout() = min((u64)timeout << num_timeout, cap).
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
    of Nov 2025, "tcp: Apply max RTO to non-TFO SYN+ACK", makes reqsk_timeout()
    use min(timeout, tcp_rto_max(listener)); which release carries it was not
    verified, so on a kernel newer than ``VERIFIED_UP_TO`` both are alternatives.

    tcp_syncookies=2 (net/ipv4/tcp_input.c tcp_conn_request(): ``syncookies == 2``
    always wants a cookie): no request socket is kept, so there is nothing to
    retransmit or drop.

    Limits: request_sock.num_timeout is a 7-bit field and reqsk_timeout() computes
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
            f"tcp_synack_retries={synack_retries} cannot be honoured by the kernel: reqsk_timeout() shifts a u64 by "
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
            f"reqsk_timeout(): (u64)timeout << num_timeout overflows for the last {wrapped} timer(s) at "
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
