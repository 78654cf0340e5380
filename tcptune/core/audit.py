"""Audit: (profile, current values, kernel facts) -> findings.  Pure.

Verdicts:
  ok           the value is what the profile accepts
  drift        the value differs from what the profile accepts
  unsupported  the profile sets a key this kernel does not have (not drift)
  removed      the key was removed from the kernel (e.g. tcp_tw_recycle in 4.12)
  warning      the value is valid but known to be risky (knowledge base `warn` entries),
               flagged whether or not the profile mentions the key

A drifted value can be risky too: every finding carries ``risky`` / ``risky_reason``, and
``--strict`` fails on any risky value.  No rule fires on the running kernel's own default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tcptune.core.keys import SECRET_KEYS
from tcptune.core.profile import Profile
from tcptune.kernel.kb import KnowledgeBase
from tcptune.kernel.version import Version, format_version
from tcptune.values import json_value

SECRET_SHOWN = "(secret, not shown)"

VERDICTS = ("ok", "drift", "unsupported", "removed", "warning")


@dataclass(frozen=True)
class Finding:
    key: str
    expected: str | None
    actual: str | None
    verdict: str
    reason: str
    source: str
    # The value matches a knowledge-base `warn` rule.  A drifted value can be risky too, so this
    # is separate from the verdict: --strict and JSON readers see it whatever the profile.
    risky: bool = False
    risky_reason: str | None = None

    def __post_init__(self) -> None:
        # Profiles cannot name a secret key, but a sysctl.d line can: never carry its value.
        if self.key in SECRET_KEYS:
            for f in ("expected", "actual"):
                if getattr(self, f) is not None:
                    object.__setattr__(self, f, SECRET_SHOWN)

    def to_dict(self) -> dict:
        # ``expected`` is a rule (">= 4096", "one of ..."): always text; ``actual`` is a value
        return {**asdict(self), "actual": json_value(self.actual)}


def _absent(key: str, kb: KnowledgeBase, release: Version | None, source_kind: str = "live") -> tuple[str, str, str]:
    p = kb.get(key) if key in kb else None
    if p is not None and p.removed is not None and release is not None and release >= p.removed:
        return "removed", f"removed from the kernel in {format_version(p.removed)}; {p.meaning}", p.source
    if p is not None and p.removed is not None and release is None:
        return (
            "unsupported",
            f"absent; it was removed in {format_version(p.removed)}, but this source does not say its kernel version",
            p.source,
        )
    if p is not None and p.since is not None and release is not None and not p.exists_in(release):
        stable = "".join(f" or {format_version(b)}+ in {b[0]}.{b[1]} stable" for b in p.backported)
        return (
            "unsupported",
            f"needs kernel {format_version(p.since)} or later{stable} (this one is {format_version(release)})",
            p.source,
        )
    if p is not None and p.scope_for(release) == "global":
        why = {
            "netns": "global key: only the initial network namespace has it, and this is another namespace; audit the host for it",
            "root": "global key: only the initial network namespace shows it, so this root was probably saved inside a container",
            "dump": "global key missing from the dump: `sysctl -a` was probably run inside a container (only the initial namespace has it)",
        }.get(source_kind, "global key, absent here: this process is probably not in the initial network namespace")
        return "unsupported", why, p.source
    return "unsupported", "this kernel has no such key", p.source if p else ""


def _risky(param, actual: str):
    """The first `warn` rule ``actual`` matches.

    Defaults are not exempt: tcp_challenge_ack_limit=1000, the default before 6.0, is the
    host-wide side channel that 6.0 disabled by default, and an audit of a 5.x host
    should say so.  The knowledge-base tests keep the running kernel's defaults quiet.
    """
    if param is None or not param.warn:
        return None
    return next((w for w in param.warn if w.matches(actual)), None)


def hidden_global_keys(
    profile: Profile, current: dict[str, str | None], kb: KnowledgeBase, release: Version | None = None
) -> list[str]:
    """Global keys that only the kernel-default fill-in asks for and this source cannot see.

    Inside a container every global key (netdev_max_backlog, default_qdisc ...) is absent;
    listing each as "unsupported" on every audit is noise, not a finding.
    """
    return sorted(
        k
        for k, s in profile.settings.items()
        if s.implicit
        and current.get(k) is None
        and k in kb
        and kb.get(k).scope_for(release) == "global"
        and kb.get(k).removed is None
    )


def audit(
    profile: Profile,
    current: dict[str, str | None],
    kb: KnowledgeBase,
    release: Version | None = None,
    *,
    source_kind: str = "live",
) -> list[Finding]:
    """Compare ``current`` (key -> value, None when absent) with ``profile``; add risky-value warnings."""
    findings: list[Finding] = []
    hidden = set(hidden_global_keys(profile, current, kb, release))
    for key, s in profile.settings.items():
        if key in hidden:
            continue
        actual = current.get(key)
        param = kb.get(key) if key in kb else None
        if actual is None:
            verdict, why, src = _absent(key, kb, release, source_kind)
            findings.append(Finding(key, s.expected, None, verdict, why, s.source or src))
            continue
        warn = _risky(param, actual)
        risky = {"risky": warn is not None, "risky_reason": warn.reason if warn else None}
        if not s.accepts(actual):
            reason = s.reason or (
                f"kernel default is {param.default}" if param and param.default else "differs from the profile"
            )
            if warn:
                reason = reason.rstrip(". ") + f"; also risky: {warn.reason}"
            findings.append(Finding(key, s.expected, actual, "drift", reason, s.source, **risky))
        elif warn:
            findings.append(
                Finding(
                    key,
                    s.expected,
                    actual,
                    "warning",
                    warn.reason,
                    warn.source or (param.source if param else ""),
                    **risky,
                )
            )
        else:
            findings.append(Finding(key, s.expected, actual, "ok", s.reason, s.source))
    # Known-risky values are flagged even when the profile does not mention the key.
    for param in kb:
        if param.key in profile.settings or not param.warn:
            continue
        actual = current.get(param.key)
        if actual is None:
            continue
        warn = _risky(param, actual)
        if warn:
            findings.append(
                Finding(param.key, None, actual, "warning", warn.reason, warn.source or param.source, True, warn.reason)
            )
    return findings


def summarize(findings: list[Finding]) -> dict[str, int]:
    counts = {v: 0 for v in VERDICTS}
    for f in findings:
        counts[f.verdict] += 1
    return counts


def exit_code(findings: list[Finding], strict: bool = False) -> int:
    """0 all ok, 1 any drift (with --strict also any risky value, whatever its verdict)."""
    if any(f.verdict == "drift" for f in findings):
        return 1
    return 1 if strict and any(f.risky or f.verdict == "warning" for f in findings) else 0


def audit_persisted(
    live: dict[str, str | None],
    boot: dict,
    kb: KnowledgeBase,
    release: Version | None = None,
) -> list[Finding]:
    """Live values against what the next boot would give: a sysctl.d line, else the kernel default.

    ``boot`` maps key -> tcptune.core.boot_precedence.BootValue (value, path, line).  A drift here means
    the live value will not survive a reboot (changed by hand, or applied without --persist),
    or a sysctl.d line never took effect.
    """
    findings: list[Finding] = []
    for key in sorted(live):
        actual = live[key]
        bv = boot.get(key)
        param = kb.get(key) if key in kb else None
        if bv is not None:
            expected, where = bv.value, f"set at boot by {bv.where}"
        elif param is not None and param.default_for(release) is not None:
            expected, where = param.default_for(release), "no sysctl.d line: the kernel default at boot"
        else:
            continue  # computed at boot and not persisted: nothing to compare
        if actual is None:
            if bv is not None:
                findings.append(
                    Finding(
                        key,
                        expected,
                        None,
                        "unsupported",
                        f"{where}, but this kernel has no such key",
                        param.source if param else "",
                    )
                )
            continue
        same = expected.split() == actual.split() or (
            bv is None and param is not None and param.matches_default(actual, release)
        )
        if same:
            findings.append(Finding(key, expected, actual, "ok", where, param.source if param else ""))
        else:
            findings.append(
                Finding(
                    key,
                    expected,
                    actual,
                    "drift",
                    f"{where}; the live value will not survive a reboot",
                    param.source if param else "",
                )
            )
    return findings
