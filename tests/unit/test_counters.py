"""The SNMP/MIB counter parser on real captured files, malformed input, and deltas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.core.counters import delta, merge, parse_snmp_text
from tcptune.errors import TcptuneError

DATA = Path(__file__).resolve().parents[1] / "data/proc_net_snmp"
CASES = sorted(p for p in DATA.iterdir() if p.suffix in (".netstat", ".snmp"))


def test_there_are_cases():
    assert len(CASES) >= 6


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_each_captured_file_parses_to_its_expected_counters(path):
    expected = json.loads(path.with_name(path.name + ".expected.json").read_text())
    assert parse_snmp_text(path.read_text(), str(path)) == expected


def test_maxconn_is_signed():
    counters = parse_snmp_text((DATA / "fresh-netns-6.18.snmp").read_text(), "snmp")
    assert counters["Tcp"]["MaxConn"] == -1


def test_the_overflow_capture_shows_the_overflow_as_a_delta():
    def sample(which):
        return merge(
            *(parse_snmp_text((DATA / f"overflow-{which}-6.18.{f}").read_text(), f) for f in ("netstat", "snmp"))
        )

    d = delta(sample("before"), sample("after"), 1.5)
    assert d("TcpExt", "ListenOverflows").change == 14
    assert d("Tcp", "AttemptFails").change == 5
    assert d("Tcp", "OutRsts").per_second == pytest.approx(5 / 1.5)
    assert d("Tcp", "OutRsts").where == "/proc/net/snmp Tcp OutRsts"
    assert d("TcpExt", "NoSuchCounter") is None


def test_a_counter_that_went_down_never_gives_a_negative_rate():
    d = delta({"Tcp": {"OutRsts": 100}}, {"Tcp": {"OutRsts": 7}}, 2)
    assert d("Tcp", "OutRsts").change == 7


@pytest.mark.parametrize(
    "text",
    [
        "Tcp: A B\n",  # no values
        "Tcp: A B\nTcp: 1\n",  # lengths differ
        "Tcp: A\nUdp: 1\n",  # group changes
        "Tcp: A\nTcp: x\n",  # not a number
        "Tcp: A\nTcp: ١\n",  # a non-ASCII digit
        "Tcp: A\nTcp: " + "9" * 5000 + "\n",  # longer than any u64
        "no colon\nat all\n",
    ],
)
def test_malformed_text_is_one_error_naming_the_line(text):
    with pytest.raises(TcptuneError) as exc:
        parse_snmp_text(text, "f")
    assert exc.value.exit_code == 2 and str(exc.value).startswith("f:")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("TcpExt: 0123456789-\n AB"), max_size=300))
def test_any_text_parses_or_is_bad_input(text):
    try:
        parse_snmp_text(text, "f")
    except TcptuneError as exc:
        assert exc.exit_code == 2
