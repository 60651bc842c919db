#!/usr/bin/env bash
# Benchmark: GET /api/numbers (list) and /api/numbers/stats over 1,000,000 numbers, one third of
# them dialed by the company (SPEC §6: list with `search`, p50 < 20 ms).
# Starts its own PostgreSQL, Redis and release dialer-api on free ports in a temp dir, seeds the
# data, runs wrk per query (keep-alive; one connection for latency, then CONNS connections for
# throughput; DURATION seconds each) and prints a Markdown table.
# Usage: bench/numbers-list.sh   (env: ROWS=1000000 CONNS=8 DURATION=5)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
ROWS="${ROWS:-1000000}"
CONNS="${CONNS:-8}"
DURATION="${DURATION:-5}"

scripts/deps.sh
command -v wrk >/dev/null || { echo "bench: wrk is required (apt-get install wrk)" >&2; exit 1; }
make -j2 all >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dialer-bench.XXXXXX")"
chmod 755 "$TMP"
API_PID=""
cleanup() {
    [[ -n "$API_PID" ]] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null || true
    scripts/redis.sh stop "$TMP/redis" >/dev/null 2>&1 || true
    scripts/pg.sh remove "$TMP/pg" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

PG_PORT="$(free_port)"; REDIS_PORT="$(free_port)"; API_PORT="$(free_port)"
scripts/pg.sh start "$TMP/pg" "$PG_PORT" >/dev/null
scripts/redis.sh start "$TMP/redis" "$REDIS_PORT" >/dev/null
export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/dialer"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export DIALER_ENV_FILE=/dev/null SECRET_KEY="$(gen_secret)" DIALER_TOKEN="$(gen_secret)"
export PORT="$API_PORT" BIND_ADDRESS=127.0.0.1 LOG_LEVEL=warn DIALER_SCHEMA_DIR="$ROOT/schema"
bin/dialerctl migrate >/dev/null
bin/dialerctl create-admin bench benchpass123 --superuser >/dev/null

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

bin/dialer-api >"$TMP/api.log" 2>&1 &
API_PID=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$API_PORT/health" >/dev/null && break; sleep 0.2; done
TOKEN="$(curl -sf "http://127.0.0.1:$API_PORT/api/auth/login" -H 'Content-Type: application/json' \
    -d '{"username":"bench","password":"benchpass123"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')"

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
# wrk_row URL CONNS -> "req/s p50 p99"
wrk_row() {
    local out non2xx
    out="$(wrk -t"$(( $2 < 2 ? 1 : 2 ))" -c"$2" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "$1")"
    non2xx="$(awk '/Non-2xx/ {print $5}' <<<"$out")"
    [[ -z "$non2xx" ]] || { echo "bench: $1 answered non-2xx: $non2xx" >&2; exit 1; }
    echo "$(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "50%" {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out")"
}
echo "| query | 1 conn: p50 | p99 | req/s | $CONNS conns: p50 | p99 | req/s |"
echo "|---|---|---|---|---|---|---|"
for q in "${queries[@]}"; do
    read -r r1 p501 p991 <<<"$(wrk_row "http://127.0.0.1:$API_PORT$q" 1)"
    read -r rn p50n p99n <<<"$(wrk_row "http://127.0.0.1:$API_PORT$q" "$CONNS")"
    echo "| \`${q#/api/numbers}\` | $p501 | $p991 | $r1 | $p50n | $p99n | $rn |"
done
