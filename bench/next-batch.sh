#!/usr/bin/env bash
# Benchmark: GET /api/dialer/next-batch?size=100 from 1,000,000 queued numbers with 16 concurrent
# dialers (SPEC §6: >= 1,000 batches/s, no number in two batches), beside a bare evhttp reply.
# The scheduler runs too (it records the batches); the report says how long after the last request
# every batch was in dialer_batches.
# Usage: bench/next-batch.sh   (env: ROWS=2000000 CONNS=16 DURATION=10; 1,000 batches/s for 10 s
# hand out 1,000,000 numbers, so the pool is twice that)
source "$(dirname "$0")/lib.sh"
ROWS="${ROWS:-2000000}"
CONNS="${CONNS:-16}"
export DURATION="${DURATION:-10}"

bench_start
echo "bench: seeding $ROWS numbers ..." >&2
psql -q "$DATABASE_URL" <<SQL
INSERT INTO companies (name, display_name) VALUES ('bench', 'Bench');
SELECT company_config_get((SELECT id FROM companies WHERE name = 'bench'), false);
UPDATE company_config SET wallet_balance = 1000000000, skip_holidays = false
 WHERE company_id = (SELECT id FROM companies WHERE name = 'bench');
INSERT INTO schedule_intervals (company_id, day_of_week, start_time, end_time)
SELECT (SELECT id FROM companies WHERE name = 'bench'), d, '00:00:00', '23:59:59' FROM generate_series(0, 6) d;
INSERT INTO numbers (phone_number)
SELECT '09' || lpad(((g::bigint * 7919) % 900000000 + 100000000)::text, 9, '0')
  FROM generate_series(1, $ROWS) g ON CONFLICT DO NOTHING;
VACUUM ANALYZE;
CHECKPOINT;
SQL
bench_api
API_PID="${BENCH_PIDS[-1]}"
# the scheduler leader records the batches (the pop script appends them to a stream) and mirrors
# their locks onto the numbers
# (NO_SCHEDULER=1: the API and Redis alone, nothing recorded: the ceiling without the recorder)
if [[ "${NO_SCHEDULER:-0}" != 1 ]]; then
    bin/dialer-scheduler >"$TMP/scheduler.log" 2>&1 &
    BENCH_PIDS+=($!)
    SCHED_PID=$!
fi
BARE_PORT="$(free_port)"
bench_bare "$BARE_PORT"
export DIALER_TOKEN

# CPU seconds each process used during the run (utime + stime, and children waited for: the
# postmaster's include its exited backends): on a shared machine the rate moves with the load, the
# CPU a batch costs much less; 1,000 batches/s on 2 cores leaves 2 ms of CPU per batch in all.
clk="$(getconf CLK_TCK)"
pg_pid="$(head -n1 "$TMP/pg/postmaster.pid")"
redis_pid="$(redis-cli -p "$REDIS_PORT" INFO server | tr -d '\r' | sed -n 's/^process_id://p')"
cpu_ticks() { # pid...: the sum of their ticks and their children's
    local p t=0
    for p in "$@"; do
        [[ -n "$p" && -r /proc/$p/stat ]] || continue
        t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}
pg_tree() { echo "$pg_pid $(pgrep -P "$pg_pid" | tr '\n' ' ')"; }
declare -A CPU0
CPU0[api]="$(cpu_ticks "$API_PID")"; CPU0[redis]="$(cpu_ticks "$redis_pid")"
CPU0[postgres]="$(cpu_ticks $(pg_tree))"; CPU0[scheduler]="$(cpu_ticks "${SCHED_PID:-}")"
pg_profile_reset
read -r rps p50 p99 bad <<<"$(wrk_row "$API_URL" "$CONNS" -s bench/next-batch.lua)"
t_end=$(date +%s.%N)
declare -A CPU1
CPU1[api]="$(cpu_ticks "$API_PID")"; CPU1[redis]="$(cpu_ticks "$redis_pid")"
CPU1[postgres]="$(cpu_ticks $(pg_tree))"; CPU1[scheduler]="$(cpu_ticks "${SCHED_PID:-}")"
# the recorder's lag: how long after the last batch the stream is drained into PostgreSQL
while [[ "${NO_SCHEDULER:-0}" != 1 && "$(redis-cli -p "$REDIS_PORT" XLEN dialer:batches)" != 0 ]]; do
    sleep 0.1
done
drain="$(awk -v a="$(date +%s.%N)" -v b="$t_end" 'BEGIN { print a - b }')"
read -r brps bp50 bp99 bbad <<<"$(wrk_row "http://127.0.0.1:$BARE_PORT/" "$CONNS")"
check="$(psql -qAt "$DATABASE_URL" -c "SELECT count(*) || ' batches, ' || sum(returned_size) || ' numbers handed out, '
  || (SELECT count(DISTINCT x) FROM dialer_batches, unnest(number_ids) x) || ' distinct, '
  || (SELECT count(*) FROM number_locks) || ' numbers locked' FROM dialer_batches")"
echo "| server ($CONNS connections, ${DURATION}s, size=100) | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
echo "| next-batch (dialer-api) | $rps | $p50 | $p99 | ${bad:-0} |"
echo "| bare evhttp reply (reference) | $brps | $bp50 | $bp99 | ${bbad:-0} |"
echo
echo "check: $check (equal counts = no number in two batches)"
printf 'batch records in PostgreSQL %.1f s after the last request\n' "$drain"
batches="$(psql -qAt "$DATABASE_URL" -c "SELECT count(*) FROM dialer_batches")"
if [[ "${NO_SCHEDULER:-0}" == 1 ]]; then
    batches="$(awk -v r="$rps" -v d="$DURATION" 'BEGIN { printf "%d", r * d }')"
fi
line="CPU per batch during the run ($batches batches):"
for k in api redis postgres scheduler; do
    line+="$(awk -v a="${CPU0[$k]:-0}" -v b="${CPU1[$k]:-0}" -v c="$clk" -v n="$batches" -v k="$k" \
        'BEGIN { printf " %s %.0f µs", k, n ? (b - a) / c / n * 1e6 : 0 }')"
done
echo "$line (the rest of 2 cores: wrk, other sessions)"
echo "Redis commands by time spent (whole run; the scripts' own commands are inside eval/evalsha):"
redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' | grep '^cmdstat_' |
    awk -F'[:,=]' '{ print $5, $0 }' | sort -rn | head -8 | cut -d' ' -f2- | sed 's/^/  /'
# numbers is not written during the run since schema 019 (the mirror inserts into number_locks)
echo "numbers row updates: $(psql -qAt "$DATABASE_URL" -c "SELECT n_tup_upd || ', of them HOT ' || n_tup_hot_upd
  FROM pg_stat_user_tables WHERE relname = 'numbers'")"
pg_profile_print # PG_PROFILE=1: the statements of the run and the drain after it
[[ -z "${KEEP_API_LOG:-}" ]] || cp "$TMP/api.log" "$KEEP_API_LOG"
