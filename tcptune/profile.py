"""Tuning profiles: parsing, validation, `extends`, and where profiles are found.

A profile is a TOML file (format: man/tcptune-profile.5).  Everything here is
pure except the few functions at the bottom that read profile files; none of
it touches /proc.  Keys are validated (net.* only, no path tricks, known to the
knowledge base or to the running kernel) before anything else sees them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.kb import KnowledgeBase, Param, load_kb
from tcptune.kernel.version import Version, format_version, version_matches
from tcptune.keys import SECRET_KEYS, normalize_key

MAX_PROFILE_BYTES = 1 << 20
KERNEL_DEFAULT = "kernel-default"
TOP_LEVEL = ("description", "extends", "kernel", "kernel_defaults", "settings")
SETTING_FIELDS = ("value", "accept", "reason", "source", "required")
ACCEPT_FIELDS = ("min", "max", "one_of")
PROFILE_DIRS_ENV = "TCPTUNE_PROFILE_DIRS"


def tokens(value: str) -> list[str]:
    """Multi-value keys compare token by token, whitespace-insensitive."""
    return str(value).split()


def _as_ints(value: str) -> list[int] | None:
    try:
        return [int(t) for t in tokens(value)]
    except ValueError:
        return None


@dataclass(frozen=True)
class Accept:
    """What audit accepts besides the exact value: bounds (field by field for vectors) or a set."""

    min: tuple[int, ...] | None = None
    max: tuple[int, ...] | None = None
    one_of: tuple[str, ...] | None = None

    def accepts(self, actual: str) -> bool:
        if self.one_of is not None:
            return tokens(actual) in [tokens(v) for v in self.one_of]
        nums = _as_ints(actual)
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
class _Raw:
    """One parsed (not yet resolved) profile file."""

    name: str
    origin: str
    text: str
    data: dict[str, Any]
    settings: dict[str, Setting] = field(default_factory=dict)


# -- parsing (pure) ------------------------------------------------------------

def _line_of(text: str, needle: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    return None


def _err(origin: str, text: str, needle: str | None, message: str, hint: str | None = None) -> TcptuneError:
    line = _line_of(text, needle) if needle else None
    where = f"{origin}:{line}" if line else origin
    return TcptuneError(f"{where}: {message}", ExitCode.BAD_INPUT, hint=hint)


def decode_profile_bytes(data: bytes, origin: str) -> str:
    if len(data) > MAX_PROFILE_BYTES:
        raise TcptuneError(f"{origin}: {len(data)} bytes is over the {MAX_PROFILE_BYTES >> 20} MiB limit for a profile", ExitCode.BAD_INPUT)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TcptuneError(f"{origin}:{line}: not UTF-8 (byte {exc.start})", ExitCode.BAD_INPUT, hint="save the profile as UTF-8") from None


def _toml(text: str, origin: str) -> dict[str, Any]:
    if "\x00" in text:
        raise TcptuneError(f"{origin}:{text[: text.index(chr(0))].count(chr(10)) + 1}: NUL byte in profile", ExitCode.BAD_INPUT)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        # tomllib says "... (at line 3, column 7)"; turn that into file:line.
        import re

        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            msg = msg[: m.start()].strip()
            raise TcptuneError(f"{origin}:{m.group(1)}:{m.group(2)}: malformed TOML: {msg}", ExitCode.BAD_INPUT) from None
        raise TcptuneError(f"{origin}: malformed TOML: {msg}", ExitCode.BAD_INPUT) from None


def _suggest_field(name: str, allowed: Iterable[str]) -> str | None:
    import difflib

    hit = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    return f"did you mean {hit[0]!r}?" if hit else f"allowed: {', '.join(allowed)}"


def _canonical_value(raw: Any, key: str, param: Param | None, origin: str, text: str) -> str:
    def bad(why: str, hint: str | None = None) -> TcptuneError:
        return _err(origin, text, key, f"{key}: {why}", hint)

    if isinstance(raw, bool):
        raw = int(raw)
    if isinstance(raw, list):
        if not raw or not all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in raw):
            raise bad("a list value must hold integers or strings")
        value = " ".join(str(x) for x in raw)
    elif isinstance(raw, (int, str)):
        value = " ".join(str(raw).split())
    else:
        raise bad(f"value {raw!r} has type {type(raw).__name__}; use an integer, a string or a list")
    if not value:
        raise bad("empty value")
    if param is None:
        return value
    nums = _as_ints(value)
    if param.type in ("int", "bool"):
        if nums is None or len(nums) != 1:
            raise bad(f"value {value!r} is not an integer", f"{param.short} takes an integer ({param.unit})")
        _check_range(nums[0], param, bad)
    elif param.type == "vector":
        if param.length and (nums is None or len(nums) != param.length):
            raise bad(f"value {value!r} needs {param.length} integers", f"e.g. {param.default or ''}".strip())
        if param.min is not None or param.max is not None:
            for n in nums or []:
                _check_range(n, param, bad)
    elif param.type == "enum":
        if param.choices and value not in param.choices:
            raise bad(f"value {value!r} is not one of {', '.join(param.choices)}")
    return value


def _check_range(n: int, param: Param, bad) -> None:
    if param.min is not None and n < param.min or param.max is not None and n > param.max:
        raise bad(f"value {n} is out of range [{param.min}, {param.max}]")


def _accept(raw: Any, key: str, origin: str, text: str) -> Accept:
    if not isinstance(raw, dict):
        raise _err(origin, text, key, f"{key}: accept must be a table like {{ max = 3 }}")
    for f in raw:
        if f not in ACCEPT_FIELDS:
            raise _err(origin, text, key, f"{key}: unknown accept field {f!r}", _suggest_field(f, ACCEPT_FIELDS))
    if "one_of" in raw and ("min" in raw or "max" in raw):
        raise _err(origin, text, key, f"{key}: accept takes one_of or min/max, not both")

    def bound(v: Any) -> tuple[int, ...]:
        vals = v if isinstance(v, list) else [v]
        if not vals or not all(isinstance(x, int) and not isinstance(x, bool) for x in vals):
            raise _err(origin, text, key, f"{key}: accept bounds must be integers (or lists of integers for vectors)")
        return tuple(vals)

    if "one_of" in raw:
        if not isinstance(raw["one_of"], list) or not raw["one_of"]:
            raise _err(origin, text, key, f"{key}: accept.one_of must be a non-empty list")
        return Accept(one_of=tuple(" ".join(str(x) for x in v) if isinstance(v, list) else " ".join(str(v).split()) for v in raw["one_of"]))
    if not raw:
        raise _err(origin, text, key, f"{key}: accept is empty")
    return Accept(min=bound(raw["min"]) if "min" in raw else None, max=bound(raw["max"]) if "max" in raw else None)


def parse_profile(
    text: str,
    name: str,
    origin: str,
    kb: KnowledgeBase,
    known_keys: Iterable[str] = (),
) -> _Raw:
    """Parse and validate one profile file's text (no `extends` resolution)."""
    data = _toml(text, origin)
    known = set(known_keys)
    for top in data:
        if top not in TOP_LEVEL:
            raise _err(origin, text, top, f"unknown field {top!r}", _suggest_field(top, TOP_LEVEL))
    for f in ("description", "extends", "kernel"):
        if f in data and not isinstance(data[f], str):
            raise _err(origin, text, f, f"{f} must be a string")
    if "kernel_defaults" in data and not isinstance(data["kernel_defaults"], bool):
        raise _err(origin, text, "kernel_defaults", "kernel_defaults must be true or false")
    if data.get("kernel"):
        version_matches((0, 0, 0), data["kernel"])  # syntax check; raises with the fix
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise _err(origin, text, "settings", "[settings] must be a table")
    raw = _Raw(name, origin, text, data)
    for key_as_written, entry in settings.items():
        try:
            key = normalize_key(key_as_written)
        except TcptuneError as exc:
            raise _err(origin, text, key_as_written, exc.message, exc.hint) from None
        if key in SECRET_KEYS:
            # Its value would end up in audit/apply output, JSON and snapshots.
            raise _err(
                origin, text, key_as_written, f"{key} is a secret (the TCP Fast Open cookie key); tcptune never reads, prints or writes it",
                "set it with sysctl(8) from your secret store, not in a profile",
            )
        param = kb.get(key) if key in kb else None
        if param is None and key not in known:
            suggestion = kb.suggest(key, tuple(known))
            raise _err(
                origin, text, key_as_written, f"unknown key {key}",
                f"did you mean {suggestion}?" if suggestion else "see `tcptune show` for the keys this kernel has",
            )
        if isinstance(entry, dict) and "value" not in entry and any(k in entry for k in SETTING_FIELDS):
            raise _err(origin, text, key_as_written, f"{key}: missing `value`")
        if isinstance(entry, dict) and "value" in entry:
            for f in entry:
                if f not in SETTING_FIELDS:
                    raise _err(origin, text, key_as_written, f"{key}: unknown field {f!r}", _suggest_field(f, SETTING_FIELDS))
            for f in ("reason", "source"):
                if f in entry and not isinstance(entry[f], str):
                    raise _err(origin, text, key_as_written, f"{key}: {f} must be a string")
            if "required" in entry and not isinstance(entry["required"], bool):
                raise _err(origin, text, key_as_written, f"{key}: required must be true or false")
            value = _canonical_value(entry["value"], key, param, origin, text)
            accept = _accept(entry["accept"], key, origin, text) if "accept" in entry else None
            setting = Setting(key, value, entry.get("reason", ""), entry.get("source", ""), entry.get("required", False), accept)
        else:  # short form: "key" = value
            value = _canonical_value(entry, key, param, origin, text)
            setting = Setting(key, value, "", "")
        if key in raw.settings:
            raise _err(origin, text, key_as_written, f"{key} is set twice")
        raw.settings[key] = setting
    if not raw.settings and not data.get("kernel_defaults") and not data.get("extends"):
        raise TcptuneError(f"{origin}: profile sets no keys", ExitCode.BAD_INPUT, hint="add a [settings.\"net.ipv4....\"] table")
    return raw


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
        why = f"kernel default: {p.meaning}" + (" (computed at boot from memory and page size; any value the formula can give is a default)" if rng else "")
        out[p.key] = Setting(p.key, default, why, p.source, accept=accept, implicit=True)
    return out


