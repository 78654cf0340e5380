"""The `states` text view: bars, the group table, and lines that fit the terminal."""

from __future__ import annotations

from collections import Counter

import pytest

from tcptune.core.socket_summary import Summary, Warning_, build_report, normalize_counts
from tcptune.kernel.states import STATE_NAMES, TcpState
from tcptune.render.output import Output, visible_len
from tcptune.render.states import HISTOGRAM_BAR, render


def _report(by="peer"):
    counts = normalize_counts({1: 4500, 5: 500, 8: 500, 10: 5, 6: 9000})
    groups = Counter()
    for i in range(30):
        peer = f"2001:db8:{i:x}::1234:5678:9abc"
        groups[(TcpState.ESTABLISHED, peer)] += 150
        groups[(TcpState.FIN_WAIT2, peer)] += 16
        groups[(TcpState.CLOSE_WAIT, peer)] += 16
        groups[(TcpState.TIME_WAIT, peer)] += 300
    warning = Warning_("net.ipv4.tcp_max_tw_buckets", "a warning long enough to need wrapping at eighty columns " * 3)
    summary = Summary("netlink sock_diag", counts, groups)
    summary.notes.append("the kernel flagged the dump as interrupted (sockets changed while it was read)")
    return build_report(summary, [warning], by=by, top=20)


def test_piped_output_is_never_cut_and_the_peak_bar_is_full():
    text = render(_report(), "peer", Output(unicode=True))
    tw = next(line for line in text.splitlines() if line.startswith("TIME_WAIT"))
    assert "\u2588" * HISTOGRAM_BAR in tw
    assert "a warning long enough" in text and max(len(line) for line in text.splitlines()) > 120


@pytest.mark.parametrize("width", [80, 200])
def test_every_line_fits_the_terminal(width):
    out = Output(color=True, unicode=True, width=width, tty=True)
    text = render(_report(), "peer", out)
    assert all(visible_len(line) <= width for line in text.splitlines()), text
    assert "\x1b[33mwarning\x1b[0m" in text  # the colour comes from Output.paint


def test_ascii_terminal_bars():
    text = render(_report(by=None), None, Output(unicode=False))
    assert "#" * HISTOGRAM_BAR in text and "\u2588" not in text


def test_changes_column_with_totals():
    summary = Summary("t", normalize_counts({1: 3}))
    report = build_report(summary, [], previous={n: 0 for n in STATE_NAMES} | {"ESTABLISHED": 1})
    lines = render(report, None, Output()).splitlines()
    assert "CHANGE" in lines[1]
    assert lines[-1].split()[:3] == ["TOTAL", "3", "+2"]


def test_group_states_are_all_shown_and_top_says_what_is_left():
    # issue 10 #7: "60  ESTABLISHED 45, FIN_WAIT2 5, CLOSE_WAIT 5" hid the LISTEN 5
    groups = Counter({(TcpState.ESTABLISHED, 80): 45, (TcpState.FIN_WAIT2, 80): 5})
    groups.update({(TcpState.CLOSE_WAIT, 80): 5, (TcpState.LISTEN, 80): 5, (TcpState.ESTABLISHED, 22): 1})
    summary = Summary("t", normalize_counts({1: 46, 5: 5, 8: 5, 10: 5}), groups)
    text = render(build_report(summary, [], by="local-port", top=1), "local-port", Output())
    assert "ESTABLISHED 45, FIN_WAIT2 5, CLOSE_WAIT 5, LISTEN 5" in text
    assert text.splitlines()[-1] == "... 1 more group with 1 sockets (--top 0 shows all)"


def test_listeners_accept_queue_column():
    from tcptune.core.socket_summary import ListenerInfo

    summary = Summary("t", normalize_counts({10: 1}), Counter({(TcpState.LISTEN, 8080): 1}))
    summary.listeners = [ListenerInfo("127.0.0.1", 8080, 1, 0)]
    lines = render(build_report(summary, [], by="local-port"), "local-port", Output()).splitlines()
    header = next(line for line in lines if line.startswith("LOCAL PORT"))
    assert "ACCEPT Q" in header and any(line.split()[:3] == ["8080", "1", "1/0"] for line in lines)
