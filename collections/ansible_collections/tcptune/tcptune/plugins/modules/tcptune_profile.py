#!/usr/bin/python
# Copyright: tcptune contributors
# MIT License (see the LICENSE of the tcptune project)
"""Ansible module: audit, apply or roll back a tcptune profile on the managed host.

It runs the tcptune CLI there and reads only its --json output (the shapes
tcptune(8) documents as stable), so the module never re-implements tcptune's
transaction: snapshots, locks, read-back and rollback stay tcptune's.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tcptune_profile
short_description: Audit, apply or roll back a tcptune TCP sysctl profile
version_added: "0.1.0"
description:
  - Runs C(tcptune) on the managed host and reports its result the Ansible way.
  - C(state=audited) compares the live sysctls with O(profile) (C(tcptune audit --json)); it never
    changes anything and returns the findings.
  - C(state=applied) applies O(profile) as one tcptune transaction (C(tcptune apply --yes --json));
    a snapshot of the old values is saved in O(state_dir), every key is written and read back, and a
    rejected write puts everything back. RV(changed) is true only when a key (or, with O(persist), the
    sysctl.d file) was really written, so a second identical run reports C(changed=false).
  - C(state=rolled_back) restores the values a snapshot saved (C(tcptune rollback --json)), by default
    the newest applied snapshot of this network namespace; when there is nothing left to roll back it
    reports C(changed=false).
  - In check mode C(applied) and C(rolled_back) run tcptune's own C(--dry-run) and report what a real
    run would change.
  - On failure the task fails with tcptune's one-line error (what, where, how to fix) as RV(msg).
requirements:
  - tcptune on the managed host (the C(tcptune.tcptune.tcptune) role installs it), run as root or
    with CAP_NET_ADMIN for C(applied) and C(rolled_back).
options:
  state:
    description:
      - V(audited) only reads; V(applied) applies O(profile); V(rolled_back) restores a snapshot.
    type: str
    choices: [audited, applied, rolled_back]
    default: applied
  profile:
    description:
      - A built-in profile name (C(tcptune profiles list)) or a path to a C(.toml) profile on the
        managed host.
      - Required for V(audited) and V(applied); ignored by V(rolled_back).
    type: str
  persist:
    description:
      - With V(applied), also write tcptune's sysctl.d file (C(/etc/sysctl.d/90-tcptune.conf)) so the
        profile survives a reboot; a rollback puts back the file it replaced.
    type: bool
    default: false
  state_dir:
    description:
      - Where tcptune keeps its snapshots and lock (C(--state-dir)). Default C($TCPTUNE_STATE_DIR),
        else C(/var/lib/tcptune).
    type: path
  netns:
    description:
      - Work on this network namespace instead of the one the module runs in (C(--netns)), an
        C(ip netns) name, a pid or C(/proc/PID/ns/net). Needs CAP_SYS_ADMIN.
    type: str
  snapshot:
    description:
      - With V(rolled_back), the snapshot id to restore (see C(tcptune snapshots)). By default the
        newest applied or unfinished snapshot of this network namespace.
    type: str
  force:
    description:
      - Passed as C(--force). With V(applied) and O(persist), replace a sysctl.d file that tcptune did
        not write (its text is kept in the snapshot); with V(rolled_back), put the old file back even
        though it was edited after the apply (a copy is kept in the state directory).
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for another apply or rollback on the same namespace (C(--lock-timeout)).
        tcptune's default is 30.
    type: float
  strict:
    description:
      - With V(audited), count risky values (verdict C(warning)) as findings too (C(--strict)); the
        module still does not fail on findings, use RV(drift) or RV(summary) in C(failed_when).
    type: bool
    default: false
  executable:
    description:
      - How to run tcptune on the managed host, split like a shell word list, for example
        C(tcptune), C(/opt/tcptune/bin/tcptune) or C(/usr/bin/python3 -m tcptune).
    type: str
    default: tcptune
attributes:
  check_mode:
    support: full
    description: C(applied) and C(rolled_back) run tcptune's C(--dry-run); C(audited) only reads anyway.
  diff_mode:
    support: full
    description: The keys that change, before and after; with O(persist) also the sysctl.d file.
  platform:
    platforms: posix
notes:
  - In check mode with O(persist), whether the sysctl.d file would be rewritten is tcptune's own
    answer, the dry run's C(persist.would_write), true when the file's text differs from what tcptune would write.
  - tcptune's warnings (a sysctl.d file that overrides the profile at boot, an unfinished earlier
    apply) are passed on as Ansible warnings.
  - Every JSON shape and exit status the module relies on is in tcptune(8) (C(man tcptune)).
author:
  - tcptune contributors
"""

