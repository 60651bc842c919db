/*
 * A company's calling schedule (COMPAT §2.5, /api/{company}/schedule) and its
 * call-allowed state as next-batch would answer it now (/schedule/status).
 * PUT validates everything before touching the database, then writes in one
 * transaction holding the config row lock, so concurrent edits serialize and
 * each bumps the version once.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "util.h"
#include "callstate.h"
#include "config.h"
#include "events.h"
#include "pgjson.h"

#define SCHEDULE_MAX_INTERVALS 64

/* ScheduleOut (COMPAT §2.1); $1 company id, $2 the SKIP_HOLIDAYS default. */
#define SCHEDULE_SQL                                                                                                  \
	"SELECT c.skip_holidays, c.enabled, c.disabled_by_dialer, c.wallet_balance, c.cost_per_connected, c.version," \
	" COALESCE((SELECT json_agg(json_build_object('day_of_week', i.day_of_week,"                                  \
	"   'start_time', i.start_time::text, 'end_time', i.end_time::text)"                                          \
	"   ORDER BY i.day_of_week, i.start_time, i.end_time)"                                                        \
	"  FROM schedule_intervals i WHERE i.company_id = $1::integer), '[]'::json) AS intervals,"                    \
	" api_ts(c.updated_at) AS updated_at"                                                                         \
	" FROM company_config_get($1::integer, $2::boolean) c"

static const char *skip_default(void)
{
	return cfg.skip_holidays ? "true" : "false";
}

/* ------------------------------------------------------------------- GET */

static void schedule_loaded(struct http_ctx *c, PGresult *res)
{
	if (company_config_ok_or_reply(c, res))
		http_reply_json(c, 200, pgjson_row(res, 0));
}

static void get_company(struct http_ctx *c)
{
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[2] = {cid, skip_default()};
	http_db(c, SCHEDULE_SQL, 2, p, schedule_loaded);
}

static void get(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, get_company);
}

/* ------------------------------------------------------------------- PUT */

struct ival {
	int dow, start, end; /* seconds since midnight */
	int idx;             /* position in the request, for error messages */
};

struct sput {
	int skip, enabled; /* -1 absent */
	bool has_intervals;
	struct ival iv[SCHEDULE_MAX_INTERVALS];
	int n;
	char cid[24];
	/* PostgreSQL array literals of the validated intervals (digits and colons only) */
	char days[SCHEDULE_MAX_INTERVALS * 2 + 3];
	char starts[SCHEDULE_MAX_INTERVALS * 9 + 3];
	char ends[SCHEDULE_MAX_INTERVALS * 9 + 3];
	json_t *out;
};

static void sput_free(void *p)
{
	struct sput *s = p;
	json_decref(s->out);
	free(s);
}

/* "HH:MM" or "HH:MM:SS" (ASCII, Persian or Arabic-Indic digits) to seconds. */
static int parse_time(const char *in, int *out)
{
	char s[16];
	if (util_ascii_digits(in, s, sizeof(s)))
		return -1;
	size_t n = strlen(s);
	if (n != 5 && n != 8)
		return -1;
	for (size_t i = 0; i < n; i++) {
		bool colon = i == 2 || i == 5;
		if (colon ? s[i] != ':' : (s[i] < '0' || s[i] > '9'))
			return -1;
	}
	int hh = (s[0] - '0') * 10 + (s[1] - '0');
	int mm = (s[3] - '0') * 10 + (s[4] - '0');
	int ss = n == 8 ? (s[6] - '0') * 10 + (s[7] - '0') : 0;
	if (hh > 23 || mm > 59 || ss > 59)
		return -1;
	*out = hh * 3600 + mm * 60 + ss;
	return 0;
}

static void fmt_time(int sec, char out[16])
{
	unsigned u = (unsigned)sec % 86400u;
	snprintf(out, 16, "%02u:%02u:%02u", u / 3600u, u / 60u % 60u, u % 60u);
}

