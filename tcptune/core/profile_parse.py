"""Parsing and validating one profile file's text (pure: text in, a RawProfile out).

Every key is checked by tcptune.core.keys, every value by tcptune.core.sysctl_values
(the kernel's own parsers, so `profiles validate` ok means the kernel takes the value),
before anything else sees them.  Errors name file:line; lines come from
tcptune.core.toml_lines, which reads in linear time whatever the input.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from typing import Any

from tcptune.core import sysctl_values
from tcptune.core.keys import SECRET_KEYS, normalize_key
from tcptune.core.profile import TOP_LEVEL, Accept, RawProfile, Setting
from tcptune.core.toml_lines import KeyLines, err_at
from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.kb import KnowledgeBase, Param
from tcptune.kernel.version import version_matches
from tcptune.values import normalize_value

MAX_PROFILE_BYTES = 1 << 20
SETTING_FIELDS = ("value", "accept", "reason", "source", "required")
ACCEPT_FIELDS = ("min", "max", "one_of")
# A `kernel = ">=6.5"` component longer than this is no kernel version (they fit in 8 bits
# each in KERNEL_VERSION()); checked before int() sees it, which fails at 4,300 digits.
MAX_VERSION_DIGITS = 6


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
        head, sep, pos = msg.rpartition(" (at line ")
        line, _, col = pos.rstrip(")").partition(", column ")
        if sep and line.isdigit() and col.isdigit():
            raise TcptuneError(f"{origin}:{line}:{col}: malformed TOML: {head.strip()}", ExitCode.BAD_INPUT) from None
        raise TcptuneError(f"{origin}: malformed TOML: {msg}", ExitCode.BAD_INPUT) from None
    except RecursionError:
        # tomllib descends once per nested array or inline table.
        raise TcptuneError(
            f"{origin}: malformed TOML: arrays or inline tables nested too deeply", ExitCode.BAD_INPUT
        ) from None
    except ValueError as exc:
        # tomllib lets int()'s error through for a literal over Python's int-string limit.
        why = "an integer of more than 4300 digits; no sysctl value is that long" if "digits" in str(exc) else exc
        raise TcptuneError(f"{origin}: malformed TOML: {why}", ExitCode.BAD_INPUT) from None


def description_of(text: str, origin: str) -> str:
    """The `description` of a profile's text, for `profiles list` (no validation beyond TOML)."""
    desc = _toml(text, origin).get("description", "")
    return desc if isinstance(desc, str) else ""


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
        return err_at(where[0], where[1], f"{key}: {why}", hint)

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
        if param is not None and param.type == "string" and param.unit != "names":
            raise bad(f"{what} is a list, but {param.short} takes {_kind(param)}", "write one name as a string")
        raw = " ".join(str(x) for x in raw)
    elif not isinstance(raw, (int, str)):
        raise bad(f"{what} {raw!r} has type {type(raw).__name__}; use an integer, a string or a list")
    if isinstance(raw, str) and len(raw) > sysctl_values.MAX_VALUE_CHARS:
        raise bad(f"{what} is {len(raw)} characters; the kernel takes at most {sysctl_values.MAX_VALUE_CHARS}")
    value = normalize_value(raw)
    if not value:
        raise bad(f"empty {what}")
    if param is None:
        return value
    if param.type == "string":
        why = sysctl_values.string_error(str(raw), param)
        if why:
            raise bad(f"{what} {why}", f"{param.short} takes {_kind(param)}")
        return value
    fields = value.split()
    for f in fields:
        why = sysctl_values.integer_error(f)
        if why:
            shown = f if len(f) <= 24 else f[:21] + "..."
            raise bad(f"{what} {shown!r} {why}", f"{param.short} takes {_kind(param)}, in decimal ({param.unit})")
    nums = [int(f) for f in fields]
    if param.type == "vector" and param.length and len(nums) != param.length:
        raise bad(f"{what} {value!r} needs {param.length} integers", f"e.g. {param.default or ''}".strip())
    if param.type != "vector" and len(nums) != 1:
        raise bad(f"{what} {value!r} is not an integer", f"{param.short} takes an integer ({param.unit})")
    lo, hi = sysctl_values.type_range(param)
    for n in nums:
        if not lo <= n <= hi:
            raise bad(f"{what} {n} is out of range [{lo}, {hi}]")
    if param.ascending and any(a > b for a, b in zip(nums, nums[1:])):
        raise bad(
            f"{what} {value!r}: the kernel rejects a first field above the second (EINVAL)", f"e.g. {param.default}"
        )
    if param.type == "enum" and param.choices and value not in param.choices:
        raise bad(f"{what} {value!r} is not one of {', '.join(param.choices)}")
    return value


