"""Hostile profiles, profile directories and dumps through every command that reads them (issue 9).

Each case is a file or a small tree built by the test.  Every run must end with the
expected exit code, one line on stderr, no traceback, and quickly: a FIFO once hung
`profiles validate` forever, a run of spaces took 141 s, an 8 MiB value printed 381k lines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "data" / "root-fresh-netns-6.18"
LIMIT = 5.0  # seconds, for a whole subprocess (Python start-up included) on a loaded 2-core machine


def run(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    e = {**os.environ, "NO_COLOR": "1", "TCPTUNE_PROFILE_DIRS": "", **(env or {})}
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "tcptune", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=60,
    )
    return r, time.monotonic() - start


def refused(r: subprocess.CompletedProcess, took: float, *needles: str, code: int = 2) -> None:
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-500:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert took < LIMIT, f"took {took:.1f} s"
    for n in needles:
        assert n in r.stderr, r.stderr


GOOD = 'description = "good"\n[settings]\n"net.ipv4.tcp_syn_retries" = 3\n'


# -- #4: a FIFO where a profile is read ---------------------------------------------------


def test_a_fifo_as_a_profile_is_refused_at_once(tmp_path):
    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)
    for args in (
        ("profiles", "validate", str(fifo)),
        ("profiles", "show", str(fifo), "--root", str(ROOT)),
        ("audit", "--root", str(ROOT), "-p", str(fifo)),
    ):
        refused(*run(*args), "not a regular file")


def test_a_fifo_as_an_extends_target_is_the_childs_error(tmp_path):
    os.mkfifo(tmp_path / "parent.toml")
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent"\n' + GOOD)
    r, took = run("profiles", "validate", str(child))
    refused(r, took, f"{child}:1: extends 'parent'", "not a regular file")


def test_a_fifo_in_a_profile_directory_is_listed_as_invalid_and_the_rest_still_listed(tmp_path):
    (tmp_path / "good.toml").write_text(GOOD)
    os.mkfifo(tmp_path / "fifo.toml")
    r, took = run("profiles", "list", "--json", env={"TCPTUNE_PROFILE_DIRS": str(tmp_path)})
    assert r.returncode == 0 and took < LIMIT, r.stderr
    listed = {p["name"]: p for p in json.loads(r.stdout)["profiles"]}
    assert listed["good"]["description"] == "good"
    assert "not a regular file" in listed["fifo"]["description"]
    assert "web-server" in listed  # the built-ins too


# -- #6: no regular expression may be super-linear on user input ---------------------------


@pytest.mark.parametrize("spaces", [8000, 200_000])
def test_long_runs_of_spaces_in_a_multiline_string_validate_in_linear_time(tmp_path, spaces):
    p = tmp_path / "spaces.toml"
    p.write_text(
        'description = """\n[' + " " * spaces + '\n"""\n'
        '[settings]\n"net.ipv4.tcp_sack" = 1\n"net.ipv4.tcp_syn_retries" = 300\n'
    )
    r, took = run("profiles", "validate", str(p))
    # the error names line 6: the scan skipped the string's body, and did so in time
    refused(r, took, f"{p}:6: net.ipv4.tcp_syn_retries: value 300 is out of range")


# -- #7: value sizes are bounded at parse time ----------------------------------------------


def test_audit_of_a_dump_with_an_8_mib_value_is_one_line(tmp_path, data_dir):
    dump = tmp_path / "dump.txt"
    text = (data_dir / "sysctl-a-host-6.18.txt").read_text()
    dump.write_text(text + "net.ipv4.tcp_congestion_control = " + "x" * (8 << 20) + "\n")
    refused(*run("audit", "--sysctl-dump", str(dump)), "over 64 KiB")


def test_a_profile_value_longer_than_a_page_is_refused(tmp_path):
    p = tmp_path / "long.toml"
    p.write_text('[settings]\n"net.ipv4.tcp_congestion_control" = "' + "x" * 5000 + '"\n')
    refused(*run("profiles", "validate", str(p)), f"{p}:2:", "at most 4095")


# -- #8: integers longer than Python's int-string limit (4,300 digits) ----------------------

HUGE = "9" * 5000


@pytest.mark.parametrize(
    "text",
    [
        f'[settings]\n"net.ipv4.tcp_syn_retries" = {HUGE}\n',
        f'[settings]\n"net.ipv4.tcp_syn_retries" = "{HUGE}"\n',
        f'[settings."net.ipv4.tcp_syn_retries"]\nvalue = 3\naccept = {{ max = {HUGE} }}\n',
        f'kernel = ">={HUGE}"\n' + GOOD,
        f'kernel = ">=6.{HUGE}"\n' + GOOD,
    ],
    ids=["toml-int", "string", "accept", "kernel", "kernel-minor"],
)
def test_huge_integers_in_a_profile_are_exit_2_not_70(tmp_path, text):
    p = tmp_path / "huge.toml"
    p.write_text(text)
    refused(*run("profiles", "validate", str(p)), str(p))


def test_a_huge_kernel_osrelease_in_a_dump_is_exit_2(tmp_path, data_dir):
    dump = tmp_path / "dump.txt"
    text = (data_dir / "sysctl-a-host-6.18.txt").read_text()
    dump.write_text(text + f"kernel.osrelease = {HUGE}\n")
    for cmd in ("audit", "show"):
        refused(*run(cmd, "--sysctl-dump", str(dump)), "kernel.osrelease")


# -- #9: deep nesting; one bad file must not break `profiles list` --------------------------


@pytest.mark.parametrize("open_,close", [("[", "]"), ("{a=", "}")])
def test_toml_nested_500_deep_is_exit_2(tmp_path, open_, close):
    p = tmp_path / "deep.toml"
    p.write_text("description = " + open_ * 500 + close * 500 + "\n")
    refused(*run("profiles", "validate", str(p)), "nested too deeply")
    r, took = run("profiles", "list", "--json", env={"TCPTUNE_PROFILE_DIRS": str(tmp_path)})
    assert r.returncode == 0 and took < LIMIT
    listed = {x["name"]: x["description"] for x in json.loads(r.stdout)["profiles"]}
    assert "nested too deeply" in listed["deep"] and "web-server" in listed


# -- #11: an unreadable profile directory is skipped with a note ----------------------------


def _without_dac(tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    """A profile directory root cannot read once it drops CAP_DAC_OVERRIDE/READ_SEARCH."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop the DAC capabilities")
    home = tmp_path / "other-home"
    (home / "tcptune/profiles").mkdir(parents=True)
    (home / "tcptune/profiles/mine.toml").write_text(GOOD)
    os.chown(home, 65534, 65534)
    home.chmod(0o700)
    drop = ("setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--")
    return home, drop