/* day_of_week: a JSON integer 0..6, or a string of one digit (pydantic's lax int). */
static int parse_dow(json_t *v, int *out)
{
	char s[8];
	if (json_is_integer(v)) {
		json_int_t d = json_integer_value(v);
		if (d < 0 || d > 6)
			return -1;
		*out = (int)d;
		return 0;
	}
	if (!json_is_string(v) || util_ascii_digits(json_string_value(v), s, sizeof(s)))
		return -1;
	if (strlen(s) != 1 || s[0] < '0' || s[0] > '6')
		return -1;
	*out = s[0] - '0';
	return 0;
}

/* 422 checks of the intervals field: shape, types, ranges. */
static int intervals_parse_or_reply(struct http_ctx *c, struct sput *s)
{
	json_t *arr = json_object_get(c->body, "intervals");
	char field[48];
	size_t i;
	json_t *it;

	if (!arr || json_is_null(arr))
		return 0;
	s->has_intervals = true;
	if (!json_is_array(arr)) {
		http_invalid(c, "intervals", "must be an array");
		return -1;
	}
	if (json_array_size(arr) > SCHEDULE_MAX_INTERVALS) {
		snprintf(field, sizeof(field), "at most %d intervals", SCHEDULE_MAX_INTERVALS);
		http_invalid(c, "intervals", field);
		return -1;
	}
	json_array_foreach(arr, i, it)
	{
		struct ival *v = &s->iv[i];
		v->idx = (int)i;
		if (!json_is_object(it)) {
			snprintf(field, sizeof(field), "intervals[%zu]", i);
			http_invalid(c, field, "must be an object");
			return -1;
		}
		json_t *d = json_object_get(it, "day_of_week");
		snprintf(field, sizeof(field), "intervals[%zu].day_of_week", i);
		if (!d || json_is_null(d)) {
			http_invalid(c, field, "field required");
			return -1;
		}
		if (parse_dow(d, &v->dow)) {
			http_invalid(c, field, "must be an integer from 0 (Saturday) to 6 (Friday)");
			return -1;
		}
		static const char *const names[2] = {"start_time", "end_time"};
		for (int k = 0; k < 2; k++) {
			json_t *t = json_object_get(it, names[k]);
			snprintf(field, sizeof(field), "intervals[%zu].%s", i, names[k]);
			if (!t || json_is_null(t)) {
				http_invalid(c, field, "field required");
				return -1;
			}
			if (!json_is_string(t) || parse_time(json_string_value(t), k ? &v->end : &v->start)) {
				http_invalid(c, field, "must be a time HH:MM or HH:MM:SS");
				return -1;
			}
		}
	}
	s->n = (int)json_array_size(arr);
	return 0;
}

static int ival_cmp(const void *a, const void *b)
{
	const struct ival *x = a, *y = b;
	if (x->dow != y->dow)
		return x->dow - y->dow;
	if (x->start != y->start)
		return x->start - y->start;
	return x->end - y->end;
}

/*
 * 400 checks: start < end (COMPAT's text), then no two windows of one day
 * overlap. Back-to-back windows (one ends at 12:00:00, the next starts at
 * 12:00:00) are accepted: they share one instant, which either allows.
 */
static int intervals_check_or_reply(struct http_ctx *c, struct sput *s)
{
	char a0[16], a1[16], b0[16], b1[16];
	for (int i = 0; i < s->n; i++)
		if (s->iv[i].start >= s->iv[i].end) {
			char field[32];
			snprintf(field, sizeof(field), "intervals[%d]", s->iv[i].idx);
			http_error_details(c, 400, "INVALID_INTERVAL", json_pack("{s:s}", "field", field),
			                   "start_time must be before end_time");
			return -1;
		}
	qsort(s->iv, (size_t)s->n, sizeof(s->iv[0]), ival_cmp);
	for (int i = 1; i < s->n; i++) {
		const struct ival *p = &s->iv[i - 1], *q = &s->iv[i];
		if (p->dow != q->dow || q->start >= p->end)
			continue;
		fmt_time(p->start, a0);
		fmt_time(p->end, a1);
		fmt_time(q->start, b0);
		fmt_time(q->end, b1);
		http_error_details(c, 400, "INTERVALS_OVERLAP",
		                   json_pack("{s:i, s:[i, i]}", "day_of_week", q->dow, "intervals", p->idx, q->idx),
		                   "intervals overlap on day_of_week %d: %s-%s and %s-%s", q->dow, a0, a1, b0, b1);
		return -1;
	}
	return 0;
}

