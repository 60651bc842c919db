/*
 * callstate: a CALLSTATE_SQL row (built with libpq's result constructors) to
 * callrule's inputs, malformed rows refused, holiday titles (table rows,
 * tombstones, the computed ones), and the decision with its next window.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "callstate.h"
#include "jalali.h"
#include "tz.h"

#define NCOLS 8

static const char *const names[NCOLS] = {
    "enabled", "wallet_balance", "version", "skip_holidays", "disabled_by_dialer", "cost_per_connected",
    "windows", "holidays"};

/* One row; NULL values are SQL NULLs. skip_col drops that column (-1: none). */
static PGresult *make_row(const char *const values[NCOLS], int skip_col)
{
	PGresAttDesc attrs[NCOLS];
	int n = 0, col = 0;
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

	assert_non_null(res);
	memset(attrs, 0, sizeof(attrs));
	for (int i = 0; i < NCOLS; i++) {
		if (i == skip_col)
			continue;
		attrs[n].name = (char *)names[i];
		attrs[n].typid = 25; /* text: callstate reads the text form */
		attrs[n].typlen = -1;
		attrs[n].atttypmod = -1;
		n++;
	}
	assert_int_equal(PQsetResultAttrs(res, n, attrs), 1);
	for (int i = 0; i < NCOLS; i++) {
		if (i == skip_col)
			continue;
		assert_int_equal(PQsetvalue(res, 0, col, (char *)values[i], values[i] ? (int)strlen(values[i]) : -1),
		                 1);
		col++;
	}
	return res;
}

static long day_of(int y, int m, int d)
{
	return tz_days_from_civil(y, m, d);
}

/* A holidays json array: [[day, removed, title]...] for 2026-11-24 (custom)
 * and a tombstone on Nowruz 1406 (2027-03-21). */
static char holidays_json[160];

static int setup(void **state)
{
	(void)state;
	if (tz_init("Asia/Tehran") < 0)
		return -1;
	snprintf(holidays_json, sizeof(holidays_json), "[[%ld, false, \"Custom day\"], [%ld, true, \"gone\"]]",
	         day_of(2026, 11, 24), day_of(2027, 3, 21));
	return 0;
}

static void test_parse(void **state)
{
	const char *v[NCOLS] = {"t", "1000", "7", "f", "t", "150", "2 32400 61200,0 0 86399", holidays_json};
	PGresult *res = make_row(v, -1);
	struct callstate cs;

	(void)state;
	assert_int_equal(callstate_from_result(res, 0, &cs), 0);
	assert_true(cs.enabled);
	assert_false(cs.skip_holidays);
	assert_true(cs.disabled_by_dialer);
	assert_int_equal(cs.wallet_balance, 1000);
	assert_int_equal(cs.cost_per_connected, 150);
	assert_int_equal(cs.version, 7);
	assert_int_equal(cs.nwindows, 2);
	assert_int_equal(cs.windows[0].day_of_week, 2);
	assert_int_equal(cs.windows[0].start, 32400);
	assert_int_equal(cs.windows[0].end, 61200);
	assert_int_equal(cs.windows[1].end, 86399);
	assert_int_equal(cs.holidays.n, 2);
	assert_int_equal(cs.ntitles, 1);
	assert_string_equal(callstate_holiday_title(&cs, day_of(2026, 11, 24)), "Custom day");
	assert_null(callstate_holiday_title(&cs, day_of(2027, 3, 21)));     /* tombstone */
	assert_non_null(callstate_holiday_title(&cs, day_of(2027, 3, 22))); /* 2 Farvardin 1406 */
	assert_null(callstate_holiday_title(&cs, day_of(2026, 11, 25)));    /* an ordinary day */
	callstate_free(&cs);
	callstate_free(&cs);                                      /* idempotent */
	assert_int_equal(callstate_from_result(res, 1, &cs), -1); /* no such row */
	PQclear(res);

	/* no windows, no holidays: both NULL */
	const char *empty[NCOLS] = {"f", "0", "1", "t", "f", "150", NULL, NULL};
	res = make_row(empty, -1);
	assert_int_equal(callstate_from_result(res, 0, &cs), 0);
	assert_false(cs.enabled);
	assert_int_equal(cs.nwindows, 0);
	assert_int_equal(cs.holidays.n, 0);
	callstate_free(&cs);
	PQclear(res);
}

