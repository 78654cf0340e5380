"""Profiles (parse, validate, extends) and audit verdicts, on a small knowledge base written here.

The real knowledge base has its own tests (test_kb_data.py); these pin the loader's rules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tcptune.core.audit import audit, exit_code, summarize
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.profile_files import list_profiles, load_profile
from tcptune.kernel.kb import parse_kb

KB = parse_kb(
    """
[[param]]
key = "net.ipv4.tcp_syn_retries"
type = "int"
unit = "retransmissions"
range = [1, 127]
default = "6"
older_defaults = [{ before = "3.7", value = "5" }]
meaning = "SYN retransmissions"
source = "ip-sysctl.rst"

[[param]]
key = "net.ipv4.tcp_timestamps"
type = "enum"
unit = "mode"
range = [0, 2]
default = "1"
meaning = "RFC 7323 timestamps"
source = "ip-sysctl.rst"
warn = [{ when = "== 0", reason = "disables TIME_WAIT reuse and PAWS" }]

[[param]]
key = "net.ipv4.tcp_rmem"
type = "vector"
unit = "bytes"
length = 3
default = "4096 131072 33554432"
meaning = "receive buffer"
source = "ip-sysctl.rst"

[[param]]
key = "net.ipv4.tcp_tw_recycle"
type = "bool"
unit = "boolean"
range = [0, 1]
default = "0"
removed = "4.12"
meaning = "fast TIME_WAIT recycling (broke NAT)"
source = "commit 4396e46187ca"

[[param]]
key = "net.ipv4.tcp_rto_max_ms"
type = "int"
unit = "ms"
range = [1000, 120000]
default = "120000"
since = "6.15"
meaning = "RTO cap"
source = "ip-sysctl.rst"

[[param]]
key = "net.ipv4.tcp_congestion_control"
type = "string"
unit = "name"
default = "cubic"
meaning = "congestion control"
source = "ip-sysctl.rst"
"""
)
V618 = (6, 18, 0)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def load(path, **kw):
    return load_profile(
        str(path), kb=KB, kernel_release=V618, search_dirs=[path.parent if hasattr(path, "parent") else Path(".")], **kw
    )


def bad(tmp_path, text, *needles, name="p"):
    p = write(tmp_path, name, text)
    with pytest.raises(TcptuneError) as err:
        load(p)
    assert err.value.exit_code == ExitCode.BAD_INPUT
    for n in needles:
        assert n in str(err.value), str(err.value)
    return str(err.value)


def test_canonical_and_short_forms(tmp_path):
    p = write(
        tmp_path,
        "ff",
        """
