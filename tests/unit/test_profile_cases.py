"""Profile parser cases as data: tests/data/profile/<case>.toml and <case>.expected (see its SOURCE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcptune.core.profile_parse import parse_profile
from tcptune.errors import ExitCode, TcptuneError
from tcptune.kernel.kb import load_kb

CASES = sorted((Path(__file__).resolve().parents[1] / "data" / "profile").glob("*.toml"))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_profile_case(case):
    expected = case.with_suffix(".expected").read_text(encoding="utf-8").rstrip("\n")
    try:
        raw = parse_profile(case.read_text(encoding="utf-8"), case.stem, "CASE", load_kb())
    except TcptuneError as exc:
        assert exc.exit_code == ExitCode.BAD_INPUT
        got = str(exc)
    else:
        got = f"ok {len(raw.settings)}"
    assert got == expected


def test_there_are_cases():
    assert len(CASES) >= 10
