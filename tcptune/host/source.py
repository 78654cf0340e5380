"""The one seam between tcptune and the machine.

``Host(root)`` does every read and write of sysctls and /proc files relative to a
root path: ``/`` is the live host; a directory shaped like / (holding
proc/sys/net and proc/net) is a saved snapshot or a container's view.
``DumpHost`` serves values parsed from ``sysctl -a`` output of another machine.

Everything above this layer takes values, not paths.  Keys are validated by
tcptune.core.keys before any path under proc/sys is built.

The seam is typed: ``Source`` is the protocol both implement, ``SourceKind`` says which
kind of source it is (never a string), and every source carries its ``target`` identity,
which locks and snapshots are keyed by, read once when the source is opened.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from tcptune.core.keys import key_to_relpath, normalize_key
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.netns import netns_inode
from tcptune.host.tree import SMALL_FILE_BYTES, SOCKET_TABLE_BYTES, SYSCTL_BYTES, Tree, open_regular, read_bounded
from tcptune.values import normalize_value

# The sysctl directories a TCP tuner looks at; `show` lists tcp_* from ipv4 plus
# every knowledge-base key.
SYSCTL_DIRS = ("net/ipv4", "net/core")
# Registered only in the initial network namespace (net/core/sysctl_net_core.c net_core_table).
INIT_NET_ONLY_KEY = "net.core.netdev_max_backlog"
# The socket tables can be large (a saved snapshot of a busy host); everything else is small.
_PROC_LIMITS = {"proc/net/tcp": SOCKET_TABLE_BYTES, "proc/net/tcp6": SOCKET_TABLE_BYTES}


class SourceKind(Enum):
    """Where a source's values come from.  The value is the word JSON and audit use."""

    LIVE = "live"  # this process's own network namespace, through the real /proc
    NETNS = "netns"  # another network namespace, entered with setns(2) (--netns)
    ROOT = "root"  # a directory shaped like / : a saved snapshot or a container's files
    DUMP = "dump"  # values parsed from `sysctl -a` output; nothing to write, no sockets

    @property
    def reads_kernel(self) -> bool:
        """True when reads reach the running kernel (its /proc/sys/net and socket table)."""
        return self in (SourceKind.LIVE, SourceKind.NETNS)


@dataclass(frozen=True)
class Target:
    """What one apply changes: a network namespace of the running kernel, or one root tree.

    ``key`` names it in lock files; ``to_json()`` is what a snapshot records (the shape
    older snapshots have too: kind live|root, root, netns_inode).
    """

    kind: SourceKind
    root: str
    netns_inode: int | None = None
    root_dev_ino: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        """The network namespace's inode (unique while it lives), or the root directory's dev:ino."""
        if self.kind.reads_kernel:
            return f"netns-{self.netns_inode}"
        dev, ino = self.root_dev_ino or (0, 0)
        return f"root-{os.major(dev)}:{os.minor(dev)}:{ino}"

    @property
    def label(self) -> str:
        return f"network namespace net:[{self.netns_inode}]" if self.kind.reads_kernel else f"root {self.root}"

    def to_json(self) -> dict:
        if self.kind.reads_kernel:
            return {"kind": "live", "root": "/", "netns_inode": self.netns_inode}
        return {"kind": "root", "root": self.root, "netns_inode": None}


class Source(Protocol):
    """What every use case reads (and apply writes) through; Host and DumpHost implement it."""

    kind: SourceKind
    label: str

    @property
    def is_live(self) -> bool: ...

    @property
    def target(self) -> Target: ...

    def read_sysctl(self, key: str) -> str | None: ...

    def read_sysctls(self, keys: Iterable[str]) -> dict[str, str | None]: ...

    def list_sysctls(self, dirs: Iterable[str] = SYSCTL_DIRS) -> list[str]: ...

    def write_sysctl(self, key: str, value: str) -> None: ...

    def read_proc_text(self, rel: str) -> str | None: ...

    def kernel_release(self) -> str | None: ...

    def kernel_build(self) -> str | None: ...


