"""The per-target lock: one flock per network namespace or root tree, whatever --state-dir says.

LOCKDIR/<Target.key>.lock, LOCKDIR = $TCPTUNE_LOCK_DIR, else a directory ``tcptune`` in the
first base where nobody else could have made that name first:

- root: the first of /run/lock, /run whose entries only root can create (owned by root,
  not writable by group or others).  /run/lock is usually world-writable (mode 1777), and
  there any user could create ``tcptune`` (or a symlink of that name) before root did and
  so block every apply, so root's locks go to /run/tcptune then.
- other users (apply --root on a copy, CAP_NET_ADMIN only): ``tcptune-EUID`` in the first of
  /run/lock, /run, /tmp that this user may write; only that user's own runs depend on it.

The directory is opened O_NOFOLLOW and trusted only when it is this euid's and nobody
else may write it; the lock file too.  Taken before the state directory's lock, always.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.fsio import trust_problem

LOCK_DIR_ENV = "TCPTUNE_LOCK_DIR"
LOCK_BASES = ("/run/lock", "/run", "/tmp")
ROOT_LOCK_BASES = ("/run/lock", "/run")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def wait_for_flock(
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


def write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _only_root_creates_in(base: str) -> bool:
    try:
        st = os.stat(base)
    except OSError:
        return False
    return st.st_uid == 0 and not st.st_mode & 0o022


def lock_dir_path() -> tuple[Path, bool]:
    """(directory of the per-target locks, whether it came from $TCPTUNE_LOCK_DIR)."""
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env), True
    root = os.geteuid() == 0
    name = "tcptune" if root else f"tcptune-{os.geteuid()}"
    for base in ROOT_LOCK_BASES if root else LOCK_BASES:
        if root and not _only_root_creates_in(base):
            continue
        if os.path.isdir(base) and (os.path.isdir(os.path.join(base, name)) or os.access(base, os.W_OK | os.X_OK)):
            return Path(base) / name, False
    where = "only root can write" if root else "exists and is writable"
    raise TcptuneError(
        f"no directory for tcptune's lock: none of {', '.join(ROOT_LOCK_BASES if root else LOCK_BASES)} {where}",
        ExitCode.BAD_INPUT,
        hint=f"set {LOCK_DIR_ENV} to a directory only this user can write",
    )


def _open_lock_dir() -> tuple[int, Path]:
    path, from_env = lock_dir_path()
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
        # A symlink is never followed, except one the administrator named in $TCPTUNE_LOCK_DIR.
        fd = os.open(path, _DIR_FLAGS | (0 if from_env else os.O_NOFOLLOW))
    except OSError as exc:
        why = "a symlink" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else exc.strerror
        raise TcptuneError(
            f"lock directory {path}: {why}; refusing to use it",
            ExitCode.BAD_INPUT,
            hint=f"remove it, or set {LOCK_DIR_ENV}",
        ) from exc
    problem = trust_problem(os.fstat(fd), want_dir=True)
    if problem:
        os.close(fd)
        raise TcptuneError(
            f"lock directory {path} is {problem}; refusing to use it",
            ExitCode.BAD_INPUT,
            hint=f"remove it (tcptune recreates it mode 0700), or set {LOCK_DIR_ENV} to a directory only uid {os.geteuid()} can write",
        )
    return fd, path


def target_lock_name(target) -> str:
    """One lock file name per thing being changed (Target.key: the netns inode or the root's dev:ino)."""
    return f"{target.key}.lock"


@contextlib.contextmanager
def target_lock(
    target, deadline: float, timeout: float, on_wait: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Exclusive flock on LOCKDIR/<target>.lock, so two runs with different state
    directories cannot interleave on the same namespace or root.

    The file is removed on release (while still locked); a waiter that then wins the
    lock on the removed inode sees that the name no longer points to its file and
    starts over.
    """
    dfd, where = _open_lock_dir()
    name = target_lock_name(target)
    path = where / name
    what = target.label
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
            problem = trust_problem(os.fstat(fd), want_dir=False)
            if problem:
                raise TcptuneError(
                    f"lock {path} is {problem}; refusing to use it", ExitCode.BAD_INPUT, hint="remove it"
                )
            wait_for_flock(
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
        write_pid(fd)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dfd)
    finally:
        if fd >= 0:
            os.close(fd)
        os.close(dfd)
