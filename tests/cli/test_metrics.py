"""`tcptune metrics` against the real consumers: prometheus_client's parser, node_exporter, promtool.

node_exporter and promtool are Debian's (prometheus-node-exporter, prometheus), unpacked by
.ci/run; the test starts node_exporter on 127.0.0.1 with only the textfile collector,
scrapes it once and stops it by its pid.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from clirunner import one_line_error, run_cli
from nsutil import netns_argv
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "contrib/prometheus"
UNPACKED = "/var/cache/tcptune-ci/root/usr/bin"  # where .ci/run unpacks Debian's binaries


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=UNPACKED)
    if not found:
        why = f"{name} not found on PATH or in {UNPACKED}; .ci/run unpacks Debian's packages there"
        if os.environ.get("TCPTUNE_REQUIRE_NETNS") == "1":  # CI: a missing real component is a failure
            pytest.fail(why)
        pytest.skip(why)
    return found


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_the_exposition_parses_and_every_metric_has_help_type_and_the_prefix():
    r = run_cli("metrics", "--interval", "0")
    assert r.returncode == 0, r.stderr
    fams = families(r.stdout)
    assert {"tcptune_info", "tcptune_sockets", "tcptune_last_run_success", "tcptune_sysctl_drift"} <= set(fams)
    helps = [line for line in r.stdout.splitlines() if line.startswith("# HELP ")]
    types = [line for line in r.stdout.splitlines() if line.startswith("# TYPE ")]
    assert len(helps) == len(types) == len(fams)
    for line in r.stdout.splitlines():
        if not line.startswith("#"):
            assert line.startswith("tcptune_") and len(line.rsplit(" ", 1)) == 2  # no timestamp
    states = {s.labels["state"] for s in fams["tcptune_sockets"].samples}
    assert states == {
        "established", "syn_sent", "syn_recv", "fin_wait1", "fin_wait2", "time_wait",
        "close", "close_wait", "last_ack", "listen", "closing",
    }  # fmt: skip


def test_help_and_type_lines_are_identical_on_every_run():
    def meta():
        return [line for line in run_cli("metrics", "--interval", "0").stdout.splitlines() if line.startswith("#")]

    assert meta() == meta()


def test_bad_input_is_refused_before_collecting():
    for args in (["--ports", "80,x"], ["--ports", "70000"], ["--profile", "no-such-profile"], ["--textfile", ""]):
        r = run_cli("metrics", *args)
        assert r.returncode == 2, (args, r.stderr)
        one_line_error(r)


def test_textfile_is_written_atomically_with_mode_0644(tmp_path):
    r = run_cli("metrics", "--interval", "0", "--textfile", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tcptune.prom"]  # no temp file left
    assert stat.S_IMODE((tmp_path / "tcptune.prom").stat().st_mode) == 0o644
    families((tmp_path / "tcptune.prom").read_text())


def _listen_and_export(tmpdir: str) -> None:
    code = (
        "import socket, subprocess, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0); port = s.getsockname()[1]\n"
        "cs = []\n"
        "for _ in range(4):\n"
        "    c = socket.socket(); c.setblocking(False); c.connect_ex(('127.0.0.1', port)); cs.append(c)\n"
        "time.sleep(0.3)\n"
        f"r = subprocess.run([sys.executable, '-m', 'tcptune', 'metrics', '--interval', '0.3', '--textfile', {tmpdir!r},"
        " '--ports', str(port)])\n"
        "print(port); sys.exit(r.returncode)\n"
    )
    return subprocess.run(netns_argv([sys.executable, "-c", code]), capture_output=True, text=True, timeout=60)


def test_a_full_listener_is_exported_with_its_queue_and_a_doctor_finding(tmp_path):
    r = _listen_and_export(str(tmp_path))
    assert r.returncode == 0, r.stderr
    port = r.stdout.strip()
    fams = families((tmp_path / "tcptune.prom").read_text())
    queue = {s.labels["port"]: s.value for s in fams["tcptune_listener_accept_queue"].samples}
    backlog = {s.labels["port"]: s.value for s in fams["tcptune_listener_backlog"].samples}
    assert list(queue) == [port] and queue[port] > backlog[port] == 0
    findings = {(s.labels["check"], s.labels["severity"]) for s in fams["tcptune_doctor_finding"].samples}
    assert ("accept-queue", "critical") in findings or ("accept-queue", "warning") in findings


def test_the_busiest_destinations_share_of_the_ephemeral_ports_is_one_unlabelled_series(tmp_path):
    code = (
        "import socket, subprocess, sys\n"
        "open('/proc/sys/net/ipv4/ip_local_port_range', 'w').write('40000 40009')\n"
        "open('/proc/sys/net/ipv4/ip_local_reserved_ports', 'w').write('40009')\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 5000)); s.listen(64)\n"
        "t = socket.socket(); t.bind(('127.0.0.1', 5001)); t.listen(64)\n"
        "cs = [socket.create_connection(('127.0.0.1', 5000)) for _ in range(6)]\n"
        "cs += [socket.create_connection(('127.0.0.1', 5001)) for _ in range(2)]\n"
        f"r = subprocess.run([sys.executable, '-m', 'tcptune', 'metrics', '--interval', '0', '--textfile', {str(tmp_path)!r}])\n"
        "sys.exit(r.returncode)\n"
    )
    r = subprocess.run(netns_argv([sys.executable, "-c", code]), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    fams = families((tmp_path / "tcptune.prom").read_text())
    values = {
        name: [(s.labels, s.value) for s in fams[f"tcptune_{name}"].samples]
        for name in ("ephemeral_port_use_ratio", "ephemeral_ports_in_use", "ephemeral_ports_usable")
    }
    # 6 of the 9 usable ports (40009 reserved) go to :5000, the busiest; :5001's 2 are not a series of their own
    assert values == {
        "ephemeral_port_use_ratio": [({}, pytest.approx(6 / 9))],
        "ephemeral_ports_in_use": [({}, 6)],
        "ephemeral_ports_usable": [({}, 9)],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_node_exporter_serves_the_series_without_a_scrape_error(tmp_path):
    assert run_cli("metrics", "--interval", "0", "--textfile", str(tmp_path)).returncode == 0
    port = _free_port()
    proc = subprocess.Popen(
        [
            tool("prometheus-node-exporter"),
            f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={tmp_path}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None, "node_exporter did not answer on 127.0.0.1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    fams = families(body)
    assert fams["node_textfile_scrape_error"].samples[0].value == 0
    assert "tcptune_sockets" in fams and "tcptune_info" in fams


def test_the_rules_pass_promtool_check_and_their_unit_tests():
    promtool = tool("promtool")
    check = subprocess.run([promtool, "check", "rules", "tcptune.rules.yml"], cwd=RULES, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool, "test", "rules", "tcptune.rules.test.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_every_alert_has_a_unit_test():
    rules = (RULES / "tcptune.rules.yml").read_text()
    tests = (RULES / "tcptune.rules.test.yml").read_text()
    alerts = [line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")]
    assert alerts and all(f"alertname: {a}" in tests for a in alerts)


def test_the_systemd_units_name_the_textfile_directory_consistently():
    service = (REPO / "contrib/systemd/tcptune-metrics.service").read_text()
    exec_line = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    directory = exec_line.split("--textfile ", 1)[1].split()[0]
    assert f"ReadWritePaths={directory}" in service
    assert "OnUnitActiveSec=1min" in (REPO / "contrib/systemd/tcptune-metrics.timer").read_text()
