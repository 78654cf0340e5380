"""Text put away on disk until it is wanted once: `trace --read --json`'s long connections.

HOST layer.  A JSON connection holds all its packets, so a capture of a few long transfers
would hold them all in memory until each ends; past a bound the writer (render/trace.py
ConnectionsJson) puts them here instead.  The file is unlinked from the start (O_TMPFILE or
tempfile's unlink), in $TMPDIR, made when first needed (or before a fork), and goes when
both processes that read it have closed it.
"""

from __future__ import annotations

import os
import tempfile

from tcptune.errors import ExitCode, TcptuneError


class SpillFile:
    """``put`` appends a text and says where it went; ``read`` gives it back, in this process
    or in a forked child or parent (the file is open in both)."""

    def __init__(self, what: str) -> None:
        self.what = what  # the option it serves, for errors
        self._file = None
        self.fd = -1
        self.end = 0

    def open(self) -> None:
        """Make the file now (before a fork, for both processes to have it); else the first put does."""
        if self._file is None:
            try:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 - open for as long as the reading
            except OSError as exc:
                raise self._error(exc) from None
            self.fd = self._file.fileno()

    def _error(self, exc: OSError) -> TcptuneError:
        return TcptuneError(
            f"{self.what}: cannot put long connections' packets aside in {tempfile.gettempdir()}: {exc.strerror}",
            ExitCode.BAD_INPUT,
            hint="set TMPDIR to a file system with room (about the size of the JSON)",
        )

    def put(self, text: str) -> tuple[int, int]:
        self.open()
        data = text.encode()
        view, offset = memoryview(data), self.end
        try:
            while view:
                view = view[os.pwrite(self.fd, view, offset + len(data) - len(view)) :]
        except OSError as exc:
            raise self._error(exc) from None
        self.end += len(data)
        return offset, len(data)

    def read(self, offset: int, size: int) -> str:
        parts, got = [], 0
        while got < size:
            part = os.pread(self.fd, size - got, offset + got)
            if not part:
                raise TcptuneError(f"{self.what}: the temporary file lost data it held", ExitCode.INTERNAL)
            parts.append(part)
            got += len(part)
        return b"".join(parts).decode()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
