#!/usr/bin/env bash
# Reader speed and memory (common/sheet.c, not the import end to end): builds
# bench/sheet-read.c against the release libcommon.a, generates ROWS-row CSV
# and XLSX files (shared strings and inline strings) in a temp dir, and reads
# each with a counting callback under /usr/bin/time -v.
# Usage: bench/sheet-read.sh [ROWS]   (default 1000000)   KEEP=1 keeps the files
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"

make -s -j2 build/release/libcommon.a
TMP="$(mktemp -d "${TMPDIR:-/tmp}/sheet-bench.XXXXXX")"
[[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$TMP"' EXIT
BIN="$TMP/sheet-read"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -D_GNU_SOURCE -Icommon bench/sheet-read.c build/release/libcommon.a \
    $(pkg-config --cflags --libs libzip expat xlsxwriter libcrypto) -lm -o "$BIN"

"$BIN" gen-csv "$TMP/numbers.csv" "$ROWS"
"$BIN" gen-xlsx "$TMP/numbers.xlsx" "$ROWS"
"$BIN" gen-xlsx "$TMP/numbers-inline.xlsx" "$ROWS" cm
ls -l "$TMP"/numbers*

for f in numbers.csv numbers.xlsx numbers-inline.xlsx; do
    /usr/bin/time -v "$BIN" read "$TMP/$f" 2>"$TMP/time.txt"
    grep -E "Maximum resident|Elapsed \(wall|User time|System time" "$TMP/time.txt" | sed 's/^\s*/    /'
done
