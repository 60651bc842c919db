# shellcheck shell=bash
# PG_PROFILE=1: pg_stat_statements (trigger statements included) in the servers bench_start or a
# script's own pg.sh start brings up; pg_profile_reset before the measured part, pg_profile_print after.
if [[ "${PG_PROFILE:-0}" == 1 ]]; then
    export PG_EXTRA_CONF="shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all"
fi
pg_profile_reset() {
    [[ "${PG_PROFILE:-0}" == 1 ]] || return 0
    psql -q "$DATABASE_URL" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
      SELECT pg_stat_statements_reset()" >/dev/null
}
pg_profile_print() { # the statements that took the database's time since pg_profile_reset
    [[ "${PG_PROFILE:-0}" == 1 ]] || return 0
    psql -q "$DATABASE_URL" -c "SELECT round(total_exec_time) AS ms, calls, round((total_exec_time / calls)::numeric, 2)
      AS ms_per_call, left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS query FROM pg_stat_statements
      ORDER BY total_exec_time DESC LIMIT 15" || true
}
