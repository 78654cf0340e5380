"""The keepalive model: probes on an idle SO_KEEPALIVE socket whose peer is silent (tcp_keepalive_timer())."""

from __future__ import annotations

from tcptune.kernel.timers import Event, Prediction


def predict_keepalive(keepalive_time: float, keepalive_intvl: float, keepalive_probes: int) -> Prediction:
    """An idle ESTABLISHED socket with SO_KEEPALIVE (no TCP_KEEP* overrides, no
    TCP_USER_TIMEOUT: neither is modelled) whose peer stops answering.

    t=0 is the client's SYN (the probe's first packet).  SO_KEEPALIVE set before
    connect() only flags the socket (tcp_set_keepalive() ignores a CLOSE socket);
    net/ipv4/tcp_input.c tcp_finish_connect() arms the keepalive timer when the
    SYN-ACK arrives, and net/ipv4/tcp_timer.c tcp_keepalive_timer() measures idle
    time from the last segment received (keepalive_time_elapsed()), i.e. that
    SYN-ACK: the first probe goes out keepalive_time after "established" (the
    handshake's last ACK, ~0 on loopback), then one every keepalive_intvl; when a
    timer fires with ``probes_out >= keepalive_probes`` the kernel sends a RST and
    the socket fails with ETIMEDOUT.
    Events: "syn" (t=0), "established", "keepalive_probe" 1..N, "reset_timeout".
    """
    events = [Event(0.0, "syn"), Event(0.0, "established")]
    t = float(keepalive_time)
    delay = float(keepalive_time)
    for k in range(1, keepalive_probes + 1):
        events.append(Event(t, "keepalive_probe", k, delay))
        delay = float(keepalive_intvl)
        t += delay
    events.append(Event(t, "reset_timeout", 0, delay, f"RST and ETIMEDOUT after {keepalive_probes} unanswered probes"))
    settings = {
        "tcp_keepalive_time": keepalive_time,
        "tcp_keepalive_intvl": keepalive_intvl,
        "tcp_keepalive_probes": keepalive_probes,
    }
    note = (
        "first probe keepalive_time after the handshake completes (idle time counts from the last segment "
        "received); per-socket TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT and TCP_USER_TIMEOUT would override this "
        "and are not modelled"
    )
    return Prediction("keepalive", settings, tuple(events), t, "reset_timeout", (note,))
