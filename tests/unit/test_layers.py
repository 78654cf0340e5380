"""The layering in shared/DESIGN.md, enforced by walking every import (including lazy ones).

core (pure)  -> no typer, scapy, psutil, tabulate; nothing of host, probe, render or cli
host layer   -> may use psutil; no typer, scapy, probe or cli
render       -> may use tabulate; no typer, scapy, psutil, host, probe or cli
probe        -> scapy only in tcptune.probe.capture; no typer or cli
cli          -> the only place typer is imported
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "tcptune"
HOST_LAYER = {"tcptune.host", "tcptune.netns", "tcptune.sockdiag", "tcptune.transaction", "tcptune.persist", "tcptune.fsio"}


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
    if mod.startswith("tcptune.probe"):
        return "probe"
    if mod in HOST_LAYER:
        return "host"
    if mod == "tcptune.render":
        return "render"
    return "core"


FORBIDDEN = {
    "core": ("typer", "click", "scapy", "psutil", "tabulate", "tcptune.host", "tcptune.netns", "tcptune.sockdiag",
             "tcptune.transaction", "tcptune.persist", "tcptune.probe", "tcptune.render", "tcptune.cli"),
    "host": ("typer", "click", "scapy", "tcptune.probe", "tcptune.cli", "tcptune.render"),
    "render": ("typer", "click", "scapy", "psutil", "tcptune.host", "tcptune.probe", "tcptune.cli"),
    "probe": ("typer", "click", "tcptune.cli"),
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
