"""One spec per probe, and the registry that finds them.

A probe is one module in tcptune/probe/ that defines ``SPEC = ProbeSpec(...)``: its name,
its help, the sysctls it reads, how its model (a ``predict_*`` in tcptune.kernel.timers.NAME) is
called, how it runs and analyses packets, what it cannot see in packets, what else it needs,
and a deliberately wrong model that tests use to prove the probe can say "differs".  The CLI
builds one command per spec, ``probe all`` runs them in ``order``, and the tests iterate over
:func:`specs`; nothing else lists the probes.

Adding a probe: write its model as kernel/timers/NAME.py and its module here; that is all.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from tcptune.errors import ExitCode, TcptuneError

if TYPE_CHECKING:
    from tcptune.kernel.timers import Prediction

# What a probe may need besides its sysctls (ProbeSpec.needs):
SOCKET_FILTER = "socket_filter"  # SO_ATTACH_FILTER on a TCP socket (may be refused without privileges)

TIMEWAIT_COUNT = "timewait_sockets"  # the fact timewait_facts() adds


def timewait_facts(read_proc_text: Callable[[str], str | None]) -> dict:
    """ProbeSpec.facts of the probes that depend on the timewait table: the "tw" field of
    /proc/net/sockstat's TCP line, refcount_read(&tcp_death_row.tw_refcount) - 1
    (net/ipv4/proc.c sockstat_seq_show()), the very count inet_twsk_alloc() compares with
    tcp_max_tw_buckets.  Per network namespace."""
    from tcptune.core.procfs import parse_sockstat

    return {TIMEWAIT_COUNT: parse_sockstat(read_proc_text("net/sockstat") or "").get("TCP", {}).get("tw")}


@dataclass(frozen=True)
class ProbeOption:
    """A command-line option only one probe has (e.g. a socket option it may set).  Its
    value (None when not given) reaches the probe as ``ctx.options[name]`` and the model as
    ``ModelInput.options[name]``; ``name`` is the flag without dashes (--user-timeout:
    user_timeout)."""

    flag: str  # "--user-timeout"
    metavar: str  # "MS"
    help: str
    kind: type = int  # int or float

    @property
    def name(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class ModelInput:
    """What a model adapter gets: setting values by short name (None: absent on this
    kernel), CONFIG_HZ, socket and namespace facts measured so far, the kernel version."""

    probe: str
    settings: Mapping[str, int | None]
    hz: int | None = None
    measured: Mapping[str, object] = field(default_factory=dict)
    kernel: tuple[int, ...] | None = None
    options: Mapping[str, object] = field(default_factory=dict)  # the probe's own options (ProbeSpec.options)

    def need(self, key: str) -> int:
        value = self.settings.get(key)
        if value is None:
            raise TcptuneError(
                f"net.ipv4.{key} is not present on this kernel",
                ExitCode.BAD_INPUT,
                hint=f"the {self.probe} probe needs it",
            )
        return value

    def rto_max_s(self) -> float | None:
        """tcp_rto_max_ms in seconds (None: absent, i.e. before 6.15, or 0)."""
        ms = self.settings.get("tcp_rto_max_ms")
        return ms / 1000.0 if ms else None

    def timewait(self) -> dict:
        """The keyword arguments of the models that know the timewait table."""
        return {
            "tw_count": self.measured.get(TIMEWAIT_COUNT),
            "max_tw_buckets": self.settings.get("tcp_max_tw_buckets"),
        }


Model = Callable[[ModelInput], "Prediction"]


@dataclass(frozen=True)
class ProbeSpec:
    name: str  # the command: `tcptune probe NAME`
    summary: str  # one line of --help
    example: str  # a command line that shows it quickly, for --help
    settings: tuple[str, ...]  # the sysctls read (full keys)
    predict: Model  # the kernel's rules (calls the predict_* of kernel/timers/NAME.py)
    wrong_model: Model  # a deliberately wrong model: a run must say "differs" against it
    quick: Mapping[str, int]  # sysctl values under which a run takes seconds (tests, examples)
    run: Callable  # run(ctx: base.Context, obs: base.Observation) -> None: the socket work
    analyze: Callable  # analyze(segments, server_port) -> raw events, from a capture or a pcap
    not_in_packets: tuple[str, ...] = ()  # outcomes no packet shows (seen on the sockets only)
    needs: frozenset[str] = frozenset()  # SOCKET_FILTER
    # facts(read_proc_text) -> dict: namespace state the model needs, read through the source
    # just before the probe (e.g. timewait_facts); they land in ModelInput.measured
    facts: Callable[[Callable[[str], str | None]], dict] | None = None
    options: tuple[ProbeOption, ...] = ()  # options of this probe only (the CLI adds them to its command)
    outcome: str = "gives up"  # how the end of the timeline reads ("gives up: predicted 7 s")
    order: int = 100  # position in `probe all` and in --help

    def short_settings(self) -> tuple[str, ...]:
        return tuple(k.rsplit(".", 1)[1] for k in self.settings)


# The probe package's shared modules: sockets and capture (base, capture), this one, and
# trace's tutorial experiments (scenarios).
# Every other module in the package is a probe and must define SPEC.
_SHARED = frozenset({"base", "capture", "spec", "scenarios"})  # scenarios: trace's experiments, not probes


@cache
def specs() -> dict[str, ProbeSpec]:
    """Every probe module's SPEC, by name, in ``order``.  The CLI reads them at every start,
    so probe modules import only the standard library and this module at the top level
    (sockets, capture and models are imported inside the functions that use them)."""
    import tcptune.probe as pkg

    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in _SHARED:
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        spec = getattr(mod, "SPEC", None)
        if not isinstance(spec, ProbeSpec):
            raise TypeError(f"{mod.__name__} is in tcptune.probe but defines no SPEC = ProbeSpec(...)")
        _check(spec)
        found.append(spec)
    found.sort(key=lambda s: (s.order, s.name))
    return {s.name: s for s in found}


def _check(spec: ProbeSpec) -> None:
    """Refuse a spec that could not be tested: its quick settings must be settings it reads,
    and its wrong model must be another function than its model."""
    unknown = set(spec.quick) - set(spec.short_settings())
    if unknown:
        raise TypeError(f"probe {spec.name}: quick settings {sorted(unknown)} are not among its settings")
    if spec.wrong_model is spec.predict:
        raise TypeError(f"probe {spec.name}: the wrong model must differ from the model")
    if isinstance(spec.not_in_packets, str):
        raise TypeError(f"probe {spec.name}: not_in_packets must be a tuple of event names")


def get_spec(name: str) -> ProbeSpec:
    try:
        return specs()[name]
    except KeyError:
        raise TcptuneError(f"unknown probe {name!r}", ExitCode.BAD_INPUT, hint="one of " + ", ".join(specs())) from None
