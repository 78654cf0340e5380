"""Host layer: apply and rollback as transactions that never lose a value.

Layout of the state directory (default /var/lib/tcptune, or --state-dir, or
$TCPTUNE_STATE_DIR), created mode 0700 when tcptune creates it; an existing one
is used as it is, but only if it is owned by the euid and not writable by group
or others (snapshots tell rollback what to write as root)::

    lock                      flock(2) target; holds the pid of the holder
    snapshots/<id>.json       one per apply, mode 0600
    replaced/<id>-<time>-<name>   a sysctl.d file `rollback --force` replaced

Every file there is opened relative to the checked directory fds, O_NOFOLLOW.

Apply, in order:
  1. take the target's lock, LOCKDIR/<netns-INODE | root-DEV:INO>.lock
     (LOCKDIR = $TCPTUNE_LOCK_DIR, else /run/lock/tcptune, /run/tcptune or
     /tmp/tcptune; tcptune-EUID for non-root), then the state directory's lock,
     always in that order; a second apply waits up to --lock-timeout seconds for
     both together, then fails;
  2. re-read the live values and re-plan (another apply may have run while we
     waited); a plan the user confirmed that has changed stops here (exit 1);
  3. write the snapshot (every key it will change, with its value before) and
     fsync the file and the directory: nothing is written to /proc/sys before the
     old values are on disk; the snapshot is loaded back through the loader's
     own checks first, so rollback can never refuse what apply saved;
  4. for each key: write, read back, compare; on the first failure (or SIGINT,
     SIGTERM, SIGHUP) put back every key written so far *and the failing key*
     (a rejected vector write can leave its first fields stored: writing
     "8192 131072 0" to tcp_rmem fails with EINVAL yet leaves 8192 in place,
     measured on 6.18; __do_proc_dointvec() in kernel/sysctl.c stores each field
     as it converts it);
  5. with --persist, replace tcptune's sysctl.d file atomically (its previous text
     is in the snapshot);
  6. mark the snapshot applied (or failed) and release the locks.  If that last
     save fails (a full disk), the values ARE applied and the pending snapshot
     on disk still undoes them: exit 1 saying so, with the undo command.

A process killed between 3 and 6 leaves a snapshot in state "pending" that
`tcptune rollback` restores.  Rollback follows the same rules; restoring twice is
harmless because keys already at their snapshot value are left alone, and the
sysctl.d file is only put back over exactly what the apply wrote.

Test hook: TCPTUNE_TEST_PAUSE_AFTER_WRITES=N makes apply print
"tcptune-test: paused after N writes" to stderr and sleep
(TCPTUNE_TEST_PAUSE_SECONDS, default 60) after its N-th sysctl write, so a test
can SIGKILL it mid-transaction.  It has no other effect.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import posixpath
import re
import secrets
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tcptune.core.boot_precedence import own_file_path_problem
from tcptune.core.keys import normalize_key
from tcptune.core.plan import (
    CHANGE,
    MISSING,
    Change,
    changed_since_apply,
    missing_required,
    plan_apply,
    plan_differences,
    plan_restore,
    skipped,
    values_equal,
)
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.fsio import CREATE_EXCL, replace_at, write_all

DEFAULT_STATE_DIR = "/var/lib/tcptune"
STATE_DIR_ENV = "TCPTUNE_STATE_DIR"
PAUSE_ENV = "TCPTUNE_TEST_PAUSE_AFTER_WRITES"
PAUSE_SECONDS_ENV = "TCPTUNE_TEST_PAUSE_SECONDS"
SNAPSHOT_FORMAT = "tcptune-snapshot/1"
CAP_NET_ADMIN = 12
_ID_RE = re.compile(r"\A\d{8}T\d{6}Z-[0-9a-f]{6}\Z")
MAX_SNAPSHOT_BYTES = 4 << 20

PENDING = "pending"
APPLIED = "applied"
FAILED = "failed"  # a write failed and every key was put back
INCOMPLETE = "restore-incomplete"  # a write failed and putting back failed too
ROLLED_BACK = "rolled-back"
SNAPSHOT_STATUSES = (PENDING, APPLIED, FAILED, INCOMPLETE, ROLLED_BACK)


def resolve_state_dir(option: str | os.PathLike[str] | None) -> Path:
    """--state-dir, else $TCPTUNE_STATE_DIR, else /var/lib/tcptune."""
    if option:
        return Path(option)
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env) if env else Path(DEFAULT_STATE_DIR)


# -- privileges ------------------------------------------------------------------
def parse_cap_eff(status_text: str) -> int | None:
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            try:
                return int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return None
    return None


def _unescape_mountinfo(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (fs/proc_namespace.c, mangle()).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


@dataclass(frozen=True)
class Mount:
    mount_point: str
    options: tuple[str, ...]
    super_options: tuple[str, ...]
    fstype: str

    @property
    def read_only(self) -> bool:
        return "ro" in self.options or "ro" in self.super_options


def find_mount(mountinfo_text: str, path: str) -> Mount | None:
    """The mount that holds ``path`` (the last-mounted longest prefix), from /proc/self/mountinfo text."""
    best: Mount | None = None
    best_len = -1
    for line in mountinfo_text.splitlines():
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if not sep or len(fields) < 6:
            continue
        mp = _unescape_mountinfo(fields[4])
        tail_fields = tail.split()
        prefix = mp.rstrip("/") + "/"
        if path == mp or path.startswith(prefix) or mp == "/":
            # >= : a later line with the same mount point is mounted on top and wins.
            if len(mp) >= best_len:
                best_len = len(mp)
                best = Mount(
                    mp,
                    tuple(fields[5].split(",")),
                    tuple(tail_fields[2].split(",")) if len(tail_fields) > 2 else (),
                    tail_fields[0] if tail_fields else "",
                )
    return best


def check_can_write(host, probe_key: str | None) -> None:
    """Refuse early (exit 3) when writes would fail for lack of rights; nothing is changed yet.

    The kernel lets a task write /proc/sys/net when its euid is root *or* it has
    CAP_NET_ADMIN over the namespace (net_ctl_permissions(), net/sysctl_net.c):
    measured on 6.18, root without CAP_NET_ADMIN can still write
    tcp_syn_retries, and uid 65534 cannot.
    """
    if getattr(host, "kind", None) == "dump":
        raise TcptuneError(
            "cannot apply to a sysctl dump", ExitCode.BAD_INPUT, hint="apply works on a live host, --root or --netns"
        )
    if host.is_live:
        try:
            with open("/proc/self/status") as fh:
                cap = parse_cap_eff(fh.read())
        except OSError:
            cap = None
        has_cap = cap is not None and bool(cap >> CAP_NET_ADMIN & 1)
        if os.geteuid() != 0 and not has_cap:
            raise TcptuneError(
                "changing sysctls needs root or CAP_NET_ADMIN", ExitCode.PRIVILEGES, hint="run as root or use --dry-run"
            )
    target = host.sysctl_path(probe_key) if probe_key else host.root / "proc/sys/net"
    try:
        real = os.path.realpath(target if Path(target).exists() else host.root / "proc/sys/net")
        with open("/proc/self/mountinfo") as fh:
            mount = find_mount(fh.read(), real)
    except OSError:
        mount = None
    if mount is not None and mount.read_only:
        raise TcptuneError(
            f"{real} is on the read-only mount {mount.mount_point} ({mount.fstype}); nothing was changed",
            ExitCode.PRIVILEGES,
            hint="containers usually mount /proc/sys read-only: run on the host, in a privileged container, or use --dry-run",
        )


# -- snapshots -------------------------------------------------------------------
@dataclass
class Snapshot:
    id: str
    created: float
    profile: str
    origin: str
    target: dict
    kernel: str | None
    keys: dict[str, dict]  # key -> {"before": str, "after": str}
    skipped: list[dict] = field(default_factory=list)  # [{"key", "reason"}]
    persist: dict | None = None  # {"root", "path", "before": str|None, "after": str}
    status: str = PENDING
    history: list[dict] = field(default_factory=list)  # [{"time", "event", "detail"}]

    def before_values(self) -> dict[str, str]:
        return {k: v["before"] for k, v in self.keys.items()}

    def to_json(self) -> dict:
        return {
            "format": SNAPSHOT_FORMAT,
            "id": self.id,
            "created": self.created,
            "profile": self.profile,
            "origin": self.origin,
            "target": self.target,
            "kernel": self.kernel,
            "keys": self.keys,
            "skipped": self.skipped,
            "persist": self.persist,
            "status": self.status,
            "history": self.history,
        }

    def summary(self) -> dict:
        return {
            "id": self.id,
            "created": self.created,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "profile": self.profile,
            "keys": list(self.keys),
            "persisted": self.persist is not None,
            "status": self.status,
            "target": self.target,
        }

    def event(self, name: str, detail: str = "") -> None:
        self.history.append({"time": time.time(), "event": name, "detail": detail})


class SnapshotCorrupt(TcptuneError):
    """A snapshot file that cannot be trusted; ``why`` says what is wrong with it."""

    def __init__(self, path: Path, why: str):
        super().__init__(
            f"snapshot {path} is corrupt ({why}); refusing to restore from it",
            ExitCode.BAD_INPUT,
            hint="the file was kept; inspect it, or roll back another snapshot (`tcptune snapshots`)",
        )
        self.why = why


def _corrupt(path: Path, why: str) -> SnapshotCorrupt:
    return SnapshotCorrupt(path, why)


def _check_value(path: Path, key: str, value, what: str, allow_none: bool = False) -> None:
    # An empty string is a real value: net.ipv4.ip_local_reserved_ports is "" by
    # default, and rollback must be able to put that back.  Only what could not
    # have come from one line of /proc/sys is refused.
    if value is None and allow_none:
        return
    if not isinstance(value, str) or "\n" in value or "\x00" in value:
        raise _corrupt(path, f"{key}: bad {what} value {value!r}")


def snapshot_from_json(data, path: Path) -> Snapshot:
    """Validate everything rollback will trust: keys (inside net.*), values (one line), types."""
    if not isinstance(data, dict):
        raise _corrupt(path, "not a JSON object")
    if data.get("format") != SNAPSHOT_FORMAT:
        raise _corrupt(path, f"format is {data.get('format')!r}, expected {SNAPSHOT_FORMAT!r}")
    sid = data.get("id")
    if not isinstance(sid, str) or not _ID_RE.match(sid) or path.stem != sid:
        raise _corrupt(path, f"id {sid!r} does not match the file name")
    keys = data.get("keys")
    if not isinstance(keys, dict):
        raise _corrupt(path, "no 'keys' object")
    for key, entry in keys.items():
        try:
            dotted = normalize_key(key)
        except TcptuneError as exc:
            raise _corrupt(path, exc.message) from None
        if dotted != key:
            raise _corrupt(path, f"key {key!r} is not in dotted form")
        if not isinstance(entry, dict):
            raise _corrupt(path, f"{key}: entry is not an object")
        _check_value(path, key, entry.get("before"), "before")
        _check_value(path, key, entry.get("after"), "after")
    created = data.get("created")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        raise _corrupt(path, "no 'created' time")
    status = data.get("status")
    if status not in SNAPSHOT_STATUSES:
        raise _corrupt(path, f"unknown status {status!r}")
    target = data.get("target")
    if not isinstance(target, dict):
        raise _corrupt(path, "no 'target' object")
    persist = data.get("persist")
    if persist is not None:
        if (
            not isinstance(persist, dict)
            or not isinstance(persist.get("path"), str)
            or not isinstance(persist.get("root"), str)
        ):
            raise _corrupt(path, "bad 'persist' object")
        if not (persist.get("before") is None or isinstance(persist.get("before"), str)) or not isinstance(
            persist.get("after"), str
        ):
            raise _corrupt(path, "bad 'persist' texts")
        # rollback writes or deletes this file as root: it must be tcptune's kind of
        # file (a *.conf straight in a sysctl.d directory) below an absolute root.
        proot = persist["root"]
        if not proot.startswith("/") or os.path.normpath(proot) != proot or "\x00" in proot:
            raise _corrupt(path, f"persist root {proot!r} is not an absolute, normalised path")
        why = own_file_path_problem(persist["path"])
        if why:
            raise _corrupt(path, f"persist path {persist['path']!r}: {why}")
    for name in ("profile", "origin"):
        if not isinstance(data.get(name), str):
            raise _corrupt(path, f"no '{name}'")
    skipped_list = data.get("skipped", [])
    history = data.get("history", [])
    if not isinstance(skipped_list, list) or not isinstance(history, list):
        raise _corrupt(path, "bad 'skipped' or 'history'")
    kernel = data.get("kernel")
    return Snapshot(
        id=sid,
        created=float(created),
        profile=data["profile"],
        origin=data["origin"],
        target=target,
        kernel=kernel if isinstance(kernel, str) else None,
        keys={k: {"before": v["before"], "after": v["after"]} for k, v in keys.items()},
        skipped=skipped_list,
        persist=persist,
        status=status,
        history=history,
    )


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TMP_RE = re.compile(r"\A\.(\d{8}T\d{6}Z-[0-9a-f]{6})\.(\d+)\.tmp\Z")


def _ownership_problem(st: os.stat_result, want_dir: bool) -> str | None:
    """Why a state/lock path cannot be trusted: wrong type, another owner, or writable by others."""
    euid = os.geteuid()
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != euid:
        return f"owned by uid {st.st_uid}, not by uid {euid} (this process)"
    if st.st_mode & 0o022:
        who = "group and others" if st.st_mode & 0o022 == 0o022 else "others" if st.st_mode & 0o002 else "its group"
        return f"writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _wait_for_flock(
    fd: int, deadline: float, busy: Callable[[str], TcptuneError], waiting: Callable[[str], str], on_wait
) -> None:
    """flock(LOCK_EX) on ``fd``, polling until ``deadline`` (time.monotonic()); ``busy(holder)`` is raised then."""
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            if time.monotonic() >= deadline:
                raise busy(holder or "?") from None
            if not told and on_wait:
                on_wait(waiting(holder or "?"))
                told = True
            time.sleep(0.05)


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


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
                _fsync_dir(d.parent)  # the new entry itself must survive a crash
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
        problem = _ownership_problem(os.fstat(fd), want_dir=True)
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
                problem = _ownership_problem(os.fstat(sfd), want_dir=True)
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
    ) -> Iterator[None]:
        """Exclusive flock on STATE/lock; waits up to ``timeout`` seconds (or until ``deadline``), then fails (exit 1)."""
        if deadline is None:
            deadline = time.monotonic() + max(0.0, timeout)
        lock_path = self.path / "lock"
        dfd = self._open_dir(create=True)
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
            problem = _ownership_problem(os.fstat(fd), want_dir=False)
            if problem:
                raise self._unsafe(lock_path, problem)
            _wait_for_flock(
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
            _write_pid(fd)
            self._clean_stale_temps(time.time())
            yield
        finally:
            os.close(fd)  # closing drops the flock; a SIGKILLed holder drops it too

    def _clean_stale_temps(self, locked_at: float) -> None:
        """Remove temp files a killed holder left (snapshots are only written under the lock,
        so a temp file older than our hold of it belongs to a holder that is gone)."""
        with self._snapshot_dir(create=True) as sfd:
            for name in os.listdir(sfd):
                if not _TMP_RE.match(name):
                    continue
                with contextlib.suppress(OSError):
                    st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
                    if st.st_mtime <= locked_at:
                        os.unlink(name, dir_fd=sfd)

    # snapshot files
    def path_of(self, sid: str) -> Path:
        if not _ID_RE.match(sid or ""):
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
        return sorted(n[:-5] for n in names if n.endswith(".json") and _ID_RE.match(n[:-5]))

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
                    raise _corrupt(path, "a symlink, not a snapshot file") from None
                raise self._fail(exc, f"read {path.name}") from exc
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise _corrupt(path, "not a regular file")
                chunks, size = [], 0
                while size <= MAX_SNAPSHOT_BYTES:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                raw = b"".join(chunks)
            except OSError as exc:
                raise self._fail(exc, f"read {path.name}") from exc
            finally:
                os.close(fd)
        if len(raw) > MAX_SNAPSHOT_BYTES:
            raise _corrupt(path, "larger than 4 MiB")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _corrupt(path, f"not valid JSON: {exc}") from None
        return snapshot_from_json(data, path)

    def list(self) -> list[tuple[str, Snapshot | None, str]]:
        """[(id, snapshot or None, error)] oldest first; corrupt files are listed, not fatal."""
        out = []
        for sid in self.ids():
            try:
                out.append((sid, self.load(sid), ""))
            except SnapshotCorrupt as exc:
                out.append((sid, None, exc.message))
        return out

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
                problem = _ownership_problem(os.fstat(rfd), want_dir=True)
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
        tmp = f".{snap.id}.{os.getpid()}.tmp"
        data = (json.dumps(snap.to_json(), indent=2) + "\n").encode()
        # Self-check: what is written must load back through the very validation
        # rollback uses, or the saved values could never be restored.  Raised
        # before the first write to /proc/sys, this stops the apply with nothing changed.
        try:
            snapshot_from_json(json.loads(data), path)
        except SnapshotCorrupt as exc:
            raise TcptuneError(
                f"refusing to save snapshot {snap.id}: it would not load back ({exc.why})",
                ExitCode.BAD_INPUT,
                hint="this is a tcptune bug; nothing was written for this snapshot, report it with the profile",
            ) from None
        with self._snapshot_dir(create=True) as sfd:
            try:
                replace_at(sfd, path.name, data, 0o600, tmp)
            except OSError as exc:
                raise self._fail(exc, f"write snapshot {path.name}") from exc
        return path


# -- the transaction -------------------------------------------------------------
def target_of(host) -> dict:
    """What a snapshot applies to: the live host's current network namespace, or a root directory."""
    return host.target.to_json()