def own_netns_inode() -> int:
    """The inode of this process's network namespace; an error, never None, when unreadable.

    Locks and snapshots are keyed by it: a None would make two namespaces share a lock
    file (``netns-None.lock``) and each other's snapshots.
    """
    inode = netns_inode()
    if inode is None:
        raise TcptuneError(
            "cannot read /proc/self/ns/net, so the network namespace cannot be identified",
            ExitCode.PRIVILEGES,
            hint="tcptune needs /proc mounted with this process's own entries",
        )
    return inode


def _has_live_procfs(root: Path) -> bool:
    """Is ROOT/proc a mounted procfs (not a copied snapshot)?

    A live procfs has the magic ``self`` symlink; a snapshot made with cp or cat has no
    such entry.  mountinfo (fstype "proc" at that path) catches a procfs without it.
    """
    proc = root / "proc"
    if (proc / "self").is_symlink():
        return True
    from tcptune.core.mountinfo import parse_mountinfo

    try:
        real = os.path.realpath(proc)
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    except OSError:
        return False
    return any(m.fstype == "proc" and m.mount_point == real for m in parse_mountinfo(text))


def kernel_version(host):
    """The kernel version of ``host`` (a Host or DumpHost) with its stable patch level, or None when
    unknown or unparsable.  The build string (kernel.version) supplies the patch level where the
    release names only the ABI (Debian's 6.1.0-57-amd64 is 6.1.192): see version.parse_release."""
    from tcptune.kernel.version import parse_release

    rel = host.kernel_release()
    try:
        return parse_release(rel, host.kernel_build()) if rel else None
    except TcptuneError:
        return None