def _kind(param: Param) -> str:
    return {
        "vector": f"{param.length or 'several'} integers",
        "string": {
            "name": "one name",
            "names": "names separated by spaces",
            "port list": "ports like 1000,2000-2010",
        }.get(param.unit, "a string"),
        "enum": "one of " + ", ".join(param.choices),
    }.get(param.type, "an integer")


def _accept(raw: Any, key: str, param: Param | None, origin: str, line: int | None) -> Accept:
    def bad(why: str, hint: str | None = None) -> TcptuneError:
        return err_at(origin, line, f"{key}: {why}", hint)

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
) -> RawProfile:
    """Parse and validate one profile file's text (no `extends` resolution)."""
    data = _toml(text, origin)
    lines = KeyLines(text)
    known = set(known_keys)

    def top_err(f: str, message: str, hint: str | None = None) -> TcptuneError:
        return err_at(origin, lines.top(f), message, hint)

    for top in data:
        if top not in TOP_LEVEL:
            raise top_err(top, f"unknown field {top!r}", _suggest_field(top, TOP_LEVEL))
    for f in ("description", "extends", "kernel"):
        if f in data and not isinstance(data[f], str):
            raise top_err(f, f"{f} must be a string")
    if "kernel_defaults" in data and not isinstance(data["kernel_defaults"], bool):
        raise top_err("kernel_defaults", "kernel_defaults must be true or false")
    if data.get("kernel"):
        _check_kernel_spec(data["kernel"], top_err)
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise top_err("settings", "[settings] must be a table")
    raw = RawProfile(name, origin, lines, data)
    for key_as_written, entry in settings.items():
        setting = _setting(key_as_written, entry, kb, known, origin, lines)
        if setting.key in raw.settings:
            raise err_at(origin, lines.setting(key_as_written), f"{setting.key} is set twice")
        raw.settings[setting.key] = setting
    _cross_check(raw)
    if not raw.settings and not data.get("kernel_defaults") and not data.get("extends"):
        raise TcptuneError(
            f"{origin}: profile sets no keys", ExitCode.BAD_INPUT, hint='add a [settings."net.ipv4...."] table'
        )
    return raw


def _check_kernel_spec(spec: str, top_err) -> None:
    run = longest = 0
    for c in spec:  # a linear scan, before int() meets a 4,300-digit number
        run = run + 1 if c.isdigit() else 0
        longest = max(longest, run)
    if longest > MAX_VERSION_DIGITS or len(spec) > 200:
        raise top_err("kernel", f"kernel range {spec[:40]!r} is not understood", 'write e.g. ">=4.12" or ">=5.4,<6.0"')
    try:
        version_matches((0, 0, 0), spec)  # syntax check
    except TcptuneError as exc:
        raise top_err("kernel", exc.message, exc.hint) from None


def _setting(key_as_written: str, entry: Any, kb: KnowledgeBase, known: set[str], origin: str, lines: KeyLines):
    """One [settings] entry, checked: key, fields, value, accept."""

    def err(message: str, hint: str | None = None, field_name: str | None = None) -> TcptuneError:
        return err_at(origin, lines.setting(key_as_written, field_name), message, hint)

    if "." not in key_as_written and isinstance(entry, dict) and entry and not set(entry) & set(SETTING_FIELDS):
        raise err(
            f"{key_as_written}: a bare dotted key makes nested tables, not one sysctl key",
            'quote the whole key: "net.ipv4.tcp_sack" = 1',
        )
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
    if not isinstance(entry, dict):  # short form: "key" = value
        return Setting(key, _canonical_value(entry, key, param, (origin, lines.setting(key_as_written))), "", "")
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
    value = _canonical_value(entry["value"], key, param, (origin, lines.setting(key_as_written, "value")))
    accept = (
        _accept(entry["accept"], key, param, origin, lines.setting(key_as_written, "accept"))
        if "accept" in entry
        else None
    )
    if accept is not None and not accept.accepts(value):
        raise err(
            f"{key}: value {value!r} is outside its own accept ({accept.describe()})",
            "audit would report drift right after apply; widen accept or change value",
            "accept",
        )
    return Setting(key, value, entry.get("reason", ""), entry.get("source", ""), entry.get("required", False), accept)


def _cross_check(raw: RawProfile) -> None:
    """Rules the kernel applies between two keys of the same profile."""
    ports = raw.settings.get("net.ipv4.ip_local_port_range")
    if ports is None:
        return
    values = {k: s.value for k, s in raw.settings.items()}
    why = sysctl_values.port_range_error(int(ports.value.split()[0]), values)
    if why:
        raise err_at(
            raw.origin,
            raw.lines.setting(ports.key, "value") or raw.lines.setting(ports.key),
            f"{ports.key}: value {ports.value!r}: {why}",
            "start the range at 1024 or above (or lower net.ipv4.ip_unprivileged_port_start first)",
        )
