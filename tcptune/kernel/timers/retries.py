"""Models of the retransmission timer's give-up rules (net/ipv4/tcp_timer.c) for the probes
fin-wait1, dead-peer and accept-overflow: an orphan whose FIN is never ACKed, an established
connection whose peer goes silent with data unacknowledged, and a listener whose accept
queue is full.

Pure: setting values and measured socket facts in, a :class:`~tcptune.kernel.timers.Prediction`
out (times in seconds from the probe's first packet).  The rules are Linux 6.15..6.18's,
read in net/ipv4/tcp_timer.c, tcp_output.c, tcp_minisocks.c and inet_connection_sock.c and
measured on this project's 6.18 (HZ=250).

The schedule both retransmission models share (one unacknowledged segment on loopback):

- tcp_schedule_loss_probe() (tcp_output.c, tcp_early_retrans=3, SACK): the first timer is a
  tail loss probe after min(2 x srtt + rto_min, RTO) -- on loopback srtt is microseconds and
  RTO = srtt + max(mdev, tcp_rto_min_us) (tcp_rtt_estimator(), __tcp_set_rto()), so the probe
  goes out one RTO after the segment.  tcp_send_loss_probe() resends it with
  __tcp_retransmit_skb(), which does not set retrans_stamp, and re-arms the RTO timer one
  RTO from then (tcp_rearm_rto()).
- tcp_retransmit_timer(): each expiry first asks tcp_write_timeout() whether to give up, then
  retransmits; the first one sets ``retrans_stamp`` (tcp_retransmit_skb(): the stamp of this
  first RTO retransmission, measured: not the loss probe's) and the RTO doubles,
  ``min(icsk_rto << 1, tcp_rto_max(sk))``; the timer is re-armed from the moment the expiry ran.
- retransmits_timed_out(): false while nothing was retransmitted by the RTO timer; else true
  when the real time since retrans_stamp (ms) reaches the budget: TCP_USER_TIMEOUT if set,
  else tcp_model_timeout(sk, boundary, TCP_RTO_MIN) -- the length of a doubling schedule from
  the constant TCP_RTO_MIN (200 ms, not tcp_rto_min_us) capped at tcp_rto_max(sk): the socket's
  own cap since 6.15 ("tcp: add tcp_rto_max_ms sysctl"), TCP_RTO_MAX (120 s) before.

Because the budget is compared with real elapsed time, the timers' lateness (timer-wheel
slack, tcptune.kernel.timers.timer_slack) can make the kernel give up one expiry earlier than
the punctual schedule says; when the budget falls inside that slack both outcomes are
returned (the punctual one first, the earlier one as an alternative), as predict_syn does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tcptune.kernel.timers import TCP_RTO_MAX, Event, Prediction, _hz, msecs_to_jiffies, timer_slack
from tcptune.kernel.timers.syn import model_timeout

TCP_RTO_MIN = 0.2  # include/net/tcp.h TCP_RTO_MIN (HZ / 5): the base of every retries budget
ORPHAN_RETRIES_ALIVE = 8  # tcp_orphan_retries(): 0 is replaced by 8 while the socket is "alive"
LOOPBACK_SRTT_US = 50  # a loopback RTT is tens of microseconds; only used when the RTO was not measured
MAX_EXPIRIES = 20_000  # past this (hours at a 1 s cap) a schedule is not a probe's business


def budget_ms(boundary: int, rto_max: float, hz: int | None = None) -> int:
    """retransmits_timed_out()'s default budget: tcp_model_timeout(sk, boundary, TCP_RTO_MIN)
    in whole ms (jiffies_to_msecs()), with the socket's cap ``rto_max`` (s)."""
    return int(round(model_timeout(boundary, TCP_RTO_MIN, rto_max, hz) * 1000))


