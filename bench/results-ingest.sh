#!/usr/bin/env bash
# Benchmark: results ingested into PostgreSQL by dialer-results (SPEC §6: >= 20,000 results/s
# sustained, lag from accepted to committed < 1 s).
# Starts its own PostgreSQL (fsync on, as in production), Redis and the release workers on free
# ports in a temp dir; seeds NUMBERS numbers and a company with a large wallet; then
#   1. drain: DRAIN entries appended with the workers stopped, then 1 and 2 copies started,
#      timed until every entry is applied (the ceiling: results/s with a backlog);
#   2. steady: RATE entries/s for DURATION s fed while 1 and 2 copies run (bench/results-feed.py),
#      the workers' own lag figures (accepted_at → after COMMIT) reported.
# The seeding is checkpointed before the clock starts (its write-back would otherwise land in the
# first phase). Every entry names a different known number; statuses cycle through all 13 (6 of 13 billable).
# STATS=1 also runs one dialer-stats throughout (counting the rollups while results are applied),
# and reports how far behind the results it was when they were all applied.
# Usage: bench/results-ingest.sh   (env: NUMBERS=1000000 DRAIN=100000 RATE=10000 DURATION=20 STATS=0,
#        RESULTS_BIN=bin/dialer-results: another build's worker, for a before/after comparison,
#        PG_PROFILE=1: pg_stat_statements on, its top statements printed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
NUMBERS="${NUMBERS:-1000000}"
DRAIN="${DRAIN:-100000}"
RATE="${RATE:-10000}"
DURATION="${DURATION:-20}"
STATS="${STATS:-0}"
RESULTS_BIN="${RESULTS_BIN:-bin/dialer-results}"

scripts/deps.sh
make -j2 all >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
# shellcheck source=bench/pgprofile.sh
source bench/pgprofile.sh

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dialer-bench.XXXXXX")"
chmod 755 "$TMP"
PIDS=()
stop_workers() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
STATS_PID=""
cleanup() {
    pg_profile_print # PG_PROFILE=1: the statements that took the database's time, whole run
    stop_workers
    [[ -z "$STATS_PID" ]] || { kill -TERM "$STATS_PID" 2>/dev/null; wait "$STATS_PID" 2>/dev/null || true; }
    scripts/redis.sh stop "$TMP/redis" >/dev/null 2>&1 || true
    scripts/pg.sh remove "$TMP/pg" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

PG_PORT="$(free_port)"; REDIS_PORT="$(free_port)"
scripts/pg.sh start "$TMP/pg" "$PG_PORT" >/dev/null
scripts/redis.sh start "$TMP/redis" "$REDIS_PORT" >/dev/null
export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/dialer"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export DIALER_ENV_FILE=/dev/null LOG_LEVEL=info DIALER_SCHEMA_DIR="$ROOT/schema"
R=(redis-cli -p "$REDIS_PORT")
bin/dialerctl migrate >/dev/null 2>&1

echo "bench: seeding $NUMBERS numbers ..." >&2
psql -q "$DATABASE_URL" <<SQL
INSERT INTO companies (name, display_name) VALUES ('bench', 'Bench');
INSERT INTO company_config (company_id, wallet_balance) SELECT id, 1000000000000 FROM companies WHERE name = 'bench';
INSERT INTO numbers (phone_number) SELECT '09' || (100000000 + g) FROM generate_series(1, $NUMBERS) g;
VACUUM ANALYZE;
CHECKPOINT;
SQL
pg_profile_reset
CID="$(psql -Atq "$DATABASE_URL" -c "SELECT id FROM companies WHERE name = 'bench'")"
"${R[@]}" XGROUP CREATE dialer:results results 0 MKSTREAM >/dev/null

applied() { psql -Atq "$DATABASE_URL" -c "SELECT count(*) FROM call_attempts"; }
# true once the group (default results) has read every entry and acknowledged it (acks come after
# COMMIT); asking Redis, because counting call_attempts ten times a second would take a core from
# the workers
drained() {
    "${R[@]}" XINFO GROUPS dialer:results | awk -v g="${1:-results}" '
        prev == "name" { mine = ($1 == g) } mine && prev == "pending" { p = $1 } mine && prev == "lag" { l = $1 }
        { prev = $1 }
        END { exit !(p == 0 && l == 0) }'
}
if [[ "$STATS" == 1 ]]; then
    LOG_LEVEL=info bin/dialer-stats >>"$TMP/stats.log" 2>&1 &
    STATS_PID=$!
    until grep -q "event=rebuilt" "$TMP/stats.log"; do sleep 0.2; done
fi
stats_behind() {   # entries the stats group had not counted yet when the results were all applied
    [[ "$STATS" == 1 ]] || { echo "-"; return; }
    "${R[@]}" XINFO GROUPS dialer:results | awk '
        prev == "name" { mine = ($1 == "stats") } mine && prev == "pending" { p = $1 } mine && prev == "lag" { l = $1 }
        { prev = $1 } END { print p + l }'
}
start_workers() {
    local i
    for i in $(seq "$1"); do
        "$RESULTS_BIN" >>"$TMP/worker-$2.log" 2>&1 &
        PIDS+=($!)
    done
}
next_phone=100000001

echo "| phase | copies | results | seconds | results/s | lag avg | lag max | stats behind |"
echo "|---|---|---|---|---|---|---|---|"
for copies in 1 2; do
    # 1. drain a backlog
    python3 bench/results-gen.py "$DRAIN" "$CID" "$next_phone" | "${R[@]}" --pipe >/dev/null
    next_phone=$((next_phone + DRAIN))
    want=$(( $(applied) + DRAIN ))
    t0=$(date +%s.%N)
    start_workers "$copies" "drain$copies"
    sleep 0.5
    until drained; do sleep 0.05; done
    t1=$(date +%s.%N)
    behind="$(stats_behind)"
    stop_workers
    [[ $(applied) -eq $want ]] || { echo "bench: applied $(applied), wanted $want" >&2; exit 1; }
    awk -v n="$DRAIN" -v a="$t0" -v b="$t1" -v c="$copies" -v sb="$behind" \
        'BEGIN { printf "| drain | %d | %d | %.1f | %.0f | - | - | %s |\n", c, n, b - a, n / (b - a), sb }'

    # 2. a steady rate, lag measured by the workers
    start_workers "$copies" "steady$copies"
    sleep 1
    fed="$(python3 bench/results-feed.py 127.0.0.1 "$REDIS_PORT" "$RATE" "$DURATION" "$CID" "$next_phone")"
    next_phone=$((next_phone + RATE * DURATION + RATE))
    for _ in $(seq 600); do drained && break; sleep 0.05; done
    behind="$(stats_behind)"
    sleep 1
    stop_workers
    # progress lines: applied=N ... lag_avg_ms=A lag_max_ms=M, every 10 s and at exit
    # the rate actually fed ("sent N in S s"): the feeder can fall behind on a busy machine
    read -r _ n_fed _ s_fed _ <<<"$fed"
    awk -v c="$copies" -v r="$RATE" -v s="$DURATION" -v nf="$n_fed" -v sf="$s_fed" -v sb="$behind" '
        /event=progress/ {
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            n += v["applied"]; w += v["applied"] * v["lag_avg_ms"]; if (v["lag_max_ms"] > m) m = v["lag_max_ms"]
        }
        END { printf "| steady %d/s | %d | %d | %.1f | %.0f | %.0f ms | %.0f ms | %s |\n", r, c, nf, sf, nf / sf, n ? w / n : 0, m, sb }' \
        "$TMP/worker-steady$copies.log"
done
