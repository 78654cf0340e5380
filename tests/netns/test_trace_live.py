"""trace live: the real CLI capturing on lo inside a private network namespace while the test
makes connections there; --pcap written is read back by --read (and tcpdump when installed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from nsutil import netns_argv, run_in_netns

TCPTUNE = [sys.executable, "-m", "tcptune", "trace"]
SCHEMA = Path(__file__).resolve().parents[1] / "data/json-schema/trace.schema.json"


def validate(stdout: str) -> None:
    import jsonschema

    jsonschema.validate(json.loads(stdout), json.loads(SCHEMA.read_text()), cls=jsonschema.Draft202012Validator)


def _capturing() -> bool:
    """Is the trace's AF_PACKET socket receiving?  It is listed from socket() on, but made with
    protocol 0 it receives nothing until its bind() (after the filter): the R (running) column
    of /proc/net/packet (packet_seq_show()) turns 1 only then.  Waiting for the line alone lost
    the first packets on a loaded machine (4 runs in 8)."""
    with open("/proc/net/packet") as fh:
        rows = [line.split() for line in fh.readlines()[1:]]
    return any(len(row) > 5 and row[5] == "1" for row in rows)


def _start(args: list[str]) -> subprocess.Popen:
    p = subprocess.Popen(
        TCPTUNE + args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it, even when the suite runs as a background job (SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for _ in range(200):
        if _capturing() or p.poll() is not None:
            break
        time.sleep(0.02)
    return p


def _finish(p: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """p's output; a trace still running after ``timeout`` is killed (by its pid: our child), then the test fails."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise


def _conversation(addr: str, port: int, family=socket.AF_INET) -> None:
    srv = socket.socket(family)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen()
    c = socket.socket(family)
    c.connect((addr, port))
    a, _ = srv.accept()
    time.sleep(0.2)
    c.sendall(b"hello\n")
    a.recv(10)
    time.sleep(0.2)
    c.close()
    time.sleep(0.2)
    a.close()
    time.sleep(0.2)
    srv.close()


def _live_and_read(pcap: str):
    p = _start(["--port", "8888", "--count", "9", "--json", "--pcap", pcap])
    _conversation("127.0.0.1", 8888)
    out, err = _finish(p, 20)
    read = subprocess.run([*TCPTUNE, "--read", pcap, "--json"], capture_output=True, text=True)
    return p.returncode, out, err, read.returncode, read.stdout


def test_live_json_labels_states_and_the_kernels_agree(tmp_path):
    pcap = str(tmp_path / "live.pcap")
    rc, out, err, rrc, rout = run_in_netns(_live_and_read, pcap)
    assert rc == 0, err
    validate(out)  # the live document has the shape --read's has
    data = json.loads(out)
    (c,) = data["connections"]
    assert [p["label"] for p in c["packets"]] == [
        "SYN J",
        "SYN-ACK K, ack J+1",
        "ACK K+1",
        "data J+1:J+7 (6 bytes), ack K+1",
        "ACK J+7",
        "FIN J+7, ack K+1",
        "ACK J+8",
        "FIN K+1, ack J+8",
        "ACK K+2",
    ]
    checked = [p for p in c["packets"] if p["states_source"] == "kernel"]
    # read whenever the wire went quiet: at least after each pause of the conversation (the FIN
    # may get its own read, before the server's delayed ACK of it)
    assert {"ACK K+1", "ACK J+7", "ACK J+8", "ACK K+2"} <= {p["label"] for p in checked}
    assert all(p["kernel_states"] == p["states_after"] and p["disagrees"] == [] for p in checked)
    assert checked[-1]["kernel_states"] == {"client": "TIME_WAIT", "server": "CLOSED"}
    assert c["final_states"] == c["kernel_final_states"] == {"client": "TIME_WAIT", "server": "CLOSED"}
    assert data["tcp_segments"] == 9 and data["source"] == "live on lo"
    # the pcap round trip: --read sees the same segments and labels
    assert rrc == 0
    (rc_,) = json.loads(rout)["connections"]
    assert [(p["label"], p["seq"], p["states_after"]) for p in rc_["packets"]] == [
        (p["label"], p["seq"], p["states_after"]) for p in c["packets"]
    ]
    if shutil.which("tcpdump"):
        dump = subprocess.run(["tcpdump", "-nn", "-r", pcap], capture_output=True, text=True)
        assert dump.returncode == 0 and len(dump.stdout.splitlines()) == 9
        assert "Flags [S]" in dump.stdout.splitlines()[0]


