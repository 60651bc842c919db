#!/usr/bin/env bash
# Benchmark: real-time events (dialer-events).
#   1. handoff: time to the first byte of GET /api/events (the API authenticates, then hands the
#      socket to dialer-events over EVENTS_SOCKET with SCM_RIGHTS, which writes the response) next
#      to GET /api/auth/me (the same authentication, answered by the API itself), SAMPLES each;
#   2. fan-out: EVENTS events XADDed to dialer:events in one pipe while N SSE clients (curl -N,
#      each its own process) listen; timed from the first XADD until every client has them all.
#      deliveries/s = EVENTS x N / seconds.
# Its own PostgreSQL, Redis, release dialer-api and dialer-events on free ports in a temp dir.
# Usage: bench/events-fanout.sh   (env: CLIENTS="10 100 400" EVENTS=20000 SAMPLES=100)
source "$(dirname "$0")/lib.sh"
CLIENTS="${CLIENTS:-10 100 400}"
EVENTS="${EVENTS:-20000}"
SAMPLES="${SAMPLES:-100}"

export EVENTS_SOCKET="$TMP/events.sock" EVENTS_CLIENT_BUFFER_BYTES=67108864 EVENTS_MAX_CLIENTS=100000
bench_start
bench_api
bin/dialer-events >"$TMP/events.log" 2>&1 &
BENCH_PIDS+=($!)
TOKEN="$(bench_login)"
A="Authorization: Bearer $TOKEN"
# ready: a stream that stays open (a refusal is a 200 too, ending at once with "event: dropped")
for _ in $(seq 50); do
    body="$(curl -s -N --max-time 0.3 -H "$A" "$API_URL/api/events" || true)"
    [[ -n "$body" && "$body" != *"event: dropped"* ]] && break
    sleep 0.2
done

pct() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f ms / %.2f ms", v[int(NR * 0.5 + 0.5)] * 1000, v[int(NR * 0.99 + 0.5)] * 1000 }'; }
echo "| request (${SAMPLES} sequential) | time to first byte, p50 / p99 |"
echo "|---|---|"
echo "| GET /api/auth/me (answered by the API) | $(for _ in $(seq "$SAMPLES"); do
    curl -s -o /dev/null -w '%{time_starttransfer}\n' -H "$A" "$API_URL/api/auth/me"; done | pct) |"
echo "| GET /api/events (handed to dialer-events) | $(for _ in $(seq "$SAMPLES"); do
    curl -s -N --max-time 0.15 -o /dev/null -w '%{time_starttransfer}\n' -H "$A" "$API_URL/api/events" || true; done | pct) |"
echo

# RESP for EVENTS XADDs of ~200-byte events (redis-cli --pipe)
gen() {
    awk -v n="$EVENTS" 'BEGIN {
        pad = sprintf("%150s", ""); gsub(/ /, "x", pad)
        for (i = 1; i <= n; i++) {
            d = sprintf("{\"seq\":%d,\"pad\":\"%s\"}", i, pad)
            printf "*12\r\n$4\r\nXADD\r\n$13\r\ndialer:events\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$6\r\n100000\r\n$1\r\n*\r\n"
            printf "$4\r\ntype\r\n$14\r\nnumber.updated\r\n$10\r\ncompany_id\r\n$1\r\n1\r\n$4\r\ndata\r\n$%d\r\n%s\r\n", length(d), d
        }
    }'
}
gen >"$TMP/xadd.resp"

echo "| SSE clients | events | seconds | events/s per client | deliveries/s |"
echo "|---|---|---|---|---|"
for n in $CLIENTS; do
    CPIDS=()
    for i in $(seq "$n"); do
        curl -s -N -H "$A" "$API_URL/api/events?types=number.updated" >"$TMP/c$i.out" 2>/dev/null &
        CPIDS+=($!)
    done
    # every client connected (": connected" written)
    for _ in $(seq 200); do
        ok=0
        for i in $(seq "$n"); do grep -q '^: connected' "$TMP/c$i.out" 2>/dev/null && ok=$((ok + 1)); done
        [[ $ok -eq $n ]] && break
        sleep 0.1
    done
    t0=$(date +%s.%N)
    redis-cli -p "$REDIS_PORT" --pipe <"$TMP/xadd.resp" >/dev/null
    for _ in $(seq 6000); do
        done_n=0
        for i in $(seq "$n"); do
            # the last event (seq = EVENTS) at the end of its output: the stream is in order
            tail -c 600 "$TMP/c$i.out" | grep -q "\"seq\":$EVENTS," && done_n=$((done_n + 1))
        done
        [[ $done_n -eq $n ]] && break
        sleep 0.05
    done
    t1=$(date +%s.%N)
    for p in "${CPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${CPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ $done_n -eq $n ]] || echo "bench: only $done_n of $n clients got every event" >&2
    awk -v n="$n" -v e="$EVENTS" -v a="$t0" -v b="$t1" \
        'BEGIN { s = b - a; printf "| %d | %d | %.2f | %.0f | %.0f |\n", n, e, s, e / s, e * n / s }'
    rm -f "$TMP"/c*.out
done
