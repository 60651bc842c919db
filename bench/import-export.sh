#!/usr/bin/env bash
# Benchmark: import of a ROWS-row number file end to end (SPEC §6: 1,000,000-row CSV ≤ 5 s, XLSX
# ≤ 10 s, memory flat in file size), and export when bench/export.sh exists (EXPORT=0 skips it).
# Starts its own PostgreSQL (fsync on, as in production), Redis, the release dialer-api and
# dialer-import on free ports in a temp dir (bench/lib.sh). bench/import-gen.c writes a CSV and an
# XLSX (inline strings) of ROWS rows with mixed formats (09…, +98 9xx xxx xxxx, 00989…, 9…, dashes,
# Persian and Arabic-Indic digits; numeric cells in the XLSX), ~3% invalid and ~2% repeats, and
# prints its counts. Each file is imported twice: into an empty pool, then again (every number a
# duplicate). Per import: a fresh dialer-import (so its VmHWM is this import's peak RSS), a
# CHECKPOINT, then the clock runs from the start of `curl -F file=@…` (POST /api/numbers/upload,
# JOB_WAIT_SECONDS=600: the answer is the result) to the answer; a 202 is polled on
# GET /api/jobs/{id}. The counts are checked against the generator's and the pool's size.
# Columns: end to end; upload = curl start → job row created (the body sent and saved); worker =
# the job's run in dialer-import (its job_ended line); the worker's own phases from its import_done
# line (read = reading, normalizing, deduplicating and sorting; COPY into the temp table; insert =
# the INSERT … ON CONFLICT into numbers; commit = the job's completion and COMMIT).
# Usage: bench/import-export.sh   (env: ROWS=1000000 FORMATS="csv xlsx" EXPORT=1)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
ROWS="${ROWS:-1000000}"
FORMATS="${FORMATS:-csv xlsx}"

# shellcheck disable=SC2046
cc -std=gnu11 -O2 -Wall -Wextra -Werror bench/import-gen.c $(pkg-config --cflags --libs xlsxwriter) \
    -o "$TMP/import-gen"

bench_start
export DATA_DIR="$TMP/data" JOB_WAIT_SECONDS=600 UPLOAD_MAX_BYTES=$((512 * 1024 * 1024))
mkdir -p "$DATA_DIR"
bench_api
API_PID="${BENCH_PIDS[-1]}"
TOKEN="$(bench_login)"
PSQL=(psql -Atq "$DATABASE_URL")

declare -A GEN
for fmt in $FORMATS; do
    echo "bench: generating $ROWS rows of $fmt ..." >&2
    GEN[$fmt]="$("$TMP/import-gen" "$fmt" "$TMP/numbers.$fmt" "$ROWS")"
    echo "bench: $(basename "$TMP/numbers.$fmt"): $(stat -c %s "$TMP/numbers.$fmt") bytes, ${GEN[$fmt]}" >&2
done

