#!/usr/bin/env bash
# `make test`: install packages, build under ASan+UBSan, start a throwaway PostgreSQL
# and Redis on free ports in a temp dir, run every unit then integration test binary.
# Usage: scripts/test.sh [SUBSTRING...]  (only tests whose name contains one of them)
#   TEST_TIMEOUT=300  seconds per test binary;  KEEP_TEST_TMP=1  keep the temp dir
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

scripts/deps.sh
make -j2 asan

# shellcheck source=scripts/env.sh
source scripts/env.sh

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dialer-test.XXXXXX")"
chmod 755 "$TMP"   # the postgres user must be able to reach $TMP/pg
TEST_PID=""

# Teardown, also on failure and Ctrl-C: the running test (its process group),
# Redis, PostgreSQL, anything else the tests left behind, then the temp dir.
cleanup() {
    local rc=$? proc pid e leftovers=()
    trap '' INT TERM
    trap - EXIT
    [[ $rc -lt 128 ]] || echo "test.sh: interrupted, cleaning up" >&2
    if [[ -n "$TEST_PID" ]] && kill -0 "$TEST_PID" 2>/dev/null; then
        kill -TERM -- "-$TEST_PID" 2>/dev/null || true
        wait "$TEST_PID" 2>/dev/null || true
    fi
    scripts/redis.sh stop "$TMP/redis" >/dev/null 2>&1 || true
    scripts/pg.sh remove "$TMP/pg" >/dev/null 2>&1 || true
    # Leftovers (API processes, supervisord, extra servers) carry our DIALER_TEST_TMP.
    for proc in /proc/[0-9]*; do
        pid="${proc#/proc/}"
        [[ "$pid" != "$$" ]] || continue
        while IFS= read -r -d '' e; do
            [[ "$e" == "DIALER_TEST_TMP=$TMP" ]] && { leftovers+=("$pid"); break; }
        done 2>/dev/null <"$proc/environ" || true
    done
    for pid in "${leftovers[@]}"; do
        echo "test.sh: killing leftover process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80)" >&2
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ "${KEEP_TEST_TMP:-0}" == 1 ]]; then
        echo "test.sh: kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Servers first, so that they do not inherit the test environment below.
PG_PORT="$(free_port)"
REDIS_PORT="$(free_port)"
PG_FAST=1 scripts/pg.sh start "$TMP/pg" "$PG_PORT"
scripts/redis.sh start "$TMP/redis" "$REDIS_PORT"

export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/dialer"
export TEST_PG_ADMIN_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export TEST_PG_DIR="$TMP/pg" TEST_PG_PORT="$PG_PORT"
export TEST_REDIS_DIR="$TMP/redis" TEST_REDIS_PORT="$REDIS_PORT"
export DIALER_BIN_DIR="$ROOT/build/asan/bin"
export SUPERVISOR_BIN_DIR="$ROOT/build/asan/bin"
export DIALER_TEST_TMP="$TMP"
export DIALER_ROOT="$ROOT"
export DIALER_ENV_FILE=/dev/null   # a developer's .env must not leak into the tests
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
timeout_s="${TEST_TIMEOUT:-300}"

# Test binaries built from a tests/<kind>/test_*.c that still exists, unit first.
tests=()
for kind in unit integration; do
    for bin in "build/asan/tests/$kind"/test_*; do
        [[ -f "$bin" && -x "$bin" && -f "tests/$kind/${bin##*/}.c" ]] || continue
        if [[ $# -gt 0 ]]; then
            match=0
            for pat in "$@"; do [[ "$bin" == *"$pat"* ]] && match=1; done
            [[ $match == 1 ]] || continue
        fi
        tests+=("$bin")
    done
done
if [[ ${#tests[@]} -eq 0 ]]; then
    echo "test.sh: no test binaries found under build/asan/tests/" >&2
    exit 1
fi

echo "test.sh: PostgreSQL 127.0.0.1:$PG_PORT, Redis 127.0.0.1:$REDIS_PORT, temp $TMP"
passed=0
failed=0
failures=()
for bin in "${tests[@]}"; do
    name="${bin#build/asan/tests/}"
    echo "=== RUN $name"
    start=$SECONDS
    # In the background (timeout makes its own process group) so Ctrl-C reaches our trap.
    timeout -k 10 "$timeout_s" "$bin" </dev/null >"$TMP/test-output.txt" 2>&1 &
    TEST_PID=$!
    rc=0
    wait "$TEST_PID" || rc=$?
    TEST_PID=""
    took=$((SECONDS - start))
    cat "$TMP/test-output.txt"
    # cmocka does not count a failed group setup/teardown (e.g. a process that exited with a
    # sanitizer report) in its exit status: its output does
    if [[ $rc -eq 0 ]] && grep -qE '^\[  (FAILED|ERROR)   \]|^\[  FAILED  \]' "$TMP/test-output.txt"; then
        rc=1
    fi
    if [[ $rc -eq 0 ]]; then
        echo "PASS $name (${took}s)"
        passed=$((passed + 1))
    else
        why="exit $rc"
        [[ $rc -le 128 ]] || why="killed by signal $((rc - 128))"
        [[ $rc -ne 124 ]] || why="timed out after ${timeout_s}s"
        echo "FAIL $name ($why, ${took}s)"
        failed=$((failed + 1))
        failures+=("$name")
    fi
done

echo
[[ $failed -eq 0 ]] || echo "failed: ${failures[*]}"
echo "TOTAL: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