EXAMPLES = r"""
- name: See what the web-server profile would change (also run with --check --diff)
  tcptune.tcptune.tcptune_profile:
    profile: web-server
    state: audited
  register: audit

- name: Stop when this host drifted from the profile
  ansible.builtin.assert:
    that: not audit.drift
    fail_msg: "{{ audit.msg }}"

- name: Apply it, surviving reboots
  tcptune.tcptune.tcptune_profile:
    profile: web-server
    persist: true
  register: applied

- name: Apply a profile file shipped with the playbook, in a container's network namespace
  tcptune.tcptune.tcptune_profile:
    profile: /etc/tcptune/profiles/edge.toml
    netns: web1
    state_dir: /var/lib/tcptune-web1

- name: Undo exactly that apply
  tcptune.tcptune.tcptune_profile:
    state: rolled_back
    snapshot: "{{ applied.snapshot }}"

- name: Run the checkout's tcptune with a given interpreter
  tcptune.tcptune.tcptune_profile:
    profile: fast-fail-client
    executable: /usr/bin/python3 -m tcptune
"""

RETURN = r"""
changed:
  description: True only when tcptune wrote a key or the sysctl.d file (check mode, would write).
  returned: always
  type: bool
msg:
  description: One line saying what happened, or tcptune's one-line error when the task failed.
  returned: always
  type: str
  sample: "applied web-server: 7 key(s) written, 1 already set; snapshot 20261202T060050Z-42f190"
snapshot:
  description: The snapshot id of this apply (undo with C(state=rolled_back, snapshot=ID)), or the
    snapshot a rollback restored; null when nothing was written.
  returned: when state is applied or rolled_back
  type: str
  sample: 20261202T060050Z-42f190
undo:
  description: The command that undoes this apply.
  returned: when state is applied
  type: str
  sample: tcptune rollback 20261202T060050Z-42f190
changes:
  description: tcptune's plan, one row per key of the profile (or of the snapshot); C(status) is
    C(change), C(same), C(missing) (this kernel lacks it) or C(read-only).
  returned: when state is applied or rolled_back
  type: list
  elements: dict
  sample: [{"key": "net.ipv4.tcp_syn_retries", "current": "6", "new": "2", "status": "change",
            "required": false, "reason": "connect() to a silent peer ..."}]
written:
  description: The keys written and read back (empty in check mode).
  returned: when state is applied or rolled_back
  type: list
  elements: str
findings:
  description: The audit rows that need attention (verdict C(drift), C(warning), C(unsupported) or
    C(removed)), each with C(key), C(expected), C(actual), C(verdict), C(reason).
  returned: when state is audited
  type: list
  elements: dict
summary:
  description: Counts per action (applied, rolled_back) or per verdict (audited).
  returned: success
  type: dict
  sample: {"change": 7, "same": 1, "missing": 1, "read-only": 0}
drift:
  description: True when the audit found a drift (or, with O(strict), a risky value).
  returned: when state is audited
  type: bool
persist:
  description: With O(persist), tcptune's persist record (path, written, boot_values, overrides,
    loader); null without.
  returned: when state is applied
  type: dict
diff:
  description: Before and after of every key that changes (and of the sysctl.d file when it is
    rewritten), shown by C(--diff).
  returned: when state is applied or rolled_back and diff mode is on
  type: list
  elements: dict
target:
  description: What tcptune worked on, as it names it (for example C(network namespace net:[4026532524])
    or C(live host)).
  returned: success
  type: str
profile_origin:
  description: The profile file tcptune read.
  returned: when state is audited or applied
  type: str
tcptune_warnings:
  description: tcptune's own warnings from its JSON (also passed on as Ansible warnings).
  returned: when state is applied
  type: list
  elements: str
cmd:
  description: The tcptune command line that ran.
  returned: always
  type: list
  elements: str
rc:
  description: tcptune's exit status (see EXIT STATUS in tcptune(8)); a successful task leaves it out,
    because Ansible fails any task whose C(rc) is not 0 (an audit with drift exits 1, which is no failure,
    see RV(drift)).
  returned: failure
  type: int
stderr:
  description: tcptune's standard error (warnings, notes, the error line).
  returned: when tcptune ran
  type: str
"""

