"""Shell completion values: profile names, sysctl keys, snapshot ids, states, probe names.

Typer's completion (bash, zsh, fish; `tcptune --install-completion` or
`--show-completion`) calls these with the word typed so far.  They must never fail or
print: a completion that raises leaves the shell with nothing, so every error is no
suggestion.
"""

from __future__ import annotations


def _safe(fn):
    def complete(incomplete: str) -> list[str]:
        try:
            return [v for v in fn() if v.startswith(incomplete)]
        except Exception:  # noqa: BLE001 - a completion must never break the shell
            return []

    complete.__name__ = fn.__name__
    return complete


@_safe
def profile_names() -> list[str]:
    from tcptune.host.profile_files import list_profiles

    return sorted({p.name for p in list_profiles()})


def sysctl_keys(incomplete: str) -> list[str]:
    """Knowledge-base and live keys; a bare name (tcp_syn_r) completes as typed, a dotted one in full."""
    try:
        from tcptune.host.source import Host
        from tcptune.kernel.kb import load_kb

        keys = {p.key for p in load_kb()} | set(Host("/").list_sysctls())
    except Exception:  # noqa: BLE001
        return []
    full = sorted(k for k in keys if k.startswith(incomplete))
    short = sorted(k.rsplit(".", 1)[-1] for k in keys if k.rsplit(".", 1)[-1].startswith(incomplete))
    return full or short


@_safe
def snapshot_ids() -> list[str]:
    from tcptune.host.statedir import StateDir, resolve_state_dir

    return StateDir(resolve_state_dir(None)).ids()


@_safe
def state_names() -> list[str]:
    from tcptune.kernel.states import TcpState

    return [s.name.lower().replace("_", "-") for s in TcpState]
