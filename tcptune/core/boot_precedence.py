"""sysctl.d precedence, for both boot-time loaders, and tcptune's own file (pure: text in, values out).

Two programs load sysctl.d at boot and they do not agree on every detail:

- **systemd-sysctl** (systemd-sysctl.service, every systemd host).  Reads ``*.conf``
  in /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d (and
  /lib/sysctl.d only when built for split /usr: Debian 12's 252 lists just the four);
  skips dotfiles; does NOT read /etc/sysctl.conf (Debian ships the symlink
  /etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf, read as a file of that name).
- **procps `sysctl --system`** (sysvinit/OpenRC boot scripts, admins by hand).  Reads
  ``*.conf`` in the same directories plus /lib/sysctl.d, dotfiles included, and then
  /etc/sysctl.conf last of all (src/sysctl.c PreloadSystem(), procps-ng 4.x).

Common to both: a name found in a more important directory hides the same name in
the others; an entry that is no readable file (a directory, a dangling symlink, a
symlink to /dev/null, an empty file) still hides it and sets nothing; the surviving
files are read in byte order of their *names*, whichever directory holds them, and
the last assignment of a key wins.  A glob key (``net.ipv4.conf.*.rp_filter = 1``)
skips keys assigned explicitly anywhere, and ``-pattern`` without a value excludes
keys from globs (sysctl.d(5); procps 4.0.2 behaves the same).  Sources: sysctl.d(5)
of systemd 252, procps-ng src/sysctl.c, and both programs run here in a private
mount+network namespace over test trees (tests/netns/test_apply_boot_loaders.py),
which is where the dangling-link, directory and dotfile rules were measured.

The host layer (tcptune.host.sysctld_files) lists and reads the files below a root, decides
which loader that system boots with, and hands ``(path, text)`` pairs to these
functions (text None: present but not a readable file); paths here are the
paths as seen from inside that root ("/etc/sysctl.d/90-tcptune.conf").
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tcptune.core.keys import normalize_key
from tcptune.core.sysctl_text import parse_sysctl_lines
from tcptune.errors import ExitCode, TcptuneError
from tcptune.values import json_value, normalize_value, values_equal

SYSCTL_D_DIRS = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
)
SYSCTL_CONF = "/etc/sysctl.conf"
SYSTEMD = "systemd"
PROCPS = "procps"
LOADERS = {SYSTEMD: "systemd-sysctl", PROCPS: "procps `sysctl --system`"}
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class BootValue:
    """The value a key gets at boot and the file:line that sets it."""

    value: str
    path: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def to_json(self) -> dict:
        return {"value": json_value(self.value), "path": self.path, "line": self.line}


@dataclass(frozen=True)
class Assignment:
    key: str  # dotted key, or a glob pattern
    value: str | None  # None for a '-pattern' exclusion line
    path: str
    line: int

    @property
    def is_glob(self) -> bool:
        return any(c in self.key for c in _GLOB_CHARS)


@dataclass
class BootState:
    """Everything the boot-time loader would do, per key."""

    files: list[str]  # files read, in load order
    assignments: list[Assignment]  # every line, in load order
    values: dict[str, BootValue] = field(default_factory=dict)  # explicit keys (+ globs expanded over known keys)
    setters: dict[str, list[BootValue]] = field(default_factory=dict)  # every assignment to a key, load order
    warnings: list[str] = field(default_factory=list)
    loader: str = PROCPS  # whose rules these are
    loader_reason: str = ""  # why the host layer picked that loader
    disagreements: list[Disagreement] = field(default_factory=list)  # keys the other loader would set otherwise


def is_sysctl_d_path(path: str) -> bool:
    """True when ``path`` is a file the boot loader reads (a *.conf in a sysctl.d dir, or /etc/sysctl.conf)."""
    path = posixpath.normpath(path)
    if path == SYSCTL_CONF:
        return True
    return posixpath.dirname(path) in SYSCTL_D_DIRS and path.endswith(".conf")


def own_file_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be tcptune's own file, else None.

    It must be a plain ``NAME.conf`` directly in one of the sysctl.d directories:
    never /etc/sysctl.conf (the administrator's file), never a dotfile (systemd-sysctl
    skips those), never a path that only normalises into place.  The same rule
    guards --persist-file and the persist record of a snapshot (which rollback
    would otherwise write or delete as root wherever it says).
    """
    if not isinstance(path, str) or "\x00" in path or not path.startswith("/"):
        return "not an absolute path"
    if posixpath.normpath(path) != path or "//" in path:
        return "not a normalised path (no '..', '.', '//' or trailing '/')"
    name = posixpath.basename(path)
    if posixpath.dirname(path) not in SYSCTL_D_DIRS:
        return f"not directly in a sysctl.d directory ({', '.join(SYSCTL_D_DIRS)})"
    if not name.endswith(".conf") or len(name) <= len(".conf"):
        return "the boot loaders only read files named *.conf"
    if name.startswith("."):
        return "a dotfile, which systemd-sysctl skips"
    return None


