"""The pure timer models, checked without a kernel (long schedules included).

The numbers in the first tests are measurements on this machine (Linux 6.18,
private namespace, SYNs never answered) from the issue and from tcptune's probes.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.core import verdict as V
from tcptune.kernel import timers as S
from tcptune.kernel.timers import fin_timeout as FIN
from tcptune.kernel.timers import keepalive as KA
from tcptune.kernel.timers import syn as SYN
from tcptune.kernel.timers import synack as SA
from tcptune.kernel.timers import tw_reuse as TW


def times(pred, what):
    return [e.t for e in pred.events if e.what == what]


def ev(t, what, n=0):
    return S.Event(t, what, n)


TOL = V.Tolerance(hz=250)


# -- SYN ----------------------------------------------------------------------
def test_syn_retries_2_linear_4_gives_5_retransmissions_and_etimedout_at_7s():
    p = SYN.predict_syn(2, 4)
    assert times(p, "syn_retransmit") == [1, 2, 3, 4, 5]
    assert p.give_up == 7.0 and p.give_up_what == "connect_timeout"
    assert "time cap 7 s" in p.events[-1].detail  # the count (6) was never reached


def test_syn_retries_2_linear_0_gives_2_retransmissions_and_etimedout_at_7s():
    p = SYN.predict_syn(2, 0)
    assert times(p, "syn_retransmit") == [1, 3]
    assert p.give_up == 7.0
    assert "retry count" in p.events[-1].detail


def test_pre_6_5_kernel_without_linear_timeouts_is_pure_doubling():
    assert times(SYN.predict_syn(6, None), "syn_retransmit") == [1, 3, 7, 15, 31, 63]
    assert SYN.predict_syn(6, None).give_up == 127.0


def test_default_6_18_settings_syn_6_linear_4():
    p = SYN.predict_syn(6, 4)
    assert times(p, "syn_retransmit") == [1, 2, 3, 4, 5, 7, 11, 19, 35, 67]
    assert p.give_up == 131.0  # 10 retransmissions, the 11th expiry gives up (count and time cap 127 s)


def test_syn_retries_15_hits_the_120s_rto_cap():
    p = SYN.predict_syn(15, 0)
    retx = times(p, "syn_retransmit")
    assert retx[:7] == [1, 3, 7, 15, 31, 63, 127]
    gaps = [b - a for a, b in zip([0] + retx, retx + [p.give_up])]
    assert max(gaps) == 120.0 and gaps[-1] == 120.0
    assert len(retx) == 15
    assert p.give_up == 127 + 9 * 120 == SYN.model_timeout(15, 1.0, 120.0)


@pytest.mark.parametrize("hz,ms", [(250, 2024), (1000, 2021), (100, 2030), (300, 2024)])
def test_tcp_rto_max_ms_is_rounded_up_to_jiffies(hz, ms):
    # tcp_init_sock(): icsk_rto_max = msecs_to_jiffies(tcp_rto_max_ms)
    p = SYN.predict_syn(4, 0, 2.021, hz=hz)
    assert p.settings["rto_max_s"] == pytest.approx(S.msecs_to_jiffies(2021, hz) / hz)
    assert S.jiffies_to_msecs(S.msecs_to_jiffies(2021, hz), hz) == ms
    gaps = [b - a for a, b in zip([0.0] + times(p, "syn_retransmit"), times(p, "syn_retransmit"))]
    assert max(gaps) == pytest.approx(p.settings["rto_max_s"])


# The reviewer's measurement (6.18, HZ=250, tcp_syn_retries=2, linear 4, tcp_rto_max_ms=2020):
# time cap 3 + 2.02 = 5.02 s; SYNs retransmitted at 1.007, 2.031, 3.055, 4.079 and ETIMEDOUT
# at 5.107 s: the 5th expiry came 107 ms after its ideal 5 s, past the cap.
REVIEWER_2_4_2020 = [
    ev(0, "syn"),
    ev(1.007, "syn_retransmit", 1),
    ev(2.031, "syn_retransmit", 2),
    ev(3.055, "syn_retransmit", 3),
    ev(4.079, "syn_retransmit", 4),
    ev(5.107, "connect_timeout"),
]


def test_time_cap_inside_the_accumulated_timer_slack_is_ambiguous():
    p = SYN.predict_syn(2, 4, 2.02, hz=250)
    assert p.settings["time_cap_s"] == 5.02
    assert times(p, "syn_retransmit") == [1, 2, 3, 4, 5] and p.give_up == 7.0  # punctual timers
    (alt,) = p.alternatives
    assert times(alt, "syn_retransmit") == [1, 2, 3, 4] and alt.give_up == 5.0  # late by >= 20 ms in all
    assert any(n.startswith("ambiguous") for n in p.notes)
    c = V.compare_prediction(p, REVIEWER_2_4_2020, TOL)
    assert c.verdict == "matches" and c.alternative == 0, c.rows
    assert V.compare(p.events, REVIEWER_2_4_2020, TOL).verdict == "differs"  # the old, single-timeline check
    # timers ~1 ms late each: 5 ms in all < the 20 ms that would reach the cap -> a 5th retransmission
    punctual = (
        [ev(0, "syn")] + [ev(k + k / 1000, "syn_retransmit", k) for k in range(1, 6)] + [ev(7.03, "connect_timeout")]
    )
    c = V.compare_prediction(p, punctual, TOL)
    assert c.verdict == "matches" and c.alternative is None
    never = REVIEWER_2_4_2020[:3] + [ev(3.1, "connect_timeout")]
    c = V.compare_prediction(p, never, TOL)
    assert c.verdict == "differs" and "alternative" in c.reason


def test_no_ambiguity_when_the_slack_cannot_reach_the_cap():
    assert not SYN.predict_syn(2, 4, hz=250).alternatives  # cap 7 s, 5th expiry at 5 s + 160 ms at most
    assert not SYN.predict_syn(1, 4, hz=250).alternatives  # ideal 3 s >= cap 3 s: certain


def _kernel_syn(retries, lin, cap_ms, hz, lateness):
    """A direct simulation of tcp_retransmit_timer()/tcp_write_timeout() with each timer
    firing ``lateness[i]`` of its wheel granularity late: (retransmissions, ideal time
    of the expiry that gave up)."""
    cap_j = S.msecs_to_jiffies(cap_ms, hz)
    timeout_ms = S.jiffies_to_msecs(SYN._model_timeout_j(retries, hz, cap_j), hz)
    real, ideal_j, rto, retx, i = 0.0, 0, hz, 0, 0
    while True:
        ideal_j += rto
        real += rto / hz + lateness[i % len(lateness)] * S.timer_slack(rto / hz, hz)
        i += 1
        if retx >= retries + lin or (retx > 0 and math.floor(real * 1000) >= timeout_ms):
            return retx, ideal_j / hz
        retx += 1
        if retx > lin:
            rto = min(rto * 2, cap_j)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 15),
    st.integers(0, 6),
    st.sampled_from([1000, 1500, 2020, 2500, 3000, 5000, 10000, 120000]),
    st.sampled_from([250, 1000]),
    st.lists(st.floats(0.01, 1.0), min_size=1, max_size=8),
)
def test_every_outcome_a_late_kernel_can_reach_is_predicted(retries, lin, cap_ms, hz, lateness):
    retx, gave_up_at = _kernel_syn(retries, lin, cap_ms, hz, lateness)
    p = SYN.predict_syn(retries, lin, cap_ms / 1000, hz=hz)
    outcomes = {(len(times(q, "syn_retransmit")), round(q.give_up, 6)) for q in p.timelines()}
    assert (retx, round(gave_up_at, 6)) in outcomes, (retx, gave_up_at, outcomes)


def test_tcp_rto_max_ms_caps_each_backoff_and_the_time_cap():
    p = SYN.predict_syn(6, 0, rto_max=5.0)
    assert times(p, "syn_retransmit") == [1, 3, 7, 12, 17, 22]
    # tcp_model_timeout: ilog2(5/1) = 2 -> (2<<2)-1 + (6-2)*5 = 27 s
    assert SYN.model_timeout(6, 1.0, 5.0) == 27.0
    assert p.give_up == 27.0


def test_time_cap_can_end_a_linear_schedule_before_its_count():
    p = SYN.predict_syn(3, 4)  # count would allow 7, the 15 s time cap stops after the 7th
    assert times(p, "syn_retransmit") == [1, 2, 3, 4, 5, 7, 11]
    assert p.give_up == 19.0
    p = SYN.predict_syn(1, 4)  # count 5, time cap 3 s
    assert times(p, "syn_retransmit") == [1, 2]
    assert p.give_up == 3.0


def test_model_timeout_matches_kernel_formula():
    assert SYN.model_timeout(6, 1.0, 120.0) == 127.0
    assert SYN.model_timeout(7, 1.0, 120.0) == 247.0
    assert SYN.model_timeout(1, 1.0, 120.0) == 3.0


@pytest.mark.parametrize("bad", [0, 128, -1])
def test_syn_retries_out_of_range(bad):
    with pytest.raises(ValueError):
        SYN.predict_syn(bad, 4)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 15), st.one_of(st.none(), st.integers(0, 10)), st.sampled_from([None, 1.0, 5.0, 60.0, 120.0]))
def test_syn_schedule_invariants(retries, linear, cap):
    p = SYN.predict_syn(retries, linear, cap)
    ts = [e.t for e in p.events]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    retx = times(p, "syn_retransmit")
    assert len(retx) <= retries + (linear or 0)
    rto_max = cap or 120.0
    gaps = [b - a for a, b in zip([0.0] + retx, retx + [p.give_up])]
    assert all(0 < g <= max(rto_max, 1.0) for g in gaps)
    # gives up either on the count or on the time cap, never before both allow it
    assert len(retx) == retries + (linear or 0) or p.give_up >= SYN.model_timeout(retries, 1.0, rto_max) - 1e-9


def test_textbook_model_is_what_the_tutorials_print():
    p = SYN.predict_syn_textbook(6)
    assert times(p, "syn_retransmit") == [1, 3, 7, 15, 31, 63]


# -- SYN-ACK ------------------------------------------------------------------
def test_synack_default_5():
    p = SA.predict_synack(5)
    assert times(p, "synack_retransmit") == [1, 3, 7, 15, 31]
    assert p.give_up == 63.0


def test_synack_zero_retries_drops_at_first_expiry():
    p = SA.predict_synack(0)
    assert times(p, "synack_retransmit") == [] and p.give_up == 1.0


def test_synack_long_schedule_capped():
    p = SA.predict_synack(15)
    retx = times(p, "synack_retransmit")
    assert len(retx) == 15 and retx[7] == 127 + 120
    assert p.give_up == 127 + 9 * 120


def test_synack_ignores_rto_max_through_6_18():
    p = SA.predict_synack(2, 2.0, hz=250, kernel=(6, 18, 44))
    assert times(p, "synack_retransmit") == [1, 3] and p.give_up == 7.0 and not p.alternatives


def test_synack_rto_max_rule_is_unverified_after_6_18():
    # net-next "tcp: Apply max RTO to non-TFO SYN+ACK" (Nov 2025): release not verified -> both accepted
    p = SA.predict_synack(2, 2.0, hz=250, kernel=(6, 19, 0))
    assert p.give_up == 7.0
    (alt,) = p.alternatives
    assert times(alt, "synack_retransmit") == [1, 3] and alt.give_up == 5.0
    assert any("unverified" in n for n in p.notes)
    capped = [
        ev(0, "synack"),
        ev(1.01, "synack_retransmit", 1),
        ev(3.02, "synack_retransmit", 2),
        ev(5.05, "request_dropped"),
    ]
    c = V.compare_prediction(p, capped, TOL)
    assert c.verdict == "matches" and c.alternative == 0
    # tcp_rto_max_ms at 120 s changes nothing: no alternative, but the note still says so
    q = SA.predict_synack(2, 120.0, hz=250, kernel=(6, 19, 0))
    assert not q.alternatives and any("unverified" in n for n in q.notes)


def test_synack_syncookies_2_keeps_no_request():
    p = SA.predict_synack(5, syncookies=2, hz=250)
    assert [e.what for e in p.events] == ["synack"] and p.give_up is None
    assert p.absence_is_evidence and 1.0 < p.watch_s < 3.0 and p.horizon() == p.watch_s
    only = [ev(0, "synack")]
    assert V.compare_prediction(p, only, TOL, window=p.watch_s).verdict == "matches"
    assert V.compare_prediction(p, only + [ev(1.02, "synack_retransmit", 1)], TOL).verdict == "differs"
    # syncookies=1 (default) only cookies when the queue is full: one request is a normal one
    assert SA.predict_synack(1, syncookies=1).give_up == 3.0


@pytest.mark.parametrize("retries", [64, 100, 127, 128, 255])
def test_synack_retries_the_kernel_cannot_honour_are_refused(retries):
    with pytest.raises(ValueError, match="cannot be honoured"):
        SA.predict_synack(retries, hz=250)


def test_synack_retries_63_wraps_the_u64_shift_at_hz_250():
    # (u64)250 << 63 wraps to 0: min(0, 120 s) -> the last timer fires on the next tick
    p = SA.predict_synack(63, hz=250)
    retx = times(p, "synack_retransmit")
    assert len(retx) == 63
    assert p.give_up == pytest.approx(retx[-1])
    assert any("overflows" in n for n in p.notes)
    assert not any("overflows" in n for n in SA.predict_synack(62, hz=250).notes)
    # at HZ=1000 it already wraps at num_timeout 61 (1000 = 125 << 3)
    q = SA.predict_synack(63, hz=1000)
    r = times(q, "synack_retransmit")
    assert r[-1] == r[-2] == r[-3] and q.give_up == pytest.approx(r[-1])


def test_synack_high_retries_need_hz():
    SA.predict_synack(54)  # fits in a u64 whatever HZ
    with pytest.raises(ValueError, match="HZ"):
        SA.predict_synack(55)


# -- FIN_WAIT2 ----------------------------------------------------------------
@pytest.mark.parametrize(
    "fin_timeout,rto,life",
    [
        (60, 0.2, 60.0),
        (2, 0.2, 2.0),
        (0, 0.204, 0.714),  # floored at 3.5 x RTO (measured: 0.72 s)
        (61, 0.2, 2.0),  # > 60 s: 1 s as a full socket + 1 s as timewait (measured: 2.06 s)
        (90, 0.2, 60.0),
        (120, 0.2, 120.0),
    ],
)
def test_fin_timeout(fin_timeout, rto, life):
    p = FIN.predict_fin_timeout(fin_timeout, rto)
    assert p.give_up == pytest.approx(life)
    assert times(p, "fin_wait2_expired") == [pytest.approx(life)]


# -- keepalive ----------------------------------------------------------------
def test_keepalive_defaults():
    p = KA.predict_keepalive(7200, 75, 9)
    probes = times(p, "keepalive_probe")
    assert probes[0] == 7200 and probes[-1] == 7200 + 8 * 75 and len(probes) == 9
    assert p.give_up == 7200 + 9 * 75


def test_keepalive_short():
    p = KA.predict_keepalive(1, 1, 2)
    assert times(p, "keepalive_probe") == [1, 2] and p.give_up == 3


def test_keepalive_t0_is_the_syn_and_probes_count_from_the_handshake():
    # the docs say t is from the probe's first packet: the SYN; the kernel's idle clock
    # starts at the SYN-ACK (tcp_finish_connect()), ~0 later on loopback
    p = KA.predict_keepalive(2, 1, 1)
    assert [(e.what, e.t) for e in p.events[:2]] == [("syn", 0.0), ("established", 0.0)]
    late_handshake = [ev(0, "syn"), ev(0.02, "established"), ev(2.02, "keepalive_probe", 1), ev(3.02, "reset_timeout")]
    assert V.compare(p.events, late_handshake, TOL).verdict == "matches"


def test_fin_timeout_full_timewait_table_closes_the_orphan_at_once():
    # measured on 6.18: tcp_max_tw_buckets=0, tcp_fin_timeout=3 -> gone ~5 ms after close()
    p = FIN.predict_fin_timeout(3, 0.204, tw_count=0, max_tw_buckets=0)
    assert p.give_up == 0.0 and times(p, "fin_wait2_expired") == [0.0]
    assert "tcp_max_tw_buckets" in p.notes[0]
    (acked,) = [e for e in p.events if e.what == "fin_acked"]
    assert acked.optional  # no FIN_WAIT2 phase for a socket-table poll to see
    # > 60 s: the keepalive timer still runs tmo - 60 s, then tcp_time_wait() finds no room (measured: 1.01 s)
    assert FIN.predict_fin_timeout(61, 0.204, tw_count=0, max_tw_buckets=0).give_up == pytest.approx(1.0)


@pytest.mark.parametrize(
    "count,limit,full",
    [(0, 0, True), (5, 5, True), (4, 5, False), (0, -1, False), (10**6, -1, False), (None, 0, False), (3, None, False)],
)
def test_tw_table_full(count, limit, full):
    # inet_twsk_alloc(): count >= limit, compared unsigned (negative = no limit; measured with -1)
    assert S.tw_table_full(count, limit) is full


def test_fin_timeout_nearly_full_table_is_noted():
    p = FIN.predict_fin_timeout(3, 0.2, tw_count=4, max_tw_buckets=5)
    assert p.give_up == 3.0 and any("nearly full" in n for n in p.notes)


# -- TIME_WAIT reuse ----------------------------------------------------------
@pytest.mark.parametrize(
    "reuse,ts,delay,loopback,when",
    [
        (2, 1, 1000, True, 1.0),
        (1, 1, 300, False, 0.3),
        (2, 1, 1000, False, 60.0),
        (0, 1, 1000, True, 60.0),
        (1, 0, 1000, True, 60.0),
        (1, 1, None, True, 1.0),
    ],
)
def test_tw_reuse(reuse, ts, delay, loopback, when):
    p = TW.predict_tw_reuse(reuse, ts, delay, loopback=loopback)
    assert times(p, "reuse_ok") == [when]
    assert p.absence_is_evidence


def test_tw_reuse_before_tcp_tw_reuse_delay_is_a_window_not_one_second():
    # pre tcp_tw_reuse_delay: time_after32(ktime_get_seconds(), tw_ts_recent_stamp) -> (0, 1] s
    p = TW.predict_tw_reuse(1, 1, None)
    (reuse,) = [e for e in p.events if e.what == "reuse_ok"]
    assert reuse.window == 1.0
    base = [ev(0, "fin"), ev(0.001, "time_wait")]
    for t in (0.05, 0.5, 1.0):
        assert V.compare(p.events, base + [ev(t, "reuse_ok")], TOL).verdict == "matches", t
    assert V.compare(p.events, base + [ev(1.3, "reuse_ok")], TOL).verdict == "differs"
    # with the sysctl the rule is ms-exact: 0.5 s is early for a 1000 ms delay
    q = TW.predict_tw_reuse(1, 1, 1000)
    assert V.compare(q.events, base + [ev(0.5, "reuse_ok")], TOL).verdict == "differs"


def test_tw_reuse_full_timewait_table_frees_the_tuple_at_once():
    # measured on 6.18: tcp_tw_reuse=0, tcp_max_tw_buckets=0 -> reuse after 0.1 ms
    p = TW.predict_tw_reuse(0, 1, 1000, tw_count=0, max_tw_buckets=0)
    assert times(p, "reuse_ok") == [0.0]
    # the old model said 60 s; the new one accepts what the kernel does, with or without the ACK packet
    seen = [ev(0, "fin"), ev(0.0001, "reuse_ok")]
    assert V.compare_prediction(p, seen, TOL).verdict == "matches"
    assert V.compare_prediction(p, seen[:1] + [ev(0.00005, "time_wait")] + seen[1:], TOL).verdict == "matches"
    assert V.compare_prediction(TW.predict_tw_reuse(0, 1, 1000), seen, TOL).verdict == "differs"


def test_tw_reuse_notes_loopback_only_and_explicit_bind():
    p = TW.predict_tw_reuse(2, 1, 1000)
    assert any("loopback only" in n and "60 s" in n for n in p.notes)
    assert any("twp == NULL" in n for n in p.notes)


# -- timer slack ----------------------------------------------------------------
@pytest.mark.parametrize(
    "delay,hz,slack",
    [
        (1, 250, 0.032),
        (2, 250, 0.032),
        (4, 250, 0.256),
        (16, 250, 0.256),
        (32, 250, 2.048),
        (1, 1000, 0.064),
        (0.1, 1000, 0.008),
        (0.04, 1000, 0.001),
    ],
)
def test_timer_slack(delay, hz, slack):
    assert S.timer_slack(delay, hz) == pytest.approx(slack)


def test_timer_slack_unknown_hz_is_worst_case():
    assert S.timer_slack(4, None) == max(S.timer_slack(4, h) for h in S.COMMON_HZ)


# -- comparison ---------------------------------------------------------------
def test_optional_event_is_checked_only_when_seen():
    p = FIN.predict_fin_timeout(3, 0.2, tw_count=0, max_tw_buckets=0)
    gone = [ev(0, "fin"), ev(0.006, "fin_wait2_expired")]
    assert V.compare_prediction(p, gone, TOL).verdict == "matches"
    late_ack = [ev(0, "fin"), ev(0.5, "fin_acked"), ev(0.5, "fin_wait2_expired")]
    assert V.compare_prediction(p, late_ack, TOL).verdict == "differs"


def test_compare_matches_with_late_timer_events():
    pred = SYN.predict_syn(2, 0)
    obs = [ev(0, "syn"), ev(1.02, "syn_retransmit", 1), ev(3.05, "syn_retransmit", 2), ev(7.2, "connect_timeout")]
    c = V.compare(pred.events, obs, TOL)
    assert c.verdict == "matches", c.rows


def test_compare_flags_a_textbook_expectation():
    real = [ev(0, "syn")] + [ev(float(k), "syn_retransmit", k) for k in range(1, 6)] + [ev(7.1, "connect_timeout")]
    c = V.compare(SYN.predict_syn_textbook(2).events, real, TOL)
    assert c.verdict == "differs"
    assert c.reason.startswith("syn_retransmit #2")


def test_compare_early_event_differs():
    pred = KA.predict_keepalive(2, 1, 1)
    obs = [ev(0, "syn"), ev(0, "established"), ev(1.5, "keepalive_probe", 1), ev(2.5, "reset_timeout")]
    c = V.compare(pred.events, obs, TOL)
    assert c.verdict == "differs" and "early" in c.reason


def test_compare_extra_event_differs():
    pred = SA.predict_synack(1)
    obs = [ev(0, "synack"), ev(1.0, "synack_retransmit", 1), ev(3.0, "synack_retransmit", 2), ev(7, "request_dropped")]
    c = V.compare(pred.events, obs, TOL)
    assert c.verdict == "differs"


def test_compare_window_leaves_later_events_unobserved():
    pred = SYN.predict_syn(6, 4)
    obs = [ev(0, "syn")] + [ev(t, "syn_retransmit", k) for k, t in enumerate([1, 2, 3, 4, 5, 7, 11], 1)]
    c = V.compare(pred.events, obs, TOL, window=12.0)
    assert c.verdict == "matches"
    assert [u["n"] for u in c.unobserved if u["what"] == "syn_retransmit"] == [8, 9, 10]


def test_compare_nothing_in_window_is_not_observed_unless_absence_is_the_check():
    pred = TW.predict_tw_reuse(0, 1, 1000)
    obs = [ev(0, "fin"), ev(0.0001, "time_wait")]
    assert V.compare(pred.events, obs, TOL, window=2).verdict == "not_observed"
    assert V.compare(pred.events, obs, TOL, window=2, absence_is_evidence=True).verdict == "matches"
    early = obs + [ev(0.5, "reuse_ok")]
    assert V.compare(pred.events, early, TOL, window=2, absence_is_evidence=True).verdict == "differs"


def test_compare_ignore_kinds_a_pcap_cannot_show():
    pred = SYN.predict_syn(2, 4)
    obs = [ev(0, "syn")] + [ev(float(k), "syn_retransmit", k) for k in range(1, 6)]
    assert V.compare(pred.events, obs, TOL).verdict == "differs"  # connect_timeout missing
    assert V.compare(pred.events, obs, TOL, ignore=("connect_timeout",)).verdict == "matches"


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), st.integers(0, 6))
def test_a_prediction_always_matches_itself(retries, linear):
    p = SYN.predict_syn(retries, linear)
    assert V.compare(p.events, list(p.events), TOL).verdict == "matches"


def test_chained_timers_add_their_slack():
    p = FIN.predict_fin_timeout(61, 0.2)
    (ev,) = [e for e in p.events if e.what == "fin_wait2_expired"]
    early, late = TOL.window(ev, 2.0)
    assert late == pytest.approx(0.06 + 2 * S.timer_slack(1.0, 250))
