"""`tcptune apply`: plan a profile, then carry the plan out as one transaction.

``prepare_apply`` reads and plans (nothing is written): the per-key plan, and with --persist
the sysctl.d text, its effect at boot and whether the file there may be replaced.
``apply_profile`` is the transaction, in order:

  1. take the target's lock, then the state directory's (tcptune.ops.transaction.locks);
  2. re-read the live values and re-plan (another apply may have run while we waited);
     a plan the user confirmed that has changed stops here (exit 1);
  3. write the snapshot (every key it will change, with its value before, and the
     sysctl.d file's previous text) and fsync it: nothing is written before the old
     values are on disk; it is loaded back through rollback's own checks first;
  4. run the steps: every key (write, read back, compare), then tcptune's sysctl.d
     file; on the first failure or signal every step started is put back;
  5. mark the snapshot applied (or failed) and release the locks.  If that last save
     fails (a full disk), the values ARE applied and the pending snapshot on disk still
     undoes them: exit 1 saying so, with the undo command.

A process killed between 3 and 5 leaves a snapshot in state "pending" that
`tcptune rollback` restores.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tcptune.core.boot_precedence import BootState, Override, find_overrides, own_file_problem, render_own_file
from tcptune.core.plan import (
    CHANGE,
    MISSING,
    Change,
    missing_required,
    plan_apply,
    plan_differences,
    skipped,
    summarize,
)
from tcptune.core.snapshot import APPLIED, FAILED, INCOMPLETE, Snapshot, utc_stamp
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.privileges import check_can_write, read_only_keys
from tcptune.host.statedir import StateDir
from tcptune.host.sysctld_files import boot_state, check_own_file, check_own_file_path
from tcptune.ops.snapshots import unfinished_snapshots
from tcptune.ops.transaction import Outcome, Result, SignalGuard, file_step, key_step, locks, run_steps


@dataclass
class PersistRequest:
    root: Path
    path: str  # as seen from root, e.g. /etc/sysctl.d/90-tcptune.conf
    text: str  # the new file


@dataclass(frozen=True)
class ConfirmedPlan:
    """What the user saw and said yes to, before the lock: the plan and (with --persist)
    the file text it would write and the text it would replace."""

    plan: list[Change]
    persist_text: str | None = None
    persist_before: str | None = None


@dataclass
class PersistPreview:
    """What --persist would write, and what the boot loader would make of it."""

    request: PersistRequest
    boot: BootState
    overrides: list[Override]
    problem: str | None  # why the file would not be read at boot at all
    before: str | None = None  # the text it replaces (None: no file)
    refusal: TcptuneError | None = None  # why a real run would not replace the file there

    @property
    def needs_write(self) -> bool:
        return self.refusal is None and self.before != self.request.text

    def warnings(self) -> list[str]:
        """Boot-time problems, overrides and loader disagreements, one sentence each."""
        return (
            ([self.problem] if self.problem else [])
            + [o.message() for o in self.overrides]
            + [d.message() for d in self.boot.disagreements]
            + self.boot.warnings
        )


@dataclass
class ApplyPlan:
    """Everything `apply` shows before it asks: nothing has been written."""

    host: object
    profile: object
    plan: list[Change]
    persist: PersistPreview | None
    notes: list[str]
    warnings: list[str] = field(default_factory=list)  # said as they come, and listed in the JSON

    @property
    def counts(self) -> dict[str, int]:
        return summarize(self.plan)

    @property
    def nothing_to_do(self) -> bool:
        return self.counts[CHANGE] == 0 and not (self.persist and self.persist.needs_write)

    def confirmed(self) -> ConfirmedPlan:
        p = self.persist
        return ConfirmedPlan(self.plan, p.request.text if p else None, p.before if p else None)


@dataclass
class ApplyDone:
    result: Result
    shown_plan_differs: list[str]  # with --yes: how the plan re-made under the lock differs


def check_persist_options(persist: bool, netns: str | None, persist_root: Path | None, persist_file: str) -> None:
    """Refuse (exit 2, before anything is read) persist options that cannot be right."""
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
        check_own_file_path(persist_file)


def load_profile_for(host, spec: str):
    """The profile ``spec``, validated against ``host``'s kernel and keys."""
    from tcptune.host.profile_files import load_profile
    from tcptune.host.source import kernel_version
    from tcptune.kernel.kb import load_kb

    return load_profile(spec, kb=load_kb(), kernel_release=kernel_version(host), known_keys=host.list_sysctls())


def own_file_text(profile, plan: list[Change]) -> str:
    """tcptune's sysctl.d file for ``plan``: every key the kernel has, even those already set."""
    from tcptune import __version__

    return render_own_file(
        [(c.key, c.new, c.reason) for c in plan if c.status != MISSING],
        profile=profile.name,
        origin=str(profile.origin),
        version=__version__,
    )


