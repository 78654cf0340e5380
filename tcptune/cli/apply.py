"""Commands apply, rollback and snapshots: options -> tcptune.ops -> tcptune.render.apply.

The use cases live in tcptune.ops.apply / ops.rollback; this module parses options, asks for
confirmation on the terminal and picks the exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tcptune.cli import completion
from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, RootOpt, _not_empty, open_source
from tcptune.errors import ExitCode, TcptuneError

STATE_PANEL = "State and persistence"


def _dir_arg(option: str):
    """A DIR option that refuses "" (Path("") is ".", the current directory: --persist-root ""
    would have defeated the refusal of --persist with --netns)."""
    check = _not_empty(option, "a directory", "the default")

    def parse(value: str) -> Path:
        return Path(check(value))

    parse.__name__ = check.__name__
    return parse


StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        metavar="DIR",
        parser=_dir_arg("--state-dir"),
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


def _warn(msg: str) -> None:
    typer.echo(f"warning: {msg}", err=True)


def _output():
    from tcptune.render.output import Output

    return Output.detect(sys.stdout)


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


PersistRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--persist-root",
        metavar="DIR",
        parser=_dir_arg("--persist-root"),
        help="Root of the file system whose sysctl.d tree is read and written (default: --root, else /).",
        rich_help_panel=STATE_PANEL,
    ),
]
PersistFileOpt = Annotated[
    str,
    typer.Option(
        "--persist-file",
        metavar="PATH",
        help="tcptune's sysctl.d file, as seen from the persist root.",
        rich_help_panel=STATE_PANEL,
    ),
]


ApplyDryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show the plan (and with --persist the sysctl.d effect) and stop; exit 0.")
]
PersistOpt = Annotated[
    bool, typer.Option("--persist", help="Also write tcptune's sysctl.d file so the profile survives reboot.")
]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed when stdin is not a terminal).")
]


@app.command("apply")
def apply_cmd(
    profile: Annotated[
        str,
        typer.Argument(
            metavar="PROFILE", help="Profile name or path to a .toml file.", autocompletion=completion.profile_names
        ),
    ],
    dry_run: ApplyDryRunOpt = False,
    persist: PersistOpt = False,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    netns: NetnsOpt = None,
    state_dir: StateDirOpt = None,
    persist_root: PersistRootOpt = None,
    persist_file: PersistFileOpt = "/etc/sysctl.d/90-tcptune.conf",
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
    from tcptune.ops import apply as ops

    ops.check_persist_options(persist, netns, persist_root, persist_file)
    host = open_source(root, None, netns)
    proot = Path(persist_root or root or "/") if persist else None
    ap = ops.prepare_apply(
        host, ops.load_profile_for(host, profile), persist_root=proot, persist_file=persist_file, force=force
    )
    out = _output()
    if not json_out:
        typer.echo(_render().apply_header(out, ap))
    for msg in ap.persist.warnings() if ap.persist else ():
        _warn(msg)  # boot-time overrides go to stderr in both modes: --json stdout stays one document
    if dry_run:
        return _dry_run(out, ap, json_out)
    ops.check_refusals(ap)
    if ap.nothing_to_do:
        return _say(out, ap, json_out, "nothing-to-do", _render().NOTHING_TO_DO)
    _apply(out, ap, json_out, state_dir, yes=yes, force=force, lock_timeout=lock_timeout)


def _render():
    from tcptune.render import apply

    return apply


def _say(out, ap, json_out: bool, result: str, text: str, *, dry_run: bool = False) -> None:
    if json_out:
        sys.stdout.write(out.json(_render().apply_json(ap, result, dry_run=dry_run)))
    else:
        typer.echo(text)


def _dry_run(out, ap, json_out: bool) -> None:
    if ap.persist is not None and ap.persist.refusal is not None:
        ap.warnings.append(f"a real run would stop here: {ap.persist.refusal}")
        _warn(ap.warnings[-1])
    _say(out, ap, json_out, "dry-run", "dry run: nothing was changed", dry_run=True)


def _apply(out, ap, json_out: bool, state_dir, *, yes: bool, force: bool, lock_timeout: float) -> None:
    from tcptune.host.statedir import StateDir, resolve_state_dir
    from tcptune.ops import apply as ops

    state = StateDir(resolve_state_dir(state_dir))
    ops.check_ready(ap, state)
    for msg in ap.warnings:
        _warn(msg)
    if not yes:
        file = f" and {ap.persist.request.path}" if ap.persist and ap.persist.needs_write else ""
        if not _confirm(
            f"Apply profile {ap.profile.name}: change {ap.counts['change']} sysctl(s) on {ap.host.label}{file}?"
        ):
            raise TcptuneError("not confirmed; nothing was changed", ExitCode.BAD_INPUT)
    done = ops.carry_out(ap, state, confirmed=not yes, force=force, lock_timeout=lock_timeout, on_wait=_on_wait)
    if done.shown_plan_differs:  # only with --yes: a confirmed plan that changed was refused
        ap.warnings.append(
            "the plan re-made under the lock differs from the one shown (another apply ran meanwhile): "
            + "; ".join(done.shown_plan_differs)
            + "; applied the new one"
        )
        _warn(ap.warnings[-1])
    res, render = done.result, _render()
    if json_out:
        word = "applied" if res.snapshot else "nothing-to-do"
        sys.stdout.write(out.json(render.apply_json(ap, word, dry_run=False, res=res)))
    else:
        typer.echo(render.applied_text(out, res, str(state.snapshots)))


@app.command("rollback")
def rollback_cmd(
    snapshot: Annotated[
        str | None,
        typer.Argument(
            metavar="[SNAPSHOT]",
            help="Snapshot id (see `tcptune snapshots`); default: the latest.",
            autocompletion=completion.snapshot_ids,
        ),
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
    from tcptune.host.privileges import check_can_write
    from tcptune.host.statedir import StateDir, resolve_state_dir
    from tcptune.ops.rollback import rollback_snapshot

    host = open_source(root, None, netns)
    state = StateDir(resolve_state_dir(state_dir))
    if not dry_run:
        check_can_write(host, None)
    res = rollback_snapshot(
        host, state, snapshot, force=force, lock_timeout=lock_timeout, on_wait=_on_wait, dry_run=dry_run
    )
    out, render = _output(), _render()
    if json_out:
        sys.stdout.write(out.json(render.rollback_json(res, host.label, dry_run)))
    else:
        typer.echo(render.rollback_text(out, res, host.label, dry_run))


@app.command("snapshots")
def snapshots_cmd(
    json_out: JsonOpt = False,
    state_dir: StateDirOpt = None,
) -> None:
    """List snapshots, oldest first: id, time (UTC), profile, keys, status.

    Status: pending (apply did not finish: roll it back), applied, failed (a write
    was rejected and everything was put back), restore-incomplete, rolled-back.

    Examples: tcptune snapshots;  tcptune snapshots --json --state-dir /srv/tcptune-state
    """
    from tcptune.host.statedir import StateDir, resolve_state_dir

    state = StateDir(resolve_state_dir(state_dir))
    entries = state.list()
    out, render = _output(), _render()
    if json_out:
        sys.stdout.write(out.json(render.snapshots_json(str(state.path), entries)))
    else:
        typer.echo(render.snapshots_text(out, entries, str(state.snapshots)))
