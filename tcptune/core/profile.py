"""Tuning profiles: the model (Profile, Setting, Accept) and `extends` resolution (pure).

A profile is a TOML file (format: man/tcptune-profile.5).  Parsing and validation live in
tcptune.core.profile_parse; finding and reading the files is the host layer's job
(tcptune.host.profile_files).  Nothing here opens a file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tcptune.core.toml_lines import KeyLines, err_at
from tcptune.kernel.kb import KnowledgeBase
from tcptune.kernel.version import Version, format_version, version_matches

KERNEL_DEFAULT = "kernel-default"
TOP_LEVEL = ("description", "extends", "kernel", "kernel_defaults", "settings")


def tokens(value: str) -> list[str]:
    """Multi-value keys compare token by token, whitespace-insensitive."""
    return str(value).split()


def as_ints(value: str) -> list[int] | None:
    """The value's fields as integers, or None.  Only plain ASCII decimal fields count, and
    no field longer than 20 digits (what proc_get_long() in kernel/sysctl.c reads at most):
    int() alone would take "1_0", "+3" or Arabic-Indic digits, and fail on 4,300 of them."""
    out = []
    for t in tokens(value):
        digits = t[1:] if t.startswith("-") else t
        if not digits or len(digits) > 20 or not (digits.isascii() and digits.isdigit()):
            return None
        out.append(int(t))
    return out


@dataclass(frozen=True)
class Accept:
    """What audit accepts besides the exact value: bounds (field by field for vectors) or a set."""

    min: tuple[int, ...] | None = None
    max: tuple[int, ...] | None = None
    one_of: tuple[str, ...] | None = None

    def accepts(self, actual: str) -> bool:
        if self.one_of is not None:
            return tokens(actual) in [tokens(v) for v in self.one_of]
        nums = as_ints(actual)
        if nums is None:
            return False
        for bound, ok in ((self.min, lambda a, b: a >= b), (self.max, lambda a, b: a <= b)):
            if bound is None:
                continue
            if len(bound) != len(nums):
                return False
            if not all(ok(a, b) for a, b in zip(nums, bound)):
                return False
        return True

    def describe(self) -> str:
        def fmt(b: tuple[int, ...]) -> str:
            return " ".join(map(str, b))

        if self.one_of is not None:
            return "one of " + ", ".join(self.one_of)
        if self.min is not None and self.max is not None and len(self.min) == len(self.max) > 1:
            # Vector ranges read better field by field: "4096..65536 131072 131072..33554432".
            return " ".join(str(a) if a == b else f"{a}..{b}" for a, b in zip(self.min, self.max))
        parts = []
        if self.min is not None:
            parts.append(f">= {fmt(self.min)}")
        if self.max is not None:
            parts.append(f"<= {fmt(self.max)}")
        return " and ".join(parts)


@dataclass(frozen=True)
class Setting:
    key: str
    value: str  # canonical, whitespace-normalised: what apply writes
    reason: str
    source: str
    required: bool = False
    accept: Accept | None = None
    implicit: bool = False  # filled in by kernel_defaults, not written in a profile file

    def accepts(self, actual: str) -> bool:
        if tokens(actual) == tokens(self.value):
            return True
        return self.accept is not None and self.accept.accepts(actual)

    @property
    def expected(self) -> str:
        """How audit shows what it expects."""
        return self.accept.describe() if self.accept else self.value


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    origin: str  # file path or "built-in"
    settings: dict[str, Setting]
    extends: str | None = None
    kernel: str | None = None
    chain: tuple[str, ...] = ()  # this profile and its ancestors, child first

    def kernel_mismatch(self, release: Version | None) -> str | None:
        """A sentence when the running kernel is outside the profile's `kernel` range."""
        if self.kernel and release is not None and not version_matches(release, self.kernel):
            return f"profile {self.name} is meant for kernels {self.kernel}; this one is {format_version(release)}"
        return None


@dataclass
class RawProfile:
    """One parsed (not yet resolved) profile file."""

    name: str
    origin: str
    lines: KeyLines
    data: dict[str, Any]
    settings: dict[str, Setting] = field(default_factory=dict)


def kernel_default_settings(kb: KnowledgeBase, release: Version | None) -> dict[str, Setting]:
    """Every knowledge-base parameter with a known default on ``release`` (computed ones are left out).

    A default the kernel computes at boot from memory or the page size (tcp_rmem, tcp_wmem)
    is accepted over the whole range its formula can give, so an untouched small machine
    does not show drift.
    """
    out = {}
    for p in kb:
        default = p.default_for(release)
        if default is None or (release is None and p.removed is not None):
            # Without a kernel version there is no telling whether a removed key should exist.
            continue
        rng = p.boot_range_for(release)
        accept = Accept(min=rng[0], max=rng[1]) if rng else None
        why = f"kernel default: {p.meaning}" + (
            " (computed at boot from memory and page size; any value the formula can give is a default)" if rng else ""
        )
        out[p.key] = Setting(p.key, default, why, p.source, accept=accept, implicit=True)
    return out


def resolve(
    name: str,
    load_raw: Callable[[str, RawProfile | None], RawProfile],
    kb: KnowledgeBase,
    release: Version | None,
) -> Profile:
    """Resolve ``extends`` chains.  ``load_raw(name, child)`` finds and parses one profile."""
    chain: list[RawProfile] = []
    current = name
    while current:
        raw = load_raw(current, chain[-1] if chain else None)
        if any(r.origin == raw.origin for r in chain):
            cycle = " -> ".join([r.name for r in chain] + [raw.name])
            last = chain[-1]
            raise err_at(
                last.origin,
                last.lines.top("extends"),
                f"extends cycle: {cycle}",
                f"remove the extends line of one of them ({raw.origin})",
            )
        chain.append(raw)
        current = raw.data.get("extends")
    settings: dict[str, Setting] = {}
    for raw in reversed(chain):  # ancestors first, children override key by key
        if raw.data.get("kernel_defaults"):
            settings.update(kernel_default_settings(kb, release))
        settings.update(raw.settings)
    top = chain[0]
    return Profile(
        name=top.name,
        description=top.data.get("description", ""),
        origin=top.origin,
        settings=settings,
        extends=top.data.get("extends"),
        kernel=top.data.get("kernel"),
        chain=tuple(r.name for r in chain),
    )
