"""Run a probe: read the governing settings through the Host, predict with the pure
model (tcptune.kernel.timers), watch the kernel, compare with the tolerance.

The result is a plain dict (the --json shape documented in tcptune(8)).
"""

from __future__ import annotations

import gzip
import importlib
import os
from collections.abc import Callable

from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel import timers as S
from tcptune.probe.base import SETTLE_S, Context, Observation, Progress

PROBES = ("syn", "synack", "fin-timeout", "keepalive", "tw-reuse")
_MODULES = {
    "syn": "syn",
    "synack": "synack",
    "fin-timeout": "fin_timeout",
    "keepalive": "keepalive",
    "tw-reuse": "tw_reuse",
}

# Which sysctls govern each probe (read through the Host; None when this kernel lacks one).
SETTINGS = {
    "syn": ("net.ipv4.tcp_syn_retries", "net.ipv4.tcp_syn_linear_timeouts", "net.ipv4.tcp_rto_max_ms"),
    # tcp_rto_max_ms: not applied to the request timer through 6.18 (see predict_synack);
    # tcp_syncookies=2: no request socket at all
    "synack": ("net.ipv4.tcp_synack_retries", "net.ipv4.tcp_rto_max_ms", "net.ipv4.tcp_syncookies"),
    # tcp_max_tw_buckets: a full timewait table means no FIN_WAIT2/TIME_WAIT socket (inet_twsk_alloc())
    "fin-timeout": ("net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_max_tw_buckets"),
    "keepalive": ("net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"),
    "tw-reuse": (
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_tw_reuse_delay",
        "net.ipv4.tcp_timestamps",
        "net.ipv4.tcp_max_tw_buckets",
    ),
}
# Probes whose outcome depends on how full the namespace's timewait table is right now.
NEEDS_TW_COUNT = ("fin-timeout", "tw-reuse")

# Socket-level outcomes a pcap cannot show (no packet is sent when they happen).
NOT_IN_PACKETS = {
    "syn": ("connect_timeout", "connect_result"),
    "synack": ("request_dropped",),
    "fin-timeout": ("fin_wait2_expired",),
    "keepalive": (),
    "tw-reuse": ("reuse_ok",),
}


def kernel_hz() -> int | None:
    """CONFIG_HZ of the running kernel (timer-wheel granularity), or None if unknown.
    Probe-layer read of /proc/config.gz or /boot/config-RELEASE."""
    for path in ("/proc/config.gz", f"/boot/config-{os.uname().release}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", errors="replace") as fh:
                for line in fh:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=", 1)[1])
        except (OSError, ValueError, EOFError):
            continue
    return None


def _int(values: dict, key: str) -> int | None:
    v = values.get(key)
    if v is None:
        return None
    try:
        return int(v.split()[0])
    except (ValueError, IndexError):
        raise TcptuneError(f"{key}: unexpected value {v!r}", ExitCode.BAD_INPUT) from None


def read_settings(host, probe: str) -> dict[str, int | None]:
    values = host.read_sysctls(SETTINGS[probe])
    return {k.rsplit(".", 1)[1]: _int(values, k) for k in SETTINGS[probe]}


def timewait_count(sockstat: str | None) -> int | None:
    """The "tw" field of /proc/net/sockstat's TCP line: refcount_read(&tcp_death_row.tw_refcount) - 1
    (net/ipv4/proc.c sockstat_seq_show()), the very count inet_twsk_alloc() compares with
    tcp_max_tw_buckets.  Per network namespace."""
    for line in (sockstat or "").splitlines():
        f = line.split()
        if f[:1] == ["TCP:"] and "tw" in f:
            try:
                return int(f[f.index("tw") + 1])
            except (ValueError, IndexError):
                return None
    return None


def read_facts(host, probe: str) -> dict:
    """State of the namespace that a model needs besides sysctls, read just before the probe."""
    facts: dict = {}
    if probe in NEEDS_TW_COUNT:
        facts["timewait_sockets"] = timewait_count(host.read_proc_text("net/sockstat"))
    return facts


def kernel_version(host) -> tuple[int, ...] | None:
    from tcptune.host.source import kernel_version as parsed

    return parsed(host)


