"""Checks of the queues a connection waits in: accept queue, SYN queue, TIME_WAIT, orphans and TCP memory."""

from __future__ import annotations

from tcptune.core.diagnoses.ephemeral import PORT_EVIDENCE
from tcptune.core.diagnoses.model import (
    CRITICAL,
    NEAR,
    WARNING,
    DoctorInput,
    Evidence,
    Finding,
    delta_evidence,
    setting_evidence,
    setting_int,
    window_delta,
)
from tcptune.core.socket_summary import accept_queue_full
from tcptune.kernel.states import TcpState


def check_accept_queue(inp: DoctorInput) -> list[Finding]:
    moved = [d for d in (window_delta(inp, "TcpExt", n) for n in ("ListenOverflows", "ListenDrops")) if d]
    full = [lst for lst in inp.listeners if accept_queue_full(lst.accept_queue, lst.backlog)]
    if not moved and not full:
        return []
    somaxconn = setting_int(inp.settings, "net.core.somaxconn")
    evidence = [delta_evidence(d) for d in moved]
    limits = []
    for lst in full:
        who = f" held by {lst.owner}" if lst.owner else ""
        capped = somaxconn is not None and lst.backlog >= somaxconn
        evidence.append(
            Evidence(
                f"{lst.address}:{lst.port}{who}: {lst.accept_queue} waiting to be accepted, backlog {lst.backlog}",
                "sock_diag LISTEN socket idiag_rqueue/idiag_wqueue",
            )
        )
        limits.append("net.core.somaxconn" if capped else f"the listen() backlog of {lst.owner or 'the program'}")
    abort = setting_int(inp.settings, "net.ipv4.tcp_abort_on_overflow")
    effect = (
        "clients get a RST (tcp_abort_on_overflow=1)"
        if abort == 1
        else "the server drops the client's final ACK and resends its SYN-ACK while the client already "
        "believes it is connected (tcp_abort_on_overflow=0)"
    )
    evidence.append(setting_evidence(inp, "net.core.somaxconn"))
    return [
        Finding(
            "accept-queue",
            CRITICAL if moved and full else WARNING,
            f"accept queue overflow: {len(full)} listener(s) full now; {effect}",
            tuple(evidence),
            tuple(dict.fromkeys(limits or ["net.core.somaxconn", "the program's listen() backlog"])),
            "make the program accept faster (more workers), or raise its listen() backlog together with "
            "net.core.somaxconn, which caps it",
            "tcp_check_req() and tcp_conn_request() in net/ipv4; ip-sysctl.rst tcp_abort_on_overflow",
        )
    ]


def check_syn_queue(inp: DoctorInput) -> list[Finding]:
    drop = window_delta(inp, "TcpExt", "TCPReqQFullDrop")
    cookies = window_delta(inp, "TcpExt", "TCPReqQFullDoCookies")
    sent = window_delta(inp, "TcpExt", "SyncookiesSent")
    if not (drop or cookies or sent):
        return []
    syncookies = setting_int(inp.settings, "net.ipv4.tcp_syncookies")
    evidence = [delta_evidence(d) for d in (drop, cookies, sent) if d]
    evidence += [
        setting_evidence(inp, "net.ipv4.tcp_syncookies"),
        setting_evidence(inp, "net.ipv4.tcp_max_syn_backlog"),
    ]
    evidence.append(Evidence(f"SYN_RECV sockets: {inp.states.get(TcpState.SYN_RECV, 0)}", "sock_diag dump"))
    backlog_of = {lst.port: lst.backlog for lst in inp.listeners}
    for port, pending in sorted(inp.syn_recv_by_port.items(), key=lambda kv: (-kv[1], kv[0]))[:PORT_EVIDENCE]:
        limit = f" of listen backlog {backlog_of[port]}" if port in backlog_of else ""
        evidence.append(
            Evidence(
                f"port {port}: {pending} requests in SYN_RECV{limit} (the queue is full at the backlog; "
                f"without syncookies new SYNs drop from 3/4 of tcp_max_syn_backlog)",
                "sock_diag dump: request sockets by local port; tcp_conn_request()",
            )
        )
    if inp.synack_timeout:
        evidence.append(
            Evidence(
                f"each request holds its slot up to {inp.synack_timeout:.0f} s while the SYN-ACK is resent "
                f"(tcp_synack_retries={inp.settings.get('net.ipv4.tcp_synack_retries')})",
                "tcptune.kernel.timers.synack predict_synack(): reqsk_timer_handler()",
            )
        )
    if drop:
        severity = CRITICAL if syncookies == 0 else WARNING
        summary = "SYN queue full: new connections are being dropped" + (
            " and syncookies are off" if syncookies == 0 else ""
        )
    else:
        severity, summary = (
            WARNING,
            "SYN queue full: the kernel is answering with syncookies (a flood or a small backlog)",
        )
    return [
        Finding(
            "syn-queue",
            severity,
            summary,
            tuple(evidence),
            (
                "net.ipv4.tcp_max_syn_backlog",
                "net.ipv4.tcp_syncookies",
                "net.core.somaxconn",
                "net.ipv4.tcp_synack_retries",
            ),
            "keep tcp_syncookies=1; raise tcp_max_syn_backlog and the listen() backlog for legitimate load; "
            "a flood is answered upstream",
            "tcp_conn_request() and tcp_syn_flood_action() in net/ipv4/tcp_input.c",
        )
    ]