description = "fast fail"
kernel = ">=4.12"
[settings."net.ipv4.tcp_syn_retries"]
value = 2
accept = { max = 3 }
reason = "give up early"
source = "ops"
[settings]
"net.ipv4.tcp_rmem" = [4096, 131072, 16777216]
""",
    )
    prof = load(p)
    s = prof.settings["net.ipv4.tcp_syn_retries"]
    assert (s.value, s.reason, s.expected) == ("2", "give up early", "<= 3")
    assert s.accepts("3") and s.accepts("1") and not s.accepts("4")
    assert prof.settings["net.ipv4.tcp_rmem"].value == "4096 131072 16777216"
    assert prof.settings["net.ipv4.tcp_rmem"].accepts("4096\t131072   16777216")


def test_malformed_toml_reports_file_and_line(tmp_path):
    msg = bad(tmp_path, 'description = "x"\n[settings]\n"net.ipv4.tcp_sack" = = 1\n')
    assert "p.toml:3:" in msg and "malformed TOML" in msg


def test_unknown_key_suggests_close_match(tmp_path):
    msg = bad(
        tmp_path,
        '[settings]\n"net.ipv4.tcp_syn_retires" = 2\n',
        "unknown key net.ipv4.tcp_syn_retires",
        "did you mean net.ipv4.tcp_syn_retries",
    )
    assert "p.toml:2:" in msg


def test_key_known_to_the_running_kernel_is_accepted(tmp_path):
    p = write(tmp_path, "p", '[settings]\n"net.ipv4.tcp_comp_sack_nr" = 44\n')
    assert load(p, known_keys=["net.ipv4.tcp_comp_sack_nr"]).settings["net.ipv4.tcp_comp_sack_nr"].value == "44"


@pytest.mark.parametrize(
    "text,needle",
    [
        ('[settings]\n"net.ipv4.tcp_syn_retries" = "six"\n', "not an integer"),
        ('[settings]\n"net.ipv4.tcp_syn_retries" = 500\n', "out of range [1, 127]"),
        ('[settings]\n"net.ipv4.tcp_syn_retries" = 1.5\n', "has type float"),
        ('[settings]\n"net.ipv4.tcp_rmem" = [1, 2]\n', "needs 3 integers"),
        ('[settings."net.ipv4.tcp_syn_retries"]\nvalue = 2\nreasn = "x"\n', "did you mean 'reason'"),
        ('[settings."net.ipv4.tcp_syn_retries"]\nreason = "x"\n', "missing `value`"),
        ('[settings."net.ipv4.tcp_syn_retries"]\nvalue = 2\naccept = { maximum = 3 }\n', "unknown accept field"),
        ('descripton = "x"\n[settings]\n"net.ipv4.tcp_timestamps" = 1\n', "did you mean 'description'"),
        ('kernel = "newest"\n[settings]\n"net.ipv4.tcp_syn_retries" = 2\n', "kernel range"),
        ('[settings]\n"kernel.hostname" = "x"\n', "outside net.*"),
        ('[settings]\n"net/../kernel/hostname" = "x"\n', "not a plain key"),
        ('[settings]\n"net.ipv4.../x" = 1\n', "not a plain key"),
        ('[settings]\n"/proc/sys/net/ipv4/tcp_sack" = 1\n', "not a plain key"),
        ('description = "empty"\n', "sets no keys"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, text, needle):
    bad(tmp_path, text, needle)


def test_nul_non_utf8_and_oversized(tmp_path):
    bad(tmp_path, b'[settings]\n"net.ipv4.tcp_syn_retries" = 2\x00\n', "NUL")
    bad(tmp_path, b'description = "caf\xe9"\n', "p.toml:1: not UTF-8")
    bad(tmp_path, b"#" * (1 << 20) + b"\n", "over the 1 MiB limit")


def test_extends_merges_child_over_parent(tmp_path):
    write(tmp_path, "base", '[settings]\n"net.ipv4.tcp_syn_retries" = 3\n"net.ipv4.tcp_timestamps" = 1\n')
    child = write(tmp_path, "child", 'extends = "base"\n[settings]\n"net.ipv4.tcp_syn_retries" = 2\n')
    prof = load(child)
    assert prof.chain == ("child", "base")
    assert {k: s.value for k, s in prof.settings.items()} == {
        "net.ipv4.tcp_syn_retries": "2",
        "net.ipv4.tcp_timestamps": "1",
    }


def test_extends_cycle_and_missing_parent(tmp_path):
    write(tmp_path, "a", 'extends = "b"\n[settings]\n"net.ipv4.tcp_timestamps" = 1\n')
    write(tmp_path, "b", 'extends = "a"\n[settings]\n"net.ipv4.tcp_timestamps" = 1\n')
    with pytest.raises(TcptuneError, match="extends cycle: a -> b -> a"):
        load(tmp_path / "a.toml")
    bad(
        tmp_path,
        'extends = "nosuch"\n[settings]\n"net.ipv4.tcp_syn_retries" = 2\n',
        "no profile named 'nosuch'",
        name="orphan",
    )


def test_kernel_defaults_follow_the_release(tmp_path):
    p = write(tmp_path, "kd", 'description = "defaults"\nkernel_defaults = true\n')
    new = load_profile(str(p), kb=KB, kernel_release=V618)
    old = load_profile(str(p), kb=KB, kernel_release=(3, 2, 0))
    assert new.settings["net.ipv4.tcp_syn_retries"].value == "6"
    assert old.settings["net.ipv4.tcp_syn_retries"].value == "5"
    assert "net.ipv4.tcp_tw_recycle" not in new.settings and "net.ipv4.tcp_tw_recycle" in old.settings
    assert "net.ipv4.tcp_rto_max_ms" not in old.settings


def test_user_dirs_shadow_builtins(tmp_path):
    write(tmp_path, "mine", 'description = "mine"\n[settings]\n"net.ipv4.tcp_timestamps" = 1\n')
    infos = list_profiles([tmp_path])
    assert infos[0].name == "mine" and infos[0].kind == "user"


# -- audit ----------------------------------------------------------------------


def _audit(tmp_path, text, current, release=V618):
    prof = load(write(tmp_path, "a", text))
    return {f.key: f for f in audit(prof, current, KB, release)}


def test_audit_verdicts(tmp_path):
    text = """
