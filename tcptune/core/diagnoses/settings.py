"""The settings check: what audit knows about the target, as findings."""

from __future__ import annotations

from tcptune.core.diagnoses.model import (
    BOOT_LINE_IGNORED,
    INFO,
    NOT_PERSISTED,
    RISKY,
    WARNING,
    DoctorInput,
    Evidence,
    Finding,
)


def check_settings(inp: DoctorInput) -> list[Finding]:
    """audit's verdicts as findings: each risky value; the values a reboot would change; sysctl.d lines that do nothing."""
    out = [
        Finding(
            "settings",
            WARNING,
            f"{i.key} = {i.value} is risky: {i.reason}",
            (Evidence(f"{i.key} = {i.value}", f"/proc/sys/{i.key.replace('.', '/')}"), Evidence(i.reason, i.source)),
            (i.key,),
            f"set {i.key} back (tcptune explain {i.key} gives the default and why), with tcptune apply --persist",
            i.source,
        )
        for i in inp.setting_issues
        if i.kind == RISKY
    ]
    lost = [i for i in inp.setting_issues if i.kind == NOT_PERSISTED]
    if lost:
        out.append(
            Finding(
                "settings",
                INFO,
                f"{len(lost)} running value(s) will not survive a reboot: "
                + ", ".join(i.key for i in lost[:5])
                + (", ..." if len(lost) > 5 else ""),
                tuple(
                    Evidence(
                        f"{i.key} = {i.value}, the next boot sets {i.expected} ({i.reason})",
                        i.source or "tcptune audit --persisted",
                    )
                    for i in lost
                ),
                tuple(i.key for i in lost),
                "persist what was meant (tcptune apply --persist, or a sysctl.d file), or set back what was a "
                "test; `tcptune audit --persisted` lists them",
                "sysctl.d(5); tcptune audit --persisted",
            )
        )
    ignored = [i for i in inp.setting_issues if i.kind == BOOT_LINE_IGNORED]
    if ignored:
        out.append(
            Finding(
                "settings",
                INFO,
                f"{len(ignored)} sysctl.d line(s) set keys this kernel does not have: "
                + ", ".join(i.key for i in ignored[:5]),
                tuple(Evidence(f"{i.key}: {i.reason}", i.source or "sysctl.d") for i in ignored),
                tuple(i.key for i in ignored),
                "remove the lines (the key was removed or renamed; `tcptune explain KEY` says since when)",
                "sysctl.d(5); tcptune audit --persisted",
            )
        )
    return out
