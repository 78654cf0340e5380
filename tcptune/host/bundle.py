"""Writing a support bundle: a .tar.gz shaped like / that `--root` reads back.

Members are regular files with fixed owner, mode and time, so a bundle holds data only
(no links, devices or absolute paths) and two bundles of the same facts differ only where
the facts do.  Written to a temp file beside the target and renamed: never half a bundle.
"""

from __future__ import annotations

import io
import os
import tarfile
import time

from tcptune.errors import ExitCode, TcptuneError


def write_bundle(path: str, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative path -> content) as the gzip'd tar ``path``, atomically."""
    if not path.endswith((".tar.gz", ".tgz")):
        raise TcptuneError(f"--bundle {path}: name it FILE.tar.gz", ExitCode.BAD_INPUT)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    now = int(time.time())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        code = ExitCode.PRIVILEGES if isinstance(exc, PermissionError) else ExitCode.BAD_INPUT
        raise TcptuneError(f"--bundle {path}: {exc.strerror}", code) from None
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for rel in sorted(files):
                data = files[rel]
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, now, 0, 0
                tar.addfile(info, io.BytesIO(data))
            raw.flush()
            os.fsync(raw.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
