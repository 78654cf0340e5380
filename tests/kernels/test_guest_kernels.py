"""The knowledge base and the probe models on the kernels users run: Debian's 6.1 (and 6.12).

Each kernel boots once under qemu (plain TCG, tests/kernels/run_guest.py) and runs
tests/kernels/guest_checks.py: tests/netns/test_kb_defaults.py itself (every key's default,
presence and scope, as the host suite checks them on 6.18), the value of every key right
after boot against the knowledge base's default for that release, and every probe with short
settings.  Each of those results is one test case here.

Runs only with TCPTUNE_GUEST_KERNELS set (after tests/kernels/prepare.sh): "1" means 6.1,
which CI runs; "6.1,6.12" (any list) runs those.  Unset: skipped.  Set but not prepared: a
failure, as a CI that asked for it must not silently skip it.

Known disagreements are listed in KNOWN below, each with the correction that ends it; they
are strict expected failures, so a case starts failing (XPASS) the day the correction lands
and its line here is to be removed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "netns")]

import check_kernel  # noqa: E402
import guest_checks  # noqa: E402
import run_guest  # noqa: E402
import test_kb_defaults  # noqa: E402

from tcptune.kernel.kb import load_kb  # noqa: E402

ENV = "TCPTUNE_GUEST_KERNELS"
VERSIONS = {"6.1": (6, 1), "6.12": (6, 12)}


def _kernels() -> list[str]:
    raw = os.environ.get(ENV, "").strip()
    if raw in ("", "0"):
        return ["6.1"]  # collected, then skipped by the fixture with the reason
    return ["6.1"] if raw == "1" else [k.strip() for k in raw.split(",") if k.strip()]


KERNELS = _kernels()

# (kernel, check, case) -> the correction that makes the case pass.  check: "kb" (a
# test_kb_defaults.py case run in the guest), "boot" (a key's value right after boot),
# "presence" (a key exists on that release), "probe".  Empty: every disagreement found so far
# (README.md, "What the knowledge base and the models got wrong") is corrected.
KNOWN: dict[tuple[str, str, str], str] = {}

_results: dict[str, dict] = {}


@pytest.fixture(scope="session")
def guest():
    """kernel -> everything its guest run found (one boot per kernel per session)."""
    if os.environ.get(ENV, "").strip() in ("", "0"):
        pytest.skip(f"{ENV} is not set: the guest kernels need tests/kernels/prepare.sh (see tests/kernels/README.md)")

    def get(kernel: str) -> dict:
        if kernel not in _results:
            why = run_guest.prepared(kernel)
            if why:
                pytest.fail(f"{ENV} is set but the {kernel} guest cannot run: {why}")
            try:
                _results[kernel] = check_kernel.check(kernel)
            except RuntimeError as exc:
                _results[kernel] = {"error": str(exc)}
        res = _results[kernel]
        if "error" in res:
            pytest.fail(res["error"])
        return res

    return get


def _case(kernel: str, check: str, name: str):
    why = KNOWN.get((kernel, check, name))
    marks = [pytest.mark.xfail(reason=why, strict=True)] if why else []
    return pytest.param(kernel, name, marks=marks, id=f"{kernel}-{name}")


def _kb_ids() -> list[str]:
    """Every case test_kb_defaults.py has, by the ids pytest gives them."""
    ids = []
    for fname in dir(test_kb_defaults):
        fn = getattr(test_kb_defaults, fname)
        if not fname.startswith("test_") or not callable(fn):
            continue
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            ids.append(fname)
            continue
        for p in marks[0].args[1]:
            ids.append(f"{fname}[{p.key}]")
    return ids


@pytest.mark.parametrize(("kernel", "case"), [_case(k, "kb", i) for k in KERNELS for i in _kb_ids()])
def test_knowledge_base_holds_in_the_guest(guest, kernel, case):
    r = guest(kernel)["kb"].get(case)
    assert r is not None, f"{case} did not run in the {kernel} guest"
    assert r["outcome"] in ("passed", "skipped"), f"{kernel}: {r['message']}"


@pytest.mark.parametrize(("kernel", "key"), [_case(k, "boot", p.key) for k in KERNELS for p in load_kb()])
def test_value_after_boot_is_the_stated_default(guest, kernel, key):
    res = guest(kernel)
    entry = check_kernel.boot_defaults(res).get(key)
    if entry is None:
        return  # no default claimed for this release (computed, build-time or absent): nothing to contradict
    assert entry["ok"], f"{key} on {res['release']} after boot: {entry['guest']!r}, knowledge base {entry['kb']!r}"


@pytest.mark.parametrize(("kernel", "key"), [_case(k, "presence", p.key) for k in KERNELS for p in load_kb()])
def test_key_exists_exactly_where_since_and_removed_say(guest, kernel, key):
    res = guest(kernel)
    entry = check_kernel.presence(res)[key]
    assert entry["kb"] == entry["guest"], (
        f"{key} on {res['release']}: the guest {'has' if entry['guest'] else 'lacks'} it, the knowledge base "
        f"says it {'exists' if entry['kb'] else 'does not'} (since/removed)"
    )


def _probe_cases():
    return [_case(k, "probe", name) for k in KERNELS for name in guest_checks.cases(VERSIONS.get(k, (6, 1)))]


@pytest.mark.parametrize(("kernel", "case"), _probe_cases())
def test_probe_matches_the_model(guest, kernel, case):
    e = guest(kernel)["probes"][case]
    result = e.get("result")
    assert result is not None, f"{case}: the probe produced no JSON (exit {e['exit']}): {e['stderr']}"
    if guest_checks.GUEST_LATE_S == 0:
        assert result["verdict"] == "matches", f"{case} on {result['kernel']}: {result['reason']}"
        return
    # TCPTUNE_GUEST_LATE_S widens the tolerance for the guest only (a slow machine): then only
    # lateness may separate the probe's own verdict from the guest's, never a missing or extra event
    g = e["guest"]
    assert g["verdict"] == "matches", f"{case} on {result['kernel']}: {g['reason']} ({result['reason']})"
    assert all(r.get("problem") in (None, "late") for r in result["comparison"]), result["comparison"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_textbook_syn_schedule_holds_only_before_linear_timeouts(guest, kernel):
    """The tutorials' 1, 2, 4 s... schedule is what a kernel without tcp_syn_linear_timeouts
    (6.5) does, and what one with it (default 4) does not: the 'since 6.5' rule, both sides."""
    res = guest(kernel)
    e = res["probes"]["syn-r2"]
    linear = e["result"]["settings"]["tcp_syn_linear_timeouts"]
    want = "matches" if linear is None else "differs"
    assert e["textbook"]["verdict"] == want, (res["release"], linear, e["textbook"]["reason"])


@pytest.mark.parametrize("kernel", KERNELS)
def test_recorded_sysctl_dump_is_this_kernel(guest, kernel):
    """tests/kernels/data/sysctl-a-VER.txt lists the keys this kernel has (refresh with
    check_kernel.py --record when the Debian package moves on and this fails)."""
    from tcptune.core.sysctl_text import parse_sysctl_dump

    res = guest(kernel)
    path = check_kernel.DATA / f"sysctl-a-{kernel}.txt"
    recorded = parse_sysctl_dump(path.read_text(), str(path))
    live = parse_sysctl_dump(res["sysctl_a"], "guest")
    net = lambda d: {k for k in d if k.startswith(("net.ipv4.tcp", "net.core."))}  # noqa: E731
    assert net(recorded) == net(live), f"{path.name} is stale: {sorted(net(recorded) ^ net(live))}"
