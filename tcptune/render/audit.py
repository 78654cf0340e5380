"""Text output of `tcptune audit` (live and --persisted)."""

from __future__ import annotations

from tcptune.ops.audit import AuditResult
from tcptune.render.cells import block, clip, fits, piped_caps
from tcptune.render.output import Output

HEADERS = ("key", "expected", "actual", "verdict", "reason")
# Off a terminal the long columns wrap at these widths, as they always have; on a terminal
# the table is fitted to its width instead (reason, expected and actual wrap at words).
PIPED_CAPS = {1: 22, 2: 22, 4: 60}


def render_audit(result: AuditResult, out: Output, *, show_all: bool = False) -> str:
    if result.persisted:
        head = f"audit of {result.source}: live values against what the next boot sets ({result.profile_origin})"
    else:
        head = f"audit of {result.source} against profile {result.profile} ({result.profile_origin})"
    lines = [out.line(head)]
    lines += [out.line(f"note: {n}") for n in result.notes]
    shown = result.shown(show_all)
    if shown:
        rows = [
            [
                f.key,
                clip(f.expected, "-"),
                clip(f.actual),
                out.paint(f.verdict),
                f.reason,
            ]
            for f in shown
        ]
        table = out.table(HEADERS, rows, flexible=(4, 1, 2), caps=piped_caps(out, PIPED_CAPS))
        # Long keys and long words in the reasons (key names) cannot wrap: on a terminal too
        # narrow for the table, each finding becomes a short block instead.
        lines.append(table if fits(table, out) else "\n\n".join(_block(f, out) for f in shown))
    counts = result.summary
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    hidden = "" if show_all or not counts["ok"] else " (ok rows hidden; --all shows them)"
    lines.append("")
    lines.append(out.line(f"{len(result.findings)} checked: {summary}{hidden}"))
    return "\n".join(lines)


def _block(f, out: Output) -> str:
    values = f"actual {clip(f.actual)}" + ("" if f.expected is None else f", expected {clip(f.expected)}")
    return block(out, f"{f.key}: {out.paint(f.verdict)}", values, f.reason)
