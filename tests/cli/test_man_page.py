"""man/tcptune.8 must document every command and every option the CLI has."""

from __future__ import annotations

import re

import typer.main

from tcptune.cli import app


def _plain(roff: str) -> str:
    text = re.sub(r"\\f[BIRP]|\\f\(..|\\&|\\e", "", roff)
    return text.replace("\\-", "-")


def _walk(cmd, path: tuple[str, ...] = ()):
    # typer >= 0.26 vendors click (typer._click), so walk by duck typing, not isinstance
    yield path, cmd
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, path + (name,))


def test_every_command_and_option_is_in_the_man_page(repo_root):
    man = _plain((repo_root / "man/tcptune.8").read_text())
    missing = []
    for path, cmd in _walk(typer.main.get_command(app)):
        if path and not re.search(r"\b" + r"\s+".join(map(re.escape, path)) + r"\b", man):
            missing.append("command: tcptune " + " ".join(path))
        for param in cmd.params:
            for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
                if opt.startswith("--") and opt not in man:
                    missing.append(f"option {opt} of tcptune {' '.join(path)}".rstrip())
    assert not missing, "not in man/tcptune.8:\n" + "\n".join(missing)


def test_profile_format_page_exists(repo_root):
    page = (repo_root / "man/tcptune-profile.5").read_text()
    for word in ("extends", "accept", "reason", "source", "kernel_defaults", "value"):
        assert word in page
