"""Both ends close at once and the FINs cross on the wire: each socket drops whatever reaches
it (a classic BPF filter) while both shutdown(SHUT_WR), then the filters come off and the
retransmitted FINs are taken in; both ends finish in TIME_WAIT."""

import ctypes
import socket
import struct
import sys
import time

port = int(sys.argv[1])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(8)
c = socket.create_connection(("127.0.0.1", port))
a, _ = srv.accept()
time.sleep(0.2)
drop_all = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))  # BPF_RET | BPF_K, 0
for s in (c, a):
    s.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", 1, ctypes.addressof(drop_all)))  # SO_ATTACH_FILTER
c.shutdown(socket.SHUT_WR)
a.shutdown(socket.SHUT_WR)
for s in (c, a):
    s.setsockopt(socket.SOL_SOCKET, 27, 0)  # SO_DETACH_FILTER
time.sleep(1.0)
