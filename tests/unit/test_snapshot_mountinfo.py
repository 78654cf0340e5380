"""The snapshot file's validation and the mountinfo parser (both pure), with data files and hypothesis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.core.mountinfo import find_mount, parse_cap_eff, parse_mountinfo
from tcptune.core.snapshot import Snapshot, SnapshotCorrupt, dump_snapshot, parse_snapshot

DATA = Path(__file__).resolve().parent.parent / "data/mountinfo"
SID = "20260101T000000Z-abcdef"
PATH = Path(f"/state/snapshots/{SID}.json")


def good() -> dict:
    snap = Snapshot(
        SID,
        1767225600.5,
        "p",
        "built-in",
        {"kind": "live", "root": "/", "netns_inode": 4026531840},
        "6.18.0",
        {"net.ipv4.tcp_syn_retries": {"before": "6", "after": "3"}},
    )
    snap.event("created", "1 keys to change", 1767225600.5)
    return json.loads(dump_snapshot(snap))


@pytest.mark.parametrize("case", sorted(p.stem for p in DATA.glob("*.txt")))
def test_mountinfo_cases(case):
    got = parse_mountinfo((DATA / f"{case}.txt").read_text())
    want = json.loads((DATA / f"{case}.json").read_text())
    assert [
        {
            "mount_point": m.mount_point,
            "options": list(m.options),
            "super_options": list(m.super_options),
            "fstype": m.fstype,
        }
        for m in got
    ] == want


def test_find_mount_takes_the_longest_prefix_and_the_last_mounted():
    text = (DATA / "plain.txt").read_text() + "41 36 0:31 / /proc/sys rw - proc proc rw\n"
    assert find_mount(text, "/proc/sys/net/ipv4/x").read_only is False  # mounted on top, read-write
    assert find_mount((DATA / "plain.txt").read_text(), "/proc/sys/net").read_only is True
    assert find_mount((DATA / "escapes.txt").read_text(), "/mnt/a b/c").mount_point == "/mnt/a b"


def test_cap_eff():
    assert parse_cap_eff("Name:\tx\nCapEff:\t0000000000001000\n") == 1 << 12
    assert parse_cap_eff("CapEff:\tzz\n") is None and parse_cap_eff("") is None


def test_a_good_snapshot_round_trips():
    raw = json.dumps(good()).encode()
    assert parse_snapshot(raw, PATH).to_json() == good()


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(created=float("nan")),
        lambda d: d.update(created=1e300),
        lambda d: d.update(created=-5),
        lambda d: d.update(created=True),
        lambda d: d["keys"]["net.ipv4.tcp_syn_retries"].update(before="6\ud800"),
        lambda d: d.update(profile="p\udfff"),
        lambda d: d["history"][0].update(time=float("inf")),
        lambda d: d["history"].append("not an object"),
        lambda d: d.update(skipped=[{"key": 1, "reason": "r"}]),
        lambda d: d["target"].update(kind="elsewhere"),
        lambda d: d["target"].update(netns_inode="1"),
        lambda d: d.update(keys={"kernel.panic": {"before": "1", "after": "0"}}),
        lambda d: d["keys"]["net.ipv4.tcp_syn_retries"].update(after="1\n2"),
        lambda d: d["keys"]["net.ipv4.tcp_syn_retries"].update(before="1 " * (1 << 19)),  # issue 9 #7: 1 MiB
    ],
)
def test_every_field_is_checked_before_rollback_trusts_it(edit):
    data = good()
    edit(data)
    raw = json.dumps(data).encode()  # Python writes NaN/Infinity: what a hostile edit can hold
    with pytest.raises(SnapshotCorrupt):
        parse_snapshot(raw, PATH)


def test_deep_nesting_and_huge_integers_are_corrupt_not_a_crash():
    for raw in (b"[" * 5000 + b"]" * 5000, b'{"a": ' * 3000 + b"1" + b"}" * 3000, b'{"created": ' + b"9" * 5000 + b"}"):
        with pytest.raises(SnapshotCorrupt):
            parse_snapshot(raw, PATH)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.from_regex(rb"[\[\]{}\"\\:,0-9a-zNI.e+\- ]{0,300}", fullmatch=True))
def test_any_bytes_are_a_snapshot_or_corrupt(raw):
    try:
        parse_snapshot(raw, PATH)
    except SnapshotCorrupt:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_mutation_of_a_good_snapshot_is_a_snapshot_or_corrupt(data):
    raw = bytearray(json.dumps(good()).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        parse_snapshot(bytes(raw), PATH)
    except SnapshotCorrupt:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=60))
def test_mountinfo_never_raises(line):
    parse_mountinfo(line + " - x\n" + line)
