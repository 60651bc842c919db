#!/usr/bin/env bash
# Benchmark: GET /api/numbers (list) and /api/numbers/stats over 1,000,000 numbers, one third of
# them dialed by the company (SPEC §6: list with `search`, p50 < 20 ms).
# Starts its own PostgreSQL, Redis and release dialer-api on free ports in a temp dir, seeds the
# data, runs wrk per query (keep-alive; one connection for latency, then CONNS connections for
# throughput; DURATION seconds each) and prints a Markdown table.
# Usage: bench/numbers-list.sh   (env: ROWS=1000000 CONNS=8 DURATION=5)
source "$(dirname "$0")/lib.sh"
ROWS="${ROWS:-1000000}"
CONNS="${CONNS:-8}"
export DURATION="${DURATION:-5}"

bench_start
echo "bench: seeding $ROWS numbers (a third of them dialed by company bench) ..." >&2
psql -q "$DATABASE_URL" <<SQL
INSERT INTO companies (name, display_name) VALUES ('bench', 'Bench');
INSERT INTO users (username, hashed_password, role, first_name, last_name, phone_number, company_id)
SELECT 'agent' || g, 'x', 'AGENT', 'First' || g, 'Last' || g, '0935' || lpad(g::text, 7, '0'),
       (SELECT id FROM companies WHERE name = 'bench') FROM generate_series(1, 20) g;
INSERT INTO numbers (phone_number)
SELECT '09' || lpad(((g::bigint * 7919) % 900000000 + 100000000)::text, 9, '0')
  FROM generate_series(1, $ROWS) g ON CONFLICT DO NOTHING;
INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at, agent_id)
SELECT (SELECT id FROM companies WHERE name = 'bench'), n.id, n.phone_number,
       (ARRAY['MISSED','CONNECTED','BUSY','FAILED','NOT_INTERESTED'])[1 + n.id % 5],
       now() - (n.id % 30) * interval '1 day',
       (SELECT min(id) FROM users WHERE role = 'AGENT') + n.id % 20
  FROM numbers n WHERE n.id % 3 = 0;
VACUUM ANALYZE;
SQL

bench_api
TOKEN="$(bench_login)"

queries=(
    "/api/numbers?company=bench"
    "/api/numbers?company=bench&search=912"
    "/api/numbers?company=bench&search=4567"
    "/api/numbers?company=bench&search=1234567"
    "/api/numbers?company=bench&search=First7"
    "/api/numbers?company=bench&status=MISSED"
    "/api/numbers?company=bench&status=IN_QUEUE"
    "/api/numbers?company=bench&sort_by=last_attempt_at"
    "/api/numbers?company=bench&sort_by=status&sort_order=asc&skip=1000"
    "/api/numbers?company=bench&start_date=2026-01-01&end_date=2030-01-01&search=55"
    "/api/numbers/stats?company=bench&status=MISSED"
    "/api/numbers/stats?company=bench&search=1234567"
)
wrk_table /api/numbers "${queries[@]}"
