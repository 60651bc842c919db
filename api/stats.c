/*
 * /api/stats: COMPAT §2.11's five (numbers-summary, attempt-trend, attempts-summary, costs,
 * dashboard-stats) and ours (agents, daily). Every answer is read from the rollups the stats
 * worker keeps and the number counters (schema/011_stats.sql), never from call_attempts or
 * number_state: a query reads at most a few thousand rows whatever the history's size.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "jalali.h"
#include "tz.h"
#include "util.h"

#define NSTATUS            13
#define SPAN_MAX           240 /* attempt-trend buckets */
#define DAYS_MAX           365 /* attempts-summary */
#define HOURS_MAX          720
#define MINUTE_HOURS_MAX   24  /* attempts-summary's hours to the minute (stats_minutes_kept: 25 h) */
#define RANGE_MAX_DAYS     366 /* agents, daily: days in [start_date, end_date] */
#define RANGE_DEFAULT_DAYS 30  /* agents, daily without dates: the last 30 local days */

/* COMPAT §2.11: every status list holds the 13 statuses, sorted by name; connected = its
 * connected set (attempts-summary, costs, agents) = the billable statuses (dashboard-stats). The
 * queries use the same set as schema/011_stats.sql's stats_connected(status). */
static const struct {
	const char *name;
	bool connected;
} statuses[NSTATUS] = {
    {"BANNED", false},      {"BUSY", false},   {"COMPLAINED", false},    {"CONNECTED", true},
    {"DISCONNECTED", true}, {"FAILED", true},  {"HANGUP", true},         {"INBOUND_CALL", false},
    {"IN_QUEUE", false},    {"MISSED", false}, {"NOT_INTERESTED", true}, {"POWER_OFF", false},
    {"UNKNOWN", true},
};

/* Index in statuses, or -1. */
static int status_idx(const char *s)
{
	for (int i = 0; i < NSTATUS; i++)
		if (!strcmp(statuses[i].name, s))
			return i;
	return -1;
}

/* count / total × 100, rounded to 2 decimals; 0.0 when total is 0 (COMPAT §2.11). */
static double pct(long long count, long long total)
{
	return total > 0 ? round((double)count * 10000.0 / (double)total) / 100.0 : 0.0;
}

/* [StatusShare × 13] of counts, percentages of total. New reference. */
static json_t *shares(const long long counts[NSTATUS], long long total)
{
	json_t *a = json_array();
	for (int i = 0; i < NSTATUS; i++)
		json_array_append_new(a, json_pack("{s:s, s:I, s:f}", "status", statuses[i].name, "count",
		                                   (json_int_t)counts[i], "percentage", pct(counts[i], total)));
	return a;
}

/* What a request parsed, and the values its query binds (kept until the reply). */
struct sreq {
	long span;             /* attempt-trend */
	bool hourly;           /* attempt-trend granularity=hour */
	long days, hours;      /* attempts-summary (0: not given) */
	int grp;               /* dashboard-stats: 1 scenario, 2 line */
	const char *window;    /* dashboard-stats time_filter */
	long first_day, ndays; /* a range of local days */
	time_t first;          /* the first hour bucket / window start */
	char p[3][40];         /* bound parameter texts */
};

static struct sreq *sreq_new(struct http_ctx *c)
{
	struct sreq *r = xcalloc(1, sizeof(*r));
	c->state = r;
	c->state_free = free;
	return r;
}

/* ---------------------------------------------------------------- company */

/* COMPAT §2.11's `company`: an active company the user may see (404/403), or none. */
static void company_then(struct http_ctx *c, const char *name, long fallback, void (*next)(struct http_ctx *c))
{
	if (name && *name) {
		company_by_name(c, name, true, next);
		return;
	}
	c->company_id = fallback;
	next(c);
}

/* `company`, else a superuser counts every company (0) and anyone else only their own (the
 * original counted every company for anyone: decisions.md, "Stats without a company"); a user of
 * no company then gets 403, never everyone's counts. Calls next(c) or replies. */
