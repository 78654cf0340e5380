"""Shell completion through the real bash script Typer generates (`tcptune --show-completion bash`).

A `tcptune` on a private PATH runs this checkout; bash sources the script, fills COMP_WORDS
as it would on Tab, and calls the completion function.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def bash_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("bin")
    (d / "tcptune").write_text(f'#!/bin/sh\nexec {sys.executable} -m tcptune "$@"\n')
    (d / "tcptune").chmod(0o755)
    env = {**os.environ, "PATH": f"{d}:{os.environ['PATH']}"}
    script = subprocess.run(
        ["tcptune", "--show-completion", "bash"], capture_output=True, text=True, env=env, timeout=60
    ).stdout
    assert "complete -o default -F _tcptune_completion tcptune" in script
    path = d / "tcptune.bash"
    path.write_text(script)
    return env, path


def complete(bash_env, *words: str) -> list[str]:
    env, script = bash_env
    line = " ".join(f"'{w}'" for w in words)
    code = f'source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _tcptune_completion tcptune; printf "%s\\n" "${{COMPREPLY[@]}}"'
    r = subprocess.run(["bash", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


def test_a_command_prefix_completes(bash_env):
    assert complete(bash_env, "tcptune", "ex") == ["explain"]
    assert set(complete(bash_env, "tcptune", "s")) >= {"show", "states", "snapshots"}


def test_profile_names_complete_for_apply(bash_env):
    assert complete(bash_env, "tcptune", "apply", "web") == ["web-server"]


def test_doctor_checks_complete(bash_env):
    assert complete(bash_env, "tcptune", "doctor", "--check", "accept") == ["accept-queue"]


def test_a_key_prefix_completes_for_explain_and_show(bash_env):
    assert complete(bash_env, "tcptune", "explain", "tcp_syn_r") == ["tcp_syn_retries"]
    assert "net.ipv4.tcp_fin_timeout" in complete(bash_env, "tcptune", "show", "net.ipv4.tcp_fin")


def test_audit_profile_completes(bash_env):
    assert complete(bash_env, "tcptune", "audit", "-p", "kernel-d") == ["kernel-default"]
