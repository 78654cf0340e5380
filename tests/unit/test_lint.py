"""ruff's lint and format checks, configured in pyproject.toml, are part of the suite."""

from __future__ import annotations

import subprocess
import sys


def _ruff(repo_root, *args: str) -> subprocess.CompletedProcess:
    # The ruff of this interpreter's environment (`pip install '.[test]'` brings it), not
    # whichever ruff is first on PATH.
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=repo_root, capture_output=True, text=True, timeout=120
    )


def test_ruff_lint_is_clean(repo_root):
    r = _ruff(repo_root, "check", "--output-format", "concise", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_is_clean(repo_root):
    r = _ruff(repo_root, "format", "--check", ".")
    assert r.returncode == 0, f"run `ruff format .`:\n{r.stdout}{r.stderr}"