# -- the per-target lock ----------------------------------------------------------
LOCK_DIR_ENV = "TCPTUNE_LOCK_DIR"
LOCK_BASES = ("/run/lock", "/run", "/tmp")


def target_lock_name(host) -> str:
    """One lock file name per thing being changed, whatever --state-dir says.

    The live host is its network namespace (the inode of /proc/self/ns/net, unique
    while the namespace lives); a --root tree is its directory's dev:ino.
    """
    return f"{host.target.key}.lock"


def lock_dir_path() -> tuple[Path, bool]:
    """(directory of the per-target locks, whether it sits in a shared directory).

    $TCPTUNE_LOCK_DIR if set; else tcptune/ (tcptune-EUID/ for non-root, so users
    never share one) in the first of /run/lock, /run, /tmp that exists and this user
    may write: /run/lock is missing in some minimal containers, and /run is root's.
    """
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env), False
    name = "tcptune" if os.geteuid() == 0 else f"tcptune-{os.geteuid()}"
    for base in LOCK_BASES:
        if os.path.isdir(base) and (os.path.isdir(os.path.join(base, name)) or os.access(base, os.W_OK | os.X_OK)):
            return Path(base) / name, True
    raise TcptuneError(
        f"no directory for tcptune's lock: none of {', '.join(LOCK_BASES)} exists and is writable",
        ExitCode.BAD_INPUT,
        hint=f"set {LOCK_DIR_ENV} to a directory only this user can write",
    )


