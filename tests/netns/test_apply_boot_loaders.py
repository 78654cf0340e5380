"""tcptune's model of the two boot loaders against the real programs.

Each loader runs over a test tree in a private mount AND network namespace
(`unshare -m -n`): the tree's directories are bind-mounted over /etc/sysctl.d,
/run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d and /etc/sysctl.conf,
/proc/sys is remounted read-only except /proc/sys/net, and the tree only sets
net.ipv4 keys, which are per network namespace.  Then the values the loader
left in that namespace are compared with sysctld_files.boot_state(tree, loader=...).
The host's files and sysctls are never touched.

The cases are the ones where the two loaders (or a naive model) differ:
/etc/sysctl.conf read last by procps but only via 99-sysctl.conf by systemd,
dotfiles, masks by /dev/null, by an empty file, by a directory and by a
dangling symlink, the by-name order across directories, absolute symlinks,
globs with an exclusion.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from nsutil import require_netns

from tcptune.core.boot_precedence import PROCPS, SYSTEMD
from tcptune.host.sysctld_files import boot_state

SYSTEMD_SYSCTL = next(
    (p for p in ("/lib/systemd/systemd-sysctl", "/usr/lib/systemd/systemd-sysctl") if os.path.exists(p)), None
)
DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d")

TCP = "net.ipv4.tcp_"
KEYS = [
    TCP + "syn_retries",
    TCP + "fin_timeout",
    TCP + "retries2",
    TCP + "keepalive_probes",
    TCP + "keepalive_intvl",
    TCP + "keepalive_time",
    TCP + "orphan_retries",
    TCP + "synack_retries",
    TCP + "retries1",
    TCP + "reordering",
    TCP + "max_reordering",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.ipv4.conf.lo.rp_filter",
]

SCRIPT = r"""
set -eu
T=$1; shift
mount --make-rprivate /
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net
ip link set lo up
for d in /etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d; do
    if [ ! -d "$d" ]; then mount -t tmpfs tmpfs "$(dirname "$d")"; mkdir -p "$d"; fi
    mount --bind "$T$d" "$d"
