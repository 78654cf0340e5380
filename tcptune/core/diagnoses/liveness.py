"""Dead peers detected too slowly: keepalive and tcp_retries2 budgets against an idle timeout."""

from __future__ import annotations

from tcptune.core.diagnoses.model import INFO, WARNING, DoctorInput, Finding, setting_evidence, setting_int

TCP_RTO_MIN = 0.2  # include/net/tcp.h: the base of tcp_retries2's time budget (tcp_write_timeout())


def check_dead_peers(inp: DoctorInput) -> list[Finding]:
    """Against --idle-timeout: does the kernel notice a dead peer before the middlebox forgets it?"""
    if inp.idle_timeout is None:
        return []
    from tcptune.kernel.timers import TCP_RTO_MAX
    from tcptune.kernel.timers.keepalive import predict_keepalive
    from tcptune.kernel.timers.syn import model_timeout

    ktime = setting_int(inp.settings, "net.ipv4.tcp_keepalive_time")
    intvl = setting_int(inp.settings, "net.ipv4.tcp_keepalive_intvl")
    probes = setting_int(inp.settings, "net.ipv4.tcp_keepalive_probes")
    retries2 = setting_int(inp.settings, "net.ipv4.tcp_retries2")
    rto_max_ms = setting_int(inp.settings, "net.ipv4.tcp_rto_max_ms")
    out = []
    if ktime is not None and intvl is not None and probes is not None and ktime >= inp.idle_timeout:
        detect = predict_keepalive(ktime, intvl, probes).give_up
        out.append(
            Finding(
                "dead-peers",
                WARNING,
                f"the first keepalive is sent after {ktime} s of idleness, not before the {inp.idle_timeout:g} s "
                f"idle timeout: the middlebox forgets the connection first (a dead peer is noticed after "
                f"{detect:.0f} s at the earliest)",
                tuple(
                    setting_evidence(inp, k)
                    for k in (
                        "net.ipv4.tcp_keepalive_time",
                        "net.ipv4.tcp_keepalive_intvl",
                        "net.ipv4.tcp_keepalive_probes",
                    )
                ),
                ("net.ipv4.tcp_keepalive_time", "the program's SO_KEEPALIVE / TCP_KEEPIDLE"),
                f"set tcp_keepalive_time (or the program's TCP_KEEPIDLE) below {inp.idle_timeout:g} s; it acts "
                "only on sockets with SO_KEEPALIVE (`tcptune probe keepalive` shows the schedule)",
                "tcp_keepalive_timer() in net/ipv4/tcp_timer.c",
            )
        )
    if retries2 is not None:
        rto_max = TCP_RTO_MAX if rto_max_ms is None else rto_max_ms / 1000
        # tcp_write_timeout(): ETIMEDOUT once the time since the first unacknowledged
        # retransmission exceeds tcp_model_timeout(tcp_retries2, TCP_RTO_MIN), capped by the
        # socket's RTO cap (tcp_rto_max(sk) since 6.15)
        budget = model_timeout(retries2, TCP_RTO_MIN, rto_max)
        if budget > inp.idle_timeout:
            out.append(
                Finding(
                    "dead-peers",
                    INFO,
                    f"with unacknowledged data, a dead peer is given up after at least {budget:.1f} s "
                    f"(tcp_retries2={retries2}), more than the {inp.idle_timeout:g} s idle timeout",
                    (setting_evidence(inp, "net.ipv4.tcp_retries2"), setting_evidence(inp, "net.ipv4.tcp_rto_max_ms")),
                    ("net.ipv4.tcp_retries2", "the program's TCP_USER_TIMEOUT"),
                    "set TCP_USER_TIMEOUT in the program, or lower tcp_retries2 (8 gives about 100 s with the "
                    "default cap); ip-sysctl.rst tcp_retries2",
                    "tcp_write_timeout() and tcp_model_timeout() in net/ipv4/tcp_timer.c",
                )
            )
    return out
