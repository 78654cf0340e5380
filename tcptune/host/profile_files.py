"""Finding and reading profile files: the search path, `extends` targets, `profiles list`.

Parsing is pure (tcptune.core.profile_parse); this module is the file-system half.  Every
file is opened without blocking and must be a regular file, so a FIFO planted as a profile,
an `extends` target or a *.toml in a profile directory is refused at once instead of
hanging.  A directory tcptune may not read (another user's ~/.config when HOME points
there) is skipped with a note, never a crash.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tcptune.core.profile import Profile, RawProfile, resolve
from tcptune.core.profile_parse import MAX_PROFILE_BYTES, decode_profile_bytes, description_of, parse_profile
from tcptune.core.toml_lines import err_at
from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.kb import KnowledgeBase, load_kb
from tcptune.kernel.version import Version

PROFILE_DIRS_ENV = "TCPTUNE_PROFILE_DIRS"


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


def read_profile_file(path: Path) -> str:
    """The text of one profile file: a regular file, at most MAX_PROFILE_BYTES, UTF-8."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise TcptuneError(
            f"{path}: no such profile file", ExitCode.BAD_INPUT, hint="see `tcptune profiles list`"
        ) from None
    except OSError as exc:
        raise TcptuneError(f"{path}: cannot read: {exc.strerror}", ExitCode.BAD_INPUT) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise TcptuneError(f"{path}: is a directory, not a profile file", ExitCode.BAD_INPUT)
        if not stat.S_ISREG(mode):
            raise TcptuneError(
                f"{path}: not a regular file (a FIFO, socket or device); a profile is a .toml file",
                ExitCode.BAD_INPUT,
            )
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise TcptuneError(f"{path}: cannot read: {exc.strerror}", ExitCode.BAD_INPUT) from None
    finally:
        if fd >= 0:
            os.close(fd)
    return decode_profile_bytes(data, str(path))


@dataclass(frozen=True)
class ProfileInfo:
    name: str
    path: str
    kind: str  # user | built-in
    description: str
    shadowed_by: str | None = None


class ProfileFiles:
    """The profile search path, highest precedence first: user directories, then the built-ins.

    ``notes`` collects what was skipped (an unreadable directory), for the command to print.
    """

    def __init__(self, search_dirs: Iterable[Path] | None = None):
        dirs = user_dirs() if search_dirs is None else list(search_dirs)
        self.dirs: list[tuple[Path, str]] = [(d, "user") for d in dirs] + [(builtin_dir(), "built-in")]
        self.notes: list[str] = []
        self._listing: dict[Path, list[Path]] = {}

    def _skip(self, d: Path, exc: OSError) -> None:
        note = f"profile directory {d} skipped: {exc.strerror or exc}"
        if note not in self.notes:
            self.notes.append(note)

    def toml_files(self, d: Path) -> list[Path]:
        """The *.toml entries of ``d``, sorted; [] when it is missing or unreadable (noted)."""
        if d not in self._listing:
            try:
                with os.scandir(d) as it:
                    names = sorted(e.name for e in it if e.name.endswith(".toml"))
            except (FileNotFoundError, NotADirectoryError):
                names = []
            except OSError as exc:
                self._skip(d, exc)
                names = []
            self._listing[d] = [d / n for n in names]
        return self._listing[d]

    def _has(self, d: Path, name: str) -> Path | None:
        p = d / f"{name}.toml"
        return p if p in self.toml_files(d) else None

    def find(self, name: str, *, below: Path | None = None) -> tuple[Path, str]:
        """(path, 'user'|'built-in') of the profile called ``name``; user dirs shadow built-ins.

        ``below``: a profile file whose own name is being looked up (a user web-server.toml that
        extends "web-server"); only directories after its own in the search path are searched.
        """
        if not name or "\x00" in name or name.startswith(".") or "/" in name:
            raise TcptuneError(f"{name!r} is not a profile name", ExitCode.BAD_INPUT)
        dirs = self.dirs
        if below is not None:
            here = _real(below.parent)
            idx = next((i for i, (d, _) in enumerate(dirs) if _real(d) == here), None)
            if idx is not None:
                dirs = dirs[idx + 1 :]
            dirs = [(d, k) for d, k in dirs if _real(d / f"{name}.toml") != _real(below)]
        for d, kind in dirs:
            p = self._has(d, name)
            if p is not None:
                return p, kind
        names = sorted({p.stem for d, _ in self.dirs for p in self.toml_files(d)})
        hit = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {hit[0]}?" if hit else f"available: {', '.join(names)}"
        raise TcptuneError(f"no profile named {name!r}", ExitCode.BAD_INPUT, hint=hint)

    def _path_of(self, spec: str, child: RawProfile | None) -> Path:
        if "/" in spec or spec.endswith(".toml"):
            path = Path(spec)
            return Path(child.origin).parent / path if child is not None and not path.is_absolute() else path
        if child is not None and spec == child.name:
            # A profile extending its own name means the one it shadows (a user
            # web-server.toml on top of the built-in web-server): look further down the path.
            return self.find(spec, below=Path(child.origin))[0]
        if child is not None:
            beside = Path(child.origin).parent
            if self._has(beside, spec):
                return beside / f"{spec}.toml"
        return self.find(spec)[0]

    def load(
        self,
        spec: str,
        *,
        kb: KnowledgeBase | None = None,
        kernel_release: Version | None = None,
        known_keys: Iterable[str] = (),
    ) -> Profile:
        """A profile by name or path, with `extends` resolved and every value validated.

        A parent named in `extends` is looked up first beside the file, then by name.
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

        def load_raw(name_or_path: str, child: RawProfile | None) -> RawProfile:
            try:
                path = self._path_of(name_or_path, child)
                text = read_profile_file(path)
            except TcptuneError as exc:
                if child is None:
                    raise
                # A missing or unreadable parent is the child's error: name the extends line.
                raise err_at(
                    child.origin, child.lines.top("extends"), f"extends {name_or_path!r}: {exc.message}", exc.hint
                ) from None
            return parse_profile(text, path.stem, str(path), kb, known)

        return resolve(spec, load_raw, kb, kernel_release)

    def list(self) -> list[ProfileInfo]:
        """Every profile on the search path, in precedence order; shadowed ones are marked.

        A file that cannot be read or parsed is listed with "(invalid: why)" as its
        description: one bad file never hides the others.
        """
        out: list[ProfileInfo] = []
        first: dict[str, str] = {}
        for d, kind in self.dirs:
            for p in self.toml_files(d):
                try:
                    desc = description_of(read_profile_file(p), str(p))
                except TcptuneError as exc:
                    desc = f"(invalid: {exc})"
                out.append(ProfileInfo(p.stem, str(p), kind, desc, first.get(p.stem)))
                first.setdefault(p.stem, str(p))
        return out


def _real(p: Path) -> str:
    return os.path.realpath(p)


def load_profile(
    spec: str,
    *,
    kb: KnowledgeBase | None = None,
    kernel_release: Version | None = None,
    search_dirs: list[Path] | None = None,
    known_keys: Iterable[str] = (),
) -> Profile:
    """One profile by name or path (see ProfileFiles.load); the search path's notes are dropped."""
    return ProfileFiles(search_dirs).load(spec, kb=kb, kernel_release=kernel_release, known_keys=known_keys)


def list_profiles(search_dirs: list[Path] | None = None) -> list[ProfileInfo]:
    return ProfileFiles(search_dirs).list()
