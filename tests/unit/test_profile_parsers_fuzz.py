"""Hypothesis for the profile parsers, with the integer-length and nesting limits in the strategies (issue 9).

Whatever the text, parsing ends in a value or a one-line TcptuneError (exit 2), never
another exception; the line scanner never raises and stays linear.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.core import sysctl_values
from tcptune.core.profile_parse import parse_profile
from tcptune.core.sysctl_text import parse_sysctl_dump, parse_sysctl_lines
from tcptune.core.toml_lines import KeyLines, key_paths
from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.kb import load_kb

KB = load_kb()

_huge_int = st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n)
_nested = st.integers(min_value=1, max_value=600).flatmap(
    lambda n: st.sampled_from([("[" * n, "]" * n), ("{a=" * n, "}" * n)]).map(lambda oc: oc[0] + "1" + oc[1])
)
_value = st.one_of(
    _huge_int,
    _nested,
    st.sampled_from(['"1_0"', '"+3"', '"\u0663"', '"010"', '"reno\\r"', '["a", "b"]', "true", "1.5", '""']),
    st.text(max_size=30).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
    st.integers(min_value=-(1 << 70), max_value=1 << 70).map(str),
)
_key = st.sampled_from(
    [
        "net.ipv4.tcp_syn_retries",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_congestion_control",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.ip_local_port_range",
        " net.ipv4.tcp_sack",
        "net.ipv4.tcp_sack\u00a0",
        "net\u0000x",
    ]
)


def _toml_key(k: str) -> str:
    return '"' + k.replace("\u0000", "\\u0000") + '"'


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_key, _value), min_size=1, max_size=4), st.sampled_from(["", 'kernel = ">=6.1"\n']))
def test_any_profile_is_a_profile_or_one_line_exit_2(entries, head):
    text = head + "[settings]\n" + "".join(f"{_toml_key(k)} = {v}\n" for k, v in entries)
    try:
        parse_profile(text, "f", "f.toml", KB)
    except TcptuneError as exc:
        assert exc.exit_code == ExitCode.BAD_INPUT
        assert "\n" not in str(exc) and str(exc).startswith("f.toml")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_the_line_scanner_never_raises(text):
    list(key_paths(text))
    lines = KeyLines(text)
    lines.top("description")
    lines.setting("net.ipv4.tcp_sack", "value")


def test_the_line_scanner_is_linear():
    def took(n: int) -> float:
        text = ('x = """\n[' + " " * n + '\n"""\n') + '[settings]\n"k" = 1\n' * (n // 100)
        start = time.perf_counter()
        KeyLines(text).setting("k")
        return time.perf_counter() - start

    small, big = took(20_000), took(400_000)
    assert big < 0.5 and big < small * 60 + 0.05, (small, big)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789-+_x ٣\u00a0", min_size=1, max_size=30))
def test_an_integer_tcptune_takes_is_what_the_kernel_reads_back(token):
    if sysctl_values.integer_error(token) is None:
        # plain decimal, in 64 bits, and printing it gives the same text back
        assert str(int(token)) == token and len(token.lstrip("-")) <= 20


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["net.ipv4.tcp_sack", "kernel.osrelease", "vm.x"]), _huge_int), max_size=3))
def test_dumps_with_huge_values_parse_or_refuse_in_one_line(lines):
    text = "net.ipv4.tcp_syn_retries = 6\n" + "".join(f"{k} = {v}\n" for k, v in lines)
    try:
        parse_sysctl_dump(text, "d")
    except TcptuneError as exc:
        assert exc.exit_code == ExitCode.BAD_INPUT and "\n" not in str(exc)


def test_a_value_over_64_kib_is_refused_with_its_line():
    text = "a.b = 1\nnet.ipv4.tcp_sack = " + "1" * (65 * 1024) + "\n"
    try:
        parse_sysctl_lines(text, "d")
    except TcptuneError as exc:
        assert str(exc).startswith("d:2: value of net.ipv4.tcp_sack is over 64 KiB") and len(str(exc)) < 300
    else:
        raise AssertionError("accepted a 65 KiB value")


def test_many_multiline_strings_stay_linear_and_hide_their_bodies():
    text = "".join(f'k{i} = """\nx = 1"""\n' for i in range(50_000)) + "last = 1\n"
    start = time.perf_counter()
    lines = KeyLines(text)
    assert time.perf_counter() - start < 1.0
    assert lines.top("x") is None and lines.top("last") == 100_001
