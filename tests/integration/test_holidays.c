/* Holidays shared by every company (/api/holidays) against the real dialer-api:
 * the computed official solar holidays of a Jalali year merged with the table,
 * superuser add/remove (custom rows, tombstones, revival), date validation in
 * both calendars and Persian digits, and the Redis version counter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "jalali.h"
#include "tz.h"

static struct th_api api;
static char *db_url;
static char *root_token, *admin_token, *agent_token;

static char *create_user_token(const char *company, const char *username, const char *role)
{
	return th_create_user(&api, root_token, company, username, "secret-pass-1", role);
}

static int group_setup(void **state)
{
	(void)state;
	th_set_source_ip("127.0.6.2");
	if (tz_init("Asia/Tehran") < 0 || th_setup_api(&api, &db_url, &root_token, NULL) < 0)
		return -1;
	admin_token = create_user_token(TH_DEFAULT_COMPANY, "hol-admin", "ADMIN");
	agent_token = create_user_token(TH_DEFAULT_COMPANY, "hol-agent", "AGENT");
	return admin_token && agent_token ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	free(admin_token);
	free(agent_token);
	return th_teardown_api(&api, &db_url, &root_token);
}

/* --------------------------------------------------------------- helpers */

/* GET /api/holidays[?year=...] as token; the array (caller decrefs). */
static json_t *list_ok(const char *query, const char *token)
{
	char path[128];
	struct th_resp *r;
	json_t *j;

	snprintf(path, sizeof(path), "/api/holidays%s", query);
	r = th_call(&api, "GET", path, token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_array(r->json));
	j = json_incref(r->json);
	th_resp_free(r);
	return j;
}

/* The item of date (Gregorian) in list, or NULL. Borrowed. */
static json_t *find_date(const json_t *list, const char *date)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v)
	{
		const char *d = th_json_str(v, "date");
		if (d && strcmp(d, date) == 0)
			return v;
	}
	return NULL;
}

static void expect_item(const json_t *it, const char *date, const char *jdate, const char *title, const char *kind)
{
	assert_non_null(it);
	TH_EXPECT_STR(it, "date", date);
	TH_EXPECT_STR(it, "jalali_date", jdate);
	if (title)
		TH_EXPECT_STR(it, "title", title);
	else
		assert_true(json_is_string(json_object_get(it, "title")));
	if (kind) {
		TH_EXPECT_STR(it, "kind", kind);
	} else { /* an official date: computed, or a lunar row that shares it (schema 003) */
		const char *k = th_json_str(it, "kind");
		assert_true(k && (strcmp(k, "fixed") == 0 || strcmp(k, "lunar") == 0));
	}
	assert_int_equal(json_object_size(it), 4);
}

static struct th_resp *del(const char *date, const char *token)
{
	char path[128];
	snprintf(path, sizeof(path), "/api/holidays/%s", date);
	return th_call(&api, "DELETE", path, token, NULL);
}

/* ----------------------------------------------------------------- tests */

/* Jalali 1404: Nowruz is 2025-03-21 and Esfand has 29 days. */
static void test_list_computed_year(void **state)
{
	static const struct {
		const char *date, *jdate;
	} official[] = {
	    {"2025-03-21", "1404-01-01"}, {"2025-03-22", "1404-01-02"}, {"2025-03-23", "1404-01-03"},
	    {"2025-03-24", "1404-01-04"}, {"2025-04-01", "1404-01-12"}, {"2025-04-02", "1404-01-13"},
	    {"2025-06-04", "1404-03-14"}, {"2025-06-05", "1404-03-15"}, {"2026-02-11", "1404-11-22"},
	    {"2026-03-20", "1404-12-29"},
	};
	json_t *l, *p;
	size_t i;
	json_t *v;
	const char *prev = "";

	(void)state;
	l = list_ok("?year=1404", agent_token); /* any logged-in user */
	for (i = 0; i < sizeof(official) / sizeof(official[0]); i++)
		expect_item(find_date(l, official[i].date), official[i].date, official[i].jdate, NULL, NULL);
	json_array_foreach(l, i, v)
	{
		const char *d = th_json_str(v, "date"), *k = th_json_str(v, "kind");
		assert_non_null(d);
		assert_true(strcmp(prev, d) < 0); /* sorted, one per date */
		prev = d;
		assert_int_equal(strncmp(th_json_str(v, "jalali_date"), "1404-", 5), 0);
		assert_true(strcmp(k, "fixed") == 0 || strcmp(k, "lunar") == 0 || strcmp(k, "custom") == 0);
	}

	/* schema 003's lunar rows are merged in */
	size_t nlunar = 0;
	json_array_foreach(l, i, v)
	{
		nlunar += strcmp(th_json_str(v, "kind"), "lunar") == 0;
	}
	assert_true(nlunar >= 5);

	/* Persian digits in the query, the trailing slash */
	p = list_ok("/?year=%DB%B1%DB%B4%DB%B0%DB%B4", admin_token);
	assert_true(json_equal(l, p));
	json_decref(p);
	json_decref(l);

	/* the ends of the supported range */
	l = list_ok("?year=1", root_token);
	TH_EXPECT_STR(json_array_get(l, 0), "jalali_date", "0001-01-01");
	TH_EXPECT_STR(json_array_get(l, 0), "kind", "fixed");
	json_decref(l);
	l = list_ok("?year=3177", root_token);
	assert_true(json_array_size(l) >= 10);
	json_decref(l);
}

