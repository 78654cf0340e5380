"""Checks that name a process: CLOSE_WAIT leaks, receivers not reading, fds near RLIMIT_NOFILE."""

from __future__ import annotations

import math

from tcptune.core.diagnoses.model import (
    CRITICAL,
    INFO,
    UNREAD,
    WARNING,
    ZERO_WINDOW,
    DoctorInput,
    Evidence,
    Finding,
    ProcessSockets,
    close_wait_leak,
    delta_evidence,
    near_fd_limit,
    window_delta,
)


def _fds(p: ProcessSockets) -> Evidence:
    share = f" ({p.open_fds / p.fd_limit:.0%})" if p.open_fds is not None and p.fd_limit else ""
    return Evidence(
        f"{p.label}: {p.open_fds} open fds of RLIMIT_NOFILE {p.fd_limit}{share}",
        "psutil Process.num_fds() and rlimit(RLIMIT_NOFILE)",
    )


def sample_margin(estimate: int, read: int, total: int) -> int:
    """Half the 95 % interval of a count estimated from ``read`` of ``total`` fds (a simple random
    sample without replacement: normal approximation with the finite population correction)."""
    p = min(max(estimate / total, 0.0), 1.0)
    return round(1.96 * math.sqrt(p * (1 - p) / read * (1 - read / total)) * total)


def check_close_wait(inp: DoctorInput) -> list[Finding]:
    out = []
    for p in inp.close_wait_owners:
        if not close_wait_leak(p.close_wait, p.sockets):
            continue
        stayed = (
            f"; {'each' if p.sampled_fds else f'all {p.close_wait}'} were in CLOSE_WAIT "
            f"{inp.window_seconds_cw:.1f} s earlier too (same socket cookies)"
            if p.persisted
            else " (one sample: not followed over time)"
        )
        about = "about " if p.sampled_fds else ""
        how = (
            f" (estimated: {p.sampled_fds} of its {p.open_fds} fds read, at evenly spaced fd numbers; "
            f"± {sample_margin(p.close_wait, p.sampled_fds, p.open_fds)} at 95 %)"
            if p.sampled_fds and p.open_fds
            else ""
        )
        evidence = [
            Evidence(
                f"{p.label}: {about}{p.close_wait} CLOSE_WAIT sockets, {p.close_wait / max(p.sockets, 1):.0%} of its "
                + (f"sockets (about {p.sockets}){how}" if p.sampled_fds else f"{p.sockets} sockets")
                + stayed,
                "sock_diag dumps of CLOSE_WAIT (idiag_cookie, idiag_inode) joined with /proc/PID/fd",
            ),
            _fds(p),
        ]
        out.append(
            Finding(
                "close-wait",
                CRITICAL if near_fd_limit(p.open_fds, p.fd_limit) else WARNING,
                f"{p.label} leaks CLOSE_WAIT sockets: {'about ' if p.sampled_fds else ''}{p.close_wait} peers "
                "closed and it never called close(); "
                "the kernel never expires these",
                tuple(evidence),
                (f"the program {p.label}",),
                "fix the program to close() when read() returns 0 (the peer's FIN); restarting it frees them now. "
                "No sysctl reclaims CLOSE_WAIT (tcp_fin_timeout is FIN_WAIT2's)",
                "tcp_fin() in net/ipv4/tcp_input.c: ESTABLISHED -> CLOSE_WAIT, left only by the program's close()",
            )
        )
    return out


def check_receiver_not_reading(inp: DoctorInput) -> list[Finding]:
    drop = window_delta(inp, "TcpExt", "TCPZeroWindowDrop")
    to_zero = window_delta(inp, "TcpExt", "TCPToZeroWindowAdv")
    unread = [s for s in inp.stalls if s.role == UNREAD]
    waiting = [s for s in inp.stalls if s.role == ZERO_WINDOW]
    # A large Recv-Q alone is any busy receiver between two reads; it counts when a window
    # actually closed: a sender here probing, a zero window advertised or data dropped on one.
    if not (waiting or drop or (unread and to_zero)):
        return []
    evidence = [
        Evidence(
            f"{s.label}: {s.sockets} socket(s) with unread data (up to {s.largest} bytes in Recv-Q), e.g. {s.example}",
            "sock_diag idiag_rqueue (rcv_nxt - copied_seq) >= 64 KiB",
        )
        for s in unread
    ]
    evidence += [
        Evidence(
            f"{s.label}: {s.sockets} socket(s) sending zero-window probes (up to {s.largest} bytes waiting in "
            f"Send-Q), e.g. {s.example}",
            "sock_diag idiag_timer 4 (ICSK_TIME_PROBE0: the peer advertised a zero window)",
        )
        for s in waiting
    ]
    moved = [
        window_delta(inp, "TcpExt", n) for n in ("TCPToZeroWindowAdv", "TCPZeroWindowDrop", "TCPFromZeroWindowAdv")
    ]
    evidence += [delta_evidence(d) for d in moved if d]
    if unread:
        top = max(unread, key=lambda s: (s.largest, s.sockets))
        summary = f"{top.label} is not reading: {top.sockets} socket(s) hold up to {top.largest} unread bytes"
    elif waiting:
        summary = (
            f"{sum(s.sockets for s in waiting)} socket(s) wait on a peer's zero window (the receiver does not read)"
        )
    else:
        summary = f"{drop.change} segments dropped on a zero receive window"
    return [
        Finding(
            "receiver-not-reading",
            WARNING if waiting or drop else INFO,
            summary,
            tuple(evidence),
            tuple(dict.fromkeys(f"the program {s.label}" for s in unread or waiting)) or ("the receiving programs",),
            "the receiving program reads too slowly or not at all (blocked, overloaded, a deadlock); a bigger "
            "tcp_rmem only delays the stall. The sender keeps probing and never times out while the peer answers",
            "tcp_probe_timer() and tcp_send_probe0() in net/ipv4/tcp_timer.c and tcp_output.c; tcp_select_window()",
        )
    ]


def check_fd_limit(inp: DoctorInput) -> list[Finding]:
    return [
        Finding(
            "fd-limit",
            CRITICAL if p.open_fds is not None and p.fd_limit and p.open_fds >= p.fd_limit else WARNING,
            f"{p.label} holds sockets and is at {p.open_fds} of its {p.fd_limit} open files: accept() and "
            "socket() fail with EMFILE at the limit (the listener's queue then fills)",
            (
                _fds(p),
                Evidence(f"{p.label} holds sockets in this network namespace", "/proc/PID/fd socket:[inode] links"),
            ),
            (f"the program {p.label}", "its LimitNOFILE= (systemd) or ulimit -n"),
            "raise the program's RLIMIT_NOFILE (systemd LimitNOFILE=, or ulimit -n before it starts), or find "
            "what it leaks (close-wait, idle connections); fs.file-max is the system-wide cap, rarely the one hit",
            "alloc_fd() in fs/file.c (EMFILE past RLIMIT_NOFILE); getrlimit(2)",
        )
        for p in inp.fd_heavy
        if near_fd_limit(p.open_fds, p.fd_limit)
    ]