# Imports follow the documentation, as Ansible's module layout asks (ansible-test validate-modules).
import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

# Snapshot statuses `tcptune rollback` (no id) would pick (tcptune(8), rollback).
_ROLLBACK_PENDING = {"applied", "pending", "restore-incomplete"}
# tcptune's sysctl.d file (`apply --persist-file` default; the module keeps the default root /).
PERSIST_FILE = "/etc/sysctl.d/90-tcptune.conf"


class Tcptune:
    """One managed host's tcptune, run with the module's common options."""

    def __init__(self, module):
        self.module = module
        self.argv = shlex.split(module.params["executable"])
        if not self.argv:
            module.fail_json(msg="executable is empty: set it to tcptune or e.g. '/usr/bin/python3 -m tcptune'")
        if os.sep not in self.argv[0]:
            found = module.get_bin_path(self.argv[0])
            if not found:
                module.fail_json(
                    msg=f"{self.argv[0]}: not found on the managed host's PATH: install tcptune "
                    "(role tcptune.tcptune.tcptune) or set executable, e.g. '/usr/bin/python3 -m tcptune'",
                    cmd=self.argv,
                )
            self.argv[0] = found

    def run(self, *args, ok_rcs=(0,)):
        """Run tcptune ARGS; return (rc, its JSON or None when rc is not in ok_rcs, stderr, argv).

        Fails the task when an accepted exit status comes without JSON (not tcptune, or too old).
        """
        cmd = self.argv + list(args)
        # LC_ALL=C keeps tcptune's messages plain; no stdin, so it never waits for a terminal.
        rc, out, err = self.module.run_command(cmd, environ_update={"LC_ALL": "C", "NO_COLOR": "1"})
        if rc not in ok_rcs:
            return rc, None, err, cmd
        try:
            return rc, json.loads(out), err, cmd
        except ValueError:
            self.module.fail_json(
                msg=f"tcptune printed no JSON (exit {rc}): is {self.argv[0]} tcptune?",
                cmd=cmd,
                rc=rc,
                stdout=out,
                stderr=err,
            )

    def fail(self, rc, err, cmd, **extra):
        self.module.fail_json(msg=error_line(err, rc), rc=rc, stderr=err, cmd=cmd, **extra)


def error_line(stderr, rc):
    """tcptune's one-line error: the 'tcptune: error:' line, else the last line it printed."""
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("tcptune: error:"):
            return ln
    return lines[-1] if lines else f"tcptune exited {rc} without a message"


def pass_warnings(module, stderr):
    # tcptune prints each warning as one "warning: ..." line on stderr (apply, rollback).
    seen = set()
    for ln in (stderr or "").splitlines():
        if ln.startswith("warning: ") and ln not in seen:
            seen.add(ln)
            module.warn("tcptune: " + ln[len("warning: ") :])


def common_args(p, *, lock=True):
    args = []
    if p["state_dir"]:
        args += ["--state-dir", p["state_dir"]]
    if p["netns"]:
        args += ["--netns", p["netns"]]
    if lock and p["lock_timeout"] is not None:
        args += ["--lock-timeout", str(p["lock_timeout"])]
    if p["force"]:
        args.append("--force")
    return args


def words(value):
    """A sysctl value as one text line: tcptune compares word by word (tabs and spaces do not matter).

    Accepts the JSON value as a string ("4096 131072"), a number or a list of numbers.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return " ".join(str(value).split())


def key_diff(changes, before_header, after_header):
    """--diff of the keys that change, or None when none does (a file-only change)."""
    rows = [c for c in changes if c.get("status") == "change"]
    if not rows:
        return None
    return {
        "before": {c["key"]: words(c.get("current")) for c in rows},
        "after": {c["key"]: words(c.get("new")) for c in rows},
        "before_header": before_header,
        "after_header": after_header,
    }


def read_text(path):
    """A file's text, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def persist_file_path(persist):
    return os.path.join(persist["root"], persist["path"].lstrip("/"))


