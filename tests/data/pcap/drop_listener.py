"""A listener whose socket filter drops every packet, and one connect() to it that times out."""

import socket
import struct
import sys

port = int(sys.argv[1])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(8)
drop_all = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, 0: keep no bytes
prog = struct.pack("HL", 1, 0)
import ctypes  # noqa: E402

buf = ctypes.create_string_buffer(drop_all)
srv.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", 1, ctypes.addressof(buf)))  # SO_ATTACH_FILTER
c = socket.socket()
try:
    c.connect(("127.0.0.1", port))
except OSError as exc:
    print("connect:", exc)