def _open_lock_dir() -> tuple[int, Path]:
    path, shared = lock_dir_path()
    try:
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise TcptuneError(
            f"cannot create the lock directory {path}: {exc.strerror}",
            ExitCode.PRIVILEGES if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else ExitCode.BAD_INPUT,
            hint="run as root, or set " + LOCK_DIR_ENV,
        ) from exc
    try:
        # In a world-writable /run/lock or /tmp a planted symlink must not be followed.
        fd = os.open(path, _DIR_FLAGS | (os.O_NOFOLLOW if shared else 0))
    except OSError as exc:
        why = "a symlink" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else exc.strerror
        raise TcptuneError(
            f"lock directory {path}: {why}; refusing to use it",
            ExitCode.BAD_INPUT,
            hint=f"remove it, or set {LOCK_DIR_ENV}",
        ) from exc
    problem = _ownership_problem(os.fstat(fd), want_dir=True)
    if problem:
        os.close(fd)
        raise TcptuneError(
            f"lock directory {path} is {problem}; refusing to use it",
            ExitCode.BAD_INPUT,
            hint=f"remove it (tcptune recreates it mode 0700), or set {LOCK_DIR_ENV} to a directory only uid {os.geteuid()} can write",
        )
    return fd, path


def _target_label(host) -> str:
    return host.target.label


