"""The probe use case: read the governing settings through the source, predict with the
probe's model, watch the kernel, judge with tcptune.core.verdict.  No printing: the
results are typed (``ProbeResult``, ``ProbeAllResult``) and ``to_json()`` gives the
--json shape documented in tcptune(8).

Everything probe-specific comes from the probe's spec (tcptune.probe.spec); this module
never names a probe.
"""

from __future__ import annotations

import dataclasses
import math
import signal
from dataclasses import dataclass
from pathlib import Path

from tcptune.core import verdict as V
from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.timers import Prediction
from tcptune.probe.base import SETTLE_S, Context, Observation, Progress, kernel_hz
from tcptune.probe.spec import Model, ModelInput, ProbeSpec, get_spec, specs

POLL_TOLERANCE_S = 0.010  # extra lateness allowed for an event seen by polling
INTERRUPTED = "interrupted"  # the verdict of a probe ended by Ctrl-C: what was seen, and what was still expected


@dataclass
class ProbeResult:
    """One probe's outcome; field names are the JSON keys."""

    probe: str
    settings: dict
    kernel: str | None
    hz: int | None
    max_wait_s: float
    tolerance: dict
    source: str | None  # "capture", "socket", or None when not run
    predicted: list[dict]
    alternatives: list[dict]
    compared_with: int | None
    observed: list[dict]
    give_up: dict
    comparison: list[dict]
    verdict: str  # matches | differs | not_observed | interrupted
    reason: str
    observed_for_s: float
    unobserved: list[dict]
    notes: list[str]
    measured: dict
    pcap: str | None
    capture: dict | None = None  # the capture socket's kernel counts: {"packets", "drops"}
    options: dict | None = None  # the probe's own options, for probes that have some
    outcome: str = "gives up"  # how the end reads in text (the spec's word); not in the JSON

    def to_json(self) -> dict:
        return {
            "probe": self.probe,
            "settings": self.settings,
            "kernel": self.kernel,
            "hz": self.hz,
            "max_wait_s": self.max_wait_s,
            "tolerance": self.tolerance,
            "source": self.source,
            "predicted": self.predicted,
            "alternatives": self.alternatives,
            "compared_with": self.compared_with,
            "observed": self.observed,
            "give_up": self.give_up,
            "comparison": self.comparison,
            "verdict": self.verdict,
            "reason": self.reason,
            "observed_for_s": self.observed_for_s,
            "unobserved": self.unobserved,
            "notes": self.notes,
            "measured": self.measured,
            "pcap": self.pcap,
            "capture": self.capture,
            **({"options": self.options} if self.options else {}),
        }


@dataclass(frozen=True)
class Skipped:
    probe: str
    reason: str
    exit_code: int = ExitCode.OK  # the error's code when the probe could not run (3: privileges)


@dataclass
class ProbeAllResult:
    probes: list[ProbeResult]
    skipped: list[Skipped]

    @property
    def verdict(self) -> str:
        for v in (INTERRUPTED, "differs"):
            if any(r.verdict == v for r in self.probes):
                return v
        return "matches" if self.probes else "not_observed"

    @property
    def exit_code(self) -> int:
        """1 if one differs, else 3 if one lacked a privilege, else 0 (130 when interrupted)."""
        if self.verdict in (INTERRUPTED, "differs"):
            return exit_code(self.verdict)
        return ExitCode.PRIVILEGES if any(s.exit_code == ExitCode.PRIVILEGES for s in self.skipped) else ExitCode.OK

    def to_json(self) -> dict:
        return {
            "probes": [r.to_json() for r in self.probes],
            "skipped": [{"probe": s.probe, "reason": s.reason} for s in self.skipped],
            "verdict": self.verdict,
        }


def exit_code(verdict: str) -> int:
    if verdict == INTERRUPTED:
        return ExitCode.signal(signal.SIGINT)
    return ExitCode.FINDINGS if verdict == "differs" else ExitCode.OK


# -- inputs ----------------------------------------------------------------------
def _int(values: dict, key: str) -> int | None:
    v = values.get(key)
    if v is None:
        return None
    try:
        return int(v.split()[0])
    except (ValueError, IndexError):
        raise TcptuneError(f"{key}: unexpected value {v!r}", ExitCode.BAD_INPUT) from None


