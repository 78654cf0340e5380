"""The kernel version with its stable patch level, and the knowledge base's version rules that need it.

Debian's 6.1 names its kernel by the ABI (kernel.osrelease 6.1.0-57-amd64); the release, 6.1.192,
is only in kernel.version.  tcp_shrink_window came to 6.1 in 6.1.59 (a stable backport of 6.5's
sysctl), optmem_max was global before 6.8 and {r,w}mem_{max,default} are mirrored into child
namespaces only since 6.11: each rule is checked on both sides of its version here, and on the
real kernels by tests/kernels.  Real strings come from tests/kernels/data (SOURCE notes in
tests/kernels/README.md), tests/data (tests/data/SOURCE.md) and this host.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcptune.core.audit import audit, hidden_global_keys
from tcptune.core.profile import Profile, Setting
from tcptune.core.sysctl_text import parse_sysctl_dump
from tcptune.errors import TcptuneError
from tcptune.host.source import DumpHost, Host, kernel_version
from tcptune.kernel.kb import load_kb, parse_kb
from tcptune.kernel.version import parse_release, parse_version

DATA = Path(__file__).resolve().parents[1] / "data"
GUEST_DATA = Path(__file__).resolve().parents[1] / "kernels" / "data"
KB = load_kb()


def _dump(path: Path) -> dict[str, str]:
    return parse_sysctl_dump(path.read_text(), str(path))


# -- parse_release ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "dump,version",
    [
        (GUEST_DATA / "sysctl-a-6.1.txt", (6, 1, 192)),  # 6.1.0-57-amd64, "... Debian 6.1.192-3 (...)"
        (GUEST_DATA / "sysctl-a-netns-6.1.txt", (6, 1, 192)),
        (GUEST_DATA / "sysctl-a-6.12.txt", (6, 12, 118)),  # 6.12.118+deb12-amd64 already says it
        (DATA / "sysctl-a-full-6.18.txt", (6, 18, 44)),  # 6.18.44-fc-v657, "#1 SMP PREEMPT_DYNAMIC @0"
    ],
    ids=lambda x: x.name if isinstance(x, Path) else None,
)
def test_release_of_recorded_kernels(dump, version):
    values = _dump(dump)
    assert parse_release(values["kernel.osrelease"], values["kernel.version"]) == version
    assert kernel_version(DumpHost(values, dump.name)) == version


def test_release_of_this_host():
    # This machine's build string names no version: the osrelease rules.
    u = os.uname()
    assert parse_release(u.release, u.version) == parse_version(u.release)
    assert kernel_version(Host("/")) == parse_version(u.release)


@pytest.mark.parametrize(
    "osrelease,build,version",
    [
        ("6.1.0-57-amd64", None, (6, 1, 0)),  # no build string: the ABI name is all there is
        ("6.1.0-57-amd64", "#1 SMP PREEMPT_DYNAMIC @0", (6, 1, 0)),
        # a build string of another series (a mislabelled tree) is not trusted
        ("6.1.0-57-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2026-11-14)", (6, 1, 0)),
        # a patch level in the osrelease wins over the build string
        ("6.12.117+deb12-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.12.118-1~deb12u1 (2026-11-30)", (6, 12, 117)),
        ("6.1.0-57-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)", (6, 1, 192)),
    ],
)
def test_parse_release_trusts_the_build_string_only_for_a_missing_patch_level(osrelease, build, version):
    assert parse_release(osrelease, build) == version


@given(st.text(max_size=200))
def test_parse_release_never_fails_on_an_odd_build_string(build):
    v = parse_release("6.1.0-57-amd64", build)
    assert v[:2] == (6, 1)


def test_parse_release_rejects_a_bad_osrelease():
    with pytest.raises(TcptuneError):
        parse_release("linux", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3")


def test_a_saved_tree_gives_the_patch_level_from_kernel_version(tmp_path):
    kernel = tmp_path / "proc/sys/kernel"
    kernel.mkdir(parents=True)
    (tmp_path / "proc/sys/net").mkdir()
    (kernel / "osrelease").write_text("6.1.0-57-amd64\n")
    assert kernel_version(Host(tmp_path)) == (6, 1, 0)
    (kernel / "version").write_text("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)\n")
    assert kernel_version(Host(tmp_path)) == (6, 1, 192)


# -- backported: tcp_shrink_window, 6.5 mainline, 6.1.59 stable ------------------------


@pytest.mark.parametrize(
    "release,exists",
    [
        ((6, 1, 0), False),
        ((6, 1, 58), False),
        ((6, 1, 59), True),
        ((6, 1, 192), True),
        ((6, 2, 0), False),  # 6.2 .. 6.4 never had it: not "since 6.1.59"
        ((6, 4, 16), False),
        ((6, 5, 0), True),
        ((6, 18, 44), True),
        ((5, 15, 170), False),
    ],
)
def test_shrink_window_exists_from_its_backport_and_its_mainline_release(release, exists):
    p = KB.get("net.ipv4.tcp_shrink_window")
    assert p.backported == ((6, 1, 59),)
    assert p.exists_in(release) is exists
    assert (p.default_for(release) == "0") is exists


def test_the_6_1_kernel_default_profile_holds_shrink_window_only_past_the_backport():
    from tcptune.core.profile import kernel_default_settings

    assert "net.ipv4.tcp_shrink_window" in kernel_default_settings(KB, (6, 1, 192))
    assert "net.ipv4.tcp_shrink_window" not in kernel_default_settings(KB, (6, 1, 58))


def test_audit_of_an_old_6_1_names_the_stable_release_that_has_the_key():
    prof = Profile(
        "p", "test", "test", {"net.ipv4.tcp_shrink_window": Setting("net.ipv4.tcp_shrink_window", "1", "", "")}
    )
    (f,) = audit(prof, {"net.ipv4.tcp_shrink_window": None}, KB, (6, 1, 58))
    assert f.verdict == "unsupported" and "6.5 or later or 6.1.59+ in 6.1 stable" in f.reason, f.reason
    (f,) = audit(prof, {"net.ipv4.tcp_shrink_window": "1"}, KB, (6, 1, 192))
    assert f.verdict == "ok"


# -- older_scope: optmem_max global before 6.8; rmem_max & co mirrored since 6.11 ------


@pytest.mark.parametrize(
    "release,scope", [((6, 1, 192), "global"), ((6, 7, 12), "global"), ((6, 8, 0), "netns"), (None, "netns")]
)
def test_optmem_max_became_per_netns_in_6_8(release, scope):
    p = KB.get("net.core.optmem_max")
    assert p.scope_for(release) == scope and p.netns_init_for(release) == "default"


@pytest.mark.parametrize(
    "key", ["net.core.rmem_max", "net.core.wmem_max", "net.core.rmem_default", "net.core.wmem_default"]
)
@pytest.mark.parametrize(
    "release,init", [((6, 1, 192), "default"), ((6, 10, 14), "default"), ((6, 11, 0), "copy"), (None, "copy")]
)
def test_memory_limits_are_mirrored_into_child_netns_since_6_11(key, release, init):
    p = KB.get(key)
    assert p.scope_for(release) == "global" and p.netns_init_for(release) == init


def test_a_6_1_child_netns_dump_shows_the_old_scopes():
    # The recorded `unshare -n sysctl -a` of 6.1.192: optmem_max and the memory limits absent,
    # as scope_for/netns_init_for say, and the audit counts them as hidden global keys, not findings.
    values = _dump(GUEST_DATA / "sysctl-a-netns-6.1.txt")
    host = DumpHost(values, "6.1 netns")
    release = kernel_version(host)
    for key in ("net.core.optmem_max", "net.core.rmem_max", "net.core.wmem_default"):
        p = KB.get(key)
        assert key not in values and (p.scope_for(release), p.netns_init_for(release)) == ("global", "default")
    from tcptune.core.profile import kernel_default_settings

    prof = Profile("kernel-default", "test", "built-in", kernel_default_settings(KB, release))
    current = {k: host.read_sysctl(k) for k in prof.settings}
    hidden = hidden_global_keys(prof, current, KB, release)
    assert {"net.core.optmem_max", "net.core.rmem_max"} <= set(hidden)
    assert not [f for f in audit(prof, current, KB, release, source_kind="dump") if f.verdict != "ok"]
    # the same dump judged as 6.12 would call optmem_max missing from a per-netns kernel
    assert "net.core.optmem_max" not in hidden_global_keys(prof, current, KB, (6, 12, 117))


def test_a_6_12_child_netns_dump_shows_the_mirrors():
    values = _dump(GUEST_DATA / "sysctl-a-netns-6.12.txt")
    release = kernel_version(DumpHost(values, "6.12 netns"))
    for key in ("net.core.optmem_max", "net.core.rmem_max", "net.core.wmem_default"):
        assert key in values
    assert KB.get("net.core.rmem_max").netns_init_for(release) == "copy"
    assert KB.get("net.core.optmem_max").scope_for(release) == "netns"


# -- the loader refuses what it cannot mean ----------------------------------------------

_ENTRY = 'key = "net.ipv4.x"\ntype = "int"\nunit = "count"\nmeaning = "m"\nsource = "s"\n'


@pytest.mark.parametrize(
    "extra",
    [
        'older_scope = [{ before = "6.8" }]',  # neither scope nor netns_init
        'older_scope = [{ scope = "global" }]',  # no before
        'older_scope = [{ before = "6.8", scope = "world" }]',
        'older_scope = [{ before = "6.8", netns_init = "maybe" }]',
        'backported = ["6.1.59"]',  # no since
        'since = "6.5"\nbackported = ["6.5.3"]',  # not older than since
        'since = "6.5"\nbackported = ["6.1"]',  # no patch level: it would mean all of 6.1
    ],
)
def test_bad_version_rules_are_refused(extra):
    with pytest.raises(ValueError, match="net.ipv4.x"):
        parse_kb(f"[[param]]\n{_ENTRY}{extra}\n")


def test_older_scope_fields_left_out_stay_as_now():
    kb = parse_kb(
        f'[[param]]\n{_ENTRY}scope = "global"\nnetns_init = "copy"\n'
        'older_scope = [{ before = "6.11", netns_init = "default" }, { before = "5.0", scope = "netns" }]\n'
    )
    p = kb.get("net.ipv4.x")
    assert (p.scope_for((6, 11, 0)), p.netns_init_for((6, 11, 0))) == ("global", "copy")
    assert (p.scope_for((6, 10, 0)), p.netns_init_for((6, 10, 0))) == ("global", "default")
    assert (p.scope_for((4, 19, 0)), p.netns_init_for((4, 19, 0))) == ("netns", "default")
