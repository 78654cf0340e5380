"""`tcptune states` as text: the state histogram, the --by group table, notes and warnings.

Takes the JSON-ready report (tcptune.core.socket_summary.build_report) and an Output; the
bars shrink and the STATES column wraps so that on a terminal every line fits its width.
"""

from __future__ import annotations

import time

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
        return out.clear_screen() + stamp
    return stamp if first else "\n" + stamp


def _bar_cells(out: Output, used: int, preferred: int) -> int:
    """Cells for the longest bar: ``preferred``, or what the terminal leaves after ``used`` columns."""
    if out.width is None:
        return preferred
    return max(MIN_BAR, min(preferred, out.width - used - COLUMN_GAP))


def _histogram(report: dict, out: Output) -> str:
    states, changes = report["states"], report.get("changes")
    names = list(states)  # all eleven, or those --state asked for
    peak = max(states.values(), default=0)
    counts = [str(states[n]) for n in names] + [str(report["total"])]
    cols = [names + ["TOTAL"], counts]
    headers = ["STATE", "COUNT"]
    if changes is not None:
        cols.append([f"{changes[n]:+d}" for n in names] + [f"{sum(changes.values()):+d}"])
        headers.append("CHANGE")
    used = sum(max(len(h), *(len(c) for c in col)) + COLUMN_GAP for h, col in zip(headers, cols)) - COLUMN_GAP
    cells = _bar_cells(out, used, HISTOGRAM_BAR)
    bars = [out.bar(states[n], peak, cells) for n in names] + [""]
    rows = list(zip(*cols, bars))
    return out.table(headers + [""], rows)


def _groups(report: dict, by: str, out: Output) -> str:
    groups = report.get("groups", [])
    peak = max((g["total"] for g in groups), default=0)
    keys = [str(g["key"]) for g in groups]
    totals = [str(g["total"]) for g in groups]
    # Every state of the group, largest first: they add up to SOCKETS.
    mix = [", ".join(f"{k} {v}" for k, v in sorted(g["states"].items(), key=lambda kv: -kv[1])) for g in groups]
    label = GROUP_LABELS[by]
    headers, cols = [label, "SOCKETS"], [keys, totals]
    if any("listeners" in g for g in groups):
        # accept queue/backlog of each listener on the port: a full queue drops connections
        headers.append("ACCEPT Q")
        cols.append([", ".join(_queue(x) for x in g.get("listeners", ())) for g in groups])
    used = sum(max([len(h)] + [len(c) for c in col]) + COLUMN_GAP for h, col in zip(headers, cols))
    # The bar takes what is left after the other columns and a STATES column of at least 20.
    cells = _bar_cells(out, used + 20 + COLUMN_GAP, GROUP_BAR)
    bars = [out.bar(g["total"], peak, cells) for g in groups]
    rows = list(zip(*cols, mix, bars))
    text = out.table(headers + ["STATES", ""], rows, flexible=(len(headers), 0))
    more = report.get("more")
    if more:
        n = more["groups"]
        text += "\n" + out.line(
            f"... {n} more {'group' if n == 1 else 'groups'} with {more['sockets']} sockets (--top 0 shows all)"
        )
    return text


def _queue(listener: dict) -> str:
    q, limit = listener["accept_queue"], listener["backlog"]
    return str(q) if limit is None else f"{q}/{limit}"
