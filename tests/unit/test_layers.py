"""The layering in shared/DESIGN.md, enforced by walking every import (including lazy ones).

The layer of a module is its folder:
core (tcptune/core, tcptune/kernel, errors.py, values.py)
             -> pure: no typer, scapy, psutil, tabulate; nothing of host, probe, ops, render or cli
host/        -> may use psutil; no typer, scapy, probe, ops, render or cli
probe/       -> scapy only in tcptune.probe.capture; no typer, ops, render or cli
ops/         -> use cases: core, host, probe; no typer, tabulate, render or cli
render/      -> may use tabulate and read ops' result types; no typer, scapy, psutil, host, probe or cli
cli/         -> the only place typer is imported
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "tcptune"


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    mod = module_name(path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".")[: len(mod.split(".")) - node.level + (1 if path.name == "__init__.py" else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return out


def layer(mod: str) -> str:
    if mod.startswith("tcptune.cli") or mod == "tcptune.__main__":
        return "cli"
    for folder in ("probe", "host", "ops", "render"):
        if mod == f"tcptune.{folder}" or mod.startswith(f"tcptune.{folder}."):
            return folder
    return "core"


_UI = ("typer", "click")
FORBIDDEN = {
    "core": _UI
    + ("scapy", "psutil", "tabulate", "tcptune.host", "tcptune.probe", "tcptune.ops", "tcptune.render", "tcptune.cli"),
    "host": _UI + ("scapy", "tcptune.probe", "tcptune.ops", "tcptune.render", "tcptune.cli"),
    "probe": _UI + ("tcptune.ops", "tcptune.render", "tcptune.cli"),
    "ops": _UI + ("tabulate", "tcptune.render", "tcptune.cli"),
    "render": _UI + ("scapy", "psutil", "tcptune.host", "tcptune.probe", "tcptune.cli"),
    "cli": (),
}


def _hits(imported: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(i for i in imported for b in banned if i == b or i.startswith(b + "."))


def test_every_module_respects_its_layer():
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        mod = module_name(path)
        imported = imports_of(path)
        lyr = layer(mod)
        bad = _hits(imported, FORBIDDEN[lyr])
        if lyr == "probe" and mod != "tcptune.probe.capture":
            bad += _hits(imported, ("scapy",))
        if bad:
            problems.append(f"{mod} ({lyr}) imports {', '.join(sorted(set(bad)))}")
    assert not problems, "\n".join(problems)


def test_audit_does_not_load_scapy_psutil_or_tabulate(data_dir):
    # ctypes too: only --netns (setns) and the probes need it, and ctypes.util alone costs
    # ~8 ms of every start.
    root = data_dir / "root-fresh-netns-6.18"
    code = (
        "import sys\nfrom tcptune.cli import main\n"
        f"try:\n    main(['audit', '--root', {str(root)!r}, '--json'])\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(repr(sorted(m for m in ('scapy', 'psutil', 'tabulate', 'ctypes.util') if m in sys.modules)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stderr.strip().endswith("[]"), r.stderr
