"""`tcptune audit`: a source's values against a profile, or against what the next boot sets.

The verdicts are pure (tcptune.core.audit); this use case gathers what they need -- the
profile, the values, the kernel version, the sysctl.d files for --persisted -- and returns
one typed result that renderers and the JSON output read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tcptune.core import audit as verdicts
from tcptune.core.audit import Finding
from tcptune.core.keys import SECRET_KEYS
from tcptune.core.profile import KERNEL_DEFAULT, Profile
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.profile_files import ProfileFiles
from tcptune.kernel.kb import load_kb
from tcptune.ops.sources import read_values, release_note, release_of, require_tcp_keys

# What --persisted compares: the TCP-related net.* keys (fs.*, kernel.* lines are not ours to judge).
TCP_PREFIXES = ("net.ipv4.tcp_", "net.core.", "net.ipv4.ip_local_")
# Tables list what needs attention first.
VERDICT_ORDER = {"drift": 0, "warning": 1, "removed": 2, "unsupported": 3, "ok": 4}


@dataclass
class AuditResult:
    profile: str
    profile_origin: str
    source: str
    kernel: str | None
    findings: list[Finding]
    summary: dict[str, int]
    notes: list[str]
    exit_code: int
    persisted: bool = False

    def to_json(self) -> dict:
        return {
            "profile": self.profile,
            "profile_origin": self.profile_origin,
            "source": self.source,
            "kernel": self.kernel,
            "findings": [f.to_dict() for f in self.findings],
            "summary": self.summary,
            "notes": self.notes,
            "exit_code": self.exit_code,
        }

    def shown(self, show_all: bool) -> list[Finding]:
        """The rows a table shows: what needs attention first, ok rows only with --all."""
        rows = [f for f in self.findings if show_all or f.verdict != "ok"]
        return sorted(rows, key=lambda f: (VERDICT_ORDER[f.verdict], f.key))


def check_options(*, profile: str | None, persisted: bool, persist_root: Path | None, sysctl_dump: str | None) -> None:
    """Refuse option combinations that make no sense, before any source is opened."""
    if persisted and profile is not None:
        raise TcptuneError(
            "--persisted and --profile cannot be combined",
            ExitCode.BAD_INPUT,
            hint="--persisted compares with sysctl.d, not a profile",
        )
    if persist_root is not None and not persisted:
        raise TcptuneError("--persist-root only goes with --persisted", ExitCode.BAD_INPUT)
    if persisted and sysctl_dump:
        raise TcptuneError(
            "--persisted needs a host or --root, not a sysctl dump",
            ExitCode.BAD_INPUT,
            hint="sysctl.d files are read from the file system",
        )


def audit_profile(host, profile: str | None = None, *, strict: bool = False, files: ProfileFiles | None = None):
    """Audit ``host`` against a profile (default: kernel-default, i.e. what someone changed)."""
    require_tcp_keys(host)
    kb = load_kb()
    release = release_of(host)
    files = files or ProfileFiles()
    prof = files.load(
        KERNEL_DEFAULT if profile is None else profile,
        kb=kb,
        kernel_release=release,
        known_keys=host.list_sysctls(),
    )
    current = read_values(host, set(prof.settings) | {p.key for p in kb if p.warn})
    findings = verdicts.audit(prof, current, kb, release, source_kind=host.kind.value)
    hidden = verdicts.hidden_global_keys(prof, current, kb, release)
    notes = _notes(prof, host, release) + files.notes
    if hidden:
        notes.append(
            f"{len(hidden)} global key(s) not checked: only the initial network namespace has them and this source "
            f"does not show them ({', '.join(k.rsplit('.', 1)[-1] for k in hidden)}); audit the host for those"
        )
    return _result(prof, host, findings, notes, strict)


def audit_persisted(host, sysctl_root: Path, *, strict: bool = False) -> AuditResult:
    """Live values against what the next boot would set (sysctl.d(5) precedence, else the kernel default)."""
    from tcptune.host.sysctld_files import boot_state

    require_tcp_keys(host)
    kb = load_kb()
    release = release_of(host)

    def ours(k: str) -> bool:
        return (k.startswith(TCP_PREFIXES) or k in kb) and k not in SECRET_KEYS

    keys = {k for k in host.list_sysctls() if k.startswith(TCP_PREFIXES) and k not in SECRET_KEYS}
    keys |= {p.key for p in kb}
    bstate = boot_state(sysctl_root, keys)
    boot = {k: v for k, v in bstate.values.items() if ours(k)}
    current = read_values(host, keys | set(boot))
    live = {k: v for k, v in current.items() if v is not None or k in boot}
    findings = verdicts.audit_persisted(live, boot, kb, release)
    prof = Profile("persisted", "what sysctl.d would set at boot", f"sysctl.d under {sysctl_root}", {})
    notes = _notes(prof, host, release)
    notes.append(f"boot loader modelled: {bstate.loader} ({bstate.loader_reason})")
    notes += [d.message() for d in bstate.disagreements if ours(d.key)]
    return _result(prof, host, findings, notes, strict, persisted=True)


def _notes(prof: Profile, host, release) -> list[str]:
    return [n for n in (prof.kernel_mismatch(release), release_note(host, release)) if n]


def _result(prof: Profile, host, findings: list[Finding], notes: list[str], strict: bool, persisted: bool = False):
    return AuditResult(
        profile=prof.name,
        profile_origin=prof.origin,
        source=host.label,
        kernel=host.kernel_release(),
        findings=findings,
        summary=verdicts.summarize(findings),
        notes=notes,
        exit_code=verdicts.exit_code(findings, strict),
        persisted=persisted,
    )
