"""Text and JSON for apply, rollback and snapshots (shapes in tcptune(8)).

Tables go through ``Output.table``: on a terminal they fit its width, the reason column
wrapping at words; piped, nothing is cut (long cells still wrap inside their column).
"""

from __future__ import annotations

from collections.abc import Iterable

from tcptune.core.boot_precedence import LOADERS
from tcptune.core.plan import CHANGE, MISSING, READ_ONLY, SAME, Change, skipped, summarize
from tcptune.core.snapshot import Snapshot
from tcptune.render.output import Output
from tcptune.values import normalize_value

_MARKS = {CHANGE: "change", SAME: "same", MISSING: "skip: absent", READ_ONLY: "skip: read-only"}


def short_reason(reason: str) -> str:
    """The first sentence of a profile's reason, for a table (JSON keeps the whole text)."""
    text = normalize_value(reason)
    for end in (". ", "; "):
        if end in text:
            return text.split(end, 1)[0] + end.strip()
    return text


def plan_rows(plan: Iterable[Change]) -> list[list[str]]:
    """Rows (key, current, new, action, reason) for a table a reviewer reads as a diff."""
    rows = []
    for c in plan:
        current = "(absent on this kernel)" if c.current is None else c.current or "(empty)"
        mark = _MARKS[c.status]
        if c.status in (MISSING, READ_ONLY) and c.required:
            mark += " (required!)"
        rows.append([c.key, current, c.new or "(empty)", mark, short_reason(c.reason)])
    return rows


def plan_text(out: Output, plan: list[Change], header: str) -> str:
    lines = [header]
    if plan:
        # Off a terminal the values and the reason still wrap inside their columns (a
        # tcp_rmem triple, a paragraph), never cut; on one, the reason gives way first.
        caps = {} if out.width else {1: 24, 2: 24, 4: 60}
        lines.append(
            out.table(["key", "current", "new", "action", "reason"], plan_rows(plan), flexible=(4, 1, 2), caps=caps)
        )
    counts = summarize(plan)
    line = f"{counts['change']} to change, {counts['same']} already set, {counts['missing']} absent on this kernel (skipped)"
    if counts.get("read-only"):
        line += f", {counts['read-only']} read-only in this network namespace (skipped)"
    lines.append(line)
    return "\n".join(lines)


# -- apply -------------------------------------------------------------------------
def apply_header(out: Output, ap) -> str:
    """The plan, its notes and the --persist line, before any question is asked."""
    prof = ap.profile
    lines = [plan_text(out, ap.plan, f"plan for {ap.host.label}, profile {prof.name} ({prof.origin}):")]
    lines += [out.line(f"note: {n}") for n in ap.notes]
    p = ap.persist
    if p is not None:
        lines.append(
            out.line(
                f"persist: {p.request.path} under {p.request.root} ({len(p.request.text.splitlines())} lines); "
                f"loaded at boot by {LOADERS[p.boot.loader]} ({p.boot.loader_reason})"
            )
        )
    return "\n".join(lines)


def _persist_json(ap, written: bool) -> dict | None:
    p = ap.persist
    if p is None:
        return None
    boot = p.boot
    return {
        "root": str(p.request.root),
        "path": p.request.path,
        "written": written,
        # Whether a real run writes the file (its text differs and nothing refuses it), so a
        # dry run's reader (the Ansible module's check mode) need not re-derive the file.
        "would_write": p.needs_write,
        "loader": boot.loader,
        "loader_reason": boot.loader_reason,
        "loader_disagreements": [d.to_json() for d in boot.disagreements],
        "boot_values": {k: boot.values[k].to_json() for k in ap.profile.settings if k in boot.values},
        "overrides": [o.to_json() for o in p.overrides],
        "problems": [p.problem] if p.problem else [],
        "warnings": boot.warnings,
    }


def apply_json(ap, result: str, *, dry_run: bool, res=None) -> dict:
    """``res``: the transaction's Result once it ran (its plan is the one re-made under the lock)."""
    plan = res.plan if res is not None else ap.plan
    snap = res.snapshot if res is not None else None
    return {
        "profile": ap.profile.name,
        "profile_origin": str(ap.profile.origin),
        "target": ap.host.label,
        "dry_run": dry_run,
        "result": result,
        "changes": [c.to_json() for c in plan],
        "summary": summarize(plan),
        "snapshot": snap.id if snap else None,
        "undo": f"tcptune rollback {snap.id}" if snap else None,
        "written": list(res.written) if res is not None else [],
        "skipped": list(res.skipped) if res is not None else skipped(plan),
        "persist": _persist_json(ap, bool(res is not None and res.persisted)),
        "notes": ap.notes,
        "warnings": ap.warnings,
    }


