/* POST /api/dialer/report-result against the real dialer-api and Redis (COMPAT §2.10, preface 1;
 * issue 5 item 2): a report exactly as the original's agents send it is appended to the results
 * stream and answered 202 with its id; every bad input is a 4xx naming the field with nothing
 * enqueued; `call_allowed` flips the company's switch before the 202; Redis down → 503. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>

#include "harness.h"

static struct th_api api;
static char *db_url;
static char *root_token;

static char *sql(const char *q)
{
	return th_sql_get(db_url, q, NULL);
}

static long long xlen(void)
{
	char *out = th_redis_cli("XLEN", "dialer:results", NULL);
	long long n = strtoll(strstr(out, "(integer) ") ? strstr(out, "(integer) ") + 10 : out, NULL, 10);

	free(out);
	return n;
}

static int group_setup(void **state)
{
	(void)state;
	if (th_setup_api(&api, &db_url, &root_token, NULL) < 0)
		return -1;
	th_create_company(&api, root_token, "acme", "Acme", true);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return th_teardown_api(&api, &db_url, &root_token);
}

static struct th_resp *report(const char *body)
{
	return th_call(&api, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN, body);
}

/* The entry's field values in XRANGE's output, one per line: "field\nvalue\n...". */
static char *entry(const char *id)
{
	return th_redis_cli("XRANGE", "dialer:results", id, id, NULL);
}

static void expect_field(const char *dump, const char *field, const char *value)
{
	char want[256];

	snprintf(want, sizeof(want), "\"%s\"\n", field);
	const char *p = strstr(dump, want);
	if (!p)
		fail_msg("entry lacks %s:\n%s", field, dump);
	if (!value)
		return;
	snprintf(want, sizeof(want), "\"%s\"", value);
	p = strchr(p, '\n') + 1;
	if (!strstr(p, want) || strstr(p, want) > strchr(p, '\n'))
		fail_msg("entry %s is not %s:\n%s", field, value, dump);
}

/* A report exactly as the original's agents send it: no company, batch_id, nulls, microseconds. */
static void test_agent_report(void **state)
{
	struct th_resp *r;
	long long before = xlen();
	char *dump;

	(void)state;
	r = report("{\"phone_number\": \"+98 912 345 6789\", \"status\": \"CONNECTED\","
	           " \"attempted_at\": \"2026-02-18T10:00:00.123456+00:00\", \"batch_id\": "
	           "\"0123456789abcdef0123456789abcdef\","
	           " \"number_id\": null, \"scenario_id\": null, \"outbound_line_id\": null, \"reason\": null,"
	           " \"call_allowed\": null, \"agent_id\": null, \"agent_phone\": null, \"user_message\": \"salam\","
	           " \"something_new\": {\"ignored\": true}}");
	TH_EXPECT_STATUS(r, 202);
	assert_true(json_is_true(json_object_get(r->json, "accepted")));
	const char *id = th_json_str(r->json, "stream_id");
	assert_non_null(id);
	assert_non_null(strchr(id, '-'));
	assert_int_equal(xlen(), before + 1);
	dump = entry(id);
	expect_field(dump, "company", TH_DEFAULT_COMPANY);
	expect_field(dump, "phone", "09123456789");
	expect_field(dump, "status", "CONNECTED");
	expect_field(dump, "attempted_at", "1771408800123456");
	expect_field(dump, "batch_id", "0123456789abcdef0123456789abcdef");
	expect_field(dump, "user_message", "salam");
	expect_field(dump, "accepted_at", NULL);
	assert_null(strstr(dump, "\"number_id\"")); /* nulls are absent */
	assert_null(strstr(dump, "\"call_allowed\""));
	free(dump);
	th_resp_free(r);

	/* a company named in the body, an id instead of a usable phone, optional ids and an agent phone */
	r = report("{\"company\": \"acme\", \"phone_number\": \"\", \"number_id\": 42, \"status\": \"MISSED\","
	           " \"attempted_at\": \"2026-02-18 13:30:00+03:30\", \"scenario_id\": 3, \"outbound_line_id\": 4,"
	           " \"agent_id\": 5, \"agent_phone\": \"۰۹۱۲۰۰۰۰۰۰۱\", \"reason\": \"no answer\"}");
	TH_EXPECT_STATUS(r, 202);
	dump = entry(th_json_str(r->json, "stream_id"));
	expect_field(dump, "company", "acme");
	expect_field(dump, "number_id", "42");
	expect_field(dump, "attempted_at", "1771408800000000");
	expect_field(dump, "agent_phone", "09120000001");
	expect_field(dump, "scenario_id", "3");
	expect_field(dump, "reason", "no answer");
	free(dump);
	th_resp_free(r);
}

