"""The knowledge base against the running kernel, live.

In a fresh network namespace every per-netns key holds what the kernel gives a
new namespace, so each entry with scope "netns" and netns_init "default" must
equal ``param.default_for(running kernel)``.  Keys marked scope "global" must be
absent there (or, for netns_init "copy", a read-only mirror of the host value)
and present on the host.  The host is only read, never written.
"""

from __future__ import annotations

import os

import pytest
from nsutil import require_netns, run_in_netns

from tcptune.host.source import Host
from tcptune.kernel.kb import load_kb
from tcptune.kernel.version import format_version, parse_version


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
    return parse_version(fresh["release"])


def _params(**match):
    return [p for p in load_kb() if all(getattr(p, k) == v for k, v in match.items())]


@pytest.mark.parametrize("param", _params(scope="netns", netns_init="default"), ids=lambda p: p.key)
def test_fresh_netns_holds_kernel_default(param, fresh, release):
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


@pytest.mark.parametrize("param", _params(scope="netns", netns_init="copy"), ids=lambda p: p.key)
def test_copied_keys_mirror_the_initial_namespace(param, fresh, release):
    # A copy is of the initial namespace's CURRENT value, so compare with the host (read only).
    value, writable = fresh["values"][param.key]
    assert value is not None and writable, f"{param.key}: should be a writable per-netns key"
    assert value == Host("/").read_sysctl(param.key), f"{param.key}: a new netns does not copy the host's value"


@pytest.mark.parametrize("param", _params(scope="netns", netns_init="computed"), ids=lambda p: p.key)
def test_computed_keys_exist_in_a_fresh_netns(param, fresh, release):
    if param.exists_in(release):
        assert fresh["values"][param.key][0] is not None, f"{param.key} missing in a fresh netns"


@pytest.mark.parametrize("param", _params(scope="global"), ids=lambda p: p.key)
def test_global_keys_are_not_per_netns(param, fresh, release):
    if not param.exists_in(release):
        pytest.skip(f"{param.key} does not exist on {format_version(release)}")
    on_host = Host("/").read_sysctl(param.key)
    assert on_host is not None, f"{param.key} (global) is absent on the host"
    value, writable = fresh["values"][param.key]
    if param.netns_init == "copy":
        assert value == on_host and writable is False, (
            f"{param.key}: expected a read-only mirror of the host value in a new netns, got {value!r} writable={writable}"
        )
    else:
        assert value is None, f"{param.key}: marked global but a fresh netns has it ({value!r})"


def test_every_kernel_tcp_key_is_known_or_deliberately_left_out(fresh):
    kb = load_kb()
    present = [k for k in Host("/").list_sysctls(("net/ipv4",)) if k.startswith("net.ipv4.tcp_")]
    unknown = sorted(set(present) - set(kb.params) - {"net.ipv4.tcp_fastopen_key"})
    assert not unknown, f"the running kernel has TCP keys the knowledge base lacks: {unknown}"