class Host:
    """Reads and writes the machine below ``root``."""

    kind: SourceKind = SourceKind.ROOT

    def __init__(self, root: str | os.PathLike[str] = "/", *, netns: str | None = None):
        """``netns`` names the network namespace this process entered (--netns), for labels."""
        self.root = Path(root)
        try:
            is_dir = self.root.is_dir()
        except PermissionError:
            # e.g. /proc/1/root of a process we may not ptrace (another user namespace)
            raise TcptuneError(
                f"--root {root}: permission denied",
                ExitCode.PRIVILEGES,
                hint="run as root in the same user namespace, or use --netns PID for a container's network namespace",
            ) from None
        if not is_dir:
            raise TcptuneError(
                f"--root {root}: not a directory",
                ExitCode.BAD_INPUT,
                hint="pass a directory shaped like / (proc/sys/net ...)",
            )
        net = self.root / "proc/sys/net"
        if not net.is_dir() or not os.access(net, os.R_OK | os.X_OK):
            raise TcptuneError(
                f"--root {root}: {net} is missing or unreadable",
                ExitCode.BAD_INPUT,
                hint="a root must hold proc/sys/net (and proc/net for socket tables)",
            )
        # /proc/sys/net and /proc/net show the network namespace of the task that READS
        # them, not of the process whose root this is (net/sysctl_net.c net_ctl_header_lookup()
        # uses current->nsproxy->net_ns), so `--root /proc/PID/root` would silently audit
        # tcptune's own namespace under the container's name.  /proc/PID/root resolves to
        # "/" as well, so it is recognised by name; any other root counts as the live host
        # when it resolves to "/" (`--root //`, a link to /).
        m = re.fullmatch(r"/proc/(\d+)/root/?", os.path.normpath(str(root)))
        other_ns = m is not None and netns_inode(f"/proc/{m.group(1)}") != netns_inode()
        if (other_ns or self.root.resolve() != Path("/")) and _has_live_procfs(self.root):
            raise TcptuneError(
                f"--root {root}: {self.root / 'proc'} is a live procfs, which shows tcptune's own network namespace, not that root's",
                ExitCode.BAD_INPUT,
                hint=f"use --netns {m.group(1)}"
                if m
                else "use --netns PID (a process in that namespace), or --root on a saved snapshot",
            )
        # Every read and write below the root goes through this directory fd, following no
        # symlink (tcptune.host.tree): a link planted in a container's tree cannot redirect it.
        # The live host's /proc is the kernel's own and has its own links (/proc/net ->
        # self/net): followed there, and only there.
        live_root = self.root.resolve() == Path("/") and not other_ns
        self._tree = Tree(str(self.root), shown=str(root), follow_links=live_root)
        self._tree.dir_fd("proc/sys/net")  # a symlinked proc, proc/sys or proc/sys/net is refused here
        self.netns = netns
        self._in_child_netns: bool | None = None
        if live_root:
            self.kind = SourceKind.LIVE if netns is None else SourceKind.NETNS
            self._target = Target(self.kind, "/", netns_inode=own_netns_inode())
        else:
            self.kind = SourceKind.ROOT
            st = os.fstat(self._tree.dir_fd(""))  # the tree's own dev:ino, as opened
            self._target = Target(self.kind, str(self.root.resolve()), root_dev_ino=(st.st_dev, st.st_ino))

    @property
    def is_live(self) -> bool:
        """Reads reach the running kernel (this or an entered namespace), not a saved tree."""
        return self.kind.reads_kernel

    @property
    def target(self) -> Target:
        return self._target

    @property
    def label(self) -> str:
        if self.netns is not None:
            return f"network namespace {self.netns}"
        if not self.is_live:
            return f"root {self.root}"
        # Inside `unshare -n` or `ip netns exec`, "live host" would be wrong: the values are
        # that namespace's, and most tcp_* keys start there from the kernel defaults.  The
        # initial namespace is told by a key only it has: net/core/sysctl_net_core.c
        # registers net_core_table (netdev_max_backlog ...) for init_net alone, the
        # per-namespace netns_core_table (somaxconn ...) for every namespace.  (/proc/1/ns/net
        # would say it too, but is unreadable inside many sandboxes, even to root.)
        if self._in_child_netns is None:
            self._in_child_netns = self.read_sysctl(INIT_NET_ONLY_KEY) is None
        if self._in_child_netns:
            return f"network namespace net:[{self._target.netns_inode}]"
        return "live host"

    # -- sysctls -------------------------------------------------------------
    def sysctl_path(self, key: str) -> Path:
        return self.root / key_to_relpath(key)

    def read_sysctl(self, key: str) -> str | None:
        """The value of ``key`` with whitespace normalised, or None when this kernel lacks it."""
        rel = key_to_relpath(key)
        try:
            raw = self._tree.read_bytes(rel, SYSCTL_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PermissionError:
            # Some keys (e.g. tcp_fastopen_key) are root-only; say so rather than pretend absent.
            raise TcptuneError(
                f"{key}: permission denied reading {self.sysctl_path(key)}", ExitCode.PRIVILEGES, hint="run as root"
            ) from None
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EINVAL):
                return None
            raise TcptuneError(
                f"{key}: cannot read {self.sysctl_path(key)}: {exc.strerror}", ExitCode.BAD_INPUT
            ) from exc
        return normalize_value(raw.decode("utf-8", "replace"))

    def read_sysctls(self, keys: Iterable[str]) -> dict[str, str | None]:
        return {k: self.read_sysctl(k) for k in keys}

    def list_sysctls(self, dirs: Iterable[str] = SYSCTL_DIRS) -> list[str]:
        """Keys present in the given proc/sys directories (regular files only: no links, no subdirectories)."""
        keys: list[str] = []
        for d in dirs:
            prefix = d.replace("/", ".") + "."
            keys.extend(prefix + name for name in self._tree.list_files(f"proc/sys/{d}"))
        return keys

    def write_sysctl(self, key: str, value: str) -> None:
        """Write one sysctl.  Raises TcptuneError with the kernel's reason on failure."""
        path = self.sysctl_path(normalize_key(key))
        data = (normalize_value(value) + "\n").encode()
        # Exit codes: only a lack of rights (EPERM, EACCES, EROFS) is 3; every other failed
        # write is 1, "a write failed and was rolled back", whatever errno the kernel chose:
        # EINVAL for a bad number, ENOENT for an unknown tcp_congestion_control name,
        # EBUSY, ENOMEM ... (measured on 6.18: writing "nosuchcc" gives ENOENT).
        try:
            # O_TRUNC: a shorter value over a longer one, under --root
            fd = self._tree.open_file(key_to_relpath(normalize_key(key)), os.O_WRONLY | os.O_TRUNC)
        except FileNotFoundError:
            raise TcptuneError(f"{key}: not present on this kernel ({path})", ExitCode.FINDINGS) from None
        except PermissionError as exc:
            raise TcptuneError(
                f"{key}: permission denied writing {path}", ExitCode.PRIVILEGES, hint="run as root or use --dry-run"
            ) from exc
        except OSError as exc:
            if exc.errno == errno.EROFS:
                raise TcptuneError(
                    f"{key}: {path} is on a read-only mount",
                    ExitCode.PRIVILEGES,
                    hint="/proc/sys is mounted read-only (typical in containers); run on the host or a privileged container",
                ) from exc
            raise TcptuneError(f"{key}: cannot open {path}: {exc.strerror}", ExitCode.FINDINGS) from exc
        try:
            os.write(fd, data)
        except OSError as exc:
            privileges = exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS)
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            raise TcptuneError(
                f"{key}: the kernel rejected {value!r}: {exc.strerror} ({name})",
                ExitCode.PRIVILEGES if privileges else ExitCode.FINDINGS,
                hint="run as root or use --dry-run" if privileges else None,
            ) from exc
        finally:
            os.close(fd)

    # -- other /proc files ----------------------------------------------------
    def proc_path(self, rel: str) -> Path:
        rel = rel.lstrip("/")
        if ".." in rel.split("/") or "\x00" in rel:
            raise TcptuneError(f"bad /proc path {rel!r}", ExitCode.BAD_INPUT)
        return self.root / "proc" / rel

    def read_proc_text(self, rel: str) -> str | None:
        """Text of root/proc/REL (e.g. 'net/tcp'), or None when absent; bounded by what such a file holds."""
        path = self.proc_path(rel)
        rel = str(path.relative_to(self.root))
        try:
            data = self._tree.read_bytes(rel, _PROC_LIMITS.get(rel, SMALL_FILE_BYTES))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise TcptuneError(f"cannot read {path}: {exc.strerror}", ExitCode.BAD_INPUT) from exc
        return data.decode("utf-8", "replace")

    def read_file_text(self, rel: str, limit: int = SMALL_FILE_BYTES) -> str | None:
        """Text of any regular file ROOT/REL (a bundle's own files), or None when absent."""
        try:
            return self._tree.read_bytes(rel, limit).decode("utf-8", "replace")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise TcptuneError(f"cannot read {self._tree.where(rel)}: {exc.strerror}", ExitCode.BAD_INPUT) from exc

    def kernel_release(self) -> str | None:
        value = self.read_proc_text("sys/kernel/osrelease")
        if value is None and self.is_live:
            value = os.uname().release
        return value.strip() if value else None

    def kernel_build(self) -> str | None:
        """kernel.version, the build string ('#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (...)')."""
        value = self.read_proc_text("sys/kernel/version")
        if value is None and self.is_live:
            value = os.uname().version
        return value.strip() if value else None


