"""How long a probe watches, what it may call beyond the window, lossy captures, Ctrl-C and
the text: pure tests of tcptune.core.verdict, tcptune.ops.probes and tcptune.render.probe,
no socket opened (the sources are `sysctl -a` dumps, the observations built by hand)."""

from __future__ import annotations

import pytest

from tcptune.core import verdict as V
from tcptune.host.source import DumpHost
from tcptune.kernel import timers as S
from tcptune.kernel.timers import fin_timeout as FIN
from tcptune.kernel.timers import syn as SYN
from tcptune.ops import probes as P
from tcptune.probe.base import Observation
from tcptune.probe.capture import CaptureStats
from tcptune.probe.spec import specs
from tcptune.render.output import Output
from tcptune.render.probe import render_all, render_probe

TOL = V.Tolerance(hz=250, poll_s=P.POLL_TOLERANCE_S)

# A fresh 6.18 namespace's values, the ones the probes read.
DEFAULTS = {
    "kernel.osrelease": "6.18.44",
    "net.ipv4.tcp_syn_retries": "6",
    "net.ipv4.tcp_syn_linear_timeouts": "4",
    "net.ipv4.tcp_rto_max_ms": "120000",
    "net.ipv4.tcp_synack_retries": "5",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.tcp_fin_timeout": "60",
    "net.ipv4.tcp_max_tw_buckets": "131072",
    "net.ipv4.tcp_keepalive_time": "7200",
    "net.ipv4.tcp_keepalive_intvl": "75",
    "net.ipv4.tcp_keepalive_probes": "9",
    "net.ipv4.tcp_tw_reuse": "2",
    "net.ipv4.tcp_tw_reuse_delay": "1000",
    "net.ipv4.tcp_timestamps": "1",
}


def dump(**changes) -> DumpHost:
    return DumpHost({**DEFAULTS, **{f"net.ipv4.{k}": str(v) for k, v in changes.items()}}, "test")


def ev(t, what, n=0):
    return S.Event(t, what, n)


# -- issue 10 #1: an event at the --max-wait limit ----------------------------------
def test_an_event_whose_lateness_does_not_fit_is_beyond_the_window_not_failed():
    """fin_timeout=30 with --max-wait 30: the expiry may come until ~33 s on time."""
    w = V.plan_watch(FIN.predict_fin_timeout(30, 0.2), TOL, 30.0, 0.15)
    assert not w.fits and not w.observable
    assert [(e.what, round(latest, 2)) for e, latest in w.beyond] == [("fin_wait2_expired", 33.04)]
    assert V.plan_watch(FIN.predict_fin_timeout(30, 0.2), TOL, 34.0, 0.15).fits


def test_probe_and_probe_all_apply_the_same_rule():
    one = P.run_probe(dump(tcp_fin_timeout=30), "fin-timeout", 30.0)
    assert one.verdict == "not_observed" and one.source is None  # said at once, no socket opened
    assert "beyond --max-wait 30 s" in one.reason and "33.04 s" in one.reason
    assert P.exit_code(one.verdict) == 0
    # with nothing short enough to run, probe all skips every probe for the same reason
    everything = P.run_all(dump(tcp_fin_timeout=30, tcp_synack_retries=5, tcp_tw_reuse=0), 30.0)
    assert everything.probes == [] and everything.exit_code == 0
    why = {s.probe: s.reason for s in everything.skipped}
    assert "fin-timeout" in why and "allowed lateness" in why["fin-timeout"] and "--max-wait 30 s" in why["fin-timeout"]


def test_a_retransmission_due_at_the_limit_is_not_a_difference():
    """Default SYN settings, watched 4 s: #4 is due at 4 s and may come at 4.3 s."""
    pred = SYN.predict_syn(6, 4, hz=250)
    seen = [
        ev(0, "syn"),
        ev(1.008, "syn_retransmit", 1),
        ev(2.032, "syn_retransmit", 2),
        ev(3.056, "syn_retransmit", 3),
    ]
    c = V.compare_prediction(pred, seen, TOL, window=4.0)
    assert c.verdict == "matches", c.reason
    assert ("syn_retransmit", 4) in [(u["what"], u["n"]) for u in c.unobserved]


def test_when_the_kernel_gave_up_what_was_not_seen_did_not_happen():
    pred = SYN.predict_syn(2, 4, hz=250)  # 5 retransmissions, ETIMEDOUT at 7 s
    seen = [ev(0, "syn"), ev(1.008, "syn_retransmit", 1), ev(2.03, "syn_retransmit", 2), ev(3.05, "connect_timeout")]
    c = V.compare_prediction(pred, seen, TOL, window=None)
    assert c.verdict == "differs" and "syn_retransmit #3: not observed" in c.reason


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_max_wait_must_be_a_positive_finite_number(bad):
    with pytest.raises(P.TcptuneError) as ei:
        P.run_probe(dump(), "syn", bad)
    assert ei.value.exit_code == 2 and "--max-wait" in str(ei.value)


# -- issue 10 #2: a capture that lost packets ---------------------------------------
def _syn_observation(drops: int) -> Observation:
    """tcp_syn_retries=1 with linear timeouts: SYNs at 0, 1, 2 s, ETIMEDOUT at 3 s; the
    capture lost the first retransmission, so the one at 2 s was numbered #1."""
    obs = Observation("syn", "capture", started=100.0, watched_until=103.1)
    obs.raw_events += [(100.0, "syn", 0, ""), (102.03, "syn_retransmit", 1, "")]
    obs.add(103.06, "connect_timeout", 0, "connect() -> ETIMEDOUT", since=103.055)
    obs.capture_stats = CaptureStats(packets=4, drops=drops)
    return obs


