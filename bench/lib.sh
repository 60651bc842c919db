# shellcheck shell=bash
# Shared by the bench scripts: a throwaway PostgreSQL, Redis and release dialer-api on free ports.
# Usage: source bench/lib.sh; bench_start; ...; (cleanup runs on exit)
# After bench_start: $DATABASE_URL, $REDIS_URL, $API_PORT, $API_URL, $TMP, $DIALER_TOKEN, bench_login.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

scripts/deps.sh >&2
command -v wrk >/dev/null || { echo "bench: wrk is required (apt-get install wrk)" >&2; exit 1; }
make -j2 all >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dialer-bench.XXXXXX")"
chmod 755 "$TMP"
BENCH_PIDS=()
bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    scripts/redis.sh stop "$TMP/redis" >/dev/null 2>&1 || true
    scripts/pg.sh remove "$TMP/pg" >/dev/null 2>&1 || true
    if [[ -n "${BENCH_LOGS:-}" ]]; then # BENCH_LOGS=DIR: keep the processes' logs there
        mkdir -p "$BENCH_LOGS" && cp "$TMP"/*.log "$BENCH_LOGS"/ 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap bench_cleanup EXIT

# shellcheck source=bench/pgprofile.sh
source bench/pgprofile.sh

# bench_start: servers, migrations, a superuser "bench", then the API (extra env may be exported first).
bench_start() {
    PG_PORT="$(free_port)"; REDIS_PORT="$(free_port)"; API_PORT="$(free_port)"
    scripts/pg.sh start "$TMP/pg" "$PG_PORT" >/dev/null
    scripts/redis.sh start "$TMP/redis" "$REDIS_PORT" >/dev/null
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/dialer"
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    export DIALER_ENV_FILE=/dev/null SECRET_KEY="$(gen_secret)" DIALER_TOKEN="$(gen_secret)"
    export PORT="$API_PORT" BIND_ADDRESS=127.0.0.1 LOG_LEVEL="${LOG_LEVEL:-warn}" DIALER_SCHEMA_DIR="$ROOT/schema"
    API_URL="http://127.0.0.1:$API_PORT"
    bin/dialerctl migrate >/dev/null
    bin/dialerctl create-admin bench benchpass123 --superuser >/dev/null
}

# bench_api: start the API (after any seeding) and wait for /health.
bench_api() {
    bin/dialer-api >"$TMP/api.log" 2>&1 &
    BENCH_PIDS+=($!)
    for _ in $(seq 50); do curl -sf "$API_URL/health" >/dev/null && return 0; sleep 0.2; done
    echo "bench: the API did not start (see $TMP/api.log)" >&2
    return 1
}

# bench_login: print a superuser JWT.
bench_login() {
    curl -sf "$API_URL/api/auth/login" -H 'Content-Type: application/json' \
        -d '{"username":"bench","password":"benchpass123"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/'
}

# bench_bare PORT: a bare evhttp server answering every request with a small JSON (the reference).
bench_bare() {
    cc -O2 -o "$TMP/bare-evhttp" bench/bare-evhttp.c $(pkg-config --cflags --libs libevent)
    "$TMP/bare-evhttp" "$1" &
    BENCH_PIDS+=($!)
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$1/" >/dev/null && return 0; sleep 0.1; done
    return 1
}

# wrk_table PREFIX QUERY...: a markdown table of each query (API_URL + query, $TOKEN) with one
# connection (latency) and CONNS connections (throughput); the query shown without PREFIX. Exits when
# a query answers non-2xx.
wrk_table() {
    local prefix="$1" q r1 p501 p991 bad1 rn p50n p99n badn
    shift
    echo "| query | 1 conn: p50 | p99 | req/s | $CONNS conns: p50 | p99 | req/s |"
    echo "|---|---|---|---|---|---|---|"
    for q in "$@"; do
        read -r r1 p501 p991 bad1 <<<"$(wrk_row "$API_URL$q" 1 -H "Authorization: Bearer $TOKEN")"
        read -r rn p50n p99n badn <<<"$(wrk_row "$API_URL$q" "$CONNS" -H "Authorization: Bearer $TOKEN")"
        [[ -z "$bad1$badn" ]] || { echo "bench: $q answered non-2xx ($bad1 $badn)" >&2; exit 1; }
        echo "| \`${q#"$prefix"}\` | $p501 | $p991 | $r1 | $p50n | $p99n | $rn |"
    done
}

# wrk_row URL CONNS [wrk args...] -> "req/s p50 p99 non2xx"
wrk_row() {
    local url="$1" conns="$2" out
    shift 2
    out="$(wrk -t"$(( conns < 2 ? 1 : 2 ))" -c"$conns" -d"${DURATION:-10}s" --latency "$@" "$url")"
    echo "$(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "50%" {print $2}' <<<"$out")" \
         "$(awk '$1 == "99%" {print $2}' <<<"$out") $(awk '/Non-2xx/ {print $5}' <<<"$out")"
}
