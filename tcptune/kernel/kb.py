"""Loader for the kernel parameter knowledge base (tcptune/kernel/params.toml).

The data file, not code, holds what tcptune claims about each parameter; this
module only reads and checks it.  See the header of params.toml for the schema.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from tcptune.kernel.version import Version, parse_version
from tcptune.values import normalize_value

TYPES = ("int", "bool", "enum", "vector", "string")
SCOPES = ("netns", "global")
NETNS_INIT = ("default", "copy", "computed")


@dataclass(frozen=True)
class Warn:
    """A known-risky value: ``when`` is a comparison such as '== 0' or '< 2'."""

    when: str
    reason: str
    source: str = ""

    def matches(self, value: str) -> bool:
        op, _, ref = self.when.strip().partition(" ")
        try:
            a, b = int(value.split()[0]), int(ref)
        except (ValueError, IndexError):
            return op == "==" and value.strip() == ref.strip() or op == "!=" and value.strip() != ref.strip()
        return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


@dataclass(frozen=True)
class Param:
    key: str
    type: str
    unit: str
    meaning: str
    source: str
    scope: str = "netns"
    default: str | None = None  # on current kernels; None when computed at boot
    default_rule: str = ""  # how the kernel computes it, when it is computed
    older_defaults: tuple[tuple[Version, str], ...] = ()  # (before_version, value)
    # Defaults computed at boot: (before_version or None, min fields, max fields), see params.toml.
    boot_range: tuple[tuple[Version | None, tuple[int, ...], tuple[int, ...]], ...] = ()
    netns_init: str = "default"  # what a new network namespace starts from
    # (before_version, scope or None, netns_init or None): how it was on older kernels; None: as now.
    older_scope: tuple[tuple[Version, str | None, str | None], ...] = ()
    min: int | None = None
    max: int | None = None
    length: int | None = None  # number of fields of a vector
    ascending: bool = False  # vector fields may not decrease (the kernel rejects the write)
    choices: tuple[str, ...] = ()
    values: dict[str, str] = field(default_factory=dict)  # value -> what it means
    since: Version | None = None
    removed: Version | None = None
    # Stable releases that gained the key before ``since``: 6.1.59 means every 6.1.y with y >= 59.
    backported: tuple[Version, ...] = ()
    changes: tuple[tuple[str, str], ...] = ()  # (version, what changed)
    states: tuple[str, ...] = ()
    details: str = ""
    warn: tuple[Warn, ...] = ()

    @property
    def short(self) -> str:
        return self.key.rsplit(".", 1)[-1]

    def default_for(self, release: Version | None) -> str | None:
        """The kernel default on ``release`` (None: unknown, computed, or key absent there)."""
        if release is not None and not self.exists_in(release):
            return None
        if release is not None:
            for before, value in sorted(self.older_defaults):
                if release < before:
                    return value
        return self.default

    def boot_range_for(self, release: Version | None) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(min, max) field by field that the boot formula can give on ``release``, or None."""
        if release is not None and not self.exists_in(release):
            return None
        if release is not None:
            for before, lo, hi in sorted((r for r in self.boot_range if r[0] is not None), key=lambda r: r[0]):
                if release < before:
                    return lo, hi
        current = [r for r in self.boot_range if r[0] is None]
        return (current[0][1], current[0][2]) if current else None

    def backported_to(self, release: Version) -> bool:
        """Does ``release`` have the key from a stable backport (same major.minor, at or past it)?"""
        return any(tuple(release[:2]) == b[:2] and tuple(release) >= b for b in self.backported)

    def scope_for(self, release: Version | None) -> str:
        """``scope`` on ``release`` (None: current kernels): optmem_max was global before 6.8."""
        return self._older_scope(release, 1) or self.scope

    def netns_init_for(self, release: Version | None) -> str:
        """``netns_init`` on ``release``: rmem_max is mirrored into child namespaces only since 6.11."""
        return self._older_scope(release, 2) or self.netns_init

    def _older_scope(self, release: Version | None, field: int) -> str | None:
        if release is None:
            return None
        for entry in sorted(self.older_scope, key=lambda e: e[0]):
            if release < entry[0] and entry[field] is not None:
                return entry[field]
        return None

    def matches_default(self, value: str, release: Version | None) -> bool | None:
        """Is ``value`` a kernel default on ``release``?  None when tcptune cannot tell."""
        default = self.default_for(release)
        if default is None:
            return None
        fields = value.split()
        if fields == default.split():
            return True
        rng = self.boot_range_for(release)
        if rng is None:
            return False
        try:
            nums = [int(f) for f in fields]
        except ValueError:
            return False
        lo, hi = rng
        return len(nums) == len(lo) and all(a <= n <= b for n, a, b in zip(nums, lo, hi))

    def exists_in(self, release: Version) -> bool:
        if self.since is not None and release < self.since and not self.backported_to(release):
            return False
        if self.removed is not None and release >= self.removed:
            return False
        return True


