"""Run inside `unshare -n`: counters before and after an accept-queue overflow and refused connects.

    unshare -n python3 make_overflow.py   (writes overflow-before/after-6.18.{netstat,snmp})
"""

import shutil
import socket
import subprocess
import time

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
for f in ("netstat", "snmp"):
    shutil.copy(f"/proc/net/{f}", f"overflow-before-6.18.{f}")
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(0)  # one pending connection at most (backlog 0 -> queue of 1), never accepted
port = srv.getsockname()[1]
clients = []
for _ in range(8):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    clients.append(c)
closed = socket.socket()
closed.bind(("127.0.0.1", 0))
dead_port = closed.getsockname()[1]
closed.close()
for _ in range(5):  # connect to a port nobody listens on: RST, AttemptFails
    s = socket.socket()
    s.connect_ex(("127.0.0.1", dead_port))
    s.close()
time.sleep(1.5)
for f in ("netstat", "snmp"):
    shutil.copy(f"/proc/net/{f}", f"overflow-after-6.18.{f}")
