"""`profiles validate` ok must mean the kernel takes the value (issue 9 #13).

The kernel is the oracle: every case is a profile value as a user might write it; the
test parses it the way `profiles validate` does and, in a private network namespace,
writes what apply would write.  A value tcptune accepts must be accepted by the kernel and
read back as written.  A value tcptune refuses is either refused by the kernel too, or
listed in KERNEL_TAKES_BUT_READS_BACK_OTHERWISE (010 is octal 8 to the kernel: taking it
would make apply's read-back fail).
"""

from __future__ import annotations

import errno
import os

import pytest
from nsutil import run_in_netns

from tcptune.core.profile_parse import parse_profile
from tcptune.errors import TcptuneError
from tcptune.kernel.kb import load_kb

# (key, TOML value as written in the profile)
CASES = [
    ("tcp_syn_retries", "3"),
    ("tcp_syn_retries", '"3"'),
    ("tcp_syn_retries", '" 3\\n"'),
    ("tcp_syn_retries", '"1_0"'),
    ("tcp_syn_retries", '"+3"'),
    ("tcp_syn_retries", '"\u0663"'),
    ("tcp_syn_retries", '"010"'),
    ("tcp_syn_retries", '"0x5"'),
    ("tcp_syn_retries", "128"),
    ("tcp_syn_retries", "0"),
    ("tcp_fin_timeout", "-1"),
    ("tcp_fin_timeout", "2147483647"),
    ("tcp_max_syn_backlog", "-5"),
    ("tcp_max_syn_backlog", "2147483648"),
    ("tcp_max_syn_backlog", "-2147483649"),
    ("tcp_max_syn_backlog", '"00000000000000000000003"'),
    ("tcp_notsent_lowat", "4294967295"),
    ("tcp_notsent_lowat", "4294967296"),
    ("tcp_adv_win_scale", "-31"),
    ("tcp_adv_win_scale", "-32"),
    ("tcp_rmem", "[4096, 131072, 6291456]"),
    ("tcp_rmem", '"4096\\t131072\\n6291456"'),
    ("tcp_rmem", "[4096, 131072]"),
    ("tcp_rmem", "[-1, 2, 3]"),
    ("tcp_rmem", '"4096,131072,6291456"'),
    ("tcp_congestion_control", '"reno"'),
    ("tcp_congestion_control", '"reno\\n"'),
    ("tcp_congestion_control", '"reno\\r"'),
    ("tcp_congestion_control", '"reno\u2028"'),
    ("tcp_congestion_control", '"reno cubic"'),
    ("tcp_congestion_control", '["reno", "cubic"]'),
    ("tcp_congestion_control", '"' + "r" * 16 + '"'),
    ("ip_local_reserved_ports", '"1000,2000-2010"'),
    ("ip_local_reserved_ports", '"1000\\n2000"'),
    ("ip_local_reserved_ports", '"1000 2000"'),
    ("ip_local_reserved_ports", '"1000, 2000"'),
    ("ip_local_reserved_ports", '"70000"'),
    ("ip_local_reserved_ports", '"2000-1000"'),
    ("ip_local_reserved_ports", '"65535"'),
    ("ip_local_port_range", "[1, 65535]"),
    ("ip_local_port_range", "[1023, 65535]"),
    ("ip_local_port_range", "[1024, 65535]"),
    ("ip_local_port_range", "[1024, 65536]"),
    ("ip_local_port_range", "[2000, 1999]"),
    ("tcp_ecn", "5"),
    ("tcp_sack", "2"),
]
KERNEL_TAKES_BUT_READS_BACK_OTHERWISE = {
    ("tcp_syn_retries", '"010"'),  # octal: reads back 8
    ("tcp_syn_retries", '"0x5"'),  # hex: reads back 5
    ("tcp_rmem", "[4096, 131072]"),  # the third field keeps its old value
    ("tcp_congestion_control", '"reno\\n"'),  # refused by tcptune: a newline is not part of a name
    ("tcp_congestion_control", '"reno\u2028"'),  # tcptune writes it normalised; refused all the same
    ("ip_local_reserved_ports", '"1000\\n2000"'),  # the kernel splits on the newline; tcptune would write a space
}


def _validate(key: str, toml_value: str) -> str | None:
    """What apply would write, or None when `profiles validate` refuses the value."""
    text = f'[settings]\n"net.ipv4.{key}" = {toml_value}\n'
    try:
        raw = parse_profile(text, "case", "case.toml", load_kb())
    except TcptuneError as exc:
        assert exc.message.startswith("case.toml:2:"), exc.message
        return None
    return raw.settings[f"net.ipv4.{key}"].value


def _write_all(cases: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """In the namespace: write each value, report ok (and what it reads back) or the errno."""
    out = []
    for key, value in cases:
        path = f"/proc/sys/net/ipv4/{key}"
        with open(path) as fh:
            old = fh.read()
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
            with open(path) as fh:
                out.append((key, value, "ok " + " ".join(fh.read().split())))
        except OSError as exc:
            out.append((key, value, errno.errorcode[exc.errno]))
        with open(path, "w") as fh:
            fh.write(old)
    return out


def _kernel_value(key: str, toml_value: str) -> str:
    """The string a user meant, as the kernel would receive it if written unchanged."""
    import tomllib

    raw = tomllib.loads(f"v = {toml_value}")["v"]
    return " ".join(map(str, raw)) if isinstance(raw, list) else str(raw)


def test_validate_ok_means_the_kernel_takes_it_and_reads_it_back():
    accepted = {(k, v): _validate(k, v) for k, v in CASES}
    writes = [(k, w) for (k, _), w in accepted.items() if w is not None]
    raw_writes = [(k, _kernel_value(k, v)) for k, v in CASES]
    # reno is always built in and allowed in a child namespace; cubic may not be.
    results = run_in_netns(_write_all, writes + raw_writes)
    kernel_ok = {(k, v): r for k, v, r in results}
    problems = []
    for (key, toml_value), written in accepted.items():
        raw = kernel_ok[(key, _kernel_value(key, toml_value))]
        if written is not None:
            got = kernel_ok[(key, written)]
            if got != f"ok {written}":
                problems.append(f"{key} = {toml_value}: validate ok, wrote {written!r}, kernel says {got}")
        elif raw.startswith("ok") and (key, toml_value) not in KERNEL_TAKES_BUT_READS_BACK_OTHERWISE:
            problems.append(f"{key} = {toml_value}: validate refuses it, but the kernel takes it ({raw})")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("key,toml_value", sorted(KERNEL_TAKES_BUT_READS_BACK_OTHERWISE))
def test_the_listed_exceptions_are_refused_by_validate(key, toml_value):
    assert _validate(key, toml_value) is None
