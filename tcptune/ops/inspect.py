"""`tcptune show` and `tcptune explain`: what a source has, and what the knowledge base says."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from tcptune.core.keys import SECRET_KEYS, normalize_key
from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.kb import Param, load_kb
from tcptune.kernel.version import Version, format_version
from tcptune.ops.sources import read_value, release_note, release_of, require_tcp_keys
from tcptune.values import json_value


@dataclass(frozen=True)
class ShowRow:
    key: str
    value: str | None
    unit: str | None
    default: str | None
    differs: bool | None  # None: tcptune cannot tell (no known default, or absent)
    scope: str | None
    in_knowledge_base: bool

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "value": json_value(self.value),
            "unit": self.unit,
            "default": json_value(self.default),
            "differs": self.differs,
            "scope": self.scope,
            "in_knowledge_base": self.in_knowledge_base,
        }


@dataclass(frozen=True)
class ShowResult:
    source: str
    kernel: str | None
    rows: list[ShowRow]
    notes: list[str]

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "kernel": self.kernel,
            "parameters": [r.to_json() for r in self.rows],
            "notes": self.notes,
        }


def matches(key: str, patterns: list[str]) -> bool:
    """A PATTERN is a substring of the key, or a glob matched against the full or short key."""
    if not patterns:
        return True
    short = key.rsplit(".", 1)[-1]
    for p in patterns:
        if any(c in p for c in "*?["):
            if fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(short, p):
                return True
        elif p in key:
            return True
    return False


def show(host, patterns: list[str] | None = None, *, all_keys: bool = False) -> ShowResult:
    """Every TCP-related parameter of ``host``: value, unit, kernel default, and whether it differs."""
    require_tcp_keys(host)
    kb = load_kb()
    release = release_of(host)
    notes = [n for n in [release_note(host, release)] if n]
    present = [k for k in host.list_sysctls(("net/ipv4",)) if k.startswith("net.ipv4.tcp_") and k not in SECRET_KEYS]
    rows = []
    for key in sorted(set(present) | {p.key for p in kb}):
        if not matches(key, patterns or []):
            continue
        param = kb.get(key) if key in kb else None
        value = read_value(host, key)
        if value is None and not all_keys and key not in present:
            continue
        # matches_default accepts the whole boot-time range (tcp_rmem[2] on a small machine).
        same = param.matches_default(value, release) if param is not None and value is not None else None
        rows.append(
            ShowRow(
                key=key,
                value=value,
                unit=param.unit if param else None,
                default=param.default_for(release) if param else None,
                differs=None if same is None else not same,
                scope=param.scope_for(release) if param else None,
                in_knowledge_base=param is not None,
            )
        )
    if patterns and not rows:
        raise TcptuneError(
            f"no parameter matches {' '.join(patterns)}",
            ExitCode.BAD_INPUT,
            hint="try `tcptune show` for the full list",
        )
    return ShowResult(host.label, host.kernel_release(), rows, notes)


def find_param(key: str) -> Param:
    """The knowledge-base entry for ``key`` (full or short name), or exit 2 with a suggestion."""
    kb = load_kb()
    param = kb.get(key)
    if param is not None:
        return param
    normalize_key(key if key.startswith("net.") else f"net.ipv4.{key}")  # rejects path tricks with a clear message
    suggestion = kb.suggest(key)
    raise TcptuneError(
        f"{key}: not in tcptune's knowledge base",
        ExitCode.BAD_INPUT,
        hint=f"did you mean {suggestion}?" if suggestion else "`tcptune show` lists every key this kernel has",
    )


@dataclass(frozen=True)
class Explanation:
    param: Param
    current: str | None
    source: str
    release: Version | None

    @property
    def default(self) -> str | None:
        return self.param.default_for(self.release)

    @property
    def boot_range(self):
        return self.param.boot_range_for(self.release)

    @property
    def scope(self) -> str:
        return self.param.scope_for(self.release)

    @property
    def netns_init(self) -> str:
        return self.param.netns_init_for(self.release)

    def to_json(self) -> dict:
        p, boot_range = self.param, self.boot_range
        return {
            "key": p.key,
            "meaning": p.meaning,
            "type": p.type,
            "unit": p.unit,
            "range": None if p.min is None and p.max is None else [p.min, p.max],
            "choices": list(p.choices) or None,
            "values": p.values or None,
            "default": json_value(self.default),
            "default_rule": p.default_rule or None,
            # Every value the boot formula can give, field by field (null: the default is fixed).
            "default_range": {"min": list(boot_range[0]), "max": list(boot_range[1])} if boot_range else None,
            "current": json_value(self.current),
            "source_of_current": self.source,
            # on the source's kernel (optmem_max: global before 6.8)
            "scope": self.scope,
            "netns_init": self.netns_init,
            "since": format_version(p.since) if p.since else None,
            "backported": [format_version(b) for b in p.backported],
            "removed": format_version(p.removed) if p.removed else None,
            "changes": [{"version": v, "what": w} for v, w in p.changes],
            "states": list(p.states),
            "risky": [{"when": w.when, "reason": w.reason} for w in p.warn],
            "details": p.details or None,
            "source": p.source,
        }


def explain(param: Param, host) -> Explanation:
    """``param`` with its current value on ``host`` and the default for ``host``'s kernel."""
    return Explanation(param, read_value(host, param.key), host.label, release_of(host))