static void scope_then(struct http_ctx *c, void (*next)(struct http_ctx *c))
{
	const char *name = http_query(c, "company");
	if (c->user.is_superuser && !(name && *name)) {
		c->company_id = 0; /* every company */
		next(c);
		return;
	}
	company_or_own_then(c, name, true, next);
}

/* A required `company`: false after replying 422. */
static bool company_given_or_reply(struct http_ctx *c, const char **name)
{
	*name = http_query(c, "company");
	if (!*name || !**name) {
		http_invalid(c, "company", "field required");
		return false;
	}
	return true;
}

/* `company`, or the user's own; a superuser without either has none: false after replying 422. */
static bool company_or_own_or_reply(struct http_ctx *c, const char **name)
{
	*name = http_query(c, "company");
	if ((!*name || !**name) && !c->user.company_id) {
		http_invalid(c, "company", "field required");
		return false;
	}
	return true;
}

static void cid_param(struct http_ctx *c, char out[40])
{
	snprintf(out, 40, "%ld", c->company_id);
}

/* Rows (day index from $2, status, attempts) of company $1's days $2..$3: attempt-trend by day,
 * daily. */
#define DAILY_COUNTS_SQL                                           \
	"SELECT day - $2::date, status, attempts FROM stats_daily" \
	" WHERE company_id = $1::int AND day BETWEEN $2::date AND $3::date"

/* ---------------------------------------------------------------- numbers-summary */

static void numbers_summary_done(struct http_ctx *c, PGresult *res)
{
	long long counts[NSTATUS] = {0}, total = 0, called = 0;
	if (!http_db_ok_or_reply(c, res))
		return;
	for (int row = 0; row < PQntuples(res); row++) {
		const char *s = PQgetvalue(res, row, 0);
		long long n = strtoll(PQgetvalue(res, row, 1), NULL, 10);
		int i = status_idx(s);
		if (!strcmp(s, "ALL"))
			total = n;
		else if (i >= 0 && c->company_id && strcmp(s, "IN_QUEUE"))
			counts[i] = n;
	}
	for (int i = 0; i < NSTATUS; i++)
		called += counts[i];
	/* IN_QUEUE = every number without another status for the company: the counts add up to the
	 * total (COMPAT preface 9; the original left out numbers whose newest result is IN_QUEUE) */
	if (c->company_id)
		counts[status_idx("IN_QUEUE")] = total - called > 0 ? total - called : 0;
	http_reply_json(
	    c, 200,
	    json_pack("{s:I, s:o}", "total_numbers", (json_int_t)total, "status_counts", shares(counts, total)));
}

static void numbers_summary_query(struct http_ctx *c)
{
	struct sreq *r = c->state;
	cid_param(c, r->p[0]);
	const char *p[1] = {r->p[0]};
	/* counts folded by the stats worker plus the deltas it has not folded yet, in one snapshot */
	http_db(c,
	        "SELECT status, sum(n)::bigint FROM ("
	        " SELECT status, n FROM stats_number_counts WHERE company_id = $1::int OR company_id = 0"
	        " UNION ALL SELECT status, n FROM stats_number_deltas WHERE company_id = $1::int OR company_id = 0) x"
	        " GROUP BY status",
	        1, p, numbers_summary_done);
}

static void numbers_summary(struct http_ctx *c)
{
	if (!require_admin_or_reply(c))
		return;
	sreq_new(c);
	company_then(c, http_query(c, "company"), c->user.company_id, numbers_summary_query);
}

/* ---------------------------------------------------------------- attempt-trend */

