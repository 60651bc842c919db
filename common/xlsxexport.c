/*
 * The numbers export: one count and one cursor in a read-only snapshot, each
 * batch turned into cells as it arrives (constant-memory
 * libxlsxwriter flushes every row to its scratch file), the zip written at
 * workbook_close. Times are converted here, not in SQL: the query stays cheap.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dlfcn.h>

#include <xlsxwriter.h>

#include "jalali.h"
#include "selection.h"
#include "tz.h"
#include "xlsxexport.h"

const char *const xlsxexport_headers[XLSXEXPORT_NCOLS] = {
    /* the original's five (COMPAT §2.9), then ours */
    "شماره",              /* phone */
    "وضعیت",              /* the company's status, IN_QUEUE without one */
    "تعداد تلاش",         /* attempts */
    "آخرین تلاش",         /* last attempt, ISO 8601 (as the API writes it) */
    "پیام تماس",          /* last user_message */
    "تاریخ ایجاد",        /* created_at: date cell, local time */
    "تاریخ ایجاد (شمسی)", /* created_at: Jalali date, local day */
    "زمان آخرین تلاش",    /* last attempt: date cell, local time */
    "آخرین تلاش (شمسی)",  /* last attempt: Jalali date, local day */
    "نام کارشناس",        /* assigned agent: first and last name */
    "نام کاربری کارشناس", /* assigned agent: username */
    "سناریو",             /* scenario of the last attempt (display name) */
    "خط",                 /* outbound line of the last attempt (display name) */
};

/*
 * The zip level. libxlsxwriter 1.1.4 deflates every part at zlib's default
 * level (6) and has no option for it; the sheet of a 1,000,000-row export is
 * ~430 MB of XML, and deflating it was 44% of the export's CPU. Level 1 takes
 * 30% less CPU for a file ~30% larger (docs/benchmarks.md, "Export").
 */
#ifndef XLSXEXPORT_ZIP_LEVEL /* -DXLSXEXPORT_ZIP_LEVEL=6 to compare (docs/benchmarks.md) */
#define XLSXEXPORT_ZIP_LEVEL 1
#endif

/*
 * libxlsxwriter opens each part of the zip with this minizip call, resolved
 * at run time: a program that links this file defines it, so the dynamic
 * linker binds libxlsxwriter's call here (an executable's definition comes
 * first), and it forwards to minizip's with XLSXEXPORT_ZIP_LEVEL. The prototype is
 * minizip's zip.h (zipFile = void *, zip_fileinfo passed through), which
 * Debian's libxlsxwriter-dev does not install. Should a build bind the call
 * elsewhere (a static or -Bsymbolic libxlsxwriter), files are still right,
 * only deflated at 6: test_export's test_zip_level checks the level.
 */
int zipOpenNewFileInZip4_64(void *file, const char *filename, const void *zipfi, const void *extrafield_local,
                            unsigned size_extrafield_local, const void *extrafield_global,
                            unsigned size_extrafield_global, const char *comment, int method, int level, int raw,
                            int window_bits, int mem_level, int strategy, const char *password,
                            unsigned long crc_for_crypting, unsigned long version_made_by, unsigned long flag_base,
                            int zip64);
int zipOpenNewFileInZip4_64(void *file, const char *filename, const void *zipfi, const void *extrafield_local,
                            unsigned size_extrafield_local, const void *extrafield_global,
                            unsigned size_extrafield_global, const char *comment, int method, int level, int raw,
                            int window_bits, int mem_level, int strategy, const char *password,
                            unsigned long crc_for_crypting, unsigned long version_made_by, unsigned long flag_base,
                            int zip64)
{
	typedef int (*open_fn)(void *, const char *, const void *, const void *, unsigned, const void *, unsigned,
	                       const char *, int, int, int, int, int, int, const char *, unsigned long, unsigned long,
	                       unsigned long, int);
	static open_fn real;
	if (!real) {
		void *sym = dlsym(RTLD_NEXT, "zipOpenNewFileInZip4_64");
		if (!sym)
			return -104; /* ZIP_INTERNALERROR: no minizip below us */
		memcpy(&real, &sym, sizeof(real));
	}
	UNUSED(level);
	return real(file, filename, zipfi, extrafield_local, size_extrafield_local, extrafield_global,
	            size_extrafield_global, comment, method, XLSXEXPORT_ZIP_LEVEL, raw, window_bits, mem_level,
	            strategy, password, crc_for_crypting, version_made_by, flag_base, zip64);
}

