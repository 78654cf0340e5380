"""/proc/self/mountinfo and the CapEff line of /proc/self/status (pure: text in, values out).

mountinfo line (proc(5)), e.g.::

    36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue

Fields 4 (root) and 5 (mount point) are paths printed with seq_path_root(), and the
source after " - " with mangle(): both escape space, tab, newline and backslash as a
backslash and three octal digits (fs/proc_namespace.c show_mountinfo(), mangle();
fs/seq_file.c seq_escape_mem() prints any escaped byte as \\ooo).  Every such escape
is undone here, not only ``\\040``, and on bytes: a UTF-8 name stays one name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OCTAL = re.compile(rb"\\([0-3][0-7]{2})")


def unescape_mount_path(field: str) -> str:
    """Undo the kernel's \\ooo escapes of one mountinfo field."""
    if "\\" not in field:
        return field
    raw = field.encode("utf-8", "surrogateescape")
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), raw).decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Mount:
    mount_point: str
    options: tuple[str, ...]
    super_options: tuple[str, ...]
    fstype: str

    @property
    def read_only(self) -> bool:
        return "ro" in self.options or "ro" in self.super_options


def parse_mountinfo(text: str) -> list[Mount]:
    """Every well-formed line, in file order (later lines are mounted on top of earlier ones)."""
    out = []
    for line in text.split("\n"):
        head, sep, tail = line.partition(" - ")
        fields = head.split(" ")
        if not sep or len(fields) < 6:
            continue
        tail_fields = tail.split(" ")
        out.append(
            Mount(
                unescape_mount_path(fields[4]),
                tuple(fields[5].split(",")),
                tuple(tail_fields[2].split(",")) if len(tail_fields) > 2 else (),
                tail_fields[0],
            )
        )
    return out


def find_mount(mountinfo_text: str, path: str) -> Mount | None:
    """The mount that holds ``path`` (the last-mounted longest prefix)."""
    best: Mount | None = None
    best_len = -1
    for m in parse_mountinfo(mountinfo_text):
        mp = m.mount_point
        if path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/":
            # >= : a later line with the same mount point is mounted on top and wins.
            if len(mp) >= best_len:
                best_len, best = len(mp), m
    return best


def parse_cap_eff(status_text: str) -> int | None:
    """The effective capability set from /proc/PID/status text (None when absent or garbled)."""
    for line in status_text.split("\n"):
        if line.startswith("CapEff:"):
            try:
                return int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return None
    return None