/* counts[b][s] from rows (bucket index, status, attempts); rows outside [0, n) are ignored. */
static long long *bucket_counts(PGresult *res, long n)
{
	long long *counts = xcalloc((size_t)n * NSTATUS, sizeof(*counts));
	for (int row = 0; row < PQntuples(res); row++) {
		long b = strtol(PQgetvalue(res, row, 0), NULL, 10);
		int i = status_idx(PQgetvalue(res, row, 1));
		if (b >= 0 && b < n && i >= 0)
			counts[b * NSTATUS + i] += strtoll(PQgetvalue(res, row, 2), NULL, 10);
	}
	return counts;
}

static void trend_done(struct http_ctx *c, PGresult *res)
{
	struct sreq *r = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	long long *counts = bucket_counts(res, r->span);
	json_t *buckets = json_array();
	for (long b = 0; b < r->span; b++) {
		long long *row = counts + b * NSTATUS, total = 0;
		char at[40];
		for (int i = 0; i < NSTATUS; i++)
			total += row[i];
		if (r->hourly) {
			tz_format_local(r->first + (time_t)b * 3600, at, sizeof(at));
		} else {
			int y, m, d;
			tz_civil_from_days(r->first_day + b, &y, &m, &d);
			tz_format_local(tz_local_midnight(y, m, d), at, sizeof(at));
		}
		json_array_append_new(buckets, json_pack("{s:s, s:I, s:o}", "bucket", at, "total_attempts",
		                                         (json_int_t)total, "status_counts", shares(row, total)));
	}
	free(counts);
	http_reply_json(c, 200, json_pack("{s:s, s:o}", "granularity", r->hourly ? "hour" : "day", "buckets", buckets));
}

static void trend_query(struct http_ctx *c)
{
	struct sreq *r = c->state;
	struct tz_local now;
	time_t t = time(NULL);
	tz_local_from_utc(t, &now);
	cid_param(c, r->p[0]);
	if (r->hourly) {
		/* the current local hour began mm:ss ago; span hours back from it */
		time_t cur = t - (now.mm * 60 + now.ss);
		r->first = cur - (time_t)(r->span - 1) * 3600;
		snprintf(r->p[1], sizeof(r->p[1]), "%lld", (long long)r->first);
		snprintf(r->p[2], sizeof(r->p[2]), "%lld", (long long)cur);
		const char *p[3] = {r->p[0], r->p[1], r->p[2]};
		http_db(
		    c,
		    "SELECT (extract(epoch FROM hour)::bigint - $2::bigint) / 3600, status, attempts FROM stats_hourly"
		    " WHERE company_id = $1::int AND hour BETWEEN to_timestamp($2::bigint) AND "
		    "to_timestamp($3::bigint)",
		    3, p, trend_done);
		return;
	}
	r->first_day = now.day - (r->span - 1);
	tz_format_day(r->first_day, r->p[1]);
	tz_format_day(now.day, r->p[2]);
	const char *p[3] = {r->p[0], r->p[1], r->p[2]};
	http_db(c, DAILY_COUNTS_SQL, 3, p, trend_done);
}

static void attempt_trend(struct http_ctx *c)
{
	if (!require_admin_or_reply(c))
		return;
	struct sreq *r = sreq_new(c);
	const char *g = http_query(c, "granularity");
	if (query_long_or_reply(c, "span", 1, SPAN_MAX, 14, &r->span))
		return;
	if (g && *g && strcmp(g, "day") && strcmp(g, "hour")) {
		http_invalid(c, "granularity", "must be day or hour");
		return;
	}
	r->hourly = g && !strcmp(g, "hour");
	scope_then(c, trend_query);
}

/* ---------------------------------------------------------------- attempts-summary */