NOTHING_TO_DO = "nothing to do: every key already has the profile's value"


def applied_text(out: Output, res, snapshots_dir: str) -> str:
    if res.snapshot is None:
        return NOTHING_TO_DO
    file = f"; wrote {res.snapshot.persist['path']}" if res.persisted else ""
    lines = [f"applied: {len(res.written)} key(s) written and read back{file}"]
    lines += [out.line(f"skipped {s['key']}: {s['reason']}") for s in res.skipped]
    lines.append(f"snapshot {res.snapshot.id} saved in {snapshots_dir}")
    lines.append(f"undo with: tcptune rollback {res.snapshot.id}")
    return "\n".join(lines)


# -- rollback ----------------------------------------------------------------------
def rollback_json(res, target: str, dry_run: bool) -> dict:
    snap = res.snapshot
    return {
        "snapshot": snap.id,
        "profile": snap.profile,
        "target": target,
        "dry_run": dry_run,
        "result": "dry-run" if dry_run else "rolled-back",
        "changes": [c.to_json() for c in res.plan],
        "summary": summarize(res.plan),
        "written": res.written,
        "skipped": res.skipped,
        "persist_restored": res.persisted,
        "persist_replaced_copy": str(res.persist_copy) if res.persist_copy else None,
        "changed_since_apply": res.changed_since_apply,
    }


def _shown(v: str | None) -> str:
    return v or "(empty)"


def rollback_text(out: Output, res, target: str, dry_run: bool) -> str:
    snap = res.snapshot
    lines = [plan_text(out, res.plan, f"rollback of snapshot {snap.id} (profile {snap.profile}) on {target}:")]
    verb = "would overwrite" if dry_run else "overwrote"
    for c in res.changed_since_apply:
        lines.append(
            out.line(
                f"note: {c['key']} was changed after the apply (apply set {_shown(c['after'])}, now {_shown(c['current'])}); "
                f"rollback {verb} it with {_shown(c['before'])}"
            )
        )
    if dry_run:
        lines.append("dry run: nothing was changed")
        return "\n".join(lines)
    file = ""
    if res.persisted:
        path = snap.persist["path"]
        file = (
            f"; removed {path} (it did not exist before)"
            if snap.persist["before"] is None
            else f"; restored the previous {path}"
        )
    same = summarize(res.plan)["same"]
    lines.append(
        out.line(f"rolled back: {len(res.written)} key(s) restored, {same} already had the snapshot value{file}")
    )
    if res.persist_copy:
        lines.append(
            out.line(f"the {snap.persist['path']} it replaced (changed after the apply) is kept in {res.persist_copy}")
        )
    return "\n".join(lines)


# -- snapshots ---------------------------------------------------------------------
def snapshots_json(state_dir: str, entries: list[tuple[str, Snapshot | None, str]]) -> dict:
    return {
        "state_dir": state_dir,
        "snapshots": [
            snap.summary() if snap else {"id": sid, "status": "corrupt", "error": err} for sid, snap, err in entries
        ],
    }


def snapshots_text(out: Output, entries: list[tuple[str, Snapshot | None, str]], snapshots_dir: str) -> str:
    if not entries:
        return f"no snapshots in {snapshots_dir}"
    rows = []
    for sid, snap, err in entries:
        if snap is None:
            rows.append([sid, "-", "-", "-", out.paint("corrupt") + f": {err}"])
            continue
        keys = ", ".join(k.rsplit(".", 1)[-1] for k in snap.keys)
        status = snap.status + (" +sysctl.d" if snap.persist else "")
        rows.append([sid, snap.summary()["created_utc"], snap.profile, f"{len(snap.keys)}: {keys}", status])
    caps = {} if out.width else {3: 50}
    return out.table(["id", "time (UTC)", "profile", "keys", "status"], rows, flexible=(3, 4), caps=caps)