def resolve(
    name: str,
    load_raw,
    kb: KnowledgeBase,
    release: Version | None,
) -> Profile:
    """Resolve ``extends`` chains.  ``load_raw(name) -> _Raw`` finds and parses one profile."""
    chain: list[_Raw] = []
    current = name
    while current:
        raw = load_raw(current, chain[-1] if chain else None)
        if any(r.origin == raw.origin for r in chain):
            cycle = " -> ".join([r.name for r in chain] + [raw.name])
            raise TcptuneError(f"extends cycle: {cycle}", ExitCode.BAD_INPUT, hint=f"remove the extends line of one of them ({raw.origin})")
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


# -- finding profile files ---------------------------------------------------

def builtin_dir() -> Path:
    """Built-ins: installed inside the package (wheel), or the repo's profiles/ (editable install)."""
    here = Path(__file__).resolve().parent
    installed = here / "_profiles"
    return installed if installed.is_dir() else here.parent / "profiles"


def user_dirs() -> list[Path]:
    """User profile directories, highest precedence first (TCPTUNE_PROFILE_DIRS replaces them)."""
    env = os.environ.get(PROFILE_DIRS_ENV)
    if env is not None:
        return [Path(p) for p in env.split(":") if p]
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [home / "tcptune/profiles", Path("/etc/tcptune/profiles")]


