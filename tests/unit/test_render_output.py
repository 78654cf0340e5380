"""The one output object: terminal facts, and tables that fit the width at word boundaries."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.render.output import Output, fit_columns, visible_len


class _Tty(io.StringIO):
    encoding = "utf-8"

    def isatty(self):
        return True


def test_detect_reads_columns_no_color_and_encoding():
    out = Output.detect(_Tty(), {"COLUMNS": "80"})
    assert (out.tty, out.width, out.color, out.unicode) == (True, 80, True, True)
    assert Output.detect(_Tty(), {"COLUMNS": "80", "NO_COLOR": "1"}).color is False
    piped = Output.detect(io.StringIO(), {"COLUMNS": "80"})
    assert (piped.tty, piped.width, piped.color) == (False, None, False)


def test_a_long_reason_column_wraps_at_words_to_fit_80_columns():
    reason = "SYNs from unproven peers are retried five times one second apart before the kernel gives up"
    text = Output(width=80).table(["key", "value", "reason"], [["net.ipv4.tcp_syn_retries", "2", reason]], flexible=[2])
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80, text
    words = " ".join(line[lines[0].index("reason") :].strip() for line in lines[2:]).split()
    assert words == reason.split()  # nothing cut, no word split


def test_piped_tables_are_never_wrapped():
    reason = "x " * 200
    text = Output(width=None).table(["k", "reason"], [["a", reason]], flexible=[1])
    assert len(text.splitlines()) == 3


def test_colour_takes_no_columns():
    assert visible_len(Output(color=True).paint("drift")) == len("drift")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet="ab ", min_size=0, max_size=60), min_size=3, max_size=3),
    st.integers(min_value=20, max_value=200),
)
def test_fitted_widths_never_exceed_the_terminal_unless_words_forbid(cells, width):
    widths = fit_columns(["a", "b", "c"], [cells], width, flexible=[1, 2], caps={})
    natural = [max(len(c), 1) for c in cells]
    used = [w if w is not None else n for w, n in zip(widths, natural)]
    longest = [max([len(w) for w in c.split()] + [8, 1]) for c in cells]
    if sum(used) + 4 > width:  # could not fit: every flexible column is at its floor
        assert all(used[i] <= max(longest[i], 8) for i in (1, 2))
