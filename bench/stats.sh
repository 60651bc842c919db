#!/usr/bin/env bash
# Benchmark: every GET /api/stats endpoint over 10,000,000 call attempts (SPEC §6: < 50 ms).
# Starts its own PostgreSQL, Redis and release dialer-api, dialer-results and dialer-stats on free
# ports in a temp dir; generates ATTEMPTS call attempts straight into call_attempts with
# generate_series (the per-statement state trigger is disabled for that one load: number_state
# is written directly, NUMBERS numbers of which 60% dialed by each company) over DAYS days for
# COMPANIES companies (20 scenarios, 10 lines, 50 agents each; every status); then dialer-stats
# builds the rollups (a new installation's rebuild, timed from its log) and wrk runs each query
# (keep-alive; one connection for latency, then CONNS connections for throughput; DURATION
# seconds each). Prints the rollups' sizes and a Markdown table.
# Usage: bench/stats.sh   (env: ATTEMPTS=10000000 NUMBERS=1000000 COMPANIES=5 DAYS=90 CONNS=8 DURATION=5)
source "$(dirname "$0")/lib.sh"
ATTEMPTS="${ATTEMPTS:-10000000}"
NUMBERS="${NUMBERS:-1000000}"
COMPANIES="${COMPANIES:-5}"
DAYS="${DAYS:-90}"
CONNS="${CONNS:-8}"
export DURATION="${DURATION:-5}"

bench_start
echo "bench: seeding $NUMBERS numbers and $ATTEMPTS attempts over $DAYS days, $COMPANIES companies ..." >&2
t0=$(date +%s)
psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" <<SQL
INSERT INTO companies (name, display_name) SELECT 'c' || g, 'Company ' || g FROM generate_series(1, $COMPANIES) g;
INSERT INTO scenarios (company_id, name, display_name)
SELECT c.id, 's' || g, 'Scenario ' || g FROM companies c, generate_series(1, 20) g WHERE c.name ~ '^c[0-9]+$';
INSERT INTO outbound_lines (company_id, phone_number, display_name)
SELECT c.id, '021' || g, 'Line ' || g FROM companies c, generate_series(1, 10) g WHERE c.name ~ '^c[0-9]+$';
INSERT INTO users (username, hashed_password, role, company_id, first_name, last_name)
SELECT 'agent' || c.id || '_' || g, 'x', 'AGENT', c.id, 'Agent', g::text
  FROM companies c, generate_series(1, 50) g WHERE c.name ~ '^c[0-9]+$';
INSERT INTO numbers (phone_number) SELECT '09' || (100000000 + g) FROM generate_series(1, $NUMBERS) g;
CREATE TEMP TABLE bc AS
SELECT (row_number() OVER (ORDER BY c.id) - 1)::int AS k, c.id,
       (SELECT array_agg(id ORDER BY id) FROM scenarios WHERE company_id = c.id) AS sc,
       (SELECT array_agg(id ORDER BY id) FROM outbound_lines WHERE company_id = c.id) AS ln,
       (SELECT array_agg(id ORDER BY id) FROM users WHERE company_id = c.id AND role = 'AGENT') AS ag
  FROM companies c WHERE c.name ~ '^c[0-9]+$';
CREATE TEMP TABLE st AS SELECT ARRAY['IN_QUEUE','MISSED','CONNECTED','FAILED','NOT_INTERESTED','HANGUP',
  'DISCONNECTED','BUSY','POWER_OFF','BANNED','UNKNOWN','INBOUND_CALL','COMPLAINED'] AS s;
ALTER TABLE call_attempts DISABLE TRIGGER call_attempts_apply;
INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at, scenario_id,
                           outbound_line_id, agent_id)
SELECT bc.id, 1 + (g * 7919) % $NUMBERS, '09' || (100000001 + (g * 7919) % $NUMBERS), st.s[1 + (g * 31) % 13],
       now() - random() * $DAYS * interval '1 day',
       CASE WHEN g % 10 <> 0 THEN bc.sc[1 + (g / 7) % 20] END,
       CASE WHEN g % 4 <> 0 THEN bc.ln[1 + (g / 3) % 10] END,
       CASE WHEN g % 5 <> 0 THEN bc.ag[1 + (g / 11) % 50] END
  FROM generate_series(1::bigint, $ATTEMPTS) g JOIN bc ON bc.k = g % $COMPANIES, st;
ALTER TABLE call_attempts ENABLE TRIGGER call_attempts_apply;
INSERT INTO number_state (company_id, number_id, status, total_attempts, last_attempt_at)
SELECT bc.id, n, st.s[1 + (n * 7 + bc.k) % 13], 1, now()
  FROM bc, st, generate_series(1, $NUMBERS * 6 / 10) n;
VACUUM ANALYZE;
CHECKPOINT;
SQL
echo "bench: seeded in $(( $(date +%s) - t0 )) s" >&2

# the rollups: dialer-stats finds no group and backfills from call_attempts (the results group
# must exist first: its frontier bounds the rebuild)
bin/dialer-results >"$TMP/results.log" 2>&1 &
BENCH_PIDS+=($!)
sleep 1
LOG_LEVEL=info bin/dialer-stats >"$TMP/stats.log" 2>&1 &
BENCH_PIDS+=($!)
until grep -q "event=rebuilt" "$TMP/stats.log"; do
    grep -q "event=db_failed what=rebuild" "$TMP/stats.log" && { cat "$TMP/stats.log" >&2; exit 1; }
    sleep 1
done
grep -o "event=rebuilt.*" "$TMP/stats.log" >&2
echo "rollup rows:"
psql -Atq "$DATABASE_URL" -c "SELECT string_agg(t || ' ' || n, ', ') FROM (
  SELECT 'stats_daily' t, count(*) n FROM stats_daily UNION ALL SELECT 'stats_hourly', count(*) FROM stats_hourly
  UNION ALL SELECT 'stats_minutely', count(*) FROM stats_minutely
  UNION ALL SELECT 'stats_daily_groups', count(*) FROM stats_daily_groups
  UNION ALL SELECT 'stats_minutely_groups', count(*) FROM stats_minutely_groups
  UNION ALL SELECT 'stats_agents_daily', count(*) FROM stats_agents_daily
  UNION ALL SELECT 'stats_number_counts', count(*) FROM stats_number_counts) x"
psql -Atq "$DATABASE_URL" -c "SELECT 'call_attempts ' || count(*) || ', number_state ' || (SELECT count(*) FROM number_state) FROM call_attempts"

bench_api
TOKEN="$(bench_login)"
FROM="$(date -d '-365 days' +%F)"; TO="$(date +%F)"   # the longest range agents and daily take
queries=(
    "/api/stats/numbers-summary?company=c1"
    "/api/stats/attempt-trend?company=c1"
    "/api/stats/attempt-trend?company=c1&granularity=hour&span=24"
    "/api/stats/attempt-trend?granularity=hour&span=240"
    "/api/stats/attempt-trend?span=240"
    "/api/stats/attempts-summary?company=c1&hours=720"
    "/api/stats/attempts-summary?days=365"
    "/api/stats/attempts-summary"
    "/api/stats/costs?company=c1"
    "/api/stats/dashboard-stats?company=c1"
    "/api/stats/dashboard-stats?company=c1&time_filter=1h"
    "/api/stats/dashboard-stats?company=c1&group_by=line&time_filter=30d"
    "/api/stats/agents?company=c1"
    "/api/stats/agents?company=c1&start_date=$FROM&end_date=$TO"
    "/api/stats/daily?company=c1&start_date=$FROM&end_date=$TO"
)
wrk_table /api/stats "${queries[@]}"