static void summary_done(struct http_ctx *c, PGresult *res)
{
	long long counts[NSTATUS] = {0}, total = 0, conn = 0;
	if (!http_db_ok_or_reply(c, res))
		return;
	for (int row = 0; row < PQntuples(res); row++) {
		int i = status_idx(PQgetvalue(res, row, 0));
		if (i >= 0)
			counts[i] += strtoll(PQgetvalue(res, row, 1), NULL, 10);
	}
	for (int i = 0; i < NSTATUS; i++) {
		total += counts[i];
		conn += statuses[i].connected ? counts[i] : 0;
	}
	http_reply_json(c, 200,
	                json_pack("{s:I, s:o, s:I, s:f}", "total_attempts", (json_int_t)total, "status_counts",
	                          shares(counts, total), "connected_count", (json_int_t)conn, "connected_percentage",
	                          pct(conn, total)));
}

static void summary_query(struct http_ctx *c)
{
	struct sreq *r = c->state;
	time_t t = time(NULL);
	struct tz_local now;
	tz_local_from_utc(t, &now);
	cid_param(c, r->p[0]);
	if (r->hours) {
		/* now − hours: up to 24 hours to the minute (the minute rollups keep 25 hours), the minutes
		 * up to the next local hour and then whole hours; beyond, from the start of the local hour
		 * (decisions.md, "Stats: granularity of now − N") */
		time_t from = t - (time_t)r->hours * 3600;
		struct tz_local f;
		from -= from % 60;
		tz_local_from_utc(from, &f);
		time_t hour = from - f.mm * 60;
		if (r->hours > MINUTE_HOURS_MAX)
			from = hour;
		else if (hour < from)
			hour += 3600;
		snprintf(r->p[1], sizeof(r->p[1]), "%lld", (long long)from);
		snprintf(r->p[2], sizeof(r->p[2]), "%lld", (long long)hour);
		const char *p[3] = {r->p[0], r->p[1], r->p[2]};
		http_db(c,
		        "SELECT status, sum(attempts)::bigint FROM ("
		        " SELECT status, attempts FROM stats_minutely WHERE company_id = $1::int"
		        "  AND minute >= to_timestamp($2::bigint) AND minute < to_timestamp($3::bigint)"
		        " UNION ALL SELECT status, attempts FROM stats_hourly WHERE company_id = $1::int"
		        "  AND hour >= to_timestamp($3::bigint)) x GROUP BY status",
		        3, p, summary_done);
		return;
	}
	/* days=N: from local midnight N−1 days ago; neither: everything */
	tz_format_day(r->days ? now.day - (r->days - 1) : tz_days_from_civil(1900, 1, 1), r->p[1]);
	const char *p[2] = {r->p[0], r->p[1]};
	http_db(c,
	        "SELECT status, sum(attempts)::bigint FROM stats_daily WHERE company_id = $1::int AND day >= $2::date"
	        " GROUP BY status",
	        2, p, summary_done);
}

static void attempts_summary(struct http_ctx *c)
{
	if (!require_admin_or_reply(c))
		return;
	struct sreq *r = sreq_new(c);
	if (query_long_or_reply(c, "days", 1, DAYS_MAX, 0, &r->days) ||
	    query_long_or_reply(c, "hours", 1, HOURS_MAX, 0, &r->hours))
		return;
	scope_then(c, summary_query);
}

/* ---------------------------------------------------------------- costs */

static void costs_done(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	long long day = strtoll(PQgetvalue(res, 0, 0), NULL, 10), month = strtoll(PQgetvalue(res, 0, 1), NULL, 10),
	          rate = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	http_reply_json(c, 200,
	                json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "currency", "Toman", "cost_per_connected",
	                          (json_int_t)rate, "daily_count", (json_int_t)day, "daily_cost",
	                          (json_int_t)(day * rate), "monthly_count", (json_int_t)month, "monthly_cost",
	                          (json_int_t)(month * rate)));
}

