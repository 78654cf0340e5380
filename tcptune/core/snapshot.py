"""The snapshot an apply saves before its first write, and its JSON file (pure).

A snapshot tells rollback, run as root, what to write where, so a file is trusted only
after every field has been checked: keys inside net.*, values that one line of
/proc/sys could hold, finite times a calendar can show, texts that encode as UTF-8
(a lone surrogate used to crash rollback half-way), and bounded size and nesting.
``parse_snapshot`` checks all of it before anything is written, so a bad file is
refused whole, never half restored.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from tcptune.core.boot_precedence import own_file_path_problem
from tcptune.core.keys import normalize_key
from tcptune.errors import ExitCode, TcptuneError

SNAPSHOT_FORMAT = "tcptune-snapshot/1"
ID_RE = re.compile(r"\A\d{8}T\d{6}Z-[0-9a-f]{6}\Z")
MAX_SNAPSHOT_BYTES = 4 << 20
# The most tcptune reads of one /proc/sys value (Host.read_sysctl), so the most a snapshot
# can have saved; a 1 MiB "value" took rollback --dry-run 26 s to show.
MAX_VALUE_CHARS = 65536
# A snapshot's own shape is four levels deep; anything much deeper is not one of ours,
# and json.loads would hit the interpreter's recursion limit on a few thousand levels.
MAX_DEPTH = 32
# time.gmtime() and strftime take years 1..9999 only; a "created" of 1e300 crashed `snapshots`.
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z

PENDING = "pending"
APPLIED = "applied"
FAILED = "failed"  # a write failed and every key was put back
INCOMPLETE = "restore-incomplete"  # a write failed and putting back failed too
ROLLED_BACK = "rolled-back"
SNAPSHOT_STATUSES = (PENDING, APPLIED, FAILED, INCOMPLETE, ROLLED_BACK)
ROLLBACK_CANDIDATES = (APPLIED, PENDING, INCOMPLETE)
UNFINISHED = (PENDING, INCOMPLETE)


def utc_stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def id_time(sid: str) -> float:
    """The creation second a snapshot id starts with (ids are checked against ID_RE first)."""
    import calendar

    return float(calendar.timegm(time.strptime(sid[:16], "%Y%m%dT%H%M%SZ")))


@dataclass
class Snapshot:
    id: str
    created: float
    profile: str
    origin: str
    target: dict
    kernel: str | None
    keys: dict[str, dict]  # key -> {"before": str, "after": str}
    skipped: list[dict] = field(default_factory=list)  # [{"key", "reason"}]
    persist: dict | None = None  # {"root", "path", "before": str|None, "after": str}
    status: str = PENDING
    history: list[dict] = field(default_factory=list)  # [{"time", "event", "detail"}]

    def before_values(self) -> dict[str, str]:
        return {k: v["before"] for k, v in self.keys.items()}

    def to_json(self) -> dict:
        return {
            "format": SNAPSHOT_FORMAT,
            "id": self.id,
            "created": self.created,
            "profile": self.profile,
            "origin": self.origin,
            "target": self.target,
            "kernel": self.kernel,
            "keys": self.keys,
            "skipped": self.skipped,
            "persist": self.persist,
            "status": self.status,
            "history": self.history,
        }

    def summary(self) -> dict:
        return {
            "id": self.id,
            "created": self.created,
            "created_utc": utc_stamp(self.created),
            "profile": self.profile,
            "keys": list(self.keys),
            "persisted": self.persist is not None,
            "status": self.status,
            "target": self.target,
        }

    def event(self, name: str, detail: str, when: float) -> None:
        self.history.append({"time": when, "event": name, "detail": detail})


def same_target(there: dict, here: dict) -> bool:
    """Was the snapshot (``there``, its "target" object) taken on ``here`` (Target.to_json())?"""
    return (
        there.get("kind") == here["kind"]
        and there.get("root") == here["root"]
        and there.get("netns_inode") == here["netns_inode"]
    )


def describe_target(t: dict) -> str:
    if t.get("kind") == "live":
        return f"network namespace net:[{t.get('netns_inode')}]"
    return f"root {t.get('root')}"


class SnapshotCorrupt(TcptuneError):
    """A snapshot file that cannot be trusted; ``why`` says what is wrong with it."""

    def __init__(self, path: Path, why: str):
        super().__init__(
            f"snapshot {path} is corrupt ({why}); refusing to restore from it",
            ExitCode.BAD_INPUT,
            hint="the file was kept; inspect it, or roll back another snapshot (`tcptune snapshots`)",
        )
        self.why = why


class _Checker:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, why: str) -> SnapshotCorrupt:
        return SnapshotCorrupt(self.path, why)

    def text(self, value, what: str, *, none_ok: bool = False, one_line: bool = False) -> str | None:
        if value is None and none_ok:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{what} is not a string")
        try:
            value.encode("utf-8")  # a lone surrogate ("\ud800") encodes nowhere: not a value of ours
        except UnicodeEncodeError:
            raise self.fail(f"{what} holds a lone surrogate (not UTF-8 text)") from None
        if "\x00" in value or (one_line and ("\n" in value or "\r" in value)):
            raise self.fail(f"{what}: bad value {value[:60]!r}")
        if one_line and len(value) > MAX_VALUE_CHARS:
            raise self.fail(f"{what}: {len(value)} characters, more than a sysctl value ({MAX_VALUE_CHARS})")
        return value

    def time(self, value, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"no '{what}' time")
        value = float(value)
        if not math.isfinite(value) or not 0 <= value <= MAX_TIME:
            raise self.fail(f"'{what}' {value!r} is not a time between 1970 and 9999")
        return value

    def objects(self, value, what: str, fields: tuple[str, ...]) -> list[dict]:
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            raise self.fail(f"bad '{what}'")
        for entry in value:
            for name in fields:
                if name == "time":
                    self.time(entry.get(name), f"{what} time")
                else:
                    self.text(entry.get(name), f"{what} {name}")
        return value


def _check_key(c: _Checker, key: str) -> None:
    try:
        dotted = normalize_key(key)
    except TcptuneError as exc:
        raise c.fail(exc.message) from None
    if dotted != key:
        raise c.fail(f"key {key!r} is not in dotted form")


def _check_target(c: _Checker, target) -> dict:
    if not isinstance(target, dict):
        raise c.fail("no 'target' object")
    if target.get("kind") not in ("live", "root"):
        raise c.fail(f"target kind {target.get('kind')!r} is neither 'live' nor 'root'")
    c.text(target.get("root"), "target root")
    inode = target.get("netns_inode")
    if inode is not None and (isinstance(inode, bool) or not isinstance(inode, int) or not 0 < inode < 1 << 64):
        raise c.fail(f"target netns_inode {inode!r} is not an inode number")
    return target


def _check_persist(c: _Checker, persist) -> dict | None:
    if persist is None:
        return None
    if not isinstance(persist, dict):
        raise c.fail("bad 'persist' object")
    proot = c.text(persist.get("root"), "persist root")
    c.text(persist.get("path"), "persist path")
    c.text(persist.get("before"), "persist 'before' text", none_ok=True)
    c.text(persist.get("after"), "persist 'after' text")
    # rollback writes or deletes this file as root: it must be tcptune's kind of
    # file (a *.conf straight in a sysctl.d directory) below an absolute root.
    if not proot.startswith("/") or os.path.normpath(proot) != proot:
        raise c.fail(f"persist root {proot!r} is not an absolute, normalised path")
    why = own_file_path_problem(persist["path"])
    if why:
        raise c.fail(f"persist path {persist['path']!r}: {why}")
    return {name: persist[name] for name in ("root", "path", "before", "after")}


def snapshot_from_json(data, path: Path) -> Snapshot:
    """Validate everything rollback will trust (see the module docstring) and build the Snapshot."""
    c = _Checker(path)
    if not isinstance(data, dict):
        raise c.fail("not a JSON object")
    if data.get("format") != SNAPSHOT_FORMAT:
        raise c.fail(f"format is {str(data.get('format'))[:60]!r}, expected {SNAPSHOT_FORMAT!r}")
    sid = data.get("id")
    if not isinstance(sid, str) or not ID_RE.match(sid) or path.stem != sid:
        raise c.fail(f"id {str(sid)[:60]!r} does not match the file name")
    keys = data.get("keys")
    if not isinstance(keys, dict):
        raise c.fail("no 'keys' object")
    for key, entry in keys.items():
        _check_key(c, key)
        if not isinstance(entry, dict):
            raise c.fail(f"{key}: entry is not an object")
        # An empty string is a real value: net.ipv4.ip_local_reserved_ports is "" by
        # default, and rollback must be able to put that back.
        c.text(entry.get("before"), f"{key}: 'before'", one_line=True)
        c.text(entry.get("after"), f"{key}: 'after'", one_line=True)
    created = c.time(data.get("created"), "created")
    status = data.get("status")
    if status not in SNAPSHOT_STATUSES:
        raise c.fail(f"unknown status {str(status)[:60]!r}")
    target = _check_target(c, data.get("target"))
    persist = _check_persist(c, data.get("persist"))
    for name in ("profile", "origin"):
        if not isinstance(data.get(name), str):
            raise c.fail(f"no '{name}'")
        c.text(data[name], name)
    skipped = c.objects(data.get("skipped", []), "skipped", ("key", "reason"))
    history = c.objects(data.get("history", []), "history", ("time", "event", "detail"))
    kernel = data.get("kernel")
    return Snapshot(
        id=sid,
        created=created,
        profile=data["profile"],
        origin=data["origin"],
        target=target,
        kernel=c.text(kernel, "kernel") if isinstance(kernel, str) else None,
        keys={k: {"before": v["before"], "after": v["after"]} for k, v in keys.items()},
        skipped=skipped,
        persist=persist,
        status=status,
        history=history,
    )


def _too_deep(raw: bytes) -> bool:
    """Does the JSON text nest deeper than MAX_DEPTH?  Brackets inside strings are skipped."""
    depth = 0
    in_string = escaped = False
    for b in raw:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif b in (0x5D, 0x7D):
            depth -= 1
    return False


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_snapshot(raw: bytes, path: Path) -> Snapshot:
    """The bytes of a snapshot file -> a fully validated Snapshot, or SnapshotCorrupt."""
    if len(raw) > MAX_SNAPSHOT_BYTES:
        raise SnapshotCorrupt(path, f"larger than {MAX_SNAPSHOT_BYTES >> 20} MiB")
    if _too_deep(raw):
        raise SnapshotCorrupt(path, f"nested deeper than {MAX_DEPTH} levels")
    try:
        # NaN, Infinity and -Infinity are not JSON (RFC 8259); Python's reader takes them by default.
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError also covers integers beyond Python's int-string limit (4,300 digits).
        raise SnapshotCorrupt(path, f"not valid JSON: {str(exc)[:120]}") from None
    return snapshot_from_json(data, path)


def dump_snapshot(snap: Snapshot) -> bytes:
    """The file text of ``snap``; it is checked to load back through parse_snapshot by the caller."""
    return (json.dumps(snap.to_json(), indent=2, allow_nan=False) + "\n").encode()


def persist_basename(snap: Snapshot) -> str:
    return posixpath.basename(snap.persist["path"]) if snap.persist else ""
