"""The retry-timer probes (fin-wait1, dead-peer, accept-overflow) against the real kernel,
each case in its own private network namespace with short settings (tcp_rto_max_ms=1000,
small retry counts), several at once so the set takes well under a minute.

The numbers asserted are this machine's measurements (6.18, HZ=250): with rto_max 1000 an
orphan with tcp_orphan_retries=0 is gone after ~2.7 s and with 8 after ~7.8 s; tcp_retries2=5
fails the socket after ~5.8 s.  The deliberately wrong models of these probes are run by
tests/netns/test_probe.py, which runs every spec's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from nsutil import netns_argv, require_netns, run_in_netns

from tcptune.core import verdict as V
from tcptune.probe.spec import specs

WORKERS = 4
FAST = {"tcp_rto_max_ms": 1000}


def _set(**values):
    for k, v in values.items():
        with open(f"/proc/sys/net/ipv4/{k}", "w") as fh:
            fh.write(f"{v}\n")


def _case(probe, sysctls, max_wait=15.0, capture=True, options=None, pcap=None):
    from tcptune.host.source import Host
    from tcptune.ops.probes import run_probe

    _set(**sysctls)
    return run_probe(Host("/"), probe, max_wait, capture=capture, options=options, pcap=pcap).to_json()


CASES = {
    "fw1-0": ("fin-wait1", {**FAST, "tcp_orphan_retries": 0}, {}),
    "fw1-0-nocap": ("fin-wait1", {**FAST, "tcp_orphan_retries": 0}, {"capture": False}),
    "fw1-8": ("fin-wait1", {**FAST, "tcp_orphan_retries": 8}, {}),
    "fw1-2": ("fin-wait1", {**FAST, "tcp_orphan_retries": 2}, {}),
    "dp-5": ("dead-peer", {**FAST, "tcp_retries2": 5}, {}),
    "dp-5-nocap": ("dead-peer", {**FAST, "tcp_retries2": 5}, {"capture": False}),
    "dp-5-ut3000": ("dead-peer", {**FAST, "tcp_retries2": 5}, {"options": {"user_timeout": 3000}}),
    # a user timeout longer than the tcp_retries2 budget (1.4 s for retries2=2) lengthens it
    "dp-2-ut6000": ("dead-peer", {**FAST, "tcp_retries2": 2}, {"options": {"user_timeout": 6000}}),
    "dp-2": ("dead-peer", {**FAST, "tcp_retries2": 2}, {}),
    # tcp_rto_min_us moves the retransmissions; the budget stays tcp_model_timeout(.., TCP_RTO_MIN = 200 ms)
    "dp-3-rtomin50ms": ("dead-peer", {"tcp_retries2": 3, "tcp_rto_min_us": 50000}, {}),
    "fw1-0-rtomin20ms": ("fin-wait1", {**FAST, "tcp_orphan_retries": 0, "tcp_rto_min_us": 20000}, {}),
    "ao-0": ("accept-overflow", {"tcp_abort_on_overflow": 0, "tcp_synack_retries": 2}, {}),
    "ao-0-nocap": ("accept-overflow", {"tcp_abort_on_overflow": 0, "tcp_synack_retries": 1}, {"capture": False}),
    "ao-1": ("accept-overflow", {"tcp_abort_on_overflow": 1, "tcp_synack_retries": 2}, {}),
    "ao-1-nocap": ("accept-overflow", {"tcp_abort_on_overflow": 1, "tcp_synack_retries": 2}, {"capture": False}),
}


@pytest.fixture(scope="module")
def results():
    require_netns()

    def one(name):
        probe, sysctls, kw = CASES[name]
        try:
            return run_in_netns(_case, probe, sysctls, timeout=60, **kw)
        except BaseException as exc:  # noqa: BLE001 - reported by the test of that case
            return exc

    order = sorted(CASES, key=lambda n: n.startswith(("fw1-8", "dp-5")), reverse=True)  # longest first
    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(zip(order, pool.map(one, order)))


def _get(results, name):
    r = results[name]
    if isinstance(r, BaseException):
        raise r
    return r


def _explain(r):
    return f"{r['verdict']}: {r['reason']}\n" + "\n".join(map(str, r["comparison"])) + f"\nnotes: {r['notes']}"


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_the_model(results, name):
    r = _get(results, name)
    assert r["verdict"] == "matches", _explain(r)
    assert r["source"] == ("socket" if name.endswith("nocap") else "capture")


def test_orphan_retries_0_is_8_only_while_alive(results):
    for name in ("fw1-0", "fw1-0-nocap"):
        r = _get(results, name)
        assert 2.6 <= r["give_up"]["observed_s"] < 2.9, r["give_up"]  # not the ~7.8 s of 8 retries
        assert r["give_up"]["predicted_s"] == pytest.approx(2.632)
    r8 = _get(results, "fw1-8")
    assert 7.6 <= r8["give_up"]["observed_s"] < 8.9  # measured ~7.8 s (the budget reached one expiry early)
    assert r8["give_up"]["possible_s"] == [pytest.approx(7.632), pytest.approx(8.632)]
    assert [e["what"] for e in _get(results, "fw1-0")["observed"]][:2] == ["fin", "fin_retransmit"]


def test_retries2_budget_uses_the_sockets_cap(results):
    for name in ("dp-5", "dp-5-nocap"):
        r = _get(results, name)
        assert r["give_up"]["predicted_s"] == pytest.approx(5.632)
        assert 5.6 <= r["give_up"]["observed_s"] < 6.0  # measured ~5.8 s, not the 13.5 s of the 120 s cap
        assert r["measured"]["socket_error"] == "ETIMEDOUT"
        assert len([e for e in r["observed"] if e["what"] == "retransmit"]) == 7
        assert any("retries1" in n for n in r["notes"])  # predicted, not observed
        assert "retries1" not in [e["what"] for e in r["observed"]]


def test_rto_min_us_does_not_shorten_the_budget(results):
    r = _get(results, "dp-3-rtomin50ms")
    assert r["measured"]["rto_s"] < 0.06  # the RTO follows tcp_rto_min_us ...
    assert r["settings"]["tcp_rto_min_us"] == 50000
    # ... but the 3 s budget of tcp_retries2=3 is from TCP_RTO_MIN: 15 x 50 ms would have ended it at ~0.9 s
    assert 3.5 < r["give_up"]["observed_s"] < 3.9  # measured 3.68 s (model 3.584 s)
    assert len([e for e in r["observed"] if e["what"] == "retransmit"]) == 6
    f = _get(results, "fw1-0-rtomin20ms")
    assert [e["what"] for e in f["observed"]].count("fin_retransmit") == 7  # more doublings before the 1 s cap


def test_user_timeout_overrides_the_budget(results):
    short = _get(results, "dp-5-ut3000")
    assert short["options"] == {"user_timeout": 3000}
    assert 3.38 <= short["give_up"]["observed_s"] < 3.6  # 3 s after the first RTO retransmission
    longer, plain = _get(results, "dp-2-ut6000"), _get(results, "dp-2")
    assert 6.38 <= longer["give_up"]["observed_s"] < 6.6
    assert plain["give_up"]["observed_s"] < 3.0 < longer["give_up"]["observed_s"]


def test_accept_overflow_counts_and_client_state(results):
    r0 = _get(results, "ao-0")
    assert r0["measured"]["ListenOverflows_delta"] == 2 and r0["measured"]["ListenDrops_delta"] == 2
    assert r0["measured"]["client_state"] == "ESTABLISHED"  # the client believes it is connected
    assert [e["t"] for e in r0["observed"] if e["what"] == "overflow_ack"] != []
    assert 6.9 <= r0["give_up"]["observed_s"] < 7.5
    for name in ("ao-1", "ao-1-nocap"):
        r1 = _get(results, name)
        assert r1["measured"]["ListenOverflows_delta"] == 1 and r1["measured"]["socket_error"] == "ECONNRESET"
        assert 0.95 <= r1["give_up"]["observed_s"] < 1.2 and r1["give_up"]["what"] == "reset"
    assert _get(results, "ao-0-nocap")["measured"]["ListenOverflows_delta"] == 1


def test_probe_all_runs_the_three(tmp_path):
    def all_quick(pcap):
        from tcptune.host.source import Host
        from tcptune.ops.probes import run_all

        for name in ("fin-wait1", "dead-peer", "accept-overflow"):
            _set(**specs()[name].quick)
        return run_all(Host("/"), 8.0, pcap=pcap).to_json()

    out = run_in_netns(all_quick, str(tmp_path / "all.pcap"), timeout=120)
    ran = {r["probe"]: r for r in out["probes"]}
    for name in ("fin-wait1", "dead-peer", "accept-overflow"):
        assert ran[name]["verdict"] == "matches", _explain(ran[name])
        assert ran[name]["pcap"] and os.path.getsize(ran[name]["pcap"]) > 0


@pytest.mark.parametrize("probe", ["fin-wait1", "dead-peer", "accept-overflow"])
def test_live_pcap_equals_replay(tmp_path, probe):
    """What a live probe observed in packets is what replaying its --pcap file yields."""
    from pcaputil import read_pcap

    from tcptune.probe.base import SETTLE_S, Observation

    out = tmp_path / f"{probe}.pcap"
    spec = specs()[probe]
    r = run_in_netns(_case, probe, dict(spec.quick), pcap=str(out), timeout=60)
    assert r["verdict"] == "matches" and r["pcap"] == str(out), _explain(r)
    obs = Observation(probe, "pcap", raw_events=list(spec.analyze(read_pcap(str(out)))))
    replayed = obs.events()
    packets = [e for e in r["observed"] if e["what"] not in spec.not_in_packets]
    assert [(e.what, e.n) for e in replayed] == [(e["what"], e["n"]) for e in packets]
    assert all(abs(a.t - b["t"]) < 1e-5 for a, b in zip(replayed, packets))
    # and the replay judged alone (socket-level outcomes ignored) agrees with the model
    from tcptune.ops.probes import predict as predict_of
    from tcptune.probe.spec import ModelInput

    mi = ModelInput(probe, {**{k: None for k in spec.short_settings()}, **r["settings"]}, 250, r["measured"])
    pred = predict_of(spec, mi)
    span = max((e.t for e in replayed), default=0.0)
    cmp = V.compare_prediction(pred, replayed, V.Tolerance(hz=250), window=span + SETTLE_S, ignore=spec.not_in_packets)
    assert cmp.verdict == "matches", cmp.reason


def test_cli_json_with_user_timeout():
    sets = "echo 1000 > /proc/sys/net/ipv4/tcp_rto_max_ms; echo 5 > /proc/sys/net/ipv4/tcp_retries2"
    cmd = f"{sets}; exec {sys.executable} -m tcptune probe dead-peer --json --user-timeout 1000 --max-wait 10"
    p = subprocess.run(netns_argv(["sh", "-c", cmd]), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr + p.stdout
    r = json.loads(p.stdout)
    assert r["probe"] == "dead-peer" and r["options"] == {"user_timeout": 1000} and r["verdict"] == "matches"
    assert 1.35 <= r["give_up"]["observed_s"] < 1.6  # first RTO retransmission at ~0.41 s, then 1 s
