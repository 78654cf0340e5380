"""The state directory: STATE/lock, STATE/snapshots/<id>.json, STATE/replaced/.

Default /var/lib/tcptune, or --state-dir, or $TCPTUNE_STATE_DIR; created mode 0700 when
tcptune creates it (only apply does: rollback and `snapshots` never create one); an existing
one is used as it is, but only if it is owned by the euid and not writable by group or
others (snapshots tell rollback what to write as root)::

    lock                          flock(2) target; holds the pid of the holder
    snapshots/<id>.json           one per apply, mode 0600
    replaced/<id>-<time>-<name>   a sysctl.d file `rollback --force` replaced

Every file there is opened relative to the checked directory fds, O_NOFOLLOW.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tcptune.core.snapshot import (
    ID_RE,
    MAX_SNAPSHOT_BYTES,
    Snapshot,
    SnapshotCorrupt,
    dump_snapshot,
    id_time,
    parse_snapshot,
)
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.fsio import CREATE_EXCL, clean_stale_temps, fsync_dir, replace_at, trust_problem, write_all
from tcptune.host.target_lock import wait_for_flock, write_pid

DEFAULT_STATE_DIR = "/var/lib/tcptune"
STATE_DIR_ENV = "TCPTUNE_STATE_DIR"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def resolve_state_dir(option: str | os.PathLike[str] | None) -> Path:
    """--state-dir, else $TCPTUNE_STATE_DIR, else /var/lib/tcptune."""
    if option:
        return Path(option)
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env) if env else Path(DEFAULT_STATE_DIR)


class StateDir:
    """STATE/lock and STATE/snapshots/*.json, trusted only when nobody else can write them.

    Every file is opened relative to a checked directory fd with O_NOFOLLOW, so a
    symlink planted in the state directory cannot redirect a write (the lock used
    to follow one and truncate its target).  The state directory must be owned by
    this process's euid and not writable by group or others: snapshots tell
    rollback what to write as root.  tcptune chmods only the directories it
    creates, never one that already exists (--state-dir /tmp must not change /tmp).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.snapshots = self.path / "snapshots"

    def _fail(self, exc: OSError, what: str) -> TcptuneError:
        code = ExitCode.PRIVILEGES if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else ExitCode.BAD_INPUT
        return TcptuneError(
            f"state directory {self.path}: cannot {what}: {exc.strerror}",
            code,
            hint="run as root, or point --state-dir / $TCPTUNE_STATE_DIR at a writable directory",
        )

    def _unsafe(self, where: Path, why: str) -> TcptuneError:
        return TcptuneError(
            f"state directory {where} is {why}; refusing to keep or trust snapshots there",
            ExitCode.BAD_INPUT,
            hint=(
                f"point --state-dir at a directory only uid {os.geteuid()} can write, "
                f"e.g. a new one such as --state-dir {self.path / 'tcptune'}, which tcptune creates mode 0700"
            ),
        )

    def _create(self) -> None:
        """mkdir -p STATE; chmod 0700 only if this call made it; fsync the parent of each new directory."""
        path = Path(os.path.abspath(self.path))
        missing = []
        p = path
        while not os.path.lexists(p) and p != p.parent:
            missing.append(p)
            p = p.parent
        missing.reverse()
        for d in missing:
            ours = d == path
            try:
                os.mkdir(d, 0o700 if ours else 0o755)
            except FileExistsError:
                continue  # made meanwhile by someone else: not ours to chmod
            except OSError as exc:
                raise self._fail(exc, f"create {d}") from exc
            try:
                if ours:
                    os.chmod(d, 0o700)  # mkdir's mode went through the umask
                fsync_dir(d.parent)  # the new entry itself must survive a crash
            except OSError as exc:
                raise self._fail(exc, f"create {d}") from exc

    def _open_dir(self, create: bool) -> int | None:
        """A checked fd of STATE (None when it does not exist and ``create`` is false)."""
        if create:
            self._create()
        try:
            fd = os.open(self.path, _DIR_FLAGS)
        except FileNotFoundError:
            if create:
                raise
            return None
        except OSError as exc:
            raise self._fail(exc, "open it") from exc
        problem = trust_problem(os.fstat(fd), want_dir=True)
        if problem:
            os.close(fd)
            raise self._unsafe(self.path, problem)
        return fd

    @contextlib.contextmanager
    def _snapshot_dir(self, create: bool) -> Iterator[int | None]:
        """A checked fd of STATE/snapshots, or None when there is none yet (and ``create`` is false)."""
        dfd = self._open_dir(create)
        if dfd is None:
            yield None
            return
        try:
            made = False
            if create:
                try:
                    os.mkdir("snapshots", 0o700, dir_fd=dfd)
                    made = True
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise self._fail(exc, "create snapshots/") from exc
            try:
                sfd = os.open("snapshots", _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dfd)
                if made:
                    os.fchmod(sfd, 0o700)  # mkdir's mode went through the umask
                    os.fsync(dfd)
            except FileNotFoundError:
                if create:
                    raise
                yield None
                return
            except OSError as exc:
                if exc.errno == errno.ELOOP or exc.errno == errno.ENOTDIR:
                    raise self._unsafe(self.snapshots, "a symlink or not a directory") from None
                raise self._fail(exc, "open snapshots/") from exc
            try:
                problem = trust_problem(os.fstat(sfd), want_dir=True)
                if problem:
                    raise self._unsafe(self.snapshots, problem)
                yield sfd
            finally:
                os.close(sfd)
        finally:
            os.close(dfd)

    @contextlib.contextmanager
    def lock(
        self,
        timeout: float = 30.0,
        on_wait: Callable[[str], None] | None = None,
        *,
        deadline: float | None = None,
        create: bool = True,
    ) -> Iterator[None]:
        """Exclusive flock on STATE/lock; waits up to ``timeout`` seconds (or until ``deadline``), then fails (exit 1).

        ``create`` false (rollback): a state directory that does not exist is an error
        naming it, not a new empty one (a mistyped --state-dir must not leave a directory).
        """
        if deadline is None:
            deadline = time.monotonic() + max(0.0, timeout)
        lock_path = self.path / "lock"
        dfd = self._open_dir(create=create)
        if dfd is None:
            raise TcptuneError(
                f"no snapshots in {self.snapshots}: the state directory {self.path} does not exist; nothing was changed",
                ExitCode.BAD_INPUT,
                hint="point --state-dir / $TCPTUNE_STATE_DIR at the directory apply used",
            )
        try:
            try:
                fd = os.open("lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise self._unsafe(lock_path, "a symlink") from None
                raise self._fail(exc, "open its lock") from exc
        finally:
            os.close(dfd)
        try:
            problem = trust_problem(os.fstat(fd), want_dir=False)
            if problem:
                raise self._unsafe(lock_path, problem)
            wait_for_flock(
                fd,
                deadline,
                lambda holder: TcptuneError(
                    f"another tcptune apply/rollback (pid {holder}) holds {lock_path}; "
                    f"gave up after {timeout:g}s, nothing was changed",
                    ExitCode.FINDINGS,
                    hint="wait for it to finish, or raise --lock-timeout",
                ),
                lambda holder: f"waiting for {lock_path} (held by pid {holder})",
                on_wait,
            )
            write_pid(fd)
            with self._snapshot_dir(create=create) as sfd:
                if sfd is not None:
                    clean_stale_temps(sfd)  # a killed holder's half-written snapshot
            yield
        finally:
            os.close(fd)  # closing drops the flock; a SIGKILLed holder drops it too

    # snapshot files
    def path_of(self, sid: str) -> Path:
        if not ID_RE.match(sid or ""):
            raise TcptuneError(
                f"unknown snapshot {sid!r}",
                ExitCode.BAD_INPUT,
                hint=self._available_hint(),
            )
        return self.snapshots / f"{sid}.json"

    def ids(self) -> list[str]:
        with self._snapshot_dir(create=False) as sfd:
            if sfd is None:
                return []
            try:
                names = os.listdir(sfd)
            except OSError as exc:
                raise self._fail(exc, "list snapshots") from exc
        # Ids start with a UTC timestamp, so name order is (roughly: one-second steps) time order.
        return sorted(n[:-5] for n in names if n.endswith(".json") and ID_RE.match(n[:-5]))

    def _available_hint(self) -> str:
        ids = self.ids()
        if not ids:
            return f"no snapshots in {self.snapshots}"
        shown = ids[-10:]
        more = f" (and {len(ids) - 10} older)" if len(ids) > 10 else ""
        return "available: " + ", ".join(shown) + more

    def load(self, sid: str) -> Snapshot:
        path = self.path_of(sid)
        with self._snapshot_dir(create=False) as sfd:
            if sfd is None:
                raise TcptuneError(f"unknown snapshot {sid!r}", ExitCode.BAD_INPUT, hint=self._available_hint())
            try:
                fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=sfd)
            except FileNotFoundError:
                raise TcptuneError(
                    f"unknown snapshot {sid!r}", ExitCode.BAD_INPUT, hint=self._available_hint()
                ) from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SnapshotCorrupt(path, "a symlink, not a snapshot file") from None
                raise self._fail(exc, f"read {path.name}") from exc
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise SnapshotCorrupt(path, "not a regular file")
                chunks, size = [], 0
                while size <= MAX_SNAPSHOT_BYTES:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            except OSError as exc:
                raise self._fail(exc, f"read {path.name}") from exc
            finally:
                os.close(fd)
        return parse_snapshot(b"".join(chunks), path)

    def list(self) -> list[tuple[str, Snapshot | None, str]]:
        """[(id, snapshot or None, error)] oldest first by creation time; corrupt files are listed, not fatal.

        Two snapshots of the same second have ids that differ only in their random
        suffix, so the order is the "created" time (a corrupt file: its id's second).
        """
        out = []
        for sid in self.ids():
            try:
                out.append((sid, self.load(sid), ""))
            except SnapshotCorrupt as exc:
                out.append((sid, None, exc.message))
        return sorted(out, key=lambda e: (e[1].created if e[1] else id_time(e[0]), e[0]))

    def keep_copy(self, sid: str, name: str, text: str) -> Path:
        """Save ``text`` (a file rollback --force is about to replace) as STATE/replaced/SID-TIME-NAME, mode 0600."""
        self.path_of(sid)
        dest = f"{sid}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{name}"
        dfd = self._open_dir(create=True)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir("replaced", 0o700, dir_fd=dfd)
            rfd = os.open("replaced", _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dfd)
            try:
                problem = trust_problem(os.fstat(rfd), want_dir=True)
                if problem:
                    raise self._unsafe(self.path / "replaced", problem)
                fd = os.open(dest, CREATE_EXCL, 0o600, dir_fd=rfd)
                try:
                    write_all(fd, text.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.fsync(rfd)
            finally:
                os.close(rfd)
        except OSError as exc:
            raise self._fail(exc, f"keep a copy of {name}") from exc
        finally:
            os.close(dfd)
        return self.path / "replaced" / dest

    def new_id(self) -> str:
        now = time.time()
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(3)

    def save(self, snap: Snapshot) -> Path:
        """Atomically (temp + fsync + rename + fsync dir) write ``snap``, mode 0600."""
        path = self.path_of(snap.id)
        data = dump_snapshot(snap)
        # Self-check: what is written must load back through the very validation
        # rollback uses, or the saved values could never be restored.  Raised
        # before the first write to /proc/sys, this stops the apply with nothing changed.
        try:
            parse_snapshot(data, path)
        except SnapshotCorrupt as exc:
            raise TcptuneError(
                f"refusing to save snapshot {snap.id}: it would not load back ({exc.why})",
                ExitCode.BAD_INPUT,
                hint="this is a tcptune bug; nothing was written for this snapshot, report it with the profile",
            ) from None
        with self._snapshot_dir(create=True) as sfd:
            try:
                replace_at(sfd, path.name, data, 0o600)
            except OSError as exc:
                raise self._fail(exc, f"write snapshot {path.name}") from exc
        return path