/* Column widths (characters), in header order. */
static const double widths[XLSXEXPORT_NCOLS] = {14, 16, 10, 30, 40, 20, 14, 20, 14, 24, 18, 20, 20};

/* Excel's cell text limit (characters); longer text is cut at a UTF-8 boundary. */
#define CELL_TEXT_MAX 32767

/*
 * One column per cell source, fetched in binary (no timestamp or integer
 * formatting on the server, no parsing here). Names come from the small
 * tables, loaded once (struct names), not joined per row.
 */
static const char row_columns[] =
    "SELECT n.phone_number, s.status, s.total_attempts, s.last_attempt_at, s.last_user_message, n.created_at,"
    " s.assigned_agent_id, s.last_scenario_id, s.last_outbound_line_id ";
enum { F_PHONE, F_STATUS, F_ATTEMPTS, F_LAST_AT, F_MESSAGE, F_CREATED_AT, F_AGENT, F_SCENARIO, F_LINE };

/* PostgreSQL's binary timestamps count microseconds from 2000-01-01 UTC. */
#define PG_EPOCH_US 946684800000000LL

/* id -> one or two names, sorted by id (the users, the company's scenarios or lines). */
struct name {
	long id;
	char *a, *b;
};
struct names {
	struct name *v;
	size_t n;
};

/* Local-time conversion with memory: rows come in runs of nearby instants. */
struct tzcache {
	long long bucket; /* t / 900: every zone change falls on a quarter hour (UTC) */
	int offset;
	long day; /* local civil day of the last Jalali string */
	char jalali[16];
};

struct writer {
	lxw_workbook *wb;
	lxw_worksheet *ws;
	lxw_format *date, *head;
	long sheet_row; /* last row written on ws (0 = the header) */
	int sheets;
	struct tzcache tz;
	char *cut; /* CELL_TEXT_MAX + 1 bytes for text that needs cutting */
	lxw_error lerr;
	struct names users, scenarios, lines;
};

static long long floor_div(long long a, long long b)
{
	return a >= 0 ? a / b : -((-a + b - 1) / b);
}

static int local_offset(struct tzcache *c, time_t t)
{
	long long b = floor_div(t, 900);
	if (b != c->bucket) {
		struct tz_local l;
		tz_local_from_utc(t, &l);
		c->bucket = b;
		c->offset = l.utc_offset;
	}
	return c->offset;
}

/* Local seconds since the epoch (wall clock as if it were UTC), with the fraction. */
static double local_seconds(struct tzcache *c, long long us)
{
	time_t t = (time_t)floor_div(us, 1000000);
	return (double)(t + local_offset(c, t)) + (double)(us - (long long)t * 1000000) / 1e6;
}

/* Jalali "YYYY/MM/DD" of the local day of us (into c->jalali; "" outside the calendar). */
static const char *jalali_day(struct tzcache *c, long long us)
{
	time_t t = (time_t)floor_div(us, 1000000);
	long day = (long)floor_div((long long)t + local_offset(c, t), 86400);
	if (day != c->day) {
		int y, m, d;
		c->day = day;
		if (jalali_from_days(day, &y, &m, &d))
			c->jalali[0] = '\0';
		else
			snprintf(c->jalali, sizeof(c->jalali), "%04d/%02d/%02d", y, m, d);
	}
	return c->jalali;
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ", as api_ts() writes instants on the wire. */
static void iso_utc(long long us, char out[64])
{
	long long sec = floor_div(us, 1000000);
	long frac = (long)(us - sec * 1000000);
	long day = (long)floor_div(sec, 86400);
	long s = (long)(sec - (long long)day * 86400);
	int y, m, d;
	tz_civil_from_days(day, &y, &m, &d);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", y, m, d, (int)(s / 3600), (int)(s / 60 % 60),
	         (int)(s % 60), (int)frac);
}

/* Excel's serial date of local seconds (1900 system: day 25569 is 1970-01-01). */
static double excel_serial(double local)
{
	return local / 86400.0 + 25569.0;
}

static void cell_text(struct writer *w, long row, int col, const char *s, size_t len)
{
	if (w->lerr || len == 0)
		return;
	if (len > CELL_TEXT_MAX) {
		size_t n = CELL_TEXT_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--; /* s[n] starts the first character left out */
		memcpy(w->cut, s, n);
		w->cut[n] = '\0';
		s = w->cut;
	}
	w->lerr = worksheet_write_string(w->ws, (lxw_row_t)row, (lxw_col_t)col, s, NULL);
}

