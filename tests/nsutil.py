"""Run test code inside a private network namespace, never in the host's.

Two ways:
- ``run_in_netns(fn, *args)``: fork; the child unshares a new network
  namespace, brings ``lo`` up, checks it is no longer in the parent's namespace,
  runs ``fn`` and sends its (picklable) result back.  An exception in the child
  is re-raised in the parent.
- ``netns_argv(argv)``: an argv that runs a command under ``unshare -n`` with
  ``lo`` up.  If unshare fails the command never runs.

``require_netns()`` skips when namespaces are unavailable, unless
TCPTUNE_REQUIRE_NETNS=1 (set by .ci/run), where the skip becomes a failure.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import traceback

import pytest

REQUIRE_ENV = "TCPTUNE_REQUIRE_NETNS"
_available: tuple[bool, str] | None = None


def netns_available() -> tuple[bool, str]:
    global _available
    if _available is None:
        if os.geteuid() != 0:
            _available = (False, "network-namespace tests need root (CAP_SYS_ADMIN)")
        elif not shutil.which("unshare"):
            _available = (False, "util-linux `unshare` is not installed")
        else:
            r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
            _available = (r.returncode == 0, f"`unshare -n` failed: {r.stderr.strip()}")
    return _available


def require_netns() -> None:
    ok, why = netns_available()
    if ok:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but network namespaces are unavailable: {why}")
    pytest.skip(why)


def _lo_up() -> None:
    import fcntl
    import socket
    import struct

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, req)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def host_netns_inode() -> int:
    return os.stat("/proc/1/ns/net").st_ino


def run_in_netns(fn, *args, timeout: float = 120.0, **kwargs):
    """Run ``fn(*args, **kwargs)`` in a forked child inside a fresh network namespace."""
    require_netns()
    from tcptune.host.netns import unshare_netns

    rfd, wfd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        status = 0
        try:
            parent_ns = os.stat("/proc/self/ns/net").st_ino
            unshare_netns()
            if os.stat("/proc/self/ns/net").st_ino == parent_ns:
                raise RuntimeError("unshare did not give a new network namespace; refusing to run")
            _lo_up()
            payload = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            payload = ("err", (repr(exc), traceback.format_exc()))
            status = 1
        try:
            data = pickle.dumps(payload)
        except Exception as exc:  # noqa: BLE001
            data = pickle.dumps(("err", (f"unpicklable result: {exc!r}", "")))
            status = 1
        with os.fdopen(wfd, "wb") as w:
            w.write(data)
        os._exit(status)
    os.close(wfd)
    import select

    chunks = []
    with os.fdopen(rfd, "rb") as r:
        while True:
            ready, _, _ = select.select([r], [], [], timeout)
            if not ready:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise TimeoutError(f"netns child did not finish in {timeout}s")
            chunk = os.read(r.fileno(), 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    os.waitpid(pid, 0)
    kind, value = pickle.loads(b"".join(chunks)) if chunks else ("err", ("child died without a result", ""))
    if kind == "err":
        raise AssertionError(f"in netns child: {value[0]}\n{value[1]}")
    return value


def netns_argv(argv: list[str]) -> list[str]:
    """argv that runs ``argv`` in a fresh network namespace with lo up."""
    require_netns()
    return ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
