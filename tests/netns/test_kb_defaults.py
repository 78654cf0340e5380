"""The knowledge base against the running kernel, live.

In a fresh network namespace every per-netns key holds what the kernel gives a
new namespace, so each entry with scope "netns" and netns_init "default" must
equal ``param.default_for(running kernel)``.  Keys marked scope "global" must be
absent there (or, for netns_init "copy", a read-only mirror of the host value)
and present on the host.  Scope and netns_init are those of the running kernel
(``scope_for``/``netns_init_for``), which tests/kernels runs on 6.1 and 6.12.  The
host is only read, never written.
"""

from __future__ import annotations

import os

import pytest
from nsutil import require_netns, run_in_netns

from tcptune.host.source import Host, kernel_version
from tcptune.kernel.kb import load_kb
from tcptune.kernel.version import format_version


def _read_all(keys: list[str]) -> dict:
    """Runs in the child (fresh netns): value and writability of every key."""
    host = Host("/")
    out = {}
    for key in keys:
        path = host.sysctl_path(key)
        value = host.read_sysctl(key)
        out[key] = (value, os.access(path, os.W_OK) if value is not None else None)
    return {"values": out, "release": host.kernel_release(), "netns": os.stat("/proc/self/ns/net").st_ino}


@pytest.fixture(scope="module")
def fresh():
    require_netns()
    kb = load_kb()
    result = run_in_netns(_read_all, sorted(kb.params))
    assert result["netns"] != os.stat("/proc/self/ns/net").st_ino, "child did not run in its own namespace"
    return result


@pytest.fixture(scope="module")
def release(fresh):
    # With its stable patch level: Debian's 6.1.0-57-amd64 is 6.1.192 (kernel.version), which
    # has tcp_shrink_window from 6.1.59.  Same kernel in the child and here.
    host = Host("/")
    assert host.kernel_release() == fresh["release"]
    return kernel_version(host)


def _params(**match):
    """Cases grouped by scope and netns_init on current kernels (the ids stay the same on every
    kernel); each case checks what the RUNNING kernel's scope says (older_scope: optmem_max was
    global before 6.8, rmem_max mirrored only since 6.11)."""
    return [p for p in load_kb() if all(getattr(p, k) == v for k, v in match.items())]


def _check(param, fresh, release) -> None:
    scope, init = param.scope_for(release), param.netns_init_for(release)
    if scope == "global":
        _check_global(param, fresh, release, init)
    elif init == "default":
        _check_default(param, fresh, release)
    elif init == "copy":
        # A copy is of the initial namespace's CURRENT value, so compare with the host (read only).
        value, writable = fresh["values"][param.key]
        assert value is not None and writable, f"{param.key}: should be a writable per-netns key"
        assert value == Host("/").read_sysctl(param.key), f"{param.key}: a new netns does not copy the host's value"
    elif param.exists_in(release):
        assert fresh["values"][param.key][0] is not None, f"{param.key} missing in a fresh netns"


def _check_default(param, fresh, release) -> None:
    value, _ = fresh["values"][param.key]
    if not param.exists_in(release):
        assert value is None, (
            f"{param.key} exists on {format_version(release)} but the KB says since/removed excludes it"
        )
        return
    if value is None:
        pytest.fail(
            f"{param.key} is absent on {format_version(release)}: the KB entry needs since/removed to explain it"
        )
    expected = param.default_for(release)
    assert expected is not None, f"{param.key}: netns_init=default but no default for {format_version(release)}"
    assert value == expected, f"{param.key}: kernel gives a new netns {value!r}, KB says {expected!r}"


def _check_global(param, fresh, release, init) -> None:
    if not param.exists_in(release):
        pytest.skip(f"{param.key} does not exist on {format_version(release)}")
    on_host = Host("/").read_sysctl(param.key)
    assert on_host is not None, f"{param.key} (global on {format_version(release)}) is absent on the host"
    value, writable = fresh["values"][param.key]
    if init == "copy":
        assert value == on_host and writable is False, (
            f"{param.key}: expected a read-only mirror of the host value in a new netns, got {value!r} writable={writable}"
        )
    else:
        assert value is None, f"{param.key}: global on {format_version(release)} but a fresh netns has it ({value!r})"


@pytest.mark.parametrize("param", _params(scope="netns", netns_init="default"), ids=lambda p: p.key)
def test_fresh_netns_holds_kernel_default(param, fresh, release):
    _check(param, fresh, release)


@pytest.mark.parametrize("param", _params(scope="netns", netns_init="copy"), ids=lambda p: p.key)
def test_copied_keys_mirror_the_initial_namespace(param, fresh, release):
    _check(param, fresh, release)


@pytest.mark.parametrize("param", _params(scope="netns", netns_init="computed"), ids=lambda p: p.key)
def test_computed_keys_exist_in_a_fresh_netns(param, fresh, release):
    _check(param, fresh, release)


@pytest.mark.parametrize("param", _params(scope="global"), ids=lambda p: p.key)
def test_global_keys_are_not_per_netns(param, fresh, release):
    _check(param, fresh, release)


def test_every_kernel_tcp_key_is_known_or_deliberately_left_out(fresh):
    kb = load_kb()
    present = [k for k in Host("/").list_sysctls(("net/ipv4",)) if k.startswith("net.ipv4.tcp_")]
    unknown = sorted(set(present) - set(kb.params) - {"net.ipv4.tcp_fastopen_key"})
    assert not unknown, f"the running kernel has TCP keys the knowledge base lacks: {unknown}"