def predict(
    probe: str, st: dict, hz: int | None, measured: dict | None = None, kernel: tuple[int, ...] | None = None
) -> S.Prediction:
    """The model's prediction for ``probe`` from setting values (and socket/namespace facts).

    A model that refuses the settings (ValueError: values the kernel cannot honour)
    becomes a clear exit-2 error naming them."""
    try:
        return _predict(probe, st, hz, measured or {}, kernel)
    except ValueError as exc:
        raise TcptuneError(
            f"probe {probe}: {exc}",
            ExitCode.BAD_INPUT,
            hint="nothing was probed; change the setting in this namespace to one the kernel honours",
        ) from None


def _predict(probe: str, st: dict, hz: int | None, measured: dict, kernel: tuple[int, ...] | None) -> S.Prediction:

    def need(key):
        if st.get(key) is None:
            raise TcptuneError(
                f"net.ipv4.{key} is not present on this kernel", ExitCode.BAD_INPUT, hint=f"the {probe} probe needs it"
            )
        return st[key]

    rto_max = st["tcp_rto_max_ms"] / 1000.0 if st.get("tcp_rto_max_ms") else None
    if probe == "syn":
        return S.predict_syn(need("tcp_syn_retries"), st.get("tcp_syn_linear_timeouts"), rto_max, hz=hz)
    if probe == "synack":
        # whether tcp_rto_max_ms applies depends on the kernel (see predict_synack)
        return S.predict_synack(
            need("tcp_synack_retries"), rto_max, hz=hz, syncookies=st.get("tcp_syncookies"), kernel=kernel
        )
    tw = {"tw_count": measured.get("timewait_sockets"), "max_tw_buckets": st.get("tcp_max_tw_buckets")}
    if probe == "fin-timeout":
        return S.predict_fin_timeout(need("tcp_fin_timeout"), measured.get("rto_s", 0.2), hz=hz, **tw)
    if probe == "keepalive":
        return S.predict_keepalive(
            need("tcp_keepalive_time"), need("tcp_keepalive_intvl"), need("tcp_keepalive_probes"), hz=hz
        )
    if probe == "tw-reuse":
        return S.predict_tw_reuse(
            need("tcp_tw_reuse"), need("tcp_timestamps"), st.get("tcp_tw_reuse_delay"), hz=hz, **tw
        )
    raise TcptuneError(f"unknown probe {probe!r}", ExitCode.BAD_INPUT, hint="one of " + ", ".join(PROBES))


def first_event_time(pred: S.Prediction) -> float:
    """When the first thing worth watching happens (after the t=0 anchors)."""
    later = [e.t for e in pred.events if e.t > 0]
    return min(later) if later else 0.0


def run_module(probe: str):
    return importlib.import_module(f"tcptune.probe.{_MODULES[probe]}")