/* Array literals for unnest(); the values are validated numbers and times. */
static void intervals_literals(struct sput *s)
{
	size_t nd = 0, ns = 0, ne = 0;
	char t[16];
	s->days[nd++] = '{';
	s->starts[ns++] = '{';
	s->ends[ne++] = '{';
	for (int i = 0; i < s->n; i++) {
		const char *sep = i ? "," : "";
		nd += (size_t)snprintf(s->days + nd, sizeof(s->days) - nd, "%s%d", sep, s->iv[i].dow);
		fmt_time(s->iv[i].start, t);
		ns += (size_t)snprintf(s->starts + ns, sizeof(s->starts) - ns, "%s%s", sep, t);
		fmt_time(s->iv[i].end, t);
		ne += (size_t)snprintf(s->ends + ne, sizeof(s->ends) - ne, "%s%s", sep, t);
	}
	snprintf(s->days + nd, sizeof(s->days) - nd, "}");
	snprintf(s->starts + ns, sizeof(s->starts) - ns, "}");
	snprintf(s->ends + ne, sizeof(s->ends) - ne, "}");
}

static void put_reply(struct http_ctx *c)
{
	struct sput *s = c->state;
	http_reply_json(c, 200, json_incref(s->out));
}

static void put_committed(struct http_ctx *c, PGresult *res)
{
	struct sput *s = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	log_info("event=schedule_updated company=%s version=%lld", c->company,
	         (long long)json_integer_value(json_object_get(s->out, "version")));
	json_t *ev = json_deep_copy(s->out);
	json_object_set_new(ev, "company", json_string(c->company));
	events_emit_async_new(c->thr->redis, EVENTS_SCHEDULE_CHANGED, c->company_id, ev);
	company_callstate_drop_then(c, put_reply);
}

static void put_selected(struct http_ctx *c, PGresult *res)
{
	struct sput *s = c->state;
	if (!company_config_ok_or_reply(c, res))
		return;
	s->out = pgjson_row(res, 0);
	http_tx_commit(c, put_committed);
}

static void put_written(struct http_ctx *c, PGresult *res)
{
	struct sput *s = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	const char *p[2] = {s->cid, skip_default()};
	http_db(c, SCHEDULE_SQL, 2, p, put_selected);
}

static void put_locked(struct http_ctx *c, PGresult *res)
{
	struct sput *s = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 500, "INTERNAL_ERROR", "company config missing");
		return;
	}
	if (s->enabled == 1 && strtoll(PQgetvalue(res, 0, 0), NULL, 10) <= 0) {
		http_error(c, 400, "WALLET_EMPTY", "Wallet balance is zero. Please recharge before enabling.");
		return;
	}
	const char *p[7] = {s->cid,
	                    s->has_intervals ? "true" : "false",
	                    s->days,
	                    s->starts,
	                    s->ends,
	                    s->skip < 0 ? NULL
	                    : s->skip   ? "true"
	                                : "false",
	                    s->enabled < 0 ? NULL
	                    : s->enabled   ? "true"
	                                   : "false"};
	/* The DELETE and the INSERT see the same snapshot: only old rows go. */
	http_db(c,
	        "WITH del AS (DELETE FROM schedule_intervals WHERE company_id = $1::integer AND $2::boolean),"
	        " ins AS (INSERT INTO schedule_intervals (company_id, day_of_week, start_time, end_time)"
	        "  SELECT $1::integer, u.d, u.s, u.e FROM unnest($3::smallint[], $4::time[], $5::time[]) AS u(d, s, e)"
	        "  WHERE $2::boolean)"
	        " UPDATE company_config SET skip_holidays = COALESCE($6::boolean, skip_holidays),"
	        " enabled = COALESCE($7::boolean, enabled),"
	        " disabled_by_dialer = CASE WHEN $7::boolean IS NULL THEN disabled_by_dialer ELSE false END,"
	        " version = version + 1, updated_at = now()"
	        " WHERE company_id = $1::integer",
	        7, p, put_written);
}