[settings."net.ipv4.tcp_syn_retries"]
value = 2
accept = { max = 3 }
reason = "fail fast"
source = "ops"
[settings]
"net.ipv4.tcp_rmem" = [4096, 131072, 33554432]
"net.ipv4.tcp_tw_recycle" = 0
"net.ipv4.tcp_rto_max_ms" = 60000
"net.ipv4.tcp_congestion_control" = "bbr"
"""
    current = {
        "net.ipv4.tcp_syn_retries": "3",
        "net.ipv4.tcp_rmem": "4096\t131072\t33554432",
        "net.ipv4.tcp_tw_recycle": None,
        "net.ipv4.tcp_rto_max_ms": None,
        "net.ipv4.tcp_congestion_control": "cubic",
        "net.ipv4.tcp_timestamps": "0",
    }
    f = _audit(tmp_path, text, current)
    assert f["net.ipv4.tcp_syn_retries"].verdict == "ok"
    assert f["net.ipv4.tcp_rmem"].verdict == "ok"
    assert f["net.ipv4.tcp_tw_recycle"].verdict == "removed" and "4.12" in f["net.ipv4.tcp_tw_recycle"].reason
    assert f["net.ipv4.tcp_congestion_control"].verdict == "drift"
    # timestamps is not in the profile, but 0 is risky: flagged anyway
    assert f["net.ipv4.tcp_timestamps"].verdict == "warning" and "TIME_WAIT" in f["net.ipv4.tcp_timestamps"].reason
    old = _audit(tmp_path, text, current, release=(5, 10, 0))
    assert old["net.ipv4.tcp_rto_max_ms"].verdict == "unsupported" and "6.15" in old["net.ipv4.tcp_rto_max_ms"].reason
    findings = list(f.values())
    assert summarize(findings)["drift"] == 1 and exit_code(findings) == 1


def test_audit_exit_codes(tmp_path):
    text = '[settings]\n"net.ipv4.tcp_syn_retries" = 6\n"net.ipv4.tcp_timestamps" = 1\n'
    ok = list(_audit(tmp_path, text, {"net.ipv4.tcp_syn_retries": "6", "net.ipv4.tcp_timestamps": "1"}).values())
    assert exit_code(ok) == 0 and {f.verdict for f in ok} == {"ok"}
    warn = list(
        _audit(
            tmp_path,
            '[settings]\n"net.ipv4.tcp_syn_retries" = 6\n',
            {"net.ipv4.tcp_syn_retries": "6", "net.ipv4.tcp_timestamps": "0"},
        ).values()
    )
    assert exit_code(warn) == 0 and exit_code(warn, strict=True) == 1


# -- malformed input never escapes as anything but a one-line TcptuneError ------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tcptune.core.profile_parse import parse_profile  # noqa: E402

_FRAGMENTS = st.sampled_from(
    [
        'description = "x"\n',
        'extends = "y"\n',
        'kernel = ">=4.12"\n',
        "[settings]\n",
        '"net.ipv4.tcp_syn_retries" = 2\n',
        '"net.ipv4.tcp_rmem" = [1, 2, 3]\n',
        '[settings."net.ipv4.tcp_timestamps"]\n',
        "value = 0\n",
        "accept = { min = 1 }\n",
        'reason = "r"\n',
        "accept = { one_of = [1, 2] }\n",
        "= = =\n",
        '"../etc" = 1\n',
        "value = [1, 2]\n",
        "kernel_defaults = true\n",
        "required = 1\n",
        '"net.ipv4.tcp_x" = 1\n',
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=8), st.text(max_size=20))
def test_parse_profile_never_crashes(fragments, noise):
    text = "".join(fragments) + noise
    try:
        prof = parse_profile(text, "fuzz", "fuzz.toml", KB)
    except TcptuneError as exc:
        assert exc.exit_code == ExitCode.BAD_INPUT and str(exc).startswith("fuzz.toml") and "\n" not in str(exc)
        return
    for key, s in prof.settings.items():
        assert key.startswith("net.") and s.value


# -- secrets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '[settings]\n"net.ipv4.tcp_fastopen_key" = "00000001-00000002-00000003-00000004"\n',
        '[settings."net.ipv4.tcp_fastopen_key"]\nvalue = "1-2-3-4"\nreason = "r"\n',
        '[settings]\n"net/ipv4/tcp_fastopen_key" = "1-2-3-4"\n',
    ],
)
def test_secret_keys_are_rejected_even_when_the_host_has_them(tmp_path, text):
    p = write(tmp_path, "s", text)
    with pytest.raises(TcptuneError) as err:
        load(p, known_keys=["net.ipv4.tcp_fastopen_key"])
    msg = str(err.value)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "fastopen_key" in ln)
    assert err.value.exit_code == ExitCode.BAD_INPUT and "is a secret" in msg and f"s.toml:{line}:" in msg
    assert "1-2-3-4" not in msg and "00000001" not in msg


def test_findings_never_carry_a_secret_value():
    from tcptune.core.audit import SECRET_SHOWN, Finding

    f = Finding("net.ipv4.tcp_fastopen_key", "1-2-3-4", "5-6-7-8", "drift", "r", "s")
    assert f.expected == f.actual == SECRET_SHOWN and "5-6-7-8" not in str(f.to_dict())
    assert Finding("net.ipv4.tcp_fastopen_key", None, None, "unsupported", "r", "s").actual is None


# -- risky values, global keys, unknown kernels ------------------------------------------

KB2 = parse_kb(
    """