static void test_malformed(void **state)
{
	static const char *const windows[] = {"0 3600", "7 0 10", "0 100 50",   "0 0 86400",
	                                      "0 1 2,", "x",      "0 1 2;1 2 3"};
	static const char *const holidays[] = {"not json", "{}", "[[1, \"no\", \"t\"]]", "[[1, false]]",
	                                       "[[\"1\", false, \"t\"]]"};
	struct callstate cs;
	PGresult *res;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(windows); i++) {
		const char *v[NCOLS] = {"t", "1", "1", "t", "f", "150", windows[i], NULL};
		res = make_row(v, -1);
		if (callstate_from_result(res, 0, &cs) == 0)
			fail_msg("windows %s accepted", windows[i]);
		PQclear(res);
	}
	for (size_t i = 0; i < ARRAY_LEN(holidays); i++) {
		const char *v[NCOLS] = {"t", "1", "1", "t", "f", "150", NULL, holidays[i]};
		res = make_row(v, -1);
		if (callstate_from_result(res, 0, &cs) == 0)
			fail_msg("holidays %s accepted", holidays[i]);
		PQclear(res);
	}
	/* a missing column, a NULL where none may be */
	const char *v[NCOLS] = {"t", "1", "1", "t", "f", "150", NULL, NULL};
	res = make_row(v, 2);
	assert_int_equal(callstate_from_result(res, 0, &cs), -1);
	PQclear(res);
	v[1] = NULL;
	res = make_row(v, -1);
	assert_int_equal(callstate_from_result(res, 0, &cs), -1);
	PQclear(res);
}

/* The instant of local wall time h:m on y-m-d in Tehran. */
static time_t at(int y, int mo, int d, int h, int mi)
{
	return tz_local_midnight(y, mo, d) + h * 3600 + mi * 60;
}

static void decide(const char *wallet, const char *enabled, const char *skip, const char *windows, time_t now,
                   struct callstate_result *r)
{
	const char *v[NCOLS] = {enabled, wallet, "3", skip, "f", "150", windows, holidays_json};
	PGresult *res = make_row(v, -1);
	struct callstate cs;

	assert_int_equal(callstate_from_result(res, 0, &cs), 0);
	callstate_decide(&cs, now, 300, 900, r);
	callstate_explain(&cs, r);
	r->holiday = NULL; /* borrowed from cs, freed below */
	callstate_free(&cs);
	PQclear(res);
}

/* 09:00-17:00 every day. */
#define WEEK "0 32400 61200,1 32400 61200,2 32400 61200,3 32400 61200,4 32400 61200,5 32400 61200,6 32400 61200"

static void test_decide(void **state)
{
	struct callstate_result r;

	(void)state;
	/* Monday 2026-11-23 (Iranian weekday 2), 10:00: inside */
	decide("1000", "t", "t", WEEK, at(2026, 11, 23, 10, 0), &r);
	assert_true(r.decision.allowed);
	assert_false(r.has_next_window);
	assert_int_equal(r.local.y, 2026);
	assert_int_equal(r.local.hh, 10);
	assert_int_equal(r.jy, 1405);
	assert_int_equal(r.jm, 9);
	assert_int_equal(r.jd, 2);

	/* 08:59: outside, the window opens in 60 s */
	decide("1000", "t", "t", WEEK, at(2026, 11, 23, 8, 59), &r);
	assert_int_equal(r.decision.reason, CALLRULE_OUTSIDE_WINDOW);
	assert_int_equal(r.decision.retry_after, 60);
	assert_true(r.has_next_window);
	assert_int_equal(r.next_window, at(2026, 11, 23, 9, 0));

	/* 17:00:00 is still inside (inclusive), 17:01 is not: next is tomorrow, a
	 * custom holiday, so the day after when holidays are skipped */
	decide("1000", "t", "t", WEEK, at(2026, 11, 23, 17, 0), &r);
	assert_true(r.decision.allowed);
	decide("1000", "t", "t", WEEK, at(2026, 11, 23, 17, 1), &r);
	assert_int_equal(r.decision.reason, CALLRULE_OUTSIDE_WINDOW);
	assert_int_equal(r.decision.retry_after, 900);
	assert_int_equal(r.next_window, at(2026, 11, 25, 9, 0));
	decide("1000", "t", "f", WEEK, at(2026, 11, 23, 17, 1), &r);
	assert_int_equal(r.next_window, at(2026, 11, 24, 9, 0));

	/* on the custom holiday itself */
	decide("1000", "t", "t", WEEK, at(2026, 11, 24, 10, 0), &r);
	assert_int_equal(r.decision.reason, CALLRULE_HOLIDAY);
	assert_int_equal(r.next_window, at(2026, 11, 25, 9, 0));
	decide("1000", "t", "f", WEEK, at(2026, 11, 24, 10, 0), &r);
	assert_true(r.decision.allowed);

	/* no window today (only Saturdays): next Saturday 2026-11-28 */
	decide("1000", "t", "t", "0 32400 61200", at(2026, 11, 23, 10, 0), &r);
	assert_int_equal(r.decision.reason, CALLRULE_NO_WINDOW);
	assert_int_equal(r.next_window, at(2026, 11, 28, 9, 0));
	decide("1000", "t", "t", NULL, at(2026, 11, 23, 10, 0), &r);
	assert_int_equal(r.decision.reason, CALLRULE_NO_WINDOW);
	assert_false(r.has_next_window);

	/* money and the switch come first, and have no next window */
	decide("0", "t", "t", WEEK, at(2026, 11, 23, 10, 0), &r);
	assert_int_equal(r.decision.reason, CALLRULE_INSUFFICIENT_FUNDS);
	assert_int_equal(r.decision.retry_after, 300);
	assert_false(r.has_next_window);
	decide("5", "f", "t", WEEK, at(2026, 11, 24, 10, 0), &r);
	assert_int_equal(r.decision.reason, CALLRULE_DISABLED);
	assert_false(r.has_next_window);

	/* Nowruz 1406 is tombstoned: a working day; 2 Farvardin is still a holiday */
	decide("1000", "t", "t", WEEK, at(2027, 3, 21, 10, 0), &r);
	assert_true(r.decision.allowed);
	decide("1000", "t", "t", WEEK, at(2027, 3, 22, 10, 0), &r);
	assert_int_equal(r.decision.reason, CALLRULE_HOLIDAY);
	assert_int_equal(r.next_window, at(2027, 3, 25, 9, 0)); /* after 1..4 Farvardin */
}

