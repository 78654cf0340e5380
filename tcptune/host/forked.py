"""Work done in a forked child while this process goes on: doctor's fd sample and key counting.

HOST layer.  A process and not a thread because the work is many short steps (system calls,
or dict updates) and the dump's decoding holds the GIL: on a thread, the fd sample's readlink()
calls each waited for the GIL again (the 5 ms switch interval), and counting keys would not
run beside the decoding at all.  The child runs code that is already imported, gets its input
(if any) through a pipe, hands back one marshalled value and leaves with os._exit().  Fork
before starting any thread: a child of a threaded process inherits locks other threads held.
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Callable

from tcptune.errors import ExitCode, TcptuneError


class Forked:
    """``work(input_file)`` in a child; ``input`` (with ``feed=True``) is the writable end of its input."""

    def __init__(self, work: Callable, feed: bool = False) -> None:
        self.pid = None
        self.input = None
        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe() if feed else (None, None)
        try:
            pid = os.fork()
        except OSError:  # no fork (process limits): the caller does the work itself
            for fd in (out_r, out_w, in_r, in_w):
                if fd is not None:
                    os.close(fd)
            return
        if pid == 0:  # the child
            code = 0
            try:
                os.close(out_r)
                if in_w is not None:
                    os.close(in_w)
                value = work(os.fdopen(in_r, "rb", buffering=1 << 20) if in_r is not None else None)
                view = memoryview(marshal.dumps(value))
                while view:
                    view = view[os.write(out_w, view) :]
            except BaseException:  # noqa: BLE001 - the parent sees an empty pipe
                code = 70
            finally:
                os._exit(code)
        os.close(out_w)
        if in_r is not None:
            os.close(in_r)
            self.input = os.fdopen(in_w, "wb", buffering=1 << 20)
        self.pid, self._out = pid, out_r

    @property
    def running(self) -> bool:
        return self.pid is not None

    def result(self):
        """The child's value; None when it failed (the caller decides what that means)."""
        if self.pid is None:
            return None
        if self.input is not None:
            try:
                self.input.close()  # its end of input
            except OSError:  # it is gone: what it wrote says the rest
                pass
            self.input = None
        chunks = []
        with os.fdopen(self._out, "rb") as fh:
            while chunk := fh.read(1 << 20):
                chunks.append(chunk)
        os.waitpid(self.pid, 0)
        self.pid = None
        return marshal.loads(b"".join(chunks)) if chunks else None

    def send(self, *parts: bytes) -> None:
        """Write to the child's input; a child that died is an internal error."""
        try:
            for part in parts:
                self.input.write(part)
        except OSError as exc:  # BrokenPipeError among them
            raise TcptuneError(f"a helper process ended early ({exc.strerror})", ExitCode.INTERNAL) from exc

    def __del__(self) -> None:
        # never asked for (an error on the way): no zombie; closing our ends ends its work
        if self.pid is not None:
            try:
                if self.input is not None:
                    self.input.close()
                os.close(self._out)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.pid = None
