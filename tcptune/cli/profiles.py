"""`tcptune profiles list|show|validate` and `tcptune audit`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tcptune.cli import completion
from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, RootOpt, SysctlDumpOpt, _not_empty, emit_json, open_source

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
        autocompletion=completion.profile_names,
    ),
]


AllOpt = Annotated[bool, typer.Option("--all", help="List ok rows too (default: only what needs attention).")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings as well as on drift.")]
PersistedOpt = Annotated[
    bool,
    typer.Option(
        "--persisted",
        help="Compare live values with what the next boot would set (sysctl.d(5) files, else the kernel default) instead of a profile.",
    ),
]
PersistRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--persist-root",
        metavar="DIR",
        help="With --persisted: root whose etc/sysctl.d, usr/lib/sysctl.d ... are read (default: --root, else /).",
    ),
]


def _output():
    from tcptune.render.output import Output

    return Output.detect(sys.stdout)


@profiles_app.command("list")
def profiles_list(json_out: JsonOpt = False) -> None:
    """List every profile on the search path, in precedence order; shadowed ones are marked.

    Example: tcptune profiles list --json
    """
    from tcptune.ops.profiles import list_profiles

    result = list_profiles()
    if json_out:
        emit_json(result.to_json())
        return
    from tcptune.render.profiles import render_list

    typer.echo(render_list(result, _output()))


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(metavar="NAME|PATH", help="Profile name or path to a .toml file.")],
    json_out: JsonOpt = False,
    root: RootOpt = None,
    sysctl_dump: SysctlDumpOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Show a profile with `extends` resolved: every key, the value apply writes, what audit accepts, why, and the source.

    Examples: tcptune profiles show web-server;  tcptune profiles show ./mine.toml --json
    """
    from tcptune.ops.profiles import show_profile

    view = show_profile(name, open_source(root, sysctl_dump, netns))
    if json_out:
        emit_json(view.to_json())
        return
    from tcptune.render.profiles import render_profile

    typer.echo(render_profile(view, _output()))


@profiles_app.command("validate")
def profiles_validate(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Profile files to check.")],
    json_out: JsonOpt = False,
) -> None:
    """Check profile files (TOML syntax, known keys, types, ranges, extends) without touching the system.

    Every file is checked and gets one line: `PATH: ok (N keys)`, or its first error
    (file:line: what, and the fix).  Exit 0 when all are valid, 2 when any is not.

    Example: tcptune profiles validate ~/.config/tcptune/profiles/*.toml
    """
    from tcptune.ops.profiles import validate

    report = validate(paths)
    if json_out:
        emit_json(report.to_json())
    else:
        from tcptune.render.profiles import render_validation

        for ok, line in render_validation(report, _output()):
            typer.echo(line, err=not ok)
    raise typer.Exit(report.exit_code)


@app.command("audit")
def audit_cmd(
    profile: ProfileOpt = None,
    show_all: AllOpt = False,
    strict: StrictOpt = False,
    persisted: PersistedOpt = False,
    persist_root: PersistRootOpt = None,
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
    from tcptune.ops import audit as audit_op

    audit_op.check_options(profile=profile, persisted=persisted, persist_root=persist_root, sysctl_dump=sysctl_dump)
    host = open_source(root, sysctl_dump, netns)
    if persisted:
        sysctl_root = persist_root or (root if root is not None else Path("/"))
        result = audit_op.audit_persisted(host, sysctl_root, strict=strict)
    else:
        result = audit_op.audit_profile(host, profile, strict=strict)
    if json_out:
        emit_json(result.to_json())
    else:
        from tcptune.render.audit import render_audit

        typer.echo(render_audit(result, _output(), show_all=show_all))
    raise typer.Exit(result.exit_code)
