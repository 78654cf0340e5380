"""Checks of what the counters say about traffic: retransmissions, resets, SYN_SENT, conntrack."""

from __future__ import annotations

from tcptune.core.diagnoses.ephemeral import PORT_EVIDENCE
from tcptune.core.diagnoses.model import (
    CRITICAL,
    INFO,
    MIN_SEGMENTS,
    NEAR,
    RETRANS_SHARE,
    SYN_SENT_PILE,
    WARNING,
    DoctorInput,
    Evidence,
    Finding,
    delta_evidence,
    setting_evidence,
    setting_int,
    window_delta,
)
from tcptune.kernel.states import TcpState


def check_retransmissions(inp: DoctorInput) -> list[Finding]:
    sent, retrans = window_delta(inp, "Tcp", "OutSegs"), window_delta(inp, "Tcp", "RetransSegs")
    if not sent or not retrans or sent.change < MIN_SEGMENTS:
        return []
    share = retrans.change / sent.change
    if share <= RETRANS_SHARE:
        return []
    extra = [d for d in (window_delta(inp, "TcpExt", "TCPSynRetrans"), window_delta(inp, "TcpExt", "TCPTimeouts")) if d]
    peers = sorted(inp.retransmitting.items(), key=lambda kv: (-kv[1], kv[0]))[:PORT_EVIDENCE]
    evidence = [delta_evidence(d) for d in (retrans, sent, *extra)]
    evidence += [
        Evidence(f"{peer}: {n} socket(s) retransmitting at the dump", "sock_diag idiag_retrans (icsk_retransmits) > 0")
        for peer, n in peers
    ]
    return [
        Finding(
            "retransmissions",
            WARNING,
            f"{share:.1%} of sent segments were retransmissions"
            + (f"; most retransmitting sockets go to {peers[0][0]}" if peers else ""),
            tuple(evidence),
            (f"the path to {peers[0][0]}" if peers else "the path to the busiest peers (tcptune states --by peer)",),
            "look for loss on the path (NIC drops, a congested link, a firewall dropping); tuning rarely fixes loss",
            "RFC 6298; tcp_retransmit_skb() in net/ipv4/tcp_output.c",
        )
    ]


RESET_MEANINGS = {
    ("Tcp", "OutRsts"): "RSTs sent",
    ("Tcp", "EstabResets"): "established connections reset",
    ("Tcp", "AttemptFails"): "connects that failed (RST or timeout in SYN_SENT/SYN_RECV)",
    ("TcpExt", "TCPAbortOnData"): "closed with unread data (the kernel sent RST)",
    ("TcpExt", "TCPAbortOnClose"): "closed by the program with data still unread",
    ("TcpExt", "TCPAbortOnLinger"): "closed with SO_LINGER 0",
}


def check_resets(inp: DoctorInput) -> list[Finding]:
    moved = [(d, RESET_MEANINGS[key]) for key in RESET_MEANINGS if (d := window_delta(inp, *key))]
    if not moved:
        return []
    return [
        Finding(
            "resets",
            INFO,
            "connections are being reset: " + ", ".join(f"{d.change} {m}" for d, m in moved),
            tuple(Evidence(f"{d.name} +{d.change} in {d.seconds:.1f} s ({m})", d.where) for d, m in moved),
            ("the programs on both ends",),
            "connects to closed ports, programs closing with unread data, or SO_LINGER 0; rarely a sysctl",
            "tcp_send_active_reset() and tcp_reset() in net/ipv4",
        )
    ]


def check_syn_sent(inp: DoctorInput) -> list[Finding]:
    n = inp.states.get(TcpState.SYN_SENT, 0)
    if n < SYN_SENT_PILE:
        return []
    wait = f"; each gives up after {inp.syn_sent_timeout:.1f} s" if inp.syn_sent_timeout else ""
    ranked = sorted(inp.syn_sent_destinations.items(), key=lambda kv: (-kv[1], kv[0]))[:PORT_EVIDENCE]
    evidence = [Evidence(f"SYN_SENT sockets: {n}", "sock_diag dump")]
    evidence += [
        Evidence(f"{local} -> {peer}:{port}: {c} in SYN_SENT", "sock_diag dump of the SYN_SENT sockets, by destination")
        for (local, peer, port), c in ranked
    ]
    if inp.syn_sent_timeout:
        evidence.append(
            Evidence(
                f"connect() gives up after {inp.syn_sent_timeout:.1f} s (tcp_syn_retries="
                f"{inp.settings.get('net.ipv4.tcp_syn_retries')}, unanswered SYNs with exponential backoff)",
                "tcptune.kernel.timers.syn predict_syn(): tcp_write_timeout() in net/ipv4/tcp_timer.c",
            )
        )
    evidence.append(setting_evidence(inp, "net.ipv4.tcp_syn_retries"))
    if ranked:
        (_, peer, port), c = ranked[0]
        summary = f"{c} of {n} connections waiting in SYN_SENT go to {peer}:{port}{wait}"
        look = f"the peer {peer}:{port} (down, or a firewall dropping SYNs)"
    else:
        summary, look = f"{n} connections waiting in SYN_SENT{wait}", "the peers (tcptune states --by peer)"
    return [
        Finding(
            "syn-sent",
            WARNING,
            summary,
            tuple(evidence),
            ("net.ipv4.tcp_syn_retries", look),
            "a peer is down or filtered; lower tcp_syn_retries (or set a connect timeout in the program) to fail fast",
            "tcp_write_timeout() in net/ipv4/tcp_timer.c",
        )
    ]


def check_conntrack(inp: DoctorInput) -> list[Finding]:
    count = setting_int(inp.settings, "net.netfilter.nf_conntrack_count")
    cap = setting_int(inp.settings, "net.netfilter.nf_conntrack_max")
    if count is None or not cap or count < NEAR * cap:
        return []
    return [
        Finding(
            "conntrack",
            CRITICAL if count >= 0.95 * cap else WARNING,
            f"conntrack table at {count} of {cap}; when full, new connections are dropped (clients see SYN timeouts)",
            (
                setting_evidence(inp, "net.netfilter.nf_conntrack_count"),
                setting_evidence(inp, "net.netfilter.nf_conntrack_max"),
            ),
            ("net.netfilter.nf_conntrack_max",),
            "raise nf_conntrack_max (and the hash size), or exempt heavy traffic from tracking",
            "nf_conntrack_alloc() in net/netfilter/nf_conntrack_core.c",
        )
    ]