static void put_ensured(struct http_ctx *c, PGresult *res)
{
	struct sput *s = c->state;
	if (!company_config_ok_or_reply(c, res))
		return;
	const char *p[1] = {s->cid};
	http_db(c, "SELECT wallet_balance FROM company_config WHERE company_id = $1::integer FOR UPDATE", 1, p,
	        put_locked);
}

static void put_began(struct http_ctx *c, PGresult *res)
{
	struct sput *s = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	/* a statement of its own: the row it may create is then visible to the lock */
	const char *p[2] = {s->cid, skip_default()};
	http_db(c, "SELECT 1 FROM company_config_get($1::integer, $2::boolean)", 2, p, put_ensured);
}

static void put_company(struct http_ctx *c)
{
	struct sput *s = xcalloc(1, sizeof(*s));
	c->state = s;
	c->state_free = sput_free;
	if (field_object_or_reply(c, true) || field_bool_or_reply(c, "skip_holidays", &s->skip) ||
	    field_bool_or_reply(c, "enabled", &s->enabled) || intervals_parse_or_reply(c, s) ||
	    intervals_check_or_reply(c, s))
		return;
	if (s->skip < 0 && s->enabled < 0 && !s->has_intervals) {
		get_company(c); /* nothing to change: no version bump */
		return;
	}
	snprintf(s->cid, sizeof(s->cid), "%ld", c->company_id);
	intervals_literals(s);
	http_tx_begin(c, put_began);
}

static void put(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, put_company);
}

/* ---------------------------------------------------------------- status */

static json_t *local_iso(time_t t)
{
	char buf[40];
	tz_format_local(t, buf, sizeof(buf));
	return json_string(buf);
}

static void status_loaded(struct http_ctx *c, PGresult *res)
{
	struct callstate cs;
	struct callstate_result r;
	char date[16], jdate[16];

	if (!company_config_ok_or_reply(c, res))
		return;
	if (callstate_from_result(res, 0, &cs)) {
		http_error(c, 500, "INTERNAL_ERROR", "cannot read the company's schedule");
		return;
	}
	callstate_decide(&cs, time(NULL), cfg.short_retry_seconds, cfg.long_retry_seconds, &r);
	callstate_explain(&cs, &r);
	snprintf(date, sizeof(date), "%04d-%02d-%02d", r.local.y, r.local.m, r.local.d);
	snprintf(jdate, sizeof(jdate), "%04d-%02d-%02d", r.jy, r.jm, r.jd);
	const char *reason = callrule_reason_str(r.decision.reason);
	json_t *out = json_object();
	json_object_set_new(out, "call_allowed", json_boolean(r.decision.allowed));
	json_object_set_new(out, "reason", r.decision.allowed || !reason ? json_null() : json_string(reason));
	json_object_set_new(out, "retry_after_seconds",
	                    r.decision.allowed ? json_null() : json_integer(r.decision.retry_after));
	json_object_set_new(out, "timezone", json_string(tz_name()));
	json_object_set_new(out, "server_time", local_iso(r.now));
	json_object_set_new(out, "schedule_version", json_integer(cs.version));
	json_object_set_new(out, "local_date", json_string(date));
	json_object_set_new(out, "jalali_date", r.jy ? json_string(jdate) : json_null());
	json_object_set_new(out, "holiday", r.holiday ? json_string(r.holiday) : json_null());
	json_object_set_new(out, "next_window_at", r.has_next_window ? local_iso(r.next_window) : json_null());
	callstate_free(&cs);
	http_reply_json(c, 200, out);
}

static void status_company(struct http_ctx *c)
{
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[2] = {cid, skip_default()};
	http_db(c, CALLSTATE_SQL, 2, p, status_loaded);
}

static void status(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, status_company);
}

static const struct route routes[] = {
    {"GET", "/api/{company}/schedule", get, AUTH_JWT, 0},
    {"PUT", "/api/{company}/schedule", put, AUTH_JWT, RF_JSON},
    {"GET", "/api/{company}/schedule/status", status, AUTH_JWT, 0},
};

void schedule_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
