"""The same packets as pcapng (scapy's PcapNgWriter), for the pcapng reader's test."""

import sys

from scapy.all import PcapNgWriter, rdpcap  # scapy.all: the link layers must be known

packets = rdpcap(sys.argv[1])
w = PcapNgWriter(sys.argv[2])
for p in packets:
    w.write(p)
w.close()