def search_path(search_dirs: list[Path] | None = None) -> list[tuple[Path, str]]:
    dirs = user_dirs() if search_dirs is None else list(search_dirs)
    return [(d, "user") for d in dirs] + [(builtin_dir(), "built-in")]


def _is_path(spec: str) -> bool:
    return "/" in spec or spec.endswith(".toml")


def read_profile_file(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PROFILE_BYTES + 1)
    except FileNotFoundError:
        raise TcptuneError(f"{path}: no such profile file", ExitCode.BAD_INPUT, hint="see `tcptune profiles list`") from None
    except IsADirectoryError:
        raise TcptuneError(f"{path}: is a directory, not a profile file", ExitCode.BAD_INPUT) from None
    except OSError as exc:
        raise TcptuneError(f"{path}: cannot read: {exc.strerror}", ExitCode.BAD_INPUT) from exc
    return decode_profile_bytes(data, str(path))


def find_profile(name: str, search_dirs: list[Path] | None = None) -> tuple[Path, str]:
    """(path, 'user'|'built-in') of the profile called ``name``; user dirs shadow built-ins."""
    if not name or "\x00" in name or name.startswith(".") or "/" in name:
        raise TcptuneError(f"{name!r} is not a profile name", ExitCode.BAD_INPUT)
    for d, kind in search_path(search_dirs):
        p = d / f"{name}.toml"
        if p.is_file():
            return p, kind
    names = sorted({p.stem for d, _ in search_path(search_dirs) if d.is_dir() for p in d.glob("*.toml")})
    import difflib

    hit = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {hit[0]}?" if hit else f"available: {', '.join(names)}"
    raise TcptuneError(f"no profile named {name!r}", ExitCode.BAD_INPUT, hint=hint)


