/*
 * Holidays shared by every company (/api/holidays): the official solar ones
 * computed for any Jalali year (common/holidays.c) merged with the table's
 * lunar and custom rows and tombstones. Superusers add and remove; the
 * scheduler's next pass (within a second) publishes decisions with them.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "holidays.h"
#include "jalali.h"
#include "tz.h"
#include "util.h"

/* {"date", "jalali_date", "title", "kind"} of civil day `day`. New reference. */
static json_t *holiday_item(long day, const char *title, const char *kind)
{
	char g[16], j[16];
	tz_format_day(day, g);
	jalali_format_day(day, j); /* callers pass days in range */
	return json_pack("{s:s, s:s, s:s, s:s}", "date", g, "jalali_date", j, "title", title, "kind", kind);
}

/* A Gregorian "YYYY-MM-DD" (any digits) that exists (jalali_from_gregorian
 * checks the calendar) and is within the Jalali range, to its civil day. */
static int parse_gregorian(const char *s, long *day)
{
	int y, m, d, jy, jm, jd;
	if (jalali_parse_ymd(s, &y, &m, &d) || jalali_from_gregorian(y, m, d, &jy, &jm, &jd))
		return -1;
	*day = tz_days_from_civil(y, m, d);
	return 0;
}

static int parse_jalali(const char *s, long *day)
{
	int y, m, d;
	if (jalali_parse_ymd(s, &y, &m, &d))
		return -1;
	return jalali_to_days(y, m, d, day);
}

/* ------------------------------------------------------------------ list */

struct hlist {
	struct holiday fixed[HOLIDAYS_FIXED_MAX];
	int nfixed;
};

/* The computed holidays and the table's rows, both sorted by day, merged:
 * a row replaces the computed holiday of its day, a tombstone hides it. */
static void list_loaded(struct http_ctx *c, PGresult *res)
{
	struct hlist *h = c->state;
	json_t *out;
	int i = 0, r = 0, nrows;

	if (!http_db_ok_or_reply(c, res))
		return;
	out = json_array();
	nrows = PQntuples(res);
	while (i < h->nfixed || r < nrows) {
		long rday = r < nrows ? strtol(PQgetvalue(res, r, 0), NULL, 10) : 0;
		if (r >= nrows || (i < h->nfixed && h->fixed[i].day < rday)) {
			json_array_append_new(out, holiday_item(h->fixed[i].day, h->fixed[i].title, "fixed"));
			i++;
			continue;
		}
		if (i < h->nfixed && h->fixed[i].day == rday)
			i++;
		if (PQgetvalue(res, r, 3)[0] != 't')
			json_array_append_new(out, holiday_item(rday, PQgetvalue(res, r, 1), PQgetvalue(res, r, 2)));
		r++;
	}
	http_reply_json(c, 200, out);
}

static void list(struct http_ctx *c)
{
	const char *q = http_query(c, "year");
	char buf[16], from[16], to[16];
	long year, first, last;
	struct hlist *h;

	if (q) {
		if (util_ascii_digits(q, buf, sizeof(buf)) ||
		    util_parse_long(buf, JALALI_YEAR_MIN, JALALI_YEAR_MAX, &year)) {
			http_invalid(c, "year", "must be a Jalali year from 1 to 3177");
			return;
		}
	} else {
		struct tz_local now;
		int jy, jm, jd;
		tz_local_from_utc(time(NULL), &now);
		if (jalali_from_days(now.day, &jy, &jm, &jd)) {
			http_error(c, 500, "INTERNAL_ERROR", "cannot convert today to the Jalali calendar");
			return;
		}
		year = jy;
	}
	if (jalali_to_days((int)year, 1, 1, &first) ||
	    jalali_to_days((int)year, 12, jalali_month_length((int)year, 12), &last)) {
		http_error(c, 500, "INTERNAL_ERROR", "cannot convert Jalali year %ld", year);
		return;
	}
	h = xcalloc(1, sizeof(*h));
	c->state = h;
	c->state_free = free;
	h->nfixed = holidays_fixed_year((int)year, h->fixed, HOLIDAYS_FIXED_MAX);
	if (h->nfixed < 0)
		h->nfixed = 0;
	tz_format_day(first, from);
	tz_format_day(last, to);
	const char *p[2] = {from, to};
	http_db(c,
	        "SELECT date - DATE '1970-01-01' AS day, title, kind, removed FROM holidays"
	        " WHERE date BETWEEN $1::date AND $2::date ORDER BY date",
	        2, p, list_loaded);
}

/* -------------------------------------------------------- add and remove */

struct hchange {
	long day;
	char date[16];
	json_t *out;
};

static void hchange_free(void *p)
{
	struct hchange *h = p;
	json_decref(h->out);
	free(h);
}

