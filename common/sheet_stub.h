/*
 * TEMPORARY: the reader interface of common/sheet.h (branch `readers`, being written in
 * parallel), with a minimal CSV-only implementation in sheet_stub.c so that the import worker
 * can be built and tested. Deleted when `readers` is merged; the import worker then includes
 * sheet.h instead. Same names and contracts as sheet.h.
 */
#ifndef DIALER_SHEET_STUB_H
#define DIALER_SHEET_STUB_H

#include <stddef.h>

#include "common.h"

enum sheet_format { SHEET_CSV, SHEET_XLSX };

/* Guess from the file name (.csv/.xlsx, case-insensitive) or else the first bytes ("PK\3\4" = xlsx). */
enum sheet_format sheet_detect(const char *path, const char *filename);

/* Called once per data row with the phone column's value (not NUL-terminated, may be empty) and
 * its 1-based line/row number in the file; return non-zero to stop. */
typedef int (*sheet_row_fn)(void *ctx, long line, const char *value, size_t len);

/* Streams the file; memory flat in file size. Returns 0, or -1 with a clear message in err. */
int sheet_read_phones(const char *path, enum sheet_format fmt, sheet_row_fn fn, void *ctx, char *err,
                      size_t errlen) MUSTCHECK;

/* Progress of the next sheet_read_phones on this thread: fn(ctx, bytes done, bytes total). */
void sheet_set_progress(void (*fn)(void *ctx, long long done, long long total), void *ctx);

#endif