def test_a_lossy_capture_does_not_make_the_verdict_differs():
    spec = specs()["syn"]
    pred = SYN.predict_syn(1, 4, hz=250)
    exact, _observed, notes = P.judge(spec, pred, _syn_observation(drops=0), TOL, None)
    assert exact.verdict == "differs" and notes == []
    lossy, _observed, notes = P.judge(spec, pred, _syn_observation(drops=2), TOL, None)
    assert lossy.verdict == "matches", lossy.reason
    assert [r["what"] for r in lossy.rows] == ["connect_timeout"]
    assert "the capture lost 2 of 6 frames" in notes[0] and "not judged" in notes[0]


# -- issue 10 #9 and the screen: the text -------------------------------------------
def _result(**changes) -> P.ProbeResult:
    base = dict(
        probe="tw-reuse",
        settings={"tcp_tw_reuse": 1, "tcp_tw_reuse_delay": 1000, "tcp_timestamps": 1, "tcp_max_tw_buckets": 131072},
        kernel="6.18.44",
        hz=250,
        max_wait_s=30.0,
        tolerance=TOL.as_dict(),
        source="capture",
        predicted=[{"t": 0.0, "what": "fin", "n": 0}, {"t": 1.0, "what": "reuse_ok", "n": 0}],
        alternatives=[],
        compared_with=None,
        observed=[{"t": 0.0, "what": "fin", "n": 0}],
        give_up={"what": "reuse_ok", "predicted_s": 1.0, "observed_s": None, "possible_s": [1.0]},
        comparison=[
            {
                "what": "reuse_ok",
                "n": 0,
                "predicted_t": 1.0,
                "observed_t": None,
                "error_s": None,
                "allowed_early_s": 0.03,
                "allowed_late_s": 0.04,
                "ok": False,
                "problem": "not observed",
            }
        ],
        verdict="differs",
        reason="reuse_ok: not observed",
        observed_for_s=2.0,
        unobserved=[],
        notes=["not modelled here: connect() after an explicit bind() to the port reuses a TIME_WAIT 4-tuple " * 3],
        measured={},
        pcap=None,
        capture={"packets": 8, "drops": 0},
        outcome=specs()["tw-reuse"].outcome,
    )
    return P.ProbeResult(**{**base, **changes})


def test_the_outcome_line_speaks_the_probes_language():
    text = render_probe(_result(), Output())
    assert "gives up" not in text and "reusable: predicted 1.000 s (reuse_ok)" in text
    assert "observed - s" not in text and "not observed" in text.splitlines()[-2]


def test_the_error_column_says_what_it_measures():
    text = render_probe(_result(), Output())
    assert "ERROR" in text and "ERROR: the observed delay since the previous event" in text


@pytest.mark.parametrize("width", [80, 200])
def test_probe_text_fits_the_terminal(width):
    out = Output(width=width, tty=True)
    row = dict(_result().comparison[0], what="syn_retransmit", n=10, predicted_t=67.0, allowed_late_s=2.1)
    long_rows = _result(comparison=[row] * 3)
    for text in (render_probe(long_rows, out), render_all(P.ProbeAllResult([_result()], []), out)):
        assert max(len(line) for line in text.splitlines()) <= width, text


def test_piped_text_is_not_wrapped():
    assert any(len(line) > 200 for line in render_probe(_result(), Output()).splitlines())


def test_an_interrupted_probe_exits_130_and_says_what_was_still_expected():
    r = _result(
        verdict=P.INTERRUPTED,
        reason="interrupted after 0.4 s (so far: nothing judged yet); still expected: reuse_ok at 1 s",
    )
    assert P.exit_code(r.verdict) == 130
    assert "still expected: reuse_ok at 1 s" in render_probe(r, Output())
    assert P.ProbeAllResult([r], [P.Skipped("keepalive", "not run: interrupted")]).exit_code == 130


def test_a_timeline_that_ends_at_once_is_observable():
    """A full timewait table: the orphan is closed at t=0, which is itself the check."""
    w = V.plan_watch(FIN.predict_fin_timeout(3, 0.2, tw_count=0, max_tw_buckets=0), TOL, 30.0, 0.15)
    assert w.observable and w.fits and w.watch_s < 1.0


@pytest.mark.parametrize(
    "error,code,words",
    [
        (PermissionError(1, "Operation not permitted"), 3, "needs a privilege"),
        (OSError(105, "No buffer space available"), 2, "a socket operation failed: No buffer space available"),
    ],
)
def test_an_oserror_of_a_probe_is_a_one_line_error_not_an_internal_one(error, code, words):
    """issue 10 #4: whatever the probe's sockets raise reaches the user as exit 2 or 3."""
    import dataclasses

    from tcptune.probe.base import Context

    def run(ctx, obs):
        raise error

    spec = dataclasses.replace(specs()["fin-timeout"], run=run)
    with pytest.raises(P.TcptuneError) as ei:
        P._observe(spec, Context(max_wait=1.0), Observation("fin-timeout"))
    assert ei.value.exit_code == code and words in str(ei.value) and "\n" not in str(ei.value)


def test_ctrl_c_keeps_what_was_seen():
    import dataclasses

    from tcptune.probe.base import Context

    def run(ctx, obs):
        obs.started = 50.0
        obs.add(50.0, "fin")
        raise KeyboardInterrupt

    obs = Observation("fin-timeout")
    assert P._observe(dataclasses.replace(specs()["fin-timeout"], run=run), Context(max_wait=1.0), obs)
    assert [e.what for e in obs.events()] == ["fin"] and obs.watched_until > 50.0
