/*
 * Streaming readers for uploaded number files (CSV and XLSX): find the phone
 * column and hand each data row's value to a callback, with memory flat in the
 * file's size and every limit a hostile file could push on checked.
 */
#ifndef DIALER_SHEET_H
#define DIALER_SHEET_H

#include "common.h"

enum sheet_format { SHEET_CSV, SHEET_XLSX };

/*
 * Guesses the format from filename (or, when filename is NULL, from path):
 * ".csv" → CSV, ".xlsx"/".xlsm"/".xls" → XLSX (case-insensitive); otherwise
 * from the first bytes of path (a zip's "PK\3\4" or an OLE2 file → XLSX), else
 * CSV. Never fails: an unreadable file is reported by sheet_read_phones.
 */
enum sheet_format sheet_detect(const char *path, const char *filename);

/*
 * Called once per data row with the phone column's value and the row's
 * 1-based line (CSV: the physical line the record starts on; XLSX: the row's
 * r attribute). value is borrowed for the call only, not NUL-terminated,
 * trimmed of ASCII blanks, and may be empty (the row has other cells but not
 * this one). Header rows and empty rows are never reported. Return non-zero
 * to stop reading.
 */
typedef int (*sheet_row_fn)(void *ctx, long line, const char *value, size_t len);

/* Progress of one read, given to sheet_progress_fn. */
struct sheet_progress {
	uint64_t done;  /* bytes of input consumed so far (CSV: the file; XLSX: inflated XML) */
	uint64_t total; /* bytes expected in all (CSV: file size; XLSX: the shared strings'
	                   and the sheet's uncompressed sizes, as the zip claims); done <= total */
	long rows;      /* rows reported to sheet_row_fn so far */
};

/*
 * Called after every chunk read (every 64 KiB of input or less), with the same
 * ctx as the row callback, and once more at the end with done == total.
 * Cheap calls: rate-limit in the callback. Return non-zero to stop reading.
 */
typedef int (*sheet_progress_fn)(void *ctx, const struct sheet_progress *p);

/*
 * Bounds on what one file may cost. A zero field means its default (in
 * brackets). Crossing one fails the read, except max_value, which truncates.
 */
struct sheet_limits {
	size_t max_value;         /* [1024] bytes of one value; longer values are reported cut to
	                             this many bytes (phone_normalize then rejects them) */
	long max_rows;            /* [10,000,000] data rows reported */
	uint64_t max_entry_bytes; /* [1 GiB] inflated bytes of one zip entry, claimed or counted */
	uint64_t max_total_bytes; /* [2 GiB] inflated bytes of all entries read */
	unsigned max_ratio;       /* [200] inflated/compressed bytes of an entry, counted as it
	                             inflates once past 1 MiB, also checked on the claimed sizes */
	uint64_t max_entries;     /* [10,000] entries in the zip's directory */
	size_t max_strings;       /* [2,000,000] shared strings; a uniqueCount attribute above
	                             it (or a count 10 times above) fails before any is read */
	size_t max_strings_bytes; /* [256 MiB] bytes of shared-string text kept (at most 4 GiB) */
	size_t max_xml_memory;    /* [32 MiB] memory of one XML parser (its buffer, names,
	                             attributes, nesting): a giant tag fails here */
};

/* The defaults, as documented above. */
extern const struct sheet_limits sheet_limits_default;

struct sheet_opts {
	struct sheet_limits limits; /* zero fields: defaults */
	sheet_progress_fn progress; /* may be NULL */
};

/*
 * Streams the file at path in format fmt and calls fn for every data row (see
 * sheet_row_fn). The phone column is the first cell of the first non-empty
 * row whose trimmed text names a phone column (phone, phone_number, mobile,
 * msisdn, tel, شماره, تلفن, موبایل, … case-, space-, '_' and '-'-insensitive);
 * that row is the header and is not reported. When no cell matches, the phone
 * column is the first non-empty cell of that row, and the row is data.
 *
 * CSV: UTF-8 (a BOM is skipped), delimiter ',' ';' or tab sniffed from the
 * first lines (or named by Excel's "sep=X" first line), RFC 4180 quotes (""
 * inside quotes; newlines inside quotes stay in the value), CRLF, LF or CR line
 * ends. A quote left open at the end of the file is an error, as are NUL bytes
 * and UTF-16. A "CSV" whose bytes are a zip (an xlsx renamed) is read as XLSX.
 * XLSX: the workbook's active sheet (the first one unless the file says
 * otherwise, as the original's openpyxl did); shared strings, inline strings,
 * formula strings, numbers (an integral value is written as an integer:
 * 9.123456789E9 → "9123456789"), booleans (TRUE/FALSE), errors.
 *
 * Returns 0 when the whole file was read; 1 when fn or opts->progress asked
 * to stop (err says so); -1 with a message in err (lower case, no full stop,
 * fit for a user) when the file is unreadable, corrupt or hostile. Rows may
 * have been reported before a -1: the caller discards them. err may be NULL
 * when errlen is 0. opts may be NULL (defaults, no progress). Reads on
 * different threads are independent; the callbacks run on the caller's thread.
 */
int sheet_read_phones_opts(const char *path, enum sheet_format fmt, const struct sheet_opts *opts, sheet_row_fn fn,
                           void *ctx, char *err, size_t errlen) MUSTCHECK;

/* sheet_read_phones_opts with the default limits and no progress. */
int sheet_read_phones(const char *path, enum sheet_format fmt, sheet_row_fn fn, void *ctx, char *err,
                      size_t errlen) MUSTCHECK;

#endif