def load_profile(
    spec: str,
    *,
    kb: KnowledgeBase | None = None,
    kernel_release: Version | None = None,
    search_dirs: list[Path] | None = None,
    known_keys: Iterable[str] = (),
) -> Profile:
    """Load a profile by name or path, with `extends` resolved and every value validated.

    A path's parent is looked up first beside the file, then by name.
    """
    if not isinstance(spec, str) or not spec.strip():
        # An empty PROFILE argument (`apply "$P"` with P unset) must not resolve to anything.
        raise TcptuneError("empty profile name", ExitCode.BAD_INPUT, hint="name a profile (see `tcptune profiles list`) or a .toml path")
    kb = kb or load_kb()
    known = tuple(known_keys)

    def load_raw(name_or_path: str, child: _Raw | None) -> _Raw:
        if _is_path(name_or_path):
            path = Path(name_or_path)
            if child is not None and not path.is_absolute():
                path = Path(child.origin).parent / path
        else:
            beside = Path(child.origin).parent / f"{name_or_path}.toml" if child is not None and child.origin != "built-in" else None
            path = beside if beside is not None and beside.is_file() else find_profile(name_or_path, search_dirs)[0]
        text = read_profile_file(path)
        name = path.stem
        return parse_profile(text, name, str(path), kb, known)

    return resolve(spec, load_raw, kb, kernel_release)


@dataclass(frozen=True)
class ProfileInfo:
    name: str
    path: str
    kind: str  # user | built-in
    description: str
    shadowed_by: str | None = None


def list_profiles(search_dirs: list[Path] | None = None) -> list[ProfileInfo]:
    """Every profile on the search path, in precedence order; shadowed ones are marked."""
    out: list[ProfileInfo] = []
    first: dict[str, str] = {}
    for d, kind in search_path(search_dirs):
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.toml")):
            try:
                desc = _toml(read_profile_file(p), str(p)).get("description", "")
                desc = desc if isinstance(desc, str) else ""
            except TcptuneError as exc:
                desc = f"(invalid: {exc})"
            out.append(ProfileInfo(p.stem, str(p), kind, desc, first.get(p.stem)))
            first.setdefault(p.stem, str(p))
    return out