OWN_FILE_HEADER = "# Written by tcptune "


def is_own_file_text(text: str | None) -> bool:
    """Does ``text`` start with the header render_own_file writes?"""
    return text is not None and text.startswith(OWN_FILE_HEADER)


def _read_by(loader: str, path: str) -> bool:
    """Would ``loader`` consider this sysctl.d entry at all (before name masking)?"""
    if loader == SYSTEMD:
        # conf_files_list() skips hidden files; /etc/sysctl.conf is not one of its paths.
        return path != SYSCTL_CONF and not posixpath.basename(path).startswith(".")
    return path != SYSCTL_CONF


def order_config_files(paths: Iterable[str], loader: str = PROCPS) -> tuple[list[str], dict[str, str]]:
    """(files in load order, {hidden path: the same-named path that hides it}).

    ``paths`` are candidate files; anything ``loader`` does not read at boot is ignored.
    """
    if loader not in LOADERS:
        raise ValueError(f"unknown loader {loader!r}")
    by_name: dict[str, str] = {}
    hidden: dict[str, str] = {}
    rank = {d: i for i, d in enumerate(SYSCTL_D_DIRS)}
    candidates = sorted(
        {posixpath.normpath(p) for p in paths if is_sysctl_d_path(p) and _read_by(loader, posixpath.normpath(p))},
        key=lambda p: (rank[posixpath.dirname(p)], p),
    )
    for p in candidates:
        name = posixpath.basename(p)
        if name in by_name:
            hidden[p] = by_name[name]
        else:
            by_name[name] = p
    ordered = [by_name[n] for n in sorted(by_name, key=lambda n: n.encode())]  # strcmp() order
    if loader == PROCPS and any(posixpath.normpath(p) == SYSCTL_CONF for p in paths):
        ordered.append(SYSCTL_CONF)
    return ordered, hidden


# isspace() of C and of the kernel (lib/ctype.c): the only characters either loader or the
# kernel's number parser treat as blanks.  Python's str.split() and splitlines() also break
# on U+2028, U+0085, form feed, \x1c-\x1e ..., which neither loader does.
KERNEL_SPACE = " \t\n\v\f\r"
_STRIP = {SYSTEMD: " \t\n\r", PROCPS: KERNEL_SPACE}  # systemd's WHITESPACE; procps' isspace()
_SYSTEMD_EOL = re.compile(r"\r\n|\r|\n")  # read_line(): \n, \r and \r\n each end a line


def _lines(text: str, loader: str) -> list[str]:
    """The lines ``loader`` reads: procps getline() splits on \\n only, systemd's read_line()
    on \\n, \\r and \\r\\n (measured with procps 4.0.2 and systemd-sysctl 252)."""
    return _SYSTEMD_EOL.split(text) if loader == SYSTEMD else text.split("\n")


def kernel_refuses(value: str) -> str | None:
    """The character that makes the kernel refuse ``value`` as a loader writes it, else None.

    The integer parsers skip leading blanks (proc_skip_spaces(), isspace()), but right after
    a number only ' ', '\\t' or '\\n' may follow (proc_wspace_sep in kernel/sysctl.c
    __do_proc_dointvec()), and any other character is part of the word: "4 \\f" is taken,
    "4\\f", "3\\u20285" and "5\\x85" are refused (EINVAL), measured on 6.18 through both
    loaders.  A name (tcp_congestion_control) with such a character names nothing either.
    """
    prev = " "
    for c in value.lstrip(KERNEL_SPACE):
        if c.isspace() and (c not in KERNEL_SPACE or (c in "\v\f\r" and prev not in KERNEL_SPACE)):
            return c
        prev = c
    return None


def _describe(c: str) -> str:
    import unicodedata

    return f"U+{ord(c):04X} ({unicodedata.name(c, 'a control character').lower()})"


