/*
 * A row of CALLSTATE_SQL to callrule's inputs, and the decision for an
 * instant with what the status endpoint shows beside it (today's dates, the
 * holiday's title, when the next window opens).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "callstate.h"
#include "jalali.h"

enum { COL_ENABLED, COL_WALLET, COL_VERSION, COL_SKIP, COL_DISABLED_BY_DIALER, COL_COST, COL_WINDOWS, COL_HOLIDAYS };

static const char *const columns[] = {
    "enabled", "wallet_balance", "version", "skip_holidays", "disabled_by_dialer", "cost_per_connected",
    "windows", "holidays",
};

/* "dow start end,dow start end" (seconds since local midnight). */
static int parse_windows(const char *s, struct callstate *out)
{
	size_t cap = 1;
	for (const char *p = s; *p; p++)
		cap += *p == ',';
	out->windows = xcalloc(cap, sizeof(*out->windows));
	const char *p = s;
	while (*p) {
		char *end;
		long v[3];
		for (int k = 0; k < 3; k++) {
			v[k] = strtol(p, &end, 10);
			if (end == p)
				return -1;
			p = end;
			if (k < 2 && *p++ != ' ')
				return -1;
		}
		if (*p == ',' && p[1])
			p++;
		else if (*p)
			return -1; /* anything else, or a trailing comma */
		if (v[0] < 0 || v[0] > 6 || v[1] < 0 || v[1] >= v[2] || v[2] > 86399 || out->nwindows >= cap)
			return -1;
		out->windows[out->nwindows++] = (struct callrule_window){(int)v[0], (int)v[1], (int)v[2]};
	}
	return 0;
}

/* [[civil day, removed, title], ...] */
static int parse_holidays(const char *s, struct callstate *out)
{
	json_t *arr = json_loads(s, 0, NULL);
	size_t i;
	json_t *it;
	int rc = 0;

	if (!json_is_array(arr)) {
		json_decref(arr);
		return -1;
	}
	out->titles = xcalloc(json_array_size(arr) + 1, sizeof(*out->titles));
	json_array_foreach(arr, i, it)
	{
		json_t *day = json_array_get(it, 0), *removed = json_array_get(it, 1), *title = json_array_get(it, 2);
		if (!json_is_integer(day) || !json_is_boolean(removed) || !json_is_string(title)) {
			rc = -1;
			break;
		}
		holidays_set_add(&out->holidays, (long)json_integer_value(day), json_is_true(removed));
		if (!json_is_true(removed))
			out->titles[out->ntitles++] =
			    (struct callstate_title){(long)json_integer_value(day), xstrdup(json_string_value(title))};
	}
	json_decref(arr);
	return rc;
}

int callstate_from_result(const PGresult *res, int row, struct callstate *out)
{
	int col[ARRAY_LEN(columns)];

	memset(out, 0, sizeof(*out));
	if (row < 0 || row >= PQntuples(res))
		return -1;
	for (size_t i = 0; i < ARRAY_LEN(columns); i++) {
		col[i] = PQfnumber(res, columns[i]);
		if (col[i] < 0 || (i < COL_WINDOWS && PQgetisnull(res, row, col[i])))
			return -1;
	}
	out->enabled = PQgetvalue(res, row, col[COL_ENABLED])[0] == 't';
	out->skip_holidays = PQgetvalue(res, row, col[COL_SKIP])[0] == 't';
	out->disabled_by_dialer = PQgetvalue(res, row, col[COL_DISABLED_BY_DIALER])[0] == 't';
	out->wallet_balance = strtoll(PQgetvalue(res, row, col[COL_WALLET]), NULL, 10);
	out->cost_per_connected = strtoll(PQgetvalue(res, row, col[COL_COST]), NULL, 10);
	out->version = strtol(PQgetvalue(res, row, col[COL_VERSION]), NULL, 10);
	if ((!PQgetisnull(res, row, col[COL_WINDOWS]) && parse_windows(PQgetvalue(res, row, col[COL_WINDOWS]), out)) ||
	    (!PQgetisnull(res, row, col[COL_HOLIDAYS]) &&
	     parse_holidays(PQgetvalue(res, row, col[COL_HOLIDAYS]), out))) {
		log_error("event=callstate_malformed");
		callstate_free(out);
		return -1;
	}
	return 0;
}

void callstate_free(struct callstate *cs)
{
	free(cs->windows);
	holidays_set_free(&cs->holidays);
	for (size_t i = 0; i < cs->ntitles; i++)
		free(cs->titles[i].title);
	free(cs->titles);
	memset(cs, 0, sizeof(*cs));
}

