"""Every command's --json validates against its documented shape (tests/data/json-schema).

The schemas are the contract: tcptune(8) documents them, scripts rely on them.  Each
command runs for real (on a copy of a saved root where it reads settings, in a private
namespace where it needs sockets) and its output is validated with jsonschema.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
from clirunner import run_cli
from nsutil import netns_argv

DATA = Path(__file__).resolve().parents[1] / "data"
SCHEMAS = DATA / "json-schema"
ROOT = DATA / "root-fresh-netns-6.18"


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validate(name: str, stdout: str):
    data = json.loads(stdout)
    jsonschema.validate(data, schema(name), cls=jsonschema.Draft202012Validator)
    return data


@pytest.fixture
def root(tmp_path):
    dst = tmp_path / "root"
    shutil.copytree(ROOT, dst)
    return dst


COMMANDS = {
    "show": lambda r, t: ["show", "--root", r],
    "explain": lambda r, t: ["explain", "tcp_rmem", "--root", r],
    "audit": lambda r, t: ["audit", "-p", "web-server", "--root", r],
    "profiles-list": lambda r, t: ["profiles", "list"],
    "profiles-show": lambda r, t: ["profiles", "show", "web-server"],
    "profiles-validate": lambda r, t: ["profiles", "validate", str(DATA.parent.parent / "profiles/web-server.toml")],
    "apply": lambda r, t: ["apply", "web-server", "--dry-run", "--root", r, "--state-dir", f"{t}/state"],
    "snapshots": lambda r, t: ["snapshots", "--state-dir", f"{t}/state"],
    "states": lambda r, t: ["states", "--root", r],
    "trace": lambda r, t: ["trace", "--read", str(DATA / "pcap/handshake-teardown-nc.pcap")],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_json_of_each_command_has_its_documented_shape(name, root, tmp_path):
    r = run_cli(*COMMANDS[name](str(root), str(tmp_path)), "--json")
    assert r.returncode in (0, 1), r.stderr
    validate(name, r.stdout)


def test_doctor_json_in_a_namespace_has_its_shape():
    import subprocess
    import sys

    r = subprocess.run(
        netns_argv([sys.executable, "-m", "tcptune", "doctor", "--interval", "0", "--json"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    validate("doctor", r.stdout)


def test_values_are_typed_numbers_lists_and_strings(root):
    params = {p["key"]: p for p in json.loads(run_cli("show", "--root", str(root), "--json").stdout)["parameters"]}
    assert isinstance(params["net.ipv4.tcp_syn_retries"]["value"], int)
    rmem = params["net.ipv4.tcp_rmem"]["value"]
    assert isinstance(rmem, list) and len(rmem) == 3 and all(isinstance(n, int) for n in rmem)
    assert isinstance(params["net.ipv4.tcp_congestion_control"]["value"], str)


def test_the_man_page_names_every_required_key(repo_root):
    man = re.sub(r"\\f[BIRP]|\\&|\\e", "", (repo_root / "man/tcptune.8").read_text()).replace("\\-", "-")
    missing = []
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        for key in json.loads(path.read_text()).get("required", []):
            if not re.search(rf"\b{re.escape(key)}\b", man):
                missing.append(f"{path.stem}: {key}")
    assert not missing, missing
