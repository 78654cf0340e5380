"""Every probe spec is complete and consistent, without running a probe.

The registry (tcptune.probe.spec.specs) is the only list of probes: the CLI, `probe all`
and the netns tests all iterate over it, so a new probe module is checked here as soon as
it exists.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tcptune.kernel.kb import load_kb
from tcptune.probe.spec import ModelInput, specs

SPECS = list(specs().values())
IDS = [s.name for s in SPECS]


def _inputs(spec, **overrides):
    st = {k: None for k in spec.short_settings()} | dict(spec.quick) | overrides
    return ModelInput(spec.name, st, 250, {"rto_s": 0.2}, (6, 18))


def test_the_registry_finds_every_probe_in_order():
    import pkgutil

    import tcptune.probe
    from tcptune.probe.spec import _SHARED

    modules = {m.name for m in pkgutil.iter_modules(tcptune.probe.__path__)} - _SHARED
    assert len(IDS) == len(modules)
    assert IDS == ["syn", "synack", "accept-overflow", "fin-timeout", "fin-wait1", "keepalive", "dead-peer", "tw-reuse"]
    assert [s.order for s in SPECS] == sorted(s.order for s in SPECS) and len({s.order for s in SPECS}) == len(SPECS)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_spec_is_complete(spec):
    kb = load_kb()
    assert spec.summary.endswith(".") and f"tcptune probe {spec.name}" in spec.example
    assert spec.settings and all(kb.get(k) is not None for k in spec.settings), spec.settings
    assert set(spec.quick) <= set(spec.short_settings())


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_quick_settings_are_quick_and_the_wrong_model_is_really_different(spec):
    right, wrong = spec.predict(_inputs(spec)), spec.wrong_model(_inputs(spec))
    assert right.give_up is not None and right.give_up <= 5.0, "quick settings must run in seconds"
    assert [(e.what, e.n, e.t) for e in right.events] != [(e.what, e.n, e.t) for e in wrong.events]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_events_not_in_packets_are_events_of_the_model(spec):
    kinds = {e.what for p in spec.predict(_inputs(spec)).timelines() for e in p.events}
    assert set(spec.not_in_packets) - {"connect_result"} <= kinds


def test_the_cli_has_one_command_per_spec():
    import typer.main

    from tcptune.cli import app

    group = typer.main.get_command(app).commands["probe"]
    assert sorted(group.commands) == sorted([*IDS, "all"])
    for spec in SPECS:
        assert spec.example in group.commands[spec.name].help


def test_specs_load_without_sockets_capture_or_models():
    """The CLI reads every spec at start: probe modules must not import their heavy parts then."""
    code = (
        "import sys\nfrom tcptune.probe.spec import specs\nspecs()\n"
        "print(sorted(m for m in ('tcptune.probe.base', 'tcptune.probe.capture', 'tcptune.kernel.timers', "
        "'ctypes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_probe_of_its_own_options_gets_them_on_its_command_and_in_its_model():
    """issue 11's dead-peer probe takes --user-timeout MS: a spec option, no CLI edit."""
    import dataclasses

    import typer
    import typer.main

    from tcptune.cli.probe import _register
    from tcptune.host.source import DumpHost
    from tcptune.ops.probes import _plan
    from tcptune.probe.spec import ProbeOption

    option = ProbeOption("--user-timeout", "MS", "Set TCP_USER_TIMEOUT on the probe's socket.")
    spec = dataclasses.replace(specs()["syn"], name="with-option", options=(option,))
    group = typer.Typer()
    _register(spec, group)
    _register(specs()["synack"], group)  # a second command keeps the group a group
    cmd = typer.main.get_command(group).commands["with-option"]
    assert "--user-timeout" in [o for p in cmd.params for o in p.opts]
    assert cmd.make_context("with-option", ["--user-timeout", "500"]).params["user_timeout"] == 500
    assert cmd.make_context("with-option", []).params["user_timeout"] is None
    source = DumpHost({"net.ipv4.tcp_syn_retries": "1", "net.ipv4.tcp_syn_linear_timeouts": "0"}, "test")
    assert _plan(source, spec, None, None, {"user_timeout": 500}).mi.options == {"user_timeout": 500}
