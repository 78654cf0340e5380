"""--sysctl-dump and --netns named by a hostile or careless caller: no hang, one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from clirunner import one_line_error, run_cli


@pytest.mark.parametrize("option", ["--sysctl-dump", "--netns"])
def test_a_fifo_with_no_writer_is_refused_within_a_second(tmp_path, option):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    r = run_cli("audit", option, str(fifo), timeout=10)
    assert time.monotonic() - start < 3
    assert r.returncode == 2, r.stderr
    line = one_line_error(r)
    assert "FIFO" in line or "not a network namespace" in line


def test_a_fifo_dump_points_at_stdin(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "--sysctl-dump -" in one_line_error(run_cli("show", "--sysctl-dump", str(fifo)))


def test_a_device_as_a_dump_is_refused(tmp_path):
    r = run_cli("audit", "--sysctl-dump", "/dev/zero", timeout=10)
    assert r.returncode == 2
    assert "character device" in one_line_error(r)


def test_closed_stdin_says_closed_not_terminal():
    r = subprocess.run(
        [sys.executable, "-m", "tcptune", "audit", "--sysctl-dump", "-"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        # close fd 0 in the child: what a cron job or `<&-` gives
        preexec_fn=lambda: os.close(0),
    )
    assert r.returncode == 2, r.stderr
    assert "closed" in one_line_error(r)


def test_an_endless_pipe_on_stdin_is_bounded():
    # `yes | tcptune audit --sysctl-dump -` must stop at the size limit, not read forever
    yes = subprocess.Popen(["yes", "net.ipv4.tcp_syn_retries = 6"], stdout=subprocess.PIPE)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "tcptune", "audit", "--sysctl-dump", "-"],
            stdin=yes.stdout,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        yes.kill()
        yes.wait()
    assert r.returncode == 2, r.stderr
    assert "larger than 16 MiB" in one_line_error(r)
