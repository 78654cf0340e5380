"""`tcptune profiles list|show|validate` and `tcptune audit`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, RootOpt, SysctlDumpOpt, _not_empty, emit_json, open_source, use_color
from tcptune.core.keys import SECRET_KEYS
from tcptune.errors import ExitCode, TcptuneError

profiles_app = typer.Typer(
    help=(
        "List, show and validate tuning profiles.\n\n"
        "Profiles are found, highest precedence first: a path you pass; ~/.config/tcptune/profiles/NAME.toml; "
        "/etc/tcptune/profiles/NAME.toml; the built-ins shipped with tcptune. Format: tcptune-profile(5)."
    ),
    no_args_is_help=True,
)
app.add_typer(profiles_app, name="profiles")

ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        metavar="NAME|PATH",
        parser=_not_empty("--profile", "a profile name or path", "kernel-default"),
        help="Profile to audit against (default: kernel-default, i.e. show what someone changed).",
    ),
]


def _release(host):
    from tcptune.host.source import kernel_version

    return kernel_version(host)


def _known_keys(host) -> list[str]:
    return host.list_sysctls() if host is not None else []


@profiles_app.command("list")
def profiles_list(json_out: JsonOpt = False) -> None:
    """List every profile on the search path, in precedence order; shadowed ones are marked."""
    from tcptune.core.profile import list_profiles

    infos = list_profiles()
    if json_out:
        emit_json(
            {
                "profiles": [
                    {
                        "name": i.name,
                        "path": i.path,
                        "kind": i.kind,
                        "description": i.description,
                        "shadowed_by": i.shadowed_by,
                    }
                    for i in infos
                ]
            }
        )
        return
    from tcptune.render import render_table

    rows = [[i.name + (" (shadowed)" if i.shadowed_by else ""), i.kind, i.description, i.path] for i in infos]
    typer.echo(render_table(["name", "kind", "description", "path"], rows, maxcolwidths=[None, None, 50, None]))


def _load(spec: str, host=None):
    from tcptune.core.profile import load_profile
    from tcptune.kernel.kb import load_kb

    return load_profile(
        spec, kb=load_kb(), kernel_release=_release(host) if host is not None else None, known_keys=_known_keys(host)
    )


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(metavar="NAME|PATH", help="Profile name or path to a .toml file.")],
    json_out: JsonOpt = False,
    root: RootOpt = None,
    sysctl_dump: SysctlDumpOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Show a profile with `extends` resolved: every key, the value apply writes, what audit accepts, why, and the source."""
    host = open_source(root, sysctl_dump, netns)
    prof = _load(name, host)
    data = {
        "name": prof.name,
        "description": prof.description,
        "origin": prof.origin,
        "extends": prof.extends,
        "kernel": prof.kernel,
        "chain": list(prof.chain),
        "settings": [
            {
                "key": s.key,
                "value": s.value,
                "accept": s.expected if s.accept else None,
                "required": s.required,
                "reason": s.reason,
                "source": s.source,
            }
            for s in prof.settings.values()
        ],
    }
    if json_out:
        emit_json(data)
        return
    from tcptune.render import render_table

    typer.echo(
        f"{prof.name}: {prof.description}\n  from {prof.origin}"
        + (f" (extends {' -> '.join(prof.chain[1:])})" if prof.extends else "")
        + (f"; kernel {prof.kernel}" if prof.kernel else "")
    )
    rows = [[s.key, s.value, s.expected if s.accept else "", s.reason] for s in prof.settings.values()]
    typer.echo(render_table(["key", "value", "audit accepts", "reason"], rows, maxcolwidths=[None, None, 18, 60]))


@profiles_app.command("validate")
def profiles_validate(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Profile files to check.")],
    json_out: JsonOpt = False,
) -> None:
    """Check profile files (TOML syntax, known keys, types, ranges, extends) without touching the system.

    Exit 0 when all are valid; otherwise the first error as one line (file:line: what, and the fix), exit 2.
    """
    results = []
    for p in paths:
        prof = _load(str(p) if "/" in str(p) else f"./{p}")
        results.append({"path": str(p), "name": prof.name, "keys": len(prof.settings), "valid": True})
    if json_out:
        emit_json({"results": results})
        return
    for r in results:
        typer.echo(f"{r['path']}: ok ({r['keys']} keys)")