static void test_list_default_year_and_errors(void **state)
{
	static const char *const bad[] = {"?year=0", "?year=3178", "?year=abc", "?year=", "?year=1404.5", "?year=-1"};
	struct tz_local now;
	int jy, jm, jd;
	char prefix[8];
	json_t *l, *v;
	size_t i;
	struct th_resp *r;

	(void)state;
	tz_local_from_utc(time(NULL), &now);
	assert_int_equal(jalali_from_days(now.day, &jy, &jm, &jd), 0);
	snprintf(prefix, sizeof(prefix), "%04d-", jy);
	l = list_ok("", agent_token);
	assert_true(json_array_size(l) >= 10);
	json_array_foreach(l, i, v)
	{
		assert_int_equal(strncmp(th_json_str(v, "jalali_date"), prefix, 5), 0);
	}
	json_decref(l);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char path[64];
		snprintf(path, sizeof(path), "/api/holidays%s", bad[i]);
		r = th_call(&api, "GET", path, agent_token, NULL);
		TH_EXPECT_DETAIL_PREFIX(r, 422, "year");
		th_resp_free(r);
	}
	r = th_call(&api, "GET", "/api/holidays", NULL, NULL);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
}

static void test_roles(void **state)
{
	struct th_resp *r;

	(void)state;
	r = th_call(&api, "POST", "/api/holidays", NULL, "{\"date\": \"2040-05-10\", \"title\": \"x\"}");
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/holidays", admin_token, "{\"date\": \"2040-05-10\", \"title\": \"x\"}");
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/holidays", agent_token, "{\"date\": \"2040-05-10\", \"title\": \"x\"}");
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);
	r = del("2025-03-21", NULL);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
	r = del("2025-03-21", admin_token);
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);
	r = del("2025-03-21", agent_token);
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);
	/* nothing changed */
	json_t *l = list_ok("?year=1419", root_token);
	assert_null(find_date(l, "2040-05-10"));
	json_decref(l);
	l = list_ok("?year=1404", root_token);
	assert_non_null(find_date(l, "2025-03-21"));
	json_decref(l);
}