static void added(struct http_ctx *c, PGresult *res)
{
	struct hchange *h = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error_details(c, 409, "CONFLICT", json_pack("{s:s}", "date", h->date),
		                   "A holiday already exists on %s", h->date);
		return;
	}
	h->out = holiday_item(h->day, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	log_info("event=holiday_added date=%s user=%s", h->date, c->user.username);
	http_reply_json(c, 200, json_incref(h->out));
}

static void add(struct http_ctx *c)
{
	const char *date, *jdate, *title;
	long jday;
	char uid[24];
	struct hchange *h;

	if (!require_superuser_or_reply(c))
		return;
	h = xcalloc(1, sizeof(*h));
	c->state = h;
	c->state_free = hchange_free;
	if (field_object_or_reply(c, true) || field_str_or_reply(c, "date", 1, 64, false, &date) ||
	    field_str_or_reply(c, "jalali_date", 1, 64, false, &jdate) ||
	    field_str_or_reply(c, "title", 1, 255, true, &title))
		return;
	if (!date && !jdate) {
		http_invalid(c, "date", "field required (or jalali_date)");
		return;
	}
	if (date && parse_gregorian(date, &h->day)) {
		http_invalid(c, "date", "must be a Gregorian date YYYY-MM-DD");
		return;
	}
	if (jdate) {
		if (parse_jalali(jdate, &jday)) {
			http_invalid(c, "jalali_date", "must be a Jalali date YYYY-MM-DD");
			return;
		}
		if (date && jday != h->day) {
			http_invalid(c, "jalali_date", "is not the same day as date");
			return;
		}
		h->day = jday;
	}
	tz_format_day(h->day, h->date);
	snprintf(uid, sizeof(uid), "%ld", c->user.id);
	const char *p[4] = {h->date, title, uid, holidays_fixed_title_on(h->day) ? "true" : "false"};
	/* A computed holiday is active unless a tombstone hides it: re-adding then
	 * revives the date as a custom row; an active one is a conflict. */
	http_db(c,
	        "INSERT INTO holidays AS h (date, title, kind, removed, created_by)"
	        " SELECT $1::date, $2, 'custom', false, $3::integer"
	        " WHERE NOT $4::boolean OR EXISTS (SELECT 1 FROM holidays WHERE date = $1::date AND removed)"
	        " ON CONFLICT (date) DO UPDATE SET title = EXCLUDED.title, kind = 'custom', removed = false,"
	        " created_by = EXCLUDED.created_by, created_at = now() WHERE h.removed"
	        " RETURNING h.title, h.kind",
	        4, p, added);
}

static void removed(struct http_ctx *c, PGresult *res)
{
	struct hchange *h = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error_details(c, 404, "NOT_FOUND", json_pack("{s:s}", "date", h->date), "Holiday not found");
		return;
	}
	h->out = json_pack("{s:b, s:s}", "deleted", 1, "date", h->date);
	log_info("event=holiday_removed date=%s user=%s", h->date, c->user.username);
	http_reply_json(c, 200, json_incref(h->out));
}

static void del(struct http_ctx *c)
{
	struct hchange *h;
	char uid[24];

	if (!require_superuser_or_reply(c))
		return;
	h = xcalloc(1, sizeof(*h));
	c->state = h;
	c->state_free = hchange_free;
	if (parse_gregorian(c->params[0], &h->day)) {
		http_invalid(c, "date", "must be a Gregorian date YYYY-MM-DD");
		return;
	}
	tz_format_day(h->day, h->date);
	const char *title = holidays_fixed_title_on(h->day);
	if (!title) {
		const char *p[1] = {h->date};
		http_db(c, "DELETE FROM holidays WHERE date = $1::date AND NOT removed RETURNING date", 1, p, removed);
		return;
	}
	/* an official solar holiday is computed, not stored: a tombstone hides it */
	snprintf(uid, sizeof(uid), "%ld", c->user.id);
	const char *p[3] = {h->date, title, uid};
	http_db(c,
	        "INSERT INTO holidays AS h (date, title, kind, removed, created_by)"
	        " VALUES ($1::date, $2, 'fixed', true, $3::integer)"
	        " ON CONFLICT (date) DO UPDATE SET removed = true, kind = 'fixed', title = EXCLUDED.title,"
	        " created_by = EXCLUDED.created_by, created_at = now() WHERE NOT h.removed"
	        " RETURNING h.date",
	        3, p, removed);
}

static const struct route routes[] = {
    {"GET", "/api/holidays", list, AUTH_JWT, 0},
    {"POST", "/api/holidays", add, AUTH_JWT, RF_JSON},
    {"DELETE", "/api/holidays/{date}", del, AUTH_JWT, 0},
};

void holidays_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