static void test_bad_reports(void **state)
{
	static const struct {
		const char *body;
		int status;
		const char *detail; /* substring */
	} bad[] = {
	    {"{\"status\": \"CONNECTED\", \"attempted_at\": \"2026-02-18T10:00:00Z\"}", 422, "phone_number"},
	    {"{\"phone_number\": \"09123456789\", \"attempted_at\": \"2026-02-18T10:00:00Z\"}", 422, "status"},
	    {"{\"phone_number\": \"09123456789\", \"status\": \"ANSWERED\", \"attempted_at\": "
	     "\"2026-02-18T10:00:00Z\"}",
	     422, "status"},
	    {"{\"phone_number\": \"09123456789\", \"status\": \"MISSED\"}", 422, "attempted_at"},
	    {"{\"phone_number\": \"09123456789\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T10:00:00\"}",
	     422, "attempted_at"},
	    {"{\"phone_number\": \"09123456789\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-30T10:00:00Z\"}",
	     422, "attempted_at"},
	    {"{\"phone_number\": \"09123456789\", \"status\": \"MISSED\", \"attempted_at\": 1771408800}", 422,
	     "attempted_at"},
	    {"{\"phone_number\": 9123456789, \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T10:00:00Z\"}", 422,
	     "phone_number"},
	    {"{\"phone_number\": \"12345\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T10:00:00Z\"}", 400,
	     "phone_number or number_id is required"},
	    {"{\"phone_number\": \"09123456789\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T10:00:00Z\","
	     " \"number_id\": \"7\"}",
	     422, "number_id"},
	    {"{\"phone_number\": \"09123456789\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T10:00:00Z\","
	     " \"agent_id\": 1.5}",
	     422, "agent_id"},
	    {"{\"phone_number\": \"09123456789\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T10:00:00Z\","
	     " \"call_allowed\": \"no\"}",
	     422, "call_allowed"},
	    {"{\"phone_number\": \"09123456789\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T10:00:00Z\","
	     " \"company\": \"nope\"}",
	     404, "Company not found"},
	    {"not json", 422, NULL},
	};
	struct th_resp *r;
	long long before = xlen();
	char big[5200];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = report(bad[i].body);
		TH_EXPECT_ERROR(r, bad[i].status, NULL);
		if (bad[i].detail && !strstr(th_json_str(r->json, "detail"), bad[i].detail))
			fail_msg("%s: detail %s lacks %s", bad[i].body, th_json_str(r->json, "detail"), bad[i].detail);
		th_resp_free(r);
	}
	/* sizes */
	snprintf(
	    big, sizeof(big),
	    "{\"phone_number\": \"09123456789\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T10:00:00Z\","
	    " \"user_message\": \"%04097d\"}",
	    0);
	r = report(big);
	TH_EXPECT_ERROR(r, 422, NULL);
	assert_non_null(strstr(th_json_str(r->json, "detail"), "user_message"));
	th_resp_free(r);
	/* auth */
	r = th_call(
	    &api, "POST", "/api/dialer/report-result", root_token,
	    "{\"phone_number\": \"09123456789\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T10:00:00Z\"}");
	TH_EXPECT_ERROR(r, 401, "Invalid dialer token");
	th_resp_free(r);
	assert_int_equal(xlen(), before); /* nothing enqueued */
}

