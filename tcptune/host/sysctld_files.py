"""Host layer for sysctl.d: read the boot configuration below a root, write tcptune's file atomically.

Precedence itself is pure and lives in tcptune.core.boot_precedence; this module only lists
and reads the files (``root`` + the path the boot loader would see) and writes.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tcptune.core.boot_precedence import (
    OWN_FILE_HEADER,
    PROCPS,
    SYSCTL_CONF,
    SYSCTL_D_DIRS,
    SYSTEMD,
    BootState,
    compare_loaders,
    compute_boot_state,
    is_own_file_text,
    own_file_path_problem,
)
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.fsio import clean_stale_temps, replace_at

MAX_CONF_BYTES = 1 << 20


def under_root(root: Path, path: str) -> Path:
    """root + an absolute path as the boot loader sees it ("/etc/sysctl.d/x.conf")."""
    norm = posixpath.normpath("/" + path.lstrip("/"))
    if "\x00" in norm:
        raise TcptuneError(f"bad path {path!r}", ExitCode.BAD_INPUT)
    return Path(root) / norm.lstrip("/")


def _read_text(p: Path, shown: str) -> str:
    try:
        with open(p, "rb") as fh:
            data = fh.read(MAX_CONF_BYTES + 1)
    except IsADirectoryError:
        return ""
    except OSError as exc:
        raise TcptuneError(f"cannot read {shown}: {exc.strerror}", ExitCode.BAD_INPUT, hint="run as root") from exc
    if len(data) > MAX_CONF_BYTES:
        raise TcptuneError(f"{shown}: larger than 1 MiB; not a sysctl.d file", ExitCode.BAD_INPUT)
    return data.decode("utf-8", "replace")


def _entry_text(root: Path, logical: str) -> str | None:
    """Text of one sysctl.d entry as the boot loader sees it: "" for a /dev/null mask,
    None for anything it cannot read as a file (a directory, a dangling symlink);
    both loaders treat those as present (the name hides same-named files) but empty.
    Measured with systemd-sysctl 252 and procps 4.0.2 (tests/netns/test_apply_boot_loaders.py)."""
    p = resolve_in_root(root, logical)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        try:
            if os.readlink(under_root(root, logical)) == "/dev/null":  # a mask, in a tree without dev/
                return ""
        except OSError:
            pass
        return None
    except OSError as exc:
        raise TcptuneError(f"cannot read {logical}: {exc.strerror}", ExitCode.BAD_INPUT, hint="run as root") from exc
    if stat.S_ISCHR(st.st_mode):
        return ""  # /dev/null itself
    if not stat.S_ISREG(st.st_mode):
        return None
    return _read_text(p, logical)


def read_config_files(root: Path, *, override: tuple[str, str | None] | None = None) -> list[tuple[str, str | None]]:
    """[(path, text)] of every entry a boot loader might consider below ``root``.

    Every ``*.conf`` of every sysctl.d directory (dotfiles too: procps reads them,
    the systemd model drops them), and /etc/sysctl.conf when it is a regular file
    (procps stat()s it).  Symlinks resolve inside ``root``.  A directory that is the
    same as one already listed (/lib/sysctl.d when /lib -> usr/lib, merged /usr) is
    listed once.  ``override=(path, text)`` substitutes the text of one file
    (tcptune's, as it is about to be written; None = as if absent) so the effect
    can be computed before anything is written.
    """
    root = Path(root)
    files: dict[str, str | None] = {}
    seen_dirs: set[str] = set()
    for d in SYSCTL_D_DIRS:
        base = resolve_in_root(root, d)
        if str(base) in seen_dirs:
            continue
        seen_dirs.add(str(base))
        try:
            names = sorted(os.listdir(base))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise TcptuneError(f"cannot list {d} under {root}: {exc.strerror}", ExitCode.BAD_INPUT) from exc
        for name in names:
            if name.endswith(".conf"):
                files[f"{d}/{name}"] = _entry_text(root, f"{d}/{name}")
    conf = resolve_in_root(root, SYSCTL_CONF)
    if conf.is_file():
        files[SYSCTL_CONF] = _read_text(conf, SYSCTL_CONF)
    if override is not None:
        path, text = override
        path = posixpath.normpath(path)
        if text is None:
            files.pop(path, None)
        else:
            files[path] = text
    return sorted(files.items())


def detect_loader(root: Path) -> tuple[str, str]:
    """(loader, why): which program applies sysctl.d when the system below ``root`` boots.

    systemd when it was booted with systemd (/run/systemd/system exists, the test
    sd_booted() makes) or ships systemd-sysctl; else procps `sysctl --system`,
    which sysvinit and OpenRC boot scripts run.
    """
    where = "" if os.path.realpath(root) == "/" else f" under {root}"
    if resolve_in_root(root, "/run/systemd/system").is_dir():
        return SYSTEMD, f"/run/systemd/system exists{where} (booted with systemd)"
    for binary in ("/lib/systemd/systemd-sysctl", "/usr/lib/systemd/systemd-sysctl"):
        if resolve_in_root(root, binary).is_file():
            return SYSTEMD, f"{binary} exists{where}"
    return PROCPS, f"no /run/systemd/system and no systemd-sysctl{where}"


def boot_state(
    root: Path,
    known_keys: Iterable[str] = (),
    *,
    override: tuple[str, str | None] | None = None,
    loader: str | None = None,
) -> BootState:
    """What the boot loader of the system below ``root`` would do (``loader``: force one).

    ``disagreements`` lists the keys the other loader would set differently, so a
    file that only works with one of them is noticed.
    """
    root = Path(root)
    files = read_config_files(root, override=override)
    known = list(known_keys)
    reason = "chosen by the caller"
    if loader is None:
        loader, reason = detect_loader(root)
    state = compute_boot_state(files, known, loader)
    state.loader_reason = reason
    state.disagreements = compare_loaders(files, known)
    return state


def resolve_in_root(root: Path, path: str) -> Path:
    """root + ``path`` with every symlink resolved as if ``root`` were /, never leaving it.

    An absolute link target names a file of the system below root, and ".." stops
    at root, so a link inside a container's tree cannot make tcptune read or write
    the host's files (chase_symlinks() with a root does the same in systemd).
    """
    base = os.path.realpath(root)
    todo = [p for p in reversed(path.split("/")) if p and p != "."]
    cur = base
    hops = 0
    while todo:
        part = todo.pop()
        if part == "..":
            cur = cur if cur == base else os.path.dirname(cur)
            continue
        nxt = os.path.join(cur, part)
        if os.path.islink(nxt):
            hops += 1
            if hops > 40:
                raise TcptuneError(f"{path}: too many levels of symbolic links below {root}", ExitCode.BAD_INPUT)
            link = os.readlink(nxt)
            if link.startswith("/"):
                cur = base
            todo.extend(p for p in reversed(link.split("/")) if p and p != ".")
            continue
        cur = nxt
    return Path(cur)


@dataclass(frozen=True)
class OwnFile:
    """What is at tcptune's sysctl.d path now."""

    kind: str  # "absent" | "file" | "symlink" | "other"
    text: str | None = None  # for "file"
    link: str | None = None  # for "symlink": its target

    def describe(self) -> str:
        if self.kind == "symlink":
            return f"a symlink to {self.link}" + (" (a mask)" if self.link == "/dev/null" else "")
        return {"absent": "absent", "file": "a file", "other": "not a regular file"}[self.kind]


def check_own_file_path(path: str) -> None:
    """Refuse (exit 2, before anything is read or written) a --persist-file outside a sysctl.d directory."""
    problem = own_file_path_problem(path)
    if problem:
        raise TcptuneError(
            f"--persist-file {path}: {problem}; nothing was changed",
            ExitCode.BAD_INPUT,
            hint="tcptune's file goes straight into a sysctl.d directory, e.g. /etc/sysctl.d/90-tcptune.conf",
        )


def _own_path(root: Path, path: str) -> Path:
    check_own_file_path(path)
    # The directory may be a symlink (resolved inside root); the file itself never is followed.
    return resolve_in_root(root, posixpath.dirname(path)) / posixpath.basename(path)


def own_file_state(root: Path, path: str) -> OwnFile:
    p = _own_path(root, path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return OwnFile("absent")
    except OSError as exc:
        raise TcptuneError(f"cannot look at {path}: {exc.strerror}", ExitCode.BAD_INPUT, hint="run as root") from exc
    if stat.S_ISLNK(st.st_mode):
        return OwnFile("symlink", link=os.readlink(p))
    if not stat.S_ISREG(st.st_mode):
        return OwnFile("other")
    return OwnFile("file", text=_read_text(p, path))


def _where(root: Path, path: str) -> str:
    return path if os.path.realpath(root) == "/" else f"{path} under {root}"


def check_own_file(root: Path, path: str, *, force: bool = False) -> str | None:
    """The text --persist would replace (None: no file), or raise when it must not be replaced.

    A symlink (e.g. the /dev/null mask an administrator put there on purpose) is
    refused: replacing it with a file would unmask it, and rollback only restores
    text.  A file without tcptune's header is someone else's: refused unless
    ``force`` (its text goes into the snapshot, so rollback puts it back).
    """
    cur = own_file_state(root, path)
    where = _where(root, path)
    if cur.kind == "symlink":
        raise TcptuneError(
            f"{where} is {cur.describe()}; tcptune will not replace a link with a file (rollback could not bring the link back), nothing was changed",
            ExitCode.BAD_INPUT,
            hint="remove the link if it is no longer wanted, or choose another --persist-file",
        )
    if cur.kind == "other":
        raise TcptuneError(
            f"{where} is not a regular file; nothing was changed",
            ExitCode.BAD_INPUT,
            hint="choose another --persist-file",
        )
    if cur.kind == "file" and not is_own_file_text(cur.text) and not force:
        raise TcptuneError(
            f"{where} exists and was not written by tcptune (it lacks the '{OWN_FILE_HEADER.strip()}' header); "
            "refusing to overwrite it, nothing was changed",
            ExitCode.BAD_INPUT,
            hint="choose another --persist-file, or pass --force to replace it (its text is kept in the snapshot, and rollback puts it back)",
        )
    return cur.text


def clean_own_temps(root: Path, path: str) -> None:
    """Remove the temp files of a writer of tcptune's file that was killed before its rename
    (fsio.clean_stale_temps, the rule the snapshot store uses too).  Rollback calls it even
    when the file itself needs nothing: an apply killed mid-write left the old file, and a temp."""
    target = _own_path(root, path)
    try:
        dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return  # no directory, no temp files
    try:
        clean_stale_temps(dfd, target.name)
    finally:
        os.close(dfd)


def _write_error(path: str, exc: OSError) -> TcptuneError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return TcptuneError(
            f"cannot write {path}: {exc.strerror}", ExitCode.PRIVILEGES, hint="run as root or use --dry-run"
        )
    if exc.errno == errno.EROFS:
        return TcptuneError(
            f"cannot write {path}: read-only file system",
            ExitCode.PRIVILEGES,
            hint="remount it read-write or drop --persist",
        )
    return TcptuneError(f"cannot write {path}: {exc.strerror}", ExitCode.BAD_INPUT)


def write_own_file(root: Path, path: str, text: str | None) -> Path:
    """Atomically replace tcptune's file with ``text`` (None: remove it).

    temp file in the same directory + fsync + rename + fsync of the directory, so
    after a crash the file is either the old or the new version, never a torn one.
    Everything happens relative to the directory's fd: the name is never
    followed if it is (or becomes) a symlink, and only a regular file is replaced.
    """
    target = _own_path(root, path)
    directory, name = target.parent, target.name
    try:
        if text is not None:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        try:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if text is None:
                return target
            raise
        try:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise TcptuneError(
                    f"{_where(root, path)} is not a regular file (a symlink?); left it alone",
                    ExitCode.BAD_INPUT,
                    hint="look at it and remove or fix it by hand",
                )
            clean_stale_temps(dfd, name)
            if text is None:
                if st is not None:
                    os.unlink(name, dir_fd=dfd)
                    os.fsync(dfd)
                return target
            # 0644: sysctl.d files are world-readable configuration, like the vendor's.
            replace_at(dfd, name, text.encode(), 0o644)
        finally:
            os.close(dfd)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    return target