def read_settings(source, spec: ProbeSpec) -> dict[str, int | None]:
    values = source.read_sysctls(spec.settings)
    return {k.rsplit(".", 1)[1]: _int(values, k) for k in spec.settings}


def read_facts(source, spec: ProbeSpec) -> dict:
    """State of the namespace that the model needs besides sysctls, read just before the probe."""
    return spec.facts(source.read_proc_text) if spec.facts else {}


def predict(spec: ProbeSpec, mi: ModelInput, model: Model | None = None) -> Prediction:
    """The model's prediction.  A model that refuses the settings (ValueError: values the
    kernel cannot honour) becomes a clear exit-2 error naming them."""
    try:
        return (model or spec.predict)(mi)
    except ValueError as exc:
        raise TcptuneError(
            f"probe {spec.name}: {exc}",
            ExitCode.BAD_INPUT,
            hint="nothing was probed; change the setting in this namespace to one the kernel honours",
        ) from None


def check_max_wait(max_wait: float) -> None:
    if not math.isfinite(max_wait) or max_wait <= 0:
        raise TcptuneError(f"--max-wait {max_wait}: must be a positive number of seconds", ExitCode.BAD_INPUT)


@dataclass
class _Plan:
    spec: ProbeSpec
    settings: dict
    facts: dict
    mi: ModelInput
    pred: Prediction
    tol: V.Tolerance
    kernel_release: str | None


def _plan(
    source, spec: ProbeSpec, model: Model | None, tolerance: V.Tolerance | None, options: dict | None = None
) -> _Plan:
    from tcptune.host.source import kernel_version

    hz = kernel_hz()
    st = read_settings(source, spec)
    facts = read_facts(source, spec)
    given = {o.name: (options or {}).get(o.name) for o in spec.options}
    mi = ModelInput(spec.name, st, hz, dict(facts), kernel_version(source), given)
    pred = predict(spec, mi, model)
    tol = tolerance or V.Tolerance(hz=hz, poll_s=POLL_TOLERANCE_S)
    return _Plan(spec, st, facts, mi, pred, tol, source.kernel_release())


# -- one probe -------------------------------------------------------------------
def run_probe(
    source,
    name: str,
    max_wait: float,
    *,
    pcap: str | None = None,
    capture: bool = True,
    progress: Progress | None = None,
    tolerance: V.Tolerance | None = None,
    model: Model | None = None,
    options: dict | None = None,
) -> ProbeResult:
    """Predict, observe, compare.  ``model`` replaces the kernel model (tests pass the
    spec's deliberately wrong one to see 'differs'); ``options``: the probe's own options
    by name (ProbeSpec.options)."""
    spec = get_spec(name)
    check_max_wait(max_wait)
    plan = _plan(source, spec, model, tolerance, options)
    return _run_planned(plan, max_wait, pcap=pcap, capture=capture, progress=progress, model=model)


def _run_planned(plan: _Plan, max_wait: float, *, pcap, capture, progress, model) -> ProbeResult:
    spec, pred = plan.spec, plan.pred
    watch = V.plan_watch(pred, plan.tol, max_wait, SETTLE_S)
    if not watch.observable:
        # Nothing can be judged in the time allowed (e.g. keepalive_time=7200): say so, do not wait.
        why = "the model predicts nothing after t=0"
        if watch.beyond:
            first, latest = watch.beyond[0]
            why = (
                f"the first {spec.name} event, {_label(first)}, is predicted at {first.t:g} s and may come until "
                f"{_s(latest)} s (its allowed lateness), beyond --max-wait {max_wait:g} s"
            )
        reason = why + "; too long to observe in the allowed time, nothing was run"
        return _result(plan, max_wait, pred, None, verdict="not_observed", reason=reason)
    ctx = Context(max_wait=watch.watch_s, capture=capture, progress=progress, name=spec.name, options=plan.mi.options)
    obs = Observation(spec.name)
    interrupted = _observe(spec, ctx, obs)
    if pcap:
        if obs.source != "capture":
            obs.notes.append(f"--pcap {pcap}: nothing written, no capture was possible")
        else:
            from tcptune.probe.capture import write_pcap

            write_pcap(pcap, obs.frames)
    measured = {**plan.facts, **obs.measured}
    if obs.measured:
        pred = predict(spec, dataclasses.replace(plan.mi, measured=measured), model)
    # The watch ended because the kernel gave up: what was not seen did not happen.  It
    # ended at the limit (or on Ctrl-C): what may still come on time is beyond the window.
    window = obs.watched_for if (ctx.timed_out or interrupted) else None
    return _result(
        plan,
        max_wait,
        pred,
        obs,
        window=window,
        interrupted=interrupted,
        measured=measured,
        pcap=pcap if pcap and obs.source == "capture" else None,
    )