/* call_allowed flips the switch before the 202: the very next status read sees it. */
static void test_call_allowed(void **state)
{
	struct th_resp *r;
	char *v;

	(void)state;
	free(sql("SELECT company_config_get((SELECT id FROM companies WHERE name = 'acme'), true)"));
	free(sql("UPDATE company_config SET wallet_balance = 1000 WHERE company_id = (SELECT id FROM companies"
	         " WHERE name = 'acme')"));
	r = report("{\"company\": \"acme\", \"phone_number\": \"09123456789\", \"status\": \"MISSED\","
	           " \"attempted_at\": \"2026-02-18T10:00:00Z\", \"call_allowed\": false}");
	TH_EXPECT_STATUS(r, 202);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/schedule/status", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_false(json_object_get(r->json, "call_allowed")));
	TH_EXPECT_STR(r->json, "reason", "disabled");
	TH_EXPECT_INT(r->json, "schedule_version", 2);
	th_resp_free(r);
	v = sql("SELECT enabled || '/' || disabled_by_dialer || '/' || version FROM company_config"
	        " WHERE company_id = (SELECT id FROM companies WHERE name = 'acme')");
	assert_string_equal(v, "false/true/2");
	free(v);
	/* the same value again: no version bump */
	r = report("{\"company\": \"acme\", \"phone_number\": \"09123456789\", \"status\": \"MISSED\","
	           " \"attempted_at\": \"2026-02-18T10:00:00Z\", \"call_allowed\": false}");
	TH_EXPECT_STATUS(r, 202);
	th_resp_free(r);
	r = report("{\"company\": \"acme\", \"phone_number\": \"09123456789\", \"status\": \"MISSED\","
	           " \"attempted_at\": \"2026-02-18T10:00:00Z\", \"call_allowed\": true}");
	TH_EXPECT_STATUS(r, 202);
	th_resp_free(r);
	v = sql("SELECT enabled || '/' || disabled_by_dialer || '/' || version FROM company_config"
	        " WHERE company_id = (SELECT id FROM companies WHERE name = 'acme')");
	assert_string_equal(v, "true/false/3");
	free(v);
}

/* Redis down: 503, and 202 again once it is back. */
static void test_redis_down(void **state)
{
	char dir[512], url[64];
	int port = th_free_port();
	struct th_api api2;
	struct th_proc *redis;
	struct th_resp *r;
	static const char *const body = "{\"phone_number\": \"09123456789\", \"status\": \"MISSED\","
	                                " \"attempted_at\": \"2026-02-18T10:00:00Z\"}";

	(void)state;
	snprintf(dir, sizeof(dir), "%s/report-redis", th_tmp_dir());
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
	assert_true(mkdir(dir, 0755) == 0 || errno == EEXIST);
	redis = th_redis_start(dir, port);
	assert_non_null(redis);
	assert_int_equal(th_api_start(&api2, db_url, url, NULL), 0);
	r = th_call(&api2, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN, body);
	TH_EXPECT_STATUS(r, 202);
	th_resp_free(r);
	assert_int_equal(th_redis_stop(redis), 0);
	r = th_call(&api2, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN, body);
	TH_EXPECT_ERROR(r, 503, NULL);
	th_resp_free(r);
	redis = th_redis_start(dir, port);
	assert_non_null(redis);
	long long t0 = th_now_ms();
	long status = 0;
	while (th_now_ms() - t0 < 10000) {
		r = th_call(&api2, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN, body);
		status = r->status;
		th_resp_free(r);
		if (status == 202)
			break;
		th_sleep_ms(100);
	}
	assert_int_equal(status, 202);
	assert_int_equal(th_api_stop(&api2), 0);
	assert_int_equal(th_redis_stop(redis), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_agent_report),
	    cmocka_unit_test(test_bad_reports),
	    cmocka_unit_test(test_call_allowed),
	    cmocka_unit_test(test_redis_down),
	};

	return cmocka_run_group_tests_name("dialer_report", tests, group_setup, group_teardown);
}
