"""/proc/net/tcp{,6} parser cases as data: tests/data/proc_net_tcp/<case>.tcp{,6} + <case>.<ext>.json.

Each case file is parsed and compared with its expected rows and warnings (see the SOURCE.md
there).  TCPTUNE_REGEN=1 writes the expected file of a case that has none or changed.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tcptune.core.procfs import parse_proc_net_tcp

CASES = Path(__file__).resolve().parents[1] / "data" / "proc_net_tcp"
FILES = sorted(p for p in CASES.iterdir() if p.suffix in (".tcp", ".tcp6"))


def parsed(path: Path) -> dict:
    family = socket.AF_INET6 if path.suffix == ".tcp6" else socket.AF_INET
    rows, warnings = parse_proc_net_tcp(path.read_text(), family, source=path.name)
    return {
        "rows": [r._asdict() for r in rows],
        "warnings": [{"line": w.line, "reason": w.reason} for w in warnings],
    }


def test_there_are_cases():
    assert len(FILES) >= 8 and (CASES / "SOURCE.md").exists()


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_case(path):
    expected_file = path.with_name(path.name + ".json")
    got = parsed(path)
    if os.environ.get("TCPTUNE_REGEN") == "1":
        expected_file.write_text(json.dumps(got, indent=1) + "\n")
    assert expected_file.exists(), f"no {expected_file.name}: run with TCPTUNE_REGEN=1 and review it"
    assert got == json.loads(expected_file.read_text())