def do_audit(module, tt):
    p = module.params
    args = ["audit", "--profile", p["profile"], "--json"]
    if p["netns"]:
        args += ["--netns", p["netns"]]
    if p["strict"]:
        args.append("--strict")
    rc, data, err, cmd = tt.run(*args, ok_rcs=(0, 1))  # 1 = findings, not a failure of the task
    if data is None:
        tt.fail(rc, err, cmd)
    findings = [f for f in data.get("findings", []) if f.get("verdict") != "ok"]
    summary = data.get("summary", {})
    counts = ", ".join(f"{n} {v}" for v, n in sorted(summary.items()) if v != "ok" and n) or "no findings"
    module.exit_json(
        changed=False,
        msg=f"audit of {data.get('source')} against {data.get('profile')}: {counts}",
        findings=findings,
        summary=summary,
        drift=rc == 1,
        notes=data.get("notes", []),
        target=data.get("source"),
        profile_origin=data.get("profile_origin"),
        cmd=cmd,
        stderr=err,
    )


def do_apply(module, tt):
    p = module.params
    args = ["apply", p["profile"], "--json"] + common_args(p, lock=not module.check_mode)
    if p["persist"]:
        args.append("--persist")
    args.append("--dry-run" if module.check_mode else "--yes")
    # The file's text before, for --diff (the module only reads it; tcptune writes it).
    file_before = read_text(PERSIST_FILE) if p["persist"] else None
    rc, data, err, cmd = tt.run(*args)
    if data is None:
        tt.fail(rc, err, cmd)
    pass_warnings(module, err)
    persist = data.get("persist")
    summary = data.get("summary", {})
    file_changed = False
    if persist:
        if module.check_mode:
            file_changed = bool(persist.get("would_write"))
        else:
            file_changed = bool(persist.get("written"))
    if module.check_mode:
        changed = summary.get("change", 0) > 0 or file_changed
    else:
        changed = data.get("result") == "applied"
    result = dict(
        changed=changed,
        snapshot=data.get("snapshot"),
        undo=data.get("undo"),
        changes=data.get("changes", []),
        written=data.get("written", []),
        skipped=data.get("skipped", []),
        summary=summary,
        persist=persist,
        notes=data.get("notes", []),
        tcptune_warnings=data.get("warnings", []),
        target=data.get("target"),
        profile_origin=data.get("profile_origin"),
        cmd=cmd,
        stderr=err,
    )
    n_change, n_same = summary.get("change", 0), summary.get("same", 0)
    what = f"{n_change} key(s)" + (f" and {persist['path']}" if file_changed else "")
    if module.check_mode:
        result["msg"] = f"would apply {data['profile']}: {what} to change, {n_same} already set (check mode)"
    elif changed:
        result["msg"] = f"applied {data['profile']}: {what} written, {n_same} already set; snapshot {data['snapshot']}"
    else:
        result["msg"] = f"{data['profile']} already applied: every key has the profile's value"
    if module._diff:
        diff = [key_diff(data.get("changes", []), f"sysctl ({data.get('target')})", f"profile {data['profile']}")]
        diff = [d for d in diff if d]
        if persist and file_changed and not module.check_mode:
            diff.append(
                {
                    "before": file_before or "",
                    "after": read_text(persist_file_path(persist)) or "",
                    "before_header": persist_file_path(persist),
                    "after_header": persist_file_path(persist),
                }
            )
        result["diff"] = diff
    module.exit_json(**result)


def netns_inode(netns):
    """Inode of the network namespace tcptune will work on (snapshots record it as target)."""
    if not netns:
        path = "/proc/self/ns/net"
    elif netns.isdigit():
        path = f"/proc/{netns}/ns/net"
    elif os.sep in netns:
        path = netns
    else:
        path = f"/run/netns/{netns}"  # where `ip netns add NAME` bind-mounts it
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def nothing_to_roll_back(module, tt):
    """After `rollback` (no id) refused: True when no snapshot of this target awaits a rollback.

    Then the host is already rolled back and the task is ok, unchanged.  A corrupt snapshot
    file keeps it a failure: tcptune refused because that file might be newer.
    """
    p = module.params
    args = ["snapshots", "--json"] + (["--state-dir", p["state_dir"]] if p["state_dir"] else [])
    _, data, _, _ = tt.run(*args)
    if data is None:
        return False
    inode = netns_inode(p["netns"])
    for snap in data.get("snapshots", []):
        if snap.get("status") == "corrupt":
            return False
        target = snap.get("target") or {}
        if target.get("kind") != "live" or (inode is not None and target.get("netns_inode") != inode):
            continue
        if snap.get("status") in _ROLLBACK_PENDING:
            return False
    return True


