/* A company's schedule (COMPAT §2.5, §3.6) and its call-allowed state
 * (/schedule/status) against the real dialer-api: roles, validation that
 * changes nothing, version bumps, the wallet rule, and every blocked reason
 * built relative to the current Tehran time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "harness.h"
#include "jalali.h"
#include "tz.h"

static struct th_api api;
static char *db_url;
static char *root_token;
static long long acme_id;
static char *acme_admin_token, *acme_agent_token, *globex_admin_token;

/* ------------------------------------------------------------ fixtures */

static long long create_company(const char *name)
{
	return th_create_company(&api, root_token, name, name, true);
}

static char *create_user_token(const char *company, const char *username, const char *role)
{
	return th_create_user(&api, root_token, company, username, "secret-pass-1", role);
}

static int group_setup(void **state)
{
	(void)state;
	th_set_source_ip("127.0.6.1");
	if (tz_init("Asia/Tehran") < 0 || th_setup_api(&api, &db_url, &root_token, NULL) < 0)
		return -1;
	acme_id = create_company("acme");
	create_company("globex");
	acme_admin_token = create_user_token("acme", "acme-admin", "ADMIN");
	acme_agent_token = create_user_token("acme", "acme-agent", "AGENT");
	globex_admin_token = create_user_token("globex", "globex-admin", "ADMIN");
	return acme_admin_token && acme_agent_token && globex_admin_token ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	free(acme_admin_token);
	free(acme_agent_token);
	free(globex_admin_token);
	return th_teardown_api(&api, &db_url, &root_token);
}

/* --------------------------------------------------------------- helpers */

static struct th_resp *sched(const char *method, const char *company, const char *token, const char *body)
{
	char path[128];
	snprintf(path, sizeof(path), "/api/%s/schedule", company);
	return th_call(&api, method, path, token, body);
}

/* GET /schedule as root; the ScheduleOut (caller decrefs). */
static json_t *get_ok(const char *company)
{
	struct th_resp *r = sched("GET", company, root_token, NULL);
	json_t *j;

	TH_EXPECT_STATUS(r, 200);
	j = json_incref(r->json);
	th_resp_free(r);
	return j;
}

static long long version_of(const char *company)
{
	json_t *j = get_ok(company);
	long long v = -1;

	assert_int_equal(th_json_int(j, "version", &v), 0);
	json_decref(j);
	return v;
}

/* PUT as root that must succeed; the ScheduleOut (caller decrefs). */
static json_t *put_ok(const char *company, const char *body)
{
	struct th_resp *r = sched("PUT", company, root_token, body);
	json_t *j;

	TH_EXPECT_STATUS(r, 200);
	j = json_incref(r->json);
	th_resp_free(r);
	return j;
}

static void sql_company(const char *sql, long long company_id, const char *value)
{
	char id[24];
	const char *p[2] = {id, value};

	snprintf(id, sizeof(id), "%lld", company_id);
	assert_int_equal(th_sql(db_url, "SELECT company_config_get($1::integer, true)", 1, p, NULL), 0);
	assert_int_equal(th_sql(db_url, sql, value ? 2 : 1, p, NULL), 0);
}

static void set_wallet(long long company_id, const char *amount)
{
	sql_company("UPDATE company_config SET wallet_balance = $2::bigint WHERE company_id = $1::integer", company_id,
	            amount);
}

/* The interval at index i is (dow, start, end). */
static void expect_interval(const json_t *s, size_t i, long long dow, const char *start, const char *end)
{
	json_t *iv = json_array_get(json_object_get(s, "intervals"), i);

	assert_non_null(iv);
	TH_EXPECT_INT(iv, "day_of_week", dow);
	TH_EXPECT_STR(iv, "start_time", start);
	TH_EXPECT_STR(iv, "end_time", end);
}

static redisContext *redis_connect(void)
{
	char host[64];
	int port = 0;
	redisContext *rc;

	assert_int_equal(sscanf(th_env("REDIS_URL"), "redis://%63[^:]:%d", host, &port), 2);
	rc = redisConnect(host, port);
	assert_true(rc != NULL && rc->err == 0);
	return rc;
}

static void redis_cmd(redisContext *rc, const char *cmd, const char *key, long long *out)
{
	redisReply *rep = redisCommand(rc, "%s %s", cmd, key);

	assert_non_null(rep);
	if (out)
		*out = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
	freeReplyObject(rep);
}

