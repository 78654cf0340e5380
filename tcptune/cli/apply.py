"""Commands apply, rollback and snapshots.

The plan is pure (tcptune.core.plan), precedence is pure (tcptune.core.boot_precedence), and all
writes go through tcptune.host.transaction / tcptune.host.sysctld_files.  This module parses
options, asks for confirmation and renders.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, RootOpt, emit_json, open_source, use_color
from tcptune.errors import ExitCode, TcptuneError

STATE_PANEL = "State and persistence"

StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        metavar="DIR",
        help="Where snapshots and the lock live (default $TCPTUNE_STATE_DIR, else /var/lib/tcptune).",
        rich_help_panel=STATE_PANEL,
    ),
]
LockTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        metavar="SECONDS",
        min=0,
        help="How long to wait for another apply/rollback to finish before giving up (exit 1).",
        rich_help_panel=STATE_PANEL,
    ),
]


ForceApplyOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="With --persist: replace a --persist-file that tcptune did not write (its text is kept in the snapshot).",
        rich_help_panel=STATE_PANEL,
    ),
]
ForceRollbackOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Put the old sysctl.d file back even though it was changed after the apply (the current one is kept in STATE/replaced/).",
        rich_help_panel=STATE_PANEL,
    ),
]


def _on_wait(msg: str) -> None:
    typer.echo(f"tcptune: {msg}", err=True)


def _release(host):
    from tcptune.host.source import kernel_version

    return kernel_version(host)


def _load_profile(spec: str, host):
    from tcptune.core.profile import load_profile
    from tcptune.kernel.kb import load_kb

    return load_profile(spec, kb=load_kb(), kernel_release=_release(host), known_keys=host.list_sysctls())


def _confirm(question: str) -> bool:
    """Ask on the terminal; refuse (exit 2) when there is none rather than guess."""
    if sys.stdin is None or not sys.stdin.isatty():
        raise TcptuneError(
            "refusing to change sysctls without confirmation: stdin is not a terminal; nothing was changed",
            ExitCode.BAD_INPUT,
            hint="pass --yes to confirm non-interactively, or --dry-run to only see the plan",
        )
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _print_plan(plan, header: str) -> None:
    from tcptune.core.plan import render_plan_rows, summarize
    from tcptune.render import render_table

    typer.echo(header)
    if plan:
        typer.echo(
            render_table(
                ["key", "current", "new", "action", "reason"],
                render_plan_rows(plan),
                maxcolwidths=[None, 24, 24, None, 50],
            )
        )
    counts = summarize(plan)
    line = f"{counts['change']} to change, {counts['same']} already set, {counts['missing']} absent on this kernel (skipped)"
    if counts.get("read-only"):
        line += f", {counts['read-only']} read-only in this network namespace (skipped)"
    typer.echo(line)


def _persist_preview(profile, plan, persist_root: Path, persist_file: str):
    """(file text, BootState with that text in place, [override], problem or None) — nothing written."""
    from tcptune import __version__
    from tcptune.core.boot_precedence import find_overrides, own_file_problem, render_own_file
    from tcptune.core.plan import MISSING
    from tcptune.host.sysctld_files import boot_state

    text = render_own_file(
        [(c.key, c.new, c.reason) for c in plan if c.status != MISSING],
        profile=profile.name,
        origin=str(profile.origin),
        version=__version__,
    )
    state = boot_state(persist_root, list(profile.settings), override=(persist_file, text))
    problem = own_file_problem(state.files, persist_file, state.loader)
    # Only the profile's keys: other keys the two loaders disagree on are not this apply's business.
    state.disagreements = [d for d in state.disagreements if d.key in profile.settings]
    return text, state, find_overrides(state, persist_file), problem


@app.command("apply")
def apply_cmd(
    profile: Annotated[str, typer.Argument(metavar="PROFILE", help="Profile name or path to a .toml file.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan (and with --persist the sysctl.d effect) and stop; exit 0.")
    ] = False,
    persist: Annotated[
        bool, typer.Option("--persist", help="Also write tcptune's sysctl.d file so the profile survives reboot.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed when stdin is not a terminal).")
    ] = False,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    netns: NetnsOpt = None,
    state_dir: StateDirOpt = None,
    persist_root: Annotated[
        Path | None,
        typer.Option(
            "--persist-root",
            metavar="DIR",
            help="Root of the file system whose sysctl.d tree is read and written (default: --root, else /).",
            rich_help_panel=STATE_PANEL,
        ),
    ] = None,
    persist_file: Annotated[
        str,
        typer.Option(
            "--persist-file",
            metavar="PATH",
            help="tcptune's sysctl.d file, as seen from the persist root.",
            rich_help_panel=STATE_PANEL,
        ),
    ] = "/etc/sysctl.d/90-tcptune.conf",
    force: ForceApplyOpt = False,
    lock_timeout: LockTimeoutOpt = 30.0,
) -> None:
    """Apply a profile as a transaction: plan, confirm, lock, snapshot, write, read back.

    If any write or read-back fails, every key already written is put back and the
    command exits 1 naming the key and value.  Keys this kernel lacks are skipped
    (fatal only when the profile marks them required).  Prints the snapshot id;
    `tcptune rollback ID` undoes it.

    Exit 0 applied (or nothing to do, or --dry-run), 1 a write was rejected and
    rolled back, 2 bad input or no confirmation, 3 not root / read-only /proc/sys.

    Examples: tcptune apply web-server --dry-run;  tcptune apply web-server --persist --yes
    """
    from tcptune.core.plan import CHANGE, MISSING, plan_apply, plan_differences, skipped, summarize
    from tcptune.host.transaction import (
        ConfirmedPlan,
        PersistRequest,
        StateDir,
        apply_profile,
        check_can_write,
        check_required,
        read_only_keys,
        resolve_state_dir,
        unfinished_snapshots,
    )

    if persist and netns and persist_root is None:
        raise TcptuneError(
            "--persist with --netns would write this machine's sysctl.d, which configures the host's namespace at boot, not that one",
            ExitCode.BAD_INPUT,
            hint="pass --persist-root DIR (the container's root) or drop --persist",
        )
    if not persist_file.startswith("/"):
        raise TcptuneError(
            f"--persist-file {persist_file}: must be an absolute path",
            ExitCode.BAD_INPUT,
            hint="e.g. /etc/sysctl.d/90-tcptune.conf",
        )
    if persist:
        from tcptune.host.sysctld_files import check_own_file_path

        check_own_file_path(persist_file)
    host = open_source(root, None, netns)
    prof = _load_profile(profile, host)
    current = host.read_sysctls(prof.settings.keys())
    plan = plan_apply(current, prof, read_only_keys(host, current))
    counts = summarize(plan)
    proot = Path(persist_root or root or "/")

    preview = _persist_preview(prof, plan, proot, persist_file) if persist else None
    notes = [n for n in [prof.kernel_mismatch(_release(host))] if n]
    warnings: list[str] = []  # printed on stderr as they come, and listed in the JSON

    def persist_json(written: bool):
        if preview is None:
            return None
        text, state, overrides, problem = preview
        return {
            "root": str(proot),
            "path": persist_file,
            "written": written,
            "loader": state.loader,
            "loader_reason": state.loader_reason,
            "loader_disagreements": [d.to_json() for d in state.disagreements],
            "boot_values": {k: state.values[k].to_json() for k in prof.settings if k in state.values},
            "overrides": [o.to_json() for o in overrides],
            "problems": [problem] if problem else [],
            "warnings": state.warnings,
        }

    def result_json(result: str, snap=None, written=(), skipped_keys=None, persisted=False):
        return {
            "profile": prof.name,
            "profile_origin": str(prof.origin),
            "target": host.label,
            "dry_run": dry_run,
            "result": result,
            "changes": [c.to_json() for c in plan],
            "summary": counts,
            "snapshot": snap.id if snap else None,
            "undo": f"tcptune rollback {snap.id}" if snap else None,
            "written": list(written),
            "skipped": list(skipped_keys) if skipped_keys is not None else skipped(plan),
            "persist": persist_json(persisted),
            "notes": notes,
            "warnings": warnings,
        }

    if not json_out:
        _print_plan(plan, f"plan for {host.label}, profile {prof.name} ({prof.origin}):")
        for n in notes:
            typer.echo(f"note: {n}")
        if preview is not None:
            from tcptune.core.boot_precedence import LOADERS

            typer.echo(
                f"persist: {persist_file} under {proot} ({len(preview[0].splitlines())} lines); "
                f"loaded at boot by {LOADERS[preview[1].loader]} ({preview[1].loader_reason})"
            )
    if preview is not None:
        # Boot-time overrides go to stderr in both modes, so --json stdout stays one document.
        text, bstate, overrides, problem = preview
        for msg in (
            ([problem] if problem else [])
            + [o.message() for o in overrides]
            + [d.message() for d in bstate.disagreements]
            + bstate.warnings
        ):
            typer.echo(f"warning: {msg}", err=True)

    if dry_run:
        if preview is not None:
            from tcptune.host.sysctld_files import check_own_file

            try:  # what a real run would refuse, said now rather than after the confirmation
                check_own_file(proot, persist_file, force=force)
            except TcptuneError as exc:
                warnings.append(f"a real run would stop here: {exc}")
                typer.echo(f"warning: {warnings[-1]}", err=True)
        if json_out:
            emit_json(result_json("dry-run"))
        else:
            typer.echo("dry run: nothing was changed")
        return
    check_required(prof, plan)
    needs_file = False
    file_before = None
    if preview is not None:
        from tcptune.host.sysctld_files import check_own_file

        # Refuse a symlink / someone else's file now, before asking (apply checks again under the lock).
        file_before = check_own_file(proot, persist_file, force=force)
        needs_file = file_before != preview[0]
    if counts[CHANGE] == 0 and not needs_file:
        if json_out:
            emit_json(result_json("nothing-to-do"))
        else:
            typer.echo("nothing to do: every key already has the profile's value")
        return
    first = next((c.key for c in plan if c.status == CHANGE), None)
    check_can_write(host, first)
    state = StateDir(resolve_state_dir(state_dir))
    for snap in unfinished_snapshots(state, host):
        # Its saved values are the ones from before that apply: applying again does not
        # bring them back, only rolling it back does.  Warn, do not refuse (the snapshot stays).
        msg = (
            f"snapshot {snap.id} ({snap.profile}, {snap.summary()['created_utc']}) is {snap.status}: an earlier apply "
            f"on this target did not finish; the values from before it are restored only by `tcptune rollback {snap.id}`"
        )
        warnings.append(msg)
        typer.echo(f"warning: {msg}", err=True)
    confirmed = None
    if not yes:
        what = f"{counts[CHANGE]} sysctl(s) on {host.label}" + (f" and {persist_file}" if needs_file else "")
        if not _confirm(f"Apply profile {prof.name}: change {what}?"):
            raise TcptuneError("not confirmed; nothing was changed", ExitCode.BAD_INPUT)
        confirmed = ConfirmedPlan(plan, preview[0] if preview else None, file_before)

    def persist_request(plan_now):
        from tcptune import __version__
        from tcptune.core.boot_precedence import render_own_file

        text = render_own_file(
            [(c.key, c.new, c.reason) for c in plan_now if c.status != MISSING],
            profile=prof.name,
            origin=str(prof.origin),
            version=__version__,
        )
        return PersistRequest(proot, persist_file, text)

    res = apply_profile(
        host,
        state,
        prof,
        persist=persist_request if persist else None,
        force=force,
        confirmed=confirmed,
        lock_timeout=lock_timeout,
        on_wait=_on_wait,
    )
    shown, plan = plan, res.plan  # re-planned under the lock
    counts = summarize(plan)
    diffs = plan_differences(shown, plan)
    if diffs:  # only with --yes: a confirmed plan that changed was refused above
        msg = (
            "the plan re-made under the lock differs from the one shown (another apply ran meanwhile): "
            + "; ".join(diffs)
            + "; applied the new one"
        )
        warnings.append(msg)
        typer.echo(f"warning: {msg}", err=True)
    if json_out:
        emit_json(
            result_json(
                "applied" if res.snapshot else "nothing-to-do", res.snapshot, res.written, res.skipped, res.persisted
            )
        )
        return
    if res.snapshot is None:
        typer.echo("nothing to do: every key already has the profile's value")
        return
    typer.echo(
        f"applied: {len(res.written)} key(s) written and read back"
        + (f"; wrote {persist_file}" if res.persisted else "")
    )
    for s in res.skipped:
        typer.echo(f"skipped {s['key']}: {s['reason']}")
    typer.echo(f"snapshot {res.snapshot.id} saved in {state.snapshots}")
    typer.echo(f"undo with: tcptune rollback {res.snapshot.id}")


@app.command("rollback")
def rollback_cmd(
    snapshot: Annotated[
        str | None,
        typer.Argument(metavar="[SNAPSHOT]", help="Snapshot id (see `tcptune snapshots`); default: the latest."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be restored and stop.")] = False,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    netns: NetnsOpt = None,
    state_dir: StateDirOpt = None,
    force: ForceRollbackOpt = False,
    lock_timeout: LockTimeoutOpt = 30.0,
) -> None:
    """Restore the values a snapshot saved before its apply (and its sysctl.d file, if it persisted).

    Same transaction rules as apply: lock, write, read back, and put back what it
    wrote if a write fails.  Keys already at their snapshot value are left alone,
    so restoring twice is harmless.  A corrupt snapshot is refused (exit 2) and kept.

    Examples: tcptune rollback;  tcptune rollback 20261121T190512Z-3f9a0c --json
    """
    from tcptune.core.plan import summarize
    from tcptune.host.transaction import StateDir, check_can_write, resolve_state_dir, rollback_snapshot

    host = open_source(root, None, netns)
    state = StateDir(resolve_state_dir(state_dir))
    if not dry_run:
        check_can_write(host, None)
    res = rollback_snapshot(
        host, state, snapshot, force=force, lock_timeout=lock_timeout, on_wait=_on_wait, dry_run=dry_run
    )
    snap = res.snapshot
    counts = summarize(res.plan)
    if json_out:
        emit_json(
            {
                "snapshot": snap.id,
                "profile": snap.profile,
                "target": host.label,
                "dry_run": dry_run,
                "result": "dry-run" if dry_run else "rolled-back",
                "changes": [c.to_json() for c in res.plan],
                "summary": counts,
                "written": res.written,
                "skipped": res.skipped,
                "persist_restored": res.persisted,
                "persist_replaced_copy": str(res.persist_copy) if res.persist_copy else None,
                "changed_since_apply": res.changed_since_apply,
            }
        )
        return
    _print_plan(res.plan, f"rollback of snapshot {snap.id} (profile {snap.profile}) on {host.label}:")
    verb = "would overwrite" if dry_run else "overwrote"
    for c in res.changed_since_apply:
        typer.echo(
            f"note: {c['key']} was changed after the apply (apply set {c['after'] or '(empty)'}, now {c['current'] or '(empty)'}); "
            f"rollback {verb} it with {c['before'] or '(empty)'}"
        )
    if dry_run:
        typer.echo("dry run: nothing was changed")
        return
    typer.echo(
        f"rolled back: {len(res.written)} key(s) restored, {counts['same']} already had the snapshot value"
        + (
            ""
            if not res.persisted
            else f"; removed {snap.persist['path']} (it did not exist before)"
            if snap.persist["before"] is None
            else f"; restored the previous {snap.persist['path']}"
        )
    )
    if res.persist_copy:
        typer.echo(f"the {snap.persist['path']} it replaced (changed after the apply) is kept in {res.persist_copy}")


@app.command("snapshots")
def snapshots_cmd(
    json_out: JsonOpt = False,
    state_dir: StateDirOpt = None,
) -> None:
    """List snapshots, oldest first: id, time (UTC), profile, keys, status.

    Status: pending (apply did not finish: roll it back), applied, failed (a write
    was rejected and everything was put back), restore-incomplete, rolled-back.
    """
    from tcptune.host.transaction import StateDir, resolve_state_dir

    state = StateDir(resolve_state_dir(state_dir))
    entries = state.list()
    if json_out:
        out = []
        for sid, snap, err in entries:
            out.append(snap.summary() if snap else {"id": sid, "status": "corrupt", "error": err})
        emit_json({"state_dir": str(state.path), "snapshots": out})
        return
    if not entries:
        typer.echo(f"no snapshots in {state.snapshots}")
        return
    from tcptune.render import colorize, render_table

    color = use_color()
    rows = []
    for sid, snap, err in entries:
        if snap is None:
            rows.append([sid, "-", "-", "-", colorize("corrupt", color) + f": {err}"])
            continue
        s = snap.summary()
        keys = ", ".join(k.rsplit(".", 1)[-1] for k in snap.keys)
        rows.append(
            [
                sid,
                s["created_utc"],
                snap.profile,
                f"{len(snap.keys)}: {keys}",
                snap.status + (" +sysctl.d" if snap.persist else ""),
            ]
        )
    typer.echo(
        render_table(["id", "time (UTC)", "profile", "keys", "status"], rows, maxcolwidths=[None, None, None, 50, None])
    )