def _preview(profile, plan: list[Change], root: Path, path: str, force: bool) -> PersistPreview:
    text = own_file_text(profile, plan)
    state = boot_state(root, list(profile.settings), override=(path, text))
    problem = own_file_problem(state.files, path, state.loader)
    # Only the profile's keys: other keys the two loaders disagree on are not this apply's business.
    state.disagreements = [d for d in state.disagreements if d.key in profile.settings]
    preview = PersistPreview(PersistRequest(root, path, text), state, find_overrides(state, path), problem)
    try:  # what a real run would refuse, known now rather than after the confirmation
        preview.before = check_own_file(root, path, force=force)
    except TcptuneError as exc:
        preview.refusal = exc
    return preview


def prepare_apply(host, profile, *, persist_root: Path | None, persist_file: str, force: bool = False) -> ApplyPlan:
    """Read and plan; ``persist_root`` None: no --persist."""
    from tcptune.host.source import kernel_version

    current = host.read_sysctls(profile.settings.keys())
    plan = plan_apply(current, profile, read_only_keys(host, current))
    preview = _preview(profile, plan, persist_root, persist_file, force) if persist_root is not None else None
    notes = [n for n in [profile.kernel_mismatch(kernel_version(host))] if n]
    return ApplyPlan(host, profile, plan, preview, notes)


def check_required(profile, plan: list[Change]) -> None:
    """Stop before anything is written when a required key cannot be set here."""
    bad = missing_required(plan)
    if not bad:
        return
    absent = [c.key for c in bad if c.status == MISSING]
    ro = [c.key for c in bad if c.status != MISSING]
    if absent:
        raise TcptuneError(
            f"profile {profile.name} requires {', '.join(absent)}, which this kernel lacks; nothing was changed",
            ExitCode.BAD_INPUT,
            hint="use a profile made for this kernel, or make the key optional in the profile",
        )
    raise TcptuneError(
        f"profile {profile.name} requires {', '.join(ro)}, which is read-only here; nothing was changed",
        ExitCode.PRIVILEGES,
        hint="global keys can only be set in the host's initial network namespace",
    )


def check_ready(ap: ApplyPlan, state: StateDir) -> None:
    """What a real run refuses before it asks (required keys, the sysctl.d file, rights),
    and a warning per unfinished earlier apply on this target.  Call only when there is
    something to do."""
    check_can_write(ap.host, next(c.key for c in ap.plan if c.status == CHANGE) if ap.counts[CHANGE] else None)
    for snap in unfinished_snapshots(state, ap.host):
        # Its saved values are the ones from before that apply: applying again does not
        # bring them back, only rolling it back does.  Warn, do not refuse (the snapshot stays).
        ap.warnings.append(
            f"snapshot {snap.id} ({snap.profile}, {utc_stamp(snap.created)}) is {snap.status}: an earlier apply "
            f"on this target did not finish; the values from before it are restored only by `tcptune rollback {snap.id}`"
        )


def check_refusals(ap: ApplyPlan) -> None:
    check_required(ap.profile, ap.plan)
    if ap.persist is not None and ap.persist.refusal is not None:
        # A symlink / someone else's file, refused before asking (apply checks again under the lock).
        raise ap.persist.refusal


def carry_out(
    ap: ApplyPlan, state: StateDir, *, confirmed: bool, force: bool, lock_timeout: float, on_wait
) -> ApplyDone:
    """Run the transaction for the plan the user saw (``confirmed``: refuse a changed plan)."""
    p = ap.persist
    res = apply_profile(
        ap.host,
        state,
        ap.profile,
        persist=(lambda plan_now: PersistRequest(p.request.root, p.request.path, own_file_text(ap.profile, plan_now)))
        if p
        else None,
        force=force,
        confirmed=ap.confirmed() if confirmed else None,
        lock_timeout=lock_timeout,
        on_wait=on_wait,
    )
    return ApplyDone(res, plan_differences(ap.plan, res.plan))


def _check_unchanged(confirmed: ConfirmedPlan, plan, request, before) -> None:
    diffs = plan_differences(confirmed.plan, plan)
    if request is not None and (confirmed.persist_text, confirmed.persist_before) != (request.text, before):
        diffs.append(f"{request.path} is not what it was when the plan was shown")
    if diffs:
        more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        raise TcptuneError(
            f"the plan changed while this apply waited for the lock ({'; '.join(diffs[:3])}{more}); "
            "nothing was changed",
            ExitCode.FINDINGS,
            hint="run it again to see the new plan and confirm that one",
        )


