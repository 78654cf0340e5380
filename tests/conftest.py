"""Shared test fixtures.

The session guard below records the host's own net.ipv4 / net.core sysctls when
the suite starts and fails the run if any of them changed by the end: every test
that writes a sysctl must do it inside a private network namespace
(tests/nsutil.py), and this makes a leak impossible to miss.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

_WATCHED_DIRS = ("/proc/sys/net/ipv4", "/proc/sys/net/core")


def _host_sysctls() -> dict[str, str]:
    values = {}
    for d in _WATCHED_DIRS:
        for entry in os.scandir(d):
            if not entry.is_file() or entry.name in {"tcp_fastopen_key"}:
                continue
            try:
                with open(entry.path) as fh:
                    values[entry.path] = " ".join(fh.read().split())
            except OSError:
                continue
    return values


# Counters/randomised values that move on their own.
_VOLATILE = {"/proc/sys/net/core/bpf_jit_harden"}


@pytest.fixture(scope="session", autouse=True)
def host_sysctls_unchanged():
    if not os.path.isdir("/proc/sys/net/ipv4"):
        yield
        return
    before = _host_sysctls()
    yield
    after = _host_sysctls()
    changed = {k: (before[k], after.get(k)) for k in before if k not in _VOLATILE and before[k] != after.get(k)}
    assert not changed, f"the test suite changed the HOST's sysctls (must use a private netns): {changed}"


@pytest.fixture(scope="session", autouse=True)
def private_lock_dir(tmp_path_factory):
    """apply/rollback take a per-target lock in /run/lock/tcptune or /run/tcptune by default; the suite
    keeps its locks in a directory of its own so that it leaves nothing on the host."""
    saved = os.environ.get("TCPTUNE_LOCK_DIR")
    os.environ["TCPTUNE_LOCK_DIR"] = str(tmp_path_factory.mktemp("tcptune-locks"))
    yield
    if saved is None:
        os.environ.pop("TCPTUNE_LOCK_DIR", None)
    else:
        os.environ["TCPTUNE_LOCK_DIR"] = saved


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).resolve().parent / "data"
