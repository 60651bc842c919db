/* The numbers pool against the real dialer-api (COMPAT §2.9 with the preface's changes; issue 4
 * items 2–4): add, list/count filters, one number and its attempts, status/delete/reset with the
 * mutability guard, bulk (including a select_all over 100,000 numbers), roles, company and agent
 * isolation. Dialing history is written as call_attempts rows through SQL: the trigger derives the
 * per-company state exactly as the results worker will. */
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
static struct th_proc *bulk_worker; /* bulk actions over BULK_SYNC_LIMIT (10,000) are its jobs */
static char *db_url;
static char *root_token, *admin_token, *agent_token, *agent2_token, *globex_token;
static long long acme_id, globex_id, agent_id, agent2_id;

static long long create_user(const char *company, const char *username, const char *role, const char *first,
                             const char *phone)
{
	char path[96];
	struct th_resp *r;
	long long id = -1;

	snprintf(path, sizeof(path), "/api/%s/admins", company);
	r = th_callf(&api, "POST", path, root_token,
	             "{\"username\": \"%s\", \"password\": \"secret-pass-1\", \"role\": \"%s\", \"first_name\": \"%s\","
	             " \"last_name\": \"Agentson\", \"phone_number\": \"%s\"}",
	             username, role, first, phone);
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);
	return id;
}

/* One SQL statement that must succeed; returns the first value (caller frees) or NULL. */
static char *sql(const char *q)
{
	return th_sql_get(db_url, q, NULL);
}

/* sql() as an integer; it must not be NULL. */
static long long sql_int(const char *q)
{
	return th_sql_int(db_url, q, NULL);
}

static long long number_id(const char *phone)
{
	char q[160];

	snprintf(q, sizeof(q), "SELECT id FROM numbers WHERE phone_number = '%s'", phone);
	return sql_int(q);
}

/* Records a call of phone by company cid (agent 0 = none) through call_attempts. */
static void attempt(long long cid, const char *phone, const char *status, long long agent, const char *when)
{
	char q[512], a[24] = "NULL";

	if (agent)
		snprintf(a, sizeof(a), "%lld", agent);
	snprintf(q, sizeof(q),
	         "INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at, agent_id,"
	         " user_message) SELECT %lld, id, phone_number, '%s', %s, %s, 'msg-%s' FROM numbers"
	         " WHERE phone_number = '%s'",
	         cid, status, when, a, status, phone);
	free(sql(q));
}

#define get(token, ...) th_getf(&api, (token), __VA_ARGS__)

/* GET /api/numbers/stats?<query> → total. */
static long long total(const char *token, const char *query)
{
	struct th_resp *r = get(token, "/api/numbers/stats?%s", query);
	long long t = -1;

	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "total", &t), 0);
	th_resp_free(r);
	return t;
}

/* The list's phone numbers joined with ',' (caller frees). */
static char *phones_of(const struct th_resp *r)
{
	size_t i, len = 0;
	json_t *v;
	char *out = calloc(1, json_array_size(r->json) * 12 + 1);

	assert_true(json_is_array(r->json));
	json_array_foreach(r->json, i, v)
	{
		len += (size_t)sprintf(out + len, "%s%s", i ? "," : "", th_json_str(v, "phone_number"));
	}
	return out;
}

static void expect_list(const char *token, const char *query, const char *expected)
{
	struct th_resp *r = get(token, "/api/numbers?%s", query);
	char *got;

	TH_EXPECT_STATUS(r, 200);
	got = phones_of(r);
	if (strcmp(got, expected) != 0)
		fail_msg("GET /api/numbers?%s: got [%s], expected [%s]", query, got, expected);
	free(got);
	th_resp_free(r);
}

static int group_setup(void **state)
{
	char dkv[600];

	(void)state;
	/* a bulk over more than BULK_SYNC_LIMIT numbers is a job, answered inline within JOB_WAIT_SECONDS */
	snprintf(dkv, sizeof(dkv), "DATA_DIR=%s/%s-data", th_tmp_dir(), th_test_name());
	if (th_setup_api(&api, &db_url, &root_token, "LIST_MAX=200", dkv, "JOB_WAIT_SECONDS=120", NULL) < 0)
		return -1;
	bulk_worker = th_dialer_start("dialer-bulk", db_url, "bulk", dkv, "LOG_LEVEL=info", NULL);
	if (bulk_worker == NULL)
		return -1;
	acme_id = th_create_company(&api, root_token, "acme", "acme co", true);
	globex_id = th_create_company(&api, root_token, "globex", "globex co", true);
	create_user("acme", "acme-admin", "ADMIN", "Ada", "09350000001");
	agent_id = create_user("acme", "acme-agent", "AGENT", "Zahra", "09350000002");
	agent2_id = create_user("acme", "acme-agent2", "AGENT", "Reza", "09350000003");
	create_user("globex", "globex-admin", "ADMIN", "Gus", "09350000004");
	admin_token = th_login(&api, "acme-admin", "secret-pass-1");
	agent_token = th_login(&api, "acme-agent", "secret-pass-1");
	agent2_token = th_login(&api, "acme-agent2", "secret-pass-1");
	globex_token = th_login(&api, "globex-admin", "secret-pass-1");
	return admin_token && agent_token && agent2_token && globex_token ? 0 : -1;
}

