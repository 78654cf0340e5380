#!/usr/bin/env bash
# Prepare the guest kernels and the guest root for tests/kernels (idempotent).
#
# What it builds, in $TCPTUNE_KERNEL_CACHE (default /var/cache/tcptune-kernels, never the repo):
#   debs/                     the Debian kernel packages, fetched with `apt-get download`
#   kernels/RELEASE/vmlinuz   each kernel image, with its build config beside it
#   root/                     a debootstrap'd minimal Debian 12 (python3 = 3.11) plus
#                             /opt/tcptune-deps (pip --target: typer<0.29, psutil, tabulate,
#                             scapy, pytest), /boot/config-RELEASE and the few modules the
#                             probes load on demand (inet_diag/tcp_diag...) for every kernel
#   root.cpio                 that root as one uncompressed initramfs archive
#
# Why an initramfs and not an ext4 image or 9p: Debian's generic -amd64 kernels build
# virtio_pci (6.1), virtio_blk, ext4 and 9p as modules, so a disk or 9p root would need a
# first-stage initramfs that loads them and switch_root's.  The kernel itself unpacks an
# initramfs with no driver at all; an UNCOMPRESSED cpio of ~150 MB costs ~1 s under plain
# TCG emulation (decompressing a gzip'd one costs more than it saves), and the guest's
# root is then a tmpfs it may scribble on without touching anything of the host.  The
# checkout under test is not in root.cpio: run_guest.py appends a small second archive
# holding it at every boot (the kernel unpacks concatenated archives in order).
#
# Packages come only from Debian's archive (apt-get, debootstrap) and PyPI (pip).
# Environment: TCPTUNE_KERNEL_CACHE, TCPTUNE_KERNEL_PKGS (space-separated package names to
# use instead of the newest 6.1 and 6.12 generic images), PYTHON (the host python whose pip
# fetches the guest's wheels; its pip only downloads, for CPython 3.11 manylinux).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
CACHE=${TCPTUNE_KERNEL_CACHE:-/var/cache/tcptune-kernels}
PYTHON=${PYTHON:-python3}
SUITE=bookworm
MIRROR=${TCPTUNE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The guest's Python packages: the project's runtime dependencies (pyproject.toml) and pytest.
GUEST_PIP=("typer>=0.16,<0.29" "psutil>=5.9" "tabulate>=0.9" "scapy>=2.5" "pytest>=8")
# Modules the probes, `states` and the profiles load on demand (request_module via modprobe):
# netlink sock_diag for TCP/UDP/raw/packet sockets, bbr and fq.  Nothing else: a module that
# is never loaded changes nothing, and each one costs boot time (it is in the initramfs).
MODULES=(net/ipv4/inet_diag net/ipv4/tcp_diag net/ipv4/udp_diag net/ipv4/raw_diag net/packet/af_packet_diag
  net/ipv4/tcp_bbr net/sched/sch_fq)

log() { printf 'prepare: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { echo "prepare.sh: run as root (apt-get, debootstrap, chroot)" >&2; exit 3; }
mkdir -p "$CACHE"/debs "$CACHE"/kernels

# -- 1. host tools ------------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v cpio >/dev/null || need+=(cpio)
command -v dpkg-deb >/dev/null || need+=(dpkg)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# -- 2. kernel packages ----------------------------------------------------------------------
newest() { # newest package whose name matches the regex $1
  apt-cache search --names-only "$1" | awk '{print $1}' | sort -V | tail -n 1
}
if [ -n "${TCPTUNE_KERNEL_PKGS:-}" ]; then
  read -r -a pkgs <<<"$TCPTUNE_KERNEL_PKGS"
else
  p61=$(newest '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$')
  p612=$(newest '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$')
  if [ -z "$p61" ] || [ -z "$p612" ]; then
    apt-get update -qq
    p61=$(newest '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$')
    p612=$(newest '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$')
  fi
  pkgs=("$p61" "$p612")
fi
releases=()
for pkg in "${pkgs[@]}"; do
  [ -n "$pkg" ] || { echo "prepare.sh: no Debian 6.1/6.12 kernel package found (apt-get update?)" >&2; exit 1; }
  deb=$(ls "$CACHE"/debs/"${pkg}"_*.deb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$deb" ]; then
    log "downloading $pkg"
    (cd "$CACHE"/debs && apt-get download -q "$pkg" 2>&1 | grep -v 'unsandboxed' >&2 || true)
    deb=$(ls "$CACHE"/debs/"${pkg}"_*.deb | sort -V | tail -n 1)
  fi
  rel=${pkg#linux-image-}
  rel=${rel%-unsigned}
  releases+=("$rel")
  kdir="$CACHE/kernels/$rel"
  if [ ! -s "$kdir/vmlinuz" ]; then
    log "unpacking $(basename "$deb")"
    tmp=$(mktemp -d "$CACHE/unpack.XXXXXX")
    dpkg-deb -x "$deb" "$tmp"
    mkdir -p "$kdir/modules"
    cp "$tmp/boot/config-$rel" "$kdir/config"
    for m in "${MODULES[@]}"; do
      for f in "$tmp/lib/modules/$rel/kernel/$m".ko*; do # 6.12's are .ko.xz
        [ -e "$f" ] || continue
        mkdir -p "$kdir/modules/kernel/$(dirname "$m")"
        cp -a "$f" "$kdir/modules/kernel/$(dirname "$m")/"
      done
    done
    cp "$tmp"/lib/modules/"$rel"/modules.{order,builtin,builtin.modinfo} "$kdir/modules/" 2>/dev/null || true
    cp "$tmp/boot/vmlinuz-$rel" "$kdir/vmlinuz.tmp" && mv "$kdir/vmlinuz.tmp" "$kdir/vmlinuz"
    echo "$(basename "$deb")" >"$kdir/package"
    rm -rf "$tmp"
  fi
done

# -- 3. the guest root -----------------------------------------------------------------------
ROOT="$CACHE/root"
if [ ! -e "$ROOT/.debootstrap-done" ]; then
  log "debootstrap $SUITE (minbase + python3, ~2 min)"
  rm -rf "$ROOT.tmp"
  debootstrap --variant=minbase --include=python3,iproute2,procps,kmod "$SUITE" "$ROOT.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # what a test guest never reads: docs, locales, apt's caches and lists
  rm -rf "$ROOT.tmp"/usr/share/{doc,man,info,locale} "$ROOT.tmp"/var/cache/apt/* "$ROOT.tmp"/var/lib/apt/lists/*
  touch "$ROOT.tmp/.debootstrap-done"
  rm -rf "$ROOT" && mv "$ROOT.tmp" "$ROOT"
fi
want_pip="${GUEST_PIP[*]}"
if [ "$(cat "$ROOT/opt/tcptune-deps/.requested" 2>/dev/null)" != "$want_pip" ]; then
  log "pip install --target /opt/tcptune-deps: $want_pip"
  rm -rf "$ROOT/opt/tcptune-deps"
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-compile --target "$ROOT/opt/tcptune-deps" \
    --python-version 3.11 --implementation cp --abi cp311 --platform manylinux2014_x86_64 \
    --only-binary=:all: "${GUEST_PIP[@]}" 2> >(grep -v -e 'is ignored' -e 'as the .root. user' >&2)
  rm -rf "$ROOT"/opt/tcptune-deps/bin
  # Byte-compile with the guest's own python: under emulation compiling scapy at import
  # costs ~45 s per process, loading its .pyc ~1/10 of that.
  chroot "$ROOT" python3 -m compileall -q -j 0 /opt/tcptune-deps >/dev/null
  echo "$want_pip" >"$ROOT/opt/tcptune-deps/.requested"
fi
# the kernels' configs (where tcptune reads CONFIG_HZ and build-time defaults) and modules
for rel in "${releases[@]}"; do
  if [ ! -e "$ROOT/lib/modules/$rel/modules.dep" ]; then
    log "installing config and modules of $rel into the root"
    cp "$CACHE/kernels/$rel/config" "$ROOT/boot/config-$rel"
    mkdir -p "$ROOT/lib/modules/$rel"
    cp -a "$CACHE/kernels/$rel/modules/." "$ROOT/lib/modules/$rel/"
    chroot "$ROOT" depmod -a "$rel" 2>/dev/null
  fi
done

# -- 4. root.cpio ---------------------------------------------------------------------------------
stamp=$(cd "$ROOT" && find . -newer "$CACHE/root.cpio" -print -quit 2>/dev/null || echo new)
if [ ! -s "$CACHE/root.cpio" ] || [ -n "$stamp" ]; then
  log "packing root.cpio"
  (cd "$ROOT" && find . -print0 |
    LC_ALL=C sort -z | cpio --null -o -H newc --quiet) >"$CACHE/root.cpio.tmp"
  mv "$CACHE/root.cpio.tmp" "$CACHE/root.cpio"
fi
du -sh "$CACHE/root.cpio" | awk '{print "prepare: root.cpio " $1}' >&2
printf '%s\n' "${releases[@]}" >"$CACHE/releases"
log "ready: ${releases[*]} (cache $CACHE)"
