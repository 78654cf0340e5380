"""The retry-timer models (tcptune.kernel.timers.retries) on schedules too long to wait for:
tcp_retries2=15 with the 120 s cap, tcp_rto_max_ms from 1000 to 120000, tcp_rto_min_us, the
orphan "alive" rule, TCP_USER_TIMEOUT, a full accept queue.  The short ones are measured
against the kernel in tests/netns/test_probe_retries.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcptune.kernel.timers import retries as R
from tcptune.probe.accept_overflow import listen_counters

DATA = Path(__file__).resolve().parent.parent / "data" / "netstat"
RTO = 0.204  # measured on 6.18 at HZ=250 with tcp_rto_min_us=200000 (TCP_INFO rto)
CAPS_MS = (1000, 2000, 3000, 5000, 10000, 30000, 60000, 120000)


def _times(p, what):
    return [e.t for e in p.events if e.what == what]


def _tcp_model_timeout_ms(boundary, cap_ms, base_ms=200):
    """net/ipv4/tcp_timer.c tcp_model_timeout() written out in ms (HZ=1000, exact)."""
    thresh = (cap_ms // base_ms).bit_length() - 1
    if boundary <= thresh:
        return ((2 << boundary) - 1) * base_ms
    return ((2 << thresh) - 1) * base_ms + (boundary - thresh) * cap_ms


@pytest.mark.parametrize("cap_ms", CAPS_MS)
@pytest.mark.parametrize("retries2", [1, 3, 5, 8, 15])
def test_the_budget_is_tcp_model_timeout_with_the_sockets_own_cap(cap_ms, retries2):
    assert R.budget_ms(retries2, cap_ms / 1000) == _tcp_model_timeout_ms(retries2, cap_ms)


def test_the_budget_numbers_the_issue_names():
    assert R.budget_ms(15, 120.0) == 924_600  # the old "at least 924.6 s"
    assert R.budget_ms(15, 1.0) == 14_400  # with tcp_rto_max_ms=1000 since 6.15
    assert R.budget_ms(5, 1.0) == 4_400 and R.budget_ms(5, 120.0) == 12_600


@pytest.mark.parametrize("cap_ms", CAPS_MS)
def test_dead_peer_schedule_doubles_to_the_cap_and_gives_up_at_the_budget(cap_ms):
    cap = cap_ms / 1000
    p = R.predict_dead_peer(15, RTO, cap, hz=250)
    retx = _times(p, "retransmit")
    assert retx[0] == pytest.approx(RTO)  # the tail loss probe, one RTO after the data
    assert retx[1] == pytest.approx(2 * RTO)  # the first RTO retransmission: retrans_stamp
    gaps = [b - a for a, b in zip(retx[1:], retx[2:])]
    for g, nxt in zip(gaps, gaps[1:]):
        assert nxt == pytest.approx(min(2 * g, cap)) or nxt == pytest.approx(cap)
    assert max(gaps) <= cap + 1e-9
    budget = R.budget_ms(15, cap) / 1000
    end = p.give_up
    assert end - retx[1] >= budget - 1e-9 > retx[-1] - retx[1]  # the first expiry past the budget
    assert _times(p, "etimedout") == [end]


def test_dead_peer_long_schedules_without_waiting():
    # retries2=15 with the 120 s cap: 924.6 s of budget from the first RTO retransmission
    p = R.predict_dead_peer(15, RTO, 120.0, hz=250)
    assert p.give_up == pytest.approx(928.896) and len(_times(p, "retransmit")) == 16  # 17 transmissions
    # the same with tcp_rto_max_ms=1000: about 15 s (measured: ETIMEDOUT after ~15 s)
    q = R.predict_dead_peer(15, RTO, 1.0, hz=250)
    assert q.give_up == pytest.approx(15.632) and sorted(a.give_up for a in q.alternatives) == [pytest.approx(14.632)]
    # retries2=5: 5.632 s with rto_max 1000 (measured ~5.76), 13.056 s with 120000 (measured ~13.5)
    assert R.predict_dead_peer(5, RTO, 1.0, hz=250).give_up == pytest.approx(5.632)
    assert R.predict_dead_peer(5, RTO, 120.0, hz=250).give_up == pytest.approx(13.056)
    # before 6.15 (no tcp_rto_max_ms): TCP_RTO_MAX
    assert R.predict_dead_peer(5, RTO, None, hz=250).give_up == pytest.approx(13.056)


@pytest.mark.parametrize("rto_min_us", [5000, 50000, 200000, 500000])
def test_rto_min_us_moves_the_retransmissions_but_not_the_budget(rto_min_us):
    rto = R.loopback_rto(rto_min_us, 250)
    assert rto == pytest.approx(-(-(rto_min_us + 50) * 250 // 1_000_000) / 250)
    p = R.predict_dead_peer(5, rto, 120.0, hz=250)
    # the budget is from the constant TCP_RTO_MIN, whatever tcp_rto_min_us says
    assert p.settings["budget_s"] == 12.6
    retx = _times(p, "retransmit")
    assert retx[0] == pytest.approx(rto)
    assert p.give_up - retx[1] >= 12.6 - 1e-9
    if rto_min_us < 200000:  # a shorter RTO means more retransmissions before the same budget
        assert len(retx) > len(_times(R.predict_dead_peer(5, RTO, 120.0, hz=250), "retransmit"))


def test_loopback_rto_default_is_the_measured_204_ms():
    assert R.loopback_rto(None, 250) == R.loopback_rto(200000, 250) == pytest.approx(0.204)


@pytest.mark.parametrize("ut", [100, 1000, 3000, 20000, 600000])
def test_user_timeout_replaces_the_budget_both_ways(ut):
    p = R.predict_dead_peer(5, RTO, 1.0, user_timeout_ms=ut, hz=250)
    first_rto_retx = _times(p, "retransmit")[1]
    # the timer is clamped to end at retrans_stamp + TCP_USER_TIMEOUT (tcp_clamp_rto_to_user_timeout())
    assert p.give_up == pytest.approx(first_rto_retx + ut / 1000, abs=0.004)
    assert p.settings["budget_s"] == ut / 1000
    assert any("replaces the tcp_retries2=5 budget" in n for n in p.notes)
    assert p.events[-1].window >= 0


def test_user_timeout_zero_means_unset():
    assert R.predict_dead_peer(5, RTO, 1.0, user_timeout_ms=0, hz=250).give_up == pytest.approx(5.632)


def test_retries1_is_predicted_as_an_optional_event():
    p = R.predict_dead_peer(5, RTO, 1.0, retries1=3, hz=250)
    (r1,) = [e for e in p.events if e.what == "retries1"]
    assert r1.optional and r1.t == pytest.approx(3.632)  # budget 2.4 s: first expiry >= 2.4 s after 0.408 s
    retx = _times(p, "retransmit")
    assert r1.t in [pytest.approx(t) for t in retx]


@pytest.mark.parametrize(("sysctl", "alive", "want"), [(0, True, 8), (0, False, 0), (3, True, 3), (3, False, 3)])
def test_orphan_retries_alive_rule(sysctl, alive, want):
    assert R.orphan_retries(sysctl, alive) == want


@pytest.mark.parametrize("cap_ms", CAPS_MS)
def test_fin_wait1_orphan_retries_0_dies_once_the_rto_reaches_the_cap(cap_ms):
    cap = cap_ms / 1000
    p = R.predict_fin_wait1(0, RTO, cap, hz=250)
    retx = _times(p, "fin_retransmit")
    budget8 = R.budget_ms(8, cap) / 1000
    # the last timer's RTO was the first to reach the cap, unless the 8-retry budget came first
    last_gap = p.give_up - retx[-1]
    assert last_gap == pytest.approx(cap) or p.give_up - retx[1] >= budget8 - 1e-9
    if cap_ms == 1000:
        assert p.give_up == pytest.approx(2.632)  # measured: gone after ~2.7 s
    if cap_ms == 120000:
        assert p.give_up == pytest.approx(104.448)  # the 102.2 s budget of 8 retries decides first


def test_fin_wait1_orphan_retries_8_and_the_timer_slack():
    p = R.predict_fin_wait1(8, RTO, 1.0, hz=250)
    # punctual: 8.632 s; timers running late may reach the 7.4 s budget one expiry earlier
    # (measured: gone after ~7.8 s, the alternative)
    assert p.give_up == pytest.approx(8.632)
    assert [a.give_up for a in p.alternatives] == [pytest.approx(7.632)]
    assert p.alternatives[0].events[0].what == "fin"


def test_fin_wait1_too_many_orphans_kills_at_once():
    p = R.predict_fin_wait1(0, RTO, 1.0, max_orphans=10, orphans=11, hz=250)
    assert p.give_up == 0.0 and "tcp_max_orphans=10" in p.notes[0]
    edge = R.predict_fin_wait1(0, RTO, 1.0, max_orphans=10, orphans=10, hz=250)
    assert any("100 ms orphan count" in n for n in edge.notes)
    q = R.predict_fin_wait1(0, RTO, 1.0, max_orphans=10, orphans=3, hz=250)
    assert q.give_up == pytest.approx(2.632) and any("would bite above 10" in n for n in q.notes)


def test_accept_overflow_models():
    p = R.predict_accept_overflow(0, 2, hz=250)
    assert _times(p, "synack_retransmit") == [1.0, 3.0] and _times(p, "listen_overflow") == [1.0, 3.0]
    assert p.give_up == 7.0 and p.give_up_what == "request_dropped"
    q = R.predict_accept_overflow(1, 2, hz=250)
    assert q.give_up == 1.0 and q.give_up_what == "reset" and _times(q, "listen_overflow") == [1.0]
    z = R.predict_accept_overflow(0, 0, hz=250)
    assert z.give_up == 1.0 and not _times(z, "listen_overflow")
    with pytest.raises(ValueError, match="tcp_syncookies=2"):
        R.predict_accept_overflow(0, 2, syncookies=2)


def test_out_of_range_settings_are_refused():
    with pytest.raises(ValueError):
        R.predict_dead_peer(256, RTO)
    with pytest.raises(ValueError):
        R.predict_fin_wait1(-1, RTO)


def test_netstat_counters_from_a_real_namespace():
    text = (DATA / "after-accept-overflow-r2-6.18.txt").read_text()
    assert listen_counters(text) == {"ListenOverflows": 2, "ListenDrops": 2}
    assert listen_counters(None) == {"ListenOverflows": None, "ListenDrops": None}


@given(st.text())
def test_listen_counters_never_raise(text):
    out = listen_counters(text)
    assert all(v is None or isinstance(v, int) for v in out.values())


# -- saved captures (tests/data/probe_retries/SOURCE) replay through the probes' analysis ------
PCAPS = Path(__file__).resolve().parent.parent / "data" / "probe_retries"
REPLAYS = [
    ("fin-wait1", "fin_wait1_o0_rtomax1000.pcap", {"tcp_orphan_retries": 0, "tcp_rto_max_ms": 1000}),
    ("dead-peer", "dead_peer_r4_rtomax1000.pcap", {"tcp_retries2": 4, "tcp_rto_max_ms": 1000}),
    ("accept-overflow", "accept_overflow_a0_r2.pcap", {"tcp_abort_on_overflow": 0, "tcp_synack_retries": 2}),
    ("accept-overflow", "accept_overflow_a1_r2.pcap", {"tcp_abort_on_overflow": 1, "tcp_synack_retries": 2}),
]


@pytest.mark.parametrize(("probe", "name", "settings"), REPLAYS, ids=[r[1] for r in REPLAYS])
def test_saved_capture_matches_the_model_and_not_the_wrong_one(probe, name, settings):
    from pcaputil import read_pcap

    from tcptune.core import verdict as V
    from tcptune.probe.base import Observation
    from tcptune.probe.spec import ModelInput, specs

    spec = specs()[probe]
    obs = Observation(probe, "pcap", raw_events=list(spec.analyze(read_pcap(str(PCAPS / name)))))
    observed = obs.events()
    mi = ModelInput(probe, {k: None for k in spec.short_settings()} | settings, 250, {"rto_s": RTO}, (6, 18))

    def judge(model):
        # each capture ran until the kernel gave up (SOURCE): a packet not in it did not happen,
        # so window=None; the outcome itself (no packet, or ETIMEDOUT) is not in a pcap
        return V.compare_prediction(model(mi), observed, V.Tolerance(hz=250), window=None, ignore=spec.not_in_packets)

    assert judge(spec.predict).verdict == "matches", judge(spec.predict).reason
    assert judge(spec.wrong_model).verdict == "differs"


@pytest.mark.parametrize("hz", [None, 100, 250, 300, 1000])
def test_models_at_every_hz(hz):
    """The schedules do not depend on HZ beyond jiffy rounding (HZ None: 1 ms jiffies)."""
    rto = R.loopback_rto(None, hz)  # 210 ms at HZ=100 (whole jiffies), 204 ms at 250
    assert R.predict_dead_peer(5, rto, 1.0, hz=hz).give_up == pytest.approx(5.632, abs=0.05)
    assert R.predict_fin_wait1(0, rto, 1.0, hz=hz).give_up == pytest.approx(2.632, abs=0.05)
    assert R.predict_accept_overflow(0, 2, hz=hz).give_up == pytest.approx(7.0, abs=0.02)
