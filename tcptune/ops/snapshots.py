"""Which snapshots belong to this target, and which one plain `tcptune rollback` restores."""

from __future__ import annotations

from tcptune.core.snapshot import ROLLBACK_CANDIDATES, UNFINISHED, Snapshot, describe_target, same_target
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.statedir import StateDir


def unfinished_snapshots(state: StateDir, host) -> list[Snapshot]:
    """Snapshots of this target whose apply never finished (pending) or could not put
    everything back (restore-incomplete): the values they saved are only restored by
    rolling them back.  Under the locks nothing else can be mid-apply on this target,
    so a pending one belongs to a process that is gone.  A corrupt file is skipped here
    (`snapshots` lists it): one bad file must not stop every apply."""
    here = host.target.to_json()
    return [
        snap
        for _, snap, _ in state.list()
        if snap is not None and snap.status in UNFINISHED and same_target(snap.target, here)
    ]


def latest_snapshot(state: StateDir, host) -> Snapshot:
    """What plain `tcptune rollback` restores: the newest (by creation time) snapshot of
    THIS target that is applied, pending or restore-incomplete.  Failed ones (already
    put back) and rolled-back ones are skipped.  A corrupt file that may be newer stops
    it (exit 2) rather than silently restoring an older snapshot."""
    entries = state.list()
    if not entries:
        raise TcptuneError(
            f"no snapshots in {state.snapshots}", ExitCode.BAD_INPUT, hint="apply writes one; see --state-dir"
        )
    here = host.target.to_json()
    valid = [snap for _, snap, _ in entries if snap is not None]
    candidates = [s for s in valid if same_target(s.target, here) and s.status in ROLLBACK_CANDIDATES]
    corrupt = [(sid, err) for sid, snap, err in entries if snap is None]
    best = max(candidates, key=lambda s: (s.created, s.id)) if candidates else None
    # Ids start with the creation time to the second: a corrupt file named after the
    # best candidate's second (or later) may well be the one meant.
    newer_corrupt = [(sid, err) for sid, err in corrupt if best is None or sid[:16] >= best.id[:16]]
    if newer_corrupt:
        sid, err = newer_corrupt[-1]
        raise TcptuneError(
            err,
            ExitCode.BAD_INPUT,
            hint="it may be the latest snapshot; inspect it, or pass the id to roll back explicitly (`tcptune snapshots` lists them)",
        )
    if best is None:
        mine = [s for s in valid if same_target(s.target, here)]
        counts: dict[str, int] = {}
        for snap in mine:
            counts[snap.status] = counts.get(snap.status, 0) + 1
        seen = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        others = len(valid) - len(mine)
        raise TcptuneError(
            f"nothing to roll back for {host.target.label} in {state.snapshots}: no applied or pending snapshot"
            + (f" (it has {seen})" if seen else "")
            + (f"; {others} belong to other targets" if others else ""),
            ExitCode.BAD_INPUT,
            hint="pass a snapshot id to restore that one again (`tcptune snapshots` lists them)",
        )
    return best


def check_same_target(snap: Snapshot, host) -> None:
    here = host.target.to_json()
    if not same_target(snap.target, here):
        raise TcptuneError(
            f"snapshot {snap.id} was taken in {describe_target(snap.target)}, but this run is in "
            f"{describe_target(here)}; nothing was changed",
            ExitCode.BAD_INPUT,
            hint="run rollback where apply ran (e.g. --netns PID or --root DIR)",
        )