def run_probe(
    host,
    probe: str,
    max_wait: float,
    *,
    pcap: str | None = None,
    capture: bool = True,
    progress: Progress | None = None,
    tolerance: S.Tolerance | None = None,
    model: Callable[[dict, int | None, dict], S.Prediction] | None = None,
) -> dict:
    """Predict, observe, compare.  ``model`` replaces the kernel model (tests pass a
    deliberately wrong one to see 'differs')."""
    if probe not in PROBES:
        raise TcptuneError(f"unknown probe {probe!r}", ExitCode.BAD_INPUT, hint="one of " + ", ".join(PROBES))
    if max_wait <= 0:
        raise TcptuneError(f"--max-wait {max_wait}: must be positive", ExitCode.BAD_INPUT)
    hz = kernel_hz()
    st = read_settings(host, probe)
    kernel = kernel_version(host)
    facts = read_facts(host, probe)
    predictor = model or (lambda s, h, m: predict(probe, s, h, m, kernel))
    pred = predictor(st, hz, dict(facts))
    tol = tolerance or S.Tolerance(hz=hz, poll_s=0.010)
    base = {
        "probe": probe,
        "settings": st,
        "kernel": host.kernel_release(),
        "hz": hz,
        "max_wait_s": max_wait,
        "tolerance": tol.as_dict(),
    }
    if first_event_time(pred) > max_wait and not pred.absence_is_evidence:
        # Nothing to see in the time allowed (e.g. keepalive_time=7200): say so, do not wait.
        return {
            **base,
            "source": None,
            "predicted": [e.as_dict() for e in pred.events],
            "observed": [],
            "alternatives": _alternatives(pred),
            "compared_with": None,
            "give_up": {
                "what": pred.give_up_what,
                "predicted_s": pred.give_up,
                "observed_s": None,
                "possible_s": _give_ups(pred),
            },
            "comparison": [],
            "verdict": "not_observed",
            "observed_for_s": 0.0,
            "unobserved": [e.as_dict() for e in pred.events if e.t > 0],
            "reason": (
                f"the first {probe} event is predicted at {first_event_time(pred):g} s, beyond --max-wait "
                f"{max_wait:g} s; too long to observe in the allowed time"
            ),
            "notes": list(pred.notes),
            "measured": facts,
            "pcap": None,
        }
    # Watch until the kernel should have given up in every allowed outcome (plus a
    # little), but never past --max-wait.
    horizon = pred.horizon()
    watch = min(max_wait, horizon * 1.1 + 1.0 + SETTLE_S) if horizon is not None else max_wait
    ctx = Context(max_wait=watch, capture=capture, progress=progress, name=probe)
    obs: Observation = run_module(probe).run(ctx)
    if pcap:
        if obs.source != "capture":
            obs.notes.append(f"--pcap {pcap}: nothing written, no capture was possible")
        else:
            from tcptune.probe.capture import write_pcap

            write_pcap(pcap, obs.frames)
    measured = {**facts, **obs.measured}
    if obs.measured:
        pred = predictor(st, hz, dict(measured))
    observed = obs.events()
    cmp = S.compare_prediction(pred, observed, tol, window=obs.watched_for)
    used = pred if cmp.alternative is None else pred.alternatives[cmp.alternative]
    gave_up = next((e.t for e in observed if e.what == used.give_up_what), None)
    notes = list(pred.notes) + obs.notes
    if cmp.unobserved:
        notes.append(
            f"watched {obs.watched_for:.1f} s (--max-wait {max_wait:g}); not observed in that time: "
            + ", ".join(f"{u['what']}{' #' + str(u['n']) if u['n'] else ''} at {u['t']:g} s" for u in cmp.unobserved)
        )
    return {
        **base,
        "source": obs.source,
        "predicted": [e.as_dict() for e in pred.events],
        "alternatives": _alternatives(pred),
        "compared_with": cmp.alternative,
        "observed": [e.as_dict() for e in observed],
        "give_up": {
            "what": used.give_up_what,
            "predicted_s": used.give_up,
            "observed_s": gave_up,
            "possible_s": _give_ups(pred),
        },
        "comparison": cmp.rows,
        "verdict": cmp.verdict,
        "reason": cmp.reason,
        "observed_for_s": round(obs.watched_for, 3),
        "unobserved": cmp.unobserved,
        "notes": notes,
        "measured": measured,
        "pcap": pcap if pcap and obs.source == "capture" else None,
    }


def _alternatives(pred: S.Prediction) -> list[dict]:
    return [
        {"why": a.why, "give_up_s": a.give_up, "events": [e.as_dict() for e in a.events]} for a in pred.alternatives
    ]


def _give_ups(pred: S.Prediction) -> list[float]:
    return sorted({p.give_up for p in pred.timelines() if p.give_up is not None})


def replay_pcap(probe: str, path: str, pred: S.Prediction, tolerance: S.Tolerance | None = None) -> dict:
    """Run a saved capture through the same analysis and comparison as a live one."""
    from tcptune.probe.capture import read_pcap

    segs = read_pcap(path)
    mod = run_module(probe)
    raw = mod.analyze(segs)
    obs = Observation(probe, "pcap", raw_events=list(raw))
    observed = obs.events()
    span = max((e.t for e in observed), default=0.0)
    tol = tolerance or S.Tolerance(hz=None)
    cmp = S.compare_prediction(pred, observed, tol, window=span + SETTLE_S, ignore=NOT_IN_PACKETS[probe])
    return {
        "probe": probe,
        "source": "pcap",
        "pcap": str(path),
        "observed": [e.as_dict() for e in observed],
        "predicted": [e.as_dict() for e in pred.events],
        "alternatives": _alternatives(pred),
        "compared_with": cmp.alternative,
        "comparison": cmp.rows,
        "verdict": cmp.verdict,
        "reason": cmp.reason,
        "unobserved": cmp.unobserved,
    }
