"""Verdicts: compare a predicted timeline with what was observed, within a stated tolerance.

Pure (no clock, no sockets): the probes (tcptune.ops.probes) use it to judge a kernel
timer model against a run, and doctor can use it for any "expected X within Y" check.
The predicted side is a tcptune.kernel.timers.Prediction; each event's allowed lateness
includes the timer-wheel slack of the kernel timer that causes it (timers.timer_slack).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tcptune.kernel.timers import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, Event, Prediction, timer_slack


@dataclass(frozen=True)
class Tolerance:
    abs_s: float = DEFAULT_ABS_TOL
    rel: float = DEFAULT_REL_TOL
    hz: int | None = None  # for timer slack; None: worst over COMMON_HZ
    poll_s: float = 0.0  # extra lateness allowed for events seen by polling

    def window(self, ev: Event, gap: float) -> tuple[float, float]:
        """(early, late) allowed for an event ``gap`` s after the previous one."""
        tol = max(self.abs_s, self.rel * abs(gap))
        late = tol + sum(timer_slack(x, self.hz) for x in (ev.timer, *ev.chained)) + self.poll_s
        return tol, late

    def as_dict(self) -> dict:
        return {
            "abs_s": self.abs_s,
            "rel": self.rel,
            "hz": self.hz,
            "poll_s": self.poll_s,
            "rule": "each event's delay after the previous one may be early by max(abs_s, rel x delay) and late "
            "by that plus the timer-wheel slack of its timer at hz (plus poll_s when polled)",
        }


def latest_times(events, tol: Tolerance) -> list[tuple[Event, float]]:
    """Each event with the latest time it may be observed and still match: its predicted
    time plus the lateness allowed to its own delay and to every delay before it (each
    delay after the previous event is judged on its own, so allowed lateness adds up)."""
    out, prev, total = [], 0.0, 0.0
    for ev in sorted(events, key=lambda e: e.t):
        total += tol.window(ev, ev.t - prev)[1]
        out.append((ev, ev.t + total))
        prev = ev.t
    return out


@dataclass(frozen=True)
class WatchPlan:
    """How long a probe must watch to judge a prediction within ``max_wait``.

    ``fits``: every allowed timeline ends, lateness included, within max_wait; then
    ``watch_s`` is that end plus ``settle``, else max_wait.  ``beyond``: events (with their
    latest on-time moment) that may come after max_wait; they are reported as beyond the
    window, never as failed.  ``observable``: some event after t=0 (or, when everything
    happens at t=0, that) can be judged within max_wait."""

    watch_s: float
    fits: bool
    end_s: float | None  # the latest on-time end over all timelines (None: unbounded)
    beyond: tuple[tuple[Event, float], ...]
    observable: bool


def plan_watch(pred: Prediction, tol: Tolerance, max_wait: float, settle: float = 0.0) -> WatchPlan:
    """The one rule `probe` and `probe all` share: watch until the prediction plus its allowed
    lateness when that fits in max_wait, else report what falls past it as beyond the window."""
    ends: list[float | None] = []
    beyond: dict[tuple[str, int], tuple[Event, float]] = {}
    observable = False
    for p in pred.timelines():
        lt = latest_times(p.events, tol)
        for ev, latest in lt:
            if ev.t <= 0:
                continue
            if latest <= max_wait:
                observable = True
            elif latest > beyond.get(_key(ev), (ev, 0.0))[1]:
                beyond[_key(ev)] = (ev, latest)
        if p.give_up is not None:
            ends.append(max([latest for _ev, latest in lt] + [p.watch_s or 0.0]))
        else:
            ends.append(p.watch_s)  # None: nothing ends this timeline
    end = None if any(e is None for e in ends) else max(ends, default=0.0)
    fits = end is not None and end + settle <= max_wait
    watch = end + settle if fits else max_wait
    ordered = tuple(sorted(beyond.values(), key=lambda b: b[0].t))
    # a timeline that ends at t=0 (e.g. a full timewait table: the socket closes at once) is observable
    at_once = not any(e.t > 0 for p in pred.timelines() for e in p.events)
    return WatchPlan(watch, fits, end, ordered, observable or at_once or pred.absence_is_evidence)


@dataclass
class Comparison:
    rows: list[dict] = field(default_factory=list)
    verdict: str = "matches"  # matches | differs | not_observed
    reason: str = ""
    unobserved: list[dict] = field(default_factory=list)  # predicted beyond the observation window
    alternative: int | None = None  # compare_prediction(): index of the alternative compared (None: the primary)

    def as_dict(self) -> dict:
        return asdict(self)


def _key(ev: Event) -> tuple[str, int]:
    return (ev.what, ev.n)


def compare(
    predicted: tuple[Event, ...] | list[Event],
    observed: list[Event],
    tol: Tolerance,
    window: float | None = None,
    ignore: tuple[str, ...] = (),
    absence_is_evidence: bool = False,
    outcome: str = "",
) -> Comparison:
    """Pair predicted with observed events by (what, n) and check every delay.

    Events that may come after ``window`` s (the time the probe watched) and still be on
    time -- their predicted time plus the lateness allowed to them and to every event
    before them (:func:`latest_times`) -- are listed as unobserved, not failed, unless one
    was observed anyway.  ``window`` None: the watch ended because the kernel gave up, so
    whatever was not seen did not happen.  Observed events that
    no prediction has (e.g. a fourth retransmission) make the verdict 'differs'.
    Kinds in ``ignore`` are neither required nor counted as extra (used when a
    source, like a pcap, cannot see socket-level outcomes).  When only the t=0
    anchors could be compared the verdict is 'not_observed' (an observed ``outcome``
    event, the kernel giving up, counts even at t=0), unless
    ``absence_is_evidence`` (seeing nothing in the window is what was predicted and
    is itself the check, e.g. no TIME_WAIT reuse before 60 s).  Optional predicted
    events are compared when observed and not required otherwise; an event's
    ``window`` widens its early side.
    """
    cmp = Comparison()
    obs_by_key: dict[tuple[str, int], Event] = {}
    for ev in observed:
        obs_by_key.setdefault(_key(ev), ev)
    used: set[tuple[str, int]] = set()
    prev_pred, prev_obs, prev_unc = 0.0, 0.0, 0.0
    carried = 0.0  # lateness allowed to ignored events since the last compared one
    first_bad = ""
    latest = dict(latest_times(predicted, tol))
    for ev in sorted(predicted, key=lambda e: e.t):
        if ev.what in ignore:
            # an ignored event's timer still ran: its slack carries into the next compared delay
            carried += tol.window(ev, ev.t - prev_pred)[1]
            continue
        ob = obs_by_key.get(_key(ev))
        if ob is None and ev.optional:
            continue  # may not happen (or not be visible to this source): checked only when seen
        if ob is None and window is not None and latest[ev] > window:
            cmp.unobserved.append(ev.as_dict())
            continue
        gap = ev.t - prev_pred
        early, late = tol.window(ev, gap)
        late += carried
        early += ev.window  # the rule only places it in (t - window, t]
        row = {
            "what": ev.what,
            "n": ev.n,
            "predicted_t": round(ev.t, 6),
            "observed_t": None,
            "error_s": None,
            "allowed_early_s": round(early, 6),
            "allowed_late_s": round(late, 6),
            "ok": False,
        }
        if ob is None:
            row["problem"] = "not observed"
        else:
            used.add(_key(ev))
            err = (ob.t - prev_obs) - gap
            # a polled observation is late by up to its polling gap; the previous one's gap makes this look early
            early, late = early + prev_unc, late + ob.uncertainty
            row.update(
                observed_t=round(ob.t, 6),
                error_s=round(err, 6),
                allowed_early_s=round(early, 6),
                allowed_late_s=round(late, 6),
                ok=-early <= err <= late,
            )
            if not row["ok"]:
                row["problem"] = "late" if err > 0 else "early"
            prev_pred, prev_obs, prev_unc, carried = ev.t, ob.t, ob.uncertainty, 0.0
        if not row["ok"] and not first_bad:
            first_bad = f"{ev.what}" + (f" #{ev.n}" if ev.n else "") + f": {row['problem']}"
            if row["error_s"] is not None:
                first_bad += f" by {abs(row['error_s']):.3f} s (predicted {ev.t:.3f} s, observed {ob.t:.3f} s)"
        cmp.rows.append(row)
    for ev in observed:
        if _key(ev) in used or ev.what in ignore:
            continue
        if any(_key(p) == _key(ev) for p in predicted):
            continue
        cmp.rows.append(
            {
                "what": ev.what,
                "n": ev.n,
                "predicted_t": None,
                "observed_t": round(ev.t, 6),
                "error_s": None,
                "allowed_early_s": None,
                "allowed_late_s": None,
                "ok": False,
                "problem": "not predicted",
            }
        )
        if not first_bad:
            first_bad = f"{ev.what}" + (f" #{ev.n}" if ev.n else "") + f": observed at {ev.t:.3f} s but not predicted"
    if first_bad:
        cmp.verdict, cmp.reason = "differs", first_bad
    elif not absence_is_evidence and not any(
        r["observed_t"] is not None and (r["predicted_t"] or r["what"] == outcome) for r in cmp.rows
    ):
        cmp.verdict = "not_observed"
        cmp.reason = "nothing the model predicts happens within the time allowed"
    else:
        cmp.verdict = "matches"
        cmp.reason = "every event within tolerance" + (
            f"; {len(cmp.unobserved)} later event(s) not watched" if cmp.unobserved else ""
        )
    return cmp


def compare_prediction(
    pred: Prediction,
    observed: list[Event],
    tol: Tolerance,
    window: float | None = None,
    ignore: tuple[str, ...] = (),
    absence_is_evidence: bool | None = None,
) -> Comparison:
    """:func:`compare` against every timeline the prediction allows (the primary, then
    its alternatives) and keep the first that matches; failing that, the first with
    nothing observed; failing that, the primary's differences (saying how many
    outcomes were tried).  ``absence_is_evidence`` None: the prediction's own flag."""
    results = []
    for i, p in enumerate(pred.timelines()):
        ae = p.absence_is_evidence if absence_is_evidence is None else absence_is_evidence
        c = compare(
            p.events, observed, tol, window=window, ignore=ignore, absence_is_evidence=ae, outcome=p.give_up_what
        )
        c.alternative = None if i == 0 else i - 1
        results.append(c)
    for want in ("matches", "not_observed"):
        for c in results:
            if c.verdict == want:
                if c.alternative is not None:
                    alt = pred.alternatives[c.alternative]
                    c.reason += (
                        f" (alternative outcome {c.alternative + 1}: {alt.give_up_what or 'end'} at {alt.give_up:g} s)"
                        if alt.give_up is not None
                        else f" (alternative outcome {c.alternative + 1})"
                    )
                return c
    first = results[0]
    if len(results) > 1:
        first.reason += f" (nor does any of the {len(results) - 1} alternative outcome(s) the rules allow)"
    return first
