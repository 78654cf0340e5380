"""`tcptune states` end to end: --root snapshots (real captures), errors and exit codes, --watch, --netns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from nsutil import netns_argv, require_netns

TCPTUNE = [sys.executable, "-m", "tcptune"]  # this tree (PYTHONPATH), never a stale `tcptune` on PATH


def tcptune(*args, env: dict | None = None):
    e = dict(os.environ)
    for k in ("NO_COLOR", "COLUMNS", "PYTHONIOENCODING"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([*TCPTUNE, *args], capture_output=True, text=True, timeout=60, env=e)


@pytest.fixture
def snapshot(tmp_path, data_dir):
    root = tmp_path / "snap"
    (root / "proc/sys/net/ipv4").mkdir(parents=True)
    (root / "proc/sys/net/core").mkdir(parents=True)
    (root / "proc/net").mkdir(parents=True)
    shutil.copy(data_dir / "proc_net_tcp.zoo", root / "proc/net/tcp")
    shutil.copy(data_dir / "proc_net_tcp6.zoo", root / "proc/net/tcp6")
    (root / "proc/sys/net/ipv4/tcp_max_tw_buckets").write_text("6\n")
    (root / "proc/sys/net/ipv4/tcp_syncookies").write_text("1\n")
    return root


def test_root_snapshot_counts_and_tw_warning(snapshot):
    r = tcptune("states", "--root", str(snapshot), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["states"]["ESTABLISHED"] == 24 and report["states"]["TIME_WAIT"] == 6
    assert report["total"] == 78
    assert report["source"].endswith("proc/net/tcp + " + str(snapshot / "proc/net/tcp6"))
    assert [w["key"] for w in report["warnings"]] == ["net.ipv4.tcp_max_tw_buckets"]


def test_root_table_has_bars_totals_and_groups(snapshot):
    r = tcptune(
        "states",
        "--root",
        str(snapshot),
        "--by",
        "local-port",
        "--top",
        "3",
        env={"NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"},
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    est = next(line for line in lines if line.startswith("ESTABLISHED"))
    assert "24" in est and "\u2588" * 40 in est
    assert any(line.startswith("TOTAL") and "78" in line for line in lines)
    assert "LOCAL PORT" in r.stdout
    assert "\x1b[" not in r.stdout
    ascii_out = tcptune("states", "--root", str(snapshot), env={"PYTHONIOENCODING": "ascii"})
    assert "#" * 40 in ascii_out.stdout


def test_malformed_proc_line_is_reported_with_file_and_line(snapshot):
    tcp = snapshot / "proc/net/tcp"
    lines = tcp.read_text().splitlines()
    lines[5] = lines[5][:30]  # truncate the 6th line
    tcp.write_text("\n".join(lines) + "\n")
    r = tcptune("states", "--root", str(snapshot), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["total"] == 77
    assert report["notes"][0].startswith(f"{tcp}:6: ")


def test_ipv6_only_from_snapshot(snapshot):
    r = tcptune("states", "--root", str(snapshot), "--ipv6", "--state", "LISTEN", "--json")
    assert json.loads(r.stdout)["states"]["LISTEN"] == 3


@pytest.mark.parametrize(
    "args,code,text",
    [
        (["--state", "NAPPING"], 2, "unknown TCP state"),
        (["--count", "2"], 2, "--count only makes sense with --watch"),
        (["--by", "process"], 2, "--by process needs running processes"),
    ],
)
def test_bad_input_exits_2(snapshot, args, code, text):
    r = tcptune("states", "--root", str(snapshot), *args)
    assert r.returncode == code and text in r.stderr


def test_root_without_socket_table(tmp_path):
    (tmp_path / "proc/sys/net").mkdir(parents=True)
    r = tcptune("states", "--root", str(tmp_path))
    assert r.returncode == 2 and "no proc/net/tcp" in r.stderr


def test_sysctl_dump_is_not_offered(tmp_path):
    # a dump has no socket table: states does not list an option it would always refuse
    assert "--sysctl-dump" not in tcptune("states", "--help").stdout
    dump = tmp_path / "d.txt"
    dump.write_text("net.ipv4.tcp_syncookies = 1\n")
    r = tcptune("states", "--sysctl-dump", str(dump))
    assert r.returncode == 2 and "No such option" in r.stderr


WATCHER = """
import socket, subprocess, sys, time
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen()
p = subprocess.Popen([sys.executable, "-m", "tcptune", "states", "--watch", "0.3", "--count", "3", "--json"], stdout=subprocess.PIPE, text=True)
first = p.stdout.readline()
conns = []
for _ in range(4):
    c = socket.create_connection(lst.getsockname()); s, _ = lst.accept(); conns += [c, s]
rest = p.stdout.read(); p.wait()
sys.stdout.write(first + rest)
"""


def test_watch_reports_changes_between_samples():
    r = subprocess.run(netns_argv([sys.executable, "-c", WATCHER]), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    samples = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(samples) == 3
    assert "changes" not in samples[0] and samples[0]["states"]["LISTEN"] == 1
    assert samples[-1]["states"]["ESTABLISHED"] == 8
    assert sum(s["changes"]["ESTABLISHED"] for s in samples[1:]) == 8
    assert samples[1]["time"] > samples[0]["time"]


def test_netns_option_reads_that_namespace():
    require_netns()
    holder = subprocess.Popen(
        netns_argv(
            [
                sys.executable,
                "-c",
                "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(1, flush=True); time.sleep(30)",
            ]
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "1"
        # the python child of `unshare ... sh -c exec` has the same pid as sh
        r = tcptune("states", "--netns", str(holder.pid), "--json")
        assert r.returncode == 0, r.stderr
        states = json.loads(r.stdout)["states"]
        assert {k: v for k, v in states.items() if v} == {"LISTEN": 1}
    finally:
        holder.kill()
        holder.wait()
