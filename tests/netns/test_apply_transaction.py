"""apply/rollback transactions against the real kernel, each inside a private network namespace.

Every write happens in a namespace made by tests/nsutil.py (run_in_netns forks a
child that unshares; subprocesses started by that child inherit its namespace).
Profiles are built in code here so the fault cases can hold values the kernel
rejects (load_profile would refuse them up front, which is the point of it).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nsutil import require_netns, run_in_netns

from tcptune.core.plan import SAME, plan_apply
from tcptune.core.profile import Profile, Setting
from tcptune.core.snapshot import APPLIED, FAILED, PENDING, ROLLED_BACK
from tcptune.errors import TcptuneError
from tcptune.host.source import Host
from tcptune.host.statedir import StateDir
from tcptune.ops.apply import ConfirmedPlan, PersistRequest, apply_profile
from tcptune.ops.rollback import rollback_snapshot

# Per-namespace keys only (a child namespace shows the global ones read-only or not at all),
# each with a value that differs from the namespace default so a missed restore shows.
GOOD = {
    "net.ipv4.tcp_syn_retries": "3",
    "net.ipv4.tcp_fin_timeout": "21",
    "net.ipv4.tcp_rmem": "8192 262144 8388608",
    "net.ipv4.tcp_keepalive_probes": "4",
    "net.core.somaxconn": "1024",
}
# Values this kernel rejects with EINVAL (measured on 6.18 in a fresh netns): out of range,
# negative, not a number, and a vector whose *third* field is bad (the first two get stored).
BAD = {
    "net.ipv4.tcp_syn_retries": "300",
    "net.ipv4.tcp_fin_timeout": "abc",
    "net.ipv4.tcp_rmem": "16384 131072 0",
    "net.ipv4.tcp_keepalive_probes": "300",
    "net.core.somaxconn": "-1",
}
ORDER = list(GOOD)


def make_profile(values: dict[str, str], name: str = "t", required: set[str] = frozenset()) -> Profile:
    return Profile(
        name, "test", "test", {k: Setting(k, v, f"test {k}", "test", k in required) for k, v in values.items()}
    )


def all_values() -> dict[str, str | None]:
    host = Host("/")
    return host.read_sysctls(host.list_sysctls())


@pytest.fixture(autouse=True)
def _netns():
    require_netns()


def test_apply_then_rollback_restores_every_key_exactly(tmp_path):
    def body():
        host = Host("/")
        before = all_values()
        state = StateDir(tmp_path)
        res = apply_profile(host, state, make_profile(GOOD))
        assert res.snapshot.status == APPLIED and res.written == ORDER
        assert host.read_sysctls(GOOD) == GOOD
        assert all(c.status == SAME for c in plan_apply(host.read_sysctls(GOOD), make_profile(GOOD)))
        snap = state.load(res.snapshot.id)
        assert snap.status == APPLIED
        assert {k: v["before"] for k, v in snap.keys.items()} == {k: before[k] for k in GOOD}
        mode = os.stat(state.path_of(snap.id)).st_mode & 0o777
        rb = rollback_snapshot(host, state, None)
        assert rb.snapshot.id == snap.id and sorted(rb.written) == sorted(ORDER)
        after_first = all_values()
        again = rollback_snapshot(host, state, snap.id)  # restoring twice is harmless
        assert again.written == []
        return before, after_first, all_values(), mode, state.load(snap.id).status

    before, after, after_twice, mode, status = run_in_netns(body)
    assert after == before  # every key of net.ipv4 and net.core, not just the profile's
    assert after_twice == before
    assert mode == 0o600 and status == ROLLED_BACK


@pytest.mark.parametrize("n", range(len(ORDER)))
def test_a_rejected_nth_key_leaves_every_key_as_before(tmp_path, n):
    values = dict(GOOD)
    values[ORDER[n]] = BAD[ORDER[n]]

    def body():
        host = Host("/")
        before = all_values()
        state = StateDir(tmp_path)
        with pytest.raises(TcptuneError) as ei:
            apply_profile(host, state, make_profile(values))
        (sid,) = state.ids()
        snap = state.load(sid)
        return before, all_values(), ei.value.exit_code, str(ei.value), snap.status, snap.history[-1]["detail"]

    before, after, code, msg, status, detail = run_in_netns(body)
    assert after == before
    assert code == 1
    assert ORDER[n] in msg and repr(BAD[ORDER[n]]) in msg  # names the key and the value
    assert f"restored the {n + 1} key(s)" in msg
    assert status == FAILED and "restored" in detail


def test_a_key_read_only_in_this_namespace_is_skipped_or_fatal_when_required(tmp_path):
    # net.core.rmem_max is global: a child namespace shows it mode 0444 (measured on 6.18).
    values = dict(GOOD)
    values["net.core.rmem_max"] = "424242"

    def body():
        host = Host("/")
        before = all_values()
        res = apply_profile(host, StateDir(tmp_path / "a"), make_profile(values))
        applied = host.read_sysctls(values)
        rollback_snapshot(host, StateDir(tmp_path / "a"), None)
        with pytest.raises(TcptuneError) as ei:
            apply_profile(host, StateDir(tmp_path / "b"), make_profile(values, required={"net.core.rmem_max"}))
        return before, res.skipped, res.written, applied, all_values(), ei.value.exit_code, str(ei.value)

    before, skipped, written, applied, after, code, msg = run_in_netns(body)
    assert [s["key"] for s in skipped] == ["net.core.rmem_max"] and "read-only" in skipped[0]["reason"]
    assert written == ORDER and applied["net.core.rmem_max"] == before["net.core.rmem_max"]
    assert after == before and code == 3 and "net.core.rmem_max" in msg and "nothing was changed" in msg


def test_missing_keys_are_skipped_unless_required(tmp_path):
    absent = "net.ipv4.tcp_tw_recycle"  # removed in 4.12

    def body():
        host = Host("/")
        res = apply_profile(host, StateDir(tmp_path / "a"), make_profile({absent: "1", **GOOD}))
        applied = host.read_sysctls(GOOD)
        rollback_snapshot(host, StateDir(tmp_path / "a"), None)
        before = all_values()
        with pytest.raises(TcptuneError) as ei:
            apply_profile(host, StateDir(tmp_path / "b"), make_profile({**GOOD, absent: "1"}, required={absent}))
        return (
            res.skipped,
            applied,
            before,
            all_values(),
            ei.value.exit_code,
            str(ei.value),
            StateDir(tmp_path / "b").ids(),
        )

    skipped, applied, before, after, code, msg, ids = run_in_netns(body)
    assert skipped == [{"key": absent, "reason": "not present on this kernel"}]
    assert applied == GOOD
    assert after == before and code == 2 and absent in msg and ids == []


def test_nothing_to_do_writes_no_snapshot(tmp_path):
    def body():
        host = Host("/")
        current = {k: host.read_sysctl(k) for k in GOOD}
        res = apply_profile(host, StateDir(tmp_path), make_profile(current))
        return res.snapshot, StateDir(tmp_path).ids()

    snap, ids = run_in_netns(body)
    assert snap is None and ids == []


def test_a_held_lock_makes_apply_fail_clearly_and_change_nothing(tmp_path):
    def body():
        state = StateDir(tmp_path)
        before = all_values()
        with state.lock():
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # a second process: flock is per open file, so it contends for real
                try:
                    apply_profile(Host("/"), StateDir(tmp_path), make_profile(GOOD), lock_timeout=0.3)
                    os.write(w, b"applied")
                except TcptuneError as exc:
                    os.write(w, f"{exc.exit_code} {exc}".encode())
                os._exit(0)
            os.waitpid(pid, 0)
            out = os.read(r, 4096).decode()
        return before, all_values(), out

    before, after, out = run_in_netns(body)
    assert after == before
    assert out.startswith("1 ") and re.search(r"\(pid \d+\) holds", out) and "nothing was changed" in out


# -- separate processes: SIGKILL and concurrency ---------------------------------
HELPER = r"""
import json, sys
from tcptune.errors import TcptuneError
from tcptune.host.source import Host
from tcptune.core.profile import Profile, Setting
from tcptune.host.statedir import StateDir
from tcptune.ops.apply import apply_profile
spec = json.loads(sys.argv[1])
prof = Profile(spec["name"], "", "test", {k: Setting(k, v, "test", "test") for k, v in spec["settings"].items()})
def waiting(msg):
    print("WAIT " + msg, file=sys.stderr, flush=True)
