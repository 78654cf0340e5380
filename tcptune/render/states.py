"""`tcptune states` as text: the state histogram, the --by group table, notes and warnings.

Takes the JSON-ready report (tcptune.core.socket_summary.build_report) and an Output; the
bars shrink and the STATES column wraps so that on a terminal every line fits its width.
"""

from __future__ import annotations

import time

from tcptune.kernel.states import STATE_NAMES
from tcptune.render.output import COLUMN_GAP, Output

HISTOGRAM_BAR = 40  # cells of the longest bar off a terminal (or when it fits)
GROUP_BAR = 30
MIN_BAR = 5  # below this a bar tells nothing; the table then wraps instead
GROUP_LABELS = {"local-port": "LOCAL PORT", "peer": "PEER", "process": "PROCESS"}


def render(report: dict, by: str | None, out: Output) -> str:
    lines = [out.line(f"TCP sockets from {report['source']}: {report['total']} total")]
    lines.append(_histogram(report, out))
    if by and by != "state":
        lines += ["", _groups(report, by, out)]
    lines += [out.line(f"note: {note}") for note in report.get("notes", [])]
    lines += [out.line(f"{out.paint('warning')}: {w['message']} [key: {w['key']}]") for w in report["warnings"]]
    return "\n".join(lines)


def watch_header(out: Output, every: float, first: bool) -> str:
    """The line above each --watch sample; on a terminal the screen is cleared first."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + f"  every {every:g}s\n"
    if out.tty:
        return "\x1b[H\x1b[2J" + stamp  # cursor home + erase display (ECMA-48 CUP, ED)
    return stamp if first else "\n" + stamp


def _bar_cells(out: Output, used: int, preferred: int) -> int:
    """Cells for the longest bar: ``preferred``, or what the terminal leaves after ``used`` columns."""
    if out.width is None:
        return preferred
    return max(MIN_BAR, min(preferred, out.width - used - COLUMN_GAP))


def _histogram(report: dict, out: Output) -> str:
    states, changes = report["states"], report.get("changes")
    peak = max(states.values(), default=0)
    counts = [str(states[n]) for n in STATE_NAMES] + [str(report["total"])]
    cols = [list(STATE_NAMES) + ["TOTAL"], counts]
    headers = ["STATE", "COUNT"]
    if changes is not None:
        cols.append([f"{changes[n]:+d}" for n in STATE_NAMES] + [f"{sum(changes.values()):+d}"])
        headers.append("CHANGE")
    used = sum(max(len(h), *(len(c) for c in col)) + COLUMN_GAP for h, col in zip(headers, cols)) - COLUMN_GAP
    cells = _bar_cells(out, used, HISTOGRAM_BAR)
    bars = [out.bar(states[n], peak, cells) for n in STATE_NAMES] + [""]
    rows = list(zip(*cols, bars))
    return out.table(headers + [""], rows)


def _groups(report: dict, by: str, out: Output) -> str:
    groups = report.get("groups", [])
    peak = max((g["total"] for g in groups), default=0)
    keys = [str(g["key"]) for g in groups]
    totals = [str(g["total"]) for g in groups]
    mix = [", ".join(f"{k} {v}" for k, v in sorted(g["states"].items(), key=lambda kv: -kv[1])[:3]) for g in groups]
    label = GROUP_LABELS[by]
    key_w = max([len(label)] + [len(k) for k in keys])
    tot_w = max([len("SOCKETS")] + [len(t) for t in totals])
    # The bar takes what is left after the key, the totals and a STATES column of at least 20.
    cells = _bar_cells(out, key_w + tot_w + 20 + 2 * COLUMN_GAP, GROUP_BAR)
    rows = [[k, t, m, out.bar(g["total"], peak, cells)] for k, t, m, g in zip(keys, totals, mix, groups)]
    return out.table([label, "SOCKETS", "STATES", ""], rows, flexible=(2, 0))