def check_time_wait(inp: DoctorInput) -> list[Finding]:
    cap = setting_int(inp.settings, "net.ipv4.tcp_max_tw_buckets")
    tw = inp.states.get(TcpState.TIME_WAIT, 0)
    overflow = window_delta(inp, "TcpExt", "TCPTimeWaitOverflow")
    near = cap is not None and cap > 0 and tw >= NEAR * cap
    if not (near or overflow):
        return []
    evidence = [
        Evidence(f"TIME_WAIT sockets: {tw}", "sock_diag dump"),
        setting_evidence(inp, "net.ipv4.tcp_max_tw_buckets"),
    ]
    evidence += [delta_evidence(overflow)] if overflow else []
    return [
        Finding(
            "time-wait",
            WARNING,
            f"TIME_WAIT at {tw} of tcp_max_tw_buckets {cap}"
            + (
                "; past the cap the kernel closes without TIME_WAIT (it only counts TCPTimeWaitOverflow, it logs nothing)"
                if overflow
                else ""
            ),
            tuple(evidence),
            ("net.ipv4.tcp_max_tw_buckets",),
            "a large TIME_WAIT count alone is not a problem; never lower the cap. Raise it if the table "
            "fills, or reuse connections (keep-alive, pooling)",
            "tcp_time_wait() in net/ipv4/tcp_minisocks.c",
        )
    ]


def check_orphans_and_memory(inp: DoctorInput) -> list[Finding]:
    out = []
    tcp = inp.sockstat.get("TCP", {})
    cap = setting_int(inp.settings, "net.ipv4.tcp_max_orphans")
    orphans = tcp.get("orphan")
    abort = window_delta(inp, "TcpExt", "TCPAbortOnMemory")
    if (orphans is not None and cap and orphans >= NEAR * cap) or abort:
        ev = [
            Evidence(f"orphans: {orphans}", "/proc/net/sockstat TCP orphan"),
            setting_evidence(inp, "net.ipv4.tcp_max_orphans"),
        ]
        out.append(
            Finding(
                "orphans",
                WARNING,
                f"orphaned sockets at {orphans} of tcp_max_orphans {cap}; past it the kernel resets them",
                tuple(ev + ([delta_evidence(abort)] if abort else [])),
                ("net.ipv4.tcp_max_orphans", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_orphan_retries"),
                "find who closes so many connections with data unsent; raise tcp_max_orphans only with memory to spare",
                "tcp_check_oom() and tcp_too_many_orphans() in net/ipv4/tcp.c",
            )
        )
    pressure, hard = setting_int(inp.settings, "net.ipv4.tcp_mem", 1), setting_int(inp.settings, "net.ipv4.tcp_mem", 2)
    mem = tcp.get("mem")
    pressures = window_delta(inp, "TcpExt", "TCPMemoryPressures")
    if (mem is not None and pressure and mem >= pressure) or pressures:
        ev = [
            Evidence(f"TCP memory: {mem} pages", "/proc/net/sockstat TCP mem"),
            setting_evidence(inp, "net.ipv4.tcp_mem"),
        ]
        out.append(
            Finding(
                "tcp-memory",
                CRITICAL if mem is not None and hard and mem >= hard else WARNING,
                f"TCP memory at {mem} pages, pressure threshold {pressure}, limit {hard}",
                tuple(ev + ([delta_evidence(pressures)] if pressures else [])),
                ("net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"),
                "find the sockets with large queues (receivers not reading); raise tcp_mem only with RAM to spare",
                "tcp_under_memory_pressure() and sk_mem_schedule(); ip-sysctl.rst tcp_mem",
            )
        )
    return out