[[param]]
key = "net.ipv4.tcp_timestamps"
type = "enum"
unit = "mode"
range = [0, 2]
choices = ["0", "1", "2"]
default = "1"
meaning = "timestamps"
source = "ip-sysctl.rst"
warn = [{ when = "== 0", reason = "no PAWS" }]

[[param]]
key = "net.ipv4.tcp_challenge_ack_limit"
type = "int"
unit = "ACKs per second"
default = "2147483647"
older_defaults = [{ before = "6.0", value = "1000" }]
meaning = "challenge ACK limit"
source = "ip-sysctl.rst"
warn = [{ when = "< 2147483647", reason = "side channel" }]

[[param]]
key = "net.core.netdev_max_backlog"
type = "int"
unit = "packets"
scope = "global"
default = "1000"
meaning = "input queue"
source = "net.rst"

[[param]]
key = "net.ipv4.tcp_tw_recycle"
type = "bool"
unit = "boolean"
range = [0, 1]
default = "0"
removed = "4.12"
meaning = "gone"
source = "commit 4396e46187ca"
"""
)


def _kd(release):
    from tcptune.core.profile import RawProfile, resolve
    from tcptune.core.toml_lines import KeyLines

    raw = RawProfile("kernel-default", "built-in", KeyLines(""), {"kernel_defaults": True})
    return resolve("kernel-default", lambda name, child: raw, KB2, release)


def test_risky_drift_is_flagged_for_json_and_strict():
    prof = _kd(V618)
    cur = {
        "net.ipv4.tcp_timestamps": "0",
        "net.ipv4.tcp_challenge_ack_limit": "2147483647",
        "net.core.netdev_max_backlog": "1000",
    }
    f = {x.key: x for x in audit(prof, cur, KB2, V618)}
    ts = f["net.ipv4.tcp_timestamps"]
    assert ts.verdict == "drift" and ts.risky and ts.risky_reason == "no PAWS" and ts.to_dict()["risky"] is True
    assert (
        not f["net.core.netdev_max_backlog"].risky
        and f["net.core.netdev_max_backlog"].to_dict()["risky_reason"] is None
    )


def test_strict_fails_on_a_risky_value_outside_the_profile():
    from tcptune.core.profile import Profile

    found = audit(Profile("empty", "", "t", {}), {"net.ipv4.tcp_timestamps": "0"}, KB2, V618)
    assert [x.verdict for x in found] == ["warning"] and found[0].risky
    assert exit_code(found) == 0 and exit_code(found, strict=True) == 1


def test_an_older_kernels_risky_default_is_flagged_but_not_drift():
    # 1000 is 5.15's own default (no drift), and the host-wide side channel 6.0 disabled.
    old, new = (5, 15, 0), V618
    quiet = audit(_kd(old), {"net.ipv4.tcp_challenge_ack_limit": "1000"}, KB2, old)
    c = {x.key: x for x in quiet}["net.ipv4.tcp_challenge_ack_limit"]
    assert c.verdict == "warning" and c.risky
    assert exit_code(quiet) == 0 and exit_code(quiet, strict=True) == 1
    loud = {x.key: x for x in audit(_kd(new), {"net.ipv4.tcp_challenge_ack_limit": "1000"}, KB2, new)}
    assert (
        loud["net.ipv4.tcp_challenge_ack_limit"].verdict == "drift" and loud["net.ipv4.tcp_challenge_ack_limit"].risky
    )


def test_absent_global_keys_are_not_noise_under_kernel_default():
    from tcptune.core.audit import hidden_global_keys

    prof = _kd(V618)
    cur = {
        "net.ipv4.tcp_timestamps": "1",
        "net.ipv4.tcp_challenge_ack_limit": "2147483647",
        "net.core.netdev_max_backlog": None,
    }
    f = {x.key: x for x in audit(prof, cur, KB2, V618, source_kind="netns")}
    assert "net.core.netdev_max_backlog" not in f and hidden_global_keys(prof, cur, KB2) == [
        "net.core.netdev_max_backlog"
    ]


@pytest.mark.parametrize(
    "kind,needle",
    [("netns", "another namespace"), ("dump", "dump"), ("root", "root"), ("live", "initial network namespace")],
)
def test_a_profile_naming_a_global_key_says_why_it_is_absent(tmp_path, kind, needle):
    from tcptune.core.profile import Profile, Setting

    prof = Profile(
        "p", "", "t", {"net.core.netdev_max_backlog": Setting("net.core.netdev_max_backlog", "4096", "r", "s")}
    )
    (f,) = audit(prof, {"net.core.netdev_max_backlog": None}, KB2, V618, source_kind=kind)
    assert f.verdict == "unsupported" and needle in f.reason, f.reason
    if kind == "dump":
        assert "this is another namespace" not in f.reason


def test_unknown_kernel_version_does_not_call_keys_removed():
    from tcptune.core.profile import Profile, Setting

    assert "net.ipv4.tcp_tw_recycle" not in _kd(None).settings  # cannot know it should exist
    assert "net.ipv4.tcp_tw_recycle" in _kd((4, 9, 0)).settings
    prof = Profile("p", "", "t", {"net.ipv4.tcp_tw_recycle": Setting("net.ipv4.tcp_tw_recycle", "0", "r", "s")})
    (unknown,) = audit(prof, {"net.ipv4.tcp_tw_recycle": None}, KB2, None)
    assert unknown.verdict == "unsupported" and "kernel version" in unknown.reason
    (known,) = audit(prof, {"net.ipv4.tcp_tw_recycle": None}, KB2, V618)
    assert known.verdict == "removed"


# -- validation gaps: each of these used to pass `profiles validate` -----------------------

KB3 = parse_kb(
    """
