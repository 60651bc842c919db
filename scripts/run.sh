#!/usr/bin/env bash
# `make run`: install packages, build, start local PostgreSQL and Redis under .run/
# (unless DATABASE_URL / REDIS_URL are set), migrate, bootstrap the first admin, and
# run every Procfile process under supervisord in the foreground. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

scripts/deps.sh
make -j2 all

# shellcheck source=scripts/env.sh
source scripts/env.sh
load_dotenv "$ROOT/.env"

RUN_DIR="$ROOT/.run"
mkdir -p "$RUN_DIR"
chmod 755 "$RUN_DIR"   # the postgres user must be able to reach .run/pg

# One `make run` per checkout. fd 9 holds the lock; every long-lived child gets
# `9>&-` so that a server left running cannot keep the lock.
exec 9>"$RUN_DIR/run.lock"
flock -n 9 || { echo "run.sh: another 'make run' is using $RUN_DIR" >&2; exit 1; }

# Secrets: from the environment / .env, else kept in .run/ across runs.
if [[ -z "${SECRET_KEY:-}" ]]; then
    SECRET_KEY="$(read_or_create_secret "$RUN_DIR/secret_key")"
fi
token_generated=0
if [[ -z "${DIALER_TOKEN:-}" ]]; then
    [[ -s "$RUN_DIR/dialer_token" ]] || token_generated=1
    DIALER_TOKEN="$(read_or_create_secret "$RUN_DIR/dialer_token")"
fi
export SECRET_KEY DIALER_TOKEN
export PORT="${PORT:-8000}"
export DEFAULT_COMPANY="${DEFAULT_COMPANY:-default}"

if port_in_use "$PORT"; then
    echo "run.sh: port $PORT is already in use; set PORT=... (in the environment or .env)" >&2
    exit 1
fi

# Teardown: supervisord first (it stops the processes), then the servers we run.
SUP_PID=""
OWN_PG=0
OWN_REDIS=0
cleanup() {
    local rc=$?
    trap '' INT TERM   # a second Ctrl-C must not cut the teardown short
    trap - EXIT
    if [[ -n "$SUP_PID" ]] && kill -0 "$SUP_PID" 2>/dev/null; then
        echo "run.sh: stopping processes..."
        kill -TERM "$SUP_PID" 2>/dev/null || true
        wait "$SUP_PID" 2>/dev/null || true
    fi
    if [[ $OWN_REDIS == 1 ]]; then scripts/redis.sh stop "$RUN_DIR/redis" || true; fi
    if [[ $OWN_PG == 1 ]]; then scripts/pg.sh stop "$RUN_DIR/pg" || true; fi
    echo "run.sh: stopped"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z "${DATABASE_URL:-}" ]]; then
    PG_PORT="${PG_PORT:-55432}"
    OWN_PG=1
    scripts/pg.sh start "$RUN_DIR/pg" "$PG_PORT" 9>&-
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/dialer"
fi
if [[ -z "${REDIS_URL:-}" ]]; then
    REDIS_PORT="${REDIS_PORT:-56379}"
    OWN_REDIS=1
    scripts/redis.sh start "$RUN_DIR/redis" "$REDIS_PORT" 9>&-
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
fi

bin/dialerctl migrate 9>&-     # schema migrations + the DEFAULT_COMPANY
bin/dialerctl bootstrap 9>&-   # first superuser when there are no users

scripts/supervisor-conf.sh Procfile "$RUN_DIR/supervisord.conf" "$RUN_DIR"

mask_url() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }
echo
echo "================================================================"
if [[ $token_generated == 1 ]]; then
    echo " Dialer token (DIALER_TOKEN), generated and kept in .run/dialer_token:"
    echo "   $DIALER_TOKEN"
fi
echo " API:        http://127.0.0.1:$PORT   (health: /health, /api/health)"
echo " Database:   $(mask_url "$DATABASE_URL")"
echo " Redis:      $(mask_url "$REDIS_URL")"
echo " Logs:       process output below; supervisor .run/supervisord.log"
[[ $OWN_PG == 0 ]] || echo "             PostgreSQL .run/postgresql.log"
[[ $OWN_REDIS == 0 ]] || echo "             Redis .run/redis/redis.log"
echo " Processes:  supervisorctl -c .run/supervisord.conf status"
echo "             (restart dialer:results-0, stop dialer:api-0, start all, ...)"
echo " Ctrl-C stops everything."
echo "================================================================"
echo

# Run in the background and wait, so that INT/TERM reach our trap at once.
supervisord -n -c "$RUN_DIR/supervisord.conf" 9>&- &
SUP_PID=$!
wait "$SUP_PID"
