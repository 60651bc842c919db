#!/usr/bin/env python3
"""Writes N results-stream entries (as api/dialer.c report_result writes them) in Redis
protocol on stdout, for `redis-cli --pipe`. Usage: results-gen.py N COMPANY_ID [FIRST_PHONE]
Phones are 09 + 9 digits counting up from FIRST_PHONE (default 1000000); statuses cycle
through all 13, so about half are billable."""
import sys
import time

from resp import STATUSES, cmd


def main():
    n, company = int(sys.argv[1]), sys.argv[2]
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 1000000
    w = sys.stdout.buffer.write
    for i in range(n):
        phone = "09%09d" % (first + i)
        now = "%d" % int(time.time() * 1e6)
        w(cmd("XADD", "dialer:results", "*", "v", "1", "company_id", company, "company", "bench",
              "phone", phone, "phone_raw", phone, "status", STATUSES[i % 13],
              "attempted_at", "1771408800123456", "batch_id", "0123456789abcdef0123456789abcdef",
              "user_message", "bench message %d" % i, "rid", "bench-%d" % i, "accepted_at", now))


main()