static void costs_query(struct http_ctx *c)
{
	struct sreq *r = c->state;
	struct tz_local now;
	tz_local_from_utc(time(NULL), &now);
	cid_param(c, r->p[0]);
	tz_format_day(now.day, r->p[1]);
	tz_format_day(tz_days_from_civil(now.y, now.m, 1), r->p[2]);
	const char *p[3] = {r->p[0], r->p[1], r->p[2]};
	/* the billing rate (COMPAT preface 6); until the company's config row exists, the rate that
	 * row will get: company_config.cost_per_connected's DEFAULT 150 (schema/002_numbers.sql) */
	http_db(c,
	        "SELECT COALESCE(sum(attempts) FILTER (WHERE day = $2::date), 0),"
	        " COALESCE(sum(attempts), 0),"
	        " COALESCE((SELECT cost_per_connected FROM company_config WHERE company_id = $1::int), 150)"
	        " FROM stats_daily WHERE company_id = $1::int AND day >= $3::date AND stats_connected(status)",
	        3, p, costs_done);
}

static void costs(struct http_ctx *c)
{
	const char *name;
	if (!require_admin_or_reply(c) || !company_given_or_reply(c, &name))
		return;
	sreq_new(c);
	company_by_name(c, name, true, costs_query);
}

/* ---------------------------------------------------------------- dashboard-stats */

struct group {
	long id;
	char *name;
	long long counts[NSTATUS];
};

static int group_cmp(const void *a, const void *b)
{
	const struct group *x = a, *y = b;
	int d = strcmp(x->name, y->name);
	return d ? d : (x->id > y->id) - (x->id < y->id);
}

/* {<13 statuses>: n} of counts, into o (borrowed). */
static void status_counts(json_t *o, const long long counts[NSTATUS])
{
	for (int i = 0; i < NSTATUS; i++)
		json_object_set_new(o, statuses[i].name, json_integer(counts[i]));
}

/* {total, billable, inbound} of counts, into o (borrowed). */
static void status_sums(json_t *o, const long long counts[NSTATUS])
{
	long long total = 0, bill = 0;
	for (int i = 0; i < NSTATUS; i++) {
		total += counts[i];
		bill += statuses[i].connected ? counts[i] : 0;
	}
	json_object_set_new(o, "total", json_integer(total));
	json_object_set_new(o, "billable", json_integer(bill));
	json_object_set_new(o, "inbound", json_integer(counts[status_idx("INBOUND_CALL")]));
}

/* Rows (group_id, display_name or NULL, status, attempts), ordered by group_id. */
static void dashboard_done(struct http_ctx *c, PGresult *res)
{
	struct sreq *r = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	int rows = PQntuples(res), n = 0;
	struct group *g = xcalloc((size_t)rows + 1, sizeof(*g));
	long long totals[NSTATUS] = {0};
	for (int row = 0; row < rows; row++) {
		long id = strtol(PQgetvalue(res, row, 0), NULL, 10);
		if (n == 0 || g[n - 1].id != id) {
			g[n].id = id;
			g[n].name = PQgetisnull(res, row, 1)
			                ? xasprintf("Unknown %s %ld", r->grp == 1 ? "scenario" : "line", id)
			                : xstrdup(PQgetvalue(res, row, 1));
			n++;
		}
		int i = status_idx(PQgetvalue(res, row, 2));
		long long v = strtoll(PQgetvalue(res, row, 3), NULL, 10);
		if (i >= 0) {
			g[n - 1].counts[i] += v;
			totals[i] += v;
		}
	}
	qsort(g, (size_t)n, sizeof(*g), group_cmp);
	json_t *groups = json_array(), *tot = json_object();
	for (int k = 0; k < n; k++) {
		json_t *o = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)g[k].id, "name", g[k].name, "display_name",
		                      g[k].name);
		json_t *st = json_object();
		status_counts(st, g[k].counts);
		json_object_set_new(o, "statuses", st);
		status_sums(o, g[k].counts);
		json_array_append_new(groups, o);
		free(g[k].name);
	}
	free(g);
	status_counts(tot, totals);
	status_sums(tot, totals);
	http_reply_json(c, 200, json_pack("{s:o, s:o}", "groups", groups, "totals", tot));
}