done
mount --bind "$T/etc/sysctl.conf" /etc/sysctl.conf
# proof that only the tree is visible: the test compares this listing with the tree's
for d in /etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d; do ls -A "$d" | sed "s|^|ls:$d/|"; done
"$@" >/dev/null 2>&1 || true
for k in $KEYS; do printf '%s=%s\n' "$k" "$(cat /proc/sys/$(echo "$k" | tr . /))"; done
"""


def _tree(root: Path) -> None:
    def put(rel: str, text: str) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    for d in DIRS:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/sysctl.d").mkdir(parents=True, exist_ok=True)
    os.symlink("usr/lib", root / "lib")  # merged /usr, as on this Debian
    # same name: /run beats /usr/lib; /etc beats both
    put("usr/lib/sysctl.d/50-a.conf", f"{TCP}syn_retries = 3\n")
    put("run/sysctl.d/50-a.conf", f"{TCP}syn_retries = 4\n")
    # a dotfile: procps reads it, systemd does not
    put("etc/sysctl.d/.hidden.conf", f"{TCP}fin_timeout = 11\n")
    # /etc/sysctl.conf: procps reads it last; systemd only through Debian's symlink, by that name
    put("etc/sysctl.conf", f"{TCP}retries2 = 10\n")
    os.symlink("../sysctl.conf", root / "etc/sysctl.d/99-sysctl.conf")
    put("etc/sysctl.d/99-zzz.conf", f"{TCP}retries2 = 11\n")
    put("usr/local/lib/sysctl.d/70-local.conf", f"{TCP}retries2 = 9\n")
    # masks: /dev/null link, empty file, directory, dangling link
    put("usr/lib/sysctl.d/40-masked.conf", f"{TCP}keepalive_probes = 5\n")
    os.symlink("/dev/null", root / "etc/sysctl.d/40-masked.conf")
    put("usr/lib/sysctl.d/41-empty.conf", f"{TCP}keepalive_intvl = 33\n")
    put("run/sysctl.d/41-empty.conf", "")
    put("usr/lib/sysctl.d/42-dir.conf", f"{TCP}keepalive_time = 333\n")
    (root / "etc/sysctl.d/42-dir.conf").mkdir()
    put("usr/lib/sysctl.d/43-dangle.conf", f"{TCP}orphan_retries = 3\n")
    os.symlink("/nonexistent/x.conf", root / "etc/sysctl.d/43-dangle.conf")
    # by-name order across directories: /usr/lib/60 is read after /etc/20 and wins
    put("etc/sysctl.d/20-early.conf", f"{TCP}synack_retries = 2\n")
    put("usr/lib/sysctl.d/60-late.conf", f"{TCP}synack_retries = 3\n")
    # an absolute symlink, resolved inside the tree (= the bind-mounted directory)
    put("usr/lib/sysctl.d/target.txt", f"{TCP}retries1 = 4\n")
    os.symlink("/usr/lib/sysctl.d/target.txt", root / "etc/sysctl.d/30-abs.conf")
    # a later, same-valued line and a malformed line in the same file
    put("etc/sysctl.d/31-mixed.conf", f"this is not a setting\n{TCP}reordering = 5\n{TCP}max_reordering=400\n")
    # glob with an exclusion and an explicit key
    put(
        "etc/sysctl.d/10-rp.conf",
        "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.lo.rp_filter\nnet.ipv4.conf.all.rp_filter = 1\n",
    )


def _run_loader(tree: Path, argv: list[str]) -> dict[str, str]:
    require_netns()
    env = {**os.environ, "KEYS": " ".join(KEYS)}
    r = subprocess.run(
        ["unshare", "-m", "-n", "--", "sh", "-c", SCRIPT, "sh", str(tree), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    listing = sorted(line[3:] for line in r.stdout.splitlines() if line.startswith("ls:"))
    assert listing == sorted(f"{d}/{n}" for d in DIRS for n in os.listdir(tree / d.lstrip("/"))), (
        "the bind mounts did not take"
    )
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if not line.startswith("ls:"))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    if not os.path.exists("/etc/sysctl.conf"):
        pytest.skip("needs an /etc/sysctl.conf to bind the tree's over (never created on the host)")
    root = tmp_path_factory.mktemp("loaders")
    _tree(root)
    return root


@pytest.fixture(scope="module")
def defaults(tree) -> dict[str, str]:
    return _run_loader(tree, ["true"])  # a fresh namespace, nothing loaded


@pytest.mark.parametrize(
    "loader,argv",
    [
        (SYSTEMD, [SYSTEMD_SYSCTL or "/nonexistent", "--prefix=net.ipv4"]),
        (PROCPS, ["sysctl", "--system"]),
    ],
)
def test_the_model_matches_the_real_loader(tree, defaults, loader, argv):
    if loader == SYSTEMD and SYSTEMD_SYSCTL is None:
        pytest.skip("systemd-sysctl is not installed")
    if loader == PROCPS and not shutil.which("sysctl"):
        pytest.skip("procps sysctl is not installed")
    got = _run_loader(tree, argv)
    state = boot_state(tree, KEYS, loader=loader)
    expected = {k: state.values[k].value if k in state.values else defaults[k] for k in KEYS}
    assert got == expected
    assert got != defaults  # the loader really ran
    # and the cases really are different between the loaders (the test would be weak otherwise)
    assert {k: state.values[k].value for k in state.values} != {
        k: v.value for k, v in boot_state(tree, KEYS, loader=SYSTEMD if loader == PROCPS else PROCPS).values.items()
    }


LINE_CASES = Path(__file__).resolve().parent.parent / "data/sysctl.d"


@pytest.mark.parametrize("case", sorted(p.stem for p in LINE_CASES.glob("*.conf")))
@pytest.mark.parametrize(
    "loader,argv",
    [
        (SYSTEMD, [SYSTEMD_SYSCTL or "/nonexistent", "--prefix=net.ipv4"]),
        (PROCPS, ["sysctl", "--system"]),
    ],
)
def test_lines_the_loaders_do_not_split_where_python_would(tmp_path, case, loader, argv):
    # issue 9 #15: U+2028, form feed and friends, run through the real programs again.
    if loader == SYSTEMD and SYSTEMD_SYSCTL is None:
        pytest.skip("systemd-sysctl is not installed")
    if loader == PROCPS and not shutil.which("sysctl"):
        pytest.skip("procps sysctl is not installed")
    if not os.path.exists("/etc/sysctl.conf"):
        pytest.skip("needs an /etc/sysctl.conf to bind the tree's over (never created on the host)")
    for d in DIRS:
        (tmp_path / d.lstrip("/")).mkdir(parents=True)
    (tmp_path / "etc/sysctl.conf").write_text("")
    (tmp_path / "etc/sysctl.d/50-case.conf").write_bytes((LINE_CASES / f"{case}.conf").read_bytes())
    defaults = _run_loader(tmp_path, ["true"])
    got = _run_loader(tmp_path, argv)
    state = boot_state(tmp_path, KEYS, loader=loader)
    assert got == {k: state.values[k].value if k in state.values else defaults[k] for k in KEYS}
