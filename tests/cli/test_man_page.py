"""man/tcptune.8 documents every command, and each option in its own command's section.

A command's section is the `.SS "tcptune CMD ..."` heading (probe sub-commands share one
heading, `probe syn|synack|...`) down to the next heading.  An option may also live in a
shared section its heading names: [source options] -> SOURCE OPTIONS, [state options] ->
the section that defines them; --help, --version and --traceback are GLOBAL OPTIONS.
"""

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


def sections(roff: str) -> list[tuple[str, str]]:
    """(heading, body) of every .SH and .SS, in page order, as plain text."""
    out: list[tuple[str, str]] = []
    for line in roff.splitlines():
        m = re.match(r'\.S[HS]\s+"?(.*?)"?\s*$', line)
        if m:
            out.append((_plain(m.group(1)), ""))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + _plain(line) + "\n")
    return out


def is_heading_of(heading: str, path: tuple[str, ...]) -> bool:
    words = heading.split()
    if not path or words[:1] != ["tcptune"] or len(words) <= len(path):
        return False
    return all(p in w.split("|") for p, w in zip(path, words[1:]))


def own_text(secs: list[tuple[str, str]], path: tuple[str, ...]) -> str:
    own = [(h, b) for h, b in secs if is_heading_of(h, path)]
    text = "".join(h + "\n" + b for h, b in own)
    headings = " ".join(h for h, _ in own)
    shared = {h: b for h, b in secs}
    text += shared.get("GLOBAL OPTIONS", "")
    if "[source options]" in headings:
        text += shared.get("SOURCE OPTIONS", "")
    if "[state options]" in headings:
        text += "".join(b for h, b in secs if "state options" in b)
    return text


def test_every_command_and_option_is_in_its_own_section(repo_root):
    secs = sections((repo_root / "man/tcptune.8").read_text())
    missing = []
    for path, cmd in _walk(typer.main.get_command(app)):
        if not path or hasattr(cmd, "commands"):
            continue  # groups (tcptune, tcptune profiles) have no options of their own
        text = own_text(secs, path)
        if not any(is_heading_of(h, path) for h, _ in secs):
            missing.append(f"command: tcptune {' '.join(path)} has no section")
            continue
        for param in cmd.params:
            for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
                if opt.startswith("--") and not re.search(re.escape(opt) + r"(?![\w-])", text):
                    missing.append(f"option {opt} of tcptune {' '.join(path)}")
    assert not missing, "not in their own section of man/tcptune.8:\n" + "\n".join(missing)


def test_the_section_finder_does_not_accept_a_neighbour(repo_root):
    secs = sections((repo_root / "man/tcptune.8").read_text())
    # --persist-root belongs to audit; show's section must not count it.
    assert "--persist-root" not in own_text(secs, ("show",))
    assert "--persist-root" in own_text(secs, ("audit",))
    assert is_heading_of("tcptune probe syn|synack|fin-timeout [--json]", ("probe", "synack"))
    assert not is_heading_of("tcptune profiles show NAME", ("profiles", "list"))


def test_profile_format_page_exists(repo_root):
    page = (repo_root / "man/tcptune-profile.5").read_text()
    for word in ("extends", "accept", "reason", "source", "kernel_defaults", "value"):
        assert word in page