try:
    res = apply_profile(Host("/"), StateDir(spec["state"]), prof, lock_timeout=30, on_wait=waiting)
    print(json.dumps({"snapshot": res.snapshot.id if res.snapshot else None}), flush=True)
except TcptuneError as exc:
    print(str(exc), file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def spawn_apply(values: dict[str, str], state: Path, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    spec = json.dumps({"name": name, "settings": values, "state": str(state)})
    return subprocess.Popen(
        [sys.executable, "-c", HELPER, spec],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for_line(stream, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            line = stream.readline()
            seen += line
            if needle in line:
                return line
            if not line:
                break
    raise AssertionError(f"never saw {needle!r}; got {seen!r}")


def tcptune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tcptune", *args], capture_output=True, text=True, timeout=60)


def test_sigkill_mid_apply_then_rollback_restores_the_snapshot(tmp_path):
    def body():
        before = all_values()
        p = spawn_apply(GOOD, tmp_path, "killed", {"TCPTUNE_TEST_PAUSE_AFTER_WRITES": "2"})
        wait_for_line(p.stderr, "paused after 2 writes")
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        mid = all_values()
        state = StateDir(tmp_path)
        (sid,) = state.ids()
        status_mid = state.load(sid).status
        rb = tcptune("rollback", "--state-dir", str(tmp_path), "--json")
        after = all_values()
        rb2 = tcptune("rollback", sid, "--state-dir", str(tmp_path), "--json")
        return (
            before,
            mid,
            status_mid,
            rb.returncode,
            rb.stdout + rb.stderr,
            after,
            rb2.returncode,
            rb2.stdout,
            state.load(sid).status,
            p.returncode,
        )

    before, mid, status_mid, rc, out, after, rc2, out2, status, killed_rc = run_in_netns(body)
    assert killed_rc == -signal.SIGKILL
    changed = [k for k in GOOD if mid[k] != before[k]]
    assert changed == ORDER[:2]  # the kill really happened mid-transaction
    assert status_mid == PENDING
    assert rc == 0, out
    assert json.loads(out)["written"] == ORDER[:2]
    assert after == before
    assert rc2 == 0 and json.loads(out2)["written"] == []  # restoring twice is harmless
    assert status == ROLLED_BACK


def test_two_applies_at_once_are_serialized_and_never_mixed(tmp_path):
    a = {k: GOOD[k] for k in ORDER}
    b = {
        "net.ipv4.tcp_syn_retries": "5",
        "net.ipv4.tcp_fin_timeout": "45",
        "net.ipv4.tcp_rmem": "4096 65536 4194304",
        "net.ipv4.tcp_keepalive_probes": "7",
        "net.core.somaxconn": "2048",
    }

    def body():
        results = []
        # 1) A holds the lock (paused after its first write) when B starts: B must wait, then run.
        pa = spawn_apply(
            a, tmp_path, "a", {"TCPTUNE_TEST_PAUSE_AFTER_WRITES": "1", "TCPTUNE_TEST_PAUSE_SECONDS": "1.5"}
        )
        wait_for_line(pa.stderr, "paused after 1 writes")
        pb = spawn_apply(b, tmp_path, "b")
        wait_for_line(pb.stderr, "WAIT waiting for")
        outs = [p.communicate(timeout=30) for p in (pa, pb)]
        final = Host("/").read_sysctls(a)
        state = StateDir(tmp_path)
        sb = state.load(json.loads(outs[1][0])["snapshot"])
        results.append((pa.returncode, pb.returncode, final, {k: v["before"] for k, v in sb.keys.items()}))
        # 2) Started together, several times: the end state is one profile or the other, whole.
        for _ in range(4):
            ps = [spawn_apply(a, tmp_path, "a"), spawn_apply(b, tmp_path, "b")]
            codes = [p.wait(timeout=30) for p in ps]
            results.append((codes, Host("/").read_sysctls(a)))
        return results

    (rca, rcb, final, b_saw), *races = run_in_netns(body)
    assert rca == 0 and rcb == 0
    assert final == b  # B ran after A finished ...
    assert b_saw == a  # ... and its snapshot holds A's complete result, not a half-applied state
    for codes, end in races:
        assert codes == [0, 0]
        assert end in (a, b)


def test_corrupt_and_unknown_snapshots_are_refused_and_kept(tmp_path):
    def body():
        host = Host("/")
        state = StateDir(tmp_path)
        res = apply_profile(host, state, make_profile(GOOD))
        path = state.path_of(res.snapshot.id)
        good_text = path.read_bytes()
        path.write_bytes(good_text[: len(good_text) // 2])  # torn file
        torn = tcptune("rollback", res.snapshot.id, "--state-dir", str(tmp_path))
        torn_kept = path.read_bytes() == good_text[: len(good_text) // 2]
        values_after_torn = host.read_sysctls(GOOD)
        # valid JSON, but a key outside net.* (someone edited it): refused as well
        data = json.loads(good_text)
        data["keys"]["kernel.panic"] = {"before": "1", "after": "0"}
        path.write_text(json.dumps(data))
        evil = tcptune("rollback", "--state-dir", str(tmp_path))
        unknown = tcptune("rollback", "20990101T000000Z-abcdef", "--state-dir", str(tmp_path))
        bogus = tcptune("rollback", "../../etc/passwd", "--state-dir", str(tmp_path))
        listing = tcptune("snapshots", "--json", "--state-dir", str(tmp_path))
        path.write_bytes(good_text)
        tcptune("rollback", "--state-dir", str(tmp_path))
        return res.snapshot.id, torn, torn_kept, values_after_torn, evil, unknown, bogus, listing

    sid, torn, kept, values, evil, unknown, bogus, listing = run_in_netns(body)
    assert torn.returncode == 2 and "corrupt" in torn.stderr and "kept" in torn.stderr and kept
    assert len(torn.stderr.strip().splitlines()) == 1
    assert values == GOOD  # nothing was restored from the torn file
    assert evil.returncode == 2 and "kernel.panic" in evil.stderr
    assert unknown.returncode == 2 and sid in unknown.stderr and "available" in unknown.stderr
    assert bogus.returncode == 2 and sid in bogus.stderr
    (entry,) = json.loads(listing.stdout)["snapshots"]
    assert entry["id"] == sid and entry["status"] == "corrupt"


OLDER = "# Written by tcptune 0.0 from profile older (test).\nnet.ipv4.tcp_syn_retries = 5\n"


def test_persist_writes_a_file_sysctl_p_loads_and_rollback_restores_it(tmp_path):
    root = tmp_path / "root"
    (root / "usr/lib/sysctl.d").mkdir(parents=True)
    (root / "usr/lib/sysctl.d/99-vendor.conf").write_text("net.ipv4.tcp_fin_timeout = 33\n")
    own = "/etc/sysctl.d/90-tcptune.conf"

    def request(plan):
        from tcptune.core.boot_precedence import render_own_file

        return PersistRequest(
            root,
            own,
            render_own_file([(c.key, c.new, c.reason) for c in plan], profile="t", origin="test", version="0"),
        )

    def body():
        host = Host("/")
        state = StateDir(tmp_path / "state")
        res = apply_profile(host, state, make_profile(GOOD), persist=request)
        return res.persisted, res.snapshot.id

    persisted, sid = run_in_netns(body)
    written = root / own.lstrip("/")
    assert persisted and written.is_file() and os.stat(written).st_mode & 0o777 == 0o644
    assert not list(written.parent.glob(".*tmp"))

    # `sysctl -p FILE` in another fresh namespace gives exactly the profile's values.
    def load_with_sysctl():
        r = subprocess.run(["sysctl", "-p", str(written)], capture_output=True, text=True)
        return r.returncode, r.stderr, Host("/").read_sysctls(GOOD)

    rc, err, loaded = run_in_netns(load_with_sysctl)
    assert rc == 0, err
    assert loaded == GOOD

    from tcptune.core.boot_precedence import find_overrides
    from tcptune.host.sysctld_files import boot_state

    state = boot_state(root, GOOD)
    assert [(o.key, o.winner.path) for o in find_overrides(state, own)] == [
        ("net.ipv4.tcp_fin_timeout", "/usr/lib/sysctl.d/99-vendor.conf")
    ]

    # Rollback puts back the file that was there before (the target check needs the same
    # namespace, so apply again over an older file and roll back in one child).
    def apply_and_rollback():
        st = StateDir(tmp_path / "state2")
        written.write_text(OLDER)
        res = apply_profile(Host("/"), st, make_profile(GOOD), persist=request)
        mid = written.read_text()
        rollback_snapshot(Host("/"), st, res.snapshot.id)
        return mid, written.read_text()

    mid, restored = run_in_netns(apply_and_rollback)
    assert "net.ipv4.tcp_syn_retries = 3" in mid
    assert restored == OLDER


def test_rollback_refuses_a_snapshot_from_another_namespace(tmp_path):
    def apply_here():
        return apply_profile(Host("/"), StateDir(tmp_path), make_profile(GOOD)).snapshot.id

    sid = run_in_netns(apply_here)

    def rollback_elsewhere():
        before = all_values()
        with pytest.raises(TcptuneError) as ei:
            rollback_snapshot(Host("/"), StateDir(tmp_path), sid)
        return before, all_values(), ei.value.exit_code, str(ei.value)

    before, after, code, msg = run_in_netns(rollback_elsewhere)
    assert after == before and code == 2 and "network namespace" in msg


def test_an_empty_value_is_saved_listed_and_rolled_back(tmp_path):
    # ip_local_reserved_ports is "" in a fresh namespace: a snapshot must hold "" as a real
    # value, list as valid, and rollback must put "" back (it used to be "corrupt": value lost).
    key = "net.ipv4.ip_local_reserved_ports"

    def body():
        host = Host("/")
        before = host.read_sysctl(key)
        res = apply_profile(host, StateDir(tmp_path), make_profile({key: "40000", **GOOD}))
        mid = host.read_sysctl(key)
        listing = tcptune("snapshots", "--json", "--state-dir", str(tmp_path))
        rb = tcptune("rollback", res.snapshot.id, "--state-dir", str(tmp_path), "--json")
        return before, mid, res.snapshot.keys[key], listing, rb, host.read_sysctl(key)

    before, mid, saved, listing, rb, after = run_in_netns(body)
    assert before == "" and mid == "40000" and saved == {"before": "", "after": "40000"}
    (entry,) = json.loads(listing.stdout)["snapshots"]
    assert entry["status"] == "applied", entry
    assert rb.returncode == 0, rb.stderr
    assert key in json.loads(rb.stdout)["written"]
    assert after == ""


def test_a_snapshot_that_would_not_load_back_is_refused_before_any_write(tmp_path):
    # save() runs the loader's own validation first: a value rollback could not trust
    # (here a NUL byte, which a profile built in code can carry) stops the apply untouched.
    def body():
        before = all_values()
        state = StateDir(tmp_path)
        with pytest.raises(TcptuneError) as ei:
            apply_profile(Host("/"), state, make_profile({**GOOD, "net.core.somaxconn": "1024\x00"}))
        return before, all_values(), ei.value.exit_code, str(ei.value), sorted(os.listdir(state.snapshots))

    before, after, code, msg, files = run_in_netns(body)
    assert after == before and code == 2
    assert "would not load back" in msg and "net.core.somaxconn" in msg
    assert files == []


def test_a_rejection_other_than_einval_is_exit_1_and_everything_is_put_back(tmp_path):
    # An unknown congestion control is refused with ENOENT, not EINVAL (measured on 6.18);
    # it is still "a write the kernel rejected": exit 1 after restoring, like EINVAL.
    values = {**GOOD, "net.ipv4.tcp_congestion_control": "nosuchcc"}

    def body():
        before = all_values()
        with pytest.raises(TcptuneError) as ei:
            apply_profile(Host("/"), StateDir(tmp_path), make_profile(values))
        return before, all_values(), ei.value.exit_code, str(ei.value)

    before, after, code, msg = run_in_netns(body)
    assert after == before
    assert code == 1, msg
    assert "net.ipv4.tcp_congestion_control" in msg and "'nosuchcc'" in msg and "ENOENT" in msg
    assert f"restored the {len(values)} key(s)" in msg


def test_two_applies_with_different_state_dirs_are_serialized_on_the_target(tmp_path):
    # The state dir's lock alone let A (--state-dir s9a) and B (s9b) interleave on the
    # same namespace; the per-target lock makes B wait for A whatever the state dirs say.
    a = dict(GOOD)
    b = {k: v for k, v in zip(ORDER, ["5", "45", "4096 65536 4194304", "7", "2048"])}

    def body():
        pa = spawn_apply(
            a, tmp_path / "s9a", "a", {"TCPTUNE_TEST_PAUSE_AFTER_WRITES": "2", "TCPTUNE_TEST_PAUSE_SECONDS": "1.5"}
        )
        wait_for_line(pa.stderr, "paused after 2 writes")
        mid = Host("/").read_sysctls(a)
        pb = spawn_apply(b, tmp_path / "s9b", "b")
        waited = wait_for_line(pb.stderr, "WAIT waiting for")
        outs = [p.communicate(timeout=30) for p in (pa, pb)]
        sb = StateDir(tmp_path / "s9b").load(json.loads(outs[1][0])["snapshot"])
        races = []
        for i in range(3):  # started together: one whole profile or the other, never a mix
            ps = [spawn_apply(a, tmp_path / f"r{i}a", "a"), spawn_apply(b, tmp_path / f"r{i}b", "b")]
            races.append(([p.wait(timeout=30) for p in ps], Host("/").read_sysctls(a)))
        return (
            pa.returncode,
            pb.returncode,
            mid,
            waited,
            Host("/").read_sysctls(a),
            sb.before_values(),
            races,
            netns_lock_files(),
        )

    def netns_lock_files():
        from tcptune.host.target_lock import lock_dir_path, target_lock_name

        return os.path.exists(lock_dir_path()[0] / target_lock_name(Host("/").target))

    rca, rcb, mid, waited, final, b_saw, races, lock_left = run_in_netns(body)
    assert rca == 0 and rcb == 0
    assert [k for k in ORDER if mid[k] == a[k]] == ORDER[:2]  # B really started while A was mid-way
    assert "is changing network namespace" in waited
    assert b_saw == a  # B ran after A had finished: its snapshot holds A's whole result
    for codes, end in races:
        assert codes == [0, 0] and end in (a, b)
    assert not lock_left  # the lock file is removed on release


def test_roots_target_lock_lives_where_no_other_user_can_create_it_first(tmp_path, monkeypatch):
    # issue 9 #3: any user could mkdir (or symlink) /run/lock/tcptune, a world-writable
    # directory, before root did, and every apply then refused that directory.  Root's
    # locks skip a base where others may create entries, and never follow a symlink.
    from tcptune.host import target_lock as tl

    monkeypatch.delenv(tl.LOCK_DIR_ENV, raising=False)
    shared, run_dir = tmp_path / "lock", tmp_path / "run"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /run/lock
    run_dir.mkdir()
    os.chmod(run_dir, 0o755)  # like /run
    monkeypatch.setattr(tl, "ROOT_LOCK_BASES", (str(tmp_path / "no-run-lock"), str(shared), str(run_dir)))
    (shared / "tcptune").mkdir()
    os.chown(shared / "tcptune", 65534, 65534)  # nobody got there first
    os.symlink("/etc", shared / "tcptune-link")
    assert tl.lock_dir_path() == (run_dir / "tcptune", False)
    target = Host("/").target
    with tl.target_lock(target, time.monotonic() + 1, 1) as path:
        assert path.parent == run_dir / "tcptune" and path.exists()
        assert os.stat(run_dir / "tcptune").st_mode & 0o777 == 0o700
    (run_dir / "tcptune").rmdir()
    os.symlink(tmp_path, run_dir / "tcptune")  # even there, a symlink is never followed
    with pytest.raises(TcptuneError) as ei:
        with tl.target_lock(target, time.monotonic() + 1, 1):
            pass
    assert ei.value.exit_code == 2 and "symlink" in str(ei.value)
    monkeypatch.setattr(tl, "ROOT_LOCK_BASES", (str(shared),))
    with pytest.raises(TcptuneError) as ei:
        tl.lock_dir_path()
    assert ei.value.exit_code == 2 and "only root can write" in str(ei.value) and tl.LOCK_DIR_ENV in str(ei.value)
    monkeypatch.setenv(tl.LOCK_DIR_ENV, str(tmp_path / "mine"))
    assert tl.lock_dir_path() == (tmp_path / "mine", True)


def test_the_target_lock_skips_a_base_this_user_cannot_write(tmp_path):
    # /run exists but is root's: a user with CAP_NET_ADMIN only (apply --root on a copy)
    # must fall through to the next base, not fail on mkdir.  Root without the DAC
    # capabilities stands in for that user: access(2) then honours the mode bits.
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and util-linux setpriv to drop the DAC capabilities")
    closed, open_ = tmp_path / "closed", tmp_path / "open"
    closed.mkdir(mode=0o555)
    open_.mkdir()
    code = (
        "import tcptune.host.target_lock as t; "
        f"t.ROOT_LOCK_BASES = ({str(closed)!r}, {str(open_)!r}); print(t.lock_dir_path()[0])"
    )
    drop = "-dac_override,-dac_read_search"
    env = {k: v for k, v in os.environ.items() if k != "TCPTUNE_LOCK_DIR"}
    r = subprocess.run(
        ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(open_ / "tcptune")


def test_plain_rollback_picks_the_newest_applied_or_pending_snapshot_of_this_target(tmp_path):
    def body():
        host = Host("/")
        state = StateDir(tmp_path)
        first = apply_profile(host, state, make_profile(GOOD)).snapshot  # applied
        with pytest.raises(TcptuneError):  # a newer one that failed (and was put back already)
            apply_profile(
                host, state, make_profile({**GOOD, "net.ipv4.tcp_syn_retries": "300", "net.core.somaxconn": "512"})
            )
        data = json.loads(state.path_of(first.id).read_text())

        def plant(sid, **changes):
            state.path_of(sid).write_text(json.dumps({**data, "id": sid, **changes}))

        # Same second, bigger random suffix: sorts after `first` by id, but was created earlier.
        plant(first.id[:-6] + "ffffff", created=first.created - 100)
        # Newest of all, but another network namespace's.
        plant("20991231T235959Z-000000", created=first.created + 100, target={**first.target, "netns_inode": 1})
        picked = rollback_snapshot(host, state, None, dry_run=True).snapshot.id
        rb = rollback_snapshot(host, state, None)
        statuses = {sid: (s.status if s else "corrupt") for sid, s, _ in state.list()}
        # A corrupt file that may be newer than every candidate stops a plain rollback.
        state.path_of("20991231T235958Z-000000").write_text("{torn")
        with pytest.raises(TcptuneError) as ei:
            rollback_snapshot(host, state, None)
        return first.id, picked, rb.snapshot.id, statuses, ei.value.exit_code, str(ei.value)

    first, picked, rolled, statuses, code, msg = run_in_netns(body)
    assert picked == first and rolled == first
    assert statuses[first] == ROLLED_BACK and list(statuses.values()).count(FAILED) == 1
    assert code == 2 and "20991231T235958Z-000000" in msg and "corrupt" in msg and "pass the id" in msg


def test_plain_rollback_with_nothing_left_to_roll_back_says_so(tmp_path):
    def body():
        host = Host("/")
        state = StateDir(tmp_path)
        sid = apply_profile(host, state, make_profile(GOOD)).snapshot.id
        rollback_snapshot(host, state, None)
        with pytest.raises(TcptuneError) as ei:
            rollback_snapshot(host, state, None)
        again = rollback_snapshot(host, state, sid)  # an explicit id still restores (harmless)
        return sid, ei.value.exit_code, str(ei.value), again.written

    sid, code, msg, written = run_in_netns(body)
    assert code == 2 and "nothing to roll back" in msg and "1 rolled-back" in msg and "pass a snapshot id" in msg
    assert written == []


def test_a_plan_that_changed_while_waiting_for_the_lock_is_not_carried_out(tmp_path):
    def body():
        host = Host("/")
        prof = make_profile(GOOD)
        shown = plan_apply(host.read_sysctls(GOOD), prof)  # what the user confirmed
        host.write_sysctl("net.ipv4.tcp_fin_timeout", "33")  # meanwhile, another apply
        before = all_values()
        with pytest.raises(TcptuneError) as ei:
            apply_profile(host, StateDir(tmp_path), prof, confirmed=ConfirmedPlan(shown))
        after = all_values()
        small = make_profile({"net.ipv4.tcp_syn_retries": "3"})
        unchanged = ConfirmedPlan(plan_apply(host.read_sysctls(small.settings), small))
        same = apply_profile(host, StateDir(tmp_path / "b"), small, confirmed=unchanged)
        return before, after, ei.value.exit_code, str(ei.value), StateDir(tmp_path).ids(), same.written

    before, after, code, msg, ids, written = run_in_netns(body)
    assert after == before and ids == []
    assert code == 1 and "the plan changed while this apply waited for the lock" in msg
    assert "net.ipv4.tcp_fin_timeout is now 33, not 60" in msg and "nothing was changed" in msg
    assert written == ["net.ipv4.tcp_syn_retries"]  # an unchanged plan goes ahead