def _filtered():
    # only 127.0.0.2 port 8889 passes the kernel-side filter; ::1 with --host ::1 in a second run
    p = _start(["--port", "8889", "--host", "127.0.0.2", "--count", "3", "--json"])
    _conversation("127.0.0.1", 8889)  # another host
    _conversation("127.0.0.2", 8890)  # another port
    _conversation("127.0.0.2", 8889)
    out, err = _finish(p, 20)
    p6 = _start(["--port", "8891", "--host", "::1", "--count", "3", "--json", "--absolute"])
    _conversation("127.0.0.1", 8891)
    _conversation("::1", 8891, socket.AF_INET6)
    out6, err6 = _finish(p6, 20)
    return out, err, out6, err6


def test_the_port_and_host_filters_keep_only_their_connection_ipv4_and_ipv6():
    out, err, out6, err6 = run_in_netns(_filtered)
    (c,) = json.loads(out)["connections"]
    assert c["server"] == "127.0.0.2:8889" and len(c["packets"]) == 3, err
    validate(out6)
    d6 = json.loads(out6)
    (c6,) = d6["connections"]
    assert c6["server"] == "[::1]:8891", err6
    assert [p["flags"] for p in c6["packets"]] == ["S", "S.", "."]
    # --absolute: raw sequence numbers in the labels, seq_rel still relative
    syn = c6["packets"][0]
    assert syn["label"] == f"SYN {syn['seq']}" and syn["seq_rel"] == 0 and d6["sequence_numbers"] == "absolute"
    assert c6["packets"][2]["kernel_states"] == {"client": "ESTABLISHED", "server": "ESTABLISHED"}


def _interrupted():
    p = _start(["--port", "8892"])
    srv = socket.socket()
    srv.bind(("127.0.0.1", 8892))
    srv.listen()
    c = socket.create_connection(("127.0.0.1", 8892))
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = _finish(p, 10)
    c.close()
    return p.returncode, out, err


def test_ctrl_c_ends_cleanly_and_prints_what_was_seen():
    rc, out, err = run_in_netns(_interrupted)
    assert rc == 0, err
    assert "[S] SYN J" in out and "[.] ACK K+1" in out
    assert "kernel (sock_diag): client ESTABLISHED, server ESTABLISHED: agrees" in out
    assert "3 TCP segments captured live on lo" in out and "interrupted (Ctrl-C)" in out
    assert err == ""


def _run(args, **kw):
    return subprocess.run(netns_argv([*TCPTUNE, *args]), capture_output=True, text=True, timeout=30, **kw)


def test_bad_live_options_exit_2_with_one_line():
    cases = {
        ("--interface", "nosuch0", "--count", "1"): "--interface nosuch0",
        ("--port", "70000"): "70000",
        ("--host", "not-an-address", "--count", "1"): "--host not-an-address",
        ("--read", "x.pcap", "--count", "3"): "--count: live-capture options, not for --read",
        ("--duration", "0"): "--duration 0",
    }
    for args, says in cases.items():
        r = _run(list(args))
        assert r.returncode == 2, (args, r.stderr)
        assert says in r.stderr, (args, r.stderr)


def test_without_cap_net_raw_it_exits_3_with_one_line():
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}
    argv = netns_argv(["setpriv", "--inh-caps=-all", "--bounding-set=-net_raw", *TCPTUNE, "--count", "1"])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and "CAP_NET_RAW" in r.stderr