/* The current local time in Asia/Tehran. */
static void local_now(struct tz_local *l)
{
	tz_local_from_utc(time(NULL), l);
}

/* ----------------------------------------------------------------- tests */

static void test_get_defaults(void **state)
{
	json_t *s;

	(void)state;
	create_company("sch-defaults");
	s = get_ok("sch-defaults");
	assert_true(json_is_true(json_object_get(s, "skip_holidays")));
	assert_true(json_is_true(json_object_get(s, "enabled")));
	assert_true(json_is_false(json_object_get(s, "disabled_by_dialer")));
	TH_EXPECT_INT(s, "wallet_balance", 0);
	TH_EXPECT_INT(s, "cost_per_connected", 150);
	TH_EXPECT_INT(s, "version", 1);
	assert_true(json_is_array(json_object_get(s, "intervals")));
	assert_int_equal(json_array_size(json_object_get(s, "intervals")), 0);
	assert_true(json_is_null(json_object_get(s, "updated_at")));
	assert_int_equal(json_object_size(s), 8);
	json_decref(s);
}

/* COMPAT §1.6: token (401) → "Admins only" → company (404) → membership (403). */
static void test_roles(void **state)
{
	static const char *const suffixes[] = {"", "/status"};
	char path[96];
	struct th_resp *r;

	(void)state;
	set_wallet(acme_id, "100");
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/api/acme/schedule%s", suffixes[i]);
		r = th_call(&api, "GET", path, NULL, NULL);
		TH_EXPECT_ERROR(r, 401, "Not authenticated");
		th_resp_free(r);
		r = th_call(&api, "GET", path, acme_agent_token, NULL);
		TH_EXPECT_ERROR(r, 403, "Admins only");
		th_resp_free(r);
		r = th_call(&api, "GET", path, globex_admin_token, NULL);
		TH_EXPECT_ERROR(r, 403, "Access denied to this company");
		th_resp_free(r);
		r = th_call(&api, "GET", path, acme_admin_token, NULL);
		TH_EXPECT_STATUS(r, 200);
		th_resp_free(r);
		r = th_call(&api, "GET", path, root_token, NULL);
		TH_EXPECT_STATUS(r, 200);
		th_resp_free(r);
		/* the role comes before the company, the company before membership */
		snprintf(path, sizeof(path), "/api/no-such-co/schedule%s", suffixes[i]);
		r = th_call(&api, "GET", path, acme_agent_token, NULL);
		TH_EXPECT_ERROR(r, 403, "Admins only");
		th_resp_free(r);
		r = th_call(&api, "GET", path, acme_admin_token, NULL);
		TH_EXPECT_ERROR(r, 404, "Company not found");
		th_resp_free(r);
	}

	r = sched("PUT", "acme", NULL, "{\"skip_holidays\": true}");
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
	r = sched("PUT", "acme", acme_agent_token, "{\"skip_holidays\": true}");
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = sched("PUT", "acme", globex_admin_token, "{\"skip_holidays\": true}");
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = sched("PUT", "no-such-co", acme_admin_token, "{\"skip_holidays\": true}");
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	assert_int_equal(version_of("acme"), 1);
	r = sched("PUT", "acme", acme_admin_token, "{\"skip_holidays\": true}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "version", 2);
	th_resp_free(r);

	/* an inactive company is not found */
	long long id = create_company("sch-inactive");
	char ids[24];
	snprintf(ids, sizeof(ids), "%lld", id);
	const char *p[1] = {ids};
	assert_int_equal(th_sql(db_url, "UPDATE companies SET is_active = false WHERE id = $1::integer", 1, p, NULL),
	                 0);
	r = sched("GET", "sch-inactive", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
}

static void test_put_roundtrip(void **state)
{
	json_t *s, *g;

	(void)state;
	create_company("sch-put");
	s = put_ok("sch-put",
	           "{\"skip_holidays\": false, \"intervals\": ["
	           "{\"day_of_week\": 2, \"start_time\": \"14:00\", \"end_time\": \"18:30\"},"
	           "{\"day_of_week\": 0, \"start_time\": \"12:00\", \"end_time\": \"13:00\"},"
	           "{\"day_of_week\": 0, \"start_time\": \"09:00:00\", \"end_time\": \"12:00\"},"
	           "{\"day_of_week\": 2, \"start_time\": \"08:00\", \"end_time\": \"12:00:15\"},"
	           "{\"day_of_week\": 6, \"start_time\": \"00:00\", \"end_time\": \"23:59:59\", \"x\": 1}]}");
	TH_EXPECT_INT(s, "version", 2);
	assert_true(json_is_false(json_object_get(s, "skip_holidays")));
	assert_true(json_is_true(json_object_get(s, "enabled")));
	assert_true(th_is_datetime(th_json_str(s, "updated_at")));
	assert_int_equal(json_array_size(json_object_get(s, "intervals")), 5);
	expect_interval(s, 0, 0, "09:00:00", "12:00:00"); /* sorted by day, then start */
	expect_interval(s, 1, 0, "12:00:00", "13:00:00"); /* back to back with the one before: accepted */
	expect_interval(s, 2, 2, "08:00:00", "12:00:15");
	expect_interval(s, 3, 2, "14:00:00", "18:30:00");
	expect_interval(s, 4, 6, "00:00:00", "23:59:59");
	g = get_ok("sch-put");
	assert_true(json_equal(s, g));
	json_decref(g);
	json_decref(s);

	/* nothing given: no change, no bump; nulls count as absent */
	s = put_ok("sch-put", "{}");
	TH_EXPECT_INT(s, "version", 2);
	json_decref(s);
	s = put_ok("sch-put", "{\"enabled\": null, \"skip_holidays\": null, \"intervals\": null, \"other\": 1}");
	TH_EXPECT_INT(s, "version", 2);
	assert_int_equal(json_array_size(json_object_get(s, "intervals")), 5);
	json_decref(s);

	/* one field: +1, the intervals stay */
	s = put_ok("sch-put", "{\"skip_holidays\": true}");
	TH_EXPECT_INT(s, "version", 3);
	assert_true(json_is_true(json_object_get(s, "skip_holidays")));
	assert_int_equal(json_array_size(json_object_get(s, "intervals")), 5);
	json_decref(s);

	/* all three at once: +1 once; the intervals are replaced, Persian digits accepted */
	s = put_ok("sch-put", "{\"skip_holidays\": false, \"enabled\": false, \"intervals\": ["
	                      "{\"day_of_week\": \"\xdb\xb3\", \"start_time\": \"\xdb\xb0\xdb\xb8:\xdb\xb3\xdb\xb0\","
	                      " \"end_time\": \"\xdb\xb1\xdb\xb7:\xdb\xb0\xdb\xb0:\xdb\xb0\xdb\xb5\"},"
	                      "{\"day_of_week\": 3, \"start_time\": \"\xd9\xa1\xd9\xa8:00\", \"end_time\": \"19:00\"},"
	                      "{\"day_of_week\": 4, \"start_time\": \"08:30\", \"end_time\": \"17:00:05\"}]}");
	TH_EXPECT_INT(s, "version", 4);
	assert_true(json_is_false(json_object_get(s, "enabled")));
	assert_int_equal(json_array_size(json_object_get(s, "intervals")), 3);
	expect_interval(s, 0, 3, "08:30:00", "17:00:05");
	expect_interval(s, 1, 3, "18:00:00", "19:00:00");
	expect_interval(s, 2, 4, "08:30:00", "17:00:05"); /* same times on another day: no overlap */
	json_decref(s);

	/* an empty list clears every window */
	s = put_ok("sch-put", "{\"intervals\": []}");
	TH_EXPECT_INT(s, "version", 5);
	assert_int_equal(json_array_size(json_object_get(s, "intervals")), 0);
	json_decref(s);
	assert_int_equal(version_of("sch-put"), 5);

	/* the admin of the company may PUT too (the panel's path) */
	struct th_resp *r = sched("PUT", "acme", acme_admin_token, "{\"intervals\": []}");
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_array(json_object_get(r->json, "intervals")));
	th_resp_free(r);
}

