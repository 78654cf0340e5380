"""Tuning profiles: parsing, validation, `extends`, and where profiles are found.

A profile is a TOML file (format: man/tcptune-profile.5).  Everything here is
pure except the few functions at the bottom that read profile files; none of
it touches /proc.  Keys are validated (net.* only, no path tricks, known to the
knowledge base or to the running kernel) before anything else sees them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcptune.core.keys import SECRET_KEYS, normalize_key
from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.kb import KnowledgeBase, Param, load_kb
from tcptune.kernel.version import Version, format_version, version_matches
from tcptune.values import normalize_value

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

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]*?)\s*\]\s*(?:#.*)?$")
_SETTING_HEADER = re.compile(r"""^settings\s*\.\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_\-]+))$""")


def _assigns(line: str, name: str) -> bool:
    """Does this TOML line assign ``name`` (bare or quoted) at its start?"""
    m = re.match(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_\-]+))\s*=""", line)
    return bool(m) and name in (m.group(1), m.group(2), m.group(3))


def _tables(text: str):
    """(line number, table, line) for each line; table is None (top), "settings" or ("settings", KEY)."""
    table: Any = None
    for i, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            head = m.group(1)
            sm = _SETTING_HEADER.match(head)
            table = ("settings", next(g for g in sm.groups() if g is not None)) if sm else head
            yield i, "header", table, line
            continue
        if line.lstrip().startswith("#"):
            continue
        yield i, "line", table, line


def top_line(text: str, name: str) -> int | None:
    """Line of the top-level assignment ``name = ...`` (comments and tables skipped)."""
    for i, kind, table, line in _tables(text):
        if kind == "line" and table is None and _assigns(line, name):
            return i
    return None


def key_line(text: str, key: str, field_name: str | None = None) -> int | None:
    """Line of a setting: its `[settings."KEY"]` header, its line under [settings], or, with
    ``field_name``, the line of that field inside the setting's table."""
    header = None
    for i, kind, table, line in _tables(text):
        if kind == "header" and table == ("settings", key):
            header = i
        elif kind == "line" and table == "settings" and _assigns(line, key):
            return i  # short form or inline table: the whole setting is this line
        elif kind == "line" and field_name and table == ("settings", key) and _assigns(line, field_name):
            return i
    return header


def _err_at(origin: str, line: int | None, message: str, hint: str | None = None) -> TcptuneError:
    where = f"{origin}:{line}" if line else origin
    return TcptuneError(f"{where}: {message}", ExitCode.BAD_INPUT, hint=hint)


