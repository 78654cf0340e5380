"""A --root tree is someone else's files, read and written by root: it must never reach outside.

Each case plants something in a copy of a saved root (a symlink to a file outside, a
directory link, a FIFO, a character device, an oversized file) and runs every command that
reads the tree; the run must end within seconds with exit 2 and one line, print nothing of
the link's target, and leave the file outside byte-identical.  apply --root writes only the
tree's own regular files.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from clirunner import one_line_error, run_cli

ROOT_DATA = Path(__file__).resolve().parent.parent / "data/root-fresh-netns-6.18"
KEY_FILE = "proc/sys/net/ipv4/tcp_syn_retries"
SECRET = "s3cr3t-line-that-must-never-be-printed\n" * 50


@pytest.fixture
def tree(tmp_path) -> Path:
    dst = tmp_path / "root"
    shutil.copytree(ROOT_DATA, dst)
    return dst


@pytest.fixture
def victim(tmp_path) -> Path:
    v = tmp_path / "victim"
    v.write_text(SECRET)
    return v


# (command, whether it reads tcp_syn_retries); web-server does not set that key, so its
# audit must simply not see the link (a link is not a key file) and judge the rest.
READERS = [
    (("show",), True),
    (("show", "tcp_syn_retries"), True),
    (("explain", "tcp_syn_retries"), True),
    (("audit",), True),
    (("audit", "-p", "web-server"), False),
    (("apply", "fast-fail-client", "--dry-run"), True),
]


def _run(tree: Path, *args: str, state: Path | None = None):
    extra = ["--state-dir", str(state)] if state is not None and args[0] in ("apply", "rollback") else []
    start = time.monotonic()
    r = run_cli(*args, "--root", str(tree), *extra, timeout=20)
    return r, time.monotonic() - start


@pytest.mark.parametrize("args,reads_it", READERS, ids=[" ".join(a) for a, _ in READERS])
def test_a_symlinked_key_file_is_refused_and_its_target_never_printed(tree, victim, args, reads_it):
    (tree / KEY_FILE).unlink()
    (tree / KEY_FILE).symlink_to(victim)
    r, took = _run(tree, *args)
    assert "s3cr3t" not in r.stdout + r.stderr
    if reads_it:
        assert r.returncode == 2, r.stdout + r.stderr
        assert "symbolic link" in one_line_error(r)
    else:
        assert r.returncode in (0, 1) and not r.stderr, r.stderr
    assert took < 10
    assert victim.read_text() == SECRET


def test_apply_never_writes_through_a_planted_symlink(tree, victim, tmp_path):
    (tree / KEY_FILE).unlink()
    (tree / KEY_FILE).symlink_to(victim)
    r, _ = _run(tree, "apply", "fast-fail-client", "--yes", state=tmp_path / "state")
    assert r.returncode == 2, r.stderr
    assert "symbolic link" in one_line_error(r)
    assert victim.read_text() == SECRET


@pytest.mark.parametrize("link", ["proc", "proc/sys", "proc/sys/net", "proc/sys/net/ipv4"])
def test_a_directory_link_anywhere_on_the_way_is_refused(tree, tmp_path, link):
    outside = tmp_path / "outside"
    shutil.move(tree / link, outside)
    (tree / link).symlink_to(outside)
    before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    r, _ = _run(tree, "apply", "fast-fail-client", "--yes", state=tmp_path / "state")
    assert r.returncode == 2, r.stderr
    one_line_error(r)
    assert {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == before


def test_a_link_to_the_live_proc_sys_net_is_refused(tree):
    shutil.rmtree(tree / "proc/sys/net")
    (tree / "proc/sys/net").symlink_to("/proc/sys/net")
    r, _ = _run(tree, "show")
    assert r.returncode == 2, r.stderr
    assert "symbolic link" in one_line_error(r)


@pytest.mark.parametrize("args", [("show",), ("audit",), ("explain", "tcp_syn_retries")], ids=" ".join)
def test_a_fifo_in_the_tree_is_refused_at_once(tree, args):
    (tree / KEY_FILE).unlink()
    os.mkfifo(tree / KEY_FILE)
    r, took = _run(tree, *args)
    assert r.returncode == 2, r.stderr
    assert "FIFO" in one_line_error(r)
    assert took < 5


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_dev_zero_as_a_key_file_is_refused_not_read_forever(tree):
    (tree / KEY_FILE).unlink()
    os.mknod(tree / KEY_FILE, 0o600 | 0o020000, os.makedev(1, 5))  # S_IFCHR, /dev/zero
    r, took = _run(tree, "show")
    assert r.returncode == 2, r.stderr
    assert "character device" in one_line_error(r)
    assert took < 5


def test_an_oversized_key_file_is_an_error_that_names_the_limit(tree):
    (tree / KEY_FILE).write_bytes(b"1 " * (200 << 10))
    r, _ = _run(tree, "show")
    assert r.returncode == 2, r.stderr
    assert "larger than 64 KiB" in one_line_error(r)


def test_a_symlinked_osrelease_is_refused(tree, victim):
    rel = tree / "proc/sys/kernel/osrelease"
    rel.unlink()
    rel.symlink_to(victim)
    r, _ = _run(tree, "audit")
    assert "s3cr3t" not in r.stdout + r.stderr
    assert r.returncode == 2, r.stderr
