"""The real `tcptune apply|rollback` commands on every built-in profile, each in a fresh network namespace.

run_in_netns forks a child that unshares a network namespace; the tcptune
subprocesses it starts inherit that namespace, so every write stays in it.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest
from nsutil import netns_argv, require_netns, run_in_netns

from tcptune.host.profile_files import list_profiles
from tcptune.host.source import Host
from tcptune.values import json_value

BUILTINS = sorted({p.name for p in list_profiles(search_dirs=[]) if p.kind == "built-in"})


def tcptune(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TCPTUNE_PROFILE_DIRS": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tcptune", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=e,
        stdin=subprocess.DEVNULL,
    )


def all_values() -> dict[str, str | None]:
    host = Host("/")
    return host.read_sysctls(host.list_sysctls())


@pytest.fixture(autouse=True)
def _netns():
    require_netns()


def test_there_are_builtin_profiles():
    assert len(BUILTINS) >= 3, BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_apply_builtin_then_audit_clean_then_rollback_exact(name, tmp_path):
    state = str(tmp_path / "state")

    def body():
        before = all_values()
        ap = tcptune("apply", name, "--yes", "--json", "--state-dir", state)
        mid = all_values()
        au = tcptune("audit", "-p", name, "--json")
        again = tcptune("apply", name, "--yes", "--json", "--state-dir", state)
        rb = tcptune("rollback", "--json", "--state-dir", state)
        return before, ap, mid, au, again, rb, all_values()

    before, ap, mid, au, again, rb, after = run_in_netns(body)
    assert ap.returncode == 0, ap.stderr
    applied = json.loads(ap.stdout)
    skipped = {s["key"] for s in applied["skipped"]}
    for c in applied["changes"]:
        if c["key"] not in skipped:
            assert json_value(mid[c["key"]]) == c["new"], c
    # audit after apply: nothing drifts, except keys apply had to skip (global keys are
    # read-only inside a network namespace; keys this kernel lacks).
    findings = json.loads(au.stdout)["findings"]
    drift = {f["key"] for f in findings if f["verdict"] == "drift"}
    assert drift <= skipped, (drift, skipped)
    # applying again changes nothing and writes no snapshot
    assert again.returncode == 0 and json.loads(again.stdout)["result"] == "nothing-to-do"
    if applied["snapshot"] is None:
        assert rb.returncode == 2  # nothing was ever snapshotted
    else:
        assert rb.returncode == 0, rb.stderr
        assert json.loads(rb.stdout)["snapshot"] == applied["snapshot"]
    assert after == before  # every key, compared one by one


def _wait_for(stream, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            line = stream.readline()
            seen += line
            if needle in line or not line:
                return seen
    return seen


def test_sigkilled_tcptune_apply_is_undone_by_rollback(tmp_path):
    state = str(tmp_path / "state")

    def body():
        before = all_values()
        env = {**os.environ, "TCPTUNE_TEST_PAUSE_AFTER_WRITES": "1", "TCPTUNE_PROFILE_DIRS": ""}
        p = subprocess.Popen(
            [sys.executable, "-m", "tcptune", "apply", "fast-fail-client", "--yes", "--state-dir", state],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            preexec_fn=_default_signals,
        )
        seen = _wait_for(p.stderr, "paused after 1 writes")
        p.send_signal(signal.SIGKILL)
        p.wait()
        mid = all_values()
        listing = tcptune("snapshots", "--json", "--state-dir", state)
        rb = tcptune("rollback", "--state-dir", state)
        return seen, before, mid, listing, rb, all_values()

    seen, before, mid, listing, rb, after = run_in_netns(body)
    assert "paused after 1 writes" in seen
    assert sum(mid[k] != before[k] for k in before) == 1  # killed after exactly one write
    (snap,) = json.loads(listing.stdout)["snapshots"]
    assert snap["status"] == "pending"
    assert rb.returncode == 0, rb.stderr
    assert "1 key(s) restored" in rb.stdout
    assert after == before


PRECEDENCE = {
    # a later file name in /etc overrides tcptune's 90-tcptune.conf
    "etc/sysctl.d/95-admin.conf": "net.ipv4.tcp_keepalive_time = 300\n",
    # /usr/lib loses only to a same-named file: 99-vendor sorts after 90-tcptune and wins ...
    "usr/lib/sysctl.d/99-vendor.conf": "net.ipv4.tcp_keepalive_intvl = 60\n",
    # ... while 50-default sorts before it and does not
    "usr/lib/sysctl.d/50-default.conf": "net.ipv4.tcp_keepalive_probes = 9\n",
    # /etc/sysctl.conf is read last of all
    "etc/sysctl.conf": "net.ipv4.tcp_retries2 = 15\n",
}


def test_persist_precedence_warnings_and_sysctl_p_loads_the_file(tmp_path):
    tree = tmp_path / "tree"
    for rel, text in PRECEDENCE.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    state = str(tmp_path / "state")
    own = tree / "etc/sysctl.d/90-tcptune.conf"

    def dry_run():
        r = tcptune("apply", "long-lived", "--dry-run", "--persist", "--persist-root", str(tree), "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["persist"]["would_write"]

    def body():
        before = all_values()
        would_before = dry_run()
        ap = tcptune(
            "apply", "long-lived", "--yes", "--persist", "--persist-root", str(tree), "--json", "--state-dir", state
        )
        would_after = dry_run()
        live = all_values()
        text = own.read_text() if own.exists() else None
        rb = tcptune("rollback", "--state-dir", state)
        return before, ap, live, text, rb, own.exists(), all_values(), (would_before, would_after)

    before, ap, live, text, rb, exists_after, after, would = run_in_netns(body)
    assert ap.returncode == 0, ap.stderr
    # The dry run says a real run writes the file, until the file holds what it would write.
    assert would == (True, False)
    out = json.loads(ap.stdout)
    persist = out["persist"]
    assert persist["written"] is True and text is not None
    profile_keys = [c["key"] for c in out["changes"] if c["status"] != "missing"]
    overridden = {o["key"]: o["winner"]["path"] for o in persist["overrides"]}
    expected = {}
    if "net.ipv4.tcp_keepalive_time" in profile_keys:
        expected["net.ipv4.tcp_keepalive_time"] = "/etc/sysctl.d/95-admin.conf"
    if "net.ipv4.tcp_keepalive_intvl" in profile_keys:
        expected["net.ipv4.tcp_keepalive_intvl"] = "/usr/lib/sysctl.d/99-vendor.conf"
    if "net.ipv4.tcp_retries2" in profile_keys:
        expected["net.ipv4.tcp_retries2"] = "/etc/sysctl.conf"
    assert expected, "long-lived should set keepalive keys"
    assert overridden == expected
    if "net.ipv4.tcp_keepalive_probes" in profile_keys:
        assert persist["boot_values"]["net.ipv4.tcp_keepalive_probes"]["path"] == "/etc/sysctl.d/90-tcptune.conf"
    for key in expected:
        assert f"warning: {key}: at boot" in ap.stderr
    assert os.stat(own.parent).st_mode & 0o777 == 0o755

    # `sysctl -p` of the written file in a brand-new namespace gives the profile's values.
    snapshot_file = tmp_path / "written.conf"
    snapshot_file.write_text(text)

    def load():
        r = subprocess.run(["sysctl", "-p", str(snapshot_file)], capture_output=True, text=True)
        return r.returncode, r.stderr, {k: Host("/").read_sysctl(k) for k in profile_keys}

    rc, err, loaded = run_in_netns(load)
    assert rc == 0, err
    want = {c["key"]: c["new"] for c in out["changes"] if c["status"] != "missing"}  # typed JSON values
    assert {k: json_value(v) for k, v in loaded.items()} == want
    assert {k: json_value(live[k]) for k in want} == want

    # rollback restored the live values and removed the file (there was none before)
    assert rb.returncode == 0, rb.stderr
    assert after == before and not exists_after


def test_read_only_proc_sys_is_exit_3_naming_the_mount(tmp_path):
    # A private mount namespace with /proc/sys remounted read-only, as container runtimes do.
    script = (
        "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
        f"exec {sys.executable} -m tcptune apply fast-fail-client --yes --state-dir {tmp_path / 's'}"
    )
    argv = netns_argv(["unshare", "-m", "sh", "-c", script])
    r = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "TCPTUNE_PROFILE_DIRS": ""},
    )
    assert r.returncode == 3, r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert "read-only mount /proc/sys" in err and "nothing was changed" in err
    assert not (tmp_path / "s").exists()


def test_not_root_is_exit_3_with_the_fix(tmp_path):
    def body():
        from tcptune.errors import TcptuneError
        from tcptune.host.privileges import check_can_write

        host = Host("/")
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)  # drops every capability too
        try:
            check_can_write(host, "net.ipv4.tcp_syn_retries")
        except TcptuneError as exc:
            return exc.exit_code, str(exc)
        return 0, "allowed"

    code, msg = run_in_netns(body)
    assert code == 3 and "run as root or use --dry-run" in msg


@pytest.mark.parametrize("answer,applied", [("y", True), ("n", False)])
def test_confirmation_on_a_terminal(tmp_path, answer, applied):
    import pty

    state = str(tmp_path / "state")

    def body():
        before = all_values()
        master, slave = pty.openpty()
        p = subprocess.Popen(
            [sys.executable, "-m", "tcptune", "apply", "fast-fail-client", "--state-dir", state],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TCPTUNE_PROFILE_DIRS": "", "NO_COLOR": "1"},
        )
        os.close(slave)
        deadline = time.monotonic() + 20
        prompt = ""
        while "[y/N]" not in prompt and time.monotonic() < deadline:
            if select.select([p.stderr], [], [], 0.2)[0]:
                prompt += os.read(p.stderr.fileno(), 4096).decode()
        os.write(master, f"{answer}\n".encode())
        out, err = p.communicate(timeout=30)
        os.close(master)
        mid = all_values()
        tcptune("rollback", "--state-dir", state)
        return prompt, p.returncode, out, err, before, mid

    prompt, rc, out, err, before, mid = run_in_netns(body)
    # inside the test's own namespace the target is named by it, never "live host"
    target = r"network namespace net:\[\d+\]"
    assert re.search(rf"Apply profile fast-fail-client: change \d+ sysctl\(s\) on {target}\? \[y/N\]", prompt), prompt
    if applied:
        assert rc == 0 and "undo with: tcptune rollback" in out
        assert mid["net.ipv4.tcp_syn_retries"] == "2"
    else:
        assert rc == 2 and "not confirmed; nothing was changed" in err
        assert mid == before


def test_ctrl_c_mid_apply_puts_everything_back(tmp_path):
    state = str(tmp_path / "state")

    def body():
        before = all_values()
        env = {**os.environ, "TCPTUNE_TEST_PAUSE_AFTER_WRITES": "1", "TCPTUNE_PROFILE_DIRS": ""}
        p = subprocess.Popen(
            [sys.executable, "-m", "tcptune", "apply", "fast-fail-client", "--yes", "--state-dir", state],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            preexec_fn=_default_signals,
        )
        seen = _wait_for(p.stderr, "paused after 1 writes")
        mid = all_values()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        listing = tcptune("snapshots", "--json", "--state-dir", state)
        return seen, before, mid, p.returncode, err, all_values(), listing

    seen, before, mid, rc, err, after, listing = run_in_netns(body)
    assert "paused after 1 writes" in seen and mid != before
    assert rc == 130, err
    assert after == before
    (snap,) = json.loads(listing.stdout)["snapshots"]
    assert snap["status"] == "failed"


def _paused_apply(state: str, after: int, seconds: str = "60", profile: str = "fast-fail-client") -> subprocess.Popen:
    env = {
        **os.environ,
        "TCPTUNE_TEST_PAUSE_AFTER_WRITES": str(after),
        "TCPTUNE_TEST_PAUSE_SECONDS": seconds,
        "TCPTUNE_PROFILE_DIRS": "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tcptune", "apply", profile, "--yes", "--state-dir", state],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        # the signals as a login shell's child gets them: a suite started under nohup (SIGHUP
        # ignored, which apply rightly keeps ignored) must not turn the SIGHUP case into a hang
        preexec_fn=_default_signals,
    )


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_mid_apply_puts_everything_back(tmp_path, sig):
    # systemd stopping a unit sends SIGTERM, a dropped ssh session SIGHUP: both used to kill
    # apply half-way (exit 128+sig, snapshot pending, host half-tuned, nothing said).
    state = str(tmp_path / "state")

    def body():
        before = all_values()
        p = _paused_apply(state, 1)
        seen = _wait_for(p.stderr, "paused after 1 writes")
        mid = all_values()
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
        listing = tcptune("snapshots", "--json", "--state-dir", state)
        return seen, before, mid, p.returncode, err, all_values(), listing

    seen, before, mid, rc, err, after, listing = run_in_netns(body)
    assert "paused after 1 writes" in seen and mid != before
    assert rc == 128 + sig, err
    assert after == before
    last = err.strip().splitlines()[-1]
    assert (
        f"interrupted by {sig.name}" in last and "restored the 1 key(s) already written, the host is as before" in last
    )
    (snap,) = json.loads(listing.stdout)["snapshots"]
    assert snap["status"] == "failed"


def test_apply_warns_about_an_unfinished_snapshot_of_the_same_target(tmp_path):
    state = str(tmp_path / "state")

    def body():
        before = all_values()
        p = _paused_apply(state, 1)
        _wait_for(p.stderr, "paused after 1 writes")
        p.send_signal(signal.SIGKILL)
        p.wait()
        sid = json.loads(tcptune("snapshots", "--json", "--state-dir", state).stdout)["snapshots"][0]["id"]
        again = tcptune("apply", "web-server", "--yes", "--json", "--state-dir", state)
        rb_new = tcptune("rollback", json.loads(again.stdout)["snapshot"], "--state-dir", state)
        rb_old = tcptune("rollback", sid, "--state-dir", state)
        return sid, before, again, rb_new, rb_old, all_values()

    sid, before, again, rb_new, rb_old, after = run_in_netns(body)
    assert again.returncode == 0, again.stderr
    assert (
        f"warning: snapshot {sid} (fast-fail-client, " in again.stderr and f"`tcptune rollback {sid}`" in again.stderr
    )
    assert "is pending" in again.stderr
    assert any(sid in w for w in json.loads(again.stdout)["warnings"])
    assert rb_new.returncode == 0 and rb_old.returncode == 0, rb_old.stderr
    assert after == before


def test_a_full_disk_at_the_final_save_says_the_values_are_applied_and_how_to_undo(tmp_path):
    # The snapshot is saved (pending) before the first write; if marking it "applied" at the
    # end fails, every key IS applied and that pending snapshot is a valid undo: say so, exit 1.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)

    def body():
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS: the tmpfs below is visible to this child only
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        subprocess.run(["mount", "--make-rprivate", "/"], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(state)], check=True)
        before = all_values()
        p = _paused_apply(str(state), 2, seconds="2")
        _wait_for(p.stderr, "paused after 2 writes")
        with open(state / "filler", "wb") as fh:  # fill the disk while apply sleeps
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        out, err = p.communicate(timeout=30)
        applied = all_values()
        os.unlink(state / "filler")
        listing = tcptune("snapshots", "--json", "--state-dir", str(state))
        (snap,) = json.loads(listing.stdout)["snapshots"]
        rb = tcptune("rollback", snap["id"], "--state-dir", str(state))
        return before, p.returncode, err, applied, snap, rb, all_values()

    before, rc, err, applied, snap, rb, after = run_in_netns(body)
    assert rc == 1, err
    last = err.strip().splitlines()[-1]
    assert "all 2 key(s) ARE applied" in last and "No space left on device" in last
    assert f"tcptune rollback {snap['id']}" in last
    assert applied != before and applied["net.ipv4.tcp_syn_retries"] == "2"
    assert snap["status"] == "pending"
    assert rb.returncode == 0, rb.stderr
    assert after == before