class KnowledgeBase:
    def __init__(self, params: dict[str, Param]):
        self.params = params
        self._by_short = {p.short: p for p in params.values()}

    def __iter__(self):
        return iter(self.params.values())

    def __len__(self) -> int:
        return len(self.params)

    def __contains__(self, key: str) -> bool:
        return key in self.params

    def get(self, key: str) -> Param | None:
        """Look up by full key (net.ipv4.tcp_fin_timeout) or short name (tcp_fin_timeout)."""
        key = key.strip().replace("/", ".")
        return self.params.get(key) or self._by_short.get(key)

    def suggest(self, key: str, known: list[str] | tuple[str, ...] = ()) -> str | None:
        """A close match to a misspelt key, from the knowledge base and ``known`` keys."""
        pool = set(self.params) | set(known)
        short_pool = {k.rsplit(".", 1)[-1]: k for k in pool}
        hit = difflib.get_close_matches(key, sorted(pool), n=1, cutoff=0.75)
        if hit:
            return hit[0]
        hit = difflib.get_close_matches(key.rsplit(".", 1)[-1], sorted(short_pool), n=1, cutoff=0.75)
        return short_pool[hit[0]] if hit else None


def _version(v: Any) -> Version | None:
    if v in (None, ""):
        return None
    return parse_version(str(v))


def param_from_dict(d: dict[str, Any]) -> Param:
    where = d.get("key", "?")
    missing = [f for f in ("key", "type", "unit", "meaning", "source") if not d.get(f)]
    if missing:
        raise ValueError(f"params.toml: {where}: missing {', '.join(missing)}")
    if d["type"] not in TYPES:
        raise ValueError(f"params.toml: {where}: type {d['type']!r} not in {TYPES}")
    if d.get("scope", "netns") not in SCOPES:
        raise ValueError(f"params.toml: {where}: scope {d['scope']!r} not in {SCOPES}")
    if d.get("netns_init", "default") not in NETNS_INIT:
        raise ValueError(f"params.toml: {where}: netns_init {d['netns_init']!r} not in {NETNS_INIT}")
    older_scope = []
    for o in d.get("older_scope", []):
        if not o.get("before") or (o.get("scope") is None and o.get("netns_init") is None):
            raise ValueError(f"params.toml: {where}: older_scope entry {o!r} needs before and scope or netns_init")
        if o.get("scope", "netns") not in SCOPES or o.get("netns_init", "default") not in NETNS_INIT:
            raise ValueError(
                f"params.toml: {where}: older_scope entry {o!r}: scope in {SCOPES}, netns_init in {NETNS_INIT}"
            )
        older_scope.append((parse_version(str(o["before"])), o.get("scope"), o.get("netns_init")))
    since = _version(d.get("since"))
    backported = tuple(parse_version(str(b)) for b in d.get("backported", []))
    for text, b in zip(d.get("backported", []), backported):
        if since is None or b >= since or b[2] == 0:
            raise ValueError(
                f"params.toml: {where}: backported {text!r} must be a stable release (X.Y.Z, Z > 0) older than since"
            )
    rng = d.get("range") or [None, None]
    default = d.get("default")
    boot_range = []
    for r in d.get("boot_range", []):
        lo, hi = tuple(int(x) for x in r.get("min", ())), tuple(int(x) for x in r.get("max", ()))
        if (
            not lo
            or len(lo) != len(hi)
            or (d.get("length") and len(lo) != d["length"])
            or any(a > b for a, b in zip(lo, hi))
        ):
            raise ValueError(
                f"params.toml: {where}: boot_range entry {r!r} needs min and max of equal length (= length), min <= max"
            )
        boot_range.append((_version(r.get("before")), lo, hi))
    return Param(
        key=d["key"],
        type=d["type"],
        unit=d["unit"],
        meaning=d["meaning"].strip(),
        source=d["source"].strip(),
        scope=d.get("scope", "netns"),
        default=None if default is None else normalize_value(default),
        default_rule=d.get("default_rule", ""),
        older_defaults=tuple((parse_version(str(o["before"])), str(o["value"])) for o in d.get("older_defaults", [])),
        boot_range=tuple(boot_range),
        netns_init=d.get("netns_init", "default"),
        older_scope=tuple(older_scope),
        min=rng[0],
        max=rng[1],
        length=d.get("length"),
        ascending=bool(d.get("ascending", False)),
        choices=tuple(d.get("choices", ())),
        values={str(k): v for k, v in d.get("values", {}).items()},
        since=since,
        backported=backported,
        removed=_version(d.get("removed")),
        changes=tuple((str(c["version"]), c["what"]) for c in d.get("changes", [])),
        states=tuple(d.get("states", ())),
        details=d.get("details", "").strip(),
        warn=tuple(Warn(w["when"], w["reason"], w.get("source", "")) for w in d.get("warn", [])),
    )


def parse_kb(text: str) -> KnowledgeBase:
    data = tomllib.loads(text)
    params: dict[str, Param] = {}
    for d in data.get("param", []):
        p = param_from_dict(d)
        if p.key in params:
            raise ValueError(f"params.toml: {p.key} appears twice")
        params[p.key] = p
    return KnowledgeBase(params)


@lru_cache(maxsize=1)
def load_kb() -> KnowledgeBase:
    text = resources.files("tcptune.kernel").joinpath("params.toml").read_text(encoding="utf-8")
    return parse_kb(text)