static void test_holiday_title_in_result(void **state)
{
	const char *v[NCOLS] = {"t", "1000", "3", "t", "f", "150", WEEK, holidays_json};
	PGresult *res = make_row(v, -1);
	struct callstate cs;
	struct callstate_result r;

	(void)state;
	assert_int_equal(callstate_from_result(res, 0, &cs), 0);
	callstate_decide(&cs, at(2026, 11, 24, 10, 0), 300, 900, &r);
	callstate_explain(&cs, &r);
	assert_string_equal(r.holiday, "Custom day");
	callstate_decide(&cs, at(2027, 3, 21, 10, 0), 300, 900, &r);
	callstate_explain(&cs, &r);
	assert_null(r.holiday);
	callstate_decide(&cs, at(2027, 3, 23, 10, 0), 300, 900, &r);
	callstate_explain(&cs, &r);
	assert_non_null(r.holiday); /* computed: 3 Farvardin */
	callstate_free(&cs);
	PQclear(res);
}

/* The value the scheduler publishes and next-batch reads back. */
static void test_published(void **state)
{
	struct callstate cs = {0};
	struct callstate_result r = {0};
	struct callstate_published p;
	char *json;
	(void)state;
	cs.version = 7;
	r.decision.allowed = false;
	r.decision.reason = CALLRULE_OUTSIDE_WINDOW;
	r.decision.retry_after = 120;
	json = callstate_published_json(&cs, &r, 1000000);
	assert_int_equal(callstate_published_parse(json, 1000500, &p), 0);
	assert_false(p.allowed);
	assert_string_equal(p.reason, "outside_allowed_time_window");
	assert_int_equal(p.retry_after, 120);
	assert_int_equal(p.version, 7);
	/* stale, or from the future */
	assert_int_equal(callstate_published_parse(json, 1000000 + CALLSTATE_FRESH_MS + 1, &p), -1);
	assert_int_equal(callstate_published_parse(json, 1000000 - 1001, &p), -1);
	free(json);
	r.decision.allowed = true;
	r.decision.reason = CALLRULE_ALLOWED;
	r.decision.retry_after = 0;
	json = callstate_published_json(&cs, &r, 5000);
	assert_non_null(strstr(json, "\"reason\":null"));
	assert_non_null(strstr(json, "\"retry_after\":null"));
	assert_int_equal(callstate_published_parse(json, 5000, &p), 0);
	assert_true(p.allowed);
	assert_string_equal(p.reason, "");
	free(json);
	/* malformed */
	static const char *const bad[] = {
	    NULL,
	    "",
	    "[]",
	    "{}",
	    "{\"allowed\": true}",
	    "{\"allowed\": false, \"reason\": null, \"retry_after\": 5, \"schedule_version\": 1, \"computed_at\": "
	    "5000}",
	    "{\"allowed\": \"yes\", \"schedule_version\": 1, \"computed_at\": 5000}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(callstate_published_parse(bad[i], 5000, &p), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),     cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_decide),    cmocka_unit_test(test_holiday_title_in_result),
	    cmocka_unit_test(test_published),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
