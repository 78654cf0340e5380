"""A doctor bundle's record (tcptune-bundle.json) read back: any malformed record is one clear error.

The tree is the captured fresh-namespace root (tests/data/root-fresh-netns-6.18, see its
SOURCE) plus the captured counters of tests/data/proc_net_snmp; only the record varies.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.source import Host
from tcptune.ops.doctor import BUNDLE_FORMAT, BUNDLE_META, run_doctor

DATA = Path(__file__).resolve().parents[1] / "data"
GOOD = {
    "format": BUNDLE_FORMAT,
    "window_seconds": 2.0,
    "listeners": [["127.0.0.1", 80, 3, 2, "web (pid 1)"]],
    "close_wait": [["app (pid 7)", 7, 40, 41, 50, 1024, True]],
    "fd_heavy": [],
    "close_wait_seconds": 2.0,
    "stalls": [["app (pid 7)", "zero-window", 1, 5000, "10.0.0.1:1 <- 10.0.0.2:80"]],
    "retransmitting": {"10.0.0.2": 1},
    "setting_issues": [["net.ipv4.tcp_syncookies", "risky", "0", None, "syncookies disabled", "ip-sysctl.rst"]],
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    shutil.copytree(DATA / "root-fresh-netns-6.18", root, dirs_exist_ok=True)
    for name in ("netstat", "snmp"):
        text = (DATA / f"proc_net_snmp/fresh-netns-6.18.{name}").read_text()
        for suffix in ("", ".before"):
            (root / f"proc/net/{name}{suffix}").write_text(text)
    return root


def _run(root: Path, record) -> list[str]:
    (root / BUNDLE_META).write_text(json.dumps(record))
    return sorted(f.check for f in run_doctor(Host(root), 2.0).findings)


def test_a_record_gives_back_the_findings_the_live_run_saved(tree):
    assert _run(tree, GOOD) == ["accept-queue", "close-wait", "receiver-not-reading", "settings"]


def test_a_record_from_before_the_process_checks_still_reads(tree):
    old = {k: GOOD[k] for k in ("format", "window_seconds", "listeners")}  # what every bundle has had
    assert _run(tree, old) == ["accept-queue"]


def _values():
    return st.recursive(
        st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
        max_leaves=20,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(GOOD)), _values())
def test_any_malformed_field_is_a_bad_input_error_or_is_read(tree, key, value):
    record = {**GOOD, key: value}
    try:
        _run(tree, record)
    except TcptuneError as exc:
        assert exc.exit_code == ExitCode.BAD_INPUT and BUNDLE_META in str(exc)