def _observe(spec: ProbeSpec, ctx: Context, obs: Observation) -> bool:
    """Run the probe's socket work; True when Ctrl-C ended it (what was seen is kept).
    An OSError of the probe's sockets is a clear error, never an internal one."""
    interrupted = False
    try:
        spec.run(ctx, obs)
    except KeyboardInterrupt:
        interrupted = True
    except PermissionError as exc:
        raise TcptuneError(
            f"probe {spec.name}: {exc.strerror or exc}: the probe's socket work needs a privilege here",
            ExitCode.PRIVILEGES,
            hint="run it as root",
        ) from None
    except OSError as exc:
        raise TcptuneError(
            f"probe {spec.name}: a socket operation failed: {exc.strerror or exc}; nothing was judged",
            ExitCode.BAD_INPUT,
            hint="see the notes on the probes in tcptune(8)",
        ) from None
    obs.finish()
    if obs.source == "capture":
        obs.raw_events.extend(spec.analyze(obs.segments, obs.measured.get("server_port")))
    return interrupted


def _s(seconds: float) -> str:
    return f"{round(seconds, 2):g}"


def _label(ev) -> str:
    return ev.what + (f" #{ev.n}" if ev.n else "")


def _listing(events: list[dict]) -> str:
    """'syn_retransmit #8 at 19 s, connect_timeout at 131 s' from events as JSON dicts."""
    return ", ".join(f"{e['what']}{' #' + str(e['n']) if e['n'] else ''} at {e['t']:g} s" for e in events)


def judge(
    spec: ProbeSpec, pred: Prediction, obs: Observation, tol: V.Tolerance, window: float | None
) -> tuple[V.Comparison, list, list[str]]:
    """Compare what was observed with the prediction: (comparison, observed events, notes).
    A capture that lost packets cannot make the verdict 'differs' by itself."""
    observed = obs.events()
    cmp = V.compare_prediction(pred, observed, tol, window=window)
    notes = []
    stats = obs.capture_stats
    if stats is not None and stats.drops:
        lost = f"the capture lost {stats.drops} of {stats.packets + stats.drops} frames (receive buffer full)"
        if cmp.verdict == "differs":
            # Packet events are numbered in the order captured: one lost SYN renumbers the
            # rest.  Judge only what the sockets showed, timed from the probe's first action.
            packet_kinds = tuple({e.what for p in pred.timelines() for e in p.events} - set(spec.not_in_packets))
            observed = obs.events(t0=obs.started)
            cmp = V.compare_prediction(pred, observed, tol, window=window, ignore=packet_kinds)
            notes.append(lost + "; packet events were not judged, only what the sockets showed")
        else:
            notes.append(lost + "; every packet the model predicts was seen anyway")
    return cmp, observed, notes


def _give_ups(pred: Prediction) -> list[float]:
    return sorted({p.give_up for p in pred.timelines() if p.give_up is not None})


def _alternatives(pred: Prediction) -> list[dict]:
    return [
        {"why": a.why, "give_up_s": a.give_up, "events": [e.as_dict() for e in a.events]} for a in pred.alternatives
    ]


