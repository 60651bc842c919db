#!/usr/bin/env bash
# Benchmark: export 1,000,000 numbers to XLSX (SPEC §6: <= 10 s, memory flat in row count).
# Starts its own PostgreSQL, Redis and release binaries on free ports in a temp dir, seeds ROWS
# numbers (a third of them dialed by company bench, with agent, scenario, line and message), then
#   1. `dialerctl export` under /usr/bin/time -v, for ROWS and for ROWS/10 (peak RSS must not grow
#      with the row count), the file checked with unzip;
#   2. the API path: POST /api/numbers/export of every number -> 202 (JOB_WAIT_SECONDS=1) -> the
#      export worker's job polled until completed (every 100 ms) -> download; end to end, with the
#      worker's peak RSS (VmHWM).
# Prints a Markdown table. The import half of issue 6's bench is bench/import.sh (not this script).
# Usage: bench/export.sh   (env: ROWS=1000000)
source "$(dirname "$0")/lib.sh"
ROWS="${ROWS:-1000000}"
command -v unzip >/dev/null || { echo "bench: unzip is required (apt-get install unzip)" >&2; exit 1; }

export DATA_DIR="$TMP/data" JOB_WAIT_SECONDS=1
mkdir -p "$DATA_DIR"
bench_start
psql -q "$DATABASE_URL" <<SQL
INSERT INTO companies (name, display_name) VALUES ('bench', 'Bench');
INSERT INTO users (username, hashed_password, role, first_name, last_name, phone_number, company_id)
SELECT 'agent' || g, 'x', 'AGENT', 'First' || g, 'Last' || g, '0935' || lpad(g::text, 7, '0'),
       (SELECT id FROM companies WHERE name = 'bench') FROM generate_series(1, 20) g;
INSERT INTO scenarios (company_id, name, display_name)
SELECT (SELECT id FROM companies WHERE name = 'bench'), 's' || g, 'سناریو ' || g FROM generate_series(1, 5) g;
INSERT INTO outbound_lines (company_id, phone_number, display_name)
SELECT (SELECT id FROM companies WHERE name = 'bench'), '0215555000' || g, 'Line ' || g FROM generate_series(1, 4) g;
SQL

# seed FROM TO: numbers FROM..TO of the series, a third of them dialed (agent, scenario, line, a message
# on half of those)
seed() {
    echo "bench: seeding numbers $1..$2 ..." >&2
    psql -q "$DATABASE_URL" <<SQL
INSERT INTO numbers (phone_number)
SELECT '09' || lpad(((g::bigint * 7919) % 900000000 + 100000000)::text, 9, '0')
  FROM generate_series($1, $2) g ON CONFLICT DO NOTHING;
INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at, agent_id, scenario_id,
                           outbound_line_id, user_message)
SELECT (SELECT id FROM companies WHERE name = 'bench'), n.id, n.phone_number,
       (ARRAY['MISSED','CONNECTED','BUSY','FAILED','NOT_INTERESTED'])[1 + n.id % 5],
       now() - (n.id % 30) * interval '1 day' - (n.id % 86400) * interval '1 second',
       (SELECT min(id) FROM users WHERE role = 'AGENT') + n.id % 20,
       (SELECT min(id) FROM scenarios) + n.id % 5, (SELECT min(id) FROM outbound_lines) + n.id % 4,
       CASE WHEN n.id % 2 = 0 THEN 'مشتری تماس مجدد خواست ' || n.id END
  FROM numbers n WHERE n.id % 3 = 0 AND NOT EXISTS (SELECT 1 FROM number_state s WHERE s.number_id = n.id);
VACUUM ANALYZE;
SQL
}