def apply_profile(
    host,
    state: StateDir,
    profile,
    *,
    persist: Callable[[list[Change]], PersistRequest] | None = None,
    force: bool = False,
    confirmed: ConfirmedPlan | None = None,
    lock_timeout: float = 30.0,
    on_wait: Callable[[str], None] | None = None,
) -> Result:
    """Apply ``profile`` to ``host`` as one transaction (see the module docstring).

    ``persist``, given the plan made under the lock, returns what to write to sysctl.d;
    ``force`` lets it replace a file that lacks tcptune's header.  Raises TcptuneError
    after restoring everything when a step fails; the error names the key, the value
    and the snapshot.
    """
    with locks(host, state, lock_timeout, on_wait):
        current = host.read_sysctls(profile.settings.keys())
        plan = plan_apply(current, profile, read_only_keys(host, current))
        check_required(profile, plan)
        changes = [c for c in plan if c.status == CHANGE]
        request = persist(plan) if persist else None
        record = before = None
        if request is not None:
            before = check_own_file(request.root, request.path, force=force)
            if before != request.text:
                record = {
                    "root": str(Path(request.root).resolve()),
                    "path": request.path,
                    "before": before,
                    "after": request.text,
                }
        if confirmed is not None:
            _check_unchanged(confirmed, plan, request, before)
        if not changes and record is None:
            return Result(None, plan, skipped=skipped(plan))
        snap = Snapshot(
            id=state.new_id(),
            created=time.time(),
            profile=profile.name,
            origin=str(profile.origin),
            target=host.target.to_json(),
            kernel=host.kernel_release(),
            keys={c.key: {"before": c.current, "after": c.new} for c in changes},
            skipped=skipped(plan),
            persist=record,
        )
        snap.event("created", f"{len(changes)} keys to change", time.time())
        steps = [key_step(host, c.key, c.new, c.current) for c in changes]
        if record is not None:
            steps.append(file_step(request.root, request.path, request.text, before))
        with SignalGuard() as guard:
            try:
                state.save(snap)  # fsynced before the first write to /proc/sys
            except TcptuneError as exc:
                raise TcptuneError(f"{exc.message}; nothing was changed", exc.exit_code, hint=exc.hint) from None
            out = run_steps(steps, guard)
            if out.failure is not None:
                _failed(state, snap, out)
            return _applied(state, snap, plan, out, guard, request.path if record else None)


def _applied(state: StateDir, snap: Snapshot, plan, out: Outcome, guard: SignalGuard, file: str | None) -> Result:
    written = out.keys_written
    snap.status = APPLIED
    snap.event("applied", f"{len(written)} keys written" + (", sysctl.d file written" if file else ""), time.time())
    done = f"all {len(written)} key(s) ARE applied" + (f" and {file} is written" if file else "")
    try:
        state.save(snap)
    except TcptuneError as exc:
        # The pending snapshot written before the first change is still on disk and
        # holds every old value, so the undo works; only its status is stale.
        raise TcptuneError(
            f"{done}, but marking snapshot {snap.id} applied failed ({exc.message}); "
            "it stays 'pending' and still holds the previous values",
            ExitCode.FINDINGS,
            hint=f"free space in {state.path}; undo with `tcptune rollback {snap.id}`",
        ) from None
    if guard.received is not None:
        name = signal.Signals(guard.received).name
        raise TcptuneError(
            f"{name} arrived after every write had been made: {done} (snapshot {snap.id})",
            ExitCode.signal(guard.received),
            hint=f"undo with `tcptune rollback {snap.id}`",
        )
    return Result(snap, plan, written=written, skipped=skipped(plan), persisted=file is not None)


def _failed(state: StateDir, snap: Snapshot, out: Outcome) -> None:
    what, n = out.what(), len(out.keys_written)
    if out.problems:
        snap.status = INCOMPLETE
        snap.event("failed", f"{what}; could not restore: {'; '.join(out.problems)}", time.time())
        with contextlib.suppress(TcptuneError):
            state.save(snap)
        raise TcptuneError(
            f"{what}; restoring the previous values ALSO failed: {'; '.join(out.problems)}",
            ExitCode.FINDINGS if out.signum is None else ExitCode.signal(out.signum),
            hint=f"fix the cause and run `tcptune rollback {snap.id}`",
        )
    snap.status = FAILED
    snap.event("failed", f"{what}; all {n} written keys restored", time.time())
    unsaved = ""
    try:
        state.save(snap)
    except TcptuneError as exc:
        unsaved = f"; marking the snapshot failed did not work ({exc.message}), it stays pending and rolling it back changes nothing"
    code = out.failure.exit_code if out.failure.exit_code != ExitCode.OK else ExitCode.FINDINGS
    raise TcptuneError(
        f"{what}; restored the {n} key(s) already written, the host is as before (snapshot {snap.id}){unsaved}",
        code,
        hint=out.failure.hint,
    )