def test_unreadable_user_profile_directory_is_skipped_with_a_note(tmp_path):
    home, drop = _without_dac(tmp_path)
    e = {k: v for k, v in os.environ.items() if k != "TCPTUNE_PROFILE_DIRS"}
    e.update(NO_COLOR="1", XDG_CONFIG_HOME=str(home))
    for args in (("profiles", "list"), ("profiles", "show", "web-server"), ("audit", "--root", str(ROOT), "--json")):
        r = subprocess.run(
            [*drop, sys.executable, "-m", "tcptune", *args], capture_output=True, text=True, env=e, timeout=60
        )
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr
        assert f"profile directory {home}/tcptune/profiles skipped" in r.stdout, r.stdout


# -- #14 and #17: key grammar, and line numbers on every key error --------------------------


@pytest.mark.parametrize(
    "key",
    [
        " net.ipv4.tcp_syn_retries",
        "net.ipv4.tcp_syn_retries ",
        "\tnet.ipv4.tcp_syn_retries",
        "net.ipv4.tcp_syn_retries\u00a0",
    ],
)
def test_keys_with_surrounding_whitespace_are_refused(tmp_path, key):
    p = tmp_path / "ws.toml"
    quoted = json.dumps(key)  # a TOML basic string
    p.write_text(f'description = "x"\n[settings]\n{quoted} = 3\n')
    refused(*run("profiles", "validate", str(p)), f"{p}:3:", "has whitespace around it")


@pytest.mark.parametrize(
    "line,needle",
    [('"net.ipv4.tcp\\u0000_sack" = 1', "NUL"), ("net.ipv4.tcp_sack = 1", "bare dotted key")],
    ids=["nul-key", "bare-dotted-key"],
)
def test_key_errors_carry_the_line_number(tmp_path, line, needle):
    p = tmp_path / "k.toml"
    p.write_text(f'description = "x"\n\n[settings]\n{line}\n')
    refused(*run("profiles", "validate", str(p)), f"{p}:4:", needle)


def test_a_huge_osrelease_in_a_root_tree_is_no_kernel_version(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(ROOT, root)
    (root / "proc/sys/kernel/osrelease").write_text(HUGE + "\n")
    r, took = run("audit", "--root", str(root))
    assert r.returncode == 0 and took < LIMIT, r.stderr
    assert "kernel.osrelease is not a kernel version" in r.stdout and "is missing" not in r.stdout