/* Every bad body gets a 4xx naming the field and changes nothing. */
static void test_put_errors(void **state)
{
	static const struct {
		long status;
		const char *prefix;
		const char *body;
	} cases[] = {
	    {422, "body", "[]"},
	    {422, "body", "{\"intervals\": [}"},
	    {422, "skip_holidays", "{\"skip_holidays\": \"yes\"}"},
	    {422, "enabled", "{\"enabled\": 1}"},
	    {422, "intervals", "{\"intervals\": \"mon 9-5\"}"},
	    {422, "intervals", "{\"intervals\": {\"day_of_week\": 1}}"},
	    {422, "intervals[1]",
	     "{\"intervals\": [{\"day_of_week\": 1, \"start_time\": \"08:00\", \"end_time\": "
	     "\"09:00\"}, 5]}"},
	    {422, "intervals[0].day_of_week",
	     "{\"intervals\": [{\"day_of_week\": 7, \"start_time\": \"08:00\", "
	     "\"end_time\": \"09:00\"}]}"},
	    {422, "intervals[0].day_of_week",
	     "{\"intervals\": [{\"day_of_week\": -1, \"start_time\": \"08:00\", "
	     "\"end_time\": \"09:00\"}]}"},
	    {422, "intervals[0].day_of_week",
	     "{\"intervals\": [{\"day_of_week\": \"x\", \"start_time\": \"08:00\", "
	     "\"end_time\": \"09:00\"}]}"},
	    {422, "intervals[0].day_of_week",
	     "{\"intervals\": [{\"day_of_week\": 1.5, \"start_time\": \"08:00\", "
	     "\"end_time\": \"09:00\"}]}"},
	    {422, "intervals[0].day_of_week",
	     "{\"intervals\": [{\"start_time\": \"08:00\", \"end_time\": \"09:00\"}]}"},
	    {422, "intervals[0].start_time", "{\"intervals\": [{\"day_of_week\": 1, \"end_time\": \"09:00\"}]}"},
	    {422, "intervals[0].start_time",
	     "{\"intervals\": [{\"day_of_week\": 1, \"start_time\": \"25:00\", "
	     "\"end_time\": \"26:00\"}]}"},
	    {422, "intervals[0].start_time",
	     "{\"intervals\": [{\"day_of_week\": 1, \"start_time\": \"8:00\", "
	     "\"end_time\": \"09:00\"}]}"},
	    {422, "intervals[0].start_time",
	     "{\"intervals\": [{\"day_of_week\": 1, \"start_time\": 800, "
	     "\"end_time\": \"09:00\"}]}"},
	    {422, "intervals[0].end_time",
	     "{\"intervals\": [{\"day_of_week\": 1, \"start_time\": \"08:00\", "
	     "\"end_time\": \"09:00:60\"}]}"},
	    {422, "intervals[0].end_time",
	     "{\"intervals\": [{\"day_of_week\": 1, \"start_time\": \"08:00\", "
	     "\"end_time\": \"09:00:00Z\"}]}"},
	    {400, "start_time must be before end_time",
	     "{\"intervals\": [{\"day_of_week\": 1, \"start_time\": "
	     "\"09:00\", \"end_time\": \"09:00:00\"}]}"},
	    {400, "start_time must be before end_time",
	     "{\"intervals\": [{\"day_of_week\": 1, \"start_time\": \"08:00\", \"end_time\": \"09:00\"},"
	     " {\"day_of_week\": 2, \"start_time\": \"18:00\", \"end_time\": \"17:00\"}]}"},
	    {400, "intervals overlap on day_of_week 1",
	     "{\"intervals\": [{\"day_of_week\": 1, \"start_time\": \"08:00\", \"end_time\": \"12:00\"},"
	     " {\"day_of_week\": 1, \"start_time\": \"11:00\", \"end_time\": \"13:00\"}]}"},
	    {400, "intervals overlap on day_of_week 5", /* by one second */
	     "{\"intervals\": [{\"day_of_week\": 5, \"start_time\": \"11:59:59\", \"end_time\": \"14:00\"},"
	     " {\"day_of_week\": 5, \"start_time\": \"08:00\", \"end_time\": \"12:00\"}]}"},
	    {400, "intervals overlap on day_of_week 0", /* one inside another */
	     "{\"intervals\": [{\"day_of_week\": 0, \"start_time\": \"08:00\", \"end_time\": \"18:00\"},"
	     " {\"day_of_week\": 1, \"start_time\": \"08:00\", \"end_time\": \"18:00\"},"
	     " {\"day_of_week\": 0, \"start_time\": \"10:00\", \"end_time\": \"11:00\"}]}"},
	    {400, "intervals overlap on day_of_week 3", /* duplicates */
	     "{\"intervals\": [{\"day_of_week\": 3, \"start_time\": \"08:00\", \"end_time\": \"09:00\"},"
	     " {\"day_of_week\": 3, \"start_time\": \"08:00\", \"end_time\": \"09:00\"}]}"},
	    /* the wallet is 0 here: nothing else in the request is saved either */
	    {400, "Wallet balance is zero. Please recharge before enabling.",
	     "{\"skip_holidays\": false, \"enabled\": true, \"intervals\": []}"},
	};
	json_t *before, *after;
	struct th_resp *r;
	char *big;
	size_t n = 0;

	(void)state;
	create_company("sch-err");
	json_decref(put_ok("sch-err", "{\"enabled\": false, \"intervals\": [{\"day_of_week\": 1, \"start_time\": "
	                              "\"08:00\", \"end_time\": \"09:00\"}]}"));
	before = get_ok("sch-err");
	TH_EXPECT_INT(before, "version", 2);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = sched("PUT", "sch-err", root_token, cases[i].body);
		TH_EXPECT_DETAIL_PREFIX(r, cases[i].status, cases[i].prefix);
		th_resp_free(r);
	}
	/* the exact COMPAT detail text */
	r = sched("PUT", "sch-err", root_token,
	          "{\"intervals\": [{\"day_of_week\": 1, \"start_time\": \"10:00\", \"end_time\": \"09:00\"}]}");
	TH_EXPECT_ERROR(r, 400, "start_time must be before end_time");
	th_resp_free(r);

	/* an empty body and too many intervals */
	r = sched("PUT", "sch-err", root_token, NULL);
	TH_EXPECT_DETAIL_PREFIX(r, 422, "body");
	th_resp_free(r);
	big = malloc(65 * 80 + 32);
	assert_non_null(big);
	n += (size_t)sprintf(big + n, "{\"intervals\": [");
	for (int i = 0; i < 65; i++)
		n += (size_t)sprintf(big + n,
		                     "%s{\"day_of_week\": %d, \"start_time\": \"%02d:00\", \"end_time\": \"%02d:30\"}",
		                     i ? "," : "", i % 7, i / 7, i / 7);
	sprintf(big + n, "]}");
	r = sched("PUT", "sch-err", root_token, big);
	TH_EXPECT_DETAIL_PREFIX(r, 422, "intervals: at most 64");
	th_resp_free(r);
	/* exactly 64 is fine (but is not saved here: sent to another company) */
	n = (size_t)sprintf(big, "{\"intervals\": [");
	for (int i = 0; i < 64; i++)
		n += (size_t)sprintf(big + n,
		                     "%s{\"day_of_week\": %d, \"start_time\": \"%02d:00\", \"end_time\": \"%02d:30\"}",
		                     i ? "," : "", i % 7, i / 7, i / 7);
	sprintf(big + n, "]}");
	create_company("sch-64");
	json_t *s64 = put_ok("sch-64", big);
	assert_int_equal(json_array_size(json_object_get(s64, "intervals")), 64);
	json_decref(s64);
	free(big);

	after = get_ok("sch-err");
	assert_true(json_equal(before, after)); /* version, intervals, flags, updated_at */
	json_decref(before);
	json_decref(after);
}

