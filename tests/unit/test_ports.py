"""Ephemeral-port arithmetic: the range and reserved-port formats the kernel prints, and what is usable."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tcptune.core.ports import PortUse, parse_port_range, parse_reserved_ports, port_use, usable_ports


def test_the_formats_proc_prints():
    assert parse_port_range("32768\t60999") == (32768, 60999)  # proc_dointvec_minmax: tab-separated
    assert parse_port_range("60999 32768") is None and parse_port_range("") is None and parse_port_range(None) is None
    assert parse_reserved_ports("8000-8010,9000\n") == [(8000, 8010), (9000, 9000)]  # proc_do_large_bitmap
    assert parse_reserved_ports("") == [] and parse_reserved_ports("x,5-3,7") == [(7, 7)]


def test_reserved_ports_outside_the_range_or_overlapping_are_counted_once():
    assert usable_ports((40000, 40099), []) == 100
    assert usable_ports((40000, 40099), [(40000, 40009), (40005, 40019), (1, 100), (40099, 50000)]) == 79
    assert usable_ports((40000, 40009), [(39000, 41000)]) == 0


@given(
    st.integers(1, 65535).flatmap(lambda lo: st.tuples(st.just(lo), st.integers(lo, min(65535, lo + 300)))),
    st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 400)), max_size=6),
)
def test_usable_ports_is_the_set_difference(port_range, spans):
    reserved = [(lo, min(65535, lo + width)) for lo, width in spans]
    lo, hi = port_range
    truth = set(range(lo, hi + 1)) - {p for r_lo, r_hi in reserved for p in range(r_lo, r_hi + 1)}
    assert usable_ports(port_range, reserved) == len(truth)


@given(st.text(max_size=40))
def test_malformed_text_never_raises(text):
    parse_port_range(text)
    for lo, hi in parse_reserved_ports(text):
        assert 0 <= lo <= hi <= 65535


def test_busiest_first_and_an_empty_range_is_full():
    used = port_use({("a", "p", 1): 3, ("a", "q", 1): 9, ("a", "b", 2): 9}, 10, top=2)
    assert [(u.peer, u.in_use) for u in used] == [("b", 9), ("q", 9)]
    assert used[0].ratio == 0.9 and PortUse("a", "b", 1, 0, 0).ratio == 1.0