def decode_profile_bytes(data: bytes, origin: str) -> str:
    if len(data) > MAX_PROFILE_BYTES:
        raise TcptuneError(
            f"{origin}: {len(data)} bytes is over the {MAX_PROFILE_BYTES >> 20} MiB limit for a profile",
            ExitCode.BAD_INPUT,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TcptuneError(
            f"{origin}:{line}: not UTF-8 (byte {exc.start})", ExitCode.BAD_INPUT, hint="save the profile as UTF-8"
        ) from None


def _toml(text: str, origin: str) -> dict[str, Any]:
    if "\x00" in text:
        raise TcptuneError(
            f"{origin}:{text[: text.index(chr(0))].count(chr(10)) + 1}: NUL byte in profile", ExitCode.BAD_INPUT
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        # tomllib says "... (at line 3, column 7)"; turn that into file:line.
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            msg = msg[: m.start()].strip()
            raise TcptuneError(
                f"{origin}:{m.group(1)}:{m.group(2)}: malformed TOML: {msg}", ExitCode.BAD_INPUT
            ) from None
        raise TcptuneError(f"{origin}: malformed TOML: {msg}", ExitCode.BAD_INPUT) from None


def _suggest_field(name: str, allowed: Iterable[str]) -> str | None:
    import difflib

    hit = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    return f"did you mean {hit[0]!r}?" if hit else f"allowed: {', '.join(allowed)}"


def _canonical_value(
    raw: Any, key: str, param: Param | None, where: tuple[str, int | None], what: str = "value"
) -> str:
    """Check one value against the knowledge base and return it whitespace-normalised.

    ``where`` is (file, line) for the error; ``what`` names the field ("value", "accept.one_of").
    """

    def bad(why: str, hint: str | None = None) -> TcptuneError:
        return _err_at(where[0], where[1], f"{key}: {why}", hint)

    if isinstance(raw, bool):
        if param is not None and param.type != "bool":
            raise bad(
                f"{what} {str(raw).lower()} is a boolean, but {param.short} takes {_kind(param)}",
                f"write a number, e.g. {param.default or 0}",
            )
        raw = int(raw)
    if isinstance(raw, list):
        if not raw or not all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in raw):
            raise bad(f"a list {what} must hold integers or strings")
        value = " ".join(str(x) for x in raw)
    elif isinstance(raw, (int, str)):
        value = normalize_value(raw)
    else:
        raise bad(f"{what} {raw!r} has type {type(raw).__name__}; use an integer, a string or a list")
    if not value:
        raise bad(f"empty {what}")
    if param is None:
        return value
    nums = _as_ints(value)
    if param.type in ("int", "bool"):
        if nums is None or len(nums) != 1:
            raise bad(f"{what} {value!r} is not an integer", f"{param.short} takes an integer ({param.unit})")
        _check_range(nums[0], param, bad, what)
    elif param.type == "vector":
        if param.length and (nums is None or len(nums) != param.length):
            raise bad(f"{what} {value!r} needs {param.length} integers", f"e.g. {param.default or ''}".strip())
        if param.min is not None or param.max is not None:
            for n in nums or []:
                _check_range(n, param, bad, what)
        if param.ascending and nums and any(a > b for a, b in zip(nums, nums[1:])):
            raise bad(
                f"{what} {value!r}: the kernel rejects a first field above the second (EINVAL)", f"e.g. {param.default}"
            )
    elif param.type == "enum":
        if param.choices and value not in param.choices:
            raise bad(f"{what} {value!r} is not one of {', '.join(param.choices)}")
    return value


def _kind(param: Param) -> str:
    return {
        "vector": f"{param.length or 'several'} integers",
        "string": "a string",
        "enum": "one of " + ", ".join(param.choices),
    }.get(param.type, "an integer")


def _check_range(n: int, param: Param, bad, what: str = "value") -> None:
    if param.min is not None and n < param.min or param.max is not None and n > param.max:
        raise bad(f"{what} {n} is out of range [{param.min}, {param.max}]")


def _accept(raw: Any, key: str, param: Param | None, origin: str, line: int | None) -> Accept:
    def bad(why: str, hint: str | None = None) -> TcptuneError:
        return _err_at(origin, line, f"{key}: {why}", hint)

    if not isinstance(raw, dict):
        raise bad("accept must be a table like { max = 3 }")
    for f in raw:
        if f not in ACCEPT_FIELDS:
            raise bad(f"unknown accept field {f!r}", _suggest_field(f, ACCEPT_FIELDS))
    if "one_of" in raw and ("min" in raw or "max" in raw):
        raise bad("accept takes one_of or min/max, not both")
    fields = param.length if param is not None and param.type == "vector" else 1

    def bound(name: str, v: Any) -> tuple[int, ...]:
        vals = v if isinstance(v, list) else [v]
        if not vals or not all(isinstance(x, int) and not isinstance(x, bool) for x in vals):
            raise bad(f"accept.{name} must be an integer (or a list of integers for vectors)")
        if param is not None and param.type == "string":
            raise bad(f"accept.{name}: {param.short} is a string; use accept = {{ one_of = [...] }}")
        if param is not None and fields and len(vals) != fields:
            if fields > 1:
                raise bad(
                    f"accept.{name} has {len(vals)} field(s) but {param.short} has {fields}; bounds apply field by field",
                    f"e.g. {name} = [{', '.join((param.default or ' '.join(['0'] * fields)).split())}]",
                )
            raise bad(f"accept.{name} is a list but {param.short} takes one integer", f"write {name} = {vals[0]}")
        return tuple(vals)

    if "one_of" in raw:
        if not isinstance(raw["one_of"], list) or not raw["one_of"]:
            raise bad("accept.one_of must be a non-empty list")
        return Accept(
            one_of=tuple(_canonical_value(v, key, param, (origin, line), "accept.one_of value") for v in raw["one_of"])
        )
    if not raw:
        raise bad("accept is empty")
    lo = bound("min", raw["min"]) if "min" in raw else None
    hi = bound("max", raw["max"]) if "max" in raw else None
    if lo is not None and hi is not None:
        if len(lo) != len(hi):
            raise bad("accept.min and accept.max have different numbers of fields")
        if any(a > b for a, b in zip(lo, hi)):
            raise bad(
                f"accept.min {' '.join(map(str, lo))} is above accept.max {' '.join(map(str, hi))}; nothing would be accepted"
            )
    return Accept(min=lo, max=hi)


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

    def top_err(f: str, message: str, hint: str | None = None) -> TcptuneError:
        return _err_at(origin, top_line(text, f), message, hint)

    for top in data:
        if top not in TOP_LEVEL:
            raise top_err(top, f"unknown field {top!r}", _suggest_field(top, TOP_LEVEL))
    for f in ("description", "extends", "kernel"):
        if f in data and not isinstance(data[f], str):
            raise top_err(f, f"{f} must be a string")
    if "kernel_defaults" in data and not isinstance(data["kernel_defaults"], bool):
        raise top_err("kernel_defaults", "kernel_defaults must be true or false")
    if data.get("kernel"):
        try:
            version_matches((0, 0, 0), data["kernel"])  # syntax check
        except TcptuneError as exc:
            raise top_err("kernel", exc.message, exc.hint) from None
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise top_err("settings", "[settings] must be a table")
    raw = _Raw(name, origin, text, data)
    for key_as_written, entry in settings.items():
        line = key_line(text, key_as_written)

        # Bound now: the closure is used only inside this iteration, but say so explicitly.
        def err(
            message: str,
            hint: str | None = None,
            field_name: str | None = None,
            key_as_written=key_as_written,
            line=line,
        ) -> TcptuneError:
            return _err_at(origin, key_line(text, key_as_written, field_name) if field_name else line, message, hint)

        try:
            key = normalize_key(key_as_written)
        except TcptuneError as exc:
            raise err(exc.message, exc.hint) from None
        if key in SECRET_KEYS:
            # Its value would end up in audit/apply output, JSON and snapshots.
            raise err(
                f"{key} is a secret (the TCP Fast Open cookie key); tcptune never reads, prints or writes it",
                "set it with sysctl(8) from your secret store, not in a profile",
            )
        param = kb.get(key) if key in kb else None
        if param is None and key not in known:
            suggestion = kb.suggest(key, tuple(known))
            raise err(
                f"unknown key {key}",
                f"did you mean {suggestion}?" if suggestion else "see `tcptune show` for the keys this kernel has",
            )
        if isinstance(entry, dict):
            # A table is always the canonical form: `valu = 2` is a misspelt field, not a value.
            for f in entry:
                if f not in SETTING_FIELDS:
                    raise err(f"{key}: unknown field {f!r}", _suggest_field(f, SETTING_FIELDS), f)
            if "value" not in entry:
                raise err(f"{key}: missing `value`", 'every [settings."KEY"] table needs value = ...')
            for f in ("reason", "source"):
                if f in entry and not isinstance(entry[f], str):
                    raise err(f"{key}: {f} must be a string", None, f)
            if "required" in entry and not isinstance(entry["required"], bool):
                raise err(f"{key}: required must be true or false", None, "required")
            value = _canonical_value(entry["value"], key, param, (origin, key_line(text, key_as_written, "value")))
            accept = (
                _accept(entry["accept"], key, param, origin, key_line(text, key_as_written, "accept"))
                if "accept" in entry
                else None
            )
            setting = Setting(
                key, value, entry.get("reason", ""), entry.get("source", ""), entry.get("required", False), accept
            )
            if accept is not None and not accept.accepts(value):
                raise err(
                    f"{key}: value {value!r} is outside its own accept ({accept.describe()})",
                    "audit would report drift right after apply; widen accept or change value",
                    "accept",
                )
        else:  # short form: "key" = value
            value = _canonical_value(entry, key, param, (origin, line))
            setting = Setting(key, value, "", "")
        if key in raw.settings:
            raise err(f"{key} is set twice")
        raw.settings[key] = setting
    if not raw.settings and not data.get("kernel_defaults") and not data.get("extends"):
        raise TcptuneError(
            f"{origin}: profile sets no keys", ExitCode.BAD_INPUT, hint='add a [settings."net.ipv4...."] table'
        )
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
        why = f"kernel default: {p.meaning}" + (
            " (computed at boot from memory and page size; any value the formula can give is a default)" if rng else ""
        )
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
            last = chain[-1]
            raise _err_at(
                last.origin,
                top_line(last.text, "extends"),
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


# -- finding profile files ---------------------------------------------------


def builtin_dir() -> Path:
    """Built-ins: installed inside the package (wheel), or the repo's profiles/ (editable install)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "_profiles"
    return installed if installed.is_dir() else package.parent / "profiles"


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
        raise TcptuneError(
            f"{path}: no such profile file", ExitCode.BAD_INPUT, hint="see `tcptune profiles list`"
        ) from None
    except IsADirectoryError:
        raise TcptuneError(f"{path}: is a directory, not a profile file", ExitCode.BAD_INPUT) from None
    except OSError as exc:
        raise TcptuneError(f"{path}: cannot read: {exc.strerror}", ExitCode.BAD_INPUT) from exc
    return decode_profile_bytes(data, str(path))


def find_profile(name: str, search_dirs: list[Path] | None = None, *, below: Path | None = None) -> tuple[Path, str]:
    """(path, 'user'|'built-in') of the profile called ``name``; user dirs shadow built-ins.

    ``below``: a profile file whose own name is being looked up (a user web-server.toml that
    extends "web-server"); only directories after its own in the search path are searched.
    """
    if not name or "\x00" in name or name.startswith(".") or "/" in name:
        raise TcptuneError(f"{name!r} is not a profile name", ExitCode.BAD_INPUT)
    path_dirs = search_path(search_dirs)
    if below is not None:
        here = below.resolve().parent
        idx = next((i for i, (d, _) in enumerate(path_dirs) if d.resolve() == here), None)
        if idx is not None:
            path_dirs = path_dirs[idx + 1 :]
        path_dirs = [(d, k) for d, k in path_dirs if (d / f"{name}.toml").resolve() != below.resolve()]
    for d, kind in path_dirs:
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
        raise TcptuneError(
            "empty profile name",
            ExitCode.BAD_INPUT,
            hint="name a profile (see `tcptune profiles list`) or a .toml path",
        )
    kb = kb or load_kb()
    known = tuple(known_keys)

    def load_raw(name_or_path: str, child: _Raw | None) -> _Raw:
        try:
            if _is_path(name_or_path):
                path = Path(name_or_path)
                if child is not None and not path.is_absolute():
                    path = Path(child.origin).parent / path
            elif child is not None and name_or_path == child.name:
                # A profile extending its own name means the one it shadows (a user
                # web-server.toml on top of the built-in web-server): look further down the path.
                path = find_profile(name_or_path, search_dirs, below=Path(child.origin))[0]
            else:
                beside = (
                    Path(child.origin).parent / f"{name_or_path}.toml"
                    if child is not None and child.origin != "built-in"
                    else None
                )
                path = beside if beside is not None and beside.is_file() else find_profile(name_or_path, search_dirs)[0]
            text = read_profile_file(path)
        except TcptuneError as exc:
            if child is None:
                raise
            # A missing or unreadable parent is the child's error: name the extends line.
            raise _err_at(
                child.origin, top_line(child.text, "extends"), f"extends {name_or_path!r}: {exc.message}", exc.hint
            ) from None
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
