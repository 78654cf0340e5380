"""Opening files beneath a root directory without ever leaving it.

A ``--root`` tree is someone else's files (a container's root, a copied snapshot), and
tcptune runs as root.  A symlink planted in the tree (``proc/sys/net/ipv4/tcp_syn_retries ->
/etc/shadow``) must not make a read print another file or a write overwrite one, a FIFO must
not hang a read, and ``/dev/zero`` must not be read forever.  So every path below a root is
opened here, one component at a time from a directory fd, each with O_NOFOLLOW (the final
one) or O_DIRECTORY|O_NOFOLLOW (the directories): a symlink anywhere is ELOOP/ENOTDIR and is
refused, whatever it points to.  openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) does the same
in one call, but Python has no binding and ctypes costs every start ~8 ms; the walk needs
none and works on every kernel.  The final file is opened O_NONBLOCK (a FIFO opens without
a writer and is then refused by fstat: only regular files are read or written), and every
read is bounded by a size that makes sense for what is read.
"""

from __future__ import annotations

import errno
import os
import stat

from tcptune.errors import ExitCode, TcptuneError

SYSCTL_BYTES = 64 << 10  # the largest /proc/sys value is a page or two (ip_local_reserved_ports)
SMALL_FILE_BYTES = 1 << 20  # osrelease, sockstat, snmp, netstat
SOCKET_TABLE_BYTES = 256 << 20  # /proc/net/tcp: 150 bytes a socket, so about 1.7 million sockets


class Refused(TcptuneError):
    """A path below the root that tcptune will not follow (a link, a FIFO, a device, too big)."""


class Tree:
    """A root directory, opened once; files below it are reached only through it.

    ``shown`` is how paths are named in messages (the root as the user wrote it).
    Directory fds are cached: `show` reads a hundred keys from two directories.
    """

    def __init__(self, root: str, shown: str | None = None, *, follow_links: bool = False):
        """``follow_links``: the live host's own /proc, whose links are the kernel's
        (/proc/net -> self/net, /proc/self -> PID); never for a tree someone else filled."""
        self.shown = shown if shown is not None else root
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs: dict[str, int] = {"": self._root_fd}
        nofollow = 0 if follow_links else os.O_NOFOLLOW
        self._dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | nofollow
        self._file_flags = os.O_NONBLOCK | os.O_CLOEXEC | nofollow

    def close(self) -> None:
        for fd in set(self._dirs.values()):
            os.close(fd)
        self._dirs.clear()

    def __del__(self):  # a Host lives as long as the command; close its fds with it
        try:
            self.close()
        except Exception:
            pass

    def where(self, rel: str) -> str:
        return os.path.join(self.shown, rel)

    @staticmethod
    def _parts(rel: str) -> list[str]:
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if not parts or ".." in parts or any("\x00" in p for p in parts):
            raise TcptuneError(f"bad path {rel!r} below the root", ExitCode.BAD_INPUT)
        return parts

    def _refuse(self, rel: str, why: str) -> Refused:
        return Refused(
            f"{self.where(rel)}: {why}; refused",
            ExitCode.BAD_INPUT,
            hint="tcptune reads and writes only regular files below --root and follows no symlink",
        )

    def dir_fd(self, rel_dir: str) -> int:
        """An fd of directory ``rel_dir`` below the root (no component may be a symlink)."""
        if rel_dir in self._dirs:
            return self._dirs[rel_dir]
        parent, _, name = rel_dir.rpartition("/")
        pfd = self.dir_fd(parent)
        try:
            fd = os.open(name, self._dir_flags, dir_fd=pfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(pfd, name):
                raise self._refuse(rel_dir, "is a symbolic link") from None
            raise
        self._dirs[rel_dir] = fd
        return fd

    def open_file(self, rel: str, flags: int) -> int:
        """An fd of the regular file ``rel`` below the root; OSError (FileNotFoundError ...) as open(2) says."""
        parts = self._parts(rel)
        dfd = self.dir_fd("/".join(parts[:-1]))
        try:
            fd = os.open(parts[-1], flags | self._file_flags, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._refuse(rel, "is a symbolic link") from None
            raise
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise self._refuse(rel, f"is {_kind(mode)}, not a regular file")
            # Back to blocking: O_NONBLOCK was only there so that opening a FIFO cannot hang.
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read_bytes(self, rel: str, limit: int) -> bytes:
        """All of regular file ``rel``, at most ``limit`` bytes (more is an error that says so)."""
        fd = self.open_file(rel, os.O_RDONLY)
        try:
            data = read_bounded(fd, limit)
        finally:
            os.close(fd)
        if data is None:
            raise self._refuse(rel, f"is larger than {_size(limit)}, more than such a file can hold")
        return data

    def list_files(self, rel_dir: str) -> list[str]:
        """Names of the regular files (not links, not directories) in ``rel_dir``; [] when absent."""
        try:
            dfd = self.dir_fd(rel_dir)
        except FileNotFoundError:
            return []
        names = []
        for entry in os.scandir(dfd):
            if entry.is_file(follow_symlinks=False):
                names.append(entry.name)
        return sorted(names)


def read_bounded(fd: int, limit: int) -> bytes | None:
    """Read ``fd`` to its end; None when it holds more than ``limit`` bytes."""
    chunks, total = [], 0
    while True:
        chunk = os.read(fd, min(1 << 20, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            return None


def open_regular(path: str, what: str, flags: int = os.O_RDONLY) -> int:
    """Open a user-named file (a profile, a dump) without hanging on a FIFO; refuse non-regular files.

    Symlinks are followed: the user named this file.  Raises TcptuneError (exit 2), or
    OSError for the caller to word.
    """
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise TcptuneError(
                f"{what} {path}: is {_kind(mode)}, not a regular file", ExitCode.BAD_INPUT, hint="pass a file"
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class OwnOffset:
    """An open file read from an offset of its own (pread): a forked child shares its parent's
    open files, offsets included, so two readers of one descriptor would take each other's bytes."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pos = fd, 0

    def read(self, size: int) -> bytes:
        data = os.pread(self.fd, size, self.pos)
        self.pos += len(data)
        return data


def _is_link(dfd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _kind(mode: int) -> str:
    for test, word in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return word
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"