/* Custom holidays far from any lunar data (Jalali 1419), by either calendar. */
static void test_add_and_delete_custom(void **state)
{
	struct th_resp *r;
	json_t *l;

	(void)state;
	r = th_call(&api, "POST", "/api/holidays", root_token,
	            "{\"date\": \"2040-05-10\", \"title\": \"Company day\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_item(r->json, "2040-05-10", "1419-02-21", "Company day", "custom");
	th_resp_free(r);

	/* again: a conflict, nothing changes */
	r = th_call(&api, "POST", "/api/holidays/", root_token, "{\"date\": \"2040-05-10\", \"title\": \"Other\"}");
	TH_EXPECT_ERROR(r, 409, NULL);
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/holidays", root_token,
	            "{\"jalali_date\": \"1419-02-21\", \"title\": \"Other\"}");
	TH_EXPECT_ERROR(r, 409, NULL);
	th_resp_free(r);

	/* by the Jalali date in Persian digits; both dates agreeing */
	r = th_call(&api, "POST", "/api/holidays", root_token,
	            "{\"jalali_date\": \"\xdb\xb1\xdb\xb4\xdb\xb1\xdb\xb9-\xdb\xb0\xdb\xb3-\xdb\xb0\xdb\xb1\","
	            " \"title\": \"\xd8\xaa\xd8\xb9\xd8\xb7\xdb\x8c\xd9\x84\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_item(r->json, "2040-05-21", "1419-03-01", "\xd8\xaa\xd8\xb9\xd8\xb7\xdb\x8c\xd9\x84", "custom");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/holidays", root_token,
	            "{\"date\": \"2040-06-01\", \"jalali_date\": \"1419-03-12\", \"title\": \"Both\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_item(r->json, "2040-06-01", "1419-03-12", "Both", "custom");
	th_resp_free(r);

	l = list_ok("?year=1419", agent_token);
	expect_item(find_date(l, "2040-05-10"), "2040-05-10", "1419-02-21", "Company day", "custom");
	expect_item(find_date(l, "2040-05-21"), "2040-05-21", "1419-03-01", NULL, "custom");
	expect_item(find_date(l, "2040-06-01"), "2040-06-01", "1419-03-12", "Both", "custom");
	json_decref(l);

	/* delete: the row goes; again → 404; Persian digits in the path */
	r = del("2040-05-10", root_token);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_true(json_object_get(r->json, "deleted")));
	TH_EXPECT_STR(r->json, "date", "2040-05-10");
	assert_int_equal(json_object_size(r->json), 2);
	th_resp_free(r);
	r = del("2040-05-10", root_token);
	TH_EXPECT_ERROR(r, 404, "Holiday not found");
	th_resp_free(r);
	r = del("%DB%B2%DB%B0%DB%B4%DB%B0-%DB%B0%DB%B5-%DB%B2%DB%B1", root_token);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "date", "2040-05-21");
	th_resp_free(r);
	r = del("2040-6-1", root_token); /* one-digit month and day */
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "date", "2040-06-01");
	th_resp_free(r);
	l = list_ok("?year=1419", agent_token);
	assert_null(find_date(l, "2040-05-10"));
	assert_null(find_date(l, "2040-05-21"));
	assert_null(find_date(l, "2040-06-01"));
	json_decref(l);

	/* never a holiday */
	r = del("2040-05-11", root_token);
	TH_EXPECT_ERROR(r, 404, "Holiday not found");
	th_resp_free(r);
}

/* An official holiday: removing writes a tombstone; adding it back revives the
 * date as a custom row; removing that hides it again. (22 Bahman 1404.) */
