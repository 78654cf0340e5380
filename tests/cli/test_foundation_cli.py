"""show / explain / profiles / audit end to end, as a user runs them (a subprocess per call)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "data" / "root-fresh-netns-6.18"


def run(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, NO_COLOR="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "tcptune", *args], input=stdin, capture_output=True, text=True, env=e, timeout=60
    )


def test_show_lists_tcp_keys_with_defaults():
    r = run("show", "--root", str(ROOT), "--json")
    assert r.returncode == 0, r.stderr
    params = {p["key"]: p for p in json.loads(r.stdout)["parameters"]}
    assert len(params) >= 60
    syn = params["net.ipv4.tcp_syn_retries"]
    assert syn["value"] == 6 and syn["default"] == 6 and syn["differs"] is False and syn["unit"]
    assert "net.core.somaxconn" in params and "net.ipv4.ip_local_port_range" in params


def test_show_patterns_and_table():
    r = run("show", "--root", str(ROOT), "keepalive")
    assert r.returncode == 0
    assert "tcp_keepalive_time" in r.stdout and "tcp_syn_retries" not in r.stdout
    r = run("show", "--root", str(ROOT), "tcp_*mem", "--json")
    keys = [p["key"] for p in json.loads(r.stdout)["parameters"]]
    assert "net.ipv4.tcp_rmem" in keys and "net.ipv4.tcp_wmem" in keys and "net.ipv4.tcp_syn_retries" not in keys
    r = run("show", "--root", str(ROOT), "no_such_thing")
    assert r.returncode == 2 and "no parameter matches" in r.stderr


def test_explain_fin_timeout_is_not_time_wait():
    r = run("explain", "tcp_fin_timeout", "--root", str(ROOT), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert "FIN_WAIT2" in info["states"] and "TIME_WAIT" not in info["states"]
    assert info["current"] == 60 and info["unit"] and info["source"]
    text = run("explain", "tcp_fin_timeout", "--root", str(ROOT)).stdout
    assert "FIN_WAIT2" in text and "source" in text


def test_explain_unknown_key_suggests():
    r = run("explain", "tcp_keepalive_tme")
    assert r.returncode == 2 and "did you mean net.ipv4.tcp_keepalive_time" in r.stderr
    assert r.stderr.count("\n") == 1  # one line


def test_audit_fresh_defaults_is_clean():
    r = run("audit", "--root", str(ROOT), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["profile"] == "kernel-default" and out["summary"]["drift"] == 0
    assert out["summary"]["ok"] >= 40


def _drifted_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(ROOT, root)
    (root / "proc/sys/net/ipv4/tcp_syn_retries").write_text("2\n")
    (root / "proc/sys/net/ipv4/tcp_timestamps").write_text("0\n")
    return root


def test_audit_root_shows_drift_and_warning(tmp_path):
    r = run("audit", "--root", str(_drifted_root(tmp_path)), "--json")
    assert r.returncode == 1
    f = {x["key"]: x for x in json.loads(r.stdout)["findings"]}
    assert f["net.ipv4.tcp_syn_retries"]["verdict"] == "drift"
    assert f["net.ipv4.tcp_syn_retries"]["expected"] == "6" and f["net.ipv4.tcp_syn_retries"]["actual"] == 2
    assert f["net.ipv4.tcp_timestamps"]["verdict"] in ("drift", "warning")
    table = run("audit", "--root", str(_drifted_root(tmp_path / "b")))
    assert table.returncode == 1 and "drift" in table.stdout and "\x1b[" not in table.stdout


def test_audit_sysctl_dump_from_stdin(data_dir):
    dump = (
        (data_dir / "sysctl-a-host-6.18.txt")
        .read_text()
        .replace("net.ipv4.tcp_fin_timeout = 60", "net.ipv4.tcp_fin_timeout = 15")
    )
    r = run("audit", "--sysctl-dump", "-", "--json", stdin=dump)
    assert r.returncode == 1, r.stderr
    f = {x["key"]: x for x in json.loads(r.stdout)["findings"]}
    assert f["net.ipv4.tcp_fin_timeout"]["verdict"] == "drift"


def test_bad_dump_line_is_exit_2(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("net.ipv4.tcp_sack = 1\ngarbage line\n")
    r = run("audit", "--sysctl-dump", str(p))
    assert r.returncode == 2 and f"{p}:2:" in r.stderr and "garbage line" in r.stderr


def test_unreadable_root_and_conflicting_sources(tmp_path):
    r = run("audit", "--root", str(tmp_path))
    assert r.returncode == 2 and "proc/sys/net" in r.stderr
    r = run("audit", "--root", str(ROOT), "--sysctl-dump", "x")
    assert r.returncode == 2 and "cannot be combined" in r.stderr


def test_audit_against_a_bad_profile_is_exit_2_and_one_line(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[settings]\n"net.ipv4.tcp_keepalive_tim" = 60\n')
    r = run("audit", "--root", str(ROOT), "--profile", str(p))
    assert r.returncode == 2
    assert (
        r.stderr.startswith(f"tcptune: error: {p}:2: unknown key")
        and "did you mean net.ipv4.tcp_keepalive_time" in r.stderr
    )
    assert r.stdout == "" and r.stderr.count("\n") == 1
    tb = run("audit", "--root", str(ROOT), "--profile", str(p), "--traceback")
    assert "Traceback" in tb.stderr and tb.returncode == 2


def test_profiles_list_show_validate(repo_root):
    r = run("profiles", "list", "--json", env={"TCPTUNE_PROFILE_DIRS": ""})
    names = {p["name"] for p in json.loads(r.stdout)["profiles"]}
    assert {
        "kernel-default",
        "web-server",
        "fast-fail-client",
        "long-lived",
        "syn-flood-hardened",
        "high-throughput",
    } <= names
    r = run("profiles", "show", "fast-fail-client", "--root", str(ROOT), "--json")
    assert r.returncode == 0, r.stderr
    assert any(s["key"] == "net.ipv4.tcp_syn_retries" for s in json.loads(r.stdout)["settings"])
    r = run("profiles", "validate", *sorted(str(p) for p in (repo_root / "profiles").glob("*.toml")))
    assert r.returncode == 0, r.stderr


def test_user_profile_dir_shadows_builtin(tmp_path):
    (tmp_path / "web-server.toml").write_text('description = "mine"\n[settings]\n"net.ipv4.tcp_fin_timeout" = 30\n')
    r = run(
        "profiles", "show", "web-server", "--root", str(ROOT), "--json", env={"TCPTUNE_PROFILE_DIRS": str(tmp_path)}
    )
    assert json.loads(r.stdout)["description"] == "mine"


def test_help_teaches():
    r = run("audit", "--help")
    assert r.returncode == 0 and "drift" in r.stdout and "--sysctl-dump" in r.stdout
    assert run("--version").stdout.startswith("tcptune ")


def test_dump_must_be_utf8_and_small(tmp_path):
    p = tmp_path / "bin.txt"
    p.write_bytes(b"net.ipv4.tcp_sack = \xff\xfe\n")
    r = run("audit", "--sysctl-dump", str(p))
    assert r.returncode == 2 and "not UTF-8" in r.stderr
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:
        fh.write(b"net.ipv4.tcp_sack = 1\n" * (800_000))
    r = run("audit", "--sysctl-dump", str(big))
    assert r.returncode == 2 and "larger than 16 MiB" in r.stderr


def test_profile_file_must_be_utf8(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes(b'description = "caf\xe9"\n[settings]\n"net.ipv4.tcp_sack" = 1\n')
    r = run("profiles", "validate", str(p))
    assert r.returncode == 2 and f"{p}:1: not UTF-8" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "--netns", ""),
        ("audit", "--netns", "  "),
        ("audit", "--sysctl-dump", ""),
        ("audit", "-p", ""),
        ("audit", "--profile", ""),
        ("audit", "--root", ""),
        ("show", "--root", ""),
        ("explain", "tcp_sack", "--netns", ""),
        ("profiles", "show", "web-server", "--sysctl-dump", ""),
        ("apply", "web-server", "--netns", "", "--dry-run"),
        ("apply", "web-server", "--root", "", "--dry-run"),
        ("apply", "", "--dry-run"),
    ],
)
def test_empty_source_or_profile_is_refused_not_the_live_host(args):
    # `--netns "$(pidof -s not-running)"` must never fall back to the live host (for apply
    # with --yes that would write it): exit 2, one line, nothing on stdout.
    r = run(*args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert "empty" in r.stderr


def test_root_with_a_mounted_proc_is_refused(tmp_path):
    # A copied snapshot has no proc/self; a live procfs does, and would show tcptune's own netns.
    root = tmp_path / "root"
    shutil.copytree(ROOT, root)
    (root / "proc/self").symlink_to("1")
    r = run("audit", "--root", str(root))
    assert r.returncode == 2 and "live procfs" in r.stderr and "--netns PID" in r.stderr
    assert run("audit", "--root", "/").returncode in (0, 1)  # the host itself, spelt out, is fine


def test_root_spellings_of_the_host_itself_are_the_live_host(tmp_path):
    (tmp_path / "to-root").symlink_to("/")
    for spelling in ("//", str(tmp_path / "to-root"), "/proc/self/root"):
        r = run("show", "tcp_sack", "--root", spelling, "--json")
        assert r.returncode == 0, (spelling, r.stderr)
        assert json.loads(r.stdout)["source"] == "live host", spelling


def test_unreadable_root_is_exit_3_not_a_crash(tmp_path):
    # A directory we may not search (as /proc/1/root of a process in another user
    # namespace is): root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH is refused too.
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and util-linux setpriv to drop the DAC capabilities")
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0)
    drop = "-dac_override,-dac_read_search"
    try:
        r = subprocess.run(
            [
                "setpriv",
                f"--bounding-set={drop}",
                f"--inh-caps={drop}",
                sys.executable,
                "-m",
                "tcptune",
                "show",
                "--root",
                str(locked / "inner"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        locked.chmod(0o700)
    assert r.returncode == 3 and "permission denied" in r.stderr, r.stderr


def test_snapshot_without_osrelease_notes_it_and_calls_nothing_removed(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(ROOT, root)
    (root / "proc/sys/kernel/osrelease").unlink()
    r = run("audit", "--root", str(root), "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0, out
    assert out["summary"]["removed"] == 0 and not any(f["key"].endswith("tcp_tw_recycle") for f in out["findings"])
    assert any("kernel version unknown" in n for n in out["notes"])
    assert "kernel version unknown" in run("audit", "--root", str(root)).stdout
    assert any(
        "kernel version unknown" in n for n in json.loads(run("show", "--root", str(root), "--json").stdout)["notes"]
    )


def test_source_without_tcp_keys_is_exit_2(tmp_path):
    (tmp_path / "proc/sys/net/ipv4").mkdir(parents=True)
    for cmd in ("audit", "show"):
        r = run(cmd, "--root", str(tmp_path))
        assert r.returncode == 2 and "no net.ipv4.tcp_* keys" in r.stderr, r.stdout + r.stderr
    dump = tmp_path / "d.txt"
    dump.write_text("kernel.osrelease = 6.18.0\nnet.core.somaxconn = 4096\n")
    assert run("audit", "--sysctl-dump", str(dump)).returncode == 2


def test_dump_without_a_global_key_says_so_and_kernel_default_skips_it(data_dir):
    dump = "\n".join(
        line
        for line in (data_dir / "sysctl-a-host-6.18.txt").read_text().splitlines()
        if "netdev_max_backlog" not in line
    )
    out = json.loads(run("audit", "--sysctl-dump", "-", "--json", stdin=dump).stdout)
    assert not any(f["key"] == "net.core.netdev_max_backlog" for f in out["findings"])
    assert any("netdev_max_backlog" in n for n in out["notes"])
    ws = json.loads(run("audit", "--sysctl-dump", "-", "-p", "web-server", "--json", stdin=dump).stdout)
    f = {x["key"]: x for x in ws["findings"]}["net.core.netdev_max_backlog"]
    assert f["verdict"] == "unsupported" and "dump" in f["reason"] and "another namespace" not in f["reason"]


def test_risky_drift_has_a_machine_readable_flag(tmp_path):
    out = json.loads(run("audit", "--root", str(_drifted_root(tmp_path)), "--json").stdout)
    f = {x["key"]: x for x in out["findings"]}
    ts = f["net.ipv4.tcp_timestamps"]
    assert ts["verdict"] == "drift" and ts["risky"] is True and "TIME_WAIT" in ts["risky_reason"]
    assert f["net.ipv4.tcp_syn_retries"]["risky"] is False and f["net.ipv4.tcp_syn_retries"]["risky_reason"] is None


@pytest.mark.parametrize("value,color", [(None, True), ("", True), ("1", False), ("0", False)])
def test_no_color_means_present_and_not_empty(value, color):
    import io

    from tcptune.render.output import Output

    class Tty(io.StringIO):
        def isatty(self):
            return True

    env = {} if value is None else {"NO_COLOR": value}
    assert Output.detect(Tty(), env).color is color
