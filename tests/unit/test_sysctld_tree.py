"""boot_state(root).values and tcptune's own file on a real directory tree (tcptune.host.sysctld_files, host layer)."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from tcptune.core.boot_precedence import PROCPS, SYSTEMD
from tcptune.errors import TcptuneError
from tcptune.host.sysctld_files import (
    boot_state,
    check_own_file,
    detect_loader,
    own_file_state,
    read_config_files,
    write_own_file,
)

KEY = "net.ipv4.tcp_syn_retries"


def put(root, rel, text):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_boot_values_reads_every_directory_below_the_root(tmp_path):
    put(tmp_path, "lib/sysctl.d/10-a.conf", f"{KEY} = 1\nnet.core.somaxconn = 100\n")
    put(tmp_path, "usr/lib/sysctl.d/50-b.conf", f"{KEY} = 2\n")
    put(tmp_path, "usr/local/lib/sysctl.d/60-c.conf", "net.ipv4.tcp_fin_timeout = 33\n")
    put(tmp_path, "run/sysctl.d/70-d.conf", f"{KEY} = 3\n")
    put(tmp_path, "etc/sysctl.d/README", f"{KEY} = 99\n")  # not *.conf
    (tmp_path / "etc/sysctl.d/80-dir.conf").mkdir()  # a directory named like a file: ignored
    got = boot_state(tmp_path).values
    assert {k: (v.value, v.path, v.line) for k, v in got.items()} == {
        KEY: ("3", "/run/sysctl.d/70-d.conf", 1),
        "net.core.somaxconn": ("100", "/lib/sysctl.d/10-a.conf", 2),
        "net.ipv4.tcp_fin_timeout": ("33", "/usr/local/lib/sysctl.d/60-c.conf", 1),
    }


@pytest.mark.parametrize("loader", [PROCPS, SYSTEMD])
def test_dev_null_symlinks_dangling_links_and_directories_all_mask_and_set_nothing(tmp_path, loader):
    # Measured with systemd-sysctl 252 and procps 4.0.2 (tests/netns/test_apply_boot_loaders.py):
    # a dangling link or a directory named like the vendor file hides it just like /dev/null.
    put(tmp_path, "usr/lib/sysctl.d/50-vendor.conf", f"{KEY} = 2\n")
    put(tmp_path, "usr/lib/sysctl.d/60-vendor.conf", "net.ipv4.tcp_fin_timeout = 33\n")
    put(tmp_path, "usr/lib/sysctl.d/70-vendor.conf", "net.ipv4.tcp_retries2 = 9\n")
    (tmp_path / "etc/sysctl.d").mkdir(parents=True)
    os.symlink("/dev/null", tmp_path / "etc/sysctl.d/50-vendor.conf")
    os.symlink("/nonexistent/x.conf", tmp_path / "etc/sysctl.d/60-vendor.conf")
    (tmp_path / "etc/sysctl.d/70-vendor.conf").mkdir()
    files = dict(read_config_files(tmp_path))
    assert files["/etc/sysctl.d/50-vendor.conf"] == ""
    assert files["/etc/sysctl.d/60-vendor.conf"] is None and files["/etc/sysctl.d/70-vendor.conf"] is None
    state = boot_state(tmp_path, loader=loader)
    assert state.values == {} and state.loader == loader
    assert sum("vendor.conf is not read at boot" in w for w in state.warnings) == 3
    assert sum("not a readable file" in w for w in state.warnings) == 2


def test_the_loader_follows_what_the_root_boots_with(tmp_path):
    assert detect_loader(tmp_path)[0] == PROCPS
    put(tmp_path, "lib/systemd/systemd-sysctl", "")
    assert detect_loader(tmp_path) == (SYSTEMD, f"/lib/systemd/systemd-sysctl exists under {tmp_path}")
    os.unlink(tmp_path / "lib/systemd/systemd-sysctl")
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    loader, why = detect_loader(tmp_path)
    assert loader == SYSTEMD and "booted with systemd" in why
    put(tmp_path, "etc/sysctl.conf", f"{KEY} = 4\n")
    put(tmp_path, "etc/sysctl.d/10-a.conf", f"{KEY} = 3\n")
    state = boot_state(tmp_path, [KEY])
    assert state.loader == SYSTEMD and state.values[KEY].path == "/etc/sysctl.d/10-a.conf"  # no sysctl.conf
    assert [d.key for d in state.disagreements] == [KEY]
    assert state.disagreements[0].procps.path == "/etc/sysctl.conf"


def test_merged_usr_lib_is_read_once_and_split_usr_lib_is_read(tmp_path):
    put(tmp_path, "usr/lib/sysctl.d/50-a.conf", f"{KEY} = 2\n")
    os.symlink("usr/lib", tmp_path / "lib")  # merged /usr: /lib/sysctl.d IS /usr/lib/sysctl.d
    files = [p for p, _ in read_config_files(tmp_path)]
    assert files == ["/usr/lib/sysctl.d/50-a.conf"]
    assert boot_state(tmp_path).warnings == []  # not "hidden by itself"
    os.unlink(tmp_path / "lib")
    put(tmp_path, "lib/sysctl.d/60-b.conf", "net.core.somaxconn = 100\n")  # split /usr
    for loader in (PROCPS, SYSTEMD):
        assert boot_state(tmp_path, loader=loader).values["net.core.somaxconn"].path == "/lib/sysctl.d/60-b.conf"


def test_relative_symlink_like_debians_99_sysctl_conf(tmp_path):
    put(tmp_path, "etc/sysctl.conf", f"{KEY} = 4\n")
    (tmp_path / "etc/sysctl.d").mkdir()
    os.symlink("../sysctl.conf", tmp_path / "etc/sysctl.d/99-sysctl.conf")
    state = boot_state(tmp_path)
    # procps: read twice (as 99-sysctl.conf and as /etc/sysctl.conf last), same value
    assert [s.path for s in state.setters[KEY]] == ["/etc/sysctl.d/99-sysctl.conf", "/etc/sysctl.conf"]
    assert state.values[KEY].value == "4"
    # systemd reads /etc/sysctl.conf only through that link
    state = boot_state(tmp_path, loader=SYSTEMD)
    assert [s.path for s in state.setters[KEY]] == ["/etc/sysctl.d/99-sysctl.conf"]
    # ... so a file named after 99-sysctl.conf wins there, but loses to sysctl.conf under procps
    put(tmp_path, "etc/sysctl.d/99-zz-local.conf", f"{KEY} = 5\n")
    assert boot_state(tmp_path, loader=SYSTEMD).values[KEY].value == "5"
    assert boot_state(tmp_path, loader=PROCPS).values[KEY].value == "4"
    (d,) = boot_state(tmp_path, [KEY]).disagreements
    assert d.systemd.where == "/etc/sysctl.d/99-zz-local.conf:1" and d.procps.where == "/etc/sysctl.conf:1"
    assert "systemd-sysctl sets 5" in d.message() and "`sysctl --system` sets 4" in d.message()


def test_override_substitutes_tcptunes_file_before_it_is_written(tmp_path):
    own = "/etc/sysctl.d/90-tcptune.conf"
    put(tmp_path, "etc/sysctl.d/90-tcptune.conf", f"{KEY} = 9\n")
    assert boot_state(tmp_path).values[KEY].value == "9"
    assert boot_state(tmp_path, override=(own, f"{KEY} = 2\n")).values[KEY].value == "2"
    assert KEY not in boot_state(tmp_path, override=(own, None)).values


def test_write_own_file_is_atomic_0644_and_removable(tmp_path):
    own = "/etc/sysctl.d/90-tcptune.conf"
    assert own_file_state(tmp_path, own).text is None
    path = write_own_file(tmp_path, own, f"{KEY} = 2\n")
    assert path == tmp_path / "etc/sysctl.d/90-tcptune.conf"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert own_file_state(tmp_path, own).text == f"{KEY} = 2\n"
    ino = os.stat(path).st_ino
    write_own_file(tmp_path, own, f"{KEY} = 3\n")
    assert os.stat(path).st_ino != ino  # replaced by rename, never rewritten in place
    assert sorted(os.listdir(path.parent)) == ["90-tcptune.conf"]  # no temp file left
    write_own_file(tmp_path, own, None)
    assert not path.exists()
    write_own_file(tmp_path, own, None)  # removing twice is fine


def test_paths_cannot_escape_the_root(tmp_path):
    inner = tmp_path / "root"
    inner.mkdir()
    for bad in (
        "/../../etc/sysctl.d/x.conf",
        "/etc/sysctl.d/\x00.conf",
        "/etc/passwd",
        "/etc/sysctl.conf",
        "/etc/sysctl.d/.x.conf",
    ):
        with pytest.raises(TcptuneError) as ei:
            write_own_file(inner, bad, "net.core.somaxconn = 1\n")
        assert ei.value.exit_code == 2
    assert list(inner.iterdir()) == []
    # A symlinked directory is resolved as if the root were /: "../../.." stops at the root.
    (tmp_path / "outside").mkdir()
    (inner / "etc").mkdir()
    os.symlink("../../../outside", inner / "etc/sysctl.d")
    path = write_own_file(inner, "/etc/sysctl.d/90-tcptune.conf", "net.core.somaxconn = 1\n")
    assert path == inner / "outside/90-tcptune.conf" and path.is_file()
    assert list((tmp_path / "outside").iterdir()) == []


def test_own_file_is_never_followed_and_a_foreign_file_needs_force(tmp_path):
    own = "/etc/sysctl.d/90-tcptune.conf"
    d = tmp_path / "etc/sysctl.d"
    d.mkdir(parents=True)
    os.symlink("/dev/null", d / "90-tcptune.conf")  # an administrator's mask
    with pytest.raises(TcptuneError) as ei:
        check_own_file(tmp_path, own)
    assert ei.value.exit_code == 2 and "symlink to /dev/null (a mask)" in str(ei.value)
    with pytest.raises(TcptuneError):
        check_own_file(tmp_path, own, force=True)  # a link is refused even with --force
    with pytest.raises(TcptuneError):
        write_own_file(tmp_path, own, "net.core.somaxconn = 1\n")
    assert os.readlink(d / "90-tcptune.conf") == "/dev/null"
    os.unlink(d / "90-tcptune.conf")
    (d / "90-tcptune.conf").write_text("net.core.somaxconn = 5\n")  # hand-written, no header
    with pytest.raises(TcptuneError) as ei:
        check_own_file(tmp_path, own)
    assert ei.value.exit_code == 2 and "not written by tcptune" in str(ei.value) and "--force" in str(ei.value)
    assert check_own_file(tmp_path, own, force=True) == "net.core.somaxconn = 5\n"
    (d / "90-tcptune.conf").write_text("# Written by tcptune 0.1 from profile x (y).\nnet.core.somaxconn = 5\n")
    assert check_own_file(tmp_path, own).startswith("# Written by tcptune")
    assert check_own_file(tmp_path, "/etc/sysctl.d/91-new.conf") is None


def test_a_temp_file_left_by_a_killed_writer_is_removed(tmp_path):
    own = "/etc/sysctl.d/90-tcptune.conf"
    d = tmp_path / "etc/sysctl.d"
    d.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = d / f".90-tcptune.conf.tcptune-{dead.pid}.tmp"
    stale.write_text("half")
    alive = d / f".90-tcptune.conf.tcptune-{os.getppid()}.tmp"  # a live writer's: kept
    alive.write_text("busy")
    write_own_file(tmp_path, own, "net.core.somaxconn = 1\n")
    assert not stale.exists() and alive.exists()


def test_absolute_symlinks_resolve_inside_the_root(tmp_path):
    # /etc/sysctl.d/99-sysctl.conf -> /etc/sysctl.conf must read the tree's file, not the host's.
    put(tmp_path, "etc/sysctl.conf", f"{KEY} = 4\n")
    (tmp_path / "etc/sysctl.d").mkdir()
    os.symlink("/etc/sysctl.conf", tmp_path / "etc/sysctl.d/99-sysctl.conf")
    files = dict(read_config_files(tmp_path))
    assert files["/etc/sysctl.d/99-sysctl.conf"] == f"{KEY} = 4\n"
