"""Would the kernel take this value?  Its own parsers, modelled exactly (pure).

`profiles validate` ok must mean the write succeeds.  What apply writes is the value
whitespace-normalised (tcptune.values), so these checks see single-space-separated fields.

Integers (proc_dointvec, proc_douintvec, proc_dointvec_minmax, proc_doulongvec_minmax and
the _jiffies variants in kernel/sysctl.c) go through proc_get_long(): an optional '-', then
a digit, then strtoul_lenient() with base 0, at most 21 characters, and the next character
must be a space, tab or newline.  So the kernel refuses "+3", "1_0" and non-ASCII digits
(EINVAL), and reads "010" as octal 8 and "0x5" as hex: tcptune takes plain decimal only,
the one spelling whose read-back equals what was written.  A key without a measured range
in params.toml still cannot pass the C type: a 32-bit int for proc_dointvec.

Strings: proc_dostring() keeps everything up to the first newline or NUL; the congestion
control handler then looks the whole name up (tcp_set_default_congestion_control(),
net/ipv4/tcp_cong.c), so a name with a space, CR or U+2028 is ENOENT.  Port lists go
through proc_do_large_bitmap(): "a,b-c" with commas only (a space is EINVAL), each port
0..65535, a range not descending.

Measured on 6.18 by writing each case into a private network namespace: EINVAL for
"1_0", "+3", "\u0663", "3\\r", "00000000000000000000003", "1000 2000" (reserved ports),
"1023 65535" (port range); ENOENT for "cubic reno", "cubic\\r", "cubic\\u2028".
"""

from __future__ import annotations

from tcptune.kernel.kb import Param

INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1
MAX_INT_CHARS = 20  # proc_get_long() reads TMPBUFLEN - 1 = 21 characters; 21 are refused
# A sysctl write is cut at PAGE_SIZE - 1 bytes (__do_proc_dointvec(), proc_sys_call_handler()).
MAX_VALUE_CHARS = 4095
NAME_MAX = 15  # TCP_CA_NAME_MAX and IFNAMSIZ are 16 with the NUL
# net/ipv4/sysctl_net_ipv4.c ipv4_local_port_range(): range[0] < ip_unprivileged_port_start is EINVAL.
UNPRIVILEGED_PORT_START = "net.ipv4.ip_unprivileged_port_start"
DEFAULT_UNPRIVILEGED_PORT_START = 1024


def integer_error(token: str) -> str | None:
    """Why proc_get_long() would refuse ``token`` (or read it as another number); None when fine."""
    digits = token[1:] if token.startswith("-") else token
    if digits.isascii() and digits.isdigit():
        if len(digits) > MAX_INT_CHARS:
            return f"has more than {MAX_INT_CHARS} digits"
        if len(digits) > 1 and digits[0] == "0":
            return "has a leading 0, which the kernel reads as octal (010 is 8)"
        if token == "-0":
            return "is -0, which the kernel takes and reads back as 0; write 0"
        return None
    if token.startswith("+"):
        return "has a '+' sign, which the kernel refuses"
    if "_" in digits:
        return "has a '_' digit separator, which the kernel refuses"
    if any(c.isdigit() and not c.isascii() for c in digits):
        return "has non-ASCII digits; the kernel reads only 0-9"
    return "is not an integer"


def type_range(param: Param) -> tuple[int, int]:
    """[min, max] the kernel accepts: the measured range, else the C int of proc_dointvec."""
    lo = INT_MIN if param.min is None else param.min
    hi = INT_MAX if param.max is None else param.max
    return lo, hi


def _name_error(name: str) -> str | None:
    if len(name) > NAME_MAX:
        return f"{name[:20]!r} is longer than {NAME_MAX} characters"
    if not all(c.isascii() and c.isprintable() and c != " " for c in name):
        return f"{name!r} is not a plain name"
    return None


def _port_list_error(value: str) -> str | None:
    """proc_do_large_bitmap(): comma-separated ports and ranges, nothing else."""
    for part in value.split(","):
        if part == "" and value.endswith(","):
            continue  # the kernel takes one trailing comma ("1000," reads back "1000")
        lo, dash, hi = part.partition("-")
        for port in (lo, hi) if dash else (lo,):
            if not (port.isascii() and port.isdigit()) or len(port) > 5 or int(port) > 65535:
                return f"{part!r} is not a port or a range like 1000-2000 (ports 0-65535, commas only)"
        if dash and int(lo) > int(hi):
            return f"range {part!r} runs backwards"
    return None


def string_error(raw: str, param: Param) -> str | None:
    """Why the kernel would refuse the string ``raw`` for ``param`` (type string)."""
    bad = next((c for c in raw if not (c.isprintable() or c == " ")), None)
    if bad is not None:
        return f"contains {_char_name(bad)}; the kernel takes the text as written"
    value = raw.strip()
    if param.unit == "name":
        return _name_error(value)
    if param.unit == "names":
        return next((e for e in map(_name_error, value.split(" ")) if e), None)
    if param.unit == "port list":
        return _port_list_error(value)
    return None


def _char_name(c: str) -> str:
    import unicodedata

    named = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}
    return named.get(c) or f"U+{ord(c):04X} ({unicodedata.name(c, 'a control character').lower()})"


def port_range_error(first: int, settings: dict[str, str]) -> str | None:
    """ip_local_port_range's low end against ip_unprivileged_port_start (the profile's, else 1024)."""
    start = settings.get(UNPRIVILEGED_PORT_START)
    floor = int(start) if start is not None and integer_error(start) is None else DEFAULT_UNPRIVILEGED_PORT_START
    if first < floor:
        return (
            f"the first port {first} is below ip_unprivileged_port_start ({floor}); "
            "the kernel refuses it (EINVAL, ipv4_local_port_range())"
        )
    return None