[[param]]
key = "net.ipv4.tcp_syn_retries"
type = "int"
unit = "count"
range = [1, 127]
default = "6"
meaning = "SYN retransmissions"
source = "ip-sysctl.rst"

[[param]]
key = "net.ipv4.tcp_rmem"
type = "vector"
unit = "bytes"
length = 3
range = [1, 2147483647]
default = "4096 131072 33554432"
meaning = "receive buffer"
source = "ip-sysctl.rst"

[[param]]
key = "net.ipv4.ip_local_port_range"
type = "vector"
unit = "ports"
length = 2
range = [1, 65535]
ascending = true
default = "32768 60999"
meaning = "ephemeral ports"
source = "ip-sysctl.rst"

[[param]]
key = "net.ipv4.tcp_sack"
type = "bool"
unit = "boolean"
range = [0, 255]
default = "1"
meaning = "SACK"
source = "ip-sysctl.rst"

[[param]]
key = "net.ipv4.tcp_congestion_control"
type = "string"
unit = "name"
default = "cubic"
meaning = "cc"
source = "ip-sysctl.rst"
"""
)


def bad3(tmp_path, text, *needles, line=None):
    p = write(tmp_path, "v", text)
    with pytest.raises(TcptuneError) as err:
        load_profile(str(p), kb=KB3, kernel_release=V618, search_dirs=[tmp_path])
    msg = str(err.value)
    assert err.value.exit_code == ExitCode.BAD_INPUT and "\n" not in msg
    for n in needles:
        assert n in msg, msg
    if line is not None:
        assert msg.startswith(f"{p}:{line}: "), msg
    return msg


SYN = '[settings."net.ipv4.tcp_syn_retries"]\nvalue = 2\n'


@pytest.mark.parametrize(
    "text,needles,line",
    [
        (SYN + "accept = { min = 5, max = 3 }\n", ["accept.min 5 is above accept.max 3"], 3),
        (SYN + 'accept = { one_of = ["abc", 999] }\n', ["accept.one_of value 'abc' is not an integer"], 3),
        (SYN + "accept = { one_of = [2, 999] }\n", ["accept.one_of value 999 is out of range [1, 127]"], 3),
        (
            '[settings."net.ipv4.tcp_rmem"]\nvalue = [4096, 131072, 6291456]\naccept = { min = 4096 }\n',
            ["accept.min has 1 field(s) but tcp_rmem has 3", "min = [4096, 131072, 33554432]"],
            3,
        ),
        (SYN + "accept = { max = [3, 4] }\n", ["accept.max is a list but tcp_syn_retries takes one integer"], 3),
        (
            '[settings."net.ipv4.tcp_congestion_control"]\nvalue = "bbr"\naccept = { min = 1 }\n',
            ["is a string; use accept = { one_of"],
            3,
        ),
        (
            '[settings]\n"net.ipv4.ip_local_port_range" = "60000 1024"\n',
            ["kernel rejects a first field above the second"],
            2,
        ),
        (
            '[settings]\n"net.ipv4.tcp_syn_retries" = true\n',
            ["value true is a boolean, but tcp_syn_retries takes an integer"],
            2,
        ),
        ('[settings]\n"net.ipv4.tcp_rmem" = false\n', ["is a boolean"], 2),
        ('[settings."net.ipv4.tcp_syn_retries"]\nvalu = 2\n', ["unknown field 'valu'", "did you mean 'value'?"], 2),
        (SYN + "accept = { min = 3 }\n", ["value '2' is outside its own accept (>= 3)"], 3),
        (
            '# the retries, see net.ipv4.tcp_syn_retries below\n# kernel = ">=4.12" would be nice\n\n[settings]\n"net.ipv4.tcp_syn_retries" = 500\n',
            ["out of range [1, 127]"],
            5,
        ),
        (
            '# kernel = "old" is a comment\ndescription = "x"\nkernel = ">>6.1"\n[settings]\n"net.ipv4.tcp_sack" = 1\n',
            ["kernel range"],
            3,
        ),
        (
            'description = "x"\n\nextends = "nope"\n[settings]\n"net.ipv4.tcp_sack" = 1\n',
            ["extends 'nope'", "no profile named 'nope'"],
            3,
        ),
        (
            'extends = "./missing.toml"\n[settings]\n"net.ipv4.tcp_sack" = 1\n',
            ["extends './missing.toml'", "no such profile file"],
            1,
        ),
    ],
)
def test_validation_gaps_are_errors_with_the_right_line(tmp_path, text, needles, line):
    bad3(tmp_path, text, *needles, line=line)


def test_valid_forms_still_pass(tmp_path):
    p = write(
        tmp_path,
        "ok",
        """
