"""README's test command and .ci/run's must be the same line, so a newcomer runs what CI runs."""

from __future__ import annotations

import re


def test_ci_runs_the_readme_test_command(repo_root):
    readme = (repo_root / "README.md").read_text()
    ci = (repo_root / ".ci/run").read_text()
    commands = [c.split(" #")[0].strip() for c in re.findall(r"^(pip install .*)$", readme, re.M)]
    test_cmd = next(c for c in commands if "[test]" in c)
    assert test_cmd in ci.splitlines(), f"{test_cmd!r} not in .ci/run"
    assert "TCPTUNE_REQUIRE_NETNS=1" in ci
