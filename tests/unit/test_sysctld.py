"""sysctl.d(5) precedence: which file:line sets each key at boot, and who overrides tcptune's file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.core.boot_precedence import (
    PROCPS,
    SYSCTL_CONF,
    SYSTEMD,
    compare_loaders,
    compute_boot_state,
    find_overrides,
    is_own_file_text,
    order_config_files,
    own_file_path_problem,
    own_file_problem,
    render_own_file,
)
from tcptune.core.sysctl_text import parse_sysctl_lines

OWN = "/etc/sysctl.d/90-tcptune.conf"
KEY = "net.ipv4.tcp_syn_retries"


def test_files_sorted_by_name_across_directories_and_sysctl_conf_last():
    ordered, hidden = order_config_files(
        [
            SYSCTL_CONF,
            "/usr/lib/sysctl.d/50-default.conf",
            "/etc/sysctl.d/20-local.conf",
            "/run/sysctl.d/60-run.conf",
            "/lib/sysctl.d/10-old.conf",
            "/usr/local/lib/sysctl.d/55-local.conf",
            "/etc/sysctl.d/README",  # not *.conf: never read
            "/etc/other/99.conf",  # not a sysctl.d directory
        ]
    )
    assert ordered == [
        "/lib/sysctl.d/10-old.conf",
        "/etc/sysctl.d/20-local.conf",
        "/usr/lib/sysctl.d/50-default.conf",
        "/usr/local/lib/sysctl.d/55-local.conf",
        "/run/sysctl.d/60-run.conf",
        SYSCTL_CONF,
    ]
    assert hidden == {}


def test_same_name_etc_hides_run_hides_usr_lib():
    ordered, hidden = order_config_files(
        [
            "/usr/lib/sysctl.d/50-x.conf",
            "/run/sysctl.d/50-x.conf",
            "/etc/sysctl.d/50-x.conf",
            "/lib/sysctl.d/50-x.conf",
        ]
    )
    assert ordered == ["/etc/sysctl.d/50-x.conf"]
    assert set(hidden) == {"/usr/lib/sysctl.d/50-x.conf", "/run/sysctl.d/50-x.conf", "/lib/sysctl.d/50-x.conf"}
    ordered, hidden = order_config_files(["/usr/lib/sysctl.d/50-x.conf", "/run/sysctl.d/50-x.conf"])
    assert ordered == ["/run/sysctl.d/50-x.conf"]


def test_override_in_a_later_file_in_etc():
    files = [(OWN, f"{KEY} = 4\n"), ("/etc/sysctl.d/99-admin.conf", f"# admin\n{KEY}=8\n")]
    state = compute_boot_state(files)
    assert state.values[KEY].value == "8" and state.values[KEY].where == "/etc/sysctl.d/99-admin.conf:2"
    (ov,) = find_overrides(state, OWN)
    assert ov.key == KEY and ov.ours.value == "4" and ov.winner.line == 2 and not ov.same_value
    assert "overriding tcptune's 4" in ov.message()


def test_usr_lib_file_with_a_later_name_beats_etc():
    # The directory only decides between files of the same *name*; a vendor file in
    # /usr/lib named 99-... is read after /etc/sysctl.d/90-tcptune.conf and wins.
    files = [
        (OWN, f"{KEY} = 4\n"),
        ("/usr/lib/sysctl.d/99-vendor.conf", f"{KEY} = 6\n"),
        ("/usr/lib/sysctl.d/50-default.conf", f"{KEY} = 5\n"),
    ]
    state = compute_boot_state(files)
    assert state.values[KEY].path == "/usr/lib/sysctl.d/99-vendor.conf"
    assert [o.winner.value for o in find_overrides(state, OWN)] == ["6"]
    # ... while one named earlier does not
    state = compute_boot_state(files[:1] + files[2:])
    assert state.values[KEY].path == OWN and find_overrides(state, OWN) == []


def test_same_named_file_in_etc_masks_tcptunes_file_elsewhere():
    own = "/usr/lib/sysctl.d/90-tcptune.conf"
    files = [(own, f"{KEY} = 4\n"), ("/etc/sysctl.d/90-tcptune.conf", "")]  # e.g. a symlink to /dev/null
    state = compute_boot_state(files)
    assert KEY not in state.values
    assert "is not read at boot" in own_file_problem([p for p, _ in files], own)
    assert own_file_problem([OWN], OWN) is None
    assert "not read at boot" in own_file_problem([], "/etc/sysctl.d/tcptune")  # no .conf suffix


def test_etc_sysctl_conf_is_read_last():
    files = [(SYSCTL_CONF, f"{KEY} = 7\n"), (OWN, f"{KEY} = 4\n"), ("/etc/sysctl.d/99-z.conf", f"{KEY} = 9\n")]
    state = compute_boot_state(files)
    assert state.values[KEY].where == "/etc/sysctl.conf:1"
    assert [s.value for s in state.setters[KEY]] == ["4", "9", "7"]
    assert find_overrides(state, OWN)[0].winner.path == SYSCTL_CONF


def test_same_value_override_is_reported_as_harmless():
    state = compute_boot_state([(OWN, f"{KEY} = 4\n"), (SYSCTL_CONF, f"{KEY}=4\n")])
    (ov,) = find_overrides(state, OWN)
    assert ov.same_value and "harmless" in ov.message()


def test_globs_explicit_keys_and_exclusions():
    files = [
        ("/usr/lib/sysctl.d/50-default.conf", "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.lo.rp_filter\n"),
        (OWN, "net.ipv4.conf.eth0.rp_filter = 1\n"),
        ("/etc/sysctl.d/99-late.conf", "net.ipv4.conf.e*.rp_filter = 0\n"),
    ]
    keys = [
        "net.ipv4.conf.eth0.rp_filter",
        "net.ipv4.conf.lo.rp_filter",
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.ens3.rp_filter",
    ]
    state = compute_boot_state(files, keys)
    # An explicit assignment anywhere takes the key out of every glob (sysctl.d(5)).
    assert state.values["net.ipv4.conf.eth0.rp_filter"].value == "1"
    assert "net.ipv4.conf.lo.rp_filter" not in state.values  # excluded
    assert state.values["net.ipv4.conf.all.rp_filter"].value == "2"
    assert state.values["net.ipv4.conf.ens3.rp_filter"].value == "0"  # the later glob wins
    assert find_overrides(state, OWN) == []


def test_slash_separated_keys_and_ignore_failure_prefix():
    state = compute_boot_state([(OWN, "net/ipv4/tcp_syn_retries = 3\n-net.ipv4.tcp_fin_timeout = 20\n")])
    assert state.values[KEY].value == "3"
    assert state.values["net.ipv4.tcp_fin_timeout"].value == "20"


def test_a_bad_line_in_another_file_is_skipped_with_a_warning():
    files = [
        ("/etc/sysctl.d/10-broken.conf", f"this is not sysctl\n{KEY} = 5\n"),
        (OWN, "net.ipv4.tcp_fin_timeout = 20\n"),
    ]
    state = compute_boot_state(files)
    assert state.values[KEY].where == "/etc/sysctl.d/10-broken.conf:2"
    assert len(state.warnings) == 1 and state.warnings[0].startswith("/etc/sysctl.d/10-broken.conf:1:")


def test_render_own_file_round_trips_through_the_sysctl_parser():
    text = render_own_file(
        [(KEY, "4", "fail fast\n# sneaky second line"), ("net.ipv4.tcp_rmem", "4096\t131072  6291456", "")],
        profile="web",
        origin="built-in",
        version="0.1.0",
    )
    parsed = parse_sysctl_lines(text, OWN, conf=True)
    assert [(p.key, p.value) for p in parsed] == [(KEY, "4"), ("net.ipv4.tcp_rmem", "4096 131072 6291456")]
    assert "# fail fast # sneaky second line" in text  # a reason can never become a setting line
    state = compute_boot_state([(OWN, text)])
    assert {k: v.value for k, v in state.values.items()} == {KEY: "4", "net.ipv4.tcp_rmem": "4096 131072 6291456"}


def test_render_own_file_rejects_keys_outside_net():
    import pytest

    from tcptune.errors import TcptuneError

    with pytest.raises(TcptuneError):
        render_own_file([("kernel.panic", "1", "")], profile="x", origin="y", version="0")
    with pytest.raises(TcptuneError):
        render_own_file([(KEY, "  ", "")], profile="x", origin="y", version="0")


def test_systemd_reads_no_sysctl_conf_and_no_dotfiles_procps_reads_both():
    files = [
        (SYSCTL_CONF, f"{KEY} = 7\n"),
        (OWN, f"{KEY} = 4\n"),
        ("/etc/sysctl.d/.99-hidden.conf", "net.ipv4.tcp_fin_timeout = 11\n"),
    ]
    sd = compute_boot_state(files, loader=SYSTEMD)
    assert sd.files == [OWN] and sd.values[KEY].value == "4" and "net.ipv4.tcp_fin_timeout" not in sd.values
    pp = compute_boot_state(files, loader=PROCPS)
    assert pp.files == ["/etc/sysctl.d/.99-hidden.conf", OWN, SYSCTL_CONF]  # "." sorts first
    assert pp.values[KEY].where == "/etc/sysctl.conf:1" and pp.values["net.ipv4.tcp_fin_timeout"].value == "11"
    assert [(d.key, d.systemd and d.systemd.value, d.procps and d.procps.value) for d in compare_loaders(files)] == [
        ("net.ipv4.tcp_fin_timeout", None, "11"),
        (KEY, "4", "7"),
    ]
    assert "leaves it alone" in compare_loaders(files)[0].message()
    assert "no dotfiles" in own_file_problem([], "/etc/sysctl.d/.x.conf", SYSTEMD)
    assert own_file_problem([], "/etc/sysctl.d/.x.conf", PROCPS) is None


def test_an_unreadable_entry_masks_and_sets_nothing_under_both_loaders():
    files = [("/etc/sysctl.d/50-x.conf", None), ("/usr/lib/sysctl.d/50-x.conf", f"{KEY} = 3\n")]
    for loader in (SYSTEMD, PROCPS):
        state = compute_boot_state(files, loader=loader)
        assert state.values == {} and state.files == ["/etc/sysctl.d/50-x.conf"]
        assert any("not a readable file" in w for w in state.warnings)
    assert compare_loaders(files) == []


def test_names_sort_in_byte_order_like_strcmp():
    ordered, _ = order_config_files(["/etc/sysctl.d/a.conf", "/etc/sysctl.d/B.conf", "/etc/sysctl.d/10.conf"], SYSTEMD)
    assert ordered == ["/etc/sysctl.d/10.conf", "/etc/sysctl.d/B.conf", "/etc/sysctl.d/a.conf"]


def test_own_file_path_rules():
    assert own_file_path_problem(OWN) is None
    assert own_file_path_problem("/usr/lib/sysctl.d/90-tcptune.conf") is None
    for bad in (
        "/etc/passwd",
        SYSCTL_CONF,
        "/etc/sysctl.d/../passwd",
        "/etc/sysctl.d//x.conf",
        "/etc/sysctl.d/.x.conf",
        "/etc/sysctl.d/x",
        "/etc/sysctl.d/.conf",
        "etc/sysctl.d/x.conf",
        "/etc/sysctl.d/sub/x.conf",
        "/etc/sysctl.d/x\x00.conf",
    ):
        assert own_file_path_problem(bad), bad
    assert is_own_file_text(render_own_file([(KEY, "4", "")], profile="p", origin="o", version="1"))
    assert not is_own_file_text(f"{KEY} = 4\n") and not is_own_file_text(None)


_dirs = st.sampled_from(
    ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"]
)
_names = st.sampled_from(["10-a.conf", "50-b.conf", "90-tcptune.conf", "99-z.conf", ".hidden.conf"])
_keys = st.sampled_from([KEY, "net.ipv4.tcp_fin_timeout", "net.core.somaxconn"])
_line = st.one_of(
    st.tuples(_keys, st.integers(0, 99)).map(lambda t: f"{t[0]} = {t[1]}"),
    # junk; line breaks and blanks other than ' ' and tab have their own cases
    # (tests/data/sysctl.d/line-breaks.*, measured against both loaders)
    st.text(max_size=30).filter(lambda s: all(not c.isspace() or c in " \t" for c in s)),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(_dirs, _names, st.lists(_line, max_size=5)), max_size=8),
    st.lists(_line, max_size=3),
    st.sampled_from([PROCPS, SYSTEMD]),
)
def test_boot_value_is_the_last_assignment_in_load_order(files, conf_lines, loader):
    texts = {f"{d}/{n}": "\n".join(lines) for d, n, lines in files}
    if conf_lines:
        texts[SYSCTL_CONF] = "\n".join(conf_lines)
    state = compute_boot_state(sorted(texts.items()), loader=loader)  # never raises, whatever the junk
    # Reference model: walk names in order, pick the most important dir holding each name;
    # systemd skips dotfiles and /etc/sysctl.conf, procps reads /etc/sysctl.conf last.
    rank = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"]
    names = sorted(
        {
            p.rsplit("/", 1)[1]
            for p in texts
            if p != SYSCTL_CONF and not (loader == SYSTEMD and p.rsplit("/", 1)[1].startswith("."))
        }
    )
    order = [next(f"{d}/{n}" for d in rank if f"{d}/{n}" in texts) for n in names]
    if SYSCTL_CONF in texts and loader == PROCPS:
        order.append(SYSCTL_CONF)
    expected = {}
    for path in order:
        for i, raw in enumerate(texts[path].splitlines(), 1):
            try:
                for ln in parse_sysctl_lines(raw, path, conf=True):
                    expected[ln.key] = (ln.value, path, i)
            except Exception:
                continue
    got = {k: (v.value, v.path, v.line) for k, v in state.values.items() if not any(c in k for c in "*?[")}
    expected = {k: v for k, v in expected.items() if not any(c in k for c in "*?[")}
    assert got == expected


SYSCTL_D_DATA = Path(__file__).resolve().parent.parent / "data/sysctl.d"


@pytest.mark.parametrize("case", sorted(p.stem for p in SYSCTL_D_DATA.glob("*.conf")))
@pytest.mark.parametrize("loader", [PROCPS, SYSTEMD])
def test_sysctl_d_line_cases(case, loader):
    # issue 9 #15: both loaders split on \n (systemd also on \r) only, never on U+2028 or a form feed
    text = (SYSCTL_D_DATA / f"{case}.conf").read_bytes().decode()
    want = json.loads((SYSCTL_D_DATA / f"{case}.json").read_text())[loader]
    state = compute_boot_state([("/etc/sysctl.d/50-case.conf", text)], loader=loader)
    assert {k: v.value for k, v in state.values.items()} == want


_breaks = st.sampled_from(list("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029\u00a0 \t=#;-*"))
_piece = st.sampled_from([KEY, "net.ipv4.tcp_fin_timeout", "3", "4 5", "x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_breaks, _piece), max_size=40), st.sampled_from([PROCPS, SYSTEMD]))
def test_every_line_break_and_blank_is_read_without_an_error(parts, loader):
    # issue 9 #15: whatever the blanks, a file is parsed, and a value set at boot never holds
    # a character the kernel would refuse, nor a line break.
    state = compute_boot_state([("/etc/sysctl.d/50-x.conf", "".join(parts))], [KEY], loader=loader)
    for v in state.values.values():
        assert not any(c.isspace() and c != " " for c in v.value), v