@app.command("audit")
def audit_cmd(
    profile: ProfileOpt = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="List ok rows too (default: only what needs attention).")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings as well as on drift.")] = False,
    persisted: Annotated[
        bool,
        typer.Option(
            "--persisted",
            help="Compare live values with what the next boot would set (sysctl.d(5) files, else the kernel default) instead of a profile.",
        ),
    ] = False,
    persist_root: Annotated[
        Path | None,
        typer.Option(
            "--persist-root",
            metavar="DIR",
            help="With --persisted: root whose etc/sysctl.d, usr/lib/sysctl.d ... are read (default: --root, else /).",
        ),
    ] = None,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    sysctl_dump: SysctlDumpOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Audit the host's TCP settings against a profile.

    Verdicts: ok; drift (differs from what the profile accepts); unsupported (this kernel lacks
    the key); removed (e.g. tcp_tw_recycle, gone since 4.12); warning (valid but risky, e.g.
    tcp_timestamps=0, flagged even when the profile does not mention the key).

    With --persisted it instead compares the live values with what the next boot would set
    (sysctl.d(5) precedence, else the kernel default): drift means a value will not survive a
    reboot.

    Exit 0 when nothing drifted, 1 on drift (and on warnings with --strict), 2 for bad input.

    Examples: tcptune audit;  tcptune audit -p web-server --json;
    ssh host sysctl -a | tcptune audit --sysctl-dump -
    """
    from tcptune.cli.common import require_tcp_keys, source_kind, unknown_release_note
    from tcptune.core.audit import audit, exit_code, hidden_global_keys, summarize
    from tcptune.core.profile import KERNEL_DEFAULT
    from tcptune.kernel.kb import load_kb

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
    host = open_source(root, sysctl_dump, netns)
    require_tcp_keys(host)
    kb = load_kb()
    release = _release(host)

    def read_all(keys) -> dict:
        current = {}
        for k in sorted(keys):
            try:
                current[k] = host.read_sysctl(k)
            except TcptuneError as exc:
                if exc.exit_code != ExitCode.PRIVILEGES:
                    raise
                current[k] = None
        return current

    if persisted:
        from tcptune.core.audit import audit_persisted
        from tcptune.core.profile import Profile
        from tcptune.host.sysctld_files import boot_state

        sysctl_root = persist_root or (root if root is not None else Path("/"))
        tcp_keys = [
            k
            for k in host.list_sysctls()
            if k.startswith(("net.ipv4.tcp_", "net.core.", "net.ipv4.ip_local_")) and k not in SECRET_KEYS
        ]
        keys = set(tcp_keys) | {p.key for p in kb}

        def ours(k: str) -> bool:
            # Only TCP-related net.* keys: other lines (fs.*, kernel.*) are not ours to judge.
            return (
                k.startswith(("net.ipv4.tcp_", "net.core.", "net.ipv4.ip_local_")) or k in kb
            ) and k not in SECRET_KEYS

        bstate = boot_state(sysctl_root, keys)
        boot = {k: v for k, v in bstate.values.items() if ours(k)}
        loader_notes = [f"boot loader modelled: {bstate.loader} ({bstate.loader_reason})"]
        loader_notes += [d.message() for d in bstate.disagreements if ours(d.key)]
        current = read_all(keys | set(boot))
        live = {k: v for k, v in current.items() if v is not None or k in boot}
        findings = audit_persisted(live, boot, kb, release)
        prof = Profile("persisted", "what sysctl.d would set at boot", f"sysctl.d under {sysctl_root}", {})
    else:
        prof = _load(KERNEL_DEFAULT if profile is None else profile, host)
        current = read_all(set(prof.settings) | {p.key for p in kb if p.warn})
        findings = audit(prof, current, kb, release, source_kind=source_kind(host))
        hidden = hidden_global_keys(prof, current, kb)
    counts = summarize(findings)
    code = exit_code(findings, strict)
    notes = [n for n in [prof.kernel_mismatch(release), unknown_release_note(host, release)] if n]
    if persisted:
        notes += loader_notes
    if not persisted and hidden:
        notes.append(
            f"{len(hidden)} global key(s) not checked: only the initial network namespace has them and this source "
            f"does not show them ({', '.join(k.rsplit('.', 1)[-1] for k in hidden)}); audit the host for those"
        )
    if json_out:
        emit_json(
            {
                "profile": prof.name,
                "profile_origin": prof.origin,
                "source": host.label,
                "kernel": host.kernel_release(),
                "findings": [f.to_dict() for f in findings],
                "summary": counts,
                "notes": notes,
                "exit_code": code,
            }
        )
        raise typer.Exit(code)
    from tcptune.render import colorize, render_table

    color = use_color()
    shown = [f for f in findings if show_all or f.verdict != "ok"]
    order = {"drift": 0, "warning": 1, "removed": 2, "unsupported": 3, "ok": 4}
    shown.sort(key=lambda f: (order[f.verdict], f.key))
    if persisted:
        typer.echo(f"audit of {host.label}: live values against what the next boot sets ({prof.origin})")
    else:
        typer.echo(f"audit of {host.label} against profile {prof.name} ({prof.origin})")
    for n in notes:
        typer.echo(f"note: {n}")
    if shown:
        rows = [
            [
                f.key,
                f.expected if f.expected is not None else "-",
                f.actual if f.actual is not None else "(absent)",
                colorize(f.verdict, color),
                f.reason,
            ]
            for f in shown
        ]
        typer.echo(
            render_table(
                ["key", "expected", "actual", "verdict", "reason"], rows, maxcolwidths=[None, 22, 22, None, 60]
            )
        )
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    hidden = "" if show_all or not counts["ok"] else " (ok rows hidden; --all shows them)"
    typer.echo(f"\n{len(findings)} checked: {summary}{hidden}")
    raise typer.Exit(code)
