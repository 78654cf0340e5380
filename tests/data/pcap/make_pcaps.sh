#!/bin/sh
# Re-creates the captures in this folder with real tcpdump on lo in a private network
# namespace (nothing leaves it). Run as root: sh make_pcaps.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
unshare -n sh -eu -c '
cd "$1"
ip link set lo up
cap() { tcpdump -i lo -U --immediate-mode -nn -s 256 -w "$1" "tcp port $2" 2>/dev/null & echo $! > /tmp/tcpdump.pid; sleep 0.5; }
stop() { sleep 1; kill -INT "$(cat /tmp/tcpdump.pid)"; wait "$(cat /tmp/tcpdump.pid)" 2>/dev/null || true; }

# handshake, a line of data each way, and the four-way close, via nc
cap handshake-teardown-nc.pcap 8888
nc -l 127.0.0.1 8888 > /dev/null & srv=$!
sleep 0.3
printf "hello\n" | nc -q 0 127.0.0.1 8888
wait $srv || true
stop

# a connect to a port with no listener: SYN, RST-ACK
cap refused.pcap 8889
python3 -c "import socket; print(socket.socket().connect_ex((\"127.0.0.1\", 8889)))"
stop

# an unanswered SYN: the listener drops everything (a classic BPF filter, as the probes do)
# and tcp_syn_retries=1 gives up after 3 s
sysctl -qw net.ipv4.tcp_syn_retries=1 net.ipv4.tcp_syn_linear_timeouts=0
cap syn-unanswered.pcap 8890
python3 "$1/drop_listener.py" 8890
stop
' sh "$here"
python3 "$here/to_pcapng.py" "$here/handshake-teardown-nc.pcap" "$here/handshake-teardown-nc.pcapng"
