"""Text output of `tcptune profiles list|show|validate`."""

from __future__ import annotations

from tcptune.ops.profiles import ProfileList, ProfileView, ValidationReport
from tcptune.render.cells import block, clip, fits, piped_caps, plural
from tcptune.render.output import Output


def render_list(result: ProfileList, out: Output) -> str:
    rows = [[i.name + (" (shadowed)" if i.shadowed_by else ""), i.kind, i.description, i.path] for i in result.profiles]
    # The description wraps at 50 off a terminal, as it always has; on one it fits the width.
    table = out.table(["name", "kind", "description", "path"], rows, flexible=(2, 3), caps=piped_caps(out, {2: 50}))
    if not fits(table, out):  # paths do not wrap: one block per profile on a narrow terminal
        table = "\n".join(block(out, f"{r[0]} ({r[1]}) {r[3]}", r[2]) for r in rows)
    return "\n".join([table] + [out.line(f"note: {n}") for n in result.notes])


def render_profile(view: ProfileView, out: Output) -> str:
    prof = view.profile
    head = (
        f"{prof.name}: {prof.description}\n  from {prof.origin}"
        + (f" (extends {' -> '.join(prof.chain[1:])})" if prof.extends else "")
        + (f"; kernel {prof.kernel}" if prof.kernel else "")
    )
    rows = [[s.key, clip(s.value), s.expected if s.accept else "", s.reason] for s in prof.settings.values()]
    table = out.table(
        ["key", "value", "audit accepts", "reason"], rows, flexible=(3, 2, 1), caps=piped_caps(out, {2: 18, 3: 60})
    )
    if not fits(table, out):
        table = "\n\n".join(
            block(out, f"{s.key} = {clip(s.value)}" + (f"  (audit accepts {s.expected})" if s.accept else ""), s.reason)
            for s in prof.settings.values()
        )
    notes = [out.line(f"note: {n}") for n in view.notes]
    return "\n".join([out.line(head_line) for head_line in head.split("\n")] + [table] + notes)


def render_validation(report: ValidationReport, out: Output) -> list[tuple[bool, str]]:
    """One (valid, line) per file, in the order given: `PATH: ok (N keys)`, or the file's error
    as the one line tcptune prints for any error (the command writes those to stderr)."""
    return [
        (True, out.line(f"{r.path}: ok ({plural(r.keys, 'key')})"))
        if r.valid
        else (False, f"tcptune: error: {r.error}")
        for r in report.results
    ]
