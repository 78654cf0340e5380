"""Text output of `tcptune show` and `tcptune explain`."""

from __future__ import annotations

from tcptune.kernel.version import format_version
from tcptune.ops.inspect import Explanation, ShowResult
from tcptune.render.cells import clip, fits, plural
from tcptune.render.output import Output

_SCOPES = {
    ("netns", "default"): "per network namespace; a new namespace starts from the kernel default",
    ("netns", "copy"): "per network namespace; a new namespace copies the initial namespace's value",
    ("netns", "computed"): "per network namespace; a new namespace computes its own value",
    ("global", "copy"): "global (one value for the whole machine); other namespaces see it read-only",
}
_GLOBAL = "global (one value for the whole machine; only the initial namespace has it)"
LABEL = 9  # width of explain's row labels
IPV4 = "net.ipv4."


def render_show(result: ShowResult, out: Output) -> str:
    table = _show_table(result, out, lambda key: key)
    note = None
    if not fits(table, out):
        # The longest keys alone take half of 80 columns: drop the prefix they all share.
        table = _show_table(result, out, lambda key: key.removeprefix(IPV4))
        note = f"keys without a prefix are {IPV4}*"
    lines = [table]
    changed = sum(1 for r in result.rows if r.differs)
    lines.append("")
    lines.append(
        out.line(
            f"{plural(len(result.rows), 'parameter')} from {result.source}; {changed} differ from the kernel default (*). "
            "'?' = computed at boot or not in the knowledge base."
        )
    )
    lines += [out.line(f"note: {n}") for n in ([note] if note else []) + result.notes]
    return "\n".join(lines)


def _show_table(result: ShowResult, out: Output, name) -> str:
    table = [
        [
            name(r.key),
            clip(r.value),
            r.unit or "",
            "?" if r.default is None else clip(r.default),
            "*" if r.differs else "",
        ]
        for r in result.rows
    ]
    # The last column's header is the mark its rows use.
    return out.table(["key", "value", "unit", "default", "*"], table, flexible=(1, 3, 2))


def render_explain(e: Explanation, out: Output) -> str:
    param = e.param
    lines = [param.key, out.wrap(param.meaning, indent="  "), ""]
    pad = " " * (LABEL + 3)

    def row(label: str, value) -> None:
        if value not in (None, "", [], {}):
            lines.append(out.line(f"  {label:<{LABEL}} {value}", indent=pad))

    row("current", f"{clip(e.current)} ({e.source})" if e.current is not None else f"(absent on {e.source})")
    default, boot_range = e.default, e.boot_range
    if default is not None and boot_range:
        span = " ".join(str(a) if a == b else f"{a}..{b}" for a, b in zip(*boot_range))
        row("default", f"{default} (computed at boot: any of {span} is a kernel default, and audit accepts that range)")
        row("computed", param.default_rule)
    else:
        row("default", default if default is not None else (param.default_rule or "unknown"))
    row("unit", param.unit)
    row("type", param.type)
    if param.min is not None or param.max is not None:
        row(
            "range",
            f"{param.min if param.min is not None else '-inf'} .. {param.max if param.max is not None else 'inf'}",
        )
    row("choices", ", ".join(param.choices))
    for v, meaning in param.values.items():
        row("value " + v if len(v) <= 3 else "value", meaning if len(v) <= 3 else f"{v}: {meaning}")
    row("scope", _SCOPES.get((e.scope, e.netns_init), _GLOBAL))
    row("states", ", ".join(param.states))
    kernels = []
    if param.since:
        stable = ", ".join(f"{format_version(b)}+ in {b[0]}.{b[1]} stable" for b in param.backported)
        kernels.append(f"since {format_version(param.since)}" + (f" ({stable})" if stable else ""))
    if param.removed:
        kernels.append(f"removed in {format_version(param.removed)}")
    kernels += [f"{v}: {w}" for v, w in param.changes]
    row("kernels", "; ".join(kernels))
    for w in param.warn:
        row("risky", f"{w.when}: {w.reason}")
    row("source", param.source)
    if param.details:
        lines += ["", out.wrap(param.details, indent="  ")]
    return "\n".join(lines)
