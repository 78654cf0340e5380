"""Doctor's findings as text (grouped by severity, wrapped to the terminal) or JSON."""

from __future__ import annotations

from tcptune.core.diagnoses.model import SEVERITIES
from tcptune.ops.doctor import DoctorReport
from tcptune.render.output import Output

_PAINT_AS = {"critical": "drift", "warning": "warning", "info": "unsupported"}


def render_doctor_json(report: DoctorReport) -> dict:
    return {
        "source": report.source,
        "window_seconds": report.seconds,
        "findings": [f.to_json() for f in report.findings],
        "inputs": {
            "settings": report.settings,
            "states": report.states,
            "busiest_destination": report.busiest_destination.to_json() if report.busiest_destination else None,
            "usable_ephemeral_ports": report.usable_ephemeral_ports,
        },
        "notes": report.notes,
    }


def render_doctor_text(report: DoctorReport, out: Output) -> str:
    window = f"counters over {report.seconds:.1f} s" if report.seconds > 0 else "one sample (no rates)"
    lines = [out.line(f"doctor on {report.source}: {window}")]
    for note in report.notes:
        lines.append(out.line(f"note: {note}"))
    if not report.findings:
        lines.append("no findings")
        return "\n".join(lines)
    for severity in SEVERITIES:
        group = [f for f in report.findings if f.severity == severity]
        if not group:
            continue
        lines += ["", out.paint(f"{severity.upper()} ({len(group)})", _PAINT_AS[severity])]
        for f in group:
            lines.append(out.wrap(f"{f.check}: {f.summary}", indent="  ", subsequent="    ", cap=100))
            for e in f.evidence:
                lines.append(out.wrap(f"- {e.what}  [{e.source}]", indent="    ", subsequent="      ", cap=100))
            lines.append(out.wrap(f"look at: {', '.join(f.look_at)}", indent="    ", subsequent="      ", cap=100))
            lines.append(out.wrap(f"fix: {f.fix}", indent="    ", subsequent="      ", cap=100))
            lines.append(out.wrap(f"source: {f.source}", indent="    ", subsequent="      ", cap=100))
    counts = ", ".join(f"{sum(f.severity == s for f in report.findings)} {s}" for s in SEVERITIES)
    lines += ["", f"{len(report.findings)} finding(s): {counts}"]
    return "\n".join(lines)
