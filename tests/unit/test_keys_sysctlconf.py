"""Key validation and `key = value` parsing: real dumps plus hypothesis-generated garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.core.keys import key_to_relpath, normalize_key
from tcptune.core.sysctl_text import parse_sysctl_dump, parse_sysctl_lines
from tcptune.errors import ExitCode, TcptuneError


@pytest.mark.parametrize(
    "key,expected",
    [
        ("net.ipv4.tcp_syn_retries", "net.ipv4.tcp_syn_retries"),
        ("net/ipv4/tcp_syn_retries", "net.ipv4.tcp_syn_retries"),
        ("net.core.somaxconn", "net.core.somaxconn"),
        ("net.ipv4.conf.eth-0.rp_filter", "net.ipv4.conf.eth-0.rp_filter"),
    ],
)
def test_valid_keys(key, expected):
    assert normalize_key(key) == expected


@pytest.mark.parametrize(
    "key",
    [
        "",
        "net",
        "net.ipv4",
        "kernel.hostname",
        "vm.swappiness",
        "net..ipv4.x",
        "net.ipv4.../x",
        "net.ipv4.tcp_syn_retries\x00",
        "/proc/sys/net/ipv4/tcp_syn_retries",
        "net/../kernel/hostname",
        "net.ipv4.tcp syn",
        "net.ipv4.tcp_syn_retries/../../x",
        "../net.ipv4.x",
        "net.ipv4.x y",
    ],
)
def test_bad_keys_are_rejected_before_any_path(key):
    with pytest.raises(TcptuneError) as err:
        key_to_relpath(key)
    assert err.value.exit_code == ExitCode.BAD_INPUT


@given(st.text(max_size=60))
def test_any_accepted_key_maps_inside_proc_sys_net(key):
    try:
        rel = key_to_relpath(key)
    except TcptuneError:
        return
    assert rel.startswith("proc/sys/net/")
    assert ".." not in rel.split("/") and "\x00" not in rel and "//" not in rel


def test_real_filtered_dump(data_dir):
    values = parse_sysctl_dump((data_dir / "sysctl-a-host-6.18.txt").read_text())
    # 6.18 raised the tcp_rmem maximum to 32 MiB; tabs in /proc become single spaces
    assert values["net.ipv4.tcp_rmem"] == "4096 131072 33554432"
    assert values["kernel.osrelease"].startswith("6.18")
    assert "net.core.somaxconn" in values


def test_real_full_dump_parses_every_line(data_dir):
    text = (data_dir / "sysctl-a-full-6.18.txt").read_text()
    values = parse_sysctl_dump(text)
    # every line is kept; keys printed twice by sysctl (kernel.core_modes on 6.18) collapse
    assert len(values) == len({ln.split(" = ")[0] for ln in text.splitlines()})
    assert values["kernel.domainname"] == "(none)"


def test_dump_error_names_file_and_line():
    with pytest.raises(TcptuneError) as err:
        parse_sysctl_dump("net.ipv4.tcp_syn_retries = 6\nthis is not a sysctl line\n", source="dump.txt")
    assert "dump.txt:2:" in str(err.value) and err.value.exit_code == 2


def test_dump_skips_sysctl_permission_noise_but_conf_does_not():
    text = "sysctl: permission denied on key 'net.ipv4.tcp_fastopen_key'\nnet.ipv4.tcp_sack = 1\n"
    assert parse_sysctl_dump(text) == {"net.ipv4.tcp_sack": "1"}
    with pytest.raises(TcptuneError):
        parse_sysctl_lines(text, "x.conf", conf=True)


def test_conf_extras():
    lines = parse_sysctl_lines("; c\n# c\n-net.ipv4.tcp_sack=0\nnet/ipv4/tcp_rmem = 1\t2   3\n", "a.conf", conf=True)
    assert [(ln.key, ln.value, ln.line, ln.ignore_failure) for ln in lines] == [
        ("net.ipv4.tcp_sack", "0", 3, True),
        ("net.ipv4.tcp_rmem", "1 2 3", 4, False),
    ]


def test_empty_dump_is_an_error():
    with pytest.raises(TcptuneError):
        parse_sysctl_dump("\n# nothing\n")


@settings(max_examples=300)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), max_size=8))
def test_malformed_dump_never_crashes(lines):
    text = "\n".join(lines)
    try:
        values = parse_sysctl_dump(text, source="fuzz")
    except TcptuneError as exc:
        assert exc.exit_code == ExitCode.BAD_INPUT and "fuzz" in str(exc)
        return
    assert all(isinstance(k, str) and k and isinstance(v, str) for k, v in values.items())


def test_lines_end_at_newline_only_as_the_boot_loaders_read_them():
    # procps sysctl and systemd-sysctl split on "\n" only (issue 9 #15): U+2028 and a form
    # feed stay inside the line, which the loaders then reject as one bad line.
    for sep in ("\u2028", "\x0c", "\x85", "\x1e"):
        text = f"net.ipv4.tcp_sack = 1{sep}net.ipv4.tcp_dsack = 0\nnet.ipv4.tcp_fack = 1\n"
        lines = parse_sysctl_lines(text, "f.conf", conf=True)
        assert [(ln.key, ln.line) for ln in lines] == [("net.ipv4.tcp_sack", 1), ("net.ipv4.tcp_fack", 2)], sep
        assert lines[0].value != "1"
    crlf = parse_sysctl_lines("net.ipv4.tcp_sack = 1\r\n", "f.conf", conf=True)
    assert [(ln.key, ln.value) for ln in crlf] == [("net.ipv4.tcp_sack", "1")]
