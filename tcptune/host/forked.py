"""Work done in a forked child while this process goes on: doctor's fd sample and key
counting, and one half of a large ``trace --read`` (ForkedStream).

HOST layer.  A process and not a thread because the work is many short steps (system calls,
or dict updates) and the dump's decoding holds the GIL: on a thread, the fd sample's readlink()
calls each waited for the GIL again (the 5 ms switch interval), and counting keys would not
run beside the decoding at all.  The child runs code that is already imported, gets its input
(if any) through a pipe, hands back one marshalled value and leaves with os._exit().  Fork
before starting any thread: a child of a threaded process inherits locks other threads held.
"""

from __future__ import annotations

import fcntl
import marshal
import os
import select
import signal
from collections import deque
from collections.abc import Callable, Iterable
from typing import NoReturn

from tcptune.errors import ExitCode, TcptuneError


def _fork(*fds: int | None) -> int | None:
    """os.fork(); None when it fails (process limits), with ``fds`` closed: the caller then
    does the work itself."""
    try:
        return os.fork()
    except OSError:
        for fd in fds:
            if fd is not None:
                os.close(fd)
        return None


def _run_child(body: Callable[[], None]) -> NoReturn:
    """In the child: ``body``, then os._exit (0, or 70 when it failed: no finally or atexit
    of the parent's runs here)."""
    code = 0
    try:
        body()
    except BaseException:  # noqa: BLE001 - whatever it was, the parent sees incomplete output
        code = 70
    finally:
        os._exit(code)


class Forked:
    """``work(input_file)`` in a child; ``input`` (with ``feed=True``) is the writable end of its input."""

    def __init__(self, work: Callable, feed: bool = False) -> None:
        self.pid = None
        self.input = None
        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe() if feed else (None, None)
        pid = _fork(out_r, out_w, in_r, in_w)
        if pid is None:
            return
        if pid == 0:  # the child: the parent sees an empty pipe if it fails

            def child() -> None:
                os.close(out_r)
                if in_w is not None:
                    os.close(in_w)
                value = work(os.fdopen(in_r, "rb", buffering=1 << 20) if in_r is not None else None)
                view = memoryview(marshal.dumps(value))
                while view:
                    view = view[os.write(out_w, view) :]

            _run_child(child)
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


def spare_cpu() -> bool:
    """Whether this process may run on more than one CPU (a child would run beside it)."""
    return len(os.sched_getaffinity(0)) > 1


PIPE_SIZE = 1 << 20  # the default /proc/sys/fs/pipe-max-size
READ_SIZE = 1 << 16  # os.read() allocates what it is asked for, whatever it gets (os_read_impl)
_FRAME_END = (0).to_bytes(8, "little")  # a value's frame is its length, then its marshal; 0: the end


END = object()  # what ForkedStream.wait() gives once the child has sent all its values


class ForkedStream:
    """``work()``'s values made in a child and handed over as it makes them: the child runs
    ahead by what the pipe holds (its writes block), so memory stays bounded.  ``ready()``
    takes the values already through the pipe without waiting, ``wait()`` one value (or END)
    waiting for it, and raises TcptuneError (exit 70) when the child ended without finishing.  ``close()`` ends a child not read to its end (ours, by its pid)."""

    END = END

    def __init__(self, work: Callable[[], Iterable]) -> None:
        self.pid = None
        out_r, out_w = os.pipe()
        try:
            # room for the child to run ahead: with the default 64 KiB the two processes took
            # turns waiting for each other (trace --read --json: 0.44 s of 3.3 s)
            fcntl.fcntl(out_w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # above /proc/sys/fs/pipe-max-size for this user: the default then
            pass
        pid = _fork(out_r, out_w)
        if pid is None:
            return
        if pid == 0:  # the child: the parent sees no end frame if it fails

            def child() -> None:
                os.close(out_r)
                # Ctrl-C (the whole foreground group gets it) is for the parent to report; it stops
                # this child itself (close) rather than find it gone and call that an internal error
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                with os.fdopen(out_w, "wb", buffering=1 << 16) as out:
                    for value in work():
                        frame = marshal.dumps(value)
                        out.write(len(frame).to_bytes(8, "little"))
                        out.write(frame)
                    out.write(_FRAME_END)

            _run_child(child)
        os.close(out_w)
        os.set_blocking(out_r, False)  # ready() takes what is there and goes on
        self.pid, self._fd = pid, out_r
        self._buf = bytearray()  # bytes read, not yet whole frames
        self._values: deque = deque()  # values read, not yet taken
        self._eof = self._ended = False  # the pipe's end; the child's end frame

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _read(self, block: bool) -> None:
        """What the pipe holds into values (waiting for something first, with ``block``)."""
        if block and not self._eof:
            select.select([self._fd], [], [])
        while not self._eof:
            try:
                chunk = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                break
            if not chunk:
                self._eof = True
                break
            self._buf += chunk
        buf, at = self._buf, 0
        while not self._ended and len(buf) - at >= 8:
            size = int.from_bytes(buf[at : at + 8], "little")
            if size == 0:
                self._ended = True
                at += 8
            elif len(buf) - at - 8 >= size:
                self._values.append(marshal.loads(buf[at + 8 : at + 8 + size]))
                at += 8 + size
            else:
                break
        del buf[:at]

    def _failed(self) -> TcptuneError:
        self.close()
        return TcptuneError("a helper process ended before its work was done", ExitCode.INTERNAL)

    def ready(self) -> list:
        """The values already sent, without waiting (a child gone early is wait()'s to say)."""
        self._read(block=False)
        taken = list(self._values)
        self._values.clear()
        return taken

    def wait(self):
        """The next value, or END, waiting for it."""
        while not self._values:
            if self._ended:
                self.close(finished=True)
                return self.END
            if self._eof:
                raise self._failed()
            self._read(block=True)
        return self._values.popleft()

    def close(self, finished: bool = False) -> None:
        """Reap the child; one that has not ``finished`` is stopped first (its output is not wanted)."""
        if self.pid is None:
            return
        os.close(self._fd)
        try:
            pid, _ = os.waitpid(self.pid, 0 if finished else os.WNOHANG)
            if pid == 0:  # still working: it is not read any more
                os.kill(self.pid, signal.SIGTERM)
                os.waitpid(self.pid, 0)
        except OSError:
            pass
        self.pid = None

    def __del__(self) -> None:
        self.close()