static void test_computed_tombstone_and_revival(void **state)
{
	struct th_resp *r;
	json_t *l;
	char *removed = NULL;
	const char *p[1] = {"2026-02-11"};

	(void)state;
	r = th_call(&api, "POST", "/api/holidays", root_token, "{\"date\": \"2026-02-11\", \"title\": \"dup\"}");
	TH_EXPECT_ERROR(r, 409, NULL); /* computed and active */
	th_resp_free(r);

	r = del("2026-02-11", root_token);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "date", "2026-02-11");
	th_resp_free(r);
	assert_int_equal(th_sql(db_url, "SELECT removed::text FROM holidays WHERE date = $1::date", 1, p, &removed), 0);
	assert_non_null(removed);
	assert_string_equal(removed, "true");
	free(removed);
	l = list_ok("?year=1404", root_token);
	assert_null(find_date(l, "2026-02-11"));
	assert_non_null(find_date(l, "2025-03-21")); /* the others stay */
	json_decref(l);
	r = del("2026-02-11", root_token);
	TH_EXPECT_ERROR(r, 404, "Holiday not found");
	th_resp_free(r);

	r = th_call(&api, "POST", "/api/holidays", root_token,
	            "{\"jalali_date\": \"1404-11-22\", \"title\": \"Revived\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_item(r->json, "2026-02-11", "1404-11-22", "Revived", "custom");
	th_resp_free(r);
	l = list_ok("?year=1404", root_token);
	expect_item(find_date(l, "2026-02-11"), "2026-02-11", "1404-11-22", "Revived", "custom");
	json_decref(l);

	r = del("2026-02-11", root_token);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	l = list_ok("?year=1404", root_token);
	assert_null(find_date(l, "2026-02-11"));
	json_decref(l);

	/* a lunar row (Eid al-Adha 1446, schema 003) is deleted outright, and can come back as custom */
	l = list_ok("?year=1404", root_token);
	expect_item(find_date(l, "2025-06-06"), "2025-06-06", "1404-03-16", NULL, "lunar");
	json_decref(l);
	r = del("2025-06-06", root_token);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	const char *p2[1] = {"2025-06-06"};
	char *count = NULL;
	assert_int_equal(th_sql(db_url, "SELECT count(*) FROM holidays WHERE date = $1::date", 1, p2, &count), 0);
	assert_string_equal(count, "0");
	free(count);
	r = del("2025-06-06", root_token);
	TH_EXPECT_ERROR(r, 404, "Holiday not found");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/holidays", root_token, "{\"date\": \"2025-06-06\", \"title\": \"Eid\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_item(r->json, "2025-06-06", "1404-03-16", "Eid", "custom");
	th_resp_free(r);
}

/* Bad input: 422 naming the field, and nothing stored. */
static void test_bad_input(void **state)
{
	static const struct {
		const char *prefix, *body;
	} cases[] = {
	    {"body", "[]"},
	    {"body", "{\"date\": "},
	    {"date", "{\"title\": \"no date\"}"},
	    {"date", "{\"date\": \"2040-02-30\", \"title\": \"x\"}"},
	    {"date", "{\"date\": \"2040-13-01\", \"title\": \"x\"}"},
	    {"date", "{\"date\": \"10 May 2040\", \"title\": \"x\"}"},
	    {"date", "{\"date\": \"2040-05-10T00:00:00\", \"title\": \"x\"}"},
	    {"date", "{\"date\": 20400510, \"title\": \"x\"}"},
	    {"jalali_date", "{\"jalali_date\": \"1404-12-30\", \"title\": \"x\"}"}, /* 1404 is a common year */
	    {"jalali_date", "{\"jalali_date\": \"1403-12-31\", \"title\": \"x\"}"},
	    {"jalali_date", "{\"jalali_date\": \"1419-07-31\", \"title\": \"x\"}"}, /* Mehr has 30 days */
	    {"jalali_date", "{\"date\": \"2040-05-10\", \"jalali_date\": \"1419-02-22\", \"title\": \"x\"}"},
	    {"title", "{\"date\": \"2040-05-12\"}"},
	    {"title", "{\"date\": \"2040-05-12\", \"title\": \"\"}"},
	    {"title", "{\"date\": \"2040-05-12\", \"title\": 5}"},
	};
	struct th_resp *r;
	char body[400], title[300];
	json_t *l;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = th_call(&api, "POST", "/api/holidays", root_token, cases[i].body);
		TH_EXPECT_DETAIL_PREFIX(r, 422, cases[i].prefix);
		th_resp_free(r);
	}
	memset(title, 'a', 256);
	title[256] = '\0';
	snprintf(body, sizeof(body), "{\"date\": \"2040-05-12\", \"title\": \"%s\"}", title);
	r = th_call(&api, "POST", "/api/holidays", root_token, body);
	TH_EXPECT_DETAIL_PREFIX(r, 422, "title");
	th_resp_free(r);
	title[255] = '\0'; /* 255 is the limit: accepted, then removed */
	snprintf(body, sizeof(body), "{\"date\": \"2040-05-12\", \"title\": \"%s\"}", title);
	r = th_call(&api, "POST", "/api/holidays", root_token, body);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	r = del("2040-05-12", root_token);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);

	static const char *const bad_dates[] = {"2040-02-30", "abc", "2040-05-10x", "20400510"};
	for (size_t i = 0; i < sizeof(bad_dates) / sizeof(bad_dates[0]); i++) {
		r = del(bad_dates[i], root_token);
		TH_EXPECT_DETAIL_PREFIX(r, 422, "date");
		th_resp_free(r);
	}
	l = list_ok("?year=1419", root_token);
	assert_null(find_date(l, "2040-05-10"));
	assert_null(find_date(l, "2040-05-12"));
	json_decref(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_list_computed_year),
	    cmocka_unit_test(test_list_default_year_and_errors),
	    cmocka_unit_test(test_roles),
	    cmocka_unit_test(test_add_and_delete_custom),
	    cmocka_unit_test(test_computed_tombstone_and_revival),
	    cmocka_unit_test(test_bad_input),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
