#!/usr/bin/env python3
"""Boot a prepared Debian kernel, run every guest check in it, print the results.

    tests/kernels/check_kernel.py [--kernel 6.1|6.12] [--record] [--keep DIR]

The checks (tests/kernels/guest_checks.py, inside the guest) are the knowledge-base check of
tests/netns/test_kb_defaults.py, the boot defaults of every key, and every probe with short
settings.  test_guest_kernels.py asserts the same results in pytest; this script is the way
to look at one kernel, and ``--record`` refreshes tests/kernels/data/ (the `sysctl -a`
dumps and the results summary the README's table comes from).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

import run_guest  # noqa: E402

DATA = HERE / "data"
GUEST_CMD = ["python3", "tests/kernels/guest_checks.py"]


def parse_junit(text: str) -> dict[str, dict]:
    """test id (function[param]) -> {"outcome": passed|failed|error|skipped, "message": ...}."""
    out = {}
    for case in ET.fromstring(text).iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = ("failed" if child.tag == "failure" else child.tag), child.get("message", "")
        out[case.get("name")] = {"outcome": outcome, "message": message}
    return out


def check(kernel: str, timeout: float = 900.0) -> dict:
    """Boot ``kernel``, run the guest checks, return everything they found (raises if the guest failed)."""
    env = {k: os.environ[k] for k in ("TCPTUNE_GUEST_LATE_S",) if k in os.environ}
    r = run_guest.run(kernel, GUEST_CMD, timeout, env=env)
    need = ("kb-junit.xml", "kb-values.json", "probes.json", "timing.json", "sysctl-a.txt", "sysctl-a-netns.txt")
    missing = [n for n in need if n not in r.files]
    if r.rc != 0 or missing:
        raise RuntimeError(
            f"guest {r.release}: exit {r.rc}{' (timed out)' if r.timed_out else ''}, missing {missing}\n"
            f"--- stdout\n{r.stdout[-2000:]}\n--- stderr\n{r.stderr[-3000:]}\n--- console\n{r.console[-2000:]}"
        )
    return {
        "release": r.release,
        "boot_s": r.boot_s,
        "guest_s": r.guest_s,
        "wall_s": round(r.wall_s, 1),
        "timing": json.loads(r.files["timing.json"]),
        "kb": parse_junit(r.files["kb-junit.xml"].decode()),
        "values": json.loads(r.files["kb-values.json"])["values"],
        "probes": json.loads(r.files["probes.json"]),
        "sysctl_a": r.files["sysctl-a.txt"].decode(),
        "sysctl_a_netns": r.files["sysctl-a-netns.txt"].decode(),
        "package": (run_guest.CACHE / "kernels" / r.release / "package").read_text().strip(),
    }


def release_version(res: dict) -> tuple[int, ...]:
    """The guest kernel's version with its stable patch level: Debian's 6.1 osrelease is the
    ABI name 6.1.0-57-amd64, the release (6.1.192) only in kernel.version of its sysctl -a."""
    from tcptune.core.sysctl_text import parse_sysctl_dump
    from tcptune.kernel.version import parse_release

    build = parse_sysctl_dump(res["sysctl_a"], "guest").get("kernel.version")
    return parse_release(res["release"], build)


def boot_defaults(res: dict) -> dict[str, dict]:
    """Every key whose kernel default the knowledge base states for this release, against the
    value the guest's initial namespace holds right after boot (nothing in the guest writes a
    sysctl before this is read: no sysctl.d, no systemd), so that value IS the kernel's."""
    from tcptune.kernel.kb import load_kb

    release = release_version(res)
    out = {}
    for param in load_kb():
        value = res["values"][param.key]["init_netns"]
        expected = param.default_for(release)
        if expected is None or value is None:
            continue  # computed or build-time (no claim), or absent (the KB check covers presence)
        ok = param.matches_default(value, release)
        out[param.key] = {"kb": expected, "guest": value, "ok": bool(ok)}
    return out


def presence(res: dict) -> dict[str, dict]:
    """Every key: does the knowledge base say this release has it (since/removed), and does
    the guest's initial namespace (which holds global and per-netns keys alike) have it?"""
    from tcptune.kernel.kb import load_kb

    release = release_version(res)
    return {
        p.key: {"kb": p.exists_in(release), "guest": res["values"][p.key]["init_netns"] is not None} for p in load_kb()
    }


