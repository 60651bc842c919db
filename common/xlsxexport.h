/*
 * The numbers export (COMPAT §2.9, SPEC §6): a selection streamed out of
 * PostgreSQL through a cursor, batch by batch, into an XLSX file written by
 * libxlsxwriter in constant-memory mode. Memory stays flat in the row count.
 * Shared by the export worker and `dialerctl export`.
 */
#ifndef DIALER_XLSXEXPORT_H
#define DIALER_XLSXEXPORT_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "common.h"
#include "selection.h"

/* The download (COMPAT §2.9). */
#define XLSXEXPORT_FILE_NAME    "numbers_export.xlsx"
#define XLSXEXPORT_CONTENT_TYPE "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

/* Rows per sheet after the header: Excel's limit is 1,048,576 rows. A bigger
 * export goes on in sheets "numbers_2", "numbers_3", ... with the same header. */
#define XLSXEXPORT_SHEET_ROWS 1048575L

/* Columns of the sheet, in order (the original's five first, COMPAT preface 7). */
#define XLSXEXPORT_NCOLS 13
extern const char *const xlsxexport_headers[XLSXEXPORT_NCOLS];

/*
 * Progress: called with the rows written so far and the total the selection
 * matched (counted in the same snapshot), before the first row, then every
 * `every` rows, and once at the end. Returning non-zero stops the export
 * (the file is removed; xlsxexport_write returns -1 with "canceled").
 */
typedef int (*xlsxexport_progress_fn)(void *arg, long done, long total);

struct xlsxexport_opts {
	const char *path;                /* the file written (created or truncated; removed on failure) */
	const char *tmpdir;              /* libxlsxwriter's scratch files; NULL = the system default */
	long every;                      /* progress every this many rows (0 = 10,000) */
	xlsxexport_progress_fn progress; /* may be NULL */
	void *arg;
};

/*
 * Writes the numbers of sel (built here with selection_build; company_id 0 =
 * no per-company columns, status "IN_QUEUE") to opts->path, in sel's order,
 * inside one REPEATABLE READ, READ ONLY transaction on db (which must be idle
 * and is idle again afterwards). *rows gets the data rows written. Returns 0,
 * or -1 with a one-line reason in err (a database error, a write error,
 * "canceled"); the file is then removed.
 */
int xlsxexport_write(PGconn *db, const struct selection *sel, const struct xlsxexport_opts *opts, long *rows, char *err,
                     size_t errlen) MUSTCHECK;

#endif
