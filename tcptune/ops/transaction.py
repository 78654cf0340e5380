"""The one transaction loop apply and rollback share: lock, arm, write + read back, restore, save.

A transaction is a list of ``Step``s: one per sysctl key, and (with --persist, or a rollback
of a persisted apply) one for tcptune's sysctl.d file, last.  ``run_steps`` carries them out
in order; on the first failure, or SIGINT / SIGTERM / SIGHUP, it puts back every step it
started, the failing one included (a rejected vector write can leave its first fields
stored: writing "8192 131072 0" to tcp_rmem fails with EINVAL yet leaves 8192 in place,
measured on 6.18; __do_proc_dointvec() in kernel/sysctl.c stores each field as it
converts it).  The caller records the outcome in the snapshot and saves it.

Locks: the target's lock (tcptune.host.target_lock), then the state directory's, always in
that order and under one deadline, so two runs can never each hold one and wait for the other.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tcptune.core.plan import Change
from tcptune.core.snapshot import Snapshot
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.pause_hook import pause_after_writes
from tcptune.host.privileges import refused_value
from tcptune.host.statedir import StateDir
from tcptune.host.sysctld_files import write_own_file
from tcptune.host.target_lock import target_lock
from tcptune.values import values_equal


@dataclass
class Result:
    snapshot: Snapshot | None
    plan: list[Change]
    written: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    persisted: bool = False
    changed_since_apply: list[dict] = field(default_factory=list)  # rollback: keys changed after the apply
    persist_copy: Path | None = None  # rollback --force: where the replaced file's text was kept


@dataclass(frozen=True)
class Step:
    """One change: ``do`` writes and checks it, ``undo`` puts back what was there before
    (harmless when it is already back).  ``key`` is the sysctl, None for the sysctl.d file."""

    do: Callable[[], None]
    undo: Callable[[], None]
    key: str | None = None


@dataclass
class Outcome:
    started: list[Step]
    failure: TcptuneError | None = None
    failed: Step | None = None
    signum: int | None = None
    problems: list[str] = field(default_factory=list)  # steps that could not be put back

    @property
    def keys_written(self) -> list[str]:
        return [s.key for s in self.started if s.key is not None]

    def what(self) -> str:
        """The failure, naming the key when the kernel's message does not."""
        msg = self.failure.message if self.failure else ""
        key = self.failed.key if self.failed else None
        return msg if key is None or key in msg else f"{key}: {msg}"


def write_and_verify(host, key: str, value: str) -> None:
    try:
        host.write_sysctl(key, value)
    except TcptuneError as exc:
        raise refused_value(host, key, value, exc) from exc.__cause__
    got = host.read_sysctl(key)
    if not values_equal(got, value):
        raise TcptuneError(
            f"{key}: wrote {value!r} but reads back {got!r}",
            ExitCode.FINDINGS,
            hint="the kernel (or the --root tree) kept another value; set the profile to the value it keeps",
        )


def _put_back(host, key: str, old: str) -> None:
    if not values_equal(host.read_sysctl(key), old):
        write_and_verify(host, key, old)


def key_step(host, key: str, new: str, old: str | None) -> Step:
    """Write ``new`` to ``key``; undo puts ``old`` back (None: nothing to put back)."""
    return Step(
        do=lambda: write_and_verify(host, key, new),
        undo=(lambda: None) if old is None else (lambda: _put_back(host, key, old)),
        key=key,
    )


def file_step(root: Path, path: str, new: str | None, old: str | None) -> Step:
    """Make tcptune's sysctl.d file hold ``new`` (None: remove it); undo puts ``old`` back."""
    return Step(do=lambda: write_own_file(root, path, new), undo=lambda: write_own_file(root, path, old))


class _Interrupted(KeyboardInterrupt):
    """A signal delivered while the guard is armed (internal: turned into a TcptuneError)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class SignalGuard:
    """SIGINT, SIGTERM and SIGHUP during a transaction.

    Armed (the write loop): the first signal raises _Interrupted at once, so the loop
    stops and everything written is put back.  Deferred (saving the snapshot,
    restoring, marking it): signals are only remembered, so the clean-up itself
    cannot be cut short by a second SIGTERM.  A signal that was set to be ignored
    (nohup, a background job's SIGINT) stays ignored.  Only the main thread can set
    handlers; elsewhere the guard does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.armed = False
        self.received: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                old = signal.getsignal(sig)
                if old is signal.SIG_IGN:
                    continue
                self._old[sig] = old
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
        if self.armed:
            self.armed = False
            raise _Interrupted(signum)

    def arm(self) -> None:
        if self.received is not None:
            raise _Interrupted(self.received)
        self.armed = True

    def defer(self) -> None:
        self.armed = False

    def __exit__(self, *exc) -> None:
        self.armed = False
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_steps(steps: Sequence[Step], guard: SignalGuard) -> Outcome:
    """Carry out ``steps``; on any failure put back every step started (see the module docstring)."""
    out = Outcome(started=[])
    try:
        guard.arm()  # a signal that came while saving the snapshot is acted on here
        for step in steps:
            out.failed = step
            out.started.append(step)  # counted before the write: a rejected write can still store part of it
            step.do()
            if step.key is not None:
                pause_after_writes(len(out.keys_written))
        out.failed = None
    except TcptuneError as exc:
        out.failure = exc
    except OSError as exc:
        out.failure = TcptuneError(f"unexpected error: {exc}", ExitCode.FINDINGS)
    except _Interrupted as exc:
        # SIGINT, SIGTERM or SIGHUP mid-way: put everything back before giving up, like any
        # other failure (a SIGTERM from systemd or a closed ssh session's SIGHUP used to
        # kill it half-tuned with the snapshot left pending).
        out.signum = exc.signum
        out.failure = TcptuneError(f"interrupted by {signal.Signals(exc.signum).name}", ExitCode.signal(exc.signum))
    except Exception as exc:  # a bug: still never leave the host half-changed
        out.failure = TcptuneError(f"internal error: {type(exc).__name__}: {exc}", ExitCode.INTERNAL)
    finally:
        guard.defer()  # from here on a signal is remembered, never raised: restoring must finish
    if out.failure is not None:
        for step in out.started:
            try:
                step.undo()
            except TcptuneError as exc:
                out.problems.append(str(exc))
            except Exception as exc:  # an OSError, or a bug: report it, and undo the other steps
                out.problems.append(f"{type(exc).__name__}: {exc}")
    return out


@contextlib.contextmanager
def locks(host, state: StateDir, timeout: float, on_wait, *, create: bool = True) -> Iterator[None]:
    """The target's lock, then the state directory's: one deadline for both."""
    deadline = time.monotonic() + max(0.0, timeout)
    with (
        target_lock(host.target, deadline, timeout, on_wait),
        state.lock(timeout, on_wait, deadline=deadline, create=create),
    ):
        yield
