"""The kernel knowledge base data (tcptune/kernel/params.toml) is complete, consistent and right.

Kernel facts are checked against tests/data/kb_netns_defaults-6.18.txt, a real
capture of every knowledge-base key in the initial and in a fresh network
namespace (see tests/data/kb_capture.py).  The live re-check is
tests/netns/test_kb_defaults.py.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcptune.kernel.kb import Param, load_kb, parse_kb
from tcptune.kernel.version import parse_version

KB = load_kb()
V618 = parse_version("6.18.44")
STATES = {
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
}
SCHEMA_FIELDS = {
    "key",
    "type",
    "unit",
    "meaning",
    "source",
    "scope",
    "default",
    "default_rule",
    "older_defaults",
    "boot_range",
    "ascending",
    "netns_init",
    "older_scope",
    "range",
    "length",
    "choices",
    "values",
    "since",
    "removed",
    "backported",
    "changes",
    "states",
    "details",
    "warn",
}
REQUIRED = """
tcp_syn_retries tcp_synack_retries tcp_max_syn_backlog tcp_syncookies tcp_keepalive_time
tcp_keepalive_intvl tcp_keepalive_probes tcp_fin_timeout tcp_tw_reuse tcp_tw_recycle
tcp_max_tw_buckets tcp_rmem tcp_wmem tcp_mem tcp_syn_linear_timeouts tcp_tw_reuse_delay
tcp_rto_min_us tcp_rto_max_ms tcp_retries1 tcp_retries2 tcp_orphan_retries tcp_max_orphans
tcp_abort_on_overflow tcp_timestamps tcp_sack tcp_dsack tcp_window_scaling tcp_fastopen
tcp_congestion_control tcp_slow_start_after_idle tcp_mtu_probing tcp_base_mss tcp_notsent_lowat
tcp_ecn tcp_rfc1337 tcp_no_metrics_save tcp_adv_win_scale tcp_moderate_rcvbuf tcp_autocorking
tcp_thin_linear_timeouts tcp_early_retrans tcp_frto tcp_recovery tcp_reordering
tcp_limit_output_bytes tcp_challenge_ack_limit tcp_invalid_ratelimit tcp_min_snd_mss
tcp_pacing_ss_ratio tcp_pacing_ca_ratio tcp_migrate_req tcp_ehash_entries tcp_child_ehash_entries
tcp_fastopen_blackhole_timeout_sec
""".split()
REQUIRED_FULL = [f"net.ipv4.{k}" for k in REQUIRED] + [
    "net.core.somaxconn",
    "net.core.netdev_max_backlog",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.default_qdisc",
    "net.core.optmem_max",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
]
CAPTURE = Path(__file__).resolve().parent.parent / "data" / "kb_netns_defaults-6.18.txt"


def p(key: str) -> Param:
    param = KB.get(key)
    assert param is not None, f"{key} missing from params.toml"
    return param


def raw_entries() -> list[dict]:
    text = resources.files("tcptune.kernel").joinpath("params.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)["param"]


def load_capture() -> dict[str, tuple[str, str, str, str]]:
    rows = {}
    for line in CAPTURE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, host, host_mode, fresh, fresh_mode = line.split("\t")
        rows[key] = (host, host_mode, fresh, fresh_mode)
    return rows


# -- shape ---------------------------------------------------------------------


def test_loads_and_is_big_enough():
    assert len(KB) >= 60


@pytest.mark.parametrize("key", REQUIRED_FULL)
def test_required_key_present(key):
    assert key in KB, f"{key} is required by the brief"


def test_only_schema_fields_are_used():
    # The loader ignores unknown fields, so a typo ('rnage') would silently lose data.
    for d in raw_entries():
        unknown = set(d) - SCHEMA_FIELDS
        assert not unknown, f"{d['key']}: unknown field(s) {sorted(unknown)}"


def test_header_documents_every_field():
    text = resources.files("tcptune.kernel").joinpath("params.toml").read_text(encoding="utf-8")
    header = text.split("\n[[param]]", 1)[0]
    assert all(line.startswith("#") or not line.strip() for line in header.splitlines())
    documented = {line[1:].split()[0] for line in header.splitlines() if line.startswith("#   ") and line[4:5] != " "}
    documented |= {
        w for line in header.splitlines() if line.startswith("#   since, removed") for w in ("since", "removed")
    }
    assert SCHEMA_FIELDS <= documented, f"header does not document {sorted(SCHEMA_FIELDS - documented)}"


@pytest.mark.parametrize("param", list(KB), ids=lambda q: q.key)
def test_entry_is_complete(param: Param):
    assert param.key.startswith(("net.ipv4.", "net.core.")), param.key
    assert param.meaning and param.unit and param.source
    # A source names a document or a source file or says it was measured.
    assert any(s in param.source for s in (".rst", ".c", ".h", "measured", "commit")), param.source
    assert param.default is not None or param.default_rule, f"{param.key}: neither default nor default_rule"
    assert param.details, f"{param.key}: no details for `tcptune explain`"
    if param.netns_init == "computed":
        assert param.default_rule, f"{param.key}: computed in each netns but no default_rule says how"


@pytest.mark.parametrize("param", list(KB), ids=lambda q: q.key)
def test_default_inside_range_and_choices(param: Param):
    for release in [V618] + [before for before, _ in param.older_defaults]:
        default = param.default_for(release) if param.exists_in(release) else param.default
        if default is None or default == "":
            continue
        if param.type in ("int", "bool", "enum"):
            fields = [int(default)]
            assert len(default.split()) == 1
        elif param.type == "vector":
            fields = [int(x) for x in default.split()]
            assert param.length == len(fields), (
                f"{param.key}: {default!r} has {len(fields)} fields, length={param.length}"
            )
        else:
            continue
        for n in fields:
            if param.min is not None:
                assert n >= param.min, f"{param.key}: default {n} < min {param.min}"
            if param.max is not None:
                assert n <= param.max, f"{param.key}: default {n} > max {param.max}"
    if param.type == "enum":
        assert param.choices, f"{param.key}: enum without choices"
        if param.default is not None:
            assert param.default in param.choices
        assert set(param.values) <= set(param.choices), f"{param.key}: values for unknown choices"
    if param.type == "bool" and param.default is not None:
        assert param.default in ("0", "1")
    if param.min is not None and param.max is not None:
        assert param.min <= param.max


@pytest.mark.parametrize("param", list(KB), ids=lambda q: q.key)
def test_states_and_versions_valid(param: Param):
    assert set(param.states) <= STATES, f"{param.key}: bad state names {set(param.states) - STATES}"
    if param.since and param.removed:
        assert param.since < param.removed
    for version, what in param.changes:
        parse_version(version)
        assert what
    for before, value in param.older_defaults:
        assert param.since is None or before > param.since
        assert value != param.default, f"{param.key}: older default equals the current one"


# -- warnings ------------------------------------------------------------------

OPS = {"==", "!=", "<", "<=", ">", ">="}


def _firing_and_quiet(when: str) -> tuple[int, int]:
    op, ref = when.split()
    ref = int(ref)
    return {
        "==": (ref, ref + 1),
        "!=": (ref + 1, ref),
        "<": (ref - 1, ref),
        "<=": (ref, ref + 1),
        ">": (ref + 1, ref),
        ">=": (ref, ref - 1),
    }[op]


@pytest.mark.parametrize(
    "param,warn", [(q, w) for q in KB for w in q.warn], ids=lambda x: getattr(x, "key", getattr(x, "when", "?"))
)
def test_warn_parses_and_fires(param: Param, warn):
    op, ref = warn.when.split()
    assert op in OPS and int(ref) is not None, f"{param.key}: bad when {warn.when!r}"
    assert warn.reason and (warn.source or param.source)
    fire, quiet = _firing_and_quiet(warn.when)
    assert warn.matches(str(fire)), f"{param.key}: {warn.when} should fire on {fire}"
    assert not warn.matches(str(quiet)), f"{param.key}: {warn.when} should not fire on {quiet}"
    # The running kernel's own defaults are never flagged (audits run warnings on every host).
    # An older kernel's default may be, but only where the kernel itself later changed that
    # default (a `changes` entry at the boundary says why): tcp_challenge_ack_limit=1000
    # before 6.0 is the side channel 6.0 disabled.
    from tcptune.core.audit import audit
    from tcptune.core.profile import Profile

    for release in (V618, *[_just_before(b) for b, _ in param.older_defaults]):
        d = param.default_for(release)
        if d:
            found = audit(Profile("none", "", "test", {}), {param.key: d}, KB, release)
            changed_at = {parse_version(v) for v, _ in param.changes}
            allowed = release != V618 and any(release < v for v in changed_at)
            assert not found or allowed, f"{param.key}: default {d} on {release} reported as risky: {found}"


@pytest.mark.parametrize(
    "key,risky,safe",
    [
        ("net.ipv4.tcp_timestamps", "0", "1"),
        ("net.ipv4.tcp_syncookies", "0", "1"),
        ("net.ipv4.tcp_abort_on_overflow", "1", "0"),
        ("net.ipv4.tcp_window_scaling", "0", "1"),
        ("net.ipv4.tcp_sack", "0", "1"),
        ("net.ipv4.tcp_tw_recycle", "1", "0"),
        ("net.ipv4.tcp_retries2", "5", "15"),
    ],
)
def test_documented_risky_values_warn(key, risky, safe):
    param = p(key)
    assert any(w.matches(risky) for w in param.warn), f"{key}={risky} must warn"
    assert not any(w.matches(safe) for w in param.warn), f"{key}={safe} must not warn"


@given(st.text(max_size=30))
def test_warn_matching_never_crashes_on_odd_values(text):
    for param in KB:
        for w in param.warn:
            assert w.matches(text) in (True, False)


# -- specific kernel facts ---------------------------------------------------------


def test_fin_timeout_is_about_orphaned_fin_wait2_not_time_wait():
    fin = p("net.ipv4.tcp_fin_timeout")
    assert "FIN_WAIT2" in fin.states
    assert "TIME_WAIT" not in fin.states
    assert "TCP_TIMEWAIT_LEN" in fin.details and "60" in fin.details
    assert "orphan" in fin.meaning.lower()


def test_tw_recycle_removed_in_4_12():
    tw = p("net.ipv4.tcp_tw_recycle")
    assert tw.removed == parse_version("4.12")
    assert tw.exists_in(parse_version("4.11")) and not tw.exists_in(parse_version("4.12"))
    assert tw.default_for(V618) is None
    assert "NAT" in tw.details


def test_syn_retries_history_and_linear_timeouts():
    syn = p("net.ipv4.tcp_syn_retries")
    assert syn.default_for(parse_version("3.6")) == "5"
    assert syn.default_for(parse_version("3.7")) == "6"
    assert (syn.min, syn.max) == (1, 127)
    lin = p("net.ipv4.tcp_syn_linear_timeouts")
    assert lin.since == parse_version("6.5") and lin.default == "4"
    assert lin.default_for(parse_version("6.4")) is None
    assert "1, 1, 1, 1, 1, 2, 4" in lin.details


def test_orphan_retries_zero_means_eight():
    o = p("net.ipv4.tcp_orphan_retries")
    assert o.default == "0"
    assert "tcp_timer.c" in o.source and "8" in o.details and "tcp_orphan_retries()" in o.details


def test_tw_reuse_modes():
    r = p("net.ipv4.tcp_tw_reuse")
    assert r.default == "2" and r.choices == ("0", "1", "2")
    assert "loopback" in r.values["2"]
    d = p("net.ipv4.tcp_tw_reuse_delay")
    assert d.unit == "milliseconds" and d.default == "1000" and (d.min, d.max) == (1, 60000)


def test_rto_bounds():
    lo, hi = p("net.ipv4.tcp_rto_min_us"), p("net.ipv4.tcp_rto_max_ms")
    assert lo.default == "200000" and lo.unit == "microseconds" and lo.since == parse_version("6.11")
    assert hi.default == "120000" and (hi.min, hi.max) == (1000, 120000) and hi.since == parse_version("6.15")
    assert not hi.exists_in(parse_version("6.14"))


def test_memory_dependent_keys_are_not_pinned():
    for key in ("net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_ehash_entries"):
        q = p(key)
        assert q.default is None and q.default_rule and q.netns_init == "computed", key
    for key in ("net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans"):
        q = p(key)
        assert q.default is None and q.default_rule and q.scope == "global", key
    for key in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_congestion_control"):
        assert p(key).netns_init == "copy", key


def test_short_names_resolve():
    assert KB.get("tcp_fin_timeout") is p("net.ipv4.tcp_fin_timeout")
    assert KB.get("net/ipv4/tcp_sack") is p("net.ipv4.tcp_sack")


def test_duplicate_keys_rejected():
    entry = '[[param]]\nkey = "net.ipv4.tcp_sack"\ntype = "bool"\nunit = "b"\nmeaning = "m"\nsource = "s"\n'
    with pytest.raises(ValueError, match="twice"):
        parse_kb(entry + entry)


# -- against the captured kernel -------------------------------------------------


def test_capture_covers_every_key():
    rows = load_capture()
    assert set(rows) == set(KB.params), set(rows) ^ set(KB.params)


@pytest.mark.parametrize("param", list(KB), ids=lambda q: q.key)
def test_against_capture_of_6_18(param: Param):
    host, host_mode, fresh, fresh_mode = load_capture()[param.key]
    if host == "-" and fresh == "-":
        # Absent on this kernel: since/removed must explain it.
        assert not param.exists_in(V618), f"{param.key} is absent on 6.18 but the KB says it exists"
        return
    assert param.exists_in(V618), f"{param.key} exists on 6.18 but since/removed say otherwise"
    scope, netns_init = param.scope_for(V618), param.netns_init_for(V618)
    if scope == "netns":
        assert fresh != "-", f"{param.key}: scope netns but absent in a fresh netns"
        if netns_init == "default":
            assert param.default_for(V618) == fresh, (
                f"{param.key}: KB default {param.default_for(V618)!r}, kernel {fresh!r}"
            )
        elif netns_init == "copy":
            assert fresh == host, f"{param.key}: netns_init copy but fresh {fresh!r} != host {host!r}"
    else:
        if netns_init == "copy":
            assert (fresh, fresh_mode) == (host, "ro"), f"{param.key}: global+copy must be a read-only mirror"
        else:
            assert fresh == "-", f"{param.key}: scope global but present in a fresh netns"
        if param.default is not None and host_mode == "rw" and param.default_rule == "":
            # Fixed global defaults: nothing on this host overrides them at boot.
            assert param.default_for(V618) == host, f"{param.key}: KB default {param.default!r}, host {host!r}"


# -- defaults of older and smaller machines (no false drift on an untouched host) --------


def _just_before(v: tuple[int, ...]) -> tuple[int, ...]:
    return (v[0], v[1] - 1, 999) if v[1] > 0 else (v[0] - 1, 99, 999)


@pytest.mark.parametrize(
    "key,release,value",
    [
        ("net.core.optmem_max", "6.7.12", "20480"),
        ("net.core.optmem_max", "6.8", "131072"),
        ("net.ipv4.tcp_tw_reuse", "4.17.19", "0"),
        ("net.ipv4.tcp_tw_reuse", "4.19", "2"),
        ("net.ipv4.tcp_rmem", "4.19.300", "4096 87380 6291456"),
        ("net.ipv4.tcp_rmem", "5.15", "4096 131072 6291456"),
        ("net.ipv4.tcp_rmem", "6.16", "4096 131072 33554432"),
        ("net.ipv4.tcp_fastopen_blackhole_timeout_sec", "5.10", "3600"),
    ],
)
def test_older_defaults(key, release, value):
    assert p(key).default_for(parse_version(release)) == value


@pytest.mark.parametrize(
    "key,since",
    [
        ("net.ipv4.tcp_tw_reuse_delay", "6.14"),
        ("net.ipv4.tcp_fastopen_blackhole_timeout_sec", "4.12"),
        ("net.ipv4.tcp_backlog_ack_defer", "6.7"),
        ("net.ipv4.tcp_pingpong_thresh", "6.7"),
    ],
)
def test_since(key, since):
    q = p(key)
    assert q.since == parse_version(since) and "commit" in q.source
    assert q.default_for(_just_before(q.since)) is None


@pytest.mark.parametrize(
    "key,release,value,ok",
    [
        # tcp_init(): max = max(131072, min(32 MiB, free buffer pages / 128)): a 1 GiB VM gets ~8 MiB.
        ("net.ipv4.tcp_rmem", "6.18", "4096 131072 8388608", True),
        ("net.ipv4.tcp_rmem", "6.18", "4096 131072 131072", True),
        ("net.ipv4.tcp_rmem", "6.18", "65536 131072 33554432", True),  # 64 KiB pages
        ("net.ipv4.tcp_rmem", "6.18", "4096 131072 67108864", False),  # above the cap: someone set it
        ("net.ipv4.tcp_rmem", "6.18", "4096 262144 33554432", False),
        ("net.ipv4.tcp_rmem", "6.10", "4096 131072 8388608", False),  # 6 MiB cap before 6.16
        ("net.ipv4.tcp_rmem", "4.14", "4096 87380 3145728", True),
        ("net.ipv4.tcp_wmem", "6.18", "4096 16384 1048576", True),
        ("net.ipv4.tcp_wmem", "6.18", "4096 16384 8388608", False),
        ("net.ipv4.tcp_syn_retries", "6.18", "6", True),
        ("net.ipv4.tcp_syn_retries", "6.18", "5", False),
    ],
)
def test_memory_dependent_defaults_accept_the_boot_range(key, release, value, ok):
    assert p(key).matches_default(value, parse_version(release)) is ok


@pytest.mark.parametrize("param", [q for q in KB if q.boot_range], ids=lambda q: q.key)
def test_boot_range_holds_the_default_of_each_release(param):
    releases = [V618] + [_just_before(b) for b, _ in param.older_defaults]
    for release in releases:
        default = param.default_for(release)
        assert default is not None and param.boot_range_for(release) is not None, release
        assert param.matches_default(default, release), (
            f"{param.key}: default {default} outside its boot range on {release}"
        )


def test_kernel_default_profile_accepts_a_small_machine():
    from tcptune.core.audit import audit
    from tcptune.host.profile_files import load_profile

    release = parse_version("6.1.90")
    prof = load_profile("kernel-default", kb=KB, kernel_release=release, search_dirs=[])
    s = prof.settings["net.ipv4.tcp_rmem"]
    assert s.value == "4096 131072 6291456" and s.expected == "4096..65536 131072 131072..6291456"
    current = {k: st.value for k, st in prof.settings.items()}
    current["net.ipv4.tcp_rmem"] = "4096 131072 2097152"  # 256 MiB VM
    current["net.ipv4.tcp_wmem"] = "4096 16384 2097152"
    findings = {f.key: f for f in audit(prof, current, KB, release)}
    assert findings["net.ipv4.tcp_rmem"].verdict == "ok" and findings["net.ipv4.tcp_wmem"].verdict == "ok"
    current["net.ipv4.tcp_rmem"] = "4096 131072 16777216"  # raised by someone
    assert {f.key: f for f in audit(prof, current, KB, release)}["net.ipv4.tcp_rmem"].verdict == "drift"
