"""Text for `tcptune probe`: one block per probe (settings, notes, the per-event table,
alternatives, the outcome and the verdict), the `probe all` summary, and the status line
shown on stderr while a probe waits.  Built on render.output.Output (width, colour)."""

from __future__ import annotations

from tcptune.ops.probes import ProbeAllResult, ProbeResult
from tcptune.render.output import Output

_SOURCES = {
    "capture": "packets captured on lo",
    "socket": "TCP_INFO and the socket table (no capture)",
}


def _t(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _label(what: str, n: int) -> str:
    return what + (f" #{n}" if n else "")


def _table(result: ProbeResult, out: Output) -> str:
    rows = []
    for r in result.comparison:
        allowed = (
            "-"
            if r["allowed_early_s"] is None
            else f"-{r['allowed_early_s'] * 1000:.0f}/+{r['allowed_late_s'] * 1000:.0f} ms"
        )
        err = "-" if r["error_s"] is None else f"{r['error_s'] * 1000:+.0f} ms"
        ok = "ok" if r["ok"] else r.get("problem", "no")
        rows.append([_label(r["what"], r["n"]), _t(r["predicted_t"]), _t(r["observed_t"]), err, allowed, ok])
    table = out.table(["EVENT", "PREDICTED", "OBSERVED", "ERROR", "ALLOWED", ""], rows, flexible=(5, 0))
    legend = out.line(
        "times in s from the first event; ERROR: the observed delay since the previous event minus the "
        "predicted one (so lateness does not add up); ALLOWED: how early/late that delay may be"
    )
    return table + "\n" + legend


def render_probe(result: ProbeResult, out: Output) -> str:
    lines = [
        out.line(
            f"probe {result.probe}: kernel {result.kernel or '?'}, HZ {result.hz or 'unknown'}, "
            + (f"times from {_SOURCES.get(result.source, result.source)}" if result.source else "not run")
        ),
        out.line("settings: " + " ".join(f"{k}={'absent' if v is None else v}" for k, v in result.settings.items())),
    ]
    if result.measured.get("rto_s") is not None:
        lines.append(f"measured: socket RTO {result.measured['rto_s'] * 1000:.0f} ms")
    if result.capture is not None:
        lines.append(
            f"capture: {result.capture['packets']} frames (lo shows each segment twice), "
            f"{result.capture['drops']} dropped by the kernel"
        )
    lines += [out.line(f"  {n}", indent="    ") for n in result.notes]
    if result.comparison:
        lines.append(_table(result, out))
    else:
        lines.append(
            out.line(
                "predicted: " + ", ".join(f"{_label(e['what'], e['n'])} at {e['t']:g} s" for e in result.predicted)
            )
        )
    for i, alt in enumerate(result.alternatives, 1):
        mark = "  <- compared" if result.compared_with == i - 1 else ""
        lines.append(f"alternative outcome {i}: {alt['events'][-1]['what']} at {alt['give_up_s']:g} s{mark}")
    gu = result.give_up
    if gu["predicted_s"] is None and not gu["what"]:
        lines.append(f"{result.outcome}: never (nothing to give up on, per the model)")
    else:
        possible = gu.get("possible_s") or []
        also = (" (possible: " + ", ".join(f"{x:g}" for x in possible) + " s)") if len(possible) > 1 else ""
        if gu["observed_s"] is not None:
            seen = f"observed {gu['observed_s']:.3f} s"
        else:
            seen = "not run" if result.source is None else "not observed"
        lines.append(f"{result.outcome}: predicted {_t(gu['predicted_s'])} s ({gu['what']}){also}, {seen}")
    lines.append(out.line(f"verdict: {out.paint(result.verdict)} ({result.reason})"))
    return "\n".join(lines)


def render_all(result: ProbeAllResult, out: Output) -> str:
    blocks = [render_probe(r, out) for r in result.probes]
    blocks += [out.line(f"probe {s.probe}: skipped: {s.reason}") for s in result.skipped]
    blocks.append(f"overall: {out.paint(result.verdict)} ({len(result.probes)} run, {len(result.skipped)} skipped)")
    return "\n\n".join(blocks)


def progress_line(name: str, elapsed: float, left: float, events: int, out: Output) -> str:
    """The one-line status shown on a terminal's stderr, cut to its width."""
    text = f"probe {name}: {elapsed:5.1f} s watched, {left:5.1f} s left at most, {events} event(s) so far"
    return text[: out.width - 1] if out.width else text