def loopback_rto(rto_min_us: int | None, hz: int | None = None, srtt_us: int = LOOPBACK_SRTT_US) -> float:
    """The RTO of a loopback connection: usecs_to_jiffies(srtt + max(mdev, tcp_rto_min_us))
    (__tcp_set_rto(); rttvar is floored at tcp_rto_min_us in tcp_rtt_estimator()), rounded up
    to whole jiffies.  Measured on 6.18 at HZ=250 with the default 200000: 204 ms."""
    h = _hz(hz)
    us = (200_000 if rto_min_us is None else rto_min_us) + srtt_us
    return -(-us * h // 1_000_000) / h


def cap_of(rto_max: float | None) -> float:
    """tcp_rto_max(sk): tcp_rto_max_ms (6.15+), else TCP_RTO_MAX."""
    return TCP_RTO_MAX if rto_max is None else rto_max


@dataclass(frozen=True)
class _Expiry:
    """One RTO-timer expiry as tcp_write_timeout() sees it."""

    k: int  # 1 = the first RTO expiry (never gives up: nothing retransmitted yet)
    elapsed_ms: float  # punctual time since retrans_stamp
    rto_j: int  # icsk_rto when it fires (before this expiry doubles it)
    cap_j: int


# decide(expiry) -> (budget in ms or None: no check, label of the rule)
Rule = Callable[[_Expiry], tuple[int | None, str]]


@dataclass
class _Walk:
    events: list[Event]
    give_up_t: float
    give_up_detail: str
    forks: list[tuple[list[Event], float, str]]  # (events, give-up time, why)
    expiries: list[tuple[float, _Expiry]]  # (t, expiry) of every RTO expiry, the last included


def _walk(
    rto: float, rto_max: float | None, hz: int | None, rule: Rule, what: str, user_timeout_ms: int | None = None
) -> _Walk:
    """The loss probe, the RTO retransmissions and the expiry at which ``rule`` gives up."""
    h = _hz(hz)
    cap_j = msecs_to_jiffies(int(round(cap_of(rto_max) * 1000)), h)
    rto_j = min(max(1, int(round(rto * h))), cap_j)
    t_j = rto_j  # tail loss probe, one RTO after the segment
    events = [Event(t_j / h, what, 1, rto_j / h, "tail loss probe (tcp_send_loss_probe())")]
    forks: list[tuple[list[Event], float, str]] = []
    expiries: list[tuple[float, _Expiry]] = []
    delay_j = rto_j
    e1_j, late, n = 0, 0.0, 1
    for k in range(1, MAX_EXPIRIES + 1):
        t_j += delay_j
        t = t_j / h
        if k == 1:
            e1_j = t_j
        else:
            late += timer_slack(delay_j / h, hz)
        elapsed_ms = (t_j - e1_j) * 1000 / h
        exp = _Expiry(k, elapsed_ms, rto_j, cap_j)
        expiries.append((t, exp))
        budget, label = rule(exp) if k > 1 else (None, "")
        if budget is not None and math.floor(elapsed_ms + 1e-9) >= budget:
            return _Walk(events, t, f"after {n} retransmissions: {label}", forks, expiries)
        if budget is not None and user_timeout_ms is None and elapsed_ms + late * 1000 + 1 > budget:
            why = (
                f"RTO expiry {k} is due {elapsed_ms / 1000:g} s after the first RTO retransmission; if the timers "
                f"so far ran {budget - elapsed_ms:.0f} ms late or more in all (timer-wheel slack allows up to "
                f"{late * 1000:.0f} ms) the budget ({label}) is reached there: the kernel gives up at {t:g} s"
            )
            forks.append((list(events), t, why))
        n += 1
        events.append(Event(t, what, n, delay_j / h))
        rto_j = min(rto_j * 2, cap_j)
        delay_j = rto_j
        if user_timeout_ms is not None:
            # tcp_clamp_rto_to_user_timeout(): the timer never runs past the user timeout
            remaining = user_timeout_ms - elapsed_ms
            delay_j = 1 if remaining <= 0 else min(rto_j, msecs_to_jiffies(math.ceil(remaining), h))
    raise ValueError(f"the kernel would retransmit more than {MAX_EXPIRIES} times: not a schedule a probe can watch")


def _alternatives(
    walk: _Walk, probe: str, settings: dict, first: Event, end: Callable[[float, float, str], Event], what: str
) -> tuple[Prediction, ...]:
    """The earlier give-ups the timers' lateness allows, each a whole timeline."""
    return tuple(
        Prediction(
            probe, settings, (first, *evs, end(t, t - evs[-1].t, "(budget reached late)")), t, what, (why,), why=why
        )
        for evs, t, why in walk.forks
    )


# --------------------------------------------------------------------------- dead peer
def predict_dead_peer(
    retries2: int,
    rto: float,
    rto_max: float | None = None,
    *,
    retries1: int | None = None,
    user_timeout_ms: int | None = None,
    hz: int | None = None,
) -> Prediction:
    """An ESTABLISHED connection with one unacknowledged segment whose peer goes silent.

    t=0 is the segment.  Events: "data" (t=0), "retransmit" #1 (the tail loss probe, one RTO
    later), "retransmit" #2.. (the RTO timer, doubling from 2 x RTO, capped at tcp_rto_max_ms),
    "etimedout" (the socket fails; no packet: tcp_write_err() sends no RST) at the first RTO
    expiry where the real time since the first RTO retransmission reaches
    tcp_model_timeout(tcp_retries2, TCP_RTO_MIN) with the socket's cap (6.15+; 924.6 s with the
    120 s cap and retries2=15, 14.4 s with rto_max 1000 ms) -- or TCP_USER_TIMEOUT
    (``user_timeout_ms``), which replaces that budget in retransmits_timed_out() whether it is
    shorter or longer, and clamps each timer so the socket fails at that moment
    (tcp_clamp_rto_to_user_timeout()).

    "retries1" (optional: predicted, never observed): the first expiry at which
    retransmits_timed_out(tcp_retries1) holds; from there on tcp_write_timeout() calls
    dst_negative_advice() (the route is re-looked-up) and tcp_mtu_probing() at every expiry.
    Nothing on the wire shows it.
    """
    if retries2 < 0 or retries2 > 255:
        raise ValueError(f"tcp_retries2={retries2} is outside 0..255")
    if user_timeout_ms is not None and user_timeout_ms < 0:
        raise ValueError(f"TCP_USER_TIMEOUT {user_timeout_ms} ms: must be >= 0")
    ut = user_timeout_ms or None  # 0 means "not set" (tcp_sock_set_user_timeout())
    cap = cap_of(rto_max)
    budget = ut if ut is not None else budget_ms(retries2, cap, hz)
    label = (
        f"TCP_USER_TIMEOUT {ut} ms"
        if ut is not None
        else f"tcp_retries2={retries2} budget {budget / 1000:g} s (tcp_model_timeout with a {cap:g} s cap)"
    )
    walk = _walk(rto, rto_max, hz, lambda e: (budget, label), "retransmit", ut)
    settings = {
        "tcp_retries2": retries2,
        "tcp_retries1": retries1,
        "rto_s": rto,
        "rto_max_s": cap,
        "budget_s": budget / 1000,
        "user_timeout_ms": ut,
        "hz": hz,
    }
    # with a user timeout the last timer is clamped to end at the budget: it ends early by
    # however late the earlier timers ran
    clamp_window = sum(timer_slack(e.timer, hz) for e in walk.events[1:]) if ut is not None else 0.0

    def end(t: float, timer: float, how: str) -> Event:
        return Event(t, "etimedout", 0, timer, f"ETIMEDOUT {how}", window=clamp_window)

    first = Event(0.0, "data")
    events = [first, *walk.events, end(walk.give_up_t, walk.give_up_t - walk.events[-1].t, walk.give_up_detail)]
    notes = [
        f"gives up at the first RTO expiry >= {budget / 1000:g} s after the first RTO retransmission ({label}); "
        f"RTO {rto * 1000:g} ms doubling to the {cap:g} s cap"
    ]
    if ut is not None:
        default = budget_ms(retries2, cap, hz) / 1000
        notes.append(
            f"TCP_USER_TIMEOUT {ut} ms replaces the tcp_retries2={retries2} budget ({default:g} s): the socket fails "
            f"{'earlier' if ut / 1000 < default else 'later'} than without it"
        )
    if retries1 is not None:
        r1 = budget_ms(retries1, cap, hz)
        hit = next(((t, e) for t, e in walk.expiries if e.k > 1 and e.elapsed_ms >= r1), None)
        if hit is not None:
            events.append(
                Event(
                    hit[0],
                    "retries1",
                    0,
                    0.0,
                    f"tcp_retries1={retries1} budget {r1 / 1000:g} s reached: dst_negative_advice() (no packet)",
                    optional=True,
                )
            )
            notes.append(f"tcp_retries1={retries1}: the route is re-looked-up from {hit[0]:g} s on (predicted only)")
        else:
            notes.append(f"tcp_retries1={retries1} ({r1 / 1000:g} s) is not reached before the socket fails")
    alts = _alternatives(walk, "dead-peer", settings, first, end, "etimedout")
    notes += [f"ambiguous: {a.why}; either outcome is accepted" for a in alts]
    events.sort(key=lambda e: e.t)
    return Prediction("dead-peer", settings, tuple(events), walk.give_up_t, "etimedout", tuple(notes), alts)


# --------------------------------------------------------------------------- FIN_WAIT1 orphan
def orphan_retries(sysctl: int, alive: bool) -> int:
    """tcp_orphan_retries() in net/ipv4/tcp_timer.c: the sysctl, but 0 becomes 8 while the
    socket is alive (icsk_rto < tcp_rto_max(sk) in tcp_write_timeout(), 6.15+); an ICMP error
    (sk_err_soft) on a socket that is no longer alive forces 0 -- loopback sends none."""
    return ORPHAN_RETRIES_ALIVE if sysctl == 0 and alive else sysctl


def predict_fin_wait1(
    orphan_retries_sysctl: int,
    rto: float,
    rto_max: float | None = None,
    *,
    max_orphans: int | None = None,
    orphans: int | None = None,
    hz: int | None = None,
) -> Prediction:
    """An orphaned socket (closed by its owner) whose FIN is never acknowledged.

    t=0 is the FIN.  Events: "fin" (t=0), "fin_retransmit" #1 (tail loss probe) and #2.. (RTO
    timer), "orphan_destroyed" (tcp_write_err(): tcp_done(), no RST) at the first RTO expiry where
    retransmits_timed_out(tcp_orphan_retries(sk, alive)) holds.  ``alive`` is
    ``icsk_rto < tcp_rto_max(sk)``, the RTO *before* this expiry doubles it: with
    tcp_orphan_retries=0 the budget is tcp_model_timeout(8) while the backed-off RTO is below the
    cap, then tcp_model_timeout(0) = 200 ms, which is long past -- the socket dies at the first
    expiry whose RTO has reached the cap (measured, rto_max 1000 ms: gone after ~2.7 s; with
    the default 120 s cap that is after ~2 x 204 ms x 2^10, about 7 minutes, i.e. the budget of
    8 retries, 102 s of budget, decides first).

    tcp_max_orphans (global, not readable inside a network namespace): tcp_out_of_resources()
    and __tcp_close() kill an orphan (with a RST) when the machine-wide orphan count shifted
    left by 0..2 (a long-silent peer, an ICMP error) exceeds it (tcp_too_many_orphans());
    ``orphans`` is that count just before the probe (/proc/net/sockstat "orphan").
    """
    if orphan_retries_sysctl < 0 or orphan_retries_sysctl > 255:
        raise ValueError(f"tcp_orphan_retries={orphan_retries_sysctl} is outside 0..255")
    cap = cap_of(rto_max)

    def rule(e: _Expiry) -> tuple[int, str]:
        alive = e.rto_j < e.cap_j
        n = orphan_retries(orphan_retries_sysctl, alive)
        why = f"tcp_orphan_retries={orphan_retries_sysctl}"
        if n != orphan_retries_sysctl:
            why += f" read as {n} while alive (RTO below the {cap:g} s cap)"
        elif orphan_retries_sysctl == 0:
            why += f" for real: the RTO has reached the {cap:g} s cap"
        return budget_ms(n, cap, hz), why + f", budget {budget_ms(n, cap, hz) / 1000:g} s"

    settings = {
        "tcp_orphan_retries": orphan_retries_sysctl,
        "rto_s": rto,
        "rto_max_s": cap,
        "tcp_max_orphans": max_orphans,
        "orphans": orphans,
        "hz": hz,
    }
    notes = []
    # tcp_too_many_orphans() compares tcp_orphan_cache, the machine's orphan count refreshed every
    # 100 ms (tcp_orphan_update() in net/ipv4/tcp.c): the probe's own orphan may not be in it yet
    if max_orphans is not None and orphans is not None and orphans > max_orphans:
        note = (
            f"{orphans} orphans > tcp_max_orphans={max_orphans}: __tcp_close() kills the orphan at once with a "
            "RST (tcp_check_oom(): 'too many orphaned sockets' is logged, TCPAbortOnMemory counted)"
        )
        events = (Event(0.0, "fin", optional=True), Event(0.0, "orphan_destroyed", 0, 0.0, note))
        return Prediction("fin-wait1", settings, events, 0.0, "orphan_destroyed", (note,))
    walk = _walk(rto, rto_max, hz, rule, "fin_retransmit")

    def end(t: float, timer: float, how: str) -> Event:
        return Event(t, "orphan_destroyed", 0, timer, f"destroyed {how}")

    first = Event(0.0, "fin")
    events = [first, *walk.events, end(walk.give_up_t, walk.give_up_t - walk.events[-1].t, walk.give_up_detail)]
    notes.append(
        f"the orphan is destroyed at the first RTO expiry whose budget is reached: {walk.give_up_detail} "
        f"(RTO {rto * 1000:g} ms doubling to the {cap:g} s cap)"
    )
    if max_orphans is None:
        notes.append(
            "tcp_max_orphans is global (not readable in this namespace): it bites only when the machine's "
            "orphan count exceeds it"
        )
    elif orphans is not None and orphans == max_orphans:
        notes.append(
            f"tcp_max_orphans={max_orphans} and {orphans} orphans now: once the kernel's 100 ms orphan count "
            "includes this one it is over the limit, and the next RTO expiry kills it with a RST"
        )
    elif orphans is not None:
        notes.append(
            f"tcp_max_orphans={max_orphans}, {orphans} orphans now: it would bite above {max_orphans} orphans "
            f"(above {max_orphans // 2} once the peer was silent for 2 x tcp_rto_max or the socket is past its "
            "retries, above a quarter with an ICMP error too)"
        )
    alts = _alternatives(walk, "fin-wait1", settings, first, end, "orphan_destroyed")
    notes += [f"ambiguous: {a.why}; either outcome is accepted" for a in alts]
    return Prediction("fin-wait1", settings, tuple(events), walk.give_up_t, "orphan_destroyed", tuple(notes), alts)


# --------------------------------------------------------------------------- accept overflow
def predict_accept_overflow(
    abort_on_overflow: int,
    synack_retries: int,
    *,
    syncookies: int | None = None,
    hz: int | None = None,
    kernel: tuple[int, ...] | None = None,
) -> Prediction:
    """A client whose handshake completes on its side while the listener's accept queue is
    full (the listener never accepts).

    t=0 is the server's SYN-ACK.  The client's final ACK reaches tcp_check_req(), whose
    syn_recv_sock (tcp_v4_syn_recv_sock()) finds sk_acceptq_is_full() and counts
    ListenOverflows and ListenDrops (tcp_listendrop()):
    - tcp_abort_on_overflow=0: tcp_check_req() only marks the request ``acked`` and drops the
      ACK: the *server* keeps the request and resends its SYN-ACK on the request timer
      (reqsk_timer_handler(), 1, 3, 7 ... s, as predict_synack); the client, ESTABLISHED since
      t=0, answers each with an ACK that overflows again; after tcp_synack_retries the request
      is dropped silently and the client still believes it is connected.  Events: "synack",
      "synack_retransmit" #k, "overflow_ack" #k (the client's ACK; a packet, optional to a
      source without capture), "listen_overflow" #k (the counter), "request_dropped".
      The first ACK (t=0) is held back by the probe (a socket filter) so that it meets the full
      queue only at the first retransmission; it is not counted.
    - tcp_abort_on_overflow=1: the overflowing ACK gets a RST (embryonic_reset): events
      "synack", "synack_retransmit" #1, "overflow_ack" #1, "listen_overflow" #1, "reset"
      (the RST; ECONNRESET on the client).
    """
    from tcptune.kernel.timers.synack import predict_synack

    if syncookies == 2:
        raise ValueError(
            "tcp_syncookies=2 answers every SYN with a cookie and keeps no request: there is no request to overflow"
        )
    if abort_on_overflow not in (0, 1):
        # the kernel tests the value for non-zero; only 0 and 1 are documented
        abort_on_overflow = 1 if abort_on_overflow else 0
    sa = predict_synack(synack_retries, hz=hz, kernel=kernel)
    retx = [e for e in sa.events if e.what == "synack_retransmit"]
    settings = {
        "tcp_abort_on_overflow": abort_on_overflow,
        "tcp_synack_retries": synack_retries,
        "tcp_syncookies": syncookies,
        "hz": hz,
    }
    events = [Event(0.0, "synack")]
    if not retx:  # synack_retries=0: the request is dropped at its first expiry, no ACK is solicited
        drop = sa.events[-1]
        events.append(drop)
        note = "tcp_synack_retries=0: no SYN-ACK is resent, so the client's ACK never meets the full queue"
        return Prediction("accept-overflow", settings, tuple(events), drop.t, drop.what, (note,))
    if abort_on_overflow:
        first = retx[0]
        events += [
            # the request is gone with the RST: a source without capture never sees it resent
            Event(first.t, first.what, first.n, first.timer, optional=True),
            Event(first.t, "overflow_ack", 1, 0.0, "the client's ACK of the SYN-ACK", optional=True),
            Event(first.t, "listen_overflow", 1, 0.0, "ListenOverflows +1"),
            Event(first.t, "reset", 0, 0.0, "RST from the server (tcp_abort_on_overflow=1): ECONNRESET"),
        ]
        note = (
            "tcp_abort_on_overflow=1: the first ACK that finds the accept queue full is answered with a RST; "
            "ListenOverflows and ListenDrops +1"
        )
        return Prediction("accept-overflow", settings, tuple(events), first.t, "reset", (note,))
    for e in retx:
        events += [
            e,
            Event(e.t, "overflow_ack", e.n, 0.0, "the client's ACK, dropped: accept queue full", optional=True),
            Event(e.t, "listen_overflow", e.n, 0.0, f"ListenOverflows +{e.n}"),
        ]
    drop = sa.events[-1]
    events.append(drop)
    notes = (
        f"tcp_abort_on_overflow=0: the server drops each of the client's ACKs and resends its SYN-ACK "
        f"{len(retx)} time{'s' if len(retx) != 1 else ''}; ListenOverflows and ListenDrops +{len(retx)}; the request is dropped silently at "
        f"{drop.t:g} s while the client stays ESTABLISHED",
    )
    return Prediction("accept-overflow", settings, tuple(events), drop.t, "request_dropped", notes)
