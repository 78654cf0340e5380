"""After `pip install .` into a fresh virtual environment, `man tcptune` finds the pages.

man-db derives its search path from PATH (VENV/bin -> VENV/share/man), so the wheel puts
the pages in share/man/man8 and man5 (pyproject.toml shared-data).  This builds the real
wheel with the real build backend; --no-deps keeps it to tcptune itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def venv(tmp_path_factory, repo_root_module):
    if not shutil.which("man"):
        pytest.fail("man (man-db) is not installed; .ci/run installs it")
    d = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(d)], check=True, timeout=120)
    r = subprocess.run(
        [str(d / "bin/pip"), "install", "-q", "--no-deps", str(repo_root_module)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def repo_root_module():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


def _man(venv, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "MANPAGER": "cat"}
    env.pop("MANPATH", None)
    return subprocess.run(["man", *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("section,page", [("8", "tcptune"), ("5", "tcptune-profile")])
def test_man_finds_each_page_from_path_alone(venv, section, page):
    r = _man(venv, "-w", section, page)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{venv}/share/man/man{section}/{page}.{section}"


def test_man_renders_the_installed_page(venv):
    r = _man(venv, "-P", "cat", "8", "tcptune")
    assert r.returncode == 0, r.stderr
    assert "tcptune" in r.stdout and "audit" in r.stdout
