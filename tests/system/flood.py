#!/usr/bin/env python3
"""Floods a destination with UDP datagrams and TCP connection attempts, as fast as one loop can,
until STOPFILE exists; prints "udp_sent N udp_refused N udp_error N tcp_tries N tcp_refused N" at the end.
A send the packet filter refuses fails with EPERM (counted as refused); everything else went to
the kernel, which is no proof it left: the receiving side counts what arrives.
Usage: flood.py ADDR UDP_PORT TCP_PORT STOPFILE STARTFILE"""
import errno, os, socket, sys

addr, uport, tport, stopfile, startfile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = {"udp_sent": 0, "udp_refused": 0, "udp_error": 0, "tcp_tries": 0, "tcp_refused": 0}
i = 0
while True:
    try:
        udp.sendto(b"leakguard-system-flood", (addr, uport))
        n["udp_sent"] += 1
    except OSError as e:
        n["udp_refused" if e.errno == errno.EPERM else "udp_error"] += 1
    if i % 10 == 0:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setblocking(False)
        n["tcp_tries"] += 1
        try:
            t.connect((addr, tport))
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno == errno.EPERM:
                n["tcp_refused"] += 1
        t.close()
    if i == 0:
        open(startfile, "w").close()
    i += 1
    if i % 100 == 0 and os.path.exists(stopfile):
        break
print(" ".join(f"{k} {v}" for k, v in n.items()))
