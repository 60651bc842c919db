#!/usr/bin/env python3
"""Feeds the results stream at a steady rate, as api/dialer.c report_result writes entries, with
accepted_at = the moment each is sent (the worker measures ingestion lag from it).
Usage: results-feed.py HOST PORT RATE SECONDS COMPANY_ID FIRST_PHONE
Sends RATE/20 XADDs every 50 ms over one pipelined connection; prints what it sent."""
import socket
import sys
import time

from resp import STATUSES, cmd


def main():
    host, port, rate, secs, company, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        float(sys.argv[4]), sys.argv[5], int(sys.argv[6])
    s = socket.create_connection((host, port))
    s.setblocking(False)
    per_tick, tick = max(1, rate // 20), 0.05
    sent, i, start = 0, 0, time.monotonic()
    while time.monotonic() - start < secs:
        now = "%d" % int(time.time() * 1e6)
        buf = []
        for _ in range(per_tick):
            phone = "09%09d" % (first + i)
            buf.append(cmd("XADD", "dialer:results", "*", "v", "1", "company_id", company, "company", "bench",
                           "phone", phone, "phone_raw", phone, "status", STATUSES[i % 13],
                           "attempted_at", "1771408800123456", "user_message", "bench",
                           "rid", "feed", "accepted_at", now))
            i += 1
        s.setblocking(True)
        s.sendall(b"".join(buf))
        s.setblocking(False)
        sent += per_tick
        try:
            while s.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        next_at = start + (sent / per_tick) * tick
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print("sent %d in %.1f s" % (sent, time.monotonic() - start))


main()
