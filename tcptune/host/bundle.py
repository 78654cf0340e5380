"""Writing a support bundle: a .tar.gz shaped like / that `--root` reads back.

Members are regular files with fixed owner, mode and time, so a bundle holds data only
(no links, devices or absolute paths) and two bundles of the same facts differ only where
the facts do.  Written through fsio.replace_at, as snapshots and the sysctl.d file are: never
half a bundle.
"""

from __future__ import annotations

import io
import os
import tarfile
import time

from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.fsio import replace_at


def write_bundle(path: str, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative path -> content) as the gzip'd tar ``path``, atomically
    (host/fsio.py replace_at: temp file beside it, fsync, rename, fsync the directory)."""
    if not path.endswith((".tar.gz", ".tgz")):
        raise TcptuneError(f"--bundle {path}: name it FILE.tar.gz", ExitCode.BAD_INPUT)
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in sorted(files):
            data = files[rel]
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, now, 0, 0
            tar.addfile(info, io.BytesIO(data))
    directory, name = os.path.split(os.path.abspath(path))
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            replace_at(dfd, name, buf.getvalue(), 0o600)
        finally:
            os.close(dfd)
    except OSError as exc:
        code = ExitCode.PRIVILEGES if isinstance(exc, PermissionError) else ExitCode.BAD_INPUT
        raise TcptuneError(f"--bundle {path}: {exc.strerror}", code) from None
