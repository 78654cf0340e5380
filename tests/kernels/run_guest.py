#!/usr/bin/env python3
"""Boot one Debian kernel under qemu (plain TCG, no KVM) and run a command in it.

    tests/kernels/run_guest.py [--kernel 6.1] [--timeout 300] [--out DIR] -- CMD [ARG...]

The guest is the root that prepare.sh built (root.cpio) plus a second initramfs archive
made here at every boot: this checkout (tcptune/, tests/, profiles/, man/, pyproject.toml)
under /src and an /init that mounts /proc, /sys and /dev, brings its loopback up, runs
CMD in /src with PYTHONPATH=/src:/opt/tcptune-deps, then powers off.  CMD may write files
to /out; its stdout, stderr and exit status land there too.

What leaves the guest: only /out, as one tar stream on its second serial port (a file on
the host).  The guest has no network device (``-nic none``) but its own loopback, no disk
and no shared directory; its root is a tmpfs that vanishes with it.  qemu runs under
``nice -n 19`` with one CPU (the host's cores are shared) and is killed, by the pid this
script started, when the hard timeout expires.

Why no KVM: with -enable-kvm these kernels stalled at boot here; TCG boots one in a few
seconds.  See README.md for the timings and for what emulation does to timer lateness.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("TCPTUNE_KERNEL_CACHE", "/var/cache/tcptune-kernels"))
REPO = Path(__file__).resolve().parents[2]
# What of the checkout the guest needs (the package, its tests, the data the package reads).
SRC_PARTS = ("tcptune", "tests", "profiles", "man", "pyproject.toml")
BOOT_MARK = "TCPTUNE-GUEST-UP"

INIT = r"""#!/bin/sh
# PID 1 of a tests/kernels guest (written by run_guest.py)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /out
mount -t tmpfs tmpfs /run
ip link set lo up
echo "BOOT_MARK $(cut -d' ' -f1 /proc/uptime)" >/dev/console
export PYTHONPATH=/src:/opt/tcptune-deps TCPTUNE_GUEST=1 TCPTUNE_GUEST_OUT=/out
cd /src
sh /run-cmd >/out/stdout.txt 2>/out/stderr.txt </dev/null
echo $? >/out/rc
cut -d' ' -f1 /proc/uptime >/out/uptime
stty -F /dev/ttyS1 raw -echo 2>/dev/null
tar -C /out -cf /dev/ttyS1 .
sleep 0.2
echo o >/proc/sysrq-trigger
sleep 10
""".replace("BOOT_MARK", BOOT_MARK)


@dataclass
class GuestRun:
    release: str
    rc: int | None  # the command's exit status (None: it never finished)
    stdout: str
    stderr: str
    files: dict[str, bytes] = field(default_factory=dict)  # what CMD wrote to /out
    boot_s: float | None = None  # guest uptime when /init started (kernel boot, initramfs unpacked)
    guest_s: float | None = None  # guest uptime when CMD had finished
    wall_s: float = 0.0  # host time from qemu start to its exit
    timed_out: bool = False
    console: str = ""  # the guest's serial console (kernel messages)


def releases() -> list[str]:
    """The kernel releases prepare.sh unpacked, oldest first."""
    path = CACHE / "releases"
    return path.read_text().split() if path.exists() else []


def resolve(kernel: str) -> str:
    """'6.1' -> '6.1.0-57-amd64' (the prepared release whose version starts so)."""
    have = releases()
    if kernel in have:
        return kernel
    hits = [r for r in have if r == kernel or r.startswith(kernel + ".") or r.startswith(kernel + "-")]
    # "6.1" must not pick "6.12...": the next character after the prefix is '.' or '-'
    if len(hits) != 1:
        raise SystemExit(
            f"run_guest: kernel {kernel!r} is not prepared (have: {', '.join(have) or 'none'}); "
            "run tests/kernels/prepare.sh"
        )
    return hits[0]


def prepared(kernel: str) -> str | None:
    """Why the guest for ``kernel`` cannot run (None: it can)."""
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 is not installed (run tests/kernels/prepare.sh)"
    if not (CACHE / "root.cpio").is_file():
        return f"{CACHE}/root.cpio is missing (run tests/kernels/prepare.sh)"
    try:
        rel = resolve(kernel)
    except SystemExit as exc:
        return str(exc)
    if not (CACHE / "kernels" / rel / "vmlinuz").is_file():
        return f"{CACHE}/kernels/{rel}/vmlinuz is missing (run tests/kernels/prepare.sh)"
    return None


def _src_archive(argv: list[str], workdir: Path, env: dict[str, str]) -> Path:
    """The per-boot initramfs archive: /init, /run-cmd and the checkout under /src."""
    stage = workdir / "stage"
    (stage / "src").mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    for part in SRC_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, stage / "src" / part, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, stage / "src" / part)
    (stage / "init").write_text(INIT)
    (stage / "init").chmod(0o755)
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    (stage / "run-cmd").write_text(exports + shlex.join(argv) + "\n")
    names = subprocess.run(["find", ".", "-mindepth", "1"], cwd=stage, capture_output=True, check=True).stdout
    out = workdir / "src.cpio"
    with open(out, "wb") as fh:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=stage, input=names, stdout=fh, check=True)
    return out


def run(
    kernel: str, argv: list[str], timeout: float = 300.0, mem_mb: int = 1024, env: dict[str, str] | None = None
) -> GuestRun:
    """Boot ``kernel`` (a release or a prefix such as '6.1'), run ``argv`` in it (with ``env``
    added to its environment), collect /out."""
    why = prepared(kernel)
    if why:
        raise SystemExit(f"run_guest: {why}")
    rel = resolve(kernel)
    with tempfile.TemporaryDirectory(prefix="tcptune-guest-") as tmp:
        work = Path(tmp)
        initrd = work / "initrd"
        with open(initrd, "wb") as fh:
            with open(CACHE / "root.cpio", "rb") as root:
                shutil.copyfileobj(root, fh, 1 << 20)
            with open(_src_archive(argv, work, env or {}), "rb") as src:
                shutil.copyfileobj(src, fh)
        console, out = work / "console.log", work / "out.tar"
        cmd = [
            "nice",
            "-n",
            "19",
            "qemu-system-x86_64",
            "-nographic",
            "-no-reboot",
            "-smp",
            "1",
            "-m",
            str(mem_mb),
            "-nic",
            "none",
            "-monitor",
            "none",
            "-serial",
            f"file:{console}",
            "-serial",
            f"file:{out}",
            "-kernel",
            str(CACHE / "kernels" / rel / "vmlinuz"),
            "-initrd",
            str(initrd),
            # panic=-1: if /init dies the kernel reboots at once and -no-reboot ends qemu
            "-append",
            "console=ttyS0 panic=-1 quiet loglevel=4",
        ]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        timed_out = False
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()  # the qemu this function started, by its pid
            _, err = proc.communicate()
        wall = time.monotonic() - t0
        text = console.read_text(errors="replace") if console.exists() else ""
        if err:
            text += "\n[qemu stderr] " + err.decode(errors="replace")
        files = _untar(out.read_bytes() if out.exists() else b"")
    boot = next(
        (float(line.split(BOOT_MARK, 1)[1].split()[0]) for line in text.splitlines() if BOOT_MARK in line), None
    )
    rc = files.pop("rc", None)
    up = files.pop("uptime", None)
    return GuestRun(
        release=rel,
        rc=int(rc) if rc and rc.strip().isdigit() else None,
        stdout=files.pop("stdout.txt", b"").decode(errors="replace"),
        stderr=files.pop("stderr.txt", b"").decode(errors="replace"),
        files=files,
        boot_s=boot,
        guest_s=float(up) if up else None,
        wall_s=wall,
        timed_out=timed_out,
        console=text,
    )


def _untar(data: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if not data:
        return files
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for m in tar:
                if m.isfile():
                    files[m.name.removeprefix("./")] = tar.extractfile(m).read()
    except (tarfile.TarError, EOFError):
        pass  # a stream cut short (timeout): keep what was complete
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", default="6.1", help="release or version prefix (default 6.1)")
    ap.add_argument("--timeout", type=float, default=300.0, help="hard limit for the whole boot (s)")
    ap.add_argument("--out", type=Path, help="write the files CMD left in /out here")
    ap.add_argument("argv", nargs="+", help="command to run in the guest (after --)")
    a = ap.parse_args()
    r = run(a.kernel, a.argv, a.timeout)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if a.out:
        for name, data in r.files.items():
            dest = a.out / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    boot = "?" if r.boot_s is None else f"{r.boot_s:.1f}"
    print(
        f"run_guest: {r.release}: boot {boot} s, guest uptime at the end {r.guest_s or 0:.1f} s, "
        f"wall {r.wall_s:.1f} s, exit {r.rc}" + (" (TIMED OUT)" if r.timed_out else ""),
        file=sys.stderr,
    )
    if r.rc is None:
        sys.stderr.write("run_guest: no result from the guest; console tail:\n" + r.console[-3000:] + "\n")
        return 70
    return r.rc


if __name__ == "__main__":
    sys.exit(main())
