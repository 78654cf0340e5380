"""plan_apply / plan_restore: statuses, whitespace-insensitivity, and the fixpoint property."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.core.plan import (
    CHANGE,
    MISSING,
    READ_ONLY,
    SAME,
    SKIP_REASONS,
    missing_required,
    normalize_value,
    plan_apply,
    plan_restore,
    skipped,
    summarize,
    values_equal,
)
from tcptune.core.profile import Profile, Setting
from tcptune.render.apply import plan_rows as render_plan_rows


def profile(values: dict[str, str], required: set[str] = frozenset()) -> Profile:
    return Profile(
        "t",
        "test",
        "built-in",
        {k: Setting(k, v, f"why {k}", "test", k in required) for k, v in values.items()},
    )


def test_statuses_in_profile_order():
    prof = profile(
        {"net.ipv4.tcp_syn_retries": "4", "net.ipv4.tcp_rmem": "4096 131072 6291456", "net.ipv4.tcp_new": "1"}
    )
    current = {"net.ipv4.tcp_syn_retries": "6", "net.ipv4.tcp_rmem": "4096\t131072\t6291456", "net.ipv4.tcp_new": None}
    plan = plan_apply(current, prof)
    assert [(c.key, c.status) for c in plan] == [
        ("net.ipv4.tcp_syn_retries", CHANGE),
        ("net.ipv4.tcp_rmem", SAME),  # /proc prints tabs, profiles spaces: same value
        ("net.ipv4.tcp_new", MISSING),
    ]
    assert plan[0].current == "6" and plan[0].new == "4" and plan[0].reason == "why net.ipv4.tcp_syn_retries"
    assert plan[1].current == "4096 131072 6291456"
    assert summarize(plan) == {CHANGE: 1, SAME: 1, MISSING: 1, READ_ONLY: 0}


def test_key_absent_from_current_is_missing_and_required_is_flagged():
    prof = profile({"net.ipv4.tcp_a": "1", "net.ipv4.tcp_b": "2"}, required={"net.ipv4.tcp_b"})
    plan = plan_apply({}, prof)
    assert [c.status for c in plan] == [MISSING, MISSING]
    assert [c.key for c in missing_required(plan)] == ["net.ipv4.tcp_b"]
    rows = render_plan_rows(plan)
    assert rows[0][1] == "(absent on this kernel)" and rows[0][3] == "skip: absent"
    assert rows[1][3] == "skip: absent (required!)"


def test_read_only_keys_are_skipped_only_when_they_differ():
    prof = profile({"net.core.rmem_max": "424242", "net.core.wmem_max": "212992"}, required={"net.core.wmem_max"})
    current = {"net.core.rmem_max": "212992", "net.core.wmem_max": "212992"}
    plan = plan_apply(current, prof, read_only={"net.core.rmem_max", "net.core.wmem_max"})
    assert [c.status for c in plan] == [READ_ONLY, SAME]
    assert missing_required(plan) == []  # a required read-only key that already matches is fine
    assert skipped(plan) == [{"key": "net.core.rmem_max", "reason": SKIP_REASONS[READ_ONLY]}]
    assert render_plan_rows(plan)[0][3] == "skip: read-only"


def test_value_accepted_by_audit_is_still_rewritten():
    # apply writes the canonical value even if audit's wider `accept` would pass the live one.
    prof = profile({"net.ipv4.tcp_fin_timeout": "30"})
    assert plan_apply({"net.ipv4.tcp_fin_timeout": "31"}, prof)[0].status == CHANGE


def test_plan_restore_skips_keys_that_did_not_exist():
    saved = {"net.ipv4.tcp_a": "1", "net.ipv4.tcp_b": None, "net.ipv4.tcp_c": "3 4"}
    plan = plan_restore({"net.ipv4.tcp_a": "2", "net.ipv4.tcp_c": "3\t4"}, saved)
    assert [(c.key, c.current, c.new, c.status) for c in plan] == [
        ("net.ipv4.tcp_a", "2", "1", CHANGE),
        ("net.ipv4.tcp_c", "3 4", "3 4", SAME),
    ]
    gone = plan_restore({}, {"net.ipv4.tcp_a": "1"})
    assert gone[0].status == MISSING


def test_values_equal():
    assert values_equal("1\t2 3", " 1 2  3\n")
    assert not values_equal("1 2", "1 2 3")
    assert values_equal(None, None) and not values_equal(None, "1")


_word = st.text(alphabet="0123456789abc", min_size=1, max_size=5)
_value = st.lists(_word, min_size=1, max_size=3).map(lambda ws: " ".join(ws))
_sep = st.sampled_from([" ", "\t", "  ", " \t "])
_keys = st.lists(st.sampled_from([f"net.ipv4.tcp_k{i}" for i in range(8)]), unique=True, min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(_keys, st.data())
def test_applying_the_plan_reaches_a_fixpoint(keys, data):
    wanted = {k: data.draw(_value) for k in keys}
    current: dict[str, str | None] = {}
    for k in keys:
        choice = data.draw(st.sampled_from(["same", "other", "absent"]))
        if choice == "same":
            sep = data.draw(_sep)
            current[k] = sep + sep.join(wanted[k].split()) + sep  # same words, other whitespace
        elif choice == "other":
            current[k] = data.draw(_value)
        else:
            current[k] = None
    plan = plan_apply(current, profile(wanted))
    for c in plan:
        if current[c.key] is None:
            assert c.status == MISSING
        elif normalize_value(current[c.key]) == normalize_value(wanted[c.key]):
            assert c.status == SAME
        else:
            assert c.status == CHANGE
    after = dict(current)
    for c in plan:
        if c.status == CHANGE:
            after[c.key] = c.new
    assert all(c.status in (SAME, MISSING) for c in plan_apply(after, profile(wanted)))
    # Rolling back with the before-values restores exactly what was there.
    saved = {c.key: c.current for c in plan if c.status == CHANGE}
    back = dict(after)
    for c in plan_restore(after, saved):
        if c.status == CHANGE:
            back[c.key] = c.new
    assert {k: back[k] and normalize_value(back[k]) for k in keys} == {
        k: current[k] and normalize_value(current[k]) for k in keys
    }


def test_table_reason_is_the_first_sentence_never_cut():
    from tcptune.render.apply import short_reason

    assert short_reason("Fail fast. The kernel stops at ...") == "Fail fast."
    assert short_reason("a; b") == "a;"
    long = "word " * 30
    assert short_reason(long) == long.strip()  # the table wraps it at words; nothing ends in "..."
    assert short_reason("") == ""


def test_the_plan_table_fits_the_terminal_and_wraps_reasons_at_words():
    from tcptune.render.apply import plan_text
    from tcptune.render.output import Output

    reason = "SYNs from unproven peers are retried fewer times so a flood of half-open connections drains sooner"
    prof = Profile(
        "t", "test", "built-in", {"net.ipv4.tcp_syn_retries": Setting("net.ipv4.tcp_syn_retries", "3", reason, "s")}
    )
    plan = plan_apply({"net.ipv4.tcp_syn_retries": "6"}, prof)
    for width in (80, 120, 200):
        text = plan_text(Output(width=width), plan, "plan:")
        assert max(len(line) for line in text.splitlines()) <= width, text
        assert "..." not in text
        assert all(word in text.split() for word in reason.split())  # wrapped between words, none split
    wide = plan_text(Output(width=200), plan, "plan:")
    assert reason in wide  # room enough: one line, not capped at 60 columns
    piped = plan_text(Output(width=None), plan, "plan:")
    assert "drains sooner" in piped and "..." not in piped


def test_plan_differences_names_each_key_whose_row_changed():
    from tcptune.core.plan import plan_differences

    prof = profile({"net.ipv4.tcp_syn_retries": "4", "net.ipv4.tcp_fin_timeout": "20", "net.ipv4.tcp_new": "1"})
    shown = plan_apply(
        {"net.ipv4.tcp_syn_retries": "6", "net.ipv4.tcp_fin_timeout": "60", "net.ipv4.tcp_new": None}, prof
    )
    assert plan_differences(shown, shown) == []
    now = plan_apply({"net.ipv4.tcp_syn_retries": "4", "net.ipv4.tcp_fin_timeout": "60", "net.ipv4.tcp_new": ""}, prof)
    assert plan_differences(shown, now) == [
        "net.ipv4.tcp_syn_retries is now 4, not 6",
        "net.ipv4.tcp_new is now (empty), not (absent)",
    ]


def test_changed_since_apply_lists_keys_that_are_neither_after_nor_before():
    from tcptune.core.plan import changed_since_apply

    keys = {
        "net.ipv4.tcp_syn_retries": {"before": "6", "after": "2"},  # still what apply wrote
        "net.ipv4.tcp_fin_timeout": {"before": "60", "after": "20"},  # never written (pending)
        "net.ipv4.tcp_rmem": {"before": "4096 131072 6291456", "after": "8192 262144 8388608"},
        "net.ipv4.ip_local_reserved_ports": {"before": "", "after": "40000"},
        "net.ipv4.tcp_gone": {"before": "1", "after": "2"},
    }
    current = {
        "net.ipv4.tcp_syn_retries": "2",
        "net.ipv4.tcp_fin_timeout": "60",
        "net.ipv4.tcp_rmem": "8192\t262144\t4194304",
        "net.ipv4.ip_local_reserved_ports": "40000-40010",
        "net.ipv4.tcp_gone": None,
    }
    assert changed_since_apply(current, keys) == [
        {
            "key": "net.ipv4.tcp_rmem",
            "before": [4096, 131072, 6291456],  # JSON: numbers as numbers, vectors as lists
            "after": [8192, 262144, 8388608],
            "current": [8192, 262144, 4194304],
        },
        {"key": "net.ipv4.ip_local_reserved_ports", "before": "", "after": 40000, "current": "40000-40010"},
    ]


def test_empty_values_show_as_empty_in_the_plan_table():
    prof = profile({"net.ipv4.ip_local_reserved_ports": "40000"})
    (row,) = render_plan_rows(plan_apply({"net.ipv4.ip_local_reserved_ports": ""}, prof))
    assert row[:4] == ["net.ipv4.ip_local_reserved_ports", "(empty)", "40000", "change"]