static void cell_number(struct writer *w, long row, int col, double v, lxw_format *f)
{
	if (!w->lerr)
		w->lerr = worksheet_write_number(w->ws, (lxw_row_t)row, (lxw_col_t)col, v, f);
}

/* A new sheet with the header row: "numbers", then "numbers_2", ... */
static int add_sheet(struct writer *w)
{
	char name[32];
	w->sheets++;
	if (w->sheets == 1)
		snprintf(name, sizeof(name), "numbers");
	else
		snprintf(name, sizeof(name), "numbers_%d", w->sheets);
	w->ws = workbook_add_worksheet(w->wb, name);
	if (!w->ws) {
		w->lerr = LXW_ERROR_MEMORY_MALLOC_FAILED;
		return -1;
	}
	for (int i = 0; i < XLSXEXPORT_NCOLS; i++)
		worksheet_set_column(w->ws, (lxw_col_t)i, (lxw_col_t)i, widths[i], i == 5 || i == 7 ? w->date : NULL);
	worksheet_freeze_panes(w->ws, 1, 0);
	for (int i = 0; i < XLSXEXPORT_NCOLS; i++)
		if (!w->lerr)
			w->lerr = worksheet_write_string(w->ws, 0, (lxw_col_t)i, xlsxexport_headers[i], w->head);
	w->sheet_row = 0;
	return w->lerr ? -1 : 0;
}

static int name_cmp(const void *k, const void *e)
{
	long id = *(const long *)k, other = ((const struct name *)e)->id;
	return id < other ? -1 : id > other;
}

static const struct name *name_find(const struct names *ns, long id)
{
	return ns->n ? bsearch(&id, ns->v, ns->n, sizeof(*ns->v), name_cmp) : NULL;
}

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++) {
		free(ns->v[i].a);
		free(ns->v[i].b);
	}
	free(ns->v);
	memset(ns, 0, sizeof(*ns));
}

/* Loads "SELECT id, a[, b] ... ORDER BY id" into ns. Returns 0 or -1 (err set). */
static int names_load(PGconn *db, const char *sql, const char *company, struct names *ns, char *err, size_t errlen);

static const char *bin_text(const PGresult *r, int i, int f, size_t *len)
{
	if (PQgetisnull(r, i, f)) {
		*len = 0;
		return NULL;
	}
	*len = (size_t)PQgetlength(r, i, f);
	return PQgetvalue(r, i, f); /* libpq ends every value with a NUL, binary ones too */
}

