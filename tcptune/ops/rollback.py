"""`tcptune rollback`: put back what a snapshot saved, as a transaction like apply.

Live keys someone changed after the apply are still restored (that is what rollback is
for) but listed in ``changed_since_apply``.  tcptune's sysctl.d file is only put back over
exactly what apply wrote; otherwise the rollback is refused before anything is written,
unless ``force``.  The snapshot was validated whole when it was loaded, and a failed
rollback puts back every key (and the file) it had written: all or nothing.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from tcptune.core.plan import CHANGE, changed_since_apply, plan_restore, skipped
from tcptune.core.snapshot import ROLLED_BACK, Snapshot, persist_basename
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.statedir import StateDir
from tcptune.host.sysctld_files import clean_own_temps, own_file_state
from tcptune.ops.snapshots import check_same_target, latest_snapshot
from tcptune.ops.transaction import Result, SignalGuard, file_step, key_step, locks, run_steps


def _persist_action(snap: Snapshot, force: bool) -> tuple[str, str | None]:
    """("none" | "restore" | "replace", the text there now) for the snapshot's sysctl.d file.

    Already the old text (or absent, as before): nothing to do, so rolling back twice is
    harmless.  Exactly what apply wrote: restore.  Anything else (a line added by hand,
    another tool's rewrite) is refused unless ``force``, and then the replaced text is
    kept in STATE/replaced.
    """
    p = snap.persist
    cur = own_file_state(Path(p["root"]), p["path"])
    where = p["path"] if p["root"] == "/" else f"{p['path']} under {p['root']}"
    if cur.kind == "symlink" or cur.kind == "other":
        raise TcptuneError(
            f"{where} is now {cur.describe()}, not the file apply {snap.id} wrote; nothing was changed",
            ExitCode.FINDINGS,
            hint="tcptune never replaces a link; remove or fix it by hand, then roll back again",
        )
    if cur.text == p["before"]:
        return "none", cur.text
    if cur.text == p["after"]:
        return "restore", cur.text
    if not force:
        what = "was removed" if cur.kind == "absent" else "was changed"
        raise TcptuneError(
            f"{where} {what} after apply {snap.id} (it no longer holds what tcptune wrote); refusing to "
            f"{'remove' if p['before'] is None else 'replace'} it, nothing was changed",
            ExitCode.FINDINGS,
            hint=f"look at it, then `tcptune rollback {snap.id} --force` puts the old file back anyway and keeps a copy of this one in the state directory",
        )
    return "replace", cur.text


def _pick(state: StateDir, host, sid: str | None) -> Snapshot:
    snap = state.load(sid) if sid else latest_snapshot(state, host)
    check_same_target(snap, host)
    return snap


def rollback_snapshot(
    host,
    state: StateDir,
    sid: str | None,
    *,
    force: bool = False,
    lock_timeout: float = 30.0,
    on_wait=None,
    dry_run: bool = False,
) -> Result:
    """Restore snapshot ``sid`` (default: the latest of this target) as a transaction."""
    if dry_run:
        snap = _pick(state, host, sid)
        current = host.read_sysctls(snap.before_values())
        plan = plan_restore(current, snap.before_values())
        return Result(snap, plan, changed_since_apply=changed_since_apply(current, snap.keys))
    with locks(host, state, lock_timeout, on_wait, create=False), SignalGuard() as guard:
        snap = _pick(state, host, sid)
        saved = snap.before_values()
        current = host.read_sysctls(saved)
        plan = plan_restore(current, saved)
        changed = changed_since_apply(current, snap.keys)
        steps = [key_step(host, c.key, c.new, current.get(c.key)) for c in plan if c.status == CHANGE]
        action, now_text = _persist_action(snap, force) if snap.persist is not None else ("none", None)
        copy = None
        if snap.persist is not None:
            root, path = Path(snap.persist["root"]), snap.persist["path"]
            clean_own_temps(root, path)  # a temp file an apply killed mid-write left behind
            if action != "none":
                if action == "replace" and now_text is not None:
                    copy = state.keep_copy(snap.id, persist_basename(snap), now_text)
                steps.append(file_step(root, path, snap.persist["before"], now_text))
        out = run_steps(steps, guard)
        written = out.keys_written
        if out.failure is not None:
            exc = out.failure
            snap.event("rollback-failed", str(exc), time.time())
            with contextlib.suppress(TcptuneError):
                state.save(snap)
            if out.problems:
                raise TcptuneError(
                    f"rollback of {snap.id} failed: {exc}; putting the previous values back ALSO failed: {'; '.join(out.problems)}",
                    ExitCode.FINDINGS,
                ) from exc
            raise TcptuneError(
                f"rollback of {snap.id} failed: {exc}; the {len(written)} key(s) it had written were put back",
                exc.exit_code,
                hint=exc.hint,
            ) from exc
        snap.status = ROLLED_BACK
        detail = f"{len(written)} keys written"
        if changed:
            detail += "; changed after the apply and restored anyway: " + ", ".join(c["key"] for c in changed)
        if action != "none":
            detail += ", sysctl.d file restored" + (
                f" (the file it replaced is kept in {copy})" if copy else " (forced)" if action == "replace" else ""
            )
        snap.event("rolled-back", detail, time.time())
        state.save(snap)
        return Result(
            snap,
            plan,
            written=written,
            skipped=skipped(plan),
            persisted=action != "none",
            changed_since_apply=changed,
            persist_copy=copy,
        )
