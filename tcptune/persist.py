"""Host layer for sysctl.d: read the boot configuration below a root, write tcptune's file atomically.

Precedence itself is pure and lives in tcptune.sysctld; this module only lists
and reads the files (``root`` + the path the boot loader would see) and writes.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Iterable

from tcptune.errors import ExitCode, TcptuneError
from tcptune.sysctld import (
    SYSCTL_CONF,
    SYSCTL_D_DIRS,
    BootState,
    BootValue,
    compute_boot_state,
)

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


def read_config_files(root: Path, *, override: tuple[str, str | None] | None = None) -> list[tuple[str, str]]:
    """[(path, text)] of every file the boot loader would consider below ``root``.

    ``override=(path, text)`` substitutes the text of one file (tcptune's, as it
    is about to be written; None = as if absent) so the effect can be computed
    before anything is written.  A symlink to /dev/null (the way to mask a
    vendor file) reads as empty, which is what it means at boot.  Dangling
    symlinks are skipped, as the loader cannot open them either.
    """
    files: dict[str, str] = {}
    for d in SYSCTL_D_DIRS:
        base = under_root(root, d)
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise TcptuneError(f"cannot list {d} under {root}: {exc.strerror}", ExitCode.BAD_INPUT) from exc
        for e in entries:
            if not e.name.endswith(".conf"):
                continue
            logical = f"{d}/{e.name}"
            target = Path(e.path)
            if e.is_symlink():
                link = os.readlink(e.path)
                if link == "/dev/null":
                    files[logical] = ""
                    continue
                if link.startswith("/"):
                    # An absolute link names a file of the system below root, not of this host.
                    target = under_root(root, link)
                if not target.exists():
                    continue
            if target.is_dir():
                continue
            files[logical] = _read_text(target, logical)
    conf = under_root(root, SYSCTL_CONF)
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


def boot_state(root: Path, known_keys: Iterable[str] = (), *, override: tuple[str, str | None] | None = None) -> BootState:
    return compute_boot_state(read_config_files(Path(root), override=override), known_keys)


def boot_values(root: Path, known_keys: Iterable[str] = ()) -> dict[str, BootValue]:
    """{key: BootValue(value, path, line)}: what sysctl.d would set at boot on the system below ``root``.

    ``root`` is "/" for this machine.  Glob lines (systemd's ``net.ipv4.conf.*.x``)
    are expanded over ``known_keys`` only; pass the keys you compare (e.g. a
    profile's) to have globs resolved.
    """
    return boot_state(Path(root), known_keys).values


def read_own_file(root: Path, path: str) -> str | None:
    """Current text of tcptune's file, or None when it does not exist."""
    p = under_root(root, path)
    if not p.exists():
        return None
    return _read_text(p, path)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_own_file(root: Path, path: str, text: str | None) -> Path:
    """Atomically replace tcptune's file with ``text`` (None: remove it).

    temp file in the same directory + fsync + rename + fsync of the directory, so
    after a crash the file is either the old or the new version, never a torn one.
    """
    target = under_root(root, path)
    directory = target.parent
    try:
        if text is None:
            try:
                os.unlink(target)
            except FileNotFoundError:
                return target
            _fsync_dir(directory)
            return target
        directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        tmp = directory / f".{target.name}.tcptune-{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(fd, 0o644)  # sysctl.d files are world-readable config, like the vendor's
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.rename(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(directory)
    except PermissionError as exc:
        raise TcptuneError(
            f"cannot write {path}: {exc.strerror}", ExitCode.PRIVILEGES, hint="run as root or use --dry-run"
        ) from exc
    except OSError as exc:
        if exc.errno == 30:  # EROFS
            raise TcptuneError(
                f"cannot write {path}: read-only file system", ExitCode.PRIVILEGES, hint="remount it read-write or drop --persist"
            ) from exc
        raise TcptuneError(f"cannot write {path}: {exc.strerror}", ExitCode.BAD_INPUT) from exc
    return target