static void test_enabled_and_wallet(void **state)
{
	long long id;
	json_t *s;
	struct th_resp *r;

	(void)state;
	id = create_company("sch-wallet");
	r = sched("PUT", "sch-wallet", root_token, "{\"enabled\": true}");
	TH_EXPECT_ERROR(r, 400, "Wallet balance is zero. Please recharge before enabling.");
	th_resp_free(r);
	assert_int_equal(version_of("sch-wallet"), 1);
	set_wallet(id, "-5");
	r = sched("PUT", "sch-wallet", root_token, "{\"enabled\": true}");
	TH_EXPECT_ERROR(r, 400, "Wallet balance is zero. Please recharge before enabling.");
	th_resp_free(r);

	/* disabling needs no money, and clears disabled_by_dialer */
	sql_company(
	    "UPDATE company_config SET enabled = false, disabled_by_dialer = true WHERE company_id = $1::integer", id,
	    NULL);
	s = put_ok("sch-wallet", "{\"enabled\": false}");
	assert_true(json_is_false(json_object_get(s, "enabled")));
	assert_true(json_is_false(json_object_get(s, "disabled_by_dialer")));
	TH_EXPECT_INT(s, "version", 2);
	TH_EXPECT_INT(s, "wallet_balance", -5);
	json_decref(s);

	/* recharged (another helper's billing; SQL here): enabling works and clears the flag */
	set_wallet(id, "1000");
	sql_company("UPDATE company_config SET disabled_by_dialer = true WHERE company_id = $1::integer", id, NULL);
	s = put_ok("sch-wallet", "{\"enabled\": true}");
	assert_true(json_is_true(json_object_get(s, "enabled")));
	assert_true(json_is_false(json_object_get(s, "disabled_by_dialer")));
	TH_EXPECT_INT(s, "wallet_balance", 1000);
	TH_EXPECT_INT(s, "cost_per_connected", 150);
	TH_EXPECT_INT(s, "version", 3);
	json_decref(s);

	/* a PUT without enabled leaves disabled_by_dialer alone */
	sql_company("UPDATE company_config SET disabled_by_dialer = true WHERE company_id = $1::integer", id, NULL);
	s = put_ok("sch-wallet", "{\"skip_holidays\": false}");
	assert_true(json_is_true(json_object_get(s, "disabled_by_dialer")));
	TH_EXPECT_INT(s, "version", 4);
	json_decref(s);
}

