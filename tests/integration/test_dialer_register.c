/* The dialer's registration of scenarios and outbound lines against the real dialer-api
 * (COMPAT §2.10, §3.7; SPEC §4): dialer auth (global and per-company tokens), the company rules,
 * created/updated/deactivated counts, inactive rows staying inactive, extra=forbid, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct th_api api;
static char *db_url;
static char *root_token, *acme_dialer_token;

static char *sql(const char *q)
{
	return th_sql_get(db_url, q, NULL);
}

static void expect_sql(const char *q, const char *expected)
{
	TH_EXPECT_SQL(db_url, expected, q, NULL);
}

static int group_setup(void **state)
{
	struct th_resp *r;

	(void)state;
	if (th_setup_api(&api, &db_url, &root_token, NULL) < 0)
		return -1;
	th_create_company(&api, root_token, "acme", "acme", true);
	th_create_company(&api, root_token, "globex", "globex", true);
	th_create_company(&api, root_token, "sleepy", "sleepy", false);
	r = th_call(&api, "POST", "/api/acme/dialer-tokens", root_token, "{\"name\": \"acme-dialer\"}");
	if (r->status != 200 || !th_json_str(r->json, "token"))
		return -1;
	acme_dialer_token = strdup(th_json_str(r->json, "token"));
	th_resp_free(r);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free(acme_dialer_token);
	return th_teardown_api(&api, &db_url, &root_token);
}

static void expect_counts(struct th_resp *r, long long reg, long long created, long long updated, long long off)
{
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "registered", reg);
	TH_EXPECT_INT(r->json, "created", created);
	TH_EXPECT_INT(r->json, "updated", updated);
	TH_EXPECT_INT(r->json, "deactivated", off);
	th_resp_free(r);
}

static struct th_resp *post(const char *token, const char *path, const char *body)
{
	return th_call(&api, "POST", path, token, body);
}

static void test_register_scenarios(void **state)
{
	(void)state;
	/* first registration: the last duplicate wins */
	expect_counts(
	    post(TH_DIALER_TOKEN, "/api/dialer/register-scenarios",
	         "{\"company\": \"acme\", \"scenarios\": [{\"name\": \"sales\", \"display_name\": \"Sales v1\"},"
	         " {\"name\": \"survey\", \"display_name\": \"Survey\"},"
	         " {\"name\": \"sales\", \"display_name\": \"Sales\"}]}"),
	    2, 2, 0, 0);
	expect_sql(
	    "SELECT string_agg(name || '=' || display_name || ':' || is_active, ',' ORDER BY name) FROM scenarios"
	    " WHERE company_id = (SELECT id FROM companies WHERE name = 'acme')",
	    "sales=Sales:true,survey=Survey:true");
	/* the panel deactivates survey; the dialer renames sales, adds promo, drops survey and retention */
	free(sql("UPDATE scenarios SET is_active = false WHERE name = 'survey'"));
	expect_counts(
	    post(TH_DIALER_TOKEN, "/api/dialer/register-scenarios/",
	         "{\"company\": \"acme\", \"scenarios\": [{\"name\": \"sales\", \"display_name\": \"Sales 2\"},"
	         " {\"name\": \"survey\", \"display_name\": \"Survey\"},"
	         " {\"name\": \"promo\", \"display_name\": \"Promo\"}]}"),
	    3, 1, 1, 0);
	/* survey stays inactive (the panel owns the flag) */
	expect_sql(
	    "SELECT string_agg(name || '=' || display_name || ':' || is_active, ',' ORDER BY name) FROM scenarios"
	    " WHERE company_id = (SELECT id FROM companies WHERE name = 'acme')",
	    "promo=Promo:true,sales=Sales 2:true,survey=Survey:false");
	/* an empty list deactivates every active one */
	expect_counts(
	    post(TH_DIALER_TOKEN, "/api/dialer/register-scenarios", "{\"company\": \"acme\", \"scenarios\": []}"), 0, 0,
	    0, 2);
	expect_sql("SELECT count(*) FROM scenarios WHERE is_active", "0");
	/* another company's scenarios are untouched; the same name may exist there */
	expect_counts(post(TH_DIALER_TOKEN, "/api/dialer/register-scenarios",
	                   "{\"company\": \"globex\", \"scenarios\": [{\"name\": \"sales\", \"display_name\": \"G\"}],"
	                   " \"batch_id\": null, \"extra\": 1}"),
	              1, 1, 0, 0);
	expect_sql("SELECT count(*) FROM scenarios", "4");
}

static void test_register_lines(void **state)
{
	(void)state;
	expect_counts(
	    post(TH_DIALER_TOKEN, "/api/dialer/register-outbound-lines",
	         "{\"company\": \"acme\", \"outbound_lines\": [{\"phone_number\": \"+98 21 1234\","
	         " \"display_name\": \"Tehran 1\"}, {\"phone_number\": \"2100\", \"display_name\": \"Short\"}]}"),
	    2, 2, 0, 0);
	/* stored raw, not normalized */
	expect_sql("SELECT string_agg(phone_number, ',' ORDER BY phone_number) FROM outbound_lines",
	           "+98 21 1234,2100");
	expect_counts(post(TH_DIALER_TOKEN, "/api/dialer/register-outbound-lines",
	                   "{\"company\": \"acme\", \"outbound_lines\": [{\"phone_number\": \"2100\","
	                   " \"display_name\": \"Short line\"}]}"),
	              1, 0, 1, 1);
	expect_sql("SELECT string_agg(phone_number || ':' || is_active, ',' ORDER BY phone_number) FROM outbound_lines",
	           "+98 21 1234:false,2100:true");
}