def file_would_be_restored(state_dir, snapshot_id):
    """Check mode: would the rollback put tcptune's sysctl.d file back (dry-run JSON does not say)?

    The snapshot (STATE/snapshots/ID.json, format tcptune-snapshot/1 in tcptune(8)) keeps the
    file's text from before the apply ("before": null when there was none); rollback leaves the
    file alone when it already holds that text.
    """
    state = state_dir or os.environ.get("TCPTUNE_STATE_DIR") or "/var/lib/tcptune"
    try:
        with open(os.path.join(state, "snapshots", f"{snapshot_id}.json"), encoding="utf-8") as fh:
            persist = json.load(fh).get("persist")
    except (OSError, ValueError, AttributeError):
        return False
    if not persist:
        return False
    return read_text(persist_file_path(persist)) != persist.get("before")


def do_rollback(module, tt):
    p = module.params
    args = ["rollback"] + ([p["snapshot"]] if p["snapshot"] else [])
    args += ["--json"] + common_args(p, lock=not module.check_mode)
    if module.check_mode:
        args.append("--dry-run")
    rc, data, err, cmd = tt.run(*args)
    if data is None:
        # Exit 2 without an id is also "nothing to roll back"; an id that is gone stays an error.
        if rc == 2 and not p["snapshot"] and nothing_to_roll_back(module, tt):
            module.exit_json(
                changed=False, msg="nothing to roll back: no applied snapshot of this target", cmd=cmd, stderr=err
            )
        tt.fail(rc, err, cmd)
    pass_warnings(module, err)
    summary = data.get("summary", {})
    n_change = summary.get("change", 0)
    if module.check_mode:
        file_back = file_would_be_restored(p["state_dir"], data.get("snapshot"))
    else:
        file_back = bool(data.get("persist_restored"))
    changed = n_change > 0 or file_back
    result = dict(
        changed=changed,
        snapshot=data.get("snapshot"),
        changes=data.get("changes", []),
        written=data.get("written", []),
        skipped=data.get("skipped", []),
        summary=summary,
        changed_since_apply=data.get("changed_since_apply", []),
        persist_restored=bool(data.get("persist_restored")),
        target=data.get("target"),
        cmd=cmd,
        stderr=err,
    )
    snap = data.get("snapshot")
    if module.check_mode:
        extra = " and the sysctl.d file" if file_back else ""
        result["msg"] = f"would roll back snapshot {snap}: {n_change} key(s){extra} to restore (check mode)"
    elif changed:
        extra = " and the sysctl.d file" if file_back else ""
        result["msg"] = f"rolled back snapshot {snap}: {n_change} key(s) restored{extra}"
    else:
        result["msg"] = f"snapshot {snap} already rolled back: every key has its value from before"
    if module._diff:
        diff = key_diff(data.get("changes", []), f"sysctl ({data.get('target')})", f"snapshot {snap}")
        result["diff"] = [diff] if diff else []
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="applied", choices=["audited", "applied", "rolled_back"]),
            profile=dict(type="str"),
            persist=dict(type="bool", default=False),
            state_dir=dict(type="path"),
            netns=dict(type="str"),
            snapshot=dict(type="str"),
            force=dict(type="bool", default=False),
            lock_timeout=dict(type="float"),
            strict=dict(type="bool", default=False),
            executable=dict(type="str", default="tcptune"),
        ),
        required_if=[("state", "audited", ["profile"]), ("state", "applied", ["profile"])],
        supports_check_mode=True,
    )
    tt = Tcptune(module)
    {"audited": do_audit, "applied": do_apply, "rolled_back": do_rollback}[module.params["state"]](module, tt)


if __name__ == "__main__":
    main()