const char *callstate_holiday_title(const struct callstate *cs, long day)
{
	for (size_t i = 0; i < cs->holidays.n; i++) {
		if (cs->holidays.rows[i].day != day)
			continue;
		if (cs->holidays.rows[i].removed)
			return NULL;
		for (size_t k = 0; k < cs->ntitles; k++)
			if (cs->titles[k].day == day)
				return cs->titles[k].title;
		return NULL;
	}
	return holidays_fixed_title_on(day);
}

/* The instant of local wall time sec on civil day `day` (mktime: DST-aware). */
static time_t local_instant(long day, int sec)
{
	struct tm tm = {0};
	int y, m, d;
	tz_civil_from_days(day, &y, &m, &d);
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	tm.tm_hour = sec / 3600;
	tm.tm_min = sec / 60 % 60;
	tm.tm_sec = sec % 60;
	tm.tm_isdst = -1;
	return mktime(&tm);
}

static struct callrule_config rule_config(const struct callstate *cs, int short_retry, int long_retry)
{
	struct callrule_config rc = {
	    .wallet_balance = cs->wallet_balance,
	    .enabled = cs->enabled,
	    .skip_holidays = cs->skip_holidays,
	    .windows = cs->windows,
	    .nwindows = cs->nwindows,
	    .short_retry = short_retry,
	    .long_retry = long_retry,
	};
	return rc;
}

void callstate_decide(const struct callstate *cs, time_t now, int short_retry, int long_retry,
                      struct callstate_result *out)
{
	struct callrule_config rc = rule_config(cs, short_retry, long_retry);
	memset(out, 0, sizeof(*out));
	out->now = now;
	tz_local_from_utc(now, &out->local);
	callrule_decide(&rc, out->local.day, out->local.sec, holidays_lookup, (void *)&cs->holidays, &out->decision);
}

void callstate_explain(const struct callstate *cs, struct callstate_result *out)
{
	struct callrule_config rc = rule_config(cs, 0, 0);
	long open_day;
	int open_sec;
	if (jalali_from_days(out->local.day, &out->jy, &out->jm, &out->jd))
		out->jy = out->jm = out->jd = 0;
	out->holiday = callstate_holiday_title(cs, out->local.day);
	switch (out->decision.reason) {
	case CALLRULE_HOLIDAY:
	case CALLRULE_NO_WINDOW:
	case CALLRULE_OUTSIDE_WINDOW:
		/* the holidays table is loaded CALLSTATE_HORIZON_DAYS ahead of the database's today */
		out->has_next_window =
		    callrule_next_open(&rc, out->local.day, out->local.sec, holidays_lookup, (void *)&cs->holidays,
		                       CALLSTATE_HORIZON_DAYS - 2, &open_day, &open_sec);
		if (out->has_next_window)
			out->next_window = local_instant(open_day, open_sec);
		break;
	default:
		break;
	}
}

char *callstate_published_json(const struct callstate *cs, const struct callstate_result *r, long long computed_at_ms)
{
	const char *reason = callrule_reason_str(r->decision.reason);
	json_t *o =
	    json_pack("{s:b, s:s?, s:o, s:I, s:s, s:I}", "allowed", r->decision.allowed, "reason",
	              r->decision.allowed ? NULL : reason, "retry_after",
	              r->decision.allowed ? json_null() : json_integer(r->decision.retry_after), "schedule_version",
	              (json_int_t)cs->version, "timezone", tz_name(), "computed_at", (json_int_t)computed_at_ms);
	char *out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!out)
		abort();
	return out;
}

int callstate_published_parse(const char *text, long long now_ms, struct callstate_published *out)
{
	json_error_t e;
	json_t *o = text ? json_loads(text, 0, &e) : NULL;
	json_t *allowed = json_object_get(o, "allowed"), *reason = json_object_get(o, "reason");
	json_t *retry = json_object_get(o, "retry_after"), *ver = json_object_get(o, "schedule_version");
	json_t *at = json_object_get(o, "computed_at");
	int rc = -1;
	memset(out, 0, sizeof(*out));
	if (!json_is_boolean(allowed) || !json_is_integer(ver) || !json_is_integer(at))
		goto out;
	out->allowed = json_is_true(allowed);
	out->version = (long)json_integer_value(ver);
	out->computed_at_ms = json_integer_value(at);
	if (now_ms - out->computed_at_ms > CALLSTATE_FRESH_MS || out->computed_at_ms - now_ms > 1000)
		goto out;
	if (!out->allowed) {
		if (!json_is_string(reason) || !json_is_integer(retry) ||
		    json_string_length(reason) >= sizeof(out->reason))
			goto out;
		snprintf(out->reason, sizeof(out->reason), "%s", json_string_value(reason));
		out->retry_after = (int)json_integer_value(retry);
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}
