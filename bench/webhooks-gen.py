#!/usr/bin/env python3
"""Writes N dialer:events entries (the events contract: type, company_id, data, at) in Redis
protocol on stdout, for `redis-cli --pipe`. Usage: webhooks-gen.py N COMPANY_ID"""
import json
import sys
import time

from resp import cmd


def main():
    n, company = int(sys.argv[1]), sys.argv[2]
    w = sys.stdout.buffer.write
    for i in range(n):
        data = json.dumps({"number_id": i, "phone": "09%09d" % (100000000 + i), "status": "CONNECTED",
                           "attempts": 1, "agent_id": 7, "scenario_id": 3})
        w(cmd("XADD", "dialer:events", "*", "type", "result.ingested", "company_id", company, "data", data,
              "at", "%d" % int(time.time() * 1000)))


if __name__ == "__main__":
    main()