/* After a committed PUT the cached decision is dropped; a refused one keeps it. */
static void test_callstate_invalidated(void **state)
{
	redisContext *rc = redis_connect();
	char key[64];
	long long exists = -1;
	long long id;
	struct th_resp *r;

	(void)state;
	id = create_company("sch-cache");
	snprintf(key, sizeof(key), "dialer:callstate:%lld", id);
	redisReply *rep = redisCommand(rc, "SET %s cached", key);
	freeReplyObject(rep);
	r = sched("PUT", "sch-cache", root_token, "{\"enabled\": true}"); /* refused: wallet 0 */
	TH_EXPECT_STATUS(r, 400);
	th_resp_free(r);
	redis_cmd(rc, "EXISTS", key, &exists);
	assert_int_equal(exists, 1);
	json_decref(put_ok("sch-cache", "{\"skip_holidays\": false}"));
	redis_cmd(rc, "EXISTS", key, &exists);
	assert_int_equal(exists, 0);
	redisFree(rc);
}

/* ---------------------------------------------------------------- status */

static json_t *status_ok(const char *company)
{
	char path[96];
	struct th_resp *r;
	json_t *j;

	snprintf(path, sizeof(path), "/api/%s/schedule/status", company);
	r = th_call(&api, "GET", path, root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	j = json_incref(r->json);
	th_resp_free(r);
	return j;
}

static void expect_blocked(const json_t *st, const char *reason, long long retry)
{
	assert_true(json_is_false(json_object_get(st, "call_allowed")));
	TH_EXPECT_STR(st, "reason", reason);
	if (retry >= 0)
		TH_EXPECT_INT(st, "retry_after_seconds", retry);
}

static void expect_allowed(const json_t *st)
{
	if (!json_is_true(json_object_get(st, "call_allowed"))) {
		char *s = json_dumps(st, 0);
		fail_msg("not allowed: %s", s);
	}
	assert_true(json_is_null(json_object_get(st, "reason")));
	assert_true(json_is_null(json_object_get(st, "retry_after_seconds")));
	assert_true(json_is_null(json_object_get(st, "next_window_at")));
}

static void test_status_allowed_and_funds(void **state)
{
	struct tz_local before, after;
	json_t *st, *s;
	long long id, v = -1;
	char d0[16], d1[16], j0[16], j1[16];
	int jy, jm, jd;

	(void)state;
	id = create_company("st-funds");
	set_wallet(id, "1000");
	json_decref(put_ok("st-funds", "{\"skip_holidays\": false, \"intervals\": " TH_ALL_DAY_INTERVALS "}"));
	local_now(&before);
	st = status_ok("st-funds");
	local_now(&after);
	expect_allowed(st);
	TH_EXPECT_STR(st, "timezone", "Asia/Tehran");
	assert_true(th_is_datetime(th_json_str(st, "server_time")));
	assert_non_null(strstr(th_json_str(st, "server_time"), "+03:30"));
	TH_EXPECT_INT(st, "schedule_version", 2);
	/* today, in Tehran and in the Jalali calendar (either side of a midnight) */
	snprintf(d0, sizeof(d0), "%04d-%02d-%02d", before.y, before.m, before.d);
	snprintf(d1, sizeof(d1), "%04d-%02d-%02d", after.y, after.m, after.d);
	assert_true(strcmp(th_json_str(st, "local_date"), d0) == 0 || strcmp(th_json_str(st, "local_date"), d1) == 0);
	assert_int_equal(jalali_from_days(before.day, &jy, &jm, &jd), 0);
	snprintf(j0, sizeof(j0), "%04d-%02d-%02d", jy, jm, jd);
	assert_int_equal(jalali_from_days(after.day, &jy, &jm, &jd), 0);
	snprintf(j1, sizeof(j1), "%04d-%02d-%02d", jy, jm, jd);
	assert_true(strcmp(th_json_str(st, "jalali_date"), j0) == 0 || strcmp(th_json_str(st, "jalali_date"), j1) == 0);
	assert_true(json_is_null(json_object_get(st, "holiday")) || json_is_string(json_object_get(st, "holiday")));
	assert_int_equal(json_object_size(st), 10);
	json_decref(st);

	/* wallet 0: insufficient_funds, and the status itself changes nothing */
	set_wallet(id, "0");
	st = status_ok("st-funds");
	expect_blocked(st, "insufficient_funds", 300);
	assert_true(json_is_null(json_object_get(st, "next_window_at")));
	json_decref(st);
	s = get_ok("st-funds");
	assert_true(json_is_true(json_object_get(s, "enabled")));
	assert_true(json_is_false(json_object_get(s, "disabled_by_dialer")));
	assert_int_equal(th_json_int(s, "version", &v), 0);
	assert_int_equal(v, 2);
	json_decref(s);

	/* disabled (the wallet check comes first) */
	set_wallet(id, "1000");
	json_decref(put_ok("st-funds", "{\"enabled\": false}"));
	st = status_ok("st-funds");
	expect_blocked(st, "disabled", 300);
	TH_EXPECT_INT(st, "schedule_version", 3);
	json_decref(st);
	set_wallet(id, "0");
	st = status_ok("st-funds");
	expect_blocked(st, "insufficient_funds", 300);
	json_decref(st);
}

static void test_status_no_window(void **state)
{
	struct tz_local now;
	json_t *st;
	long long id;
	char body[512];
	int today, other;

	(void)state;
	id = create_company("st-nowin");
	set_wallet(id, "1000");
	local_now(&now);
	if (now.sec > 86400 - 5)
		th_sleep_ms(6000); /* not across midnight */
	local_now(&now);
	today = tz_weekday_iran(now.day);
	other = (today + 2) % 7; /* the day after tomorrow */
	snprintf(body, sizeof(body),
	         "{\"skip_holidays\": false, \"intervals\": [{\"day_of_week\": %d, \"start_time\": \"09:00\","
	         " \"end_time\": \"17:00\"}]}",
	         other);
	json_decref(put_ok("st-nowin", body));
	st = status_ok("st-nowin");
	expect_blocked(st, "no_window", 900); /* the window is more than a day away */
	/* next window: two days from today at 09:00 local */
	const char *nw = th_json_str(st, "next_window_at");
	int y, m, d;
	char expect[40];
	tz_civil_from_days(now.day + 2, &y, &m, &d);
	snprintf(expect, sizeof(expect), "%04d-%02d-%02dT09:00:00+03:30", y, m, d);
	assert_non_null(nw);
	assert_string_equal(nw, expect);
	json_decref(st);

	/* no window at all */
	json_decref(put_ok("st-nowin", "{\"intervals\": []}"));
	st = status_ok("st-nowin");
	expect_blocked(st, "no_window", 900);
	assert_true(json_is_null(json_object_get(st, "next_window_at")));
	json_decref(st);
}

static void fmt_hms(int sec, char out[16])
{
	snprintf(out, 16, "%02d:%02d:%02d", sec / 3600, sec / 60 % 60, sec % 60);
}

/* A window starting soon today: retry is the seconds until it opens (< 900);
 * one starting in an hour: retry is 900. */
static void test_status_outside_window(void **state)
{
	struct tz_local now, after;
	json_t *st;
	long long id, retry = -1;
	char body[512], s0[16], e0[16], s1[16], e1[16], expect[48];
	int start;

	(void)state;
	id = create_company("st-outside");
	set_wallet(id, "1000");
	local_now(&now);
	if (now.sec > 86400 - 4000) {
		print_message("skipped: too close to local midnight for a window later today\n");
		skip();
	}
	start = now.sec + 120;
	fmt_hms(start, s0);
	fmt_hms(start + 60, e0);
	fmt_hms(start + 3600, s1);
	fmt_hms(start + 3700, e1);
	snprintf(body, sizeof(body),
	         "{\"skip_holidays\": false, \"intervals\": [{\"day_of_week\": %d, \"start_time\": \"%s\","
	         " \"end_time\": \"%s\"}, {\"day_of_week\": %d, \"start_time\": \"%s\", \"end_time\": \"%s\"}]}",
	         tz_weekday_iran(now.day), s0, e0, tz_weekday_iran(now.day), s1, e1);
	json_decref(put_ok("st-outside", body));
	local_now(&now);
	st = status_ok("st-outside");
	local_now(&after);
	expect_blocked(st, "outside_allowed_time_window", -1);
	assert_int_equal(th_json_int(st, "retry_after_seconds", &retry), 0);
	if (retry < start - after.sec || retry > start - now.sec)
		fail_msg("retry %lld, expected %d..%d", retry, start - after.sec, start - now.sec);
	snprintf(expect, sizeof(expect), "%04d-%02d-%02dT%s+03:30", now.y, now.m, now.d, s0);
	assert_string_equal(th_json_str(st, "next_window_at"), expect);
	json_decref(st);

	/* only the far window: capped at LONG_RETRY_SECONDS */
	snprintf(body, sizeof(body),
	         "{\"intervals\": [{\"day_of_week\": %d, \"start_time\": \"%s\", \"end_time\": \"%s\"}]}",
	         tz_weekday_iran(now.day), s1, e1);
	json_decref(put_ok("st-outside", body));
	st = status_ok("st-outside");
	expect_blocked(st, "outside_allowed_time_window", 900);
	snprintf(expect, sizeof(expect), "%04d-%02d-%02dT%s+03:30", now.y, now.m, now.d, s1);
	assert_string_equal(th_json_str(st, "next_window_at"), expect);
	json_decref(st);
}

/* Today a holiday: with skip_holidays → holiday (900 or the next window), without → allowed. */
static void test_status_holiday(void **state)
{
	struct tz_local now;
	json_t *st;
	long long id, retry = -1;
	struct th_resp *r;
	char date[16], path[64];
	bool added = false;

	(void)state;
	id = create_company("st-holiday");
	set_wallet(id, "1000");
	json_decref(put_ok("st-holiday", "{\"skip_holidays\": true, \"intervals\": " TH_ALL_DAY_INTERVALS "}"));
	local_now(&now);
	if (now.sec > 86400 - 30)
		th_sleep_ms(31000); /* the custom holiday must still be today */
	local_now(&now);
	snprintf(date, sizeof(date), "%04d-%02d-%02d", now.y, now.m, now.d);
	r = th_callf(&api, "POST", "/api/holidays", root_token, "{\"date\": \"%s\", \"title\": \"Test holiday\"}",
	             date);
	if (r->status == 200) {
		added = true;
	} else {
		TH_EXPECT_ERROR(r, 409, NULL); /* today is a holiday already */
	}
	th_resp_free(r);

	st = status_ok("st-holiday");
	expect_blocked(st, "holiday", -1);
	assert_int_equal(th_json_int(st, "retry_after_seconds", &retry), 0);
	assert_true(retry >= 1 && retry <= 900);
	assert_true(json_is_string(json_object_get(st, "holiday")));
	if (added)
		TH_EXPECT_STR(st, "holiday", "Test holiday");
	json_decref(st);

	json_decref(put_ok("st-holiday", "{\"skip_holidays\": false}"));
	st = status_ok("st-holiday");
	expect_allowed(st);
	assert_true(json_is_string(json_object_get(st, "holiday"))); /* still shown */
	json_decref(st);

	if (added) {
		snprintf(path, sizeof(path), "/api/holidays/%s", date);
		r = th_call(&api, "DELETE", path, root_token, NULL);
		TH_EXPECT_STATUS(r, 200);
		th_resp_free(r);
		json_decref(put_ok("st-holiday", "{\"skip_holidays\": true}"));
		st = status_ok("st-holiday");
		expect_allowed(st);
		assert_true(json_is_null(json_object_get(st, "holiday")));
		json_decref(st);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_get_defaults),
	    cmocka_unit_test(test_roles),
	    cmocka_unit_test(test_put_roundtrip),
	    cmocka_unit_test(test_put_errors),
	    cmocka_unit_test(test_enabled_and_wallet),
	    cmocka_unit_test(test_callstate_invalidated),
	    cmocka_unit_test(test_status_allowed_and_funds),
	    cmocka_unit_test(test_status_no_window),
	    cmocka_unit_test(test_status_outside_window),
	    cmocka_unit_test(test_status_holiday),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
