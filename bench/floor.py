"""The floor for `tcptune states`: a bare Python process that sends the dump request(s) and
reads and discards every reply.  It imports only socket and struct, so its time is the
interpreter's start-up plus the kernel's dump, the least any Python tool could take.

    python3 bench/floor.py          # one TCPDIAG_GETSOCK request, AF_UNSPEC: both families in one walk
    python3 bench/floor.py --ss     # one SOCK_DIAG_BY_FAMILY request per family, as `ss -tan` sends

The requests are struct inet_diag_req / inet_diag_req_v2 (include/uapi/linux/inet_diag.h),
all eleven states (idiag_states 0xffe).
"""

import socket
import struct
import sys

ALL_STATES = 0xFFE
NLM_F_REQUEST_DUMP = 0x301


def request(family: int, seq: int) -> bytes:
    if family == socket.AF_UNSPEC:  # TCPDIAG_GETSOCK (18)
        body = bytes(52) + struct.pack("=II", ALL_STATES, 0)
        mtype = 18
    else:  # SOCK_DIAG_BY_FAMILY (20)
        body = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, ALL_STATES) + bytes(48)
        mtype = 20
    return struct.pack("=IHHII", 16 + len(body), mtype, NLM_F_REQUEST_DUMP, seq, 0) + body


def discard_dump(families=(socket.AF_UNSPEC,)) -> int:
    """Bytes read; the dump of each request ends with NLMSG_DONE (or NLMSG_ERROR)."""
    total = 0
    buf = bytearray(1 << 17)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as sock:  # NETLINK_SOCK_DIAG
        for seq, family in enumerate(families, 1):
            sock.send(request(family, seq))
            while True:
                n = sock.recv_into(buf)
                total += n
                # NLMSG_DONE (type 3, 20 bytes) is the last message of the last buffer.
                if n >= 20 and buf[n - 16] == 3 and buf[n - 15] == 0 and buf[n - 20] == 20:
                    break
                if n < 20 or buf[4] == 2:  # NLMSG_ERROR
                    break
    return total


if __name__ == "__main__":
    discard_dump((socket.AF_INET, socket.AF_INET6) if "--ss" in sys.argv[1:] else (socket.AF_UNSPEC,))