def _loader_line(raw: str, loader: str) -> tuple[str, str | None]:
    """(the line as ``loader`` hands it on, why it sets nothing at boot or None)."""
    line = raw.strip(_STRIP[loader])
    key, sep, value = line.partition("=")
    if not line or line[0] in "#;" or not sep:
        return line, None
    key = key.strip(_STRIP[loader])
    # procps: value = the rest after '=', leading ' '/'\\t' skipped; systemd: strstrip(value)
    value = value.lstrip(" \t") if loader == PROCPS else value.strip(_STRIP[SYSTEMD])
    bad_key = next((c for c in key if c.isspace() and c not in " \t"), None)
    if bad_key is not None:
        return line, f"the key holds {_describe(bad_key)}, so {LOADERS[loader]} names no sysctl"
    bad = kernel_refuses(value)
    if bad is not None:
        return line, f"the value holds {_describe(bad)}, which the kernel refuses in a value"
    return f"{key} = {' '.join(value.split())}", None


def parse_config_text(text: str, path: str, loader: str = PROCPS) -> tuple[list[Assignment], list[str]]:
    """Assignments of one file as ``loader`` reads it, and warnings for lines it skips.

    systemd-sysctl logs a malformed line and carries on with the rest of the
    file, so one bad line in someone else's file must not stop tcptune either.
    """
    out: list[Assignment] = []
    warnings: list[str] = []
    for lineno, raw in enumerate(_lines(text, loader), 1):
        stripped, why = _loader_line(raw, loader)
        if why is not None:
            warnings.append(f"{path}:{lineno}: line ignored at boot: {why}")
            continue
        if not stripped or stripped[0] in "#;":
            continue
        if (
            stripped.startswith("-")
            and "=" not in stripped
            and stripped[1:].strip()
            and " " not in stripped[1:].strip()
        ):
            out.append(Assignment(stripped[1:].strip(), None, path, lineno))  # '-pattern': exclude from globs
            continue
        try:
            parsed = parse_sysctl_lines(stripped, path, conf=True)
        except TcptuneError as exc:
            warnings.append(f"{path}:{lineno}: line ignored at boot: {exc.message.split(': ', 1)[-1]}")
            continue
        out.extend(Assignment(ln.key, ln.value, path, lineno) for ln in parsed)
    return out, warnings


def compute_boot_state(
    files: Sequence[tuple[str, str | None]], known_keys: Iterable[str] = (), loader: str = PROCPS
) -> BootState:
    """Apply ``loader``'s sysctl.d precedence to ``files`` [(path, text)].

    A text of None is an entry that is no readable file (a directory, a dangling
    symlink): it hides same-named files and sets nothing.  Explicit keys always
    appear in ``values``.  A glob assignment is expanded over ``known_keys`` (e.g.
    the profile's keys, or the keys of the running kernel): without a key list a
    glob cannot be resolved to keys.
    """
    texts = {posixpath.normpath(p): t for p, t in files}
    ordered, hidden = order_config_files(texts, loader)
    state = BootState(files=ordered, assignments=[], loader=loader)
    for hidden_path, winner in sorted(hidden.items()):
        state.warnings.append(f"{hidden_path} is not read at boot: {winner} has the same name and takes precedence")
    for path in ordered:
        if texts[path] is None:
            state.warnings.append(
                f"{path} is not a readable file (a directory or a dangling symlink?): it sets nothing, yet hides same-named files"
            )
            continue
        assigns, warns = parse_config_text(texts[path], path, loader)
        state.assignments.extend(assigns)
        state.warnings.extend(warns)
    explicit: set[str] = set()
    excluded_patterns: list[str] = []
    for a in state.assignments:
        if a.value is None:
            excluded_patterns.append(a.key)
        elif not a.is_glob:
            explicit.add(a.key)
    known = set(known_keys)
    for a in state.assignments:
        if a.value is None:
            continue
        if a.is_glob:
            targets = [
                k
                for k in sorted(known)
                if fnmatch.fnmatchcase(k, a.key)
                and k not in explicit
                and not any(fnmatch.fnmatchcase(k, p) for p in excluded_patterns)
            ]
        else:
            targets = [a.key]
        for key in targets:
            bv = BootValue(a.value, a.path, a.line)
            state.values[key] = bv
            state.setters.setdefault(key, []).append(bv)
    return state


