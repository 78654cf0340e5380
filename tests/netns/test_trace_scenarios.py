"""trace --scenario: each tutorial experiment, run by the CLI in its own private namespace.

The labels must be the seeds' (SYN J, SYN-ACK K ack J+1, ACK K+1, FIN, ACK), and the states
inferred from the packets must equal the kernel's own at the end, except where the kernel
acts with nothing on the wire (a give-up, a dropped segment), which trace must say.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from nsutil import require_netns


def scenario(name: str) -> dict:
    require_netns()
    r = subprocess.run(
        [sys.executable, "-m", "tcptune", "trace", "--scenario", name, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    (conn,) = json.loads(r.stdout)["connections"]
    return conn


def labels(conn):
    return [(p["from"], p["label"]) for p in conn["packets"]]


def test_handshake():
    c = scenario("handshake")
    assert labels(c) == [("client", "SYN J"), ("server", "SYN-ACK K, ack J+1"), ("client", "ACK K+1")]
    assert [tuple(p["states_after"].values()) for p in c["packets"]] == [
        ("SYN_SENT", "SYN_RECV"),
        ("ESTABLISHED", "SYN_RECV"),
        ("ESTABLISHED", "ESTABLISHED"),
    ]
    assert c["kernel_final_states"] == c["final_states"] == {"client": "ESTABLISHED", "server": "ESTABLISHED"}


def test_teardown_has_four_segments_and_ends_in_time_wait():
    c = scenario("teardown")
    closing = [lbl for _, lbl in labels(c)][5:]
    assert closing == ["FIN J+7, ack K+1", "ACK J+8", "FIN K+1, ack J+8", "ACK K+2"]
    assert c["kernel_final_states"] == c["final_states"] == {"client": "TIME_WAIT", "server": "CLOSED"}


@pytest.mark.parametrize(
    "name,final",
    [
        ("time-wait", {"client": "TIME_WAIT", "server": "CLOSED"}),
        ("half-close", {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"}),
        ("refused", {"client": "CLOSED", "server": "CLOSED"}),
    ],
)
def test_the_inferred_end_states_are_the_kernels(name, final):
    c = scenario(name)
    assert c["final_states"] == final
    assert c["kernel_final_states"] == final


def test_an_unanswered_syn_is_retransmitted_and_the_kernel_gives_up_with_nothing_on_the_wire():
    c = scenario("syn-sent")
    assert labels(c) == [("client", "SYN J"), ("client", "SYN J")]
    assert c["packets"][1]["retransmission"] == 1
    assert 0.9 < c["packets"][1]["t"] < 1.5  # the first SYN RTO, 1 s (TCP_TIMEOUT_INIT)
    assert c["final_states"]["client"] == "SYN_SENT" and c["kernel_final_states"]["client"] == "CLOSED"


def test_a_fin_never_acknowledged_is_retransmitted_from_fin_wait1():
    c = scenario("fin-wait1")
    fins = [p for p in c["packets"] if p["label"].startswith("FIN")]
    assert len(fins) >= 2 and fins[-1]["retransmission"] >= 1
    assert all(p["states_after"]["client"] == "FIN_WAIT1" for p in fins)


AGREE_AFTER_EACH_STEP = [
    "handshake",
    "teardown",
    "time-wait",
    "half-close",
    "refused",
    "syn-sent",
    "simultaneous-close",
    "simultaneous-open",
]


def test_simultaneous_open_the_syns_cross_and_each_end_goes_through_syn_recv():
    """RFC 9293 3.3.2 / figure 8, the seed's drawing (A:7777 <-> B:8888, both connect()):
    each end meets the other's bare SYN in SYN_SENT (tcp_rcv_synsent_state_process, the
    simultaneous-open branch), goes SYN_RECV and sends its SYN-ACK; each SYN-ACK makes its
    receiver ESTABLISHED.  The kernel's states are read after every segment."""
    c = scenario("simultaneous-open")
    assert labels(c)[:4] == [
        ("client", "SYN J"),
        ("server", "SYN K"),
        ("server", "SYN-ACK K, ack J+1"),
        ("client", "SYN-ACK J, ack K+1"),
    ]
    assert [tuple(p["states_after"].values()) for p in c["packets"][:4]] == [
        ("SYN_SENT", "SYN_RECV"),
        ("SYN_RECV", "SYN_RECV"),
        ("ESTABLISHED", "SYN_RECV"),
        ("ESTABLISHED", "ESTABLISHED"),
    ]
    # what follows is pure ACKs (each end's answer to the SYN-ACK it took as a duplicate)
    assert all(p["flags"] == "." for p in c["packets"][4:])
    assert all(p["retransmission"] == 0 for p in c["packets"])
    # every one of the four was checked against the kernel, and agreed
    assert [p["states_source"] for p in c["packets"][:4]] == ["kernel"] * 4
    assert all(p["kernel_states"] == p["states_after"] for p in c["packets"][:4])
    assert c["final_states"] == c["kernel_final_states"] == {"client": "ESTABLISHED", "server": "ESTABLISHED"}


def test_simultaneous_close_the_fins_cross_and_both_ends_end_in_time_wait():
    c = scenario("simultaneous-close")
    fins = [p for p in c["packets"] if "F" in p["flags"]]
    # the first FIN of each end: neither acknowledges the other's (both left before either arrived)
    first_c = next(p for p in fins if p["from"] == "client")
    first_s = next(p for p in fins if p["from"] == "server")
    assert first_c["label"] == "FIN J+1, ack K+1" and first_s["label"] == "FIN K+1, ack J+1"
    assert first_s["states_after"] == {"client": "CLOSING", "server": "CLOSING"}
    assert c["final_states"] == c["kernel_final_states"] == {"client": "TIME_WAIT", "server": "TIME_WAIT"}


@pytest.mark.parametrize("name", AGREE_AFTER_EACH_STEP)
def test_the_inferred_states_are_the_kernels_after_each_step(name):
    """The scenario reads both ends' states by sock_diag after each of its steps (connect, send,
    close ...); they belong to the last segment on the wire by then and must equal the inferred."""
    c = scenario(name)
    checked = [p for p in c["packets"] if p["states_source"] == "kernel"]
    assert checked, "no step was read from the kernel"
    for p in checked:
        known = {end: st for end, st in p["states_after"].items() if st != "?"}
        assert {end: p["kernel_states"][end] for end in known} == known, p
        assert p["disagrees"] == []
    if name == "teardown":  # every pause of the close: after the ACK of the data, of each FIN
        assert [p["label"] for p in checked] == ["ACK K+1", "ACK J+7", "ACK J+8", "ACK K+2"]


@pytest.mark.parametrize(
    "name,label,inferred,kernel",
    [
        # the server's filter dropped the final ACK: the kernel still has the request in SYN_RECV
        ("syn-recv", "ACK K+1", "ESTABLISHED", "SYN_RECV"),
        # the server's socket dropped the FIN: it never left ESTABLISHED
        ("fin-wait1", "FIN J+1, ack K+1", "CLOSE_WAIT", "ESTABLISHED"),
    ],
)
def test_a_segment_the_receiver_dropped_shows_as_a_disagreement(name, label, inferred, kernel):
    c = scenario(name)
    (p,) = [p for p in c["packets"] if p["states_source"] == "kernel" and p["disagrees"]]
    assert p["label"] == label and p["disagrees"] == ["server"]
    assert p["states_after"]["server"] == inferred and p["kernel_states"]["server"] == kernel
