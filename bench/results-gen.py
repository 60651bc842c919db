#!/usr/bin/env python3
"""Writes N results-stream entries (as api/dialer.c report_result writes them) in Redis
protocol on stdout, for `redis-cli --pipe`. Usage: results-gen.py N COMPANY_ID [FIRST_PHONE]
Phones are 09 + 9 digits counting up from FIRST_PHONE (default 1000000); statuses cycle
through all 13, so about half are billable."""
import sys
import time

STATUSES = ["IN_QUEUE", "MISSED", "CONNECTED", "FAILED", "NOT_INTERESTED", "HANGUP", "DISCONNECTED",
            "BUSY", "POWER_OFF", "BANNED", "UNKNOWN", "INBOUND_CALL", "COMPLAINED"]


def cmd(*args):
    out = ["*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        out.append("$%d\r\n" % len(b))
        out.append(a + "\r\n")
    return "".join(out)


def main():
    n, company = int(sys.argv[1]), sys.argv[2]
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 1000000
    w = sys.stdout.write
    for i in range(n):
        phone = "09%09d" % (first + i)
        now = "%d" % int(time.time() * 1e6)
        w(cmd("XADD", "dialer:results", "*", "v", "1", "company_id", company, "company", "bench",
              "phone", phone, "phone_raw", phone, "status", STATUSES[i % 13],
              "attempted_at", "1771408800123456", "batch_id", "0123456789abcdef0123456789abcdef",
              "user_message", "bench message %d" % i, "rid", "bench-%d" % i, "accepted_at", now))


main()