@dataclass(frozen=True)
class Disagreement:
    """A key systemd-sysctl and `sysctl --system` would set differently at boot (None: not at all)."""

    key: str
    systemd: BootValue | None
    procps: BootValue | None

    def message(self) -> str:
        def show(bv: BootValue | None) -> str:
            return "leaves it alone" if bv is None else f"sets {bv.value} ({bv.where})"

        return (
            f"{self.key}: at boot systemd-sysctl {show(self.systemd)} but `sysctl --system` {show(self.procps)}; "
            "which one runs decides the value"
        )

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "systemd": self.systemd.to_json() if self.systemd else None,
            "procps": self.procps.to_json() if self.procps else None,
        }


def compare_loaders(files: Sequence[tuple[str, str | None]], known_keys: Iterable[str] = ()) -> list[Disagreement]:
    """Keys whose boot value (or whether one is set) differs between the two loaders."""
    known = list(known_keys)
    sd = compute_boot_state(files, known, SYSTEMD).values
    pp = compute_boot_state(files, known, PROCPS).values
    out = []
    for key in sorted(set(sd) | set(pp)):
        a, b = sd.get(key), pp.get(key)
        if a is not None and b is not None and values_equal(a.value, b.value):
            continue
        out.append(Disagreement(key, a, b))
    return out


@dataclass(frozen=True)
class Override:
    """Another file sets a key that tcptune's file sets, and wins at boot."""

    key: str
    ours: BootValue
    winner: BootValue

    @property
    def same_value(self) -> bool:
        return values_equal(self.ours.value, self.winner.value)

    def message(self) -> str:
        if self.same_value:
            return (
                f"{self.key}: {self.winner.where} sets the same value ({self.winner.value}) and is read after "
                f"{self.ours.path}; harmless today, but it wins if either file changes"
            )
        return (
            f"{self.key}: at boot {self.winner.where} sets {self.winner.value}, overriding tcptune's "
            f"{self.ours.value} from {self.ours.where} (remove that line, or give tcptune's file a later name)"
        )

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "ours": self.ours.to_json(),
            "winner": self.winner.to_json(),
            "same_value": self.same_value,
        }


def find_overrides(state: BootState, own_path: str) -> list[Override]:
    """Keys set in ``own_path`` whose boot value comes from another file."""
    own_path = posixpath.normpath(own_path)
    out: list[Override] = []
    for key, setters in state.setters.items():
        ours = [s for s in setters if s.path == own_path]
        if not ours:
            continue
        winner = state.values[key]
        if winner.path != own_path:
            out.append(Override(key, ours[-1], winner))
    out.sort(key=lambda o: o.key)
    return out


def own_file_problem(paths: Iterable[str], own_path: str, loader: str = PROCPS) -> str | None:
    """Why ``own_path`` would not be read at boot at all (not a sysctl.d path, or hidden), else None."""
    own_path = posixpath.normpath(own_path)
    if not is_sysctl_d_path(own_path) or not _read_by(loader, own_path):
        return (
            f"{own_path} is not read at boot by {LOADERS[loader]}: it reads *.conf files in {', '.join(SYSCTL_D_DIRS)}"
            + (f" and {SYSCTL_CONF}" if loader == PROCPS else ", no dotfiles")
        )
    _, hidden = order_config_files(set(paths) | {own_path}, loader)
    if own_path in hidden:
        return f"{own_path} is not read at boot: {hidden[own_path]} has the same name and takes precedence"
    return None


def _comment(text: str) -> str:
    return normalize_value(text)


def render_own_file(
    settings: Iterable[tuple[str, str, str]],
    *,
    profile: str,
    origin: str,
    version: str,
) -> str:
    """Text of tcptune's sysctl.d file: one ``key = value`` per (key, value, reason).

    Loads with `sysctl -p FILE` and systemd-sysctl alike.  Keys are validated
    and values are single-line, so nothing in a profile can inject extra lines.
    """
    lines = [
        f"{OWN_FILE_HEADER}{version} from profile {_comment(profile)} ({_comment(origin)}).",
        "# Do not edit: `tcptune apply --persist` rewrites this file and `tcptune rollback`",
        "# puts back the version it replaced.  See tcptune(8).",
    ]
    for key, value, reason in settings:
        key = normalize_key(key)
        value = normalize_value(value)
        if not value:
            raise TcptuneError(f"{key}: empty value cannot be persisted", ExitCode.BAD_INPUT)
        lines.append("")
        if reason:
            lines.append(f"# {_comment(reason)}")
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"