static int group_teardown(void **state)
{
	int st;

	(void)state;
	st = th_proc_stop(bulk_worker);
	free(admin_token);
	free(agent_token);
	free(agent2_token);
	free(globex_token);
	if (th_teardown_api(&api, &db_url, &root_token) != 0)
		st = -1;
	return st == 0 ? 0 : -1;
}

/* POST /api/numbers: normalization, counts that add up, roles, bad bodies change nothing. */
static void test_add(void **state)
{
	struct th_resp *r;
	json_t *s;

	(void)state;
	r = th_call(&api, "POST", "/api/numbers", admin_token,
	            "{\"phone_numbers\": [\"09121000001\", \"+989121000002\", \"00989121000003\", \"989121000004\","
	            " \"9121000005\", \"۰۹۱۲۱۰۰۰۰۰۶\", \"0912-100 (0007)\", \"12345\", \"02112345678\", \"abc\", \"\","
	            " \"09121000001\", \"+98 912 100 0002\"]}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "inserted", 7);
	TH_EXPECT_INT(r->json, "duplicates", 2); /* repeats within the request count as duplicates */
	TH_EXPECT_INT(r->json, "invalid", 4);
	TH_EXPECT_INT(r->json, "rows", 13);
	s = json_object_get(r->json, "invalid_samples");
	assert_int_equal(json_array_size(s), 4);
	assert_string_equal(json_string_value(json_array_get(s, 0)), "12345");
	s = json_object_get(r->json, "invalid_rows");
	assert_int_equal(json_array_size(s), 4);
	TH_EXPECT_INT(json_array_get(s, 1), "line", 9);
	TH_EXPECT_STR(json_array_get(s, 1), "value", "02112345678");
	th_resp_free(r);
	assert_int_equal(sql_int("SELECT count(*) FROM numbers WHERE phone_number LIKE '0912100000_'"), 7);

	/* again: everything is a duplicate now; the trailing slash form answers too */
	r = th_call(&api, "POST", "/api/numbers/", admin_token,
	            "{\"phone_numbers\": [\"09121000001\", \"09121000007\"]}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "inserted", 0);
	TH_EXPECT_INT(r->json, "duplicates", 2);
	th_resp_free(r);

	/* roles and bad bodies */
	r = th_call(&api, "POST", "/api/numbers", agent_token, "{\"phone_numbers\": [\"09121000099\"]}");
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/numbers", NULL, "{\"phone_numbers\": [\"09121000099\"]}");
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/numbers", admin_token, "{\"phone_numbers\": \"09121000099\"}");
	TH_EXPECT_ERROR(r, 422, NULL);
	assert_non_null(strstr(th_json_str(r->json, "detail"), "phone_numbers"));
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/numbers", admin_token, "{\"phone_numbers\": [\"09121000099\", 9121000098]}");
	TH_EXPECT_ERROR(r, 422, NULL);
	assert_non_null(strstr(th_json_str(r->json, "detail"), "phone_numbers[1]"));
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/numbers", admin_token, "{}");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/numbers", admin_token, "{\"phone_numbers\": [");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	assert_int_equal(sql_int("SELECT count(*) FROM numbers WHERE phone_number IN ('09121000099', '09121000098')"),
	                 0);
}

/* The fixture the list tests read: 09122000001..09122000006 with acme history. */
static void make_history(void)
{
	static int done;

	if (done++)
		return;
	struct th_resp *r = th_call(&api, "POST", "/api/numbers", admin_token,
	                            "{\"phone_numbers\": [\"09122000001\", \"09122000002\", \"09122000003\","
	                            " \"09122000004\", \"09122000005\", \"09122000006\"]}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "inserted", 6);
	th_resp_free(r);
	/* acme: ...01 MISSED then CONNECTED (agent), ...02 MISSED (agent2), ...03 POWER_OFF, ...04 BUSY;
	 * globex: ...05 CONNECTED. ...06 never called. Times are fixed Tehran days. */
	attempt(acme_id, "09122000001", "MISSED", agent_id, "'2026-02-10 10:00:00+03:30'");
	attempt(acme_id, "09122000001", "CONNECTED", agent_id, "'2026-02-18 10:00:00+03:30'");
	attempt(acme_id, "09122000002", "MISSED", agent2_id, "'2026-02-17 23:30:00+03:30'");
	attempt(acme_id, "09122000003", "POWER_OFF", 0, "'2026-02-19 00:10:00+03:30'");
	attempt(acme_id, "09122000004", "BUSY", 0, "'2026-02-15 12:00:00+03:30'");
	attempt(globex_id, "09122000005", "CONNECTED", 0, "'2026-02-16 12:00:00+03:30'");
}

static void test_list_shape(void **state)
{
	struct th_resp *r;
	json_t *n, *ag;
	long long id1 = 0;
	char q[64];

	(void)state;
	make_history();
	r = get(admin_token, "/api/numbers?search=09122000001");
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(json_array_size(r->json), 1);
	n = json_array_get(r->json, 0);
	static const char *const keys[] = {"id",
	                                   "phone_number",
	                                   "global_status",
	                                   "last_called_at",
	                                   "last_called_company_id",
	                                   "assigned_at",
	                                   "assigned_batch_id",
	                                   "status",
	                                   "total_attempts",
	                                   "last_attempt_at",
	                                   "last_status_change_at",
	                                   "last_user_message",
	                                   "assigned_agent_id",
	                                   "assigned_agent",
	                                   "created_at"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!json_object_get(n, keys[i]))
			fail_msg("NumberOut lacks %s", keys[i]);
	TH_EXPECT_STR(n, "status", "CONNECTED");
	TH_EXPECT_INT(n, "total_attempts", 2);
	TH_EXPECT_STR(n, "last_user_message", "msg-CONNECTED");
	TH_EXPECT_STR(n, "global_status", "ACTIVE");
	TH_EXPECT_INT(n, "last_called_company_id", acme_id);
	assert_true(th_is_datetime(th_json_str(n, "last_attempt_at")));
	assert_true(th_is_datetime(th_json_str(n, "last_called_at")));
	assert_true(th_is_datetime(th_json_str(n, "created_at")));
	TH_EXPECT_INT(n, "assigned_agent_id", agent_id);
	ag = json_object_get(n, "assigned_agent");
	TH_EXPECT_STR(ag, "username", "acme-agent");
	TH_EXPECT_STR(ag, "first_name", "Zahra");
	TH_EXPECT_STR(ag, "last_name", "Agentson");
	TH_EXPECT_STR(ag, "phone_number", "09350000002");
	th_json_int(n, "id", &id1);
	th_resp_free(r);

	/* never called by acme: status null, total 0, no agent; globex sees only its own state */
	r = get(admin_token, "/api/numbers?search=09122000006");
	n = json_array_get(r->json, 0);
	assert_true(json_is_null(json_object_get(n, "status")));
	TH_EXPECT_INT(n, "total_attempts", 0);
	assert_true(json_is_null(json_object_get(n, "assigned_agent")));
	assert_true(json_is_null(json_object_get(n, "last_attempt_at")));
	th_resp_free(r);
	r = get(globex_token, "/api/numbers?search=09122000001");
	assert_true(json_is_null(json_object_get(json_array_get(r->json, 0), "status")));
	th_resp_free(r);
	r = get(globex_token, "/api/numbers?search=09122000005");
	TH_EXPECT_STR(json_array_get(r->json, 0), "status", "CONNECTED");
	th_resp_free(r);

	/* GET /api/numbers/{id} */
	snprintf(q, sizeof(q), "/api/numbers/%lld", id1);
	r = get(admin_token, "%s", q);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "phone_number", "09122000001");
	TH_EXPECT_STR(r->json, "status", "CONNECTED");
	th_resp_free(r);
	r = get(admin_token, "/api/numbers/999999999");
	TH_EXPECT_ERROR(r, 404, "Number not found");
	th_resp_free(r);
	r = get(admin_token, "/api/numbers/abc");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	/* a superuser without a company sees no per-company columns, or names one */
	r = get(root_token, "%s", q);
	assert_true(json_is_null(json_object_get(r->json, "status")));
	th_resp_free(r);
	r = get(root_token, "%s?company=acme", q);
	TH_EXPECT_STR(r->json, "status", "CONNECTED");
	th_resp_free(r);
}

static void test_list_filters(void **state)
{
	(void)state;
	make_history();
	/* default order: newest first (id desc) */
	expect_list(admin_token, "search=0912200000&limit=3", "09122000006,09122000005,09122000004");
	expect_list(admin_token, "search=0912200000&limit=2&skip=2", "09122000004,09122000003");
	expect_list(admin_token, "search=0912200000&sort_order=asc&limit=2", "09122000001,09122000002");
	/* per-company status; IN_QUEUE = never called by this company */
	expect_list(admin_token, "search=0912200000&status=MISSED", "09122000002");
	expect_list(admin_token, "search=0912200000&status=IN_QUEUE", "09122000006,09122000005");
	expect_list(globex_token, "search=0912200000&status=IN_QUEUE",
	            "09122000006,09122000004,09122000003,09122000002,09122000001");
	expect_list(admin_token, "search=0912200000&global_status=POWER_OFF", "09122000003");
	/* sort by the company's last attempt / status, NULLS LAST both ways */
	expect_list(admin_token, "search=0912200000&sort_by=last_attempt_at&sort_order=desc",
	            "09122000003,09122000001,09122000002,09122000004,09122000006,09122000005");
	expect_list(admin_token, "search=0912200000&sort_by=last_attempt_at&sort_order=asc",
	            "09122000004,09122000002,09122000001,09122000003,09122000005,09122000006");
	expect_list(admin_token, "search=0912200000&sort_by=status&sort_order=asc",
	            "09122000004,09122000001,09122000002,09122000003,09122000005,09122000006");
	/* dates: Tehran calendar days, inclusive; Persian digits as the panel's date picker sends them */
	expect_list(admin_token, "search=0912200000&start_date=2026-02-18&end_date=2026-02-18", "09122000001");
	expect_list(admin_token, "search=0912200000&start_date=2026-02-17&end_date=2026-02-17", "09122000002");
	expect_list(admin_token, "search=0912200000&start_date=%DB%B2%DB%B0%DB%B2%DB%B6-%DB%B0%DB%B2-%DB%B1%DB%B9",
	            "09122000003");
	expect_list(admin_token, "search=0912200000&end_date=2026-02-10", "09122000001");
	/* without a company (superuser): last_called_at */
	expect_list(root_token, "search=0912200000&start_date=2026-02-16&end_date=2026-02-16", "09122000005");
	/* search: Persian digits, separators, the assigned agent's names, username and phone */
	expect_list(admin_token, "search=%DB%B0%DB%B9%DB%B1%DB%B2%DB%B2%DB%B0%DB%B0%DB%B0%DB%B0%DB%B0%DB%B5",
	            "09122000005");
	expect_list(admin_token, "search=0912-200-0004", "09122000004");
	expect_list(admin_token, "search=zahra", "09122000001");
	expect_list(admin_token, "search=Reza+Agentson", "09122000002");
	expect_list(admin_token, "search=acme-agent2", "09122000002");
	expect_list(admin_token, "search=09350000002", "09122000001");
	expect_list(admin_token, "search=%25", "");  /* LIKE wildcards are literal */
	expect_list(admin_token, "search=912_", ""); /* no number contains "912_" */
	/* agent_id filter */
	{
		char q[96];

		snprintf(q, sizeof(q), "search=0912200000&agent_id=%lld", agent2_id);
		expect_list(admin_token, q, "09122000002");
	}
	/* the count agrees with the list */
	assert_int_equal(total(admin_token, "search=0912200000"), 6);
	assert_int_equal(total(admin_token, "search=0912200000&status=IN_QUEUE"), 2);
	assert_int_equal(total(admin_token, "search=0912200000&start_date=2026-02-15&end_date=2026-02-18"), 3);
	/* a bare status count (the panel's tabs) reads number_state alone; agents still see only theirs */
	assert_int_equal(total(admin_token, "status=MISSED"), 1);
	assert_int_equal(total(admin_token, "status=CONNECTED"), 1);
	assert_int_equal(total(globex_token, "status=CONNECTED"), 1);
	assert_int_equal(total(agent2_token, "status=MISSED"), 1);
	assert_int_equal(total(agent_token, "status=MISSED"), 0);
	{
		char q[96];

		snprintf(q, sizeof(q), "status=MISSED&agent_id=%lld", agent_id);
		assert_int_equal(total(admin_token, q), 0);
		snprintf(q, sizeof(q), "status=CONNECTED&agent_id=%lld", agent_id);
		assert_int_equal(total(admin_token, q), 1);
	}
	assert_int_equal(total(root_token, "search=0912200000&status=MISSED"), 6); /* status needs a company */
	assert_int_equal(total(root_token, "search=0912200000&status=MISSED&company=acme"), 1);
}

static void test_list_bad_input(void **state)
{
	static const struct {
		const char *query;
		int status;
		const char *field; /* a substring of detail */
	} cases[] = {
	    {"status=WHATEVER", 422, "status"},
	    {"global_status=DEAD", 422, "global_status"},
	    {"sort_by=phone_number", 422, "sort_by"},
	    {"sort_order=up", 422, "sort_order"},
	    {"limit=0", 422, "limit"},
	    {"limit=201", 422, "limit"}, /* LIST_MAX=200 in this test */
	    {"limit=ten", 422, "limit"},
	    {"skip=-1", 422, "skip"},
	    {"agent_id=x", 422, "agent_id"},
	    {"start_date=2026-13-01", 400, "Invalid start_date"},
	    {"start_date=2026-02-30", 400, "Invalid start_date"},
	    {"end_date=yesterday", 400, "Invalid end_date"},
	    {"search="
	     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	     "X",
	     422, "search"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct th_resp *r = get(admin_token, "/api/numbers?%s", cases[i].query);

		TH_EXPECT_ERROR(r, cases[i].status, NULL);
		if (!strstr(th_json_str(r->json, "detail"), cases[i].field))
			fail_msg("%s: detail %s lacks %s", cases[i].query, th_json_str(r->json, "detail"),
			         cases[i].field);
		th_resp_free(r);
	}
	/* 400 on dates comes before the company check (COMPAT §6) */
	struct th_resp *r = get(admin_token, "/api/numbers?start_date=bad&company=nope");
	TH_EXPECT_ERROR(r, 400, "Invalid start_date");
	th_resp_free(r);
	r = get(admin_token, "/api/numbers?company=nope");
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = get(admin_token, "/api/numbers/stats?company=globex");
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = get(NULL, "/api/numbers");
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
	r = get(admin_token, "/api/numbers/");
	TH_EXPECT_STATUS(r, 200); /* trailing slash, no redirect */
	th_resp_free(r);
}

/* Agents see and touch only the numbers assigned to them. */
static void test_agent_isolation(void **state)
{
	struct th_resp *r;
	char path[96];

	(void)state;
	make_history();
	expect_list(agent_token, "", "09122000001");
	expect_list(agent2_token, "limit=50", "09122000002");
	assert_int_equal(total(agent_token, ""), 1);
	assert_int_equal(total(agent_token, "status=IN_QUEUE"), 0);
	snprintf(path, sizeof(path), "/api/numbers/%lld", number_id("09122000002"));
	r = get(agent_token, "%s", path);
	TH_EXPECT_ERROR(r, 404, "Number not found");
	th_resp_free(r);
	r = get(agent2_token, "%s", path);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/numbers/%lld/attempts", number_id("09122000002"));
	r = get(agent_token, "%s", path);
	TH_EXPECT_ERROR(r, 404, "Number not found");
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/numbers/%lld/status", number_id("09122000001"));
	r = th_call(&api, "PUT", path, agent_token, "{\"status\": \"MISSED\"}");
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/numbers/bulk", agent_token, "{\"action\": \"delete\", \"ids\": [1]}");
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	/* an agent cannot look into another company */
	r = get(agent_token, "/api/numbers?company=globex");
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
}

static void test_attempts(void **state)
{
	struct th_resp *r;
	long long id = 0;

	(void)state;
	make_history();
	id = number_id("09122000001");
	attempt(globex_id, "09122000001", "BUSY", 0, "'2026-02-20 09:00:00+03:30'");
	r = get(admin_token, "/api/numbers/%lld/attempts", id);
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(json_array_size(r->json), 2); /* acme's only, newest first */
	TH_EXPECT_STR(json_array_get(r->json, 0), "status", "CONNECTED");
	TH_EXPECT_STR(json_array_get(r->json, 1), "status", "MISSED");
	TH_EXPECT_INT(json_array_get(r->json, 0), "company_id", acme_id);
	assert_true(th_is_datetime(th_json_str(json_array_get(r->json, 0), "attempted_at")));
	th_resp_free(r);
	r = get(admin_token, "/api/numbers/%lld/attempts?limit=1&skip=1", id);
	assert_int_equal(json_array_size(r->json), 1);
	TH_EXPECT_STR(json_array_get(r->json, 0), "status", "MISSED");
	th_resp_free(r);
	r = get(root_token, "/api/numbers/%lld/attempts", id); /* no company: every company's */
	assert_int_equal(json_array_size(r->json), 3);
	th_resp_free(r);
	r = get(globex_token, "/api/numbers/%lld/attempts", id);
	assert_int_equal(json_array_size(r->json), 1);
	th_resp_free(r);
	/* globex's newer call moved the global columns, not acme's state */
	r = get(admin_token, "/api/numbers/%lld", id);
	TH_EXPECT_STR(r->json, "status", "CONNECTED");
	TH_EXPECT_INT(r->json, "last_called_company_id", globex_id);
	th_resp_free(r);
	r = get(admin_token, "/api/numbers/999999/attempts");
	TH_EXPECT_ERROR(r, 404, "Number not found");
	th_resp_free(r);
}

static struct th_resp *put_status(const char *token, long long id, const char *query, const char *body)
{
	char path[128];

	snprintf(path, sizeof(path), "/api/numbers/%lld/status%s", id, query);
	return th_call(&api, "PUT", path, token, body);
}

static void test_status(void **state)
{
	struct th_resp *r;
	long long id;

	(void)state;
	r = th_call(&api, "POST", "/api/numbers", admin_token,
	            "{\"phone_numbers\": [\"09123000001\", \"09123000002\"]}");
	th_resp_free(r);
	id = number_id("09123000001");

	/* IN_QUEUE → POWER_OFF: state row created, global status follows */
	r = put_status(admin_token, id, "", "{\"status\": \"POWER_OFF\", \"note\": \"ignored\"}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "status", "POWER_OFF");
	TH_EXPECT_STR(r->json, "global_status", "POWER_OFF");
	TH_EXPECT_INT(r->json, "total_attempts", 0);
	th_resp_free(r);
	r = put_status(admin_token, id, "?company=acme", "{\"status\": \"COMPLAINED\"}");
	TH_EXPECT_STR(r->json, "global_status", "COMPLAINED");
	th_resp_free(r);
	/* COMPLAINED is not mutable for a company admin; the superuser may */
	r = put_status(admin_token, id, "", "{\"status\": \"MISSED\"}");
	TH_EXPECT_ERROR(r, 400, "Status COMPLAINED cannot be changed by non-superuser");
	th_resp_free(r);
	r = put_status(root_token, id, "?company=acme", "{\"status\": \"MISSED\"}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "status", "MISSED");
	TH_EXPECT_STR(r->json, "global_status", "ACTIVE");
	th_resp_free(r);
	/* IN_QUEUE makes it dialable again: the state row goes */
	r = put_status(admin_token, id, "", "{\"status\": \"IN_QUEUE\"}");
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_null(json_object_get(r->json, "status")));
	th_resp_free(r);
	assert_int_equal(sql_int("SELECT count(*) FROM number_state s JOIN numbers n ON n.id = s.number_id"
	                         " WHERE n.phone_number = '09123000001'"),
	                 0);

	/* errors, each changing nothing */
	r = put_status(admin_token, id, "", "{\"status\": \"ASLEEP\"}");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	r = put_status(admin_token, id, "", "{}");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	r = put_status(admin_token, id, "", NULL);
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	r = put_status(admin_token, 99999999, "?company=nope", "{\"status\": \"MISSED\"}");
	TH_EXPECT_ERROR(r, 404, "Number not found"); /* before the company (COMPAT §6) */
	th_resp_free(r);
	r = put_status(admin_token, id, "?company=nope", "{\"status\": \"MISSED\"}");
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = put_status(admin_token, id, "?company=globex", "{\"status\": \"MISSED\"}");
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = put_status(root_token, id, "", "{\"status\": \"MISSED\"}");
	TH_EXPECT_ERROR(r, 400, NULL); /* no target company: refused, not a silent no-op */
	th_resp_free(r);
	r = put_status(agent_token, id, "", "{\"status\": \"ASLEEP\"}");
	TH_EXPECT_ERROR(r, 403, "Admins only"); /* role before anything else */
	th_resp_free(r);
	assert_int_equal(sql_int("SELECT count(*) FROM number_state s JOIN numbers n ON n.id = s.number_id"
	                         " WHERE n.phone_number = '09123000001'"),
	                 0);
}

static void test_reset_delete(void **state)
{
	struct th_resp *r;
	long long id;
	char path[96];

	(void)state;
	r = th_call(&api, "POST", "/api/numbers", admin_token,
	            "{\"phone_numbers\": [\"09124000001\", \"09124000002\"]}");
	th_resp_free(r);
	attempt(acme_id, "09124000001", "MISSED", agent_id, "now()");
	attempt(acme_id, "09124000002", "CONNECTED", 0, "now()");
	free(sql("INSERT INTO number_locks (number_id, batch_id, company_id, assigned_at)"
	         " SELECT id, 'b1', 0, now() FROM numbers WHERE phone_number = '09124000001'"));

	id = number_id("09124000001");
	/* NumberOut shows the lock */
	snprintf(path, sizeof(path), "/api/numbers/%lld", id);
	r = th_call(&api, "GET", path, admin_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "assigned_batch_id", "b1");
	assert_true(json_is_string(json_object_get(r->json, "assigned_at")));
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/numbers/%lld/reset", id);
	r = th_call(&api, "POST", path, admin_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_null(json_object_get(r->json, "status")));
	TH_EXPECT_INT(r->json, "total_attempts", 0);
	assert_true(json_is_null(json_object_get(r->json, "assigned_at")));
	assert_true(json_is_null(json_object_get(r->json, "assigned_batch_id")));
	th_resp_free(r);
	/* history stays */
	assert_int_equal(sql_int("SELECT count(*) FROM call_attempts WHERE phone_number = '09124000001'"), 1);

	/* a CONNECTED number: company admins may neither reset nor delete it */
	id = number_id("09124000002");
	snprintf(path, sizeof(path), "/api/numbers/%lld/reset", id);
	r = th_call(&api, "POST", path, admin_token, NULL);
	TH_EXPECT_ERROR(r, 400, "Status CONNECTED cannot be changed by non-superuser");
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/numbers/%lld", id);
	r = th_call(&api, "DELETE", path, admin_token, NULL);
	TH_EXPECT_ERROR(r, 400, "Status CONNECTED cannot be changed by non-superuser");
	th_resp_free(r);
	r = th_call(&api, "DELETE", path, globex_token, NULL); /* globex never called it: mutable for globex */
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "id", id);
	assert_true(json_is_true(json_object_get(r->json, "deleted")));
	th_resp_free(r);
	assert_int_equal(sql_int("SELECT count(*) FROM numbers WHERE phone_number = '09124000002'"), 0);
	{
		char q[128];

		snprintf(q, sizeof(q), "SELECT count(*) FROM number_state WHERE number_id = %lld", id);
		assert_int_equal(sql_int(q), 0); /* every company's state went with it */
		snprintf(q, sizeof(q), "SELECT count(*) FROM call_attempts WHERE number_id = %lld", id);
		assert_int_equal(sql_int(q), 1); /* the history stays (billing evidence) */
	}
	r = th_call(&api, "DELETE", path, admin_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Number not found");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/numbers/99999999/reset", admin_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Number not found");
	th_resp_free(r);
}

static struct th_resp *bulk(const char *token, const char *body)
{
	return th_call(&api, "POST", "/api/numbers/bulk", token, body);
}

static void expect_bulk(struct th_resp *r, long long updated, long long reset, long long deleted, long long skipped)
{
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "updated", updated);
	TH_EXPECT_INT(r->json, "reset", reset);
	TH_EXPECT_INT(r->json, "deleted", deleted);
	TH_EXPECT_INT(r->json, "skipped_immutable", skipped);
	th_resp_free(r);
}

static void test_bulk_rules(void **state)
{
	static const struct {
		const char *body;
		int status;
		const char *detail; /* substring */
	} bad[] = {
	    {"{\"action\": \"explode\", \"ids\": [1]}", 422, "action"},
	    {"{\"ids\": [1]}", 422, "action"},
	    {"{\"action\": \"delete\", \"ids\": [\"1\"]}", 422, "ids"},
	    {"{\"action\": \"delete\", \"ids\": 1}", 422, "ids"},
	    {"{\"action\": \"delete\", \"select_all\": \"yes\"}", 422, "select_all"},
	    {"{\"action\": \"update_status\", \"status\": \"NOPE\", \"ids\": [1]}", 422, "status"},
	    {"{\"action\": \"delete\", \"select_all\": true, \"filter_status\": \"NOPE\"}", 422, "filter_status"},
	    {"{\"action\": \"delete\", \"select_all\": true, \"sort_by\": \"phone\"}", 422, "sort_by"},
	    {"{\"action\": \"delete\"}", 400, "No numbers selected"},
	    {"{\"action\": \"delete\", \"ids\": [], \"company_name\": \"nope\"}", 400, "No numbers selected"},
	    {"{\"action\": \"delete\", \"ids\": [1], \"start_date\": \"2026-99-01\"}", 400, "Invalid date format"},
	    {"{\"action\": \"delete\", \"ids\": [1], \"company_name\": \"nope\"}", 404, "Company not found"},
	    {"{\"action\": \"delete\", \"ids\": [1], \"company_name\": \"globex\"}", 403, "Access denied"},
	};
	struct th_resp *r;
	char body[256];
	long long a, b;

	(void)state;
	long long before = sql_int("SELECT count(*) FROM numbers");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = bulk(admin_token, bad[i].body);
		TH_EXPECT_ERROR(r, bad[i].status, NULL);
		if (!strstr(th_json_str(r->json, "detail"), bad[i].detail))
			fail_msg("%s: detail %s lacks %s", bad[i].body, th_json_str(r->json, "detail"), bad[i].detail);
		th_resp_free(r);
	}
	assert_int_equal(sql_int("SELECT count(*) FROM numbers"), before);

	r = th_call(&api, "POST", "/api/numbers", admin_token,
	            "{\"phone_numbers\": [\"09125000001\", \"09125000002\", \"09125000003\", \"09125000004\"]}");
	th_resp_free(r);
	attempt(acme_id, "09125000003", "CONNECTED", 0, "now()");
	a = number_id("09125000001");
	b = number_id("09125000003");

	/* ids: the immutable one is skipped for a company admin and counted */
	snprintf(body, sizeof(body), "{\"action\": \"update_status\", \"status\": \"BUSY\", \"ids\": [%lld, %lld]}", a,
	         b);
	expect_bulk(bulk(admin_token, body), 1, 0, 0, 1);
	expect_list(admin_token, "search=0912500000&status=BUSY", "09125000001");
	/* select_all + filters + excluded_ids; ids ignored with select_all */
	snprintf(
	    body, sizeof(body),
	    "{\"action\": \"update_status\", \"status\": \"MISSED\", \"select_all\": true, \"search\": \"0912500000\","
	    " \"excluded_ids\": [%lld], \"ids\": [1]}",
	    a);
	expect_bulk(bulk(admin_token, body), 2, 0, 0, 1);
	expect_list(admin_token, "search=0912500000&status=MISSED", "09125000004,09125000002");
	/* the superuser is not guarded */
	snprintf(
	    body, sizeof(body),
	    "{\"action\": \"reset\", \"select_all\": true, \"search\": \"0912500000\", \"company_name\": \"acme\"}");
	expect_bulk(bulk(root_token, body), 0, 4, 0, 0);
	expect_list(admin_token, "search=0912500000&status=IN_QUEUE",
	            "09125000004,09125000003,09125000002,09125000001");
	/* reset needs a target company */
	r = bulk(root_token, "{\"action\": \"reset\", \"select_all\": true, \"search\": \"0912500000\"}");
	TH_EXPECT_ERROR(r, 400, NULL);
	th_resp_free(r);
	/* filter_status applies to the company */
	attempt(acme_id, "09125000002", "POWER_OFF", 0, "now()");
	expect_bulk(bulk(admin_token, "{\"action\": \"delete\", \"select_all\": true, \"search\": \"0912500000\","
	                              " \"filter_status\": \"POWER_OFF\"}"),
	            0, 0, 1, 0);
	expect_list(admin_token, "search=0912500000", "09125000004,09125000003,09125000001");
	/* zero matches */
	expect_bulk(bulk(admin_token, "{\"action\": \"delete\", \"ids\": [999999999]}"), 0, 0, 0, 0);
}

/* A select_all bulk over 100,000 numbers reports exact counts. */
static void test_bulk_100k(void **state)
{
	struct th_resp *r;

	(void)state;
	free(sql("INSERT INTO numbers (phone_number) SELECT '0936' || lpad(g::text, 7, '0')"
	         " FROM generate_series(0, 99999) g"));
	/* ten of them CONNECTED for acme: a company admin skips exactly those */
	free(sql("INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at)"
	         " SELECT (SELECT id FROM companies WHERE name = 'acme'), id, phone_number, 'CONNECTED', now()"
	         " FROM numbers WHERE phone_number LIKE '0936' || '%' ORDER BY numbers.id LIMIT 10"));
	assert_int_equal(total(admin_token, "search=0936"), 100000);
	/* over BULK_SYNC_LIMIT: each of these runs as a bulk job (dialer-bulk), answered inline */
	r = bulk(admin_token, "{\"action\": \"update_status\", \"status\": \"MISSED\", \"select_all\": true,"
	                      " \"search\": \"0936\", \"company_name\": \"acme\"}");
	expect_bulk(r, 99990, 0, 0, 10);
	assert_int_equal(total(admin_token, "search=0936&status=MISSED"), 99990);
	assert_int_equal(sql_int("SELECT count(*) FROM number_state s JOIN numbers n ON n.id = s.number_id"
	                         " WHERE n.phone_number LIKE '0936%' AND s.status = 'MISSED'"),
	                 99990);
	r = bulk(admin_token, "{\"action\": \"reset\", \"select_all\": true, \"search\": \"0936\","
	                      " \"excluded_ids\": [1, 2, 3]}");
	expect_bulk(r, 0, 99990, 0, 10);
	assert_int_equal(total(admin_token, "search=0936&status=IN_QUEUE"), 99990);
	r = bulk(root_token, "{\"action\": \"delete\", \"select_all\": true, \"search\": \"0936\"}");
	expect_bulk(r, 0, 0, 100000, 0);
	assert_int_equal(sql_int("SELECT count(*) FROM numbers WHERE phone_number LIKE '0936%'"), 0);
}

/* update_status without a status (COMPAT §6): 400 "Unsupported action" when the selection
 * matches a number, 200 with zeros when it matches none; with or without a target company;
 * nothing changes. */
static void test_bulk_unsupported(void **state)
{
	struct th_resp *r;
	char body[160];

	(void)state;
	r = th_call(&api, "POST", "/api/numbers", admin_token, "{\"phone_numbers\": [\"09126000001\"]}");
	th_resp_free(r);
	long long id = number_id("09126000001");
	snprintf(body, sizeof(body), "{\"action\": \"update_status\", \"ids\": [%lld]}", id);
	r = bulk(admin_token, body);
	TH_EXPECT_ERROR(r, 400, "Unsupported action");
	th_resp_free(r);
	r = bulk(root_token, body); /* a superuser with no target company: the same */
	TH_EXPECT_ERROR(r, 400, "Unsupported action");
	th_resp_free(r);
	expect_bulk(bulk(admin_token, "{\"action\": \"update_status\", \"ids\": [999999999]}"), 0, 0, 0, 0);
	expect_bulk(bulk(root_token, "{\"action\": \"update_status\", \"select_all\": true,"
	                             " \"search\": \"nobody\"}"),
	            0, 0, 0, 0);
	/* a selection with no bound value at all (no company, no ids, a search only agents could
	 * match): counted like any other */
	expect_bulk(bulk(root_token, "{\"action\": \"delete\", \"select_all\": true, \"search\": \"nobody\"}"), 0, 0, 0,
	            0);
	/* the selection's own errors still come first */
	r = bulk(admin_token, "{\"action\": \"update_status\"}");
	TH_EXPECT_ERROR(r, 400, "No numbers selected");
	th_resp_free(r);
	snprintf(body, sizeof(body), "{\"action\": \"update_status\", \"ids\": [%lld], \"company_name\": \"nope\"}",
	         id);
	r = bulk(admin_token, body);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	snprintf(body, sizeof(body), "SELECT count(*) FROM number_state WHERE number_id = %lld", id);
	assert_int_equal(sql_int(body), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_add),
	    cmocka_unit_test(test_list_shape),
	    cmocka_unit_test(test_list_filters),
	    cmocka_unit_test(test_list_bad_input),
	    cmocka_unit_test(test_agent_isolation),
	    cmocka_unit_test(test_attempts),
	    cmocka_unit_test(test_status),
	    cmocka_unit_test(test_reset_delete),
	    cmocka_unit_test(test_bulk_rules),
	    cmocka_unit_test(test_bulk_100k),
	    cmocka_unit_test(test_bulk_unsupported),
	};

	return cmocka_run_group_tests_name("numbers", tests, group_setup, group_teardown);
}
