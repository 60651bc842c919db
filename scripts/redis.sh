#!/usr/bin/env bash
# Local Redis for `make run` / `make test`: loopback only, AOF on (fsync every second).
# Usage: redis.sh start DIR PORT | stop DIR | status DIR
# DIR holds redis.conf, redis.pid, redis.log and the AOF (appendonlydir/).
set -euo pipefail

die() { echo "redis.sh: $*" >&2; exit 1; }
usage() { die "usage: redis.sh start DIR PORT | stop DIR | status DIR"; }

[[ $# -ge 2 ]] || usage
cmd="$1"
dir="$(realpath -m "$2")"
conf="$dir/redis.conf"
pidfile="$dir/redis.pid"
log="$dir/redis.log"

command -v redis-server >/dev/null 2>&1 || die "redis-server not found (run scripts/deps.sh)"

# The pid of our redis-server, if it is alive.
live_pid() {
    local pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && grep -q redis "/proc/$pid/comm" 2>/dev/null && echo "$pid"
}
conf_port() { sed -n 's/^port //p' "$conf" 2>/dev/null; }
ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }

start() {
    local port="$1" i
    [[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
    if [[ -n "$(live_pid)" ]]; then
        if [[ "$(conf_port)" == "$port" ]] && ping "$port"; then
            echo "redis.sh: already running on 127.0.0.1:$port ($dir)"
            return 0
        fi
        stop
    fi
    mkdir -p "$dir"
    cat >"$conf" <<EOF
# written by scripts/redis.sh on each start
bind 127.0.0.1
port $port
protected-mode no
daemonize yes
pidfile $pidfile
logfile $log
dir $dir
appendonly yes
appendfsync everysec
save ""
EOF
    echo "redis.sh: starting Redis on 127.0.0.1:$port (log: $log)"
    redis-server "$conf" || { tail -n 20 "$log" >&2 || true; die "redis-server failed"; }
    for ((i = 0; i < 100; i++)); do
        ping "$port" && return 0
        sleep 0.1
    done
    echo "--- tail of $log ---" >&2
    tail -n 20 "$log" >&2 || true
    die "Redis did not answer PING within 10 s"
}

stop() {
    local pid port i
    pid="$(live_pid || true)"
    if [[ -z "$pid" ]]; then
        echo "redis.sh: not running ($dir)"
        return 0
    fi
    echo "redis.sh: stopping Redis ($dir)"
    port="$(conf_port)"
    # SHUTDOWN NOSAVE skips the RDB snapshot; the AOF is still flushed.
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "redis.sh: pid $pid still alive after 10 s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

case "$cmd" in
start)  [[ $# -eq 3 ]] || usage; start "$3" ;;
stop)   stop ;;
status)
    if [[ -n "$(live_pid || true)" ]]; then
        echo "redis.sh: running ($dir, port $(conf_port))"
    else
        echo "redis.sh: not running ($dir)"; exit 3
    fi ;;
*) usage ;;
esac