def _result(
    plan: _Plan,
    max_wait: float,
    pred: Prediction,
    obs: Observation | None,
    *,
    window: float | None = None,
    interrupted: bool = False,
    verdict: str = "",
    reason: str = "",
    measured: dict | None = None,
    pcap: str | None = None,
) -> ProbeResult:
    notes = list(pred.notes)
    if obs is None:  # not run
        observed, cmp, watched = [], V.Comparison(verdict=verdict, reason=reason), 0.0
        cmp.unobserved = [e.as_dict() for e in pred.events if e.t > 0]
    else:
        cmp, observed, lossy = judge(plan.spec, pred, obs, plan.tol, window)
        watched = obs.watched_for
        notes += obs.notes + lossy
        if cmp.unobserved and not interrupted:
            notes.append(
                f"watched {watched:.1f} s (--max-wait {max_wait:g}); not observed in that time, as they may still "
                "come on time after it: " + _listing(cmp.unobserved)
            )
        if interrupted:
            still = _listing(cmp.unobserved)
            so_far = cmp.reason if cmp.verdict != "not_observed" else "nothing judged yet"
            cmp.verdict = INTERRUPTED
            cmp.reason = f"interrupted after {watched:.1f} s (so far: {so_far}); still expected: {still or 'nothing'}"
    used = pred if cmp.alternative is None else pred.alternatives[cmp.alternative]
    return ProbeResult(
        probe=plan.spec.name,
        settings=plan.settings,
        kernel=plan.kernel_release,
        hz=plan.mi.hz,
        max_wait_s=max_wait,
        tolerance=plan.tol.as_dict(),
        source=None if obs is None else obs.source,
        predicted=[e.as_dict() for e in pred.events],
        alternatives=_alternatives(pred),
        compared_with=cmp.alternative,
        observed=[e.as_dict() for e in observed],
        give_up={
            "what": used.give_up_what,
            "predicted_s": used.give_up,
            "observed_s": next((e.t for e in observed if e.what == used.give_up_what), None),
            "possible_s": _give_ups(pred),
        },
        comparison=cmp.rows,
        verdict=cmp.verdict,
        reason=cmp.reason,
        observed_for_s=round(watched, 3),
        unobserved=cmp.unobserved,
        notes=notes,
        measured=plan.facts if measured is None else measured,
        pcap=pcap,
        capture=None if obs is None or obs.capture_stats is None else obs.capture_stats.to_json(),
        options=dict(plan.mi.options) or None,
        outcome=plan.spec.outcome,
    )


# -- every probe -----------------------------------------------------------------
def pcap_path_for(pcap: str | None, name: str) -> str | None:
    """`probe all --pcap FILE`: one file per probe, FILE-PROBE.pcap."""
    if not pcap:
        return None
    p = Path(pcap)
    return str(p.with_name(f"{p.stem}-{name}{p.suffix or '.pcap'}"))


def run_all(
    source, max_wait: float, *, pcap: str | None = None, capture: bool = True, progress: Progress | None = None
) -> ProbeAllResult:
    """Run, one after another, every probe whose whole predicted timeline, allowed lateness
    included, fits in max_wait (the same rule a single probe uses for its window)."""
    check_max_wait(max_wait)
    out = ProbeAllResult([], [])
    for spec in specs().values():
        if out.verdict == INTERRUPTED:
            out.skipped.append(Skipped(spec.name, "not run: interrupted"))
            continue
        try:
            plan = _plan(source, spec, None, None)
        except TcptuneError as exc:
            out.skipped.append(Skipped(spec.name, str(exc), exc.exit_code))
            continue
        watch = V.plan_watch(plan.pred, plan.tol, max_wait, SETTLE_S)
        if watch.end_s is None:
            out.skipped.append(Skipped(spec.name, "the model predicts no end to watch for"))
            continue
        if not watch.fits:
            horizon = plan.pred.horizon()
            out.skipped.append(
                Skipped(
                    spec.name,
                    f"predicted to take {horizon:g} s, and up to {_s(watch.end_s + SETTLE_S)} s with its allowed "
                    f"lateness: more than --max-wait {max_wait:g} s",
                )
            )
            continue
        try:
            out.probes.append(
                _run_planned(
                    plan, max_wait, pcap=pcap_path_for(pcap, spec.name), capture=capture, progress=progress, model=None
                )
            )
        except TcptuneError as exc:  # e.g. a socket filter refused without privileges: the others still run
            out.skipped.append(Skipped(spec.name, str(exc), exc.exit_code))
    return out