/* Rows (group_id, display_name or NULL, status, attempts) of company $1's scenarios (grp 1) or
 * lines (grp 2) in a window of the minute or the day rollup: summed per group and status first,
 * then named by one join with the company's scenarios or lines. */
#define DASHBOARD_SQL(rollup, grp, names, window)                                                            \
	"SELECT g.group_id, x.display_name, g.status, g.n FROM (SELECT group_id, status, sum(attempts) AS n" \
	" FROM " rollup " WHERE company_id = $1::int AND grp = " grp " AND " window " GROUP BY 1, 2) g"      \
	" LEFT JOIN " names " x ON x.id = g.group_id AND x.company_id = $1::int ORDER BY 1"
#define DASHBOARD_MINUTES "minute >= to_timestamp($2::bigint)"
#define DASHBOARD_DAYS    "day BETWEEN $2::date AND $3::date"

static void dashboard_query(struct http_ctx *c)
{
	static const char *const minutes_sql[2] = {
	    DASHBOARD_SQL("stats_minutely_groups", "1", "scenarios", DASHBOARD_MINUTES),
	    DASHBOARD_SQL("stats_minutely_groups", "2", "outbound_lines", DASHBOARD_MINUTES),
	};
	static const char *const days_sql[2] = {
	    DASHBOARD_SQL("stats_daily_groups", "1", "scenarios", DASHBOARD_DAYS),
	    DASHBOARD_SQL("stats_daily_groups", "2", "outbound_lines", DASHBOARD_DAYS),
	};
	struct sreq *r = c->state;
	time_t t = time(NULL);
	struct tz_local now;
	tz_local_from_utc(t, &now);
	cid_param(c, r->p[0]);
	if (!strcmp(r->window, "1h")) {
		/* now − 1 h, to the minute */
		time_t from = t - 3600;
		snprintf(r->p[1], sizeof(r->p[1]), "%lld", (long long)(from - from % 60));
		const char *p[2] = {r->p[0], r->p[1]};
		http_db(c, minutes_sql[r->grp - 1], 2, p, dashboard_done);
		return;
	}
	/* today; yesterday; 7d / 30d: from local midnight 6 / 29 days ago */
	long first = now.day, last = now.day;
	if (!strcmp(r->window, "yesterday"))
		first = last = now.day - 1;
	else if (!strcmp(r->window, "7d"))
		first = now.day - 6;
	else if (!strcmp(r->window, "30d"))
		first = now.day - 29;
	tz_format_day(first, r->p[1]);
	tz_format_day(last, r->p[2]);
	const char *p[3] = {r->p[0], r->p[1], r->p[2]};
	http_db(c, days_sql[r->grp - 1], 3, p, dashboard_done);
}

static void dashboard_stats(struct http_ctx *c)
{
	static const char *const windows[] = {"1h", "today", "yesterday", "7d", "30d"};
	const char *name, *g, *w;
	if (!require_admin_or_reply(c) || !company_given_or_reply(c, &name))
		return;
	struct sreq *r = sreq_new(c);
	g = http_query(c, "group_by");
	w = http_query(c, "time_filter");
	if (g && *g && strcmp(g, "scenario") && strcmp(g, "line")) {
		http_invalid(c, "group_by", "must be scenario or line");
		return;
	}
	r->grp = g && !strcmp(g, "line") ? 2 : 1;
	r->window = "today";
	if (w && *w) {
		r->window = NULL;
		for (size_t i = 0; i < ARRAY_LEN(windows); i++)
			if (!strcmp(w, windows[i]))
				r->window = windows[i];
		if (!r->window) {
			http_invalid(c, "time_filter", "must be one of 1h, today, yesterday, 7d, 30d");
			return;
		}
	}
	company_by_name(c, name, true, dashboard_query);
}

/* ---------------------------------------------------------------- ranges of days (ours) */