@contextlib.contextmanager
def target_lock(host, deadline: float, timeout: float, on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Exclusive flock on LOCKDIR/<target>.lock, so two runs with different state
    directories cannot interleave on the same namespace or root.

    Taken before the state directory's lock, always in that order, so two runs can
    never each hold one and wait for the other.  The file is removed on release
    (while still locked); a waiter that then wins the lock on the removed inode
    sees that the name no longer points to its file and starts over.
    """
    dfd, where = _open_lock_dir()
    name = target_lock_name(host)
    path = where / name
    what = _target_label(host)
    fd = -1
    try:
        while True:
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            except OSError as exc:
                why = "a symlink" if exc.errno == errno.ELOOP else exc.strerror
                raise TcptuneError(
                    f"lock {path}: {why}; refusing to use it", ExitCode.BAD_INPUT, hint="remove it"
                ) from exc
            problem = _ownership_problem(os.fstat(fd), want_dir=False)
            if problem:
                raise TcptuneError(
                    f"lock {path} is {problem}; refusing to use it", ExitCode.BAD_INPUT, hint="remove it"
                )
            _wait_for_flock(
                fd,
                deadline,
                lambda holder: TcptuneError(
                    f"another tcptune apply/rollback (pid {holder}) is changing {what} ({path}); "
                    f"gave up after {timeout:g}s, nothing was changed",
                    ExitCode.FINDINGS,
                    hint="wait for it to finish, or raise --lock-timeout",
                ),
                lambda holder: f"waiting for {path} (pid {holder} is changing {what})",
                on_wait,
            )
            try:
                now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            mine = os.fstat(fd)
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                break
            os.close(fd)  # the previous holder removed it after we opened it: start over
            fd = -1
        _write_pid(fd)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dfd)
    finally:
        if fd >= 0:
            os.close(fd)
        os.close(dfd)


@contextlib.contextmanager
def _locks(host, state: StateDir, timeout: float, on_wait) -> Iterator[None]:
    """The target's lock, then the state directory's: one deadline for both."""
    deadline = time.monotonic() + max(0.0, timeout)
    with target_lock(host, deadline, timeout, on_wait), state.lock(timeout, on_wait, deadline=deadline):
        yield


def _same_target(there: dict, here: dict) -> bool:
    return (
        there.get("kind") == here["kind"]
        and there.get("root") == here["root"]
        and there.get("netns_inode") == here["netns_inode"]
    )


def unfinished_snapshots(state: StateDir, host) -> list[Snapshot]:
    """Snapshots of this target whose apply never finished (pending) or could not put
    everything back (restore-incomplete): the values they saved are only restored by
    rolling them back.  Under the locks nothing else can be mid-apply on this target,
    so a pending one belongs to a process that is gone."""
    here = target_of(host)
    return [
        snap
        for _, snap, _ in state.list()
        if snap is not None and snap.status in (PENDING, INCOMPLETE) and _same_target(snap.target, here)
    ]


ROLLBACK_CANDIDATES = (APPLIED, PENDING, INCOMPLETE)


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
    here = target_of(host)
    valid = [snap for _, snap, _ in entries if snap is not None]
    candidates = [s for s in valid if _same_target(s.target, here) and s.status in ROLLBACK_CANDIDATES]
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
        mine = [s for s in valid if _same_target(s.target, here)]
        counts: dict[str, int] = {}
        for snap in mine:
            counts[snap.status] = counts.get(snap.status, 0) + 1
        seen = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        others = len(valid) - len(mine)
        raise TcptuneError(
            f"nothing to roll back for {_target_label(host)} in {state.snapshots}: no applied or pending snapshot"
            + (f" (it has {seen})" if seen else "")
            + (f"; {others} belong to other targets" if others else ""),
            ExitCode.BAD_INPUT,
            hint="pass a snapshot id to restore that one again (`tcptune snapshots` lists them)",
        )
    return best


def check_same_target(snap: Snapshot, host) -> None:
    here = target_of(host)
    there = snap.target
    if not _same_target(there, here):

        def show(t: dict) -> str:
            if t.get("kind") == "live":
                return f"network namespace net:[{t.get('netns_inode')}]"
            return f"root {t.get('root')}"

        raise TcptuneError(
            f"snapshot {snap.id} was taken in {show(there)}, but this run is in {show(here)}; nothing was changed",
            ExitCode.BAD_INPUT,
            hint="run rollback where apply ran (e.g. --netns PID or --root DIR)",
        )


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
class Result:
    snapshot: Snapshot | None
    plan: list[Change]
    written: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    persisted: bool = False
    changed_since_apply: list[dict] = field(default_factory=list)  # rollback: keys changed after the apply
    persist_copy: Path | None = None  # rollback --force: where the replaced file's text was kept


def _pause_hook(writes: int) -> None:
    want = os.environ.get(PAUSE_ENV)
    if want and want.isdigit() and int(want) == writes:
        sys.stderr.write(f"tcptune-test: paused after {writes} writes\n")
        sys.stderr.flush()
        time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "60")))


def read_only_keys(host, current: dict[str, str | None]) -> set[str]:
    """Present keys that have no write bit at all here.

    Global keys (net.core.rmem_max, ...) are shown mode 0444 inside a non-initial
    network namespace (measured on 6.18).  The mode, not access(2), decides: a
    read-only *mount* must stay an error (exit 3, check_can_write), not turn
    every key into a silent skip.
    """
    out = set()
    for key, value in current.items():
        if value is None:
            continue
        try:
            mode = os.stat(host.sysctl_path(key)).st_mode
        except OSError:
            continue
        if not mode & 0o222:
            out.add(key)
    return out


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


def _write_and_verify(host, key: str, value: str) -> None:
    host.write_sysctl(key, value)
    got = host.read_sysctl(key)
    if not values_equal(got, value):
        raise TcptuneError(
            f"{key}: wrote {value!r} but reads back {got!r}",
            ExitCode.FINDINGS,
            hint="the kernel (or the --root tree) kept another value; set the profile to the value it keeps",
        )


def _restore(host, values: dict[str, str]) -> list[str]:
    """Put ``values`` back; return one message per key that could not be restored (empty = all good)."""
    problems = []
    for key, old in values.items():
        try:
            if not values_equal(host.read_sysctl(key), old):
                _write_and_verify(host, key, old)
        except TcptuneError as exc:
            problems.append(str(exc))
    return problems


def _persist_restore(snap: Snapshot) -> None:
    from tcptune.host.sysctld_files import write_own_file

    p = snap.persist
    write_own_file(Path(p["root"]), p["path"], p["before"])


def _persist_rollback_action(snap: Snapshot, force: bool) -> tuple[str, str | None]:
    """("none" | "restore" | "replace", text being replaced) for the snapshot's sysctl.d file.

    Rollback only puts the old file back over exactly what apply wrote.  Already
    the old text (or absent, as before): nothing to do, so rolling back twice is
    harmless.  Anything else (a line added by hand, another tool's rewrite) is
    refused unless ``force``, and then the replaced text is kept in STATE/replaced.
    """
    from tcptune.host.sysctld_files import own_file_state

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
        return "none", None
    if cur.text == p["after"]:
        return "restore", None
    if not force:
        what = "was removed" if cur.kind == "absent" else "was changed"
        raise TcptuneError(
            f"{where} {what} after apply {snap.id} (it no longer holds what tcptune wrote); refusing to "
            f"{'remove' if p['before'] is None else 'replace'} it, nothing was changed",
            ExitCode.FINDINGS,
            hint=f"look at it, then `tcptune rollback {snap.id} --force` puts the old file back anyway and keeps a copy of this one in the state directory",
        )
    return "replace", cur.text


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

    ``force`` lets --persist replace a sysctl.d file that lacks tcptune's header.
    ``confirmed``: the plan the user agreed to before the lock; if the plan re-made
    under the lock differs, nothing is done (exit 1) rather than carry out a plan
    nobody saw.

    ``persist``, given the plan made under the lock, returns what to write to
    sysctl.d.  Raises TcptuneError after restoring everything when a step fails;
    the error names the key, the value and the snapshot.
    """
    with _locks(host, state, lock_timeout, on_wait):
        current = host.read_sysctls(profile.settings.keys())
        plan = plan_apply(current, profile, read_only_keys(host, current))
        check_required(profile, plan)
        changes = [c for c in plan if c.status == CHANGE]
        skipped_keys = skipped(plan)
        request = persist(plan) if persist else None
        persist_record = None
        if request is not None:
            from tcptune.host.sysctld_files import check_own_file

            before = check_own_file(request.root, request.path, force=force)
            if before != request.text:
                persist_record = {
                    "root": str(Path(request.root).resolve()),
                    "path": request.path,
                    "before": before,
                    "after": request.text,
                }
        if confirmed is not None:
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
        if not changes and persist_record is None:
            return Result(None, plan, skipped=skipped_keys)

        snap = Snapshot(
            id=state.new_id(),
            created=time.time(),
            profile=profile.name,
            origin=str(profile.origin),
            target=target_of(host),
            kernel=host.kernel_release(),
            keys={c.key: {"before": c.current, "after": c.new} for c in changes},
            skipped=skipped_keys,
            persist=persist_record,
        )
        snap.event("created", f"{len(changes)} keys to change")
        with _SignalGuard() as guard:
            try:
                state.save(snap)  # fsynced before the first write to /proc/sys
            except TcptuneError as exc:
                raise TcptuneError(f"{exc.message}; nothing was changed", exc.exit_code, hint=exc.hint) from None
            return _carry_out(
                host, state, snap, plan, changes, skipped_keys, request if persist_record else None, guard
            )


def _carry_out(
    host, state: StateDir, snap: Snapshot, plan, changes, skipped_keys, request, guard: _SignalGuard
) -> Result:
    """Steps 4-6 of apply: the snapshot is on disk; write, read back, persist, mark."""
    written: list[str] = []
    failure: TcptuneError | None = None
    failed_key = None
    signum = None
    try:
        guard.arm()  # a signal that came while saving the snapshot is acted on here
        for c in changes:
            failed_key = c.key
            written.append(c.key)  # counted before the write: a rejected write can still store part of it
            _write_and_verify(host, c.key, c.new)
            _pause_hook(len(written))
        failed_key = None
        if request is not None:
            from tcptune.host.sysctld_files import write_own_file

            write_own_file(request.root, request.path, request.text)
    except TcptuneError as exc:
        failure = exc
    except OSError as exc:
        failure = TcptuneError(f"unexpected error: {exc}", ExitCode.FINDINGS)
    except _Interrupted as exc:
        # SIGINT, SIGTERM or SIGHUP mid-way: put everything back before giving up, like any
        # other failure (a SIGTERM from systemd or a closed ssh session's SIGHUP used to
        # kill it half-tuned with the snapshot left pending).
        signum = exc.signum
        failure = TcptuneError(f"interrupted by {signal.Signals(signum).name}", ExitCode.signal(signum))
    finally:
        guard.defer()  # from here on a signal is remembered, never raised: restoring must finish

    if failure is None:
        snap.status = APPLIED
        snap.event("applied", f"{len(written)} keys written" + (", sysctl.d file written" if request else ""))
        done = f"all {len(written)} key(s) ARE applied" + (f" and {request.path} is written" if request else "")
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
        return Result(snap, plan, written=written, skipped=skipped_keys, persisted=request is not None)

    problems = _restore(host, {k: snap.keys[k]["before"] for k in written})
    if request is not None and failed_key is None:
        try:
            _persist_restore(snap)
        except TcptuneError as exc:
            problems.append(str(exc))
    what = (
        failure.message if failed_key is None or failed_key in failure.message else f"{failed_key}: {failure.message}"
    )
    if problems:
        snap.status = INCOMPLETE
        snap.event("failed", f"{what}; could not restore: {'; '.join(problems)}")
        with contextlib.suppress(TcptuneError):
            state.save(snap)
        raise TcptuneError(
            f"{what}; restoring the previous values ALSO failed: {'; '.join(problems)}",
            ExitCode.FINDINGS if signum is None else ExitCode.signal(signum),
            hint=f"fix the cause and run `tcptune rollback {snap.id}`",
        )
    snap.status = FAILED
    snap.event("failed", f"{what}; all {len(written)} written keys restored")
    unsaved = ""
    try:
        state.save(snap)
    except TcptuneError as exc:
        unsaved = f"; marking the snapshot failed did not work ({exc.message}), it stays pending and rolling it back changes nothing"
    code = failure.exit_code if failure.exit_code != ExitCode.OK else ExitCode.FINDINGS
    raise TcptuneError(
        f"{what}; restored the {len(written)} key(s) already written, the host is as before (snapshot {snap.id}){unsaved}",
        code,
        hint=failure.hint,
    )


class _Interrupted(KeyboardInterrupt):
    """A signal delivered while the guard is armed (internal: apply turns it into a TcptuneError)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _SignalGuard:
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

    def __enter__(self) -> _SignalGuard:
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


def rollback_snapshot(
    host,
    state: StateDir,
    sid: str | None,
    *,
    force: bool = False,
    lock_timeout: float = 30.0,
    on_wait: Callable[[str], None] | None = None,
    dry_run: bool = False,
) -> Result:
    """Restore snapshot ``sid`` (default: the latest) as a transaction.

    Live keys someone changed after the apply are still restored (that is what
    rollback is for) but listed in ``changed_since_apply``.  tcptune's sysctl.d
    file is only put back over exactly what apply wrote; otherwise the rollback
    is refused before anything is written, unless ``force``.
    """
    if dry_run:
        snap = state.load(sid) if sid else latest_snapshot(state, host)
        check_same_target(snap, host)
        saved = snap.before_values()
        current = host.read_sysctls(saved)
        return Result(snap, plan_restore(current, saved), changed_since_apply=changed_since_apply(current, snap.keys))
    with _locks(host, state, lock_timeout, on_wait), _SignalGuard() as guard:
        snap = state.load(sid) if sid else latest_snapshot(state, host)
        check_same_target(snap, host)
        saved = snap.before_values()
        current = host.read_sysctls(saved)
        plan = plan_restore(current, saved)
        changed = changed_since_apply(current, snap.keys)
        changes = [c for c in plan if c.status == CHANGE]
        skipped_keys = skipped(plan)
        action, replaced = _persist_rollback_action(snap, force) if snap.persist is not None else ("none", None)
        copy = None
        if action == "replace" and replaced is not None:
            copy = state.keep_copy(snap.id, posixpath.basename(snap.persist["path"]), replaced)
        written: list[str] = []
        try:
            try:
                guard.arm()
                for c in changes:
                    written.append(c.key)
                    _write_and_verify(host, c.key, c.new)
                if action != "none":
                    _persist_restore(snap)
            except _Interrupted as exc:
                # Like apply: put back what this rollback wrote, then exit 128+signal.
                raise TcptuneError(
                    f"interrupted by {signal.Signals(exc.signum).name}", ExitCode.signal(exc.signum)
                ) from None
            finally:
                guard.defer()
        except TcptuneError as exc:
            problems = _restore(host, {k: current[k] for k in written if current.get(k) is not None})
            snap.event("rollback-failed", str(exc))
            with contextlib.suppress(TcptuneError):
                state.save(snap)
            if problems:
                raise TcptuneError(
                    f"rollback of {snap.id} failed: {exc}; putting the previous values back ALSO failed: {'; '.join(problems)}",
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
        snap.event("rolled-back", detail)
        state.save(snap)
        return Result(
            snap,
            plan,
            written=written,
            skipped=skipped_keys,
            persisted=action != "none",
            changed_since_apply=changed,
            persist_copy=copy,
        )
