"""`profiles validate a b c` checks every file, one line each, and exits with the worst (issue 10 #12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1", TCPTUNE_PROFILE_DIRS="")
    return subprocess.run([sys.executable, "-m", "tcptune", *args], capture_output=True, text=True, env=env, timeout=60)


def _files(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[settings]\n"net.ipv4.tcp_syn_retries" = 3\n"net.ipv4.tcp_sack" = 1\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[settings]\n"net.ipv4.tcp_syn_retries" = 300\n')
    also = tmp_path / "also.toml"
    also.write_text('[settings]\n"net.ipv4.tcp_fin_timeout" = 30\n')
    return good, bad, also


def test_every_file_gets_one_line_and_the_worst_exit_code(tmp_path):
    good, bad, also = _files(tmp_path)
    r = run("profiles", "validate", str(good), str(bad), str(also))
    assert r.returncode == 2
    assert r.stdout.splitlines() == [f"{good}: ok (2 keys)", f"{also}: ok (1 key)"]
    assert r.stderr.splitlines() == [
        f"tcptune: error: {bad}:2: net.ipv4.tcp_syn_retries: value 300 is out of range [1, 127]"
    ]


def test_json_lists_every_file_even_when_one_is_bad(tmp_path):
    good, bad, also = _files(tmp_path)
    r = run("profiles", "validate", str(good), str(bad), str(also), "--json")
    assert r.returncode == 2
    results = json.loads(r.stdout)["results"]
    assert [(x["path"], x["valid"]) for x in results] == [(str(good), True), (str(bad), False), (str(also), True)]
    assert results[1]["error"].startswith(f"{bad}:2:") and results[0]["keys"] == 2


def test_all_good_is_exit_0(tmp_path):
    good, _, also = _files(tmp_path)
    r = run("profiles", "validate", str(good), str(also))
    assert r.returncode == 0 and r.stderr == ""
