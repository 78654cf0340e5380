#!/bin/sh
# Re-creates the captures in this folder with real tcpdump on lo in a private network
# namespace (nothing leaves it). Run as root: sh make_pcaps.sh [NAME]  (NAME: only that one)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
unshare -n sh -eu -c '
cd "$1"
want() { [ -z "$2" ] || [ "$2" = "$1" ]; }
ip link set lo up
cap() { tcpdump -i lo -U --immediate-mode -nn -s 256 -w "$1" "tcp port $2" 2>/dev/null & echo $! > /tmp/tcpdump.pid; sleep 0.5; }
stop() { sleep 1; kill -INT "$(cat /tmp/tcpdump.pid)"; wait "$(cat /tmp/tcpdump.pid)" 2>/dev/null || true; }

# handshake, a line of data each way, and the four-way close, via nc
if want handshake-teardown-nc "$2"; then
cap handshake-teardown-nc.pcap 8888
nc -l 127.0.0.1 8888 > /dev/null & srv=$!
sleep 0.3
printf "hello\n" | nc -q 0 127.0.0.1 8888
wait $srv || true
stop
fi

# a connect to a port with no listener: SYN, RST-ACK
if want refused "$2"; then
cap refused.pcap 8889
python3 -c "import socket; print(socket.socket().connect_ex((\"127.0.0.1\", 8889)))"
stop
fi

# simultaneous close: the FINs cross (each socket drops what reaches it while both close)
if want simultaneous-close "$2"; then
cap simultaneous-close.pcap 8891
python3 "$1/simultaneous_close.py" 8891
stop
fi

# an unanswered SYN: the listener drops everything (a classic BPF filter, as the probes do)
# and tcp_syn_retries=1 gives up after 3 s
if want syn-unanswered "$2"; then
sysctl -qw net.ipv4.tcp_syn_retries=1 net.ipv4.tcp_syn_linear_timeouts=0
cap syn-unanswered.pcap 8890
python3 "$1/drop_listener.py" 8890
stop
fi
' sh "$here" "${1:-}"
if [ -z "${1:-}" ] || [ "$1" = handshake-teardown-nc ]; then
    python3 "$here/to_pcapng.py" "$here/handshake-teardown-nc.pcap" "$here/handshake-teardown-nc.pcapng"
fi
