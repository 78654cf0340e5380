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

    Events predicted after ``window`` s (the time the probe could watch) are listed
    as unobserved, not failed, unless one was observed anyway.  Observed events that
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
    first_bad = ""
    for ev in sorted(predicted, key=lambda e: e.t):
        if ev.what in ignore:
            continue
        ob = obs_by_key.get(_key(ev))
        if ob is None and ev.optional:
            continue  # may not happen (or not be visible to this source): checked only when seen
        if ob is None and window is not None and ev.t > window:
            cmp.unobserved.append(ev.as_dict())
            continue
        gap = ev.t - prev_pred
        early, late = tol.window(ev, gap)
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
            prev_pred, prev_obs, prev_unc = ev.t, ob.t, ob.uncertainty
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