class DumpHost:
    """Values from `sysctl -a` output (another machine, or this one at another time).  Read-only."""

    kind = SourceKind.DUMP
    is_live = False

    def __init__(self, values: dict[str, str], label: str):
        self.values = {k: normalize_value(v) for k, v in values.items()}
        self.label = f"sysctl dump {label}"

    @property
    def target(self) -> Target:
        raise TcptuneError(f"{self.label} is read-only: nothing to lock or snapshot", ExitCode.BAD_INPUT)

    def read_sysctl(self, key: str) -> str | None:
        return self.values.get(normalize_key(key))

    def read_sysctls(self, keys: Iterable[str]) -> dict[str, str | None]:
        return {k: self.read_sysctl(k) for k in keys}

    def list_sysctls(self, dirs: Iterable[str] = SYSCTL_DIRS) -> list[str]:
        prefixes = tuple(d.replace("/", ".") + "." for d in dirs)
        return sorted(k for k in self.values if k.startswith(prefixes) and k.count(".") == 2)

    def write_sysctl(self, key: str, value: str) -> None:
        raise TcptuneError(
            f"{key}: cannot write to a {self.label}", ExitCode.BAD_INPUT, hint="apply works on a live host or --netns"
        )

    def read_proc_text(self, rel: str) -> str | None:
        return None

    def kernel_release(self) -> str | None:
        return self.values.get("kernel.osrelease")

    def kernel_build(self) -> str | None:
        return self.values.get("kernel.version")


