"""`tcptune show` and `tcptune explain`: what the kernel has, and what it means."""

from __future__ import annotations

import fnmatch
from typing import Annotated

import typer

from tcptune.cli._app import app
from tcptune.cli.common import JsonOpt, NetnsOpt, RootOpt, SysctlDumpOpt, emit_json, open_source
from tcptune.core.keys import SECRET_KEYS
from tcptune.errors import ExitCode, TcptuneError


def _release(host):
    from tcptune.host.source import kernel_version

    return kernel_version(host)


def _safe_read(host, key: str) -> str | None:
    try:
        return host.read_sysctl(key)
    except TcptuneError as exc:
        if exc.exit_code == ExitCode.PRIVILEGES:
            return None
        raise


def _matches(key: str, patterns: list[str]) -> bool:
    if not patterns:
        return True
    short = key.rsplit(".", 1)[-1]
    for p in patterns:
        if any(c in p for c in "*?["):
            if fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(short, p):
                return True
        elif p in key:
            return True
    return False


@app.command("show")
def show(
    patterns: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[PATTERN]...",
            help="Only keys containing PATTERN, or matching a glob like 'tcp_keepalive_*'.",
            show_default=False,
        ),
    ] = None,
    all_keys: Annotated[
        bool, typer.Option("--all", help="Also list knowledge-base keys this kernel does not have.")
    ] = False,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    sysctl_dump: SysctlDumpOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Show every TCP-related parameter: value, unit, kernel default, and whether it differs.

    Lists net.ipv4.tcp_* that this kernel has plus the net.core and net.ipv4 keys a TCP tuner
    needs (somaxconn, netdev_max_backlog, ip_local_port_range, ...).  A '*' in the last column
    marks a value that differs from the kernel default.

    Examples: tcptune show keepalive;  tcptune show 'tcp_*mem' --json
    """
    from tcptune.cli.common import require_tcp_keys, unknown_release_note
    from tcptune.kernel.kb import load_kb

    host = open_source(root, sysctl_dump, netns)
    require_tcp_keys(host)
    kb = load_kb()
    release = _release(host)
    notes = [n for n in [unknown_release_note(host, release)] if n]
    present = [k for k in host.list_sysctls(("net/ipv4",)) if k.startswith("net.ipv4.tcp_") and k not in SECRET_KEYS]
    keys = sorted(set(present) | {p.key for p in kb})
    rows = []
    for key in keys:
        if not _matches(key, patterns or []):
            continue
        param = kb.get(key) if key in kb else None
        value = _safe_read(host, key)
        if value is None and not all_keys and (key not in present):
            continue
        default = param.default_for(release) if param else None
        # matches_default accepts the whole boot-time range (tcp_rmem[2] on a small machine).
        same = param.matches_default(value, release) if param is not None and value is not None else None
        differs = None if same is None else not same
        rows.append(
            {
                "key": key,
                "value": value,
                "unit": param.unit if param else None,
                "default": default,
                "differs": differs,
                "scope": param.scope if param else None,
                "in_knowledge_base": param is not None,
            }
        )
    if patterns and not rows:
        raise TcptuneError(
            f"no parameter matches {' '.join(patterns)}",
            ExitCode.BAD_INPUT,
            hint="try `tcptune show` for the full list",
        )
    if json_out:
        emit_json({"source": host.label, "kernel": host.kernel_release(), "parameters": rows, "notes": notes})
        return
    from tcptune.render import render_table

    def cell(v):
        return "(absent)" if v is None else v

    table = [
        [
            r["key"],
            cell(r["value"]),
            r["unit"] or "",
            "?" if r["default"] is None else r["default"],
            "*" if r["differs"] else "",
        ]
        for r in rows
    ]
    typer.echo(render_table(["key", "value", "unit", "default", "≠"], table))
    changed = sum(1 for r in rows if r["differs"])
    typer.echo(
        f"\n{len(rows)} parameters from {host.label}; {changed} differ from the kernel default (*). '?' = computed at boot or not in the knowledge base."
    )
    for n in notes:
        typer.echo(f"note: {n}")


@app.command("explain")
def explain(
    key: Annotated[str, typer.Argument(help="A parameter, e.g. tcp_fin_timeout or net.core.somaxconn.")],
    json_out: JsonOpt = False,
    root: RootOpt = None,
    sysctl_dump: SysctlDumpOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Explain a parameter: meaning, unit, range, default, kernel versions, scope, TCP states, source.

    Also shows its current value on the chosen source.  Example: tcptune explain tcp_fin_timeout
    (it governs orphaned FIN_WAIT2 sockets, not TIME_WAIT, which is fixed at 60 s).
    """
    from tcptune.kernel.kb import load_kb
    from tcptune.kernel.version import format_version

    kb = load_kb()
    param = kb.get(key)
    if param is None:
        from tcptune.core.keys import normalize_key

        full = key if key.startswith("net.") else f"net.ipv4.{key}"
        normalize_key(full)  # rejects path tricks with a clear message
        suggestion = kb.suggest(key)
        raise TcptuneError(
            f"{key}: not in tcptune's knowledge base",
            ExitCode.BAD_INPUT,
            hint=f"did you mean {suggestion}?" if suggestion else "`tcptune show` lists every key this kernel has",
        )
    host = open_source(root, sysctl_dump, netns)
    release = _release(host)
    current = _safe_read(host, param.key)
    default = param.default_for(release)
    boot_range = param.boot_range_for(release)
    info = {
        "key": param.key,
        "meaning": param.meaning,
        "type": param.type,
        "unit": param.unit,
        "range": None if param.min is None and param.max is None else [param.min, param.max],
        "choices": list(param.choices) or None,
        "values": param.values or None,
        "default": default,
        "default_rule": param.default_rule or None,
        # Every value the boot formula can give, field by field (null: the default is fixed).
        "default_range": {"min": list(boot_range[0]), "max": list(boot_range[1])} if boot_range else None,
        "current": current,
        "source_of_current": host.label,
        "scope": param.scope,
        "netns_init": param.netns_init,
        "since": format_version(param.since) if param.since else None,
        "removed": format_version(param.removed) if param.removed else None,
        "changes": [{"version": v, "what": w} for v, w in param.changes],
        "states": list(param.states),
        "risky": [{"when": w.when, "reason": w.reason} for w in param.warn],
        "details": param.details or None,
        "source": param.source,
    }
    if json_out:
        emit_json(info)
        return
    from tcptune.render import wrap

    scope = {
        ("netns", "default"): "per network namespace; a new namespace starts from the kernel default",
        ("netns", "copy"): "per network namespace; a new namespace copies the initial namespace's value",
        ("netns", "computed"): "per network namespace; a new namespace computes its own value",
        ("global", "copy"): "global (one value for the whole machine); other namespaces see it read-only",
    }.get(
        (param.scope, param.netns_init), "global (one value for the whole machine; only the initial namespace has it)"
    )
    lines = [param.key, wrap(param.meaning, indent="  "), ""]

    def row(label: str, value) -> None:
        if value not in (None, "", [], {}):
            lines.append(f"  {label:<9} {value}")

    row("current", f"{current} ({host.label})" if current is not None else f"(absent on {host.label})")
    if default is not None and boot_range:
        span = " ".join(str(a) if a == b else f"{a}..{b}" for a, b in zip(*boot_range))
        row("default", f"{default} (computed at boot: any of {span} is a kernel default, and audit accepts that range)")
        row("computed", param.default_rule)
    else:
        row("default", default if default is not None else (param.default_rule or "unknown"))
    row("unit", param.unit)
    row("type", param.type)
    if info["range"]:
        row(
            "range",
            f"{param.min if param.min is not None else '-inf'} .. {param.max if param.max is not None else 'inf'}",
        )
    row("choices", ", ".join(param.choices))
    for v, meaning in param.values.items():
        row("value " + v if len(v) <= 3 else "value", meaning if len(v) <= 3 else f"{v}: {meaning}")
    row("scope", scope)
    row("states", ", ".join(param.states))
    kernels = []
    if param.since:
        kernels.append(f"since {format_version(param.since)}")
    if param.removed:
        kernels.append(f"removed in {format_version(param.removed)}")
    kernels += [f"{v}: {w}" for v, w in param.changes]
    row("kernels", "; ".join(kernels))
    for w in param.warn:
        row("risky", f"{w.when}: {w.reason}")
    row("source", param.source)
    if param.details:
        lines += ["", wrap(param.details, indent="  ")]
    typer.echo("\n".join(lines))
