"""Every number an explain text (kernel/params.toml) names that a probe's model can produce
is the number that model produces.

Each claim is a phrase of the text with its number in ``{}`` and the model computation
that must give it; the test formats the model's number into the phrase and looks for the
phrase in the text (whitespace normalised).  A text changed without its model (or the
reverse) fails here.  Measured numbers in the texts ("measured: about 15 s") are the
probes' business (tests/netns/test_probe_retries.py); the model numbers beside them are
checked here.
"""

from __future__ import annotations

import re

import pytest

from tcptune.kernel.kb import load_kb
from tcptune.kernel.timers import U64
from tcptune.kernel.timers import fin_timeout as FIN
from tcptune.kernel.timers import retries as R
from tcptune.kernel.timers import syn as SYN
from tcptune.kernel.timers import synack as SA
from tcptune.kernel.timers import tw_reuse as TW

RTO = 0.204  # the loopback RTO on 6.18 at HZ=250 (TCP_INFO), what the probes measure
HZ = 250


def _s(x: float) -> str:
    return f"{round(x, 3):g}"


def _budget_s(n: int, cap_ms: int) -> str:
    return _s(R.budget_ms(n, cap_ms / 1000) / 1000)


def _times(p, what) -> str:
    ts = [_s(e.t) for e in p.events if e.what == what]
    return ", ".join(ts[:-1]) + " and " + ts[-1]


def _first_wrap(hz: int) -> int:
    """The first num_timeout at which reqsk_timeout()'s (u64)timeout << num_timeout loses bits."""
    return next(n for n in range(64) if (hz << n) > U64)


CLAIMS = [
    # 1. the budget uses the socket's cap since 6.15
    ("tcp_rto_max_ms", "a budget of {} s instead of", lambda: _budget_s(15, 1000)),
    ("tcp_rto_max_ms", "instead of {} s (measured", lambda: _budget_s(15, 120000)),
    ("tcp_rto_max_ms", "where the model says {} s", lambda: _s(R.predict_dead_peer(15, RTO, 1.0, hz=HZ).give_up)),
    ("tcp_rto_max_ms", "(model: {} s and", lambda: _s(R.predict_dead_peer(5, RTO, 1.0, hz=HZ).give_up)),
    ("tcp_rto_max_ms", "and {} s).", lambda: _s(R.predict_dead_peer(5, RTO, 120.0, hz=HZ).give_up)),
    ("tcp_rto_max_ms", "with 1000 (model: {} s)", lambda: _s(R.predict_fin_wait1(0, RTO, 1.0, hz=HZ).give_up)),
    ("tcp_retries2", "The default 15 is a budget of {} s", lambda: _budget_s(15, 120000)),
    ("tcp_retries2", "but only {} s with tcp_rto_max_ms=1000", lambda: _budget_s(15, 1000)),
    ("tcp_retries2", "ETIMEDOUT at {} s and", lambda: _s(R.predict_dead_peer(15, RTO, 120.0, hz=HZ).give_up)),
    ("tcp_retries2", "s and {} s (measured", lambda: _s(R.predict_dead_peer(15, RTO, 1.0, hz=HZ).give_up)),
    ("tcp_retries2", "initial RTO of TCP_RTO_MIN ({} ms", lambda: _s(R.TCP_RTO_MIN * 1000)),
    ("tcp_retries1", "{} s for the default 3 with the 120 s cap", lambda: _budget_s(3, 120000)),
    ("tcp_retries1", "{} s with tcp_rto_max_ms=1000", lambda: _budget_s(3, 1000)),
    # 2. tcp_orphan_retries: the alive rule
    ("tcp_orphan_retries", "0 by {} while the connection is 'alive'", lambda: str(R.orphan_retries(0, True))),
    ("tcp_orphan_retries", "(a budget of {} s with the 120 s cap)", lambda: _budget_s(8, 120000)),
    ("tcp_orphan_retries", "(model: {} s, and", lambda: _s(R.predict_fin_wait1(0, RTO, 1.0, hz=HZ).give_up)),
    (
        "tcp_orphan_retries",
        "and {} s depending on the timers' lateness",
        lambda: " or ".join(
            _s(t) for t in sorted(p.give_up for p in R.predict_fin_wait1(8, RTO, 1.0, hz=HZ).timelines())
        ),
    ),
    ("tcp_orphan_retries", "(model: {} s on loopback)", lambda: _s(R.predict_fin_wait1(0, RTO, 120.0, hz=HZ).give_up)),
    # 4. tcp_fin_timeout above 60 s: 2 x (value - 60)
    ("tcp_fin_timeout", "61 gives {} s (measured)", lambda: _s(FIN.predict_fin_timeout(61, RTO).give_up)),
    ("tcp_fin_timeout", "90 gives {} s", lambda: _s(FIN.predict_fin_timeout(90, RTO).give_up)),
    ("tcp_fin_timeout", "120 gives {} s", lambda: _s(FIN.predict_fin_timeout(120, RTO).give_up)),
    ("tcp_fin_timeout", "180 gives {} s", lambda: _s(FIN.predict_fin_timeout(180, RTO).give_up)),
    # 5. the reuse delay counts from the entry into TIME_WAIT
    (
        "tcp_tw_reuse_delay",
        "4-tuple {} s after the old connection entered",
        lambda: _s(TW.predict_tw_reuse(1, 1, 1000).give_up),
    ),
    # 6. SYN-ACKs, accept overflow, SYN linear timeouts and the SYN time cap
    (
        "tcp_synack_retries",
        "at {} s with the default 5",
        lambda: _times(SA.predict_synack(5, hz=HZ), "synack_retransmit"),
    ),
    ("tcp_synack_retries", "dropped about {} s after the SYN", lambda: _s(SA.predict_synack(5, hz=HZ).give_up)),
    ("tcp_synack_retries", "from num_timeout {} at HZ=250", lambda: str(_first_wrap(250))),
    ("tcp_synack_retries", "({} at HZ=1000", lambda: str(_first_wrap(1000))),
    ("tcp_synack_retries", "{} at HZ=100)", lambda: str(_first_wrap(100))),
    (
        "tcp_abort_on_overflow",
        "went out again at {} s, both ACKs overflowed",
        lambda: _times(R.predict_accept_overflow(0, 2, hz=HZ), "synack_retransmit"),
    ),
    (
        "tcp_abort_on_overflow",
        "(ListenOverflows +{}) and the request was dropped",
        lambda: str(len([e for e in R.predict_accept_overflow(0, 2, hz=HZ).events if e.what == "listen_overflow"])),
    ),
    (
        "tcp_abort_on_overflow",
        "request was dropped at {} s",
        lambda: _s(R.predict_accept_overflow(0, 2, hz=HZ).give_up),
    ),
    ("tcp_syn_linear_timeouts", "end it at {} s", lambda: _s(SYN.predict_syn(6, 4, hz=HZ).give_up)),
    ("tcp_syn_linear_timeouts", "when the {} s cap has passed too", lambda: _s(SYN.model_timeout(6, 1.0, 120.0, HZ))),
    ("tcp_syn_linear_timeouts", "but the {} s cap ends it", lambda: _s(SYN.model_timeout(2, 1.0, 120.0, HZ))),
    (
        "tcp_syn_linear_timeouts",
        "ends it after {} (measured",
        lambda: str(len([e for e in SYN.predict_syn(2, 4, hz=HZ).events if e.what == "syn_retransmit"])),
    ),
    ("tcp_syn_retries", "{} s for the default 6 with the 120 s cap", lambda: _s(SYN.model_timeout(6, 1.0, 120.0, HZ))),
    ("tcp_syn_retries", "{} s with tcp_rto_max_ms=2000", lambda: _s(SYN.model_timeout(6, 1.0, 2.0, HZ))),
    (
        "tcp_syn_retries",
        "the SYN is retransmitted at {} s",
        lambda: _times(SYN.predict_syn(6, 4, hz=HZ), "syn_retransmit"),
    ),
    ("tcp_syn_retries", "ETIMEDOUT at about {} s", lambda: _s(SYN.predict_syn(6, 4, hz=HZ).give_up)),
]


