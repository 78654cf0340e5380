"""apply / rollback / snapshots on the command line, without writing any sysctl.

These run against a copy of a saved root (tests/data/root-fresh-netns-6.18) or
stop before writing (dry run, no confirmation, bad input); the tests that
really write live in tests/netns/test_apply_*.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from tcptune.cli import app

ROOT_DATA = Path(__file__).resolve().parent.parent / "data/root-fresh-netns-6.18"


def run(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tcptune", *args],
        capture_output=True,
        text=True,
        env=e,
        input=stdin if stdin is not None else "",
        timeout=60,
    )


@pytest.fixture
def root(tmp_path) -> Path:
    dst = tmp_path / "root"
    shutil.copytree(ROOT_DATA, dst)
    return dst


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_apply_option_is_in_the_man_page(repo_root):
    man = (repo_root / "man/tcptune.8").read_text()
    man = re.sub(r"\\f[BIRP]|\\&", "", man).replace("\\-", "-")
    section = man[man.index('.\\" BEGIN apply') : man.index('.\\" END apply')]
    group = typer.main.get_command(app)
    missing = []
    for name in ("apply", "rollback", "snapshots"):
        cmd = group.commands[name]
        if not re.search(rf"^\.SS \"tcptune {name}\b", section, re.M):
            missing.append(f"section for tcptune {name}")
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in section:
                    missing.append(f"{opt} of tcptune {name}")
    assert not missing, missing


def test_dry_run_prints_the_plan_changes_nothing_and_exits_0(root, tmp_path):
    before = tree_bytes(root)
    r = run("apply", "fast-fail-client", "--dry-run", "--root", str(root), "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 0, r.stderr
    assert "net.ipv4.tcp_syn_retries" in r.stdout and "change" in r.stdout
    assert re.search(r"net\.ipv4\.tcp_syn_retries\s+6\s+2\s+change", r.stdout)
    assert "dry run: nothing was changed" in r.stdout
    assert tree_bytes(root) == before and not (tmp_path / "state").exists()

    j = run("apply", "fast-fail-client", "--dry-run", "--json", "--root", str(root))
    data = json.loads(j.stdout)
    assert j.returncode == 0
    assert set(data) == {
        "profile",
        "profile_origin",
        "target",
        "dry_run",
        "result",
        "changes",
        "summary",
        "snapshot",
        "undo",
        "written",
        "skipped",
        "persist",
        "notes",
        "warnings",
    }
    assert data["result"] == "dry-run" and data["snapshot"] is None and data["dry_run"] is True
    syn = next(c for c in data["changes"] if c["key"] == "net.ipv4.tcp_syn_retries")
    assert syn == {
        "key": "net.ipv4.tcp_syn_retries",
        "current": 6,
        "new": 2,
        "reason": syn["reason"],
        "status": "change",
        "required": False,
    }
    assert data["summary"]["change"] >= 1


def test_without_a_terminal_and_without_yes_it_refuses(root, tmp_path):
    before = tree_bytes(root)
    r = run("apply", "fast-fail-client", "--root", str(root), "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "not a terminal" in err[0] and "--yes" in err[0]
    assert tree_bytes(root) == before and not (tmp_path / "state").exists()


def test_bad_profile_and_bad_options_are_exit_2(root):
    r = run("apply", "no-such-profile", "--root", str(root), "--dry-run")
    assert r.returncode == 2 and "no-such-profile" in r.stderr
    r = run("apply", "web-server", "--persist", "--netns", "1", "--yes")
    assert r.returncode == 2 and "--persist-root" in r.stderr
    r = run("apply", "web-server", "--root", str(root), "--persist-file", "relative.conf", "--dry-run")
    assert r.returncode == 2 and "absolute" in r.stderr
    r = run("apply", "web-server", "--sysctl-dump", "x")
    assert r.returncode == 2  # not an option of apply: a dump cannot be written


def test_persist_dry_run_reports_boot_overrides_and_writes_nothing(root, tmp_path):
    tree = tmp_path / "sys"
    (tree / "usr/lib/sysctl.d").mkdir(parents=True)
    (tree / "etc/sysctl.d").mkdir(parents=True)
    (tree / "usr/lib/sysctl.d/99-vendor.conf").write_text("net.ipv4.tcp_syn_retries = 5\n")
    (tree / "etc/sysctl.d/10-early.conf").write_text("net.ipv4.tcp_retries2 = 12\n")
    (tree / "etc/sysctl.conf").write_text("# local\nnet.ipv4.tcp_retries2 = 7\n")
    before = tree_bytes(tree)
    r = run(
        "apply",
        "fast-fail-client",
        "--dry-run",
        "--persist",
        "--persist-root",
        str(tree),
        "--root",
        str(root),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)["persist"]
    assert p["written"] is False and p["path"] == "/etc/sysctl.d/90-tcptune.conf"
    winners = {o["key"]: (o["winner"]["path"], o["winner"]["line"], o["winner"]["value"]) for o in p["overrides"]}
    assert winners == {
        "net.ipv4.tcp_syn_retries": ("/usr/lib/sysctl.d/99-vendor.conf", 1, 5),
        "net.ipv4.tcp_retries2": ("/etc/sysctl.conf", 2, 7),
    }
    assert p["boot_values"]["net.ipv4.tcp_syn_linear_timeouts"]["path"] == "/etc/sysctl.d/90-tcptune.conf"
    assert tree_bytes(tree) == before
    text = run("apply", "fast-fail-client", "--dry-run", "--persist", "--persist-root", str(tree), "--root", str(root))
    assert (
        "warning: net.ipv4.tcp_syn_retries: at boot /usr/lib/sysctl.d/99-vendor.conf:1 sets 5, overriding tcptune's 2"
        in text.stderr
    )


def test_snapshots_and_rollback_with_an_empty_state_dir(tmp_path, root):
    state = tmp_path / "state"
    r = run("snapshots", "--state-dir", str(state))
    assert r.returncode == 0 and "no snapshots" in r.stdout
    r = run("snapshots", "--json", env={"TCPTUNE_STATE_DIR": str(state)})
    assert json.loads(r.stdout) == {"state_dir": str(state), "snapshots": []}
    r = run("rollback", "--root", str(root), "--state-dir", str(state))
    assert r.returncode == 2 and "no snapshots" in r.stderr
    r = run("rollback", "--dry-run", "20260101T000000Z-000000", "--root", str(root), "--state-dir", str(state))
    assert r.returncode == 2 and "unknown snapshot" in r.stderr


def apply_root(root: Path, state: Path, *extra: str) -> subprocess.CompletedProcess:
    return run("apply", "fast-fail-client", "--yes", "--root", str(root), "--state-dir", str(state), *extra)


def test_an_existing_state_dir_is_never_chmodded_and_a_new_one_is_0700(root, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    r = apply_root(root, shared)
    assert r.returncode == 0, r.stderr
    assert os.stat(shared).st_mode & 0o7777 == 0o755  # used, not "fixed"
    assert os.stat(shared / "snapshots").st_mode & 0o777 == 0o700
    new = tmp_path / "a/b/state"
    r = run("rollback", "--root", str(root), "--state-dir", str(shared))
    assert r.returncode == 0, r.stderr
    r = apply_root(root, new)
    assert r.returncode == 0, r.stderr
    assert os.stat(new).st_mode & 0o777 == 0o700 and os.stat(new / "snapshots").st_mode & 0o777 == 0o700
    assert os.stat(new / "lock").st_mode & 0o777 == 0o600


@pytest.mark.parametrize("how", ["world-writable", "group-writable", "other-owner"])
def test_a_state_dir_others_can_write_is_refused_and_left_alone(root, tmp_path, how):
    # --state-dir /tmp used to chmod /tmp to 0700; any state dir another user can write
    # lets that user tell rollback what to write as root.
    state = tmp_path / "tmpish"
    state.mkdir()
    mode = {"world-writable": 0o1777, "group-writable": 0o770, "other-owner": 0o700}[how]
    os.chmod(state, mode)
    if how == "other-owner":
        os.chown(state, 65534, 65534)
    before = tree_bytes(root)
    for args in (
        ("apply", "fast-fail-client", "--yes", "--root", str(root)),
        ("snapshots",),
        ("rollback", "--root", str(root)),
    ):
        r = run(*args, "--state-dir", str(state))
        assert r.returncode == 2, (args, r.stderr)
        err = r.stderr.strip().splitlines()
        assert (
            len(err) == 1
            and f"state directory {state} is" in err[0]
            and "refusing" in err[0]
            and "--state-dir" in err[0]
        )
    assert os.stat(state).st_mode & 0o7777 == mode and os.listdir(state) == []
    assert tree_bytes(root) == before


def test_symlinks_in_the_state_dir_are_never_followed(root, tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, state / "lock")  # the lock used to be opened with O_CREAT, then truncated
    r = apply_root(root, state)
    assert r.returncode == 2 and "lock is a symlink" in r.stderr, r.stderr
    assert victim.read_text() == "precious\n"
    os.unlink(state / "lock")
    r = apply_root(root, state, "--json")
    assert r.returncode == 0, r.stderr
    sid = json.loads(r.stdout)["snapshot"]
    snap = state / "snapshots" / f"{sid}.json"
    os.rename(snap, tmp_path / "real.json")
    os.symlink(tmp_path / "real.json", snap)
    r = run("rollback", sid, "--root", str(root), "--state-dir", str(state))
    assert r.returncode == 2 and "corrupt (a symlink" in r.stderr, r.stderr


def test_stale_temp_files_of_a_killed_apply_are_cleaned_under_the_lock(root, tmp_path):
    state = tmp_path / "state"
    (state / "snapshots").mkdir(parents=True, mode=0o700)
    os.chmod(state, 0o700)
    gone = _dead_pid()
    stale = state / f"snapshots/.20260101T000000Z-abcdef.json.tcptune-{gone}.tmp"
    stale.write_text("{half a snap")
    live = state / f"snapshots/.20260101T000000Z-abcdee.json.tcptune-{os.getpid()}.tmp"  # its writer runs
    live.write_text("{being written")
    other = state / "snapshots/notes.txt"  # not ours: kept
    other.write_text("x")
    r = apply_root(root, state)
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and live.exists() and other.exists()


def _dead_pid() -> int:
    """The pid of a process that has exited (a temp file's writer that was killed)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def persist_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "sys"
    (tree / "etc/sysctl.d").mkdir(parents=True)
    return tree


def test_an_edited_persist_record_cannot_make_rollback_touch_other_files(root, tmp_path):
    tree, state = persist_tree(tmp_path), tmp_path / "state"
    r = apply_root(root, state, "--persist", "--persist-root", str(tree), "--json")
    assert r.returncode == 0, r.stderr
    sid = json.loads(r.stdout)["snapshot"]
    snap_path = state / "snapshots" / f"{sid}.json"
    good = json.loads(snap_path.read_text())
    (tmp_path / "x").mkdir()
    victim = tmp_path / "x/victim2"
    victim.write_text("keep me\n")
    before = tree_bytes(root)
    for bad in (
        {"root": str(tmp_path / "x"), "path": "/victim2", "before": None, "after": "y"},
        {"root": "/", "path": "/etc/sysctl.d/../../" + str(victim).lstrip("/"), "before": None, "after": "y"},
        {"root": str(tmp_path / "x"), "path": "/etc/sysctl.conf", "before": None, "after": "y"},
        {"root": "relative/dir", "path": "/etc/sysctl.d/90-tcptune.conf", "before": None, "after": "y"},
    ):
        snap_path.write_text(json.dumps({**good, "persist": bad}))
        r = run("rollback", sid, "--root", str(root), "--state-dir", str(state))
        assert r.returncode == 2 and "corrupt" in r.stderr and "persist" in r.stderr, (bad, r.stderr)
    assert victim.read_text() == "keep me\n" and tree_bytes(root) == before


def test_rollback_refuses_a_hand_edited_sysctl_d_file_unless_forced_and_keeps_a_copy(root, tmp_path):
    tree, state = persist_tree(tmp_path), tmp_path / "state"
    own = tree / "etc/sysctl.d/90-tcptune.conf"
    r = apply_root(root, state, "--persist", "--persist-root", str(tree), "--json")
    assert r.returncode == 0, r.stderr
    sid = json.loads(r.stdout)["snapshot"]
    edited = own.read_text() + "net.ipv4.tcp_fin_timeout = 7\n"  # the admin added a line
    own.write_text(edited)
    applied_root = tree_bytes(root)
    r = run("rollback", "--root", str(root), "--state-dir", str(state))
    assert r.returncode == 1, r.stderr
    err = r.stderr.strip().splitlines()
    assert (
        len(err) == 1
        and "was changed after apply" in err[0]
        and "nothing was changed" in err[0]
        and "--force" in err[0]
    )
    assert own.read_text() == edited and tree_bytes(root) == applied_root  # not a single key restored
    r = run("rollback", "--root", str(root), "--state-dir", str(state), "--force", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    copy = Path(out["persist_replaced_copy"])
    assert out["persist_restored"] and not own.exists()  # there was no file before the apply
    assert copy.parent == state / "replaced" and copy.read_text() == edited
    assert os.stat(copy).st_mode & 0o777 == 0o600
    again = run("rollback", sid, "--root", str(root), "--state-dir", str(state), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["written"] == []  # twice is harmless


def test_rollback_reports_live_keys_changed_after_the_apply(root, tmp_path):
    state = tmp_path / "state"
    r = apply_root(root, state)
    assert r.returncode == 0, r.stderr
    (root / "proc/sys/net/ipv4/tcp_syn_retries").write_text("4\n")  # changed by hand after the apply
    dry = run("rollback", "--dry-run", "--root", str(root), "--state-dir", str(state))
    assert (
        "note: net.ipv4.tcp_syn_retries was changed after the apply (apply set 2, now 4); rollback would overwrite it with 6"
        in dry.stdout
    )
    r = run("rollback", "--root", str(root), "--state-dir", str(state), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["changed_since_apply"] == [{"key": "net.ipv4.tcp_syn_retries", "before": 6, "after": 2, "current": 4}]
    assert (root / "proc/sys/net/ipv4/tcp_syn_retries").read_text().strip() == "6"  # restored all the same
    assert tree_bytes(root) == tree_bytes(ROOT_DATA)  # every key back as it was


def test_persist_file_outside_sysctl_d_or_someone_elses_is_refused(root, tmp_path):
    tree, state = persist_tree(tmp_path), tmp_path / "state"
    (tree / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    before = tree_bytes(root)
    for bad in (
        "/etc/passwd",
        "/etc/sysctl.conf",
        "/etc/sysctl.d/.hidden.conf",
        "/etc/sysctl.d/sub/x.conf",
        "/etc/sysctl.d/x.txt",
    ):
        r = apply_root(root, state, "--persist", "--persist-root", str(tree), "--persist-file", bad)
        assert r.returncode == 2 and f"--persist-file {bad}:" in r.stderr and "nothing was changed" in r.stderr, (
            bad,
            r.stderr,
        )
    assert (tree / "etc/passwd").read_text() == "root:x:0:0::/root:/bin/sh\n" and tree_bytes(root) == before
    # an existing file without tcptune's header is somebody's: refused before anything, unless --force
    theirs = tree / "etc/sysctl.d/90-tcptune.conf"
    theirs.write_text("net.ipv4.tcp_syn_retries = 4\n")
    r = apply_root(root, state, "--persist", "--persist-root", str(tree))
    assert r.returncode == 2 and "not written by tcptune" in r.stderr and "--force" in r.stderr
    assert theirs.read_text() == "net.ipv4.tcp_syn_retries = 4\n" and tree_bytes(root) == before and not state.exists()
    r = apply_root(root, state, "--persist", "--persist-root", str(tree), "--force")
    assert r.returncode == 0, r.stderr
    assert theirs.read_text().startswith("# Written by tcptune")
    r = run("rollback", "--root", str(root), "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    assert theirs.read_text() == "net.ipv4.tcp_syn_retries = 4\n"


def test_a_symlinked_or_masked_own_file_is_refused_and_left_as_it_is(root, tmp_path):
    tree, state = persist_tree(tmp_path), tmp_path / "state"
    link = tree / "etc/sysctl.d/90-tcptune.conf"
    os.symlink("/dev/null", link)
    before = tree_bytes(root)
    r = apply_root(root, state, "--persist", "--persist-root", str(tree), "--force")
    assert r.returncode == 2 and "symlink to /dev/null (a mask)" in r.stderr and "nothing was changed" in r.stderr
    assert os.readlink(link) == "/dev/null" and tree_bytes(root) == before
    dry = run(
        "apply",
        "fast-fail-client",
        "--dry-run",
        "--json",
        "--persist",
        "--persist-root",
        str(tree),
        "--root",
        str(root),
    )
    assert dry.returncode == 0 and "a real run would stop here" in dry.stderr
    assert any("symlink to /dev/null" in w for w in json.loads(dry.stdout)["warnings"])


def test_a_confirmed_plan_that_changes_while_waiting_for_the_lock_is_refused(root, tmp_path):
    import pty
    import select
    import time

    from tcptune.host.source import Host
    from tcptune.host.target_lock import target_lock

    state = tmp_path / "state"
    master, slave = pty.openpty()
    with target_lock(Host(root).target, time.monotonic() + 5, 5):  # another apply is busy on this root
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tcptune",
                "apply",
                "fast-fail-client",
                "--root",
                str(root),
                "--state-dir",
                str(state),
            ],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        os.close(slave)
        seen, deadline = "", time.monotonic() + 20
        while "[y/N]" not in seen and time.monotonic() < deadline:
            if select.select([p.stderr], [], [], 0.2)[0]:
                seen += os.read(p.stderr.fileno(), 4096).decode()
        os.write(master, b"y\n")
        while "waiting for" not in seen and time.monotonic() < deadline:
            if select.select([p.stderr], [], [], 0.2)[0]:
                seen += os.read(p.stderr.fileno(), 4096).decode()
        (root / "proc/sys/net/ipv4/tcp_retries2").write_text("9\n")  # what the other apply did
        changed = tree_bytes(root)
    out, err = p.communicate(timeout=30)
    os.close(master)
    assert "waiting for" in seen, seen
    assert p.returncode == 1, err
    assert "the plan changed while this apply waited for the lock (net.ipv4.tcp_retries2 is now 9, not 15)" in err
    assert tree_bytes(root) == changed and not list((state / "snapshots").glob("*.json"))


def test_persist_models_systemd_sysctl_when_the_root_boots_with_systemd(root, tmp_path):
    tree = tmp_path / "sys"
    (tree / "usr/lib/sysctl.d").mkdir(parents=True)
    (tree / "etc/sysctl.d").mkdir(parents=True)
    (tree / "run/systemd/system").mkdir(parents=True)
    (tree / "usr/lib/sysctl.d/99-vendor.conf").write_text("net.ipv4.tcp_syn_retries = 5\n")
    (tree / "etc/sysctl.conf").write_text("net.ipv4.tcp_retries2 = 7\n")  # systemd-sysctl never reads it
    r = run(
        "apply",
        "fast-fail-client",
        "--dry-run",
        "--persist",
        "--persist-root",
        str(tree),
        "--root",
        str(root),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)["persist"]
    assert p["loader"] == "systemd" and "booted with systemd" in p["loader_reason"]
    assert {o["key"]: o["winner"]["path"] for o in p["overrides"]} == {
        "net.ipv4.tcp_syn_retries": "/usr/lib/sysctl.d/99-vendor.conf"
    }
    assert p["boot_values"]["net.ipv4.tcp_retries2"]["path"] == "/etc/sysctl.d/90-tcptune.conf"
    assert p["loader_disagreements"] == [
        {
            "key": "net.ipv4.tcp_retries2",
            "systemd": {
                "value": 8,
                "path": "/etc/sysctl.d/90-tcptune.conf",
                "line": p["loader_disagreements"][0]["systemd"]["line"],
            },
            "procps": {"value": 7, "path": "/etc/sysctl.conf", "line": 1},
        }
    ]
    assert (
        "warning: net.ipv4.tcp_retries2: at boot systemd-sysctl sets 8" in r.stderr
        and "`sysctl --system` sets 7" in r.stderr
    )
    text = run("apply", "fast-fail-client", "--dry-run", "--persist", "--persist-root", str(tree), "--root", str(root))
    assert "loaded at boot by systemd-sysctl (/run/systemd/system exists under" in text.stdout
    os.rename(tree / "run/systemd", tree / "run/not-systemd")
    r = run(
        "apply",
        "fast-fail-client",
        "--dry-run",
        "--persist",
        "--persist-root",
        str(tree),
        "--root",
        str(root),
        "--json",
    )
    p = json.loads(r.stdout)["persist"]
    assert p["loader"] == "procps" and p["boot_values"]["net.ipv4.tcp_retries2"]["path"] == "/etc/sysctl.conf"


def test_empty_state_dir_and_persist_root_are_bad_input_and_rollback_creates_no_state_dir(root, tmp_path):
    # issue 9 #2: Path("") is ".", so --persist-root "" wrote the current directory's
    # etc/sysctl.d and defeated the refusal of --persist with --netns.
    for args in (
        # a namespace that does not exist: should the refusal ever regress, nothing is entered
        ("apply", "web-server", "--persist", "--netns", "/nonexistent/ns", "--persist-root", "", "--yes"),
        ("apply", "fast-fail-client", "--root", str(root), "--state-dir", "", "--yes"),
        ("rollback", "--root", str(root), "--state-dir", ""),
        ("snapshots", "--state-dir", ""),
    ):
        r = run(*args)
        assert r.returncode == 2 and "is empty" in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    new = tmp_path / "typo"
    for extra in ((), ("--dry-run",), ("20260101T000000Z-000000",)):
        r = run("rollback", *extra, "--root", str(root), "--state-dir", str(new))
        assert r.returncode == 2 and "no snapshots" in r.stderr or "unknown snapshot" in r.stderr, r.stderr
        assert not new.exists(), extra


def test_rollback_removes_the_temp_file_of_an_apply_killed_while_writing_sysctl_d(root, tmp_path):
    # issue 9 #16: kill -9 between creating .90-tcptune.conf.tcptune-PID.tmp and its rename
    # left the temp file; rollback, which then has no file to put back, left it too.
    tree, state = persist_tree(tmp_path), tmp_path / "state"
    r = apply_root(root, state, "--persist", "--persist-root", str(tree), "--json")
    assert r.returncode == 0, r.stderr
    d = tree / "etc/sysctl.d"
    stale = d / f".90-tcptune.conf.tcptune-{_dead_pid()}.tmp"
    stale.write_text("half a file")
    running = d / f".90-tcptune.conf.tcptune-{os.getpid()}.tmp"  # its writer is alive: kept
    running.write_text("being written")
    r = run("rollback", "--root", str(root), "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and running.exists() and not (d / "90-tcptune.conf").exists()
    stale.write_text("half a file")  # and when the file needs nothing (rolled back already)
    r = run(
        "rollback",
        json.loads(run("snapshots", "--json", "--state-dir", str(state)).stdout)["snapshots"][0]["id"],
        "--root",
        str(root),
        "--state-dir",
        str(state),
    )
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and running.exists()


def test_snapshots_of_the_same_second_are_listed_in_creation_order(tmp_path):
    # issue 10 #9: ids share the second, so name order was the order of their random suffix.
    from tcptune.core.snapshot import Snapshot
    from tcptune.host.statedir import StateDir

    state = StateDir(tmp_path / "state")
    target = {"kind": "root", "root": "/x", "netns_inode": None}
    for sid, created in (("20260101T000000Z-ffffff", 1767225600.1), ("20260101T000000Z-000000", 1767225600.9)):
        state.save(Snapshot(sid, created, "p", "o", target, None, {}))
    r = run("snapshots", "--json", "--state-dir", str(state.path))
    assert [s["id"] for s in json.loads(r.stdout)["snapshots"]] == [
        "20260101T000000Z-ffffff",
        "20260101T000000Z-000000",
    ]
    text = run("snapshots", "--state-dir", str(state.path)).stdout
    assert text.index("-ffffff") < text.index("-000000")