static bool bin_int4(const PGresult *r, int i, int f, long *out)
{
	if (PQgetisnull(r, i, f) || PQgetlength(r, i, f) != 4)
		return false;
	const unsigned char *p = (const unsigned char *)PQgetvalue(r, i, f);
	*out = (long)(int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
	return true;
}

/* A timestamptz as microseconds since the Unix epoch. */
static bool bin_ts(const PGresult *r, int i, int f, long long *us)
{
	if (PQgetisnull(r, i, f) || PQgetlength(r, i, f) != 8)
		return false;
	const unsigned char *p = (const unsigned char *)PQgetvalue(r, i, f);
	uint64_t v = 0;
	for (int k = 0; k < 8; k++)
		v = v << 8 | p[k];
	*us = (long long)v + PG_EPOCH_US;
	return true;
}

/* An instant as a date cell (local time) at col and its Jalali day at jcol. */
static void cell_instant(struct writer *w, long row, int col, int jcol, long long us)
{
	cell_number(w, row, col, excel_serial(local_seconds(&w->tz, us)), w->date);
	const char *j = jalali_day(&w->tz, us);
	cell_text(w, row, jcol, j, strlen(j));
}

/* Selected number i of the batch r as the next row. */
static int write_row(struct writer *w, const PGresult *r, int i)
{
	size_t len;
	const char *v;
	char iso[64];
	long id, n;
	long long us;
	const struct name *nm;

	if (w->sheet_row >= XLSXEXPORT_SHEET_ROWS && add_sheet(w))
		return -1;
	long row = ++w->sheet_row;

	v = bin_text(r, i, F_PHONE, &len);
	cell_text(w, row, 0, v, len);
	v = bin_text(r, i, F_STATUS, &len);
	cell_text(w, row, 1, v ? v : "IN_QUEUE", v ? len : 8);
	cell_number(w, row, 2, bin_int4(r, i, F_ATTEMPTS, &n) ? (double)n : 0, NULL);
	if (bin_ts(r, i, F_LAST_AT, &us)) {
		iso_utc(us, iso);
		cell_text(w, row, 3, iso, strlen(iso));
		cell_instant(w, row, 7, 8, us);
	}
	v = bin_text(r, i, F_MESSAGE, &len);
	cell_text(w, row, 4, v, len);
	if (bin_ts(r, i, F_CREATED_AT, &us))
		cell_instant(w, row, 5, 6, us);
	if (bin_int4(r, i, F_AGENT, &id) && (nm = name_find(&w->users, id))) {
		cell_text(w, row, 9, nm->a, strlen(nm->a));
		cell_text(w, row, 10, nm->b, strlen(nm->b));
	}
	if (bin_int4(r, i, F_SCENARIO, &id) && (nm = name_find(&w->scenarios, id)))
		cell_text(w, row, 11, nm->a, strlen(nm->a));
	if (bin_int4(r, i, F_LINE, &id) && (nm = name_find(&w->lines, id)))
		cell_text(w, row, 12, nm->a, strlen(nm->a));
	return w->lerr ? -1 : 0;
}

static void set_err(char *err, size_t errlen, const char *what, const char *detail)
{
	char d[200];
	snprintf(d, sizeof(d), "%s", detail ? detail : "");
	for (char *p = d; *p; p++)
		if (*p == '\n' || *p == '"')
			*p = ' ';
	size_t n = strlen(d);
	while (n && d[n - 1] == ' ')
		d[--n] = '\0';
	snprintf(err, errlen, "%s%s%s", what, n ? ": " : "", d);
}

static bool exec_ok(PGconn *db, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(db, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		set_err(err, errlen, "database error", PQresultErrorMessage(r));
	PQclear(r);
	return ok;
}

static int names_load(PGconn *db, const char *sql, const char *company, struct names *ns, char *err, size_t errlen)
{
	const char *p[1] = {company};
	PGresult *r = PQexecParams(db, sql, company ? 1 : 0, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "database error", PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	int n = PQntuples(r), two = PQnfields(r) > 2;
	ns->v = xcalloc((size_t)(n ? n : 1), sizeof(*ns->v));
	for (int i = 0; i < n; i++) {
		ns->v[i].id = strtol(PQgetvalue(r, i, 0), NULL, 10);
		ns->v[i].a = xstrdup(PQgetvalue(r, i, 1));
		ns->v[i].b = two ? xstrdup(PQgetvalue(r, i, 2)) : NULL;
	}
	ns->n = (size_t)n;
	PQclear(r);
	return 0;
}

/* Rows per FETCH: one result per batch (libpq's per-result cost spread over many rows), two
 * batches in memory at most. */
#define FETCH_ROWS 5000

/* Asks for the next batch of the cursor, in binary. */
static bool fetch_send(PGconn *db)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "FETCH FORWARD %d FROM numbers_export", FETCH_ROWS);
	return PQsendQueryParams(db, sql, 0, NULL, NULL, NULL, NULL, 1) == 1;
}

/* The batch asked for by fetch_send (caller PQclears); the connection is idle again. */
static PGresult *fetch_wait(PGconn *db)
{
	PGresult *r = PQgetResult(db), *more;
	while ((more = PQgetResult(db)))
		PQclear(more);
	return r;
}

int xlsxexport_write(PGconn *db, const struct selection *sel, const struct xlsxexport_opts *opts, long *rows, char *err,
                     size_t errlen)
{
	struct selection_query q;
	struct writer w = {.tz = {.bucket = LLONG_MIN, .day = LONG_MIN}};
	char *sql = NULL;
	PGresult *r = NULL;
	bool in_tx = false, pending = false;
	int rc = -1;
	long done = 0, total = 0, every = opts->every > 0 ? opts->every : 10000;

	*rows = 0;
	err[0] = '\0';
	if (selection_build(sel, &q)) {
		set_err(err, errlen, "selection too large", NULL);
		return -1;
	}
	if (!exec_ok(db, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", err, errlen))
		goto out;
	in_tx = true;
	/* one long scan, read to the end: planned for all rows (not a cursor's first tenth),
	 * not compiled (costs more than it saves), number_state sorted in memory */
	if (!exec_ok(db, "SET LOCAL cursor_tuple_fraction = 1; SET LOCAL jit = off; SET LOCAL work_mem = '64MB'", err,
	             errlen))
		goto out;

	sql = xasprintf("SELECT count(*) %s", q.from_where);
	r = PQexecParams(db, sql, q.nparams, NULL, q.params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "database error", PQresultErrorMessage(r));
		goto out;
	}
	total = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	r = NULL;
	free(sql);
	sql = NULL;
	/*
	 * Every user (an agent may have moved to another company since), the company's scenarios
	 * and lines: a few thousand rows at most, whatever the export's size. Without a company
	 * the per-company columns are empty: nothing to look up.
	 */
	if (sel->company_id) {
		char cid[24];
		if (names_load(db, "SELECT id, concat_ws(' ', first_name, last_name), username FROM users ORDER BY id",
		               NULL, &w.users, err, errlen))
			goto out;
		snprintf(cid, sizeof(cid), "%ld", sel->company_id);
		if (names_load(db, "SELECT id, display_name FROM scenarios WHERE company_id = $1 ORDER BY id", cid,
		               &w.scenarios, err, errlen) ||
		    names_load(db, "SELECT id, display_name FROM outbound_lines WHERE company_id = $1 ORDER BY id", cid,
		               &w.lines, err, errlen))
			goto out;
	}

	lxw_workbook_options o = {.constant_memory = LXW_TRUE, .tmpdir = (char *)opts->tmpdir, .use_zip64 = LXW_TRUE};
	w.wb = workbook_new_opt(opts->path, &o);
	if (!w.wb) {
		set_err(err, errlen, "cannot create the workbook", strerror(errno));
		goto out;
	}
	w.date = workbook_add_format(w.wb);
	format_set_num_format(w.date, "yyyy-mm-dd hh:mm:ss");
	w.head = workbook_add_format(w.wb);
	format_set_bold(w.head);
	w.cut = xmalloc(CELL_TEXT_MAX + 1);
	if (add_sheet(&w)) {
		set_err(err, errlen, "cannot write the workbook", lxw_strerror(w.lerr));
		goto out;
	}
	if (opts->progress && opts->progress(opts->arg, 0, total)) {
		set_err(err, errlen, "canceled", NULL);
		goto out;
	}

	/*
	 * A cursor read in batches, the next FETCH sent before the current batch is written: the
	 * server computes batch k+1 while this process writes batch k.
	 */
	sql = xasprintf("DECLARE numbers_export NO SCROLL CURSOR FOR %s%s %s", row_columns, q.from_where, q.order_by);
	r = PQexecParams(db, sql, q.nparams, NULL, q.params, NULL, NULL, 1);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		set_err(err, errlen, "database error", PQresultErrorMessage(r));
		goto out;
	}
	PQclear(r);
	r = NULL;
	if (!fetch_send(db)) {
		set_err(err, errlen, "database error", PQerrorMessage(db));
		goto out;
	}
	pending = true;
	for (;;) {
		r = fetch_wait(db);
		pending = false;
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			set_err(err, errlen, "database error", PQresultErrorMessage(r));
			goto out;
		}
		int n = PQntuples(r);
		if (n == FETCH_ROWS) {
			if (!fetch_send(db)) {
				set_err(err, errlen, "database error", PQerrorMessage(db));
				goto out;
			}
			pending = true;
		}
		for (int i = 0; i < n; i++) {
			if (write_row(&w, r, i)) {
				set_err(err, errlen, "cannot write the workbook", lxw_strerror(w.lerr));
				goto out;
			}
			done++;
			if (opts->progress && done % every == 0 && opts->progress(opts->arg, done, total)) {
				set_err(err, errlen, "canceled", NULL);
				goto out;
			}
		}
		PQclear(r);
		r = NULL;
		if (!pending)
			break;
	}
	if (!exec_ok(db, "COMMIT", err, errlen))
		goto out;
	in_tx = false;

	lxw_error e = workbook_close(w.wb);
	w.wb = NULL;
	if (e) {
		set_err(err, errlen, "cannot write the workbook", lxw_strerror(e));
		goto out;
	}
	if (opts->progress && opts->progress(opts->arg, done, total > done ? total : done)) {
		set_err(err, errlen, "canceled", NULL);
		goto out;
	}
	*rows = done;
	rc = 0;
out:
	PQclear(r);
	if (pending)
		PQclear(fetch_wait(db));
	if (in_tx) {
		char ignore[8];
		(void)exec_ok(db, "ROLLBACK", ignore, sizeof(ignore));
	}
	if (w.wb) {
		/* closing writes the partial file, which is then removed: libxlsxwriter has no discard */
		workbook_close(w.wb);
	}
	if (rc)
		unlink(opts->path);
	free(w.cut);
	names_free(&w.users);
	names_free(&w.scenarios);
	names_free(&w.lines);
	free(sql);
	selection_query_free(&q);
	return rc;
}
