"""Prometheus text exposition format (version 0.0.4), as node_exporter's textfile collector reads it.

Every metric has HELP and TYPE lines, identical on every run; no sample timestamps (the
textfile collector refuses them); base units; the prefix tcptune_, never node_ (node_exporter
owns node_tcp_connection_states, node_netstat_*, node_sockstat_*).  State label values are
node_exporter's own (established, syn_sent, ...) so that series join.
"""

from __future__ import annotations

import math

from tcptune.ops.metrics import MetricsData

PREFIX = "tcptune_"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return "NaN" if math.isnan(v) else repr(float(v))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples) -> None:
        """One metric family; ``samples``: (labels dict, value) pairs, written even when empty."""
        full = PREFIX + name
        self.lines += [f"# HELP {full} {_escape_help(help_text)}", f"# TYPE {full} {kind}"]
        for labels, value in samples:
            body = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            self.lines.append(f"{full}{{{body}}} {_number(value)}" if body else f"{full} {_number(value)}")


def render_prometheus(data: MetricsData, now: float) -> str:
    w = _Writer()
    w.family(
        "info",
        "gauge",
        "tcptune's version and the kernel it read; always 1.",
        [({"version": data.version, "kernel": data.kernel or "unknown"}, 1)],
    )
    w.family("last_run_timestamp_seconds", "gauge", "When this file was written (Unix time).", [({}, round(now, 3))])
    w.family(
        "last_run_success",
        "gauge",
        "1 if every part of the last collection succeeded, else 0 (see tcptune metrics on the host).",
        [({}, data.success)],
    )
    w.family(
        "sockets",
        "gauge",
        "TCP sockets by address family and state, from one sock_diag dump (state names as node_exporter's).",
        [({"family": f, "state": s}, n) for (f, s), n in sorted(data.states.items())],
    )
    w.family(
        "listener_accept_queue",
        "gauge",
        "Connections waiting in a listener's accept queue (sk_ack_backlog).",
        [({"address": x.address, "port": x.port}, x.queue) for x in data.listeners],
    )
    w.family(
        "listener_backlog",
        "gauge",
        "A listener's accept-queue limit: min(listen() backlog, net.core.somaxconn).",
        [({"address": x.address, "port": x.port}, x.backlog) for x in data.listeners],
    )
    usable, busiest = data.usable_ephemeral_ports, data.busiest_destination
    # One series each, never per peer: the busiest destination is the one that runs out first.
    w.family(
        "ephemeral_port_use_ratio",
        "gauge",
        "Share (0-1) of the usable ephemeral ports held by the busiest (local address, peer, peer port), "
        "TIME_WAIT included; at 1 connect() to it fails with EADDRNOTAVAIL.",
        [] if usable is None else [({}, round(busiest.ratio, 6) if busiest else 0.0)],
    )
    w.family(
        "ephemeral_ports_in_use",
        "gauge",
        "Sockets holding an ephemeral port for the busiest (local address, peer, peer port).",
        [] if usable is None else [({}, busiest.in_use if busiest else 0)],
    )
    w.family(
        "ephemeral_ports_usable",
        "gauge",
        "Ports connect() can pick: net.ipv4.ip_local_port_range minus ip_local_reserved_ports.",
        [] if usable is None else [({}, usable)],
    )
    w.family(
        "sysctl_drift",
        "gauge",
        "1 if the key differs from what the audited profile accepts, else 0.",
        [({"profile": data.profile, "key": k}, v) for k, v in sorted(data.drift.items())],
    )
    w.family(
        "audit_findings",
        "gauge",
        "Audit findings against the profile, by verdict.",
        [({"profile": data.profile, "verdict": v}, n) for v, n in sorted(data.verdicts.items())],
    )
    w.family(
        "doctor_finding",
        "gauge",
        "1 for each finding tcptune doctor makes now, by check and severity.",
        [({"check": c, "severity": sev}, 1) for c, sev in dict.fromkeys((f.check, f.severity) for f in data.findings)],
    )
    return "\n".join(w.lines) + "\n"
