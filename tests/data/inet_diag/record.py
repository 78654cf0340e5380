#!/usr/bin/env python3
"""Record sock_diag dumps: the bytes the kernel sent, buffer by buffer, with what `ss` saw.

    sudo unshare -n python3 tests/data/inet_diag/record.py [OUT_DIR]

Refuses to run in the host's network namespace.  Brings lo up, builds the socket zoo of
tests/netns/test_states_netns.py (every TCP state, both families, plus a listen(0)
listener whose accept queue is full), then for each request below sends it on a fresh
NETLINK_SOCK_DIAG socket and stores every received buffer as it came: ``<case>.bin`` is a
sequence of (u32 little-endian length, the buffer's bytes).  ``<case>.json`` holds the
request (family, idiag_states mask, nlmsg_seq, the socket's netlink port id) and, from
`ss -tane` / `ss -tlne` run straight after (retried until two `ss` reads agree), the
expected counts, (state, local port) and (state, peer) groups, inodes and listeners.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parents[1]
sys.path[:0] = [str(TESTS), str(TESTS / "netns"), str(TESTS.parent)]

from test_states_netns import SS_TO_NAME, make_zoo  # noqa: E402

from tcptune.core.inet_diag import LISTEN_MASK, RECV_BUF, is_last_buffer, request  # noqa: E402
from tcptune.host.sockdiag import open_diag_socket  # noqa: E402
from tcptune.kernel.states import ALL_STATES_MASK, TcpState  # noqa: E402

CASES = {
    # name: (family, states mask, ss family option)
    "unspec-listen": (socket.AF_UNSPEC, LISTEN_MASK, None),
    "unspec-rest": (socket.AF_UNSPEC, ALL_STATES_MASK & ~LISTEN_MASK, None),
    "inet-all": (socket.AF_INET, ALL_STATES_MASK, "-4"),
    "inet6-all": (socket.AF_INET6, ALL_STATES_MASK, "-6"),
}


def lo_up() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def full_accept_queue() -> list:
    """A listen(0) listener and clients beyond its queue (issue 10 #3): Recv-Q 1, Send-Q 0."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    keep = [lst]
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(lst.getsockname())
        except BlockingIOError:
            pass
        keep.append(c)
    time.sleep(0.3)
    return keep


def record(family: int, mask: int) -> tuple[list[bytes], int, int]:
    seq = int.from_bytes(os.urandom(4), "little") >> 2 | 1
    buffers = []
    with open_diag_socket() as sock:
        sock.send(request(family, mask, seq))
        portid = sock.getsockname()[0]  # the kernel binds the port id on the first send
        tail = struct.pack("=II", seq, portid)
        buf = bytearray(RECV_BUF)
        while True:
            n = sock.recv_into(buf)
            buffers.append(bytes(buf[:n]))
            if is_last_buffer(buf, n, tail):
                break
    return buffers, seq, portid


def _addr_port(text: str) -> tuple[str, int]:
    addr, _, port = text.rpartition(":")
    addr = addr.strip("[]")
    if addr.startswith("::ffff:") and "." in addr:
        addr = addr[7:]
    return addr, int(port) if port.isdigit() else 0


def ss_table(opt: str | None) -> list[dict]:
    out = subprocess.run(["ss", "-tane", *([opt] if opt else [])], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines()[1:]:
        f = line.split()
        if not f or f[0] not in SS_TO_NAME:
            continue
        ino = re.search(r"\bino:(\d+)", line)
        laddr, lport = _addr_port(f[3])
        paddr, _ = _addr_port(f[4])
        rows.append(
            {
                "state": SS_TO_NAME[f[0]],
                "recvq": int(f[1]),
                "sendq": int(f[2]),
                "local": laddr,
                "port": lport,
                "peer": paddr,
                "inode": int(ino.group(1)) if ino else 0,
            }
        )
    return rows


def expected(rows: list[dict], mask: int) -> dict:
    rows = [r for r in rows if mask & (1 << TcpState[r["state"]])]
    return {
        "counts": dict(Counter(r["state"] for r in rows)),
        "local_port": sorted([s, p, n] for (s, p), n in Counter((r["state"], r["port"]) for r in rows).items()),
        "peer": sorted([s, a, n] for (s, a), n in Counter((r["state"], r["peer"]) for r in rows).items()),
        "inodes": sorted(r["inode"] for r in rows),
        "listeners": sorted(
            [r["local"], r["port"], r["recvq"], r["sendq"], r["inode"]] for r in rows if r["state"] == "LISTEN"
        ),
    }


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    # `unshare -n python3 ...` runs this in a new namespace; its parent (the shell) is outside.
    if os.stat("/proc/self/ns/net").st_ino == os.stat(f"/proc/{os.getppid()}/ns/net").st_ino:
        raise SystemExit("refusing to record in the host's network namespace: run under `unshare -n`")
    lo_up()
    keep = make_zoo(socket.AF_INET) + make_zoo(socket.AF_INET6) + full_accept_queue()
    release = os.uname().release
    for name, (family, mask, opt) in CASES.items():
        for _ in range(5):  # until ss agrees with itself around the dump (a retransmit can move a socket)
            before = ss_table(opt)
            buffers, seq, portid = record(family, mask)
            after = ss_table(opt)
            if [(r["state"], r["inode"]) for r in before] == [(r["state"], r["inode"]) for r in after]:
                break
        with open(out / f"{name}.bin", "wb") as fh:
            for b in buffers:
                fh.write(struct.pack("<I", len(b)) + b)
        meta = {
            "kernel": release,
            "byteorder": sys.byteorder,
            "family": family,
            "states_mask": mask,
            "seq": seq,
            "portid": portid,
            "buffers": len(buffers),
            "expected": expected(after, mask),
        }
        (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{name}: {len(buffers)} buffers, {sum(map(len, buffers))} bytes")
    del keep


if __name__ == "__main__":
    main()