def _text(key: str) -> str:
    e = load_kb().get(f"net.ipv4.{key}")
    assert e is not None, key
    parts = [getattr(e, f, "") or "" for f in ("meaning", "details", "source")]
    values = getattr(e, "values", None) or {}
    return re.sub(r"\s+", " ", " ".join([*parts, *map(str, values.values())]))


@pytest.mark.parametrize(("key", "phrase", "model"), CLAIMS, ids=[f"{k}:{p[:30]}" for k, p, _ in CLAIMS])
def test_the_text_names_the_number_the_model_gives(key, phrase, model):
    want = phrase.format(model())
    assert want in _text(key), f"net.ipv4.{key}: expected {want!r} in its explain text"


def test_the_corrected_claims_are_gone():
    """Issue 11's items: the old statements must not come back."""
    assert "bucket table overflow' is logged" not in _text("tcp_max_tw_buckets")
    assert "TCPTimeWaitOverflow" in _text("tcp_max_tw_buckets")
    assert "only becomes 0 for real if an ICMP error" not in _text("tcp_orphan_retries")
    assert "assuming the 120 s cap" not in _text("tcp_rto_max_ms")
    assert "lowers the effective limit for young requests" not in _text("tcp_synack_retries")
    assert "the client retransmits" not in _text("tcp_abort_on_overflow")
    assert "tw_entry_stamp" in _text("tcp_tw_reuse") and "tw_entry_stamp" in _text("tcp_tw_reuse_delay")
    assert "tcp_reqsk_timeout" not in _text("tcp_synack_retries")
    assert "287892 383858 575784" in _text("tcp_mem")  # this boot's, beside the data files' boot