MAX_DUMP_BYTES = 16 << 20  # `sysctl -a` of a large host is ~200 KiB


def read_dump_text(spec: str, stdin=None) -> tuple[str, str]:
    """(text, label) of a --sysctl-dump argument; '-' is standard input.

    A named file must be a regular file (a FIFO with no writer would hang the read): a
    pipe goes through stdin instead.  Everything is bounded by MAX_DUMP_BYTES.
    """
    if spec == "-":
        stream = stdin if stdin is not None else sys.stdin
        try:
            fd = stream.fileno()
            os.fstat(fd)
        except (AttributeError, ValueError, OSError):
            raise TcptuneError(
                "--sysctl-dump -: standard input is closed",
                ExitCode.BAD_INPUT,
                hint="pipe `sysctl -a` into tcptune, or pass a file",
            ) from None
        if os.isatty(fd):
            raise TcptuneError(
                "--sysctl-dump -: stdin is a terminal", ExitCode.BAD_INPUT, hint="pipe `sysctl -a` into tcptune"
            )
        label = "<stdin>"
    else:
        label = spec
        try:
            fd = open_regular(spec, "--sysctl-dump")
        except TcptuneError as exc:
            exc.hint = "a pipe or process substitution goes through stdin: `... | tcptune audit --sysctl-dump -`"
            raise
        except OSError as exc:
            raise TcptuneError(f"--sysctl-dump {spec}: {exc.strerror}", ExitCode.BAD_INPUT) from exc
    try:
        data = read_bounded(fd, MAX_DUMP_BYTES)
    except OSError as exc:
        raise TcptuneError(f"--sysctl-dump {label}: {exc.strerror}", ExitCode.BAD_INPUT) from exc
    finally:
        if spec != "-":
            os.close(fd)
    if data is None:
        raise TcptuneError(f"{label}: larger than {MAX_DUMP_BYTES >> 20} MiB; not a sysctl dump", ExitCode.BAD_INPUT)
    try:
        return data.decode("utf-8"), label
    except UnicodeDecodeError as exc:
        raise TcptuneError(f"{label}: not UTF-8 text (byte {exc.start})", ExitCode.BAD_INPUT) from exc


def _refuse_empty(option: str, value: str | None) -> None:
    if value is not None and not value.strip():
        raise TcptuneError(
            f"{option} is empty; nothing was read",
            ExitCode.BAD_INPUT,
            hint=f"leave {option} out for the live host; an unset variable or a `$(pidof ...)` that found nothing expands to an empty value",
        )


def open_source(
    root: str | os.PathLike[str] | None = None, sysctl_dump: str | None = None, netns: str | None = None
) -> Source:
    """The source a command reads from: the live host, a --root tree, a dump, or --netns (entered here)."""
    given = [
        name for name, v in (("--root", root), ("--sysctl-dump", sysctl_dump), ("--netns", netns)) if v is not None
    ]
    _refuse_empty("--sysctl-dump", sysctl_dump)  # callers that bypass the option parsers get the same check
    _refuse_empty("--netns", netns)
    if len(given) > 1:
        raise TcptuneError(f"{' and '.join(given)} cannot be combined", ExitCode.BAD_INPUT, hint="pick one source")
    if sysctl_dump is not None:
        from tcptune.core.sysctl_text import parse_sysctl_dump

        text, label = read_dump_text(sysctl_dump)
        return DumpHost(parse_sysctl_dump(text, source=label), label)
    if netns is not None:
        from tcptune.host.netns import enter_netns

        enter_netns(netns)
        # Not "live host": the JSON `source` and every table header must say which namespace.
        return Host("/", netns=f"{netns} (net:[{own_netns_inode()}])")
    return Host("/" if root is None else root)
