"""The Ansible collection (collections/ansible_collections/tcptune/tcptune) driven by real ansible-core.

Every playbook runs against localhost (connection: local) inside a private network AND mount
namespace (`unshare -n -m`): /etc/sysctl.d and /run/lock are tmpfs there, the state directory is
the test's, so the sysctls, the sysctl.d file and the locks the module changes are the
namespace's own and vanish with it.  A driver inside the namespace runs the playbooks one after
the other and, between them, reads /proc/sys and the sysctl.d file itself (not through Ansible),
so "changed nothing" and "restored" are checked against the kernel.  The module runs this
checkout's tcptune: PYTHONPATH points at it and executable is `sys.executable -m tcptune`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nsutil import require_netns

try:
    import ansible  # noqa: F401  (ansible-core, from the [test] extra)
except ImportError:
    # In CI (TCPTUNE_REQUIRE_NETNS=1) a missing install step must fail, not hide behind a skip.
    if os.environ.get("TCPTUNE_REQUIRE_NETNS") == "1":
        raise
    pytest.skip("ansible-core is not installed (pip install '.[test]')", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "collections"
FQCN = "tcptune.tcptune.tcptune_profile"
PERSIST_FILE = "/etc/sysctl.d/90-tcptune.conf"

# A profile of our own, so the expected values do not move with the built-in ones; defaults of a
# fresh network namespace (6.18): tcp_syn_retries 6, tcp_fin_timeout 60, tcp_keepalive_time 7200.
PROFILE = """\
description = "ansible test profile"

[settings."net.ipv4.tcp_syn_retries"]
value = 3
reason = "test: fewer SYN retries"

[settings."net.ipv4.tcp_fin_timeout"]
value = 20
reason = "test: shorter FIN-WAIT-2"

[settings."net.ipv4.tcp_keepalive_time"]
value = 600
reason = "test: earlier keepalive"
"""
WANT = {"net.ipv4.tcp_syn_retries": "3", "net.ipv4.tcp_fin_timeout": "20", "net.ipv4.tcp_keepalive_time": "600"}
RISKY = "net.ipv4.tcp_timestamps"  # 0 is a known-risky value (audit verdict warning)
BAD_PROFILE = 'description = "broken"\n[settings."net.ipv4.tcp_syn_retries"\nvalue = 3\n'

# Runs inside the namespaces: private tmpfs mounts, lo up, then each step's ansible-playbook,
# then what the kernel and the file system say.  Writes the report as JSON.
DRIVER = r"""
import json, os, subprocess, sys, time
cfg = json.load(open(sys.argv[1]))
for where in ("/etc/sysctl.d", "/run/lock"):
    if os.path.isdir(where):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tcptune-test", where], check=True)
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
# A second network namespace, held by a sleeper and bind-mounted at a path, for the netns option.
sleeper = subprocess.Popen(["unshare", "-n", "sleep", "600"])
own = os.stat("/proc/self/ns/net").st_ino
for _ in range(500):
    try:
        if os.stat(f"/proc/{sleeper.pid}/ns/net").st_ino != own:
            break
    except OSError:
        pass
    time.sleep(0.01)
open(cfg["netns_b"], "w").close()
subprocess.run(["mount", "--bind", f"/proc/{sleeper.pid}/ns/net", cfg["netns_b"]], check=True)

def observe():
    vals, vals_b = {}, {}
    for key in cfg["keys"]:
        with open("/proc/sys/" + key.replace(".", "/")) as fh:
            vals[key] = " ".join(fh.read().split())
        b = subprocess.run(["nsenter", "--net=" + cfg["netns_b"], "cat", "/proc/sys/" + key.replace(".", "/")],
                           capture_output=True, text=True, check=True)
        vals_b[key] = " ".join(b.stdout.split())
    try:
        text = open(cfg["persist_file"]).read()
    except FileNotFoundError:
        text = None
    snaps = sorted(os.listdir(cfg["snapshots"])) if os.path.isdir(cfg["snapshots"]) else []
    return {"sysctls": vals, "netns_b": vals_b, "persist_file": text, "snapshots": snaps, "sysctl_d": sorted(os.listdir("/etc/sysctl.d"))}

