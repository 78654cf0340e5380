"""The TIME_WAIT reuse model: when connect() may take a 4-tuple held in TIME_WAIT (tcp_twsk_unique())."""

from __future__ import annotations

from tcptune.kernel.timers import TCP_TIMEWAIT_LEN, Event, Prediction, tw_table_full


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
