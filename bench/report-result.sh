#!/usr/bin/env bash
# Benchmark: POST /api/dialer/report-result accepted (SPEC §6: >= 30,000 req/s, p99 < 10 ms with 64
# keep-alive connections, >= 50% of a bare evhttp endpoint measured in the same run).
# Starts its own PostgreSQL, Redis and release API; wrk with bench/report-result.lua.
# Usage: bench/report-result.sh   (env: CONNS=64 DURATION=10)
source "$(dirname "$0")/lib.sh"
CONNS="${CONNS:-64}"
export DURATION="${DURATION:-10}"

bench_start
bench_api
BARE_PORT="$(free_port)"
bench_bare "$BARE_PORT"
export DIALER_TOKEN

read -r rps p50 p99 bad <<<"$(wrk_row "$API_URL" "$CONNS" -s bench/report-result.lua)"
read -r brps bp50 bp99 bbad <<<"$(wrk_row "http://127.0.0.1:$BARE_PORT/" "$CONNS")"
accepted="$(redis-cli -u "$REDIS_URL" XLEN dialer:results)"
echo "| server ($CONNS connections, ${DURATION}s) | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
echo "| report-result (dialer-api) | $rps | $p50 | $p99 | ${bad:-0} |"
echo "| bare evhttp reply (reference) | $brps | $bp50 | $bp99 | ${bbad:-0} |"
echo
echo "ratio: $(awk -v a="$rps" -v b="$brps" 'BEGIN { printf "%.0f%%", 100 * a / b }') of the bare endpoint;" \
     "entries in dialer:results: $accepted"