/* start_date / end_date (inclusive local days, Gregorian as tz_parse_day reads them; default the
 * last RANGE_DEFAULT_DAYS days to today, or that many from or to the one given): false after
 * replying 400 (unparsable, as the numbers list) or 422 (order, length). */
static bool range_or_reply(struct http_ctx *c, struct sreq *r)
{
	const char *s = http_query(c, "start_date"), *e = http_query(c, "end_date");
	long first, last;
	struct tz_local now;
	tz_local_from_utc(time(NULL), &now);
	if (s && *s && tz_parse_day(s, &first)) {
		http_error(c, 400, "BAD_REQUEST", "Invalid start_date");
		return false;
	}
	if (e && *e && tz_parse_day(e, &last)) {
		http_error(c, 400, "BAD_REQUEST", "Invalid end_date");
		return false;
	}
	if (!(s && *s) && !(e && *e)) {
		last = now.day;
		first = last - (RANGE_DEFAULT_DAYS - 1);
	} else if (!(s && *s)) {
		first = last - (RANGE_DEFAULT_DAYS - 1);
	} else if (!(e && *e)) {
		last = first + (RANGE_DEFAULT_DAYS - 1);
	}
	if (last < first) {
		http_invalid(c, "end_date", "must not be before start_date");
		return false;
	}
	if (last - first + 1 > RANGE_MAX_DAYS) {
		http_invalid(c, "end_date", "the range must be at most 366 days");
		return false;
	}
	r->first_day = first;
	r->ndays = last - first + 1;
	tz_format_day(first, r->p[1]);
	tz_format_day(last, r->p[2]);
	return true;
}

/* Our endpoints' common steps: admin, the range, then `company` or the user's own; calls next(c)
 * with c->company_id / c->company set, or replies. */
static void range_then(struct http_ctx *c, void (*next)(struct http_ctx *c))
{
	const char *name;
	if (!require_admin_or_reply(c))
		return;
	struct sreq *r = sreq_new(c);
	if (range_or_reply(c, r) && company_or_own_or_reply(c, &name))
		company_or_own_then(c, name, true, next);
}

/* ---------------------------------------------------------------- agents (ours) */

static void agents_done(struct http_ctx *c, PGresult *res)
{
	struct sreq *r = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	json_t *agents = json_array();
	long long total = 0, conn = 0;
	for (int row = 0; row < PQntuples(res); row++) {
		long long a = strtoll(PQgetvalue(res, row, 5), NULL, 10),
		          k = strtoll(PQgetvalue(res, row, 6), NULL, 10);
		json_t *o = json_pack(
		    "{s:I, s:o, s:o, s:o, s:o, s:I, s:I, s:f, s:o}", "agent_id",
		    (json_int_t)strtoll(PQgetvalue(res, row, 0), NULL, 10), "username",
		    PQgetisnull(res, row, 1) ? json_null() : json_string(PQgetvalue(res, row, 1)), "full_name",
		    PQgetisnull(res, row, 2) ? json_null() : json_string(PQgetvalue(res, row, 2)), "phone_number",
		    PQgetisnull(res, row, 3) ? json_null() : json_string(PQgetvalue(res, row, 3)), "is_active",
		    PQgetisnull(res, row, 4) ? json_null() : json_boolean(!strcmp(PQgetvalue(res, row, 4), "t")),
		    "attempts", (json_int_t)a, "connected", (json_int_t)k, "connect_rate", pct(k, a), "last_activity",
		    PQgetisnull(res, row, 7) ? json_null() : json_string(PQgetvalue(res, row, 7)));
		json_array_append_new(agents, o);
		total += a;
		conn += k;
	}
	http_reply_json(c, 200,
	                json_pack("{s:s, s:s, s:s, s:I, s:I, s:f, s:o}", "company", c->company, "start_date", r->p[1],
	                          "end_date", r->p[2], "attempts", (json_int_t)total, "connected", (json_int_t)conn,
	                          "connect_rate", pct(conn, total), "agents", agents));
}