report = {"netns": os.stat("/proc/self/ns/net").st_ino, "initial": observe(), "steps": {}}
for step in cfg["steps"]:
    for key, value in step.get("write", {}).items():  # set up the host the step finds
        with open("/proc/sys/" + key.replace(".", "/"), "w") as fh:
            fh.write(value)
    env = {k: v for k, v in cfg["env"].items() if k not in step.get("unset", ())}
    env.update(step.get("env", {}))
    t0 = time.monotonic()
    p = subprocess.run(step["argv"], capture_output=True, text=True, env=env, timeout=240)
    seconds = round(time.monotonic() - t0, 1)
    try:
        results = json.load(open(step["out"]))
    except (FileNotFoundError, ValueError):
        results = None
    report["steps"][step["name"]] = {"seconds": seconds, "rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                                     "results": results, "after": observe()}
sleeper.kill()
sleeper.wait()
json.dump(report, open(cfg["report"], "w"))
"""


def playbook(path: Path, out: Path, tasks: list[dict]) -> None:
    """One play on localhost; each task registered as t0, t1 ...; all results dumped to OUT at the end."""
    body = []
    for i, task in enumerate(tasks):
        body.append({"name": f"t{i}", "register": f"t{i}", **task})
    dump = "{{ {" + ", ".join(f"'t{i}': t{i} | default(None)" for i in range(len(tasks))) + "} | to_json }}"
    play = [
        {
            "name": path.stem,
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "block": body,
                    "always": [
                        {
                            "name": "results",
                            "ansible.builtin.copy": {"content": dump, "dest": str(out)},
                            "check_mode": False,
                            "diff": False,
                            "changed_when": False,  # keeps the recap's changed= the module's own
                        }
                    ],
                }
            ],
        }
    ]
    path.write_text(json.dumps(play, indent=1))  # JSON is YAML


def ansible_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        PYTHONPATH=str(REPO),
        # Ansible's own files (temp dirs, caches) go below the test's directory, not ~/.ansible.
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-remote"),
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        TCPTUNE_STATE_DIR=str(tmp / "unused-default-state"),  # a task without state_dir must not reach /var/lib
    )
    return env


def ansible_argv(tool: str, *args: str) -> list[str]:
    # `python -m ansible TOOL` is the ansible-TOOL of this interpreter's ansible-core.
    return [sys.executable, "-m", "ansible", tool, *args]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run every step once, in one pair of namespaces, and return the driver's report."""
    require_netns()
    if not shutil.which("ip"):
        pytest.fail("iproute2 `ip` is needed to bring lo up in the test namespace")
    tmp = tmp_path_factory.mktemp("ansible")
    (tmp / "fleet-test.toml").write_text(PROFILE)
    (tmp / "bad.toml").write_text(BAD_PROFILE)
    state = tmp / "state"
    exe = f"{sys.executable} -m tcptune"
    base = {"state_dir": str(state), "executable": exe}
    apply = {FQCN: {"profile": str(tmp / "fleet-test.toml"), "persist": True, **base}}
    rollback = {FQCN: {"state": "rolled_back", **base}}
    netns_b = str(tmp / "netns-b")
    audit = {FQCN: {"state": "audited", "profile": str(tmp / "fleet-test.toml"), "executable": exe}}
    steps = [
        # name, ansible-playbook options, tasks
        ("check", ["--check", "--diff"], [audit, apply]),
        # the apply, then the same task again in check mode and for real, and an audit
        ("apply", ["--diff"], [apply, {**apply, "check_mode": True}, apply, audit]),
        (
            "rollback",
            ["--diff"],
            [
                {**rollback, "check_mode": True},
                rollback,
                rollback,
                {FQCN: {**apply[FQCN], "profile": str(tmp / "bad.toml")}},
            ],
        ),
        # Keys already set by an apply without --persist: only the sysctl.d file is left to change.
        (
            "file-only",
            [],
            [
                {FQCN: {**apply[FQCN], "persist": False}},
                {**apply, "check_mode": True},
                apply,
                {**rollback, "check_mode": True},
                rollback,
                rollback,
                rollback,
                # netns: the other namespace, by path; this one is left alone
                {FQCN: {**apply[FQCN], "persist": False, "netns": netns_b}},
                {FQCN: {**audit[FQCN], "netns": netns_b}},
                {FQCN: {**rollback[FQCN], "netns": netns_b}},
                {FQCN: {**rollback[FQCN], "netns": netns_b}},
                {FQCN: {**apply[FQCN], "profile": "no-such-profile"}},
            ],
        ),
    ]
    inventory = "localhost,"
    cfg_steps = []
    for name, opts, tasks in steps:
        out = tmp / f"{name}.results.json"
        book = tmp / f"{name}.yml"
        playbook(book, out, tasks)
        cfg_steps.append(
            {"name": name, "out": str(out), "argv": ansible_argv("playbook", "-i", inventory, *opts, str(book))}
        )
    # The rolling playbook of the collection, on a host with the profile rolled back: audit, role, audit.
    rolling_vars = {
        "tcptune_profile": str(tmp / "fleet-test.toml"),
        "tcptune_install": False,
        "tcptune_executable": exe,
        "tcptune_state_dir": str(state),
        "tcptune_doctor_interval": 0,
        "ansible_connection": "local",
    }
    rolling = ansible_argv("playbook", "-i", inventory, "-e", json.dumps(rolling_vars), "tcptune.tcptune.rolling_apply")
    # First with a risky value outside the profile (tcp_timestamps=0): the audit stops the run.
    cfg_steps.append({"name": "rolling-risky", "out": "", "argv": rolling, "write": {RISKY: "0"}})
    cfg_steps.append({"name": "rolling", "out": "", "argv": rolling, "write": {RISKY: "1"}})
    # The role as a user runs it: pip installs tcptune into a virtual environment, then the apply
    # uses that venv's tcptune.  The wheel is built here, outside the namespace (it has no
    # network: pip's build isolation would wait a minute for an index); inside, pip installs it
    # with --no-index --no-deps (typer & co. come from the system site), as on an air-gapped fleet.
    wheels = tmp / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("tcptune-*.whl")
    role_vars = {
        "tcptune_pip_name": str(wheel),
        "tcptune_virtualenv": str(tmp / "venv"),
        "tcptune_virtualenv_command": f"{sys.executable} -m venv",
        "tcptune_virtualenv_site_packages": True,
        "tcptune_pip_extra_args": "--no-deps --no-index",
        "tcptune_profile": str(tmp / "fleet-test.toml"),
        "tcptune_state_dir": str(state),
        "tcptune_doctor_interval": 0,
    }
    book = tmp / "role.yml"
    book.write_text(
        json.dumps(
            [
                {
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "roles": [{"role": "tcptune.tcptune.tcptune", **role_vars}],
                }
            ]
        )
    )
    # The system's site already holds this tcptune, as on a CI machine that ran
    # `pip install .` (a venv with system site packages then sees it and pip skips the venv):
    # the same wheel in a directory on PYTHONPATH, instead of the checkout.
    system_site = tmp / "system-site"
    placed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(system_site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert placed.returncode == 0, placed.stderr
    cfg_steps.append(
        {
            "name": "role",
            "out": "",
            "argv": ansible_argv("playbook", "-i", inventory, str(book)),
            "env": {"PYTHONPATH": str(system_site)},
        }
    )
    cfg = {
        "keys": sorted(WANT) + [RISKY],
        "persist_file": PERSIST_FILE,
        "snapshots": str(state / "snapshots"),
        "netns_b": netns_b,
        "env": ansible_env(tmp),
        "steps": cfg_steps,
        "report": str(tmp / "report.json"),
    }
    (tmp / "cfg.json").write_text(json.dumps(cfg))
    (tmp / "driver.py").write_text(DRIVER)
    argv = [
        "unshare",
        "-n",
        "-m",
        "--propagation",
        "private",
        sys.executable,
        str(tmp / "driver.py"),
        str(tmp / "cfg.json"),
    ]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads((tmp / "report.json").read_text())
    assert report["netns"] != os.stat("/proc/self/ns/net").st_ino, "the driver ran in the test's network namespace"
    report["tmp"] = str(tmp)
    return report


def step(run, name):
    s = run["steps"][name]
    return s, s["results"]


def show(s) -> str:
    return f"rc={s['rc']}\n--- stdout\n{s['stdout'][-4000:]}\n--- stderr\n{s['stderr'][-2000:]}"


def test_namespace_starts_at_kernel_defaults(run):
    init = run["initial"]
    assert init["persist_file"] is None and init["snapshots"] == [] and init["sysctl_d"] == []
    assert all(init["sysctls"][k] != v for k, v in WANT.items()), init["sysctls"]


def test_check_mode_reports_changed_and_changes_nothing(run):
    s, r = step(run, "check")
    assert s["rc"] == 0, show(s)
    audit, apply = r["t0"], r["t1"]
    assert audit["changed"] is False and audit["drift"] is True
    assert {f["key"] for f in audit["findings"] if f["verdict"] == "drift"} == set(WANT)
    assert apply["changed"] is True, apply
    assert apply["snapshot"] is None and apply["written"] == []
    assert "check mode" in apply["msg"]
    # the kernel and the file system say the same
    assert s["after"]["sysctls"] == run["initial"]["sysctls"]
    assert s["after"]["persist_file"] is None and s["after"]["snapshots"] == []
    assert "changed=1" in s["stdout"]


def test_diff_shows_each_key_before_and_after(run):
    s, r = step(run, "check")
    diff = r["t1"]["diff"][0]
    init = run["initial"]["sysctls"]
    assert diff["before"] == {k: init[k] for k in WANT}
    assert diff["after"] == WANT
    # what --diff prints: one -/+ line pair per key
    for key, value in WANT.items():
        assert f'-    "{key}": "{init[key]}"' in s["stdout"], show(s)
        assert f'+    "{key}": "{value}"' in s["stdout"], show(s)


def test_apply_changes_the_keys_persists_and_returns_the_snapshot(run):
    s, r = step(run, "apply")
    assert s["rc"] == 0, show(s)
    res = r["t0"]
    assert res["changed"] is True
    assert s["after"]["sysctls"] == {**run["initial"]["sysctls"], **WANT}  # read from /proc/sys in the namespace
    assert res["snapshot"] and s["after"]["snapshots"] == [res["snapshot"] + ".json"]
    assert res["undo"] == f"tcptune rollback {res['snapshot']}"
    assert sorted(res["written"]) == sorted(WANT)
    text = s["after"]["persist_file"]
    assert text is not None and all(f"{k} = {v}" in text.splitlines() for k, v in WANT.items())
    assert res["persist"]["written"] is True
    assert res["msg"].startswith("applied fleet-test: 3 key(s) and /etc/sysctl.d/90-tcptune.conf written")
    # --diff: the keys, and the sysctl.d file from nothing to tcptune's text
    keys, file_diff = res["diff"]
    assert keys["after"] == WANT
    assert file_diff["before"] == "" and file_diff["after"] == text
    assert "+net.ipv4.tcp_fin_timeout = 20" in s["stdout"], show(s)


def test_second_run_is_unchanged_in_check_mode_and_for_real(run):
    s, r = step(run, "apply")
    assert s["rc"] == 0, show(s)
    check, real, audit = r["t1"], r["t2"], r["t3"]
    assert check["changed"] is False, check
    assert real["changed"] is False and real["snapshot"] is None, real
    assert "already applied" in real["msg"]
    assert check.get("diff", []) == [] and real.get("diff", []) == []  # nothing for --diff to show
    assert audit["changed"] is False and audit["drift"] is False and audit["findings"] == []
    assert len(s["after"]["snapshots"]) == 1  # no second snapshot
    assert "changed=1 " in s["stdout"]  # the first apply only


def test_rollback_restores_then_reports_nothing_to_do(run):
    s, r = step(run, "rollback")
    check, real, again = r["t0"], r["t1"], r["t2"]
    snap = step(run, "apply")[1]["t0"]["snapshot"]
    assert check["changed"] is True and check["snapshot"] == snap, check
    # the check-mode rollback changed nothing: the real one still had all three keys to restore
    assert real["changed"] is True and sorted(real["written"]) == sorted(WANT), real
    assert real["persist_restored"] is True
    assert again["changed"] is False and "nothing to roll back" in again["msg"], again
    assert s["after"]["sysctls"] == run["initial"]["sysctls"]
    assert s["after"]["persist_file"] is None  # it did not exist before the apply
    assert real["diff"][0]["before"] == WANT


def test_bad_profile_fails_with_tcptunes_one_line_error(run):
    s, r = step(run, "rollback")
    bad = r["t3"]
    assert s["rc"] == 2, show(s)  # ansible-playbook: a task failed
    assert bad["failed"] is True and bad["rc"] == 2
    msg = bad["msg"]
    assert msg.startswith("tcptune: error: ") and "\n" not in msg
    assert "bad.toml" in msg, msg  # names the file (and line)
    assert "fatal: [localhost]: FAILED!" in s["stdout"] and msg in s["stdout"]
    assert s["after"]["sysctls"] == run["initial"]["sysctls"]

    s, r = step(run, "file-only")
    assert s["rc"] == 2 and r["t11"]["failed"] is True
    assert r["t11"]["msg"].startswith("tcptune: error: no profile named 'no-such-profile'"), r["t11"]["msg"]


def test_a_change_of_only_the_sysctl_d_file_is_a_change_in_check_mode_and_for_real(run):
    s, r = step(run, "file-only")
    keys_only, check, real, rb_check, rb_file, rb_keys, rb_none = (r[f"t{i}"] for i in range(7))
    assert keys_only["changed"] is True and keys_only["persist"] is None
    assert check["changed"] is True and check["summary"]["change"] == 0, check
    assert real["changed"] is True and real["written"] == [] and real["persist"]["written"] is True, real
    # rolling back the file-only apply: check mode sees the file (from the snapshot), the real run removes it
    assert rb_check["changed"] is True and "sysctl.d file" in rb_check["msg"], rb_check
    assert rb_file["changed"] is True and rb_file["persist_restored"] is True and rb_file["written"] == []
    assert rb_keys["changed"] is True and sorted(rb_keys["written"]) == sorted(WANT)
    assert rb_none["changed"] is False
    assert s["after"]["sysctls"] == run["initial"]["sysctls"] and s["after"]["persist_file"] is None


def test_netns_option_works_on_the_other_namespace_only(run):
    s, r = step(run, "file-only")
    applied, audit, rolled, again = (r[f"t{i}"] for i in range(7, 11))
    assert applied["changed"] is True and sorted(applied["written"]) == sorted(WANT), applied
    assert applied["target"] != step(run, "check")[1]["t1"]["target"]
    assert audit["drift"] is False, audit  # in the other namespace the profile holds
    assert rolled["changed"] is True and rolled["snapshot"] == applied["snapshot"], rolled
    assert again["changed"] is False, again
    assert s["after"]["netns_b"] == run["initial"]["netns_b"]  # read with nsenter: restored
    assert s["after"]["sysctls"] == run["initial"]["sysctls"]  # this namespace never changed


def test_rolling_playbook_stops_on_audit_findings_before_any_change(run):
    s = run["steps"]["rolling-risky"]
    assert s["rc"] == 2, show(s)
    out = s["stdout"]
    assert "TASK [Stop on findings the profile does not fix]" in out
    assert "net.ipv4.tcp_timestamps is warning" in out, show(s)
    assert "Apply tcptune profile" not in out  # the second play never started
    assert s["after"]["sysctls"] == {**run["initial"]["sysctls"], RISKY: "0"}
    assert s["after"]["persist_file"] is None


def test_rolling_playbook_audits_applies_with_role_and_runs_doctor(run):
    s = run["steps"]["rolling"]
    assert s["rc"] == 0, show(s)
    out = s["stdout"]
    for task in ("Audit against the profile", "Apply tcptune profile", "Run tcptune doctor", "Audit again"):
        assert task in out, show(s)
    assert {k: s["after"]["sysctls"][k] for k in WANT} == WANT
    assert s["after"]["persist_file"] is not None
    assert "undo: tcptune rollback " in out, show(s)


def test_role_installs_tcptune_with_pip_and_applies_idempotently(run):
    s = run["steps"]["role"]
    assert s["rc"] == 0, show(s)
    out = s["stdout"]
    venv = Path(run["tmp"]) / "venv"
    assert (venv / "bin/tcptune").exists()
    assert list(venv.glob("lib/python*/site-packages/tcptune/__init__.py")), "pip did not install tcptune into the venv"
    # pip found the system's copy, so the role installed tcptune into the venv on its own.
    install = out.split("TASK [tcptune.tcptune.tcptune : Install tcptune into the virtual environment")[1].split(
        "TASK ["
    )[0]
    assert "changed: [localhost]" in install, show(s)
    apply = out.split("TASK [tcptune.tcptune.tcptune : Apply tcptune profile")[1].split("TASK [")[0]
    assert "ok: [localhost]" in apply, show(s)  # the rolling playbook had applied it already
    assert "TASK [tcptune.tcptune.tcptune : Run tcptune doctor]" in out
    assert {k: s["after"]["sysctls"][k] for k in WANT} == WANT


def test_ansible_doc_renders_module_and_role(tmp_path):
    env = ansible_env(tmp_path)
    p = subprocess.run(ansible_argv("doc", FQCN), capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for word in ("OPTIONS", "audited", "applied", "rolled_back", "persist", "state_dir", "netns", "executable"):
        assert word in out
    assert "EXAMPLES" in out and "RETURN VALUES" in out and "snapshot" in out
    assert "check_mode" in out and "diff_mode" in out
    p = subprocess.run(
        ansible_argv("doc", "-t", "role", "tcptune.tcptune.tcptune"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "tcptune_profile" in p.stdout and "default: web-server" in p.stdout


def test_collection_builds_with_ansible_galaxy(tmp_path):
    p = subprocess.run(
        ansible_argv(
            "galaxy",
            "collection",
            "build",
            "--output-path",
            str(tmp_path),
            str(COLLECTIONS / "ansible_collections/tcptune/tcptune"),
        ),
        capture_output=True,
        text=True,
        env=ansible_env(tmp_path),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    (tarball,) = tmp_path.glob("tcptune-tcptune-*.tar.gz")
    import tarfile

    with tarfile.open(tarball) as tf:
        names = set(tf.getnames())
    assert {
        "plugins/modules/tcptune_profile.py",
        "roles/tcptune/tasks/main.yml",
        "playbooks/rolling_apply.yml",
    } <= names


def test_examples_are_valid_yaml_tasks_of_this_module():
    import ast

    import yaml

    src = (COLLECTIONS / "ansible_collections/tcptune/tcptune/plugins/modules/tcptune_profile.py").read_text()
    docs = {
        n.targets[0].id: n.value.value
        for n in ast.parse(src).body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
    }
    spec = yaml.safe_load(docs["DOCUMENTATION"])["options"]
    for task in yaml.safe_load(docs["EXAMPLES"]):
        args = task.get(FQCN)
        if args is not None:
            assert set(args) <= set(spec), set(args) - set(spec)
    assert yaml.safe_load(docs["RETURN"])["snapshot"]["type"] == "str"
