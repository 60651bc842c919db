#!/usr/bin/env bash
# Local PostgreSQL cluster for `make run` / `make test`, run as the `postgres` user.
# Usage: pg.sh start DATADIR PORT | stop DATADIR | status DATADIR | remove DATADIR
#   PG_FAST=1  fsync/synchronous_commit/full_page_writes off (tests only)
#   PG_EXTRA_CONF  more postgresql.conf lines, written on each start (benchmark profiling)
#   PG_BIN     directory of initdb/pg_ctl (default: newest /usr/lib/postgresql/*/bin)
#
# Layout, next to DATADIR (in its parent P): P/postgresql.log and P/pgsock/ (the
# Unix socket; under /tmp when P's path is too long for a socket). When the
# postgres user cannot reach P (e.g. a repo under a 0700 home directory), the
# cluster lives in /var/lib/dialer-run/<hash of DATADIR>/ instead, DATADIR
# becomes a symlink to its data/ and P/postgresql.log a symlink to its log.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }
usage() { die "usage: pg.sh start DATADIR PORT | stop DATADIR | status DATADIR | remove DATADIR"; }

[[ $# -ge 2 ]] || usage
cmd="$1"
datadir="$(realpath -m -s "$2")"   # absolute, symlinks kept
parent="$(dirname "$datadir")"

if [[ -z "${PG_BIN:-}" ]]; then
    PG_BIN="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)"
    [[ -n "$PG_BIN" ]] || PG_BIN="$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")"
fi
[[ -x "$PG_BIN/pg_ctl" ]] || die "pg_ctl not found (set PG_BIN; run scripts/deps.sh)"

# as_pg CMD...: run CMD as the postgres user when we are root (PostgreSQL refuses
# root), from / so that an unreadable working directory does not matter.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}
own() { [[ $EUID -ne 0 ]] || chown "$@"; }

# Settings for the embedded server, sized from the machine (docs/operations.md, "PostgreSQL
# settings"): the defaults (128 MB of shared buffers, 4 MB of WAL buffers, a checkpoint every
# 1 GB of WAL) make a 1,000,000-number import write its WAL in small pieces and checkpoint in
# the middle. PG_SHARED_BUFFERS_MB overrides the size (default: a quarter of RAM, 128 MB..2 GB).
pg_tuning() {
    local mem_kb sb
    mem_kb="$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo 2>/dev/null || echo 0)"
    sb="${PG_SHARED_BUFFERS_MB:-$((mem_kb / 4 / 1024))}"
    ((sb >= 128)) || sb=128
    ((sb <= 2048)) || sb=2048
    echo "shared_buffers = ${sb}MB"
    echo "wal_buffers = 64MB"
    echo "max_wal_size = 8GB"
    echo "min_wal_size = 1GB"
    echo "checkpoint_timeout = 15min"
    echo "wal_compression = lz4"
}

# The real data directory (DATADIR itself, or the target of its symlink).
real_datadir() { realpath -m "$datadir"; }

pg_running() {
    local real; real="$(real_datadir)"
    [[ -f "$real/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" status -D "$real" >/dev/null 2>&1
}

# Where the log and socket go: beside DATADIR, or in the relocated base.
state_base() {
    if [[ -L "$datadir" ]]; then dirname "$(real_datadir)"; else echo "$parent"; fi
}

socket_dir() {
    local base dir port="$1"
    base="$(state_base)"
    dir="$base/pgsock"
    # sun_path holds 107 bytes: "<dir>/.s.PGSQL.<port>" must fit.
    if (( ${#dir} + 16 + ${#port} > 100 )); then
        dir="/tmp/dialer-pg-$(printf '%s' "$datadir" | sha256sum | cut -c1-12)"
    fi
    echo "$dir"
}

start() {
    local port="$1" real base log sock locale
    [[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
    mkdir -p "$parent"

    # Relocate when the postgres user cannot reach DATADIR's parent.
    if [[ $EUID -eq 0 && ! -L "$datadir" ]] && ! runuser -u postgres -- test -x "$parent" 2>/dev/null; then
        base="/var/lib/dialer-run/$(printf '%s' "$datadir" | sha256sum | cut -c1-16)"
        echo "pg.sh: postgres cannot reach $parent; using $base (DATADIR is a symlink to it)"
        if [[ -e "$datadir" ]]; then
            [[ -z "$(ls -A "$datadir")" ]] || die "$datadir exists and is not reachable by postgres; move it away"
            rmdir "$datadir"
        fi
        rm -rf "$base/data"             # a fresh DATADIR means a fresh cluster
        mkdir -p "$base/data"
        chmod 755 /var/lib/dialer-run "$base"
        ln -s "$base/data" "$datadir"
        touch "$base/postgresql.log"
        ln -sfn "$base/postgresql.log" "$parent/postgresql.log"
    fi

    real="$(real_datadir)"
    base="$(state_base)"
    log="$base/postgresql.log"
    sock="$(socket_dir "$port")"

    if pg_running; then
        if grep -qx "port = $port" "$real/dialer.conf" 2>/dev/null; then
            echo "pg.sh: already running on 127.0.0.1:$port ($datadir)"
            return 0
        fi
        echo "pg.sh: running on another port; restarting on $port"
        as_pg "$PG_BIN/pg_ctl" stop -D "$real" -m fast -w >/dev/null
    fi

    mkdir -p "$real" "$sock"
    touch "$log"
    own postgres:postgres "$real" "$sock" "$log"
    chmod 700 "$real"
    chmod 755 "$sock"

    if [[ ! -f "$real/PG_VERSION" ]]; then
        # Own everything in case a previous cluster was made by another user.
        own -R postgres:postgres "$real"
        locale=C.UTF-8
        locale -a 2>/dev/null | grep -ix 'c\.utf-\?8' >/dev/null || locale=C
        echo "pg.sh: initdb $datadir (locale $locale)"
        as_pg "$PG_BIN/initdb" -D "$real" --auth=trust --username=postgres \
            -E UTF8 --locale="$locale" >>"$log" 2>&1 \
            || { tail -n 30 "$log" >&2; die "initdb failed (log: $log)"; }
        echo "include_if_exists = 'dialer.conf'" >>"$real/postgresql.conf"
    fi

    # Settings rewritten on every start, so PORT and PG_FAST always apply.
    {
        echo "# written by scripts/pg.sh on each start"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$sock'"
        echo "max_connections = 200"
        pg_tuning
        # PG_EXTRA_CONF: more settings, one per line (benchmarks: e.g. pg_stat_statements)
        [[ -z "${PG_EXTRA_CONF:-}" ]] || printf '%s\n' "$PG_EXTRA_CONF"
        if [[ "${PG_FAST:-0}" == 1 ]]; then
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    } >"$real/dialer.conf"
    own postgres:postgres "$real/dialer.conf"

    echo "pg.sh: starting PostgreSQL on 127.0.0.1:$port (log: $log)"
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$real" -l "$log" -w -t 30 >/dev/null; then
        echo "--- tail of $log ---" >&2
        tail -n 30 "$log" >&2
        die "PostgreSQL did not start"
    fi
    local i
    for ((i = 0; i < 30; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && break
        sleep 1
    done
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        || { tail -n 30 "$log" >&2; die "PostgreSQL not ready after 30 s"; }

    # The application database.
    if [[ -z "$("$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'dialer'")" ]]; then
        "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres dialer
        echo "pg.sh: created database dialer"
    fi
}

stop() {
    local real; real="$(real_datadir)"
    if ! pg_running; then
        echo "pg.sh: not running ($datadir)"
        return 0
    fi
    echo "pg.sh: stopping PostgreSQL ($datadir)"
    as_pg "$PG_BIN/pg_ctl" stop -D "$real" -m fast -w -t 60 >/dev/null
}

case "$cmd" in
start)  [[ $# -eq 3 ]] || usage; start "$3" ;;
stop)   stop ;;
status)
    if pg_running; then
        echo "pg.sh: running ($datadir, $(grep '^port' "$(real_datadir)/dialer.conf" 2>/dev/null))"
    else
        echo "pg.sh: not running ($datadir)"; exit 3
    fi ;;
remove) # stop, then delete the cluster, its socket dir and relocated home, if any
    stop
    sock="$(sed -n "s/^unix_socket_directories = '\(.*\)'$/\1/p" "$(real_datadir)/dialer.conf" 2>/dev/null || true)"
    [[ -z "$sock" ]] || rm -rf "$sock"
    if [[ -L "$datadir" ]]; then
        base="$(dirname "$(real_datadir)")"
        rm -rf "$base"
        rm -f "$datadir" "$parent/postgresql.log"
    else
        rm -rf "$datadir"
    fi
    echo "pg.sh: removed $datadir" ;;
*) usage ;;
esac
