"""`tcptune profiles list|show|validate`: the profiles on the search path, one resolved, files checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tcptune.core.profile import Profile
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.profile_files import ProfileFiles, ProfileInfo
from tcptune.kernel.kb import load_kb
from tcptune.ops.sources import release_of
from tcptune.values import json_value


@dataclass(frozen=True)
class ProfileList:
    profiles: list[ProfileInfo]
    notes: list[str]

    def to_json(self) -> dict:
        out: dict = {
            "profiles": [
                {
                    "name": i.name,
                    "path": i.path,
                    "kind": i.kind,
                    "description": i.description,
                    "shadowed_by": i.shadowed_by,
                }
                for i in self.profiles
            ]
        }
        if self.notes:
            out["notes"] = self.notes
        return out


def list_profiles(files: ProfileFiles | None = None) -> ProfileList:
    files = files or ProfileFiles()
    infos = files.list()
    return ProfileList(infos, list(files.notes))


@dataclass(frozen=True)
class ProfileView:
    """One profile, resolved, and what the search for it skipped."""

    profile: Profile
    notes: list[str]

    def to_json(self) -> dict:
        prof = self.profile
        out = {
            "name": prof.name,
            "description": prof.description,
            "origin": prof.origin,
            "extends": prof.extends,
            "kernel": prof.kernel,
            "chain": list(prof.chain),
            "settings": [
                {
                    "key": s.key,
                    "value": json_value(s.value),
                    "accept": s.expected if s.accept else None,
                    "required": s.required,
                    "reason": s.reason,
                    "source": s.source,
                }
                for s in prof.settings.values()
            ],
        }
        if self.notes:
            out["notes"] = self.notes
        return out


def show_profile(spec: str, host, files: ProfileFiles | None = None) -> ProfileView:
    """``spec`` with `extends` resolved, validated against ``host``'s kernel and keys."""
    files = files or ProfileFiles()
    prof = files.load(spec, kb=load_kb(), kernel_release=release_of(host), known_keys=host.list_sysctls())
    return ProfileView(prof, list(files.notes))


@dataclass(frozen=True)
class Validation:
    path: str
    name: str | None
    keys: int
    error: str | None  # the one-line message, None when valid

    @property
    def valid(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        out: dict = {"path": self.path, "name": self.name, "keys": self.keys, "valid": self.valid}
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class ValidationReport:
    results: list[Validation]

    @property
    def exit_code(self) -> int:
        """The worst result: 2 when any file is invalid."""
        return ExitCode.OK if all(r.valid for r in self.results) else ExitCode.BAD_INPUT

    def to_json(self) -> dict:
        return {"results": [r.to_json() for r in self.results]}


def validate(paths: list[Path], files: ProfileFiles | None = None) -> ValidationReport:
    """Check every file (TOML, keys, types, the kernel's own value rules, extends); never stop at the first."""
    files = files or ProfileFiles()
    kb = load_kb()
    results = []
    for p in paths:
        spec = str(p) if "/" in str(p) else f"./{p}"
        try:
            prof = files.load(spec, kb=kb)
        except TcptuneError as exc:
            results.append(Validation(str(p), None, 0, str(exc)))
            continue
        results.append(Validation(str(p), prof.name, len(prof.settings), None))
    return ValidationReport(results)