static void agents_query(struct http_ctx *c)
{
	struct sreq *r = c->state;
	cid_param(c, r->p[0]);
	const char *p[3] = {r->p[0], r->p[1], r->p[2]};
	/* every AGENT of the company (zero when idle), and any other user the range counted for it
	 * (a former agent, or one moved to another company); busiest first */
	http_db(
	    c,
	    "WITH s AS (SELECT agent_id, sum(attempts) AS a, sum(connected) AS k, max(last_at) AS l"
	    "   FROM stats_agents_daily WHERE company_id = $1::int AND day BETWEEN $2::date AND $3::date"
	    "  GROUP BY agent_id),"
	    " ids AS (SELECT agent_id AS id FROM s"
	    "  UNION SELECT id FROM users WHERE company_id = $1::int AND role = 'AGENT')"
	    " SELECT ids.id, u.username,"
	    "  CASE WHEN u.id IS NOT NULL THEN COALESCE(NULLIF(btrim(concat_ws(' ', u.first_name, u.last_name)), ''),"
	    "   u.username) END,"
	    "  u.phone_number, u.is_active, COALESCE(s.a, 0), COALESCE(s.k, 0), api_ts(s.l)"
	    " FROM ids LEFT JOIN s ON s.agent_id = ids.id LEFT JOIN users u ON u.id = ids.id"
	    " ORDER BY COALESCE(s.a, 0) DESC, ids.id",
	    3, p, agents_done);
}

static void agents(struct http_ctx *c)
{
	range_then(c, agents_query);
}

/* ---------------------------------------------------------------- daily (ours) */

static void daily_done(struct http_ctx *c, PGresult *res)
{
	struct sreq *r = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	long long *counts = bucket_counts(res, r->ndays), all = 0;
	long long sum[NSTATUS] = {0};
	json_t *days = json_array();
	for (long b = 0; b < r->ndays; b++) {
		long long *row = counts + b * NSTATUS, total = 0;
		char g[16], j[16];
		for (int i = 0; i < NSTATUS; i++) {
			total += row[i];
			sum[i] += row[i];
		}
		all += total;
		tz_format_day(r->first_day + b, g);
		jalali_format_day(r->first_day + b, j); /* years 1900..9999 are all in range */
		json_array_append_new(days, json_pack("{s:s, s:s, s:I, s:o}", "date", g, "jalali_date", j, "total",
		                                      (json_int_t)total, "status_counts", shares(row, total)));
	}
	free(counts);
	http_reply_json(c, 200,
	                json_pack("{s:s, s:s, s:s, s:I, s:o, s:o}", "company", c->company, "start_date", r->p[1],
	                          "end_date", r->p[2], "total_attempts", (json_int_t)all, "status_counts",
	                          shares(sum, all), "days", days));
}

static void daily_query(struct http_ctx *c)
{
	struct sreq *r = c->state;
	cid_param(c, r->p[0]);
	const char *p[3] = {r->p[0], r->p[1], r->p[2]};
	http_db(c, DAILY_COUNTS_SQL, 3, p, daily_done);
}

static void daily(struct http_ctx *c)
{
	range_then(c, daily_query);
}

static const struct route routes[] = {
    {"GET", "/api/stats/numbers-summary", numbers_summary, AUTH_JWT, 0},
    {"GET", "/api/stats/attempt-trend", attempt_trend, AUTH_JWT, 0},
    {"GET", "/api/stats/attempts-summary", attempts_summary, AUTH_JWT, 0},
    {"GET", "/api/stats/costs", costs, AUTH_JWT, 0},
    {"GET", "/api/stats/dashboard-stats", dashboard_stats, AUTH_JWT, 0},
    {"GET", "/api/stats/agents", agents, AUTH_JWT, 0},
    {"GET", "/api/stats/daily", daily, AUTH_JWT, 0},
};

void stats_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
