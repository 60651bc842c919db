/*
 * The numbers export: one count and one single-row-mode query in a read-only
 * snapshot, each row turned into cells as it arrives (constant-memory
 * libxlsxwriter flushes every row to its scratch file), the zip written at
 * workbook_close. Times are converted here, not in SQL: the query stays cheap.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xlsxwriter.h>

#include "jalali.h"
#include "selection.h"
#include "tz.h"
#include "xlsxexport.h"

const char *const xlsxexport_headers[XLSXEXPORT_NCOLS] = {
    /* the original's five (COMPAT §2.9), then ours */
    "شماره",               /* phone */
    "وضعیت",               /* the company's status, IN_QUEUE without one */
    "تعداد تلاش",          /* attempts */
    "آخرین تلاش",          /* last attempt, ISO 8601 (as the API writes it) */
    "پیام تماس",           /* last user_message */
    "تاریخ ایجاد",         /* created_at: date cell, local time */
    "تاریخ ایجاد (شمسی)",  /* created_at: Jalali date, local day */
    "زمان آخرین تلاش",     /* last attempt: date cell, local time */
    "آخرین تلاش (شمسی)",   /* last attempt: Jalali date, local day */
    "نام کارشناس",         /* assigned agent: first and last name */
    "نام کاربری کارشناس",  /* assigned agent: username */
    "سناریو",              /* scenario of the last attempt (display name) */
    "خط",                  /* outbound line of the last attempt (display name) */
};

/* Column widths (characters), in header order. */
static const double widths[XLSXEXPORT_NCOLS] = {14, 16, 10, 30, 40, 20, 14, 20, 14, 24, 18, 20, 20};

/* Excel's cell text limit (characters); longer text is cut at a UTF-8 boundary. */
#define CELL_TEXT_MAX 32767

/*
 * One column per cell source. Instants as microseconds since the epoch: the
 * text of a bigint parses faster than a timestamp's, and the date cells, ISO
 * strings and Jalali days are all computed from it.
 */
static const char row_columns[] =
    "SELECT n.phone_number, s.status, s.total_attempts,"
    " (extract(epoch FROM s.last_attempt_at) * 1000000)::int8, s.last_user_message,"
    " (extract(epoch FROM n.created_at) * 1000000)::int8,"
    " (SELECT concat_ws(' ', u.first_name, u.last_name) FROM users u WHERE u.id = s.assigned_agent_id),"
    " (SELECT u.username FROM users u WHERE u.id = s.assigned_agent_id),"
    " (SELECT sc.display_name FROM call_attempts a JOIN scenarios sc ON sc.id = a.scenario_id"
    "   WHERE a.id = s.last_attempt_id),"
    " (SELECT l.display_name FROM call_attempts a JOIN outbound_lines l ON l.id = a.outbound_line_id"
    "   WHERE a.id = s.last_attempt_id) ";
enum { F_PHONE, F_STATUS, F_ATTEMPTS, F_LAST_US, F_MESSAGE, F_CREATED_US, F_AGENT, F_USERNAME, F_SCENARIO, F_LINE };

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

static const char *val(const PGresult *r, int f, size_t *len)
{
	if (PQgetisnull(r, 0, f)) {
		*len = 0;
		return NULL;
	}
	*len = (size_t)PQgetlength(r, 0, f);
	return PQgetvalue(r, 0, f);
}

/* One selected number (r: a single-row result) as the next row. */
static int write_row(struct writer *w, const PGresult *r)
{
	size_t len;
	const char *v;
	char iso[64];
	if (w->sheet_row >= XLSXEXPORT_SHEET_ROWS && add_sheet(w))
		return -1;
	long row = ++w->sheet_row;

	v = val(r, F_PHONE, &len);
	cell_text(w, row, 0, v, len);
	v = val(r, F_STATUS, &len);
	cell_text(w, row, 1, v ? v : "IN_QUEUE", v ? len : 8);
	v = val(r, F_ATTEMPTS, &len);
	cell_number(w, row, 2, v ? strtod(v, NULL) : 0, NULL);
	v = val(r, F_LAST_US, &len);
	if (v) {
		long long us = strtoll(v, NULL, 10);
		iso_utc(us, iso);
		cell_text(w, row, 3, iso, strlen(iso));
		cell_number(w, row, 7, excel_serial(local_seconds(&w->tz, us)), w->date);
		const char *j = jalali_day(&w->tz, us);
		cell_text(w, row, 8, j, strlen(j));
	}
	v = val(r, F_MESSAGE, &len);
	cell_text(w, row, 4, v, len);
	v = val(r, F_CREATED_US, &len);
	if (v) {
		long long us = strtoll(v, NULL, 10);
		cell_number(w, row, 5, excel_serial(local_seconds(&w->tz, us)), w->date);
		const char *j = jalali_day(&w->tz, us);
		cell_text(w, row, 6, j, strlen(j));
	}
	static const int text_cols[][2] = {{F_AGENT, 9}, {F_USERNAME, 10}, {F_SCENARIO, 11}, {F_LINE, 12}};
	for (size_t i = 0; i < ARRAY_LEN(text_cols); i++) {
		v = val(r, text_cols[i][0], &len);
		cell_text(w, row, text_cols[i][1], v, len);
	}
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

/* After an early stop of the row stream: cancel the query and read what is left. */
static void drain(PGconn *db)
{
	PGcancel *cn = PQgetCancel(db);
	char buf[256];
	if (cn) {
		if (!PQcancel(cn, buf, sizeof(buf)))
			log_warn("event=export_cancel_failed error=\"%s\"", buf);
		PQfreeCancel(cn);
	}
	PGresult *r;
	while ((r = PQgetResult(db)))
		PQclear(r);
}

int xlsxexport_write(PGconn *db, const struct selection *sel, const struct xlsxexport_opts *opts, long *rows,
                     char *err, size_t errlen)
{
	struct selection_query q;
	struct writer w = {.tz = {.bucket = LLONG_MIN, .day = LONG_MIN}};
	char *sql = NULL;
	PGresult *r = NULL;
	bool in_tx = false, streaming = false;
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

	sql = xasprintf("%s%s %s", row_columns, q.from_where, q.order_by);
	if (!PQsendQueryParams(db, sql, q.nparams, NULL, q.params, NULL, NULL, 0) || !PQsetSingleRowMode(db)) {
		set_err(err, errlen, "database error", PQerrorMessage(db));
		goto out;
	}
	streaming = true;
	for (;;) {
		r = PQgetResult(db);
		if (!r)
			break;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_SINGLE_TUPLE) {
			if (write_row(&w, r)) {
				set_err(err, errlen, "cannot write the workbook", lxw_strerror(w.lerr));
				goto out;
			}
			done++;
			if (opts->progress && done % every == 0 && opts->progress(opts->arg, done, total)) {
				set_err(err, errlen, "canceled", NULL);
				goto out;
			}
		} else if (st != PGRES_TUPLES_OK) {
			set_err(err, errlen, "database error", PQresultErrorMessage(r));
			goto out;
		}
		PQclear(r);
	}
	r = NULL;
	streaming = false;
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
	if (streaming)
		drain(db);
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
	free(sql);
	selection_query_free(&q);
	return rc;
}