def summary(res: dict) -> dict:
    """What is worth keeping in the repository: verdicts, failures, figures (no raw dumps)."""
    kb = res["kb"]
    probes = {}
    for name, e in res["probes"].items():
        margin, excess = e.get("margin_s") or [], e.get("excess_s") or []
        probes[name] = {
            "probe": e["probe"],
            "sysctls": e["sysctls"],
            "verdict": e["verdict"],
            "guest_verdict": (e.get("guest") or {}).get("verdict"),
            "textbook_verdict": (e.get("textbook") or {}).get("verdict"),
            "reason": (e.get("result") or {}).get("reason", e.get("stderr", "")[-300:]),
            "worst_margin_s": max(margin) if margin else None,
            "max_excess_s": max(excess) if excess else None,
            "took_s": e["took_s"],
        }
    bad_boot = {k: v for k, v in boot_defaults(res).items() if not v["ok"]}
    bad_presence = {k: v for k, v in presence(res).items() if v["kb"] != v["guest"]}
    from tcptune.kernel.version import format_version

    return {
        "release": res["release"],
        "version": format_version(release_version(res)),  # with the patch level from kernel.version
        "package": res["package"],
        "boot_s": res["boot_s"],
        "wall_s": res["wall_s"],
        "timing": res["timing"],
        "kb_counts": {o: sum(1 for v in kb.values() if v["outcome"] == o) for o in ("passed", "failed", "skipped")},
        "kb_failures": {k: v["message"] for k, v in kb.items() if v["outcome"] in ("failed", "error")},
        "boot_default_mismatches": bad_boot,
        "presence_mismatches": bad_presence,
        "probes": probes,
    }


def version_label(release: str) -> str:
    """'6.1.0-57-amd64' -> '6.1', '6.12.117+deb12-amd64' -> '6.12'."""
    return ".".join(release.split("-")[0].split(".")[:2])


def record(res: dict) -> list[Path]:
    """Write the guest's `sysctl -a` dumps (with a SOURCE header) and the summary to data/."""
    DATA.mkdir(exist_ok=True)
    ver = version_label(res["release"])
    header = (
        f"# SOURCE: `sysctl -a` {{where}} of Debian's {res['package']} (uname -r {res['release']}), booted by\n"
        "# tests/kernels/run_guest.py under qemu-system-x86 7.2 TCG (-smp 1 -m 1024, no NIC, lo up, nothing\n"
        "# applied: no sysctl.d, no systemd).  Refreshed with tests/kernels/check_kernel.py --record.\n"
    )
    written = []
    for name, text, where in (
        (f"sysctl-a-{ver}.txt", res["sysctl_a"], "in the initial network namespace, right after boot"),
        (f"sysctl-a-netns-{ver}.txt", res["sysctl_a_netns"], "in a fresh network namespace (unshare -n)"),
    ):
        path = DATA / name
        path.write_text(header.format(where=where) + text)
        written.append(path)
    path = DATA / f"results-{ver}.json"
    path.write_text(json.dumps(summary(res), indent=1, sort_keys=True) + "\n")
    written.append(path)
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--record", action="store_true", help="refresh tests/kernels/data/ from this run")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE.parent.parent))
    res = check(a.kernel, a.timeout)
    s = summary(res)
    print(f"{s['release']} ({s['package']}): boot {s['boot_s']} s, wall {s['wall_s']} s, guest timing {s['timing']}")
    print(f"knowledge base (test_kb_defaults.py in the guest): {s['kb_counts']}")
    for k, m in s["kb_failures"].items():
        print(f"  FAILED {k}: {m}")
    for k, v in s["boot_default_mismatches"].items():
        print(f"  BOOT DEFAULT {k}: guest {v['guest']!r}, knowledge base {v['kb']!r}")
    for k, v in s["presence_mismatches"].items():
        print(f"  PRESENCE {k}: guest has it: {v['guest']}, knowledge base says it exists: {v['kb']}")
    for name, p in s["probes"].items():
        extra = f", textbook {p['textbook_verdict']}" if p["textbook_verdict"] else ""
        print(
            f"  probe {name}: {p['verdict']} (guest tolerance {p['guest_verdict']}{extra}; "
            f"worst margin {p['worst_margin_s']} s, beyond the wheel {p['max_excess_s']} s; {p['took_s']} s)"
        )
    if a.record:
        for path in record(res):
            print(f"wrote {path.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