[settings."net.ipv4.tcp_sack"]
value = true
[settings."net.ipv4.ip_local_port_range"]
value = [10240, 65535]
accept = { min = [1024, 60999], max = [16384, 65535] }
[settings."net.ipv4.tcp_syn_retries"]
value = 2
accept = { one_of = [2, 3] }
[settings."net.ipv4.tcp_rmem"]
value = "4096 131072 6291456"
accept = { min = [4096, 131072, 131072] }
""",
    )
    prof = load_profile(str(p), kb=KB3, kernel_release=V618, search_dirs=[tmp_path])
    assert prof.settings["net.ipv4.tcp_sack"].value == "1"
    assert prof.settings["net.ipv4.tcp_syn_retries"].accept.one_of == ("2", "3")
    equal = write(
        tmp_path, "eq", '[settings]\n"net.ipv4.ip_local_port_range" = "40000 40000"\n'
    )  # the kernel allows low == high
    assert load_profile(str(equal), kb=KB3, kernel_release=V618, search_dirs=[tmp_path]).settings


def test_a_user_profile_can_extend_the_builtin_it_shadows(tmp_path):
    # ~/.config/tcptune/profiles/web-server.toml with extends = "web-server" used to be
    # "extends cycle: web-server -> web-server".
    user, site = tmp_path / "user", tmp_path / "site"
    user.mkdir()
    site.mkdir()
    (site / "base.toml").write_text(
        'description = "site"\n[settings]\n"net.ipv4.tcp_syn_retries" = 3\n"net.ipv4.tcp_timestamps" = 1\n'
    )
    (user / "base.toml").write_text(
        'description = "mine"\nextends = "base"\n[settings]\n"net.ipv4.tcp_syn_retries" = 2\n'
    )
    prof = load_profile("base", kb=KB, kernel_release=V618, search_dirs=[user, site])
    assert prof.description == "mine" and prof.origin == str(user / "base.toml")
    assert prof.chain == ("base", "base")
    assert {k: s.value for k, s in prof.settings.items()} == {
        "net.ipv4.tcp_syn_retries": "2",
        "net.ipv4.tcp_timestamps": "1",
    }
    # the same, given by path
    assert (
        load_profile(str(user / "base.toml"), kb=KB, kernel_release=V618, search_dirs=[user, site])
        .settings["net.ipv4.tcp_timestamps"]
        .value
        == "1"
    )
    # nothing below it: a clear error at the extends line, not a cycle
    with pytest.raises(TcptuneError, match=r"base\.toml:2: extends 'base': no profile named 'base'"):
        load_profile("base", kb=KB, kernel_release=V618, search_dirs=[user])


def test_user_web_server_extends_the_builtin_web_server(tmp_path):
    from tcptune.kernel.kb import load_kb

    (tmp_path / "web-server.toml").write_text(
        'description = "mine"\nextends = "web-server"\n[settings]\n"net.ipv4.tcp_fin_timeout" = 20\n'
    )
    prof = load_profile("web-server", kb=load_kb(), kernel_release=V618, search_dirs=[tmp_path])
    assert prof.settings["net.ipv4.tcp_fin_timeout"].value == "20" and "net.core.somaxconn" in prof.settings
    assert prof.chain == ("web-server", "web-server")


def test_extends_cycle_names_the_extends_line(tmp_path):
    write(tmp_path, "a", '# a\nextends = "b"\n[settings]\n"net.ipv4.tcp_timestamps" = 1\n')
    write(tmp_path, "b", 'extends = "a"\n[settings]\n"net.ipv4.tcp_timestamps" = 1\n')
    with pytest.raises(TcptuneError, match=r"b\.toml:1: extends cycle: a -> b -> a"):
        load(tmp_path / "a.toml")
