"""Change plans for `apply` and `rollback` (pure: values in, values out).

``plan_apply(current, profile)`` compares the live values with what a profile
writes and says, per key, whether apply will change it, leave it (already the
same) or skip it (the running kernel lacks the key).  ``plan_restore`` does the
same for a snapshot that rollback puts back.  Nothing here touches the machine;
the use cases (tcptune.ops.apply, tcptune.ops.rollback) carry the plan out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tcptune.values import json_value, normalize_value, values_equal

CHANGE = "change"
SAME = "same"
MISSING = "missing"
READ_ONLY = "read-only"  # present, differs, but this namespace may not write it
STATUSES = (CHANGE, SAME, MISSING, READ_ONLY)


@dataclass(frozen=True)
class Change:
    key: str
    current: str | None  # None: the running kernel lacks the key
    new: str
    reason: str
    status: str  # change | same | missing | read-only
    required: bool = False

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "current": json_value(self.current),
            "new": json_value(self.new),
            "reason": self.reason,
            "status": self.status,
            "required": self.required,
        }


def _status(current: str | None, new: str, read_only: bool = False) -> str:
    if current is None:
        return MISSING
    if values_equal(current, new):
        return SAME
    return READ_ONLY if read_only else CHANGE


def plan_apply(current: Mapping[str, str | None], profile, read_only: Iterable[str] = ()) -> list[Change]:
    """One Change per profile setting, in profile order.

    ``current`` maps each key to its live value or None when the kernel lacks it;
    a key absent from ``current`` counts as missing.  A key is "same" only when
    the live value equals the value apply would write word for word: apply
    writes the profile's canonical value even when audit would accept the live
    one, so that after apply every host running the profile reads identically.

    ``read_only`` names keys this process may not write here (a global key such as
    net.core.rmem_max shows mode 0444 inside a non-initial network namespace);
    one that differs is "read-only": skipped and reported like a missing key.
    """
    ro = set(read_only)
    out: list[Change] = []
    for key, setting in profile.settings.items():
        new = normalize_value(setting.value)
        cur = current.get(key)
        cur = None if cur is None else normalize_value(cur)
        status = _status(cur, new, key in ro)
        out.append(Change(key, cur, new, setting.reason, status, bool(getattr(setting, "required", False))))
    return out


def plan_restore(current: Mapping[str, str | None], saved: Mapping[str, str | None]) -> list[Change]:
    """The changes that put ``saved`` (a snapshot's before-values) back, in snapshot order.

    A saved value of None means the key did not exist when the snapshot was taken;
    there is nothing to restore for it.  A key that exists in the snapshot but not
    on this kernel any more is "missing".
    """
    out: list[Change] = []
    for key, old in saved.items():
        if old is None:
            continue
        old = normalize_value(old)
        cur = current.get(key)
        cur = None if cur is None else normalize_value(cur)
        out.append(Change(key, cur, old, "value before the snapshot's apply", _status(cur, old)))
    return out


def changed_since_apply(current: Mapping[str, str | None], keys: Mapping[str, Mapping[str, str | None]]) -> list[dict]:
    """[{key, before, after, current}] for each snapshot key whose live value is neither
    what the apply wrote ("after") nor what was there before it: someone changed it
    since, and rolling back overwrites that change.  Keys the kernel lacks now are
    left out (plan_restore reports them).  A pending snapshot's unwritten keys still
    hold "before" and are not listed.
    """
    out = []
    for key, entry in keys.items():
        cur = current.get(key)
        if cur is None:
            continue
        if not values_equal(cur, entry.get("after")) and not values_equal(cur, entry.get("before")):
            out.append(
                {
                    "key": key,
                    "before": json_value(entry.get("before")),
                    "after": json_value(entry.get("after")),
                    "current": json_value(cur),
                }
            )
    return out


def plan_differences(confirmed: Iterable[Change], now: Iterable[Change]) -> list[str]:
    """One line per key whose row differs between the plan a user confirmed and the
    plan re-made under the lock (empty: the same plan).  Another apply, or a hand
    edit, may have run while this one waited for the lock."""
    old = {c.key: c for c in confirmed}
    new = {c.key: c for c in now}

    def show(v: str | None) -> str:
        return "(absent)" if v is None else v or "(empty)"

    out = []
    for key in list(old) + [k for k in new if k not in old]:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if a is None or b is None:
            out.append(f"{key} {'appeared' if a is None else 'is gone'}")
        elif a.current != b.current:
            out.append(f"{key} is now {show(b.current)}, not {show(a.current)}")
        else:
            out.append(f"{key}: {a.status} {show(a.new)} became {b.status} {show(b.new)}")
    return out


def missing_required(plan: Iterable[Change]) -> list[Change]:
    """Required keys apply cannot set: absent on this kernel, or read-only here."""
    return [c for c in plan if c.status in (MISSING, READ_ONLY) and c.required]


SKIP_REASONS = {
    MISSING: "not present on this kernel",
    READ_ONLY: "read-only in this network namespace (a global key: set it in the host's namespace)",
}


def skipped(plan: Iterable[Change]) -> list[dict]:
    """[{key, reason}] for every key apply leaves alone although the profile wants another value."""
    return [{"key": c.key, "reason": SKIP_REASONS[c.status]} for c in plan if c.status in SKIP_REASONS]


def summarize(plan: Iterable[Change]) -> dict[str, int]:
    counts = {s: 0 for s in STATUSES}
    for c in plan:
        counts[c.status] += 1
    return counts
