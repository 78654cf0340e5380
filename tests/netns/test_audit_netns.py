"""Audit the kernel itself, inside private network namespaces: set values there, audit, see drift.

Nothing here writes a sysctl outside a namespace this test created.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nsutil import netns_argv, require_netns

PY = [sys.executable, "-m", "tcptune"]


def run_netns(script_pre: str, *args: str) -> subprocess.CompletedProcess:
    """Run `sysctl -w ...` then tcptune in one fresh namespace."""
    cmd = netns_argv(["sh", "-c", f'{script_pre} >/dev/null && exec "$@"', "sh", *PY, *args])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ, NO_COLOR="1"))


def test_fresh_namespace_matches_kernel_default_profile():
    r = run_netns("true", "audit", "--json")
    out = json.loads(r.stdout)
    drift = [f for f in out["findings"] if f["verdict"] == "drift"]
    assert r.returncode == 0 and not drift, drift


def test_values_set_in_namespace_show_as_drift():
    r = run_netns(
        "sysctl -w net.ipv4.tcp_syn_retries=3 net.ipv4.tcp_keepalive_time=600 net.ipv4.tcp_timestamps=0",
        "audit",
        "--json",
    )
    assert r.returncode == 1, r.stderr
    f = {x["key"]: x for x in json.loads(r.stdout)["findings"] if x["verdict"] != "ok"}
    assert f["net.ipv4.tcp_syn_retries"]["actual"] == 3 and f["net.ipv4.tcp_syn_retries"]["verdict"] == "drift"
    assert f["net.ipv4.tcp_keepalive_time"]["verdict"] == "drift"
    assert "net.ipv4.tcp_timestamps" in f


def test_profile_audit_in_namespace():
    ok = run_netns(
        "sysctl -w net.ipv4.tcp_syn_retries=2 net.ipv4.tcp_retries2=5", "audit", "-p", "fast-fail-client", "--json"
    )
    bad = run_netns("true", "audit", "-p", "fast-fail-client", "--json")
    assert bad.returncode == 1
    assert any(
        x["key"] == "net.ipv4.tcp_syn_retries" and x["verdict"] == "drift" for x in json.loads(bad.stdout)["findings"]
    )
    syn = [x for x in json.loads(ok.stdout)["findings"] if x["key"] == "net.ipv4.tcp_syn_retries"]
    assert syn and syn[0]["verdict"] == "ok"


@pytest.fixture
def ns_process():
    """A process sleeping in its own namespace with tcp_fin_timeout=17 there."""
    require_netns()
    p = subprocess.Popen(
        ["unshare", "-n", "--", "sh", "-c", "sysctl -qw net.ipv4.tcp_fin_timeout=17 && echo ready && exec sleep 60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == "ready"
    yield p
    p.kill()
    p.wait()


def test_netns_by_pid_and_path(ns_process):
    for spec in (str(ns_process.pid), f"/proc/{ns_process.pid}/ns/net"):
        r = subprocess.run([*PY, "audit", "--netns", spec, "--json"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        f = {x["key"]: x for x in json.loads(r.stdout)["findings"]}
        assert f["net.ipv4.tcp_fin_timeout"]["actual"] == 17
    # the host itself was not touched: its value is still whatever it was
    assert open("/proc/sys/net/ipv4/tcp_fin_timeout").read().strip() != "17"


def test_netns_source_is_labelled_with_the_namespace(ns_process):
    inode = os.stat(f"/proc/{ns_process.pid}/ns/net").st_ino
    r = subprocess.run(
        [*PY, "audit", "--netns", str(ns_process.pid), "--json"], capture_output=True, text=True, timeout=60
    )
    out = json.loads(r.stdout)
    assert out["source"] == f"network namespace {ns_process.pid} (net:[{inode}])", out["source"]
    table = subprocess.run(
        [*PY, "show", "fin_timeout", "--netns", str(ns_process.pid)], capture_output=True, text=True, timeout=60
    )
    assert f"net:[{inode}]" in table.stdout and "live host" not in table.stdout


def test_root_of_a_process_is_refused_with_the_netns_hint(ns_process):
    # /proc/PID/root/proc/sys/net shows the READER's namespace (17 is only inside ns_process),
    # so reading it would report the host's values under the container's name.
    r = subprocess.run(
        [*PY, "audit", "--root", f"/proc/{ns_process.pid}/root", "--json"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert "live procfs" in r.stderr and f"--netns {ns_process.pid}" in r.stderr


def test_netns_by_name():
    require_netns()
    name = f"tcptune-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.tcp_keepalive_probes=4"], check=True)
        r = subprocess.run(
            [*PY, "show", "keepalive_probes", "--netns", name, "--json"], capture_output=True, text=True, timeout=60
        )
        assert json.loads(r.stdout)["parameters"][0]["value"] == 4
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_netns_errors():
    require_netns()
    r = subprocess.run([*PY, "audit", "--netns", "no-such-ns-xyz"], capture_output=True, text=True)
    assert r.returncode == 2 and "/run/netns/no-such-ns-xyz does not exist" in r.stderr
    # root without CAP_SYS_ADMIN cannot setns: exit 3 and a clear line
    r = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps=-sys_admin", *PY, "audit", "--netns", "1"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 3 and "CAP_SYS_ADMIN" in r.stderr, r.stderr


def test_audit_persisted_against_a_sysctl_d_tree(tmp_path):
    etc = tmp_path / "etc/sysctl.d"
    etc.mkdir(parents=True)
    (etc / "50-site.conf").write_text("# site tuning\nnet.ipv4.tcp_fin_timeout = 20\nfs.protected_fifos = 1\n")
    (tmp_path / "usr/lib/sysctl.d").mkdir(parents=True)
    (tmp_path / "usr/lib/sysctl.d/10-vendor.conf").write_text("net.ipv4.tcp_fin_timeout = 45\n")
    # live value not yet what sysctl.d says; keepalive changed by hand and not persisted
    r = run_netns(
        "sysctl -w net.ipv4.tcp_keepalive_time=600", "audit", "--persisted", "--persist-root", str(tmp_path), "--json"
    )
    assert r.returncode == 1, r.stderr
    f = {x["key"]: x for x in json.loads(r.stdout)["findings"]}
    fin = f["net.ipv4.tcp_fin_timeout"]
    assert (fin["verdict"], fin["expected"], fin["actual"]) == ("drift", "20", 60)
    assert "50-site.conf:2" in fin["reason"]
    ka = f["net.ipv4.tcp_keepalive_time"]
    assert (ka["verdict"], ka["expected"], ka["actual"]) == ("drift", "7200", 600) and "kernel default" in ka["reason"]
    assert "fs.protected_fifos" not in f
    ok = run_netns(
        "sysctl -w net.ipv4.tcp_fin_timeout=20", "audit", "--persisted", "--persist-root", str(tmp_path), "--json"
    )
    assert ok.returncode == 0, ok.stdout
    assert json.loads(ok.stdout)["summary"]["drift"] == 0


def test_audit_persisted_names_the_boot_loader_and_where_the_two_disagree(tmp_path):
    # /etc/sysctl.conf without Debian's 99-sysctl.conf link: procps `sysctl --system`
    # reads it, systemd-sysctl does not (sysctl.d(5)).  The tree has no systemd, so
    # procps is the loader modelled, and the note says systemd would leave it alone.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/sysctl.conf").write_text("net.ipv4.tcp_fin_timeout = 33\n")
    r = run_netns("true", "audit", "--persisted", "--persist-root", str(tmp_path), "--json")
    notes = json.loads(r.stdout)["notes"]
    assert any(n.startswith("boot loader modelled: procps") for n in notes), notes
    assert any("net.ipv4.tcp_fin_timeout" in n and "leaves it alone" in n for n in notes), notes
    f = {x["key"]: x for x in json.loads(r.stdout)["findings"]}
    assert f["net.ipv4.tcp_fin_timeout"]["expected"] == "33"
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    r = run_netns("true", "audit", "--persisted", "--persist-root", str(tmp_path), "--json")
    out = json.loads(r.stdout)
    assert any(n.startswith("boot loader modelled: systemd") for n in out["notes"]), out["notes"]
    f = {x["key"]: x for x in out["findings"]}
    assert f["net.ipv4.tcp_fin_timeout"]["expected"] == "60"  # systemd ignores the file: kernel default


def test_audit_persisted_option_errors(tmp_path):
    r = subprocess.run([*PY, "audit", "--persisted", "-p", "web-server"], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot be combined" in r.stderr
    r = subprocess.run([*PY, "audit", "--persist-root", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "only goes with --persisted" in r.stderr


def test_persisted_audit_never_prints_the_fast_open_key(tmp_path):
    etc = tmp_path / "etc/sysctl.d"
    etc.mkdir(parents=True)
    (etc / "60-tfo.conf").write_text("net.ipv4.tcp_fastopen_key = 0badc0de-0badc0de-0badc0de-0badc0de\n")
    r = run_netns("true", "audit", "--persisted", "--persist-root", str(tmp_path), "--all", "--json")
    assert r.returncode in (0, 1), r.stderr
    assert "0badc0de" not in r.stdout and "tcp_fastopen_key" not in r.stdout


def _man_recipe() -> str:
    man = (Path(__file__).resolve().parents[2] / "man/tcptune.8").read_text()
    body = man.split('.\\" BEGIN snapshot-recipe\n', 1)[1].split('.\\" END snapshot-recipe', 1)[0]
    return body.replace("\\-", "-").replace("\\e", "\\")


def test_man_page_snapshot_recipe_gives_a_clean_audit(tmp_path):
    # The recipe from tcptune(8), run verbatim in a fresh namespace (reads only), then audited.
    snap = tmp_path / "snap"
    script = f"set -e\nDIR={snap}\n" + _man_recipe()
    r = subprocess.run(netns_argv(["sh", "-c", script]), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (snap / "proc/sys/kernel/osrelease").is_file() and (snap / "proc/net/tcp").is_file()
    assert not (snap / "proc/sys/net/ipv4/tcp_fastopen_key").exists()
    a = subprocess.run([*PY, "audit", "--root", str(snap), "--json"], capture_output=True, text=True, timeout=60)
    out = json.loads(a.stdout)
    assert a.returncode == 0, out["findings"]
    assert out["kernel"] and not [n for n in out["notes"] if "unknown" in n]
    assert out["summary"]["removed"] == 0 and out["summary"]["drift"] == 0
    s = subprocess.run([*PY, "states", "--root", str(snap), "--json"], capture_output=True, text=True, timeout=60)
    assert s.returncode == 0, s.stderr
