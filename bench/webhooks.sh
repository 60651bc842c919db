#!/usr/bin/env bash
# Benchmark: webhook deliveries per second by dialer-webhooks to local receivers.
# Starts its own PostgreSQL (fsync on, as in production), Redis, and bench/webhook-receiver.c
# (evhttp answering 200 at once, and one answering after DELAY_MS) on free ports in a temp dir;
# then for each row of the matrix: W webhooks of one company (events ["*"]), a backlog of
# EVENTS*... entries XADDed to dialer:events with the workers stopped, K release workers
# started (defaults: WEBHOOK_CONCURRENCY=256, _PER_WEBHOOK=8), timed until every delivery is
# 'delivered' in PostgreSQL. The time covers reading the stream, queueing the deliveries,
# claiming, signing, POSTing and recording every attempt. Worker CPU from /proc.
# Usage: bench/webhooks.sh   (env: DELIVERIES=20000 DELAY_MS=20)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DELIVERIES="${DELIVERIES:-20000}"
DELAY_MS="${DELAY_MS:-20}"

scripts/deps.sh >&2
make -j2 all >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dialer-bench.XXXXXX")"
chmod 755 "$TMP"
PIDS=()
RX=()
stop_workers() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    local p
    stop_workers
    for p in "${RX[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    scripts/redis.sh stop "$TMP/redis" >/dev/null 2>&1 || true
    scripts/pg.sh remove "$TMP/pg" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

PG_PORT="$(free_port)"; REDIS_PORT="$(free_port)"; RX_FAST="$(free_port)"; RX_SLOW="$(free_port)"
scripts/pg.sh start "$TMP/pg" "$PG_PORT" >/dev/null
scripts/redis.sh start "$TMP/redis" "$REDIS_PORT" >/dev/null
export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/dialer"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export DIALER_ENV_FILE=/dev/null LOG_LEVEL=info DIALER_SCHEMA_DIR="$ROOT/schema" WEBHOOK_ALLOW_PRIVATE=true
R=(redis-cli -p "$REDIS_PORT")
bin/dialerctl migrate >/dev/null 2>&1
cc -O2 -o "$TMP/receiver" bench/webhook-receiver.c $(pkg-config --cflags --libs libevent)
"$TMP/receiver" "$RX_FAST" 0 & RX+=($!)
"$TMP/receiver" "$RX_SLOW" "$DELAY_MS" & RX+=($!)
psql -q "$DATABASE_URL" -c "INSERT INTO companies (name, display_name) VALUES ('bench', 'Bench')"
CID="$(psql -Atq "$DATABASE_URL" -c "SELECT id FROM companies WHERE name = 'bench'")"
"${R[@]}" XGROUP CREATE dialer:events webhooks '$' MKSTREAM >/dev/null

delivered() { psql -Atq "$DATABASE_URL" -c "SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'"; }
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

echo "| webhooks | copies | receiver | deliveries | seconds | deliveries/s | worker CPU s |"
echo "|---|---|---|---|---|---|---|"
# webhooks copies receiver-port label
run() {
    local w="$1" k="$2" port="$3" label="$4" events want t0 t1 cpu=0 i p
    events=$((DELIVERIES / w))
    want=$((events * w))
    psql -q "$DATABASE_URL" -c "TRUNCATE webhooks, webhook_events, webhook_deliveries, webhook_attempts" \
        -c "INSERT INTO webhooks (company_id, url, events, secret)
            SELECT $CID, 'http://127.0.0.1:$port/hook/' || g, '{*}', 'bench-secret-0123456789' FROM generate_series(1, $w) g"
    python3 bench/webhooks-gen.py "$events" "$CID" | "${R[@]}" --pipe >/dev/null
    t0=$(date +%s.%N)
    for i in $(seq "$k"); do
        bin/dialer-webhooks >>"$TMP/worker-$w-$k-$label.log" 2>&1 &
        PIDS+=($!)
    done
    until [[ "$(delivered)" -ge "$want" ]]; do
        sleep 0.1
        awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { exit !(b - a > 600) }' &&
            { echo "bench: $(delivered) of $want delivered after 600 s" >&2; exit 1; }
    done
    t1=$(date +%s.%N)
    for p in "${PIDS[@]}"; do cpu=$(awk -v a="$cpu" -v b="$(cpu_s "$p")" 'BEGIN { print a + b }'); done
    stop_workers
    awk -v w="$w" -v k="$k" -v l="$label" -v n="$want" -v a="$t0" -v b="$t1" -v c="$cpu" \
        'BEGIN { printf "| %d | %d | %s | %d | %.1f | %.0f | %.1f |\n", w, k, l, n, b - a, n / (b - a), c }'
}
run 1 1 "$RX_FAST" "at once"
run 4 1 "$RX_FAST" "at once"
run 4 2 "$RX_FAST" "at once"
run 16 1 "$RX_FAST" "at once"
run 1 1 "$RX_SLOW" "${DELAY_MS} ms"
run 16 1 "$RX_SLOW" "${DELAY_MS} ms"