# export_cli: "seconds cpu_seconds peak_rss_kb rows bytes" of dialerctl export of company bench
export_cli() {
    local out="$TMP/cli.xlsx" secs rss rows cpu
    rm -f "$out"
    /usr/bin/time -v bin/dialerctl export --out "$out" --company bench >"$TMP/cli.out" 2>"$TMP/cli.time"
    secs="$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); print (n == 3 ? t[1]*3600 + t[2]*60 + t[3] : t[1]*60 + t[2])}' "$TMP/cli.time")"
    rss="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TMP/cli.time")"
    cpu="$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$TMP/cli.time")"
    rows="$(sed -n 's/^exported \([0-9]*\) rows.*/\1/p' "$TMP/cli.out")"
    unzip -tq "$out" >/dev/null || { echo "bench: $out is not a valid zip" >&2; exit 1; }
    echo "$secs $cpu $rss $rows $(stat -c %s "$out")"
}

# a tenth first, then all: the peak RSS must not grow with the row count
seed 1 $((ROWS / 10))
echo "bench: dialerctl export of $((ROWS / 10)) numbers ..." >&2
read -r s2 c2 r2 n2 b2 <<<"$(export_cli)"
seed $((ROWS / 10 + 1)) "$ROWS"
echo "bench: dialerctl export of $ROWS numbers ..." >&2
read -r s1 c1 r1 n1 b1 <<<"$(export_cli)"

echo "| path | rows | seconds | CPU seconds (user+sys) | peak RSS | file |"
echo "|---|---|---|---|---|---|"
echo "| \`dialerctl export --company bench\` | $n2 | $s2 | $c2 | $((r2 / 1024)) MiB | $((b2 / 1048576)) MiB |"
echo "| \`dialerctl export --company bench\` | $n1 | $s1 | $c1 | $((r1 / 1024)) MiB | $((b1 / 1048576)) MiB |"

# The API path: the request, the job in dialer-export, the download, end to end.
echo "bench: POST /api/numbers/export of $ROWS numbers through the export worker ..." >&2
bench_api
bin/dialer-export >"$TMP/export.log" 2>&1 &
WORKER_PID=$!
BENCH_PIDS+=("$WORKER_PID")
TOKEN="$(bench_login)"
sleep 1
# the worker's CPU ticks (utime + stime) before and after the job
ticks() { awk '{print $14 + $15}' "/proc/$WORKER_PID/stat"; }
k0="$(ticks)"
t0="$(date +%s.%N)"
resp="$(curl -sf "$API_URL/api/numbers/export" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"select_all": true, "company_name": "bench"}')"
job="$(sed -n 's/.*"job_id": *\([0-9]*\).*/\1/p' <<<"$resp")"
[[ -n "$job" ]] || { echo "bench: expected a 202 with a job_id, got: $resp" >&2; exit 1; }
for _ in $(seq 600); do
    state="$(curl -sf "$API_URL/api/jobs/$job" -H "Authorization: Bearer $TOKEN")"
    grep -Eq '"status" *: *"completed"' <<<"$state" && break
    grep -Eq '"status" *: *"failed"' <<<"$state" && { echo "bench: the job failed: $state" >&2; exit 1; }
    sleep 0.1
done
t1="$(date +%s.%N)"
k1="$(ticks)"
curl -sf -o "$TMP/api.xlsx" "$API_URL/api/jobs/$job/download" -H "Authorization: Bearer $TOKEN"
t2="$(date +%s.%N)"
unzip -tq "$TMP/api.xlsx" >/dev/null || { echo "bench: the download is not a valid zip" >&2; exit 1; }
hwm="$(awk '/^VmHWM/ {print $2}' "/proc/$WORKER_PID/status")"
echo "| POST /api/numbers/export → job → download | $n1 | $(awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {printf "%.2f (job) + %.2f (download)", b - a, c - b}') | $(awk -v a="$k0" -v b="$k1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f (worker)", (b - a) / hz}') | $((hwm / 1024)) MiB (worker VmHWM) | $(( $(stat -c %s "$TMP/api.xlsx") / 1048576 )) MiB |"
