"""The kernel's SNMP/MIB counters: /proc/net/snmp and /proc/net/netstat, and rates between samples.

Both files are pairs of lines, a header naming the counters of one group and a line of
values in the same order, each starting with the group name::

    TcpExt: SyncookiesSent SyncookiesRecv ...
    TcpExt: 0 0 ...

(net/ipv4/proc.c: snmp_seq_show_tcp_udp() and netstat_seq_show() print them so; a group
only grows at the end across kernel versions, and a name absent from one kernel is just
absent).  Values are unsigned counters, except Tcp MaxConn, which is printed signed (-1:
no limit, RFC 2012).  Counters are per network namespace.

Everything here is pure: text in, values out.  A rate is a delta over a window, never a
since-boot total.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tcptune.errors import ExitCode, TcptuneError

MAX_FIELDS = 4096  # TcpExt has ~130 on 6.18; a line with thousands is not this file
MAX_DIGITS = 20  # a u64 has 20 digits; more is not a counter (and int() of huge strings is slow)

Counters = dict[str, dict[str, int]]  # group ("Tcp", "TcpExt") -> name -> value


def parse_snmp_text(text: str, source: str) -> Counters:
    """Groups of counters from the text of /proc/net/snmp or /proc/net/netstat (or both joined).

    A malformed pair (unequal lengths, a group name that changes between the two lines, a
    value that is not an integer) is an error naming the line.
    """
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(lines) % 2:
        n, line = lines[-1]
        raise _bad(source, n, "a header line with no line of values after it")
    out: Counters = {}
    for (_, header), (vn, values) in zip(lines[::2], lines[1::2]):
        hgroup, hsep, hnames = header.partition(":")
        vgroup, vsep, vvals = values.partition(":")
        if not hsep or not vsep or hgroup != vgroup or not hgroup.strip():
            raise _bad(source, vn, f"values for {vgroup!r} follow the header of {hgroup!r}")
        names, nums = hnames.split(), vvals.split()
        if len(names) != len(nums) or len(names) > MAX_FIELDS:
            raise _bad(source, vn, f"{len(names)} names but {len(nums)} values")
        group = out.setdefault(hgroup.strip(), {})
        for name, num in zip(names, nums):
            group[name] = _int(num, source, vn, name)
    return out


def _int(word: str, source: str, lineno: int, name: str) -> int:
    digits = word[1:] if word.startswith("-") else word
    if not digits.isascii() or not digits.isdigit() or len(digits) > MAX_DIGITS:
        raise _bad(source, lineno, f"{name} = {word[:30]!r} is not an integer")
    return int(word)


def _bad(source: str, lineno: int, why: str) -> TcptuneError:
    return TcptuneError(f"{source}:{lineno}: {why}", ExitCode.BAD_INPUT, hint="not a /proc/net/snmp or netstat file")


def merge(*parts: Counters) -> Counters:
    """One view of several files (snmp holds Tcp, netstat TcpExt; no group is in both)."""
    out: Counters = {}
    for part in parts:
        for group, values in part.items():
            out.setdefault(group, {}).update(values)
    return out


@dataclass(frozen=True)
class Delta:
    """How much one counter moved over a window of ``seconds``."""

    group: str
    name: str
    before: int
    after: int
    seconds: float

    @property
    def change(self) -> int:
        return self.after - self.before

    @property
    def per_second(self) -> float | None:
        return self.change / self.seconds if self.seconds > 0 else None

    @property
    def where(self) -> str:
        """Where the number came from, for evidence: the file and the counter."""
        path = "/proc/net/snmp" if self.group in SNMP_GROUPS else "/proc/net/netstat"
        return f"{path} {self.group} {self.name}"


SNMP_GROUPS = frozenset({"Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"})


def delta(before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]], seconds: float):
    """A function ``d(group, name) -> Delta | None`` over two samples (None: absent from either).

    A counter that went down (the namespace was recreated, a u32 wrapped) gives a change of
    the after value alone, as nstat does, never a negative rate.
    """

    def d(group: str, name: str) -> Delta | None:
        a = before.get(group, {}).get(name)
        b = after.get(group, {}).get(name)
        if a is None or b is None:
            return None
        return Delta(group, name, a if b >= a else 0, b, seconds)

    return d