/* Company: body, else the per-company token's, else DEFAULT_COMPANY under the global token. */
static void test_company_rules(void **state)
{
	struct th_resp *r;

	(void)state;
	expect_counts(post(TH_DIALER_TOKEN, "/api/dialer/register-scenarios",
	                   "{\"scenarios\": [{\"name\": \"inbound\", \"display_name\": \"Inbound\"}]}"),
	              1, 1, 0, 0);
	expect_sql("SELECT c.name FROM scenarios s JOIN companies c ON c.id = s.company_id WHERE s.name = 'inbound'",
	           TH_DEFAULT_COMPANY);
	expect_counts(post(acme_dialer_token, "/api/dialer/register-scenarios",
	                   "{\"scenarios\": [{\"name\": \"tok\", \"display_name\": \"Token\"}]}"),
	              1, 1, 0, 0);
	expect_sql("SELECT c.name FROM scenarios s JOIN companies c ON c.id = s.company_id WHERE s.name = 'tok'",
	           "acme");
	r = post(acme_dialer_token, "/api/dialer/register-scenarios",
	         "{\"company\": \"globex\", \"scenarios\": [{\"name\": \"x\", \"display_name\": \"X\"}]}");
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = post(TH_DIALER_TOKEN, "/api/dialer/register-scenarios",
	         "{\"company\": \"nope\", \"scenarios\": [{\"name\": \"x\", \"display_name\": \"X\"}]}");
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = post(TH_DIALER_TOKEN, "/api/dialer/register-scenarios",
	         "{\"company\": \"sleepy\", \"scenarios\": [{\"name\": \"x\", \"display_name\": \"X\"}]}");
	TH_EXPECT_ERROR(r, 404, "Company not found"); /* inactive */
	th_resp_free(r);
	expect_sql("SELECT count(*) FROM scenarios WHERE name = 'x'", "0");
}

static void test_auth_and_bad_input(void **state)
{
	static const struct {
		const char *body;
		const char *field; /* substring of detail */
	} bad[] = {
	    {"{\"company\": \"acme\"}", "scenarios"},
	    {"{\"company\": \"acme\", \"scenarios\": {}}", "scenarios"},
	    {"{\"company\": \"acme\", \"scenarios\": [\"sales\"]}", "scenarios[0]"},
	    {"{\"company\": \"acme\", \"scenarios\": [{\"name\": \"a\", \"display_name\": \"A\", \"is_active\": "
	     "true}]}",
	     "scenarios[0].is_active"},
	    {"{\"company\": \"acme\", \"scenarios\": [{\"display_name\": \"A\"}]}", "scenarios[0].name"},
	    {"{\"company\": \"acme\", \"scenarios\": [{\"name\": \"\", \"display_name\": \"A\"}]}",
	     "scenarios[0].name"},
	    {"{\"company\": \"acme\", \"scenarios\": [{\"name\": 5, \"display_name\": \"A\"}]}", "scenarios[0].name"},
	    {"{\"company\": \"acme\", \"scenarios\": [{\"name\": \"ok\", \"display_name\": \"A\"},"
	     " {\"name\": \"a\", \"display_name\": null}]}",
	     "scenarios[1].display_name"},
	    {"{\"company\": 7, \"scenarios\": []}", "company"},
	    {"[1]", "body"},
	};
	struct th_resp *r;
	char *before = sql("SELECT count(*) || '/' || count(*) FILTER (WHERE is_active) FROM scenarios");

	(void)state;
	r = post(NULL, "/api/dialer/register-scenarios", "{\"company\": \"acme\", \"scenarios\": []}");
	TH_EXPECT_ERROR(r, 401, "Invalid dialer token");
	th_resp_free(r);
	r = post("wrong-token", "/api/dialer/register-scenarios", "{\"company\": \"acme\", \"scenarios\": []}");
	TH_EXPECT_ERROR(r, 401, "Invalid dialer token");
	th_resp_free(r);
	r = post(root_token, "/api/dialer/register-scenarios", "{\"company\": \"acme\", \"scenarios\": []}");
	TH_EXPECT_ERROR(r, 401, "Invalid dialer token"); /* JWTs are not accepted here */
	th_resp_free(r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = post(TH_DIALER_TOKEN, "/api/dialer/register-scenarios", bad[i].body);
		TH_EXPECT_ERROR(r, 422, NULL);
		if (!strstr(th_json_str(r->json, "detail"), bad[i].field))
			fail_msg("%s: detail %s lacks %s", bad[i].body, th_json_str(r->json, "detail"), bad[i].field);
		th_resp_free(r);
	}
	r = post(
	    TH_DIALER_TOKEN, "/api/dialer/register-outbound-lines",
	    "{\"company\": \"acme\", \"outbound_lines\": [{\"phone_number\": \"123456789012345678901234567890123\","
	    " \"display_name\": \"too long\"}]}");
	TH_EXPECT_ERROR(r, 422, NULL);
	assert_non_null(strstr(th_json_str(r->json, "detail"), "outbound_lines[0].phone_number"));
	th_resp_free(r);
	char *after = sql("SELECT count(*) || '/' || count(*) FILTER (WHERE is_active) FROM scenarios");
	assert_string_equal(before, after); /* nothing changed */
	free(before);
	free(after);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_register_scenarios),
	    cmocka_unit_test(test_register_lines),
	    cmocka_unit_test(test_company_rules),
	    cmocka_unit_test(test_auth_and_bad_input),
	};

	return cmocka_run_group_tests_name("dialer_register", tests, group_setup, group_teardown);
}
