"""`tcptune probe` end to end: the real CLI in a private network namespace."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from nsutil import netns_argv

TCPTUNE = [sys.executable, "-m", "tcptune"]


def _in_netns(sysctls: dict, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    sets = "; ".join(f"echo {v} > /proc/sys/net/ipv4/{k}" for k, v in sysctls.items())
    cmd = " ".join(map(shlex_quote, TCPTUNE + args))
    argv = netns_argv(["sh", "-c", f"{sets + '; ' if sets else ''}exec {cmd}"])
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def test_probe_syn_json_and_pcap(tmp_path):
    pcap = tmp_path / "syn.pcap"
    r = _in_netns(
        {"tcp_syn_retries": 1, "tcp_syn_linear_timeouts": 0},
        ["probe", "syn", "--json", "--max-wait", "10", "--pcap", str(pcap)],
    )
    assert r.returncode == 0, r.stderr + r.stdout
    data = json.loads(r.stdout)
    assert data["verdict"] == "matches"
    assert [e["what"] for e in data["predicted"]] == ["syn", "syn_retransmit", "connect_timeout"]
    assert data["give_up"]["predicted_s"] == 3.0 and 3.0 <= data["give_up"]["observed_s"] < 3.3
    assert data["tolerance"]["abs_s"] == 0.03 and data["source"] == "capture"
    assert r.stderr == ""  # no progress noise when stderr is not a terminal
    from pcaputil import read_pcap

    from tcptune.probe.capture import ACK, SYN

    segs = read_pcap(pcap)
    assert [(s.flags & (SYN | ACK)) for s in segs] == [SYN, SYN]
    if shutil.which("tcpdump"):
        out = subprocess.run(["tcpdump", "-nn", "-r", str(pcap)], capture_output=True, text=True).stdout
        assert out.count("Flags [S]") == 2


def test_probe_human_output_and_fallback_without_capture():
    r = _in_netns({"tcp_synack_retries": 1}, ["probe", "synack", "--no-capture", "--max-wait", "10"])
    assert r.returncode == 0, r.stderr + r.stdout
    assert "verdict: matches" in r.stdout
    assert "TCP_INFO and the socket table" in r.stdout
    assert "synack_retransmit #1" in r.stdout and "request_dropped" in r.stdout


def test_probe_all_runs_what_fits():
    r = _in_netns(
        {"tcp_syn_retries": 1, "tcp_synack_retries": 1, "tcp_fin_timeout": 1, "tcp_keepalive_time": 7200},
        ["probe", "all", "--json", "--max-wait", "5"],
        timeout=120,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    data = json.loads(r.stdout)
    ran = {p["probe"]: p["verdict"] for p in data["probes"]}
    assert ran == {
        "syn": "matches",
        "synack": "matches",
        "accept-overflow": "matches",
        "fin-timeout": "matches",
        "tw-reuse": "matches",
    }
    assert [s["probe"] for s in data["skipped"]] == ["fin-wait1", "keepalive", "dead-peer"]
    assert data["verdict"] == "matches"


def test_keepalive_too_long_is_said_plainly():
    r = _in_netns({}, ["probe", "keepalive", "--max-wait", "5"])
    assert r.returncode == 0
    assert "too long to observe in the allowed time" in r.stdout


@pytest.mark.parametrize("opt", [["--root", "/"], ["--sysctl-dump", "/dev/null"]])
def test_probe_does_not_offer_offline_sources(opt):
    """A probe needs a live kernel: --root and --sysctl-dump are not options of it (issue 10 #5)."""
    r = subprocess.run(TCPTUNE + ["probe", "syn"] + opt, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "No such option" in r.stderr
    helptext = subprocess.run(TCPTUNE + ["probe", "syn", "--help"], capture_output=True, text=True, timeout=30).stdout
    assert opt[0] not in helptext


@pytest.mark.parametrize("value", ["0", "nan", "inf", "-1"])
def test_bad_max_wait(value):
    r = subprocess.run(TCPTUNE + ["probe", "syn", "--max-wait", value], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--max-wait" in r.stderr


def test_an_end_at_the_max_wait_limit_is_reported_beyond_it_at_once():
    """issue 10 #1: tcp_fin_timeout=30 (the web-server profile's) with the default --max-wait 30."""
    import time

    t = time.monotonic()
    r = _in_netns({"tcp_fin_timeout": 30}, ["probe", "fin-timeout", "--json"])
    assert r.returncode == 0, r.stderr + r.stdout
    data = json.loads(r.stdout)
    assert data["verdict"] == "not_observed" and "beyond --max-wait 30 s" in data["reason"]
    assert time.monotonic() - t < 10  # said, not waited for
    r = _in_netns({"tcp_fin_timeout": 30, "tcp_syn_retries": 6}, ["probe", "all", "--json"], timeout=120)
    skipped = {s["probe"]: s["reason"] for s in json.loads(r.stdout)["skipped"]}
    assert "allowed lateness" in skipped["fin-timeout"]


# Without capabilities (uid 0 keeps file access to this tree, but has no CAP_NET_ADMIN/CAP_NET_RAW).
NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


def test_without_privileges_a_refused_socket_filter_is_exit_3_not_an_internal_error():
    """issue 10 #4 / issue 9 #11: the syn probe's socket filter needs CAP_NET_ADMIN on some kernels."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    inner = " ".join(map(shlex_quote, NO_CAPS + TCPTUNE + ["probe", "syn", "--no-capture", "--max-wait", "5"]))
    r = subprocess.run(
        netns_argv(["sh", "-c", f"echo 1 > /proc/sys/net/ipv4/tcp_syn_retries; exec {inner}"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    if r.returncode == 3:  # this kernel refuses it (measured on 6.18 here)
        assert r.stderr.count("\n") == 1 and "SO_ATTACH_FILTER" in r.stderr and "CAP_NET_ADMIN" in r.stderr
    else:  # a kernel that lets anyone filter its own socket
        assert r.returncode == 0, r.stderr + r.stdout
    inner = " ".join(map(shlex_quote, NO_CAPS + TCPTUNE + ["probe", "fin-timeout", "--max-wait", "5"]))
    r = subprocess.run(
        netns_argv(["sh", "-c", f"echo 1 > /proc/sys/net/ipv4/tcp_fin_timeout; exec {inner}"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "verdict: matches" in r.stdout, r.stderr + r.stdout  # no filter needed
    assert "TCP_INFO and the socket table" in r.stdout


def _interrupt_and_list_sockets(probe: str, sysctls: dict, after: float, pcap: str):
    """In the netns: start the CLI, Ctrl-C it, then list what TCP sockets remain."""
    import signal
    import time

    for k, v in sysctls.items():
        with open(f"/proc/sys/net/ipv4/{k}", "w") as fh:
            fh.write(f"{v}\n")
    p = subprocess.Popen(
        TCPTUNE + ["probe", probe, "--max-wait", "20", "--pcap", pcap],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT as a terminal's Ctrl-C delivers it: a suite run as a background job starts
        # with SIGINT ignored, and Python then installs no KeyboardInterrupt handler
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(after)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    time.sleep(0.2)
    with open("/proc/net/tcp") as fh:
        left = [line.split()[3] for line in fh.read().splitlines()[1:]]
    return p.returncode, out, err, left


@pytest.mark.parametrize(
    "probe,sysctls",
    [
        (
            "keepalive",
            {"tcp_keepalive_time": 5},
        ),  # connected client + silenced peer: a plain close would leave FIN_WAIT1
        ("syn", {"tcp_syn_retries": 6}),
    ],
)
def test_ctrl_c_cleans_up_every_socket_and_says_what_was_seen(probe, sysctls, tmp_path):
    """issue 10 #8 and issue 9 #17: Ctrl-C prints the events so far, what was still expected,
    and still writes --pcap."""
    from nsutil import run_in_netns

    pcap = tmp_path / "interrupted.pcap"
    rc, out, err, left = run_in_netns(_interrupt_and_list_sockets, probe, sysctls, 2.5, str(pcap), timeout=60)
    assert rc == 130, err
    assert left == [], f"sockets left in states {left}"
    assert "verdict: interrupted (interrupted after 2." in out and "still expected: " in out, out
    assert "syn_retransmit #1" in out if probe == "syn" else "established" in out
    assert pcap.exists() and pcap.stat().st_size > 24, "the packets seen so far are written"


def test_without_cap_net_raw_falls_back_to_socket_timers():
    if not shutil.which("capsh"):
        pytest.skip("capsh (libcap) is not installed")
    inner = " ".join(
        map(shlex_quote, TCPTUNE + ["probe", "syn", "--json", "--max-wait", "10", "--pcap", "/tmp/never.pcap"])
    )
    sets = "echo 1 > /proc/sys/net/ipv4/tcp_syn_retries"
    argv = netns_argv(["sh", "-c", f"{sets}; exec capsh --drop=cap_net_raw -- -c {shlex_quote(inner)}"])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    data = json.loads(r.stdout)
    assert data["source"] == "socket" and data["verdict"] == "matches"
    assert any("CAP_NET_RAW" in n for n in data["notes"])
    assert any("nothing written" in n for n in data["notes"]) and data["pcap"] is None


def test_probe_runs_inside_the_netns_given_by_pid():
    """--netns PID: settings and sockets are those of that namespace, not the caller's."""
    import time

    from nsutil import require_netns

    require_netns()
    holder = subprocess.Popen(
        [
            "unshare",
            "-n",
            "sh",
            "-c",
            "ip link set lo up && echo 1 > /proc/sys/net/ipv4/tcp_syn_retries && "
            "echo 0 > /proc/sys/net/ipv4/tcp_syn_linear_timeouts && echo ready && exec sleep 60",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        t = time.monotonic()
        r = subprocess.run(
            TCPTUNE + ["probe", "syn", "--json", "--netns", str(holder.pid), "--max-wait", "10"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["settings"]["tcp_syn_retries"] == 1 and data["settings"]["tcp_syn_linear_timeouts"] == 0
        assert data["verdict"] == "matches" and data["give_up"]["predicted_s"] == 3.0
        assert time.monotonic() - t < 9
    finally:
        holder.kill()
        holder.wait()