# kv KEY "k=v k=v …" -> v
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n1; }
now() { date +%s.%N; }
hwm_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# import FILE FMT PASS: one timed import; prints a table row, fails on a wrong count
import_one() {
    local file="$1" fmt="$2" pass="$3" gen="${GEN[$2]}" wpid t0 t1 code body id state res
    local rows unique dups invalid want_ins want_dup before after
    rows="$(kv rows "$gen")"; unique="$(kv unique "$gen")"; dups="$(kv duplicates "$gen")"; invalid="$(kv invalid "$gen")"
    before="$("${PSQL[@]}" -c "SELECT count(*) FROM numbers")"
    if [[ "$pass" == empty ]]; then
        [[ "$before" -eq 0 ]] || { echo "bench: the pool is not empty ($before)" >&2; exit 1; }
        want_ins="$unique"; want_dup="$dups"
    else
        want_ins=0; want_dup=$((unique + dups))
    fi
    : >"$TMP/import.log"
    LOG_LEVEL=info bin/dialer-import >>"$TMP/import.log" 2>&1 &
    wpid=$!
    BENCH_PIDS+=("$wpid")
    for _ in $(seq 100); do grep -q 'event=started' "$TMP/import.log" && break; sleep 0.1; done
    "${PSQL[@]}" -c "CHECKPOINT" >/dev/null
    sleep 1

    t0="$(now)"
    code="$(curl -s -o "$TMP/answer.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        -F "file=@$file" "$API_URL/api/numbers/upload")"
    if [[ "$code" == 202 ]]; then
        id="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])' <"$TMP/answer.json")"
        while :; do
            curl -sf -o "$TMP/answer.json" -H "Authorization: Bearer $TOKEN" "$API_URL/api/jobs/$id"
            state="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' <"$TMP/answer.json")"
            [[ "$state" == completed || "$state" == failed ]] && break
            sleep 0.05
        done
        [[ "$state" == completed ]] || { echo "bench: job $id failed: $(cat "$TMP/answer.json")" >&2; exit 1; }
        res="$(python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["result"]))' <"$TMP/answer.json")"
    elif [[ "$code" == 200 ]]; then
        res="$(cat "$TMP/answer.json")"
    else
        echo "bench: upload answered $code: $(head -c 500 "$TMP/answer.json")" >&2; exit 1
    fi
    t1="$(now)"
    local whwm ahwm
    whwm="$(hwm_mb "$wpid")"; ahwm="$(hwm_mb "$API_PID")"
    kill -TERM "$wpid"; wait "$wpid" 2>/dev/null || true
    unset 'BENCH_PIDS[-1]'

    # the counts: the job's result against the generator's, and the pool's size
    local got
    got="$(python3 -c 'import json,sys; r = json.loads(sys.argv[1]); print(r["rows"], r["inserted"], r["duplicates"], r["invalid"])' "$res")"
    after="$("${PSQL[@]}" -c "SELECT count(*) FROM numbers")"
    read -r g_rows g_ins g_dup g_inv <<<"$got"
    if [[ "$g_rows $g_ins $g_dup $g_inv" != "$rows $want_ins $want_dup $invalid" ||
          $((g_ins + g_dup + g_inv)) -ne "$rows" || $((after - before)) -ne "$g_ins" ]]; then
        echo "bench: wrong counts: got rows/inserted/duplicates/invalid $got, wanted" \
             "$rows $want_ins $want_dup $invalid; pool $before -> $after" >&2
        exit 1
    fi
    # the job row's creation (same clock), the worker's run and its phases (its log lines)
    local c_at run_ms phases
    c_at="$("${PSQL[@]}" -c "SELECT extract(epoch FROM created_at) FROM jobs ORDER BY id DESC LIMIT 1")"
    run_ms="$(kv ms "$(grep -o 'event=job_ended.*' "$TMP/import.log" | tail -n1)")"
    phases="$(grep -o 'event=import_done.*' "$TMP/import.log" | tail -n1)"
    awk -v f="$fmt" -v p="$pass" -v n="$rows" -v a="$t0" -v b="$t1" -v c="$c_at" -v run="$run_ms" \
        -v ins="$g_ins" -v dup="$g_dup" -v inv="$g_inv" -v w="$whwm" -v api="$ahwm" \
        -v rd="$(kv read_ms "$phases")" -v cp="$(kv copy_ms "$phases")" -v is="$(kv insert_ms "$phases")" \
        -v cm="$(kv commit_ms "$phases")" '
        function ms(x) { return x == "" ? "-" : sprintf("%.2f", x / 1000) }
        BEGIN { printf "| %s | %s | %d | **%.2f s** | %.0f | %.2f | %.2f | %s / %s / %s / %s | %d / %d / %d | %s MB | %s MB |\n",
                f, p, n, b - a, n / (b - a), c - a, run / 1000, ms(rd), ms(cp), ms(is), ms(cm), ins, dup, inv, w, api }'
}

# reference: PostgreSQL alone loading the same distinct numbers, sorted, with COPY (the fastest
# path it has) into an empty copy of numbers (its indexes, constraints and fillfactor), from psql
# on the same machine in the same run: the floor any import of this file into this table has.
REFS=()
reference() {
    local t0 t1 n
    "${PSQL[@]}" -c "COPY (SELECT phone_number FROM numbers ORDER BY phone_number) TO STDOUT" >"$TMP/ref.txt"
    n="$(wc -l <"$TMP/ref.txt")"
    "${PSQL[@]}" -c "SET client_min_messages = warning; DROP TABLE IF EXISTS ref_numbers;
        CREATE TABLE ref_numbers (LIKE numbers INCLUDING ALL) WITH (fillfactor = 90); CHECKPOINT" >/dev/null
    t0="$(now)"
    "${PSQL[@]}" -c "\\copy ref_numbers (phone_number) FROM '$TMP/ref.txt'"
    t1="$(now)"
    "${PSQL[@]}" -c "DROP TABLE ref_numbers" >/dev/null
    REFS+=("$(awk -v f="$1" -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "| %s | %d | %.2f s |", f, n, b - a }')")
}

echo
echo "| file | pool | rows | end to end | rows/s | upload (s) | worker (s) | read / COPY / insert / commit (s) | inserted / duplicates / invalid | dialer-import peak RSS | dialer-api peak RSS (so far) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for fmt in $FORMATS; do
    "${PSQL[@]}" -c "SET client_min_messages = warning; TRUNCATE numbers CASCADE" >/dev/null
    import_one "$TMP/numbers.$fmt" "$fmt" empty
    reference "$fmt"
    import_one "$TMP/numbers.$fmt" "$fmt" full
done
echo
echo "| reference after the $ROWS-row import of | numbers | COPY into an empty copy of numbers (psql) |"
echo "|---|---|---|"
printf '%s\n' "${REFS[@]}"

if [[ "${EXPORT:-1}" == 1 && -x bench/export.sh ]]; then
    echo
    echo "bench: bench/export.sh" >&2
    bench/export.sh
fi
