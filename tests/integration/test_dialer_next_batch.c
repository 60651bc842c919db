/* GET /api/dialer/next-batch against the real dialer-api, PostgreSQL and Redis (COMPAT §2.10,
 * §3.3, §3.6; issue 5 item 1): the response's keys, the blocked shape and the persisted
 * auto-disable, the published state read from Redis (and ignored when stale), selection rules
 * (once per company, cooldown, ACTIVE only, locked numbers invisible to other companies), every
 * batch recorded (by the scheduler, from the stream the pop script appends to) with its locks
 * mirrored onto the numbers, and 16 concurrent dialers never sharing a number. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct th_api api;
static char *db_url;
static char *root_token;

static char *sql(const char *q)
{
	return th_sql_get(db_url, q, NULL);
}

static void expect_sql(const char *q, const char *expected)
{
	TH_EXPECT_SQL(db_url, expected, q, NULL);
}

/* The database's answer to q becomes expected within 10 s (the scheduler records batches and
 * mirrors their locks asynchronously, in well under a second). */
static void expect_sql_soon(const char *q, const char *expected)
{
	TH_WAIT_SQL(db_url, q, expected, 10000);
}

static void redis_cli(const char *a1, const char *a2, const char *a3)
{
	free(th_redis_cli(a1, a2, a3, NULL));
}

/* After the tests changed numbers behind the API's back: no hopper keeps candidates read before,
 * nor holds their numbers (a hold's score ends in .5; common/hopper.h). */
static void hoppers_drop(void)
{
	free(th_redis_cli("EVAL",
	                  "for _, k in ipairs(redis.call('KEYS', 'dialer:hopper:*')) do redis.call('DEL', k) end"
	                  " local z = redis.call('ZRANGE', 'dialer:locks', 0, -1, 'WITHSCORES')"
	                  " for i = 1, #z, 2 do if tonumber(z[i + 1]) % 1 ~= 0 then"
	                  "  redis.call('ZREM', 'dialer:locks', z[i]) end end"
	                  " redis.call('DEL', 'dialer:hoppers') return redis.call('INCR', 'dialer:hopper:epoch')",
	                  "0", NULL));
}

/* Every number locked in the database, as by a batch of another test: refills skip them. */
static void park_all(void)
{
	free(sql("INSERT INTO number_locks (number_id, batch_id, company_id, assigned_at)"
	         " SELECT id, 'parked', 0, now() - interval '1 second' FROM numbers"
	         " ON CONFLICT (number_id) DO UPDATE SET assigned_at = EXCLUDED.assigned_at"));
}

/* Every lock gone, in the database and in Redis, and the hoppers read afresh. */
static void unlock_all(void)
{
	free(sql("DELETE FROM number_locks"));
	redis_cli("DEL", "dialer:locks", "dialer:batches");
	hoppers_drop();
}

/* dialer-scheduler: records the batches next-batch hands out, mirrors their locks. */
static struct th_proc *sched_start(void)
{
	struct th_proc *p = th_dialer_start("dialer-scheduler", db_url, NULL, NULL);

	assert_non_null(p);
	return p;
}

static void put(const char *path, const char *body)
{
	th_call_expect(&api, "PUT", path, root_token, body, 200);
}

static int group_setup(void **state)
{
	(void)state;
	if (th_setup_api(&api, &db_url, &root_token, "MAX_BATCH_SIZE=200", NULL) < 0)
		return -1;
	/* both may dial all day, every day */
	th_create_company(&api, root_token, "acme", "acme", true);
	th_open_company(&api, root_token, "acme", 100000);
	th_create_company(&api, root_token, "globex", "globex", true);
	th_open_company(&api, root_token, "globex", 100000);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return th_teardown_api(&api, &db_url, &root_token);
}

static struct th_resp *next_batch(const char *query)
{
	char path[256];

	snprintf(path, sizeof(path), "/api/dialer/next-batch%s", query);
	return th_call(&api, "GET", path, TH_DIALER_TOKEN, NULL);
}

static void expect_keys(const json_t *j)
{
	static const char *const keys[] = {
	    "call_allowed",        "timezone",     "server_time",      "schedule_version", "reason",
	    "retry_after_seconds", "batch",        "active_scenarios", "outbound_lines",   "inbound_agents",
	    "outbound_agents",     "active_agents"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!json_object_get(j, keys[i]))
			fail_msg("next-batch lacks %s", keys[i]);
	assert_true(th_is_datetime(th_json_str(j, "server_time")));
	assert_non_null(strstr(th_json_str(j, "server_time"), "+03:30"));
	TH_EXPECT_STR(j, "timezone", "Asia/Tehran");
}

/* A new company: wallet 0 → insufficient_funds, persisted as the original does. */
static void test_blocked(void **state)
{
	struct th_resp *r =
	    th_call(&api, "POST", "/api/companies", root_token, "{\"name\": \"broke\", \"display_name\": \"Broke\"}");

	(void)state;
	th_resp_free(r);
	r = next_batch("?company=broke&size=10");
	TH_EXPECT_STATUS(r, 200);
	expect_keys(r->json);
	assert_true(json_is_false(json_object_get(r->json, "call_allowed")));
	TH_EXPECT_STR(r->json, "reason", "insufficient_funds");
	TH_EXPECT_INT(r->json, "retry_after_seconds", 300);
	TH_EXPECT_INT(r->json, "schedule_version", 2);
	assert_true(json_is_null(json_object_get(r->json, "batch")));
	assert_int_equal(json_array_size(json_object_get(r->json, "active_agents")), 0);
	th_resp_free(r);
	expect_sql("SELECT enabled || '/' || disabled_by_dialer || '/' || version FROM company_config"
	           " WHERE company_id = (SELECT id FROM companies WHERE name = 'broke')",
	           "false/true/2");
	/* the wallet refilled does not re-enable: disabled now */
	put("/api/broke/billing", "{\"wallet_balance\": 500}");
	r = next_batch("?company=broke");
	TH_EXPECT_STR(r->json, "reason", "disabled");
	th_resp_free(r);
	/* size and company errors */
	r = next_batch("?company=acme&size=0");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	r = next_batch("?company=acme&size=501");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	r = next_batch("?company=acme&size=ten");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	r = next_batch("?company=nope");
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/dialer/next-batch?company=acme", root_token, NULL);
	TH_EXPECT_ERROR(r, 401, "Invalid dialer token");
	th_resp_free(r);
}

static void test_batch(void **state)
{
	struct th_resp *r;
	json_t *b, *nums;
	struct th_proc *sched = sched_start();

	(void)state;
	free(sql(
	    "INSERT INTO numbers (phone_number) SELECT '0938' || lpad(g::text, 7, '0') FROM generate_series(1, 30) g"));
	free(sql("INSERT INTO scenarios (company_id, name, display_name) SELECT id, 'sales', 'Sales' FROM companies"
	         " WHERE name = 'acme'"));
	free(sql("INSERT INTO scenarios (company_id, name, display_name, is_active) SELECT id, 'old', 'Old', false"
	         " FROM companies WHERE name = 'acme'"));
	free(sql("INSERT INTO outbound_lines (company_id, phone_number, display_name) SELECT id, '0211', 'Line 1'"
	         " FROM companies WHERE name = 'acme'"));
	r = th_call(
	    &api, "POST", "/api/acme/admins", root_token,
	    "{\"username\": \"in1\", \"password\": \"secret-pass-1\", \"role\": \"AGENT\", \"agent_type\": \"INBOUND\","
	    " \"first_name\": \"Sara\", \"last_name\": \"Rad\"}");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/acme/admins", root_token,
	            "{\"username\": \"out1\", \"password\": \"secret-pass-1\", \"role\": \"AGENT\", \"agent_type\": "
	            "\"OUTBOUND\","
	            " \"phone_number\": \"09351112233\"}");
	th_resp_free(r);

	r = next_batch("?company=acme&size=10");
	TH_EXPECT_STATUS(r, 200);
	expect_keys(r->json);
	assert_true(json_is_true(json_object_get(r->json, "call_allowed")));
	assert_true(json_is_null(json_object_get(r->json, "reason")));
	assert_true(json_is_null(json_object_get(r->json, "retry_after_seconds")));
	b = json_object_get(r->json, "batch");
	assert_int_equal(strlen(th_json_str(b, "batch_id")), 32);
	TH_EXPECT_INT(b, "size_requested", 10);
	TH_EXPECT_INT(b, "size_returned", 10);
	nums = json_object_get(b, "numbers");
	assert_int_equal(json_array_size(nums), 10);
	TH_EXPECT_STR(json_array_get(nums, 0), "phone_number", "09380000001"); /* oldest first */
	assert_int_equal(json_array_size(json_object_get(r->json, "active_scenarios")), 1);
	TH_EXPECT_STR(json_array_get(json_object_get(r->json, "active_scenarios"), 0), "name", "sales");
	TH_EXPECT_STR(json_array_get(json_object_get(r->json, "outbound_lines"), 0), "display_name", "Line 1");
	assert_int_equal(json_array_size(json_object_get(r->json, "inbound_agents")), 1);
	TH_EXPECT_STR(json_array_get(json_object_get(r->json, "inbound_agents"), 0), "full_name", "Sara Rad");
	TH_EXPECT_STR(json_array_get(json_object_get(r->json, "outbound_agents"), 0), "full_name", "out1");
	TH_EXPECT_STR(json_array_get(json_object_get(r->json, "outbound_agents"), 0), "phone_number", "09351112233");
	assert_int_equal(json_array_size(json_object_get(r->json, "active_agents")), 2);
	expect_sql_soon("SELECT count(*) FROM number_locks", "10");
	{
		char q[480];

		snprintf(
		    q, sizeof(q),
		    "SELECT requested_size || '/' || returned_size || '/' || cardinality(number_ids) || '/' ||"
		    " (SELECT count(*) FROM number_locks l WHERE l.number_id = ANY (b.number_ids) AND l.batch_id = b.id"
		    "  AND l.company_id = b.company_id AND l.assigned_at = b.created_at)"
		    " FROM dialer_batches b WHERE id = '%s'",
		    th_json_str(b, "batch_id"));
		expect_sql_soon(q, "10/10/10/10");
	}
	th_resp_free(r);

	/* locked numbers are invisible to every company; sizes are capped at MAX_BATCH_SIZE (200) */
	r = next_batch("?company=globex&size=300");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(json_object_get(r->json, "batch"), "size_requested", 200);
	TH_EXPECT_INT(json_object_get(r->json, "batch"), "size_returned", 20);
	TH_EXPECT_STR(json_array_get(json_object_get(json_object_get(r->json, "batch"), "numbers"), 0), "phone_number",
	              "09380000011");
	th_resp_free(r);
	/* nothing left: an empty batch is still a batch, and recorded */
	r = next_batch("?company=acme&size=5");
	TH_EXPECT_INT(json_object_get(r->json, "batch"), "size_returned", 0);
	th_resp_free(r);
	expect_sql_soon("SELECT count(*) FROM dialer_batches WHERE returned_size = 0", "1");
	assert_int_equal(th_proc_stop(sched), 0);
}

/* Once per company until reset; the cooldown counts every company's calls; only ACTIVE numbers. */
static void test_selection_rules(void **state)
{
	struct th_resp *r;

	(void)state;
	unlock_all();
	free(sql("INSERT INTO numbers (phone_number) VALUES ('09390000001'), ('09390000002'), ('09390000003'),"
	         " ('09390000004')"));
	/* 01: acme called it 4 days ago (past the cooldown, but acme's state row stays);
	 * 02: globex called it yesterday (cooldown for everyone); 03: COMPLAINED; 04: fresh */
	free(sql("INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at)"
	         " SELECT (SELECT id FROM companies WHERE name = 'acme'), id, phone_number, 'MISSED', now() - interval "
	         "'4 days'"
	         " FROM numbers WHERE phone_number = '09390000001'"));
	free(sql("INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at)"
	         " SELECT (SELECT id FROM companies WHERE name = 'globex'), id, phone_number, 'MISSED', now() - "
	         "interval '1 day'"
	         " FROM numbers WHERE phone_number = '09390000002'"));
	free(sql("UPDATE numbers SET global_status = 'COMPLAINED' WHERE phone_number = '09390000003'"));
	r = next_batch("?company=acme&size=200&x=0939");
	TH_EXPECT_STATUS(r, 200);
	const char *dump = r->body;
	assert_null(strstr(dump, "09390000001"));
	assert_null(strstr(dump, "09390000002"));
	assert_null(strstr(dump, "09390000003"));
	assert_non_null(strstr(dump, "09390000004"));
	th_resp_free(r);
	/* globex may call 01 (acme's call was 4 days ago), not 02 (its own call) */
	unlock_all();
	r = next_batch("?company=globex&size=200");
	assert_non_null(strstr(r->body, "09390000001"));
	assert_null(strstr(r->body, "09390000002"));
	th_resp_free(r);
	/* a reset makes 01 dialable for acme again */
	unlock_all();
	free(
	    sql("DELETE FROM number_state WHERE number_id = (SELECT id FROM numbers WHERE phone_number = '09390000001')"
	        " AND company_id = (SELECT id FROM companies WHERE name = 'acme')"));
	r = next_batch("?company=acme&size=200");
	assert_non_null(strstr(r->body, "09390000001"));
	th_resp_free(r);
}

/* The scheduler's published state is used when fresh, ignored when stale or missing. */
static void test_published_state(void **state)
{
	struct th_resp *r;
	char key[64], val[256], cid_s[24];
	char *cid = sql("SELECT id FROM companies WHERE name = 'acme'");
	struct timespec ts;

	(void)state;
	snprintf(cid_s, sizeof(cid_s), "%s", cid);
	free(cid);
	snprintf(key, sizeof(key), "dialer:callstate:%s", cid_s);
	clock_gettime(CLOCK_REALTIME, &ts);
	long long now_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	snprintf(val, sizeof(val),
	         "{\"allowed\":false,\"reason\":\"holiday\",\"retry_after\":77,\"schedule_version\":41,"
	         "\"timezone\":\"Asia/Tehran\",\"computed_at\":%lld}",
	         now_ms);
	redis_cli("SET", key, val);
	r = next_batch("?company=acme");
	TH_EXPECT_STR(r->json, "reason", "holiday");
	TH_EXPECT_INT(r->json, "retry_after_seconds", 77);
	TH_EXPECT_INT(r->json, "schedule_version", 41);
	th_resp_free(r);
	/* stale: decided from the database (allowed) */
	snprintf(val, sizeof(val),
	         "{\"allowed\":false,\"reason\":\"holiday\",\"retry_after\":77,\"schedule_version\":41,"
	         "\"timezone\":\"Asia/Tehran\",\"computed_at\":%lld}",
	         now_ms - 10000);
	redis_cli("SET", key, val);
	r = next_batch("?company=acme");
	assert_true(json_is_true(json_object_get(r->json, "call_allowed")));
	th_resp_free(r);
	/* a schedule change deletes the published value */
	snprintf(val, sizeof(val),
	         "{\"allowed\":true,\"reason\":null,\"retry_after\":null,\"schedule_version\":41,"
	         "\"timezone\":\"Asia/Tehran\",\"computed_at\":%lld}",
	         now_ms);
	redis_cli("SET", key, val);
	put("/api/acme/schedule", "{\"enabled\": false}");
	r = next_batch("?company=acme");
	TH_EXPECT_STR(r->json, "reason", "disabled");
	th_resp_free(r);
	put("/api/acme/schedule", TH_ALL_DAY_SCHEDULE);
}

/* The original agents send no company: the default company answers. */
static void test_default_company(void **state)
{
	struct th_resp *r = next_batch("");

	(void)state;
	TH_EXPECT_STATUS(r, 200);
	expect_keys(r->json);
	TH_EXPECT_STR(r->json, "reason", "insufficient_funds"); /* the default company has no money */
	th_resp_free(r);
}

/* 16 concurrent dialers never get the same number. */
static void test_concurrent(void **state)
{
	enum { DIALERS = 16, ROUNDS = 8, SIZE = 50 };
	char path[512];
	pid_t pids[DIALERS];

	struct th_proc *sched = sched_start();

	(void)state;
	park_all(); /* the others */
	hoppers_drop();
	free(sql("INSERT INTO numbers (phone_number) SELECT '0934' || lpad(g::text, 7, '0')"
	         " FROM generate_series(1, 8000) g"));
	for (int d = 0; d < DIALERS; d++) {
		pids[d] = fork();
		assert_true(pids[d] >= 0);
		if (pids[d] == 0) {
			th_http_after_fork(); /* one connection per dialer, not the parent's shared by all */
			snprintf(path, sizeof(path), "%s/nb-%d.txt", th_tmp_dir(), d);
			FILE *f = fopen(path, "w");
			for (int i = 0; f && i < ROUNDS; i++) {
				struct th_resp *r =
				    next_batch(d % 2 ? "?company=acme&size=50" : "?company=globex&size=50");
				json_t *nums = json_object_get(json_object_get(r->json, "batch"), "numbers"), *n;
				size_t k;
				if (r->status != 200) {
					fprintf(stderr, "dialer %d round %d: %ld %s\n", d, i, r->status,
					        r->body ? r->body : "");
					_exit(2);
				}
				if (json_array_size(nums) == 0) { /* the pool holds enough: never empty */
					fprintf(stderr, "dialer %d round %d: an empty batch\n", d, i);
					_exit(4);
				}
				json_array_foreach(nums, k, n) fprintf(f, "%s\n", th_json_str(n, "phone_number"));
				th_resp_free(r);
			}
			_exit(f && fclose(f) == 0 ? 0 : 3);
		}
	}
	for (int d = 0; d < DIALERS; d++) {
		int st;
		assert_int_equal(waitpid(pids[d], &st, 0), pids[d]);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	/* every phone handed out, sorted: no repeats. A batch may be short but never empty: when a
	 * refill takes longer than the 300 ms a short batch waits (a cold start of 16 dialers under
	 * ASan), it goes out with what the hopper has (docs/architecture.md, "Refill"). */
	char(*all)[12] = calloc(DIALERS * ROUNDS * SIZE + 1, 12);
	size_t total = 0;
	for (int d = 0; d < DIALERS; d++) {
		char line[64];
		snprintf(path, sizeof(path), "%s/nb-%d.txt", th_tmp_dir(), d);
		FILE *f = fopen(path, "r");
		assert_non_null(f);
		while (fgets(line, sizeof(line), f) && total <= DIALERS * ROUNDS * SIZE) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(all[total++], 12, "%.11s", line);
		}
		fclose(f);
	}
	assert_true(total >= DIALERS * ROUNDS && total <= DIALERS * ROUNDS * SIZE);
	if (total < DIALERS * ROUNDS * SIZE)
		print_message("short batches: %zu of %d numbers handed out\n", total, DIALERS * ROUNDS * SIZE);
	qsort(all, total, 12, (int (*)(const void *, const void *))strcmp);
	for (size_t i = 1; i < total; i++)
		if (strcmp(all[i - 1], all[i]) == 0)
			fail_msg("%s was handed out twice", all[i]);
	free(all);
	/* every batch recorded with what it handed out, and its locks mirrored */
	char want[32];
	snprintf(want, sizeof(want), "%zu", total);
	expect_sql_soon("SELECT count(*) FROM numbers n JOIN number_locks l ON l.number_id = n.id"
	                " WHERE n.phone_number LIKE '0934%'",
	                want);
	snprintf(want, sizeof(want), "%d/%zu", DIALERS * ROUNDS, total);
	expect_sql_soon("SELECT count(*) || '/' || sum(returned_size) FROM dialer_batches WHERE requested_size = 50",
	                want);
	assert_int_equal(th_proc_stop(sched), 0);
}

/* A number the hopper holds as a candidate is not dispatched after an admin deleted it or set a
 * status on it (the change flushes the hoppers); the others still are, oldest first. */
static void test_admin_changes(void **state)
{
	struct th_resp *r;
	char path[96];
	char *del_id, *st_id;

	(void)state;
	unlock_all();
	park_all(); /* the others */
	free(sql("INSERT INTO numbers (phone_number) SELECT '0933' || lpad(g::text, 7, '0')"
	         " FROM generate_series(1, 6) g"));
	hoppers_drop();
	r = next_batch("?company=acme&size=1"); /* 01, and the rest wait in acme's hopper */
	TH_EXPECT_STR(json_array_get(json_object_get(json_object_get(r->json, "batch"), "numbers"), 0), "phone_number",
	              "09330000001");
	th_resp_free(r);
	del_id = sql("SELECT id FROM numbers WHERE phone_number = '09330000002'");
	st_id = sql("SELECT id FROM numbers WHERE phone_number = '09330000003'");
	snprintf(path, sizeof(path), "/api/numbers/%s", del_id);
	r = th_call(&api, "DELETE", path, root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/numbers/%s/status?company=globex", st_id);
	r = th_call(&api, "PUT", path, root_token, "{\"status\": \"COMPLAINED\"}");
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	r = next_batch("?company=acme&size=10");
	TH_EXPECT_INT(json_object_get(r->json, "batch"), "size_returned", 3);
	assert_null(strstr(r->body, "09330000002"));
	assert_null(strstr(r->body, "09330000003"));
	TH_EXPECT_STR(json_array_get(json_object_get(json_object_get(r->json, "batch"), "numbers"), 0), "phone_number",
	              "09330000004");
	th_resp_free(r);
	free(del_id);
	free(st_id);
}

/* The phone of a batch's i-th number ("" when it has fewer). */
static const char *batch_phone(const struct th_resp *r, size_t i)
{
	json_t *n = json_array_get(json_object_get(json_object_get(r->json, "batch"), "numbers"), i);
	return n ? th_json_str(n, "phone_number") : "";
}

/* Each company's hopper holds its own numbers, so that two companies drawing from one pool do not
 * race for the same ones: globex's batch is not taken from what acme's hopper holds. An admin change
 * gives the held numbers back (oldest first again); a result for a held number makes its hold a
 * grace, and the hopper's entry is not dispatched. */
static void test_holds(void **state)
{
	struct th_resp *r;
	char path[96], body[256];
	struct th_proc *results = th_dialer_start("dialer-results", db_url, "results", NULL);

	(void)state;
	assert_non_null(results);
	unlock_all();
	park_all(); /* the others */
	free(sql("INSERT INTO numbers (phone_number) SELECT '0932' || lpad(g::text, 7, '0')"
	         " FROM generate_series(1, 1000) g"));
	r = next_batch("?company=acme&size=10"); /* a refill reads at least 200: acme holds 11..200 */
	TH_EXPECT_INT(json_object_get(r->json, "batch"), "size_returned", 10);
	assert_string_equal(batch_phone(r, 0), "09320000001");
	th_resp_free(r);
	r = next_batch("?company=globex&size=10");
	TH_EXPECT_INT(json_object_get(r->json, "batch"), "size_returned", 10);
	for (size_t i = 0; i < 10; i++)
		if (strcmp(batch_phone(r, i), "09320000200") <= 0)
			fail_msg("globex got %s, which acme's hopper holds", batch_phone(r, i));
	th_resp_free(r);

	/* an admin change (a delete of an unrelated number) flushes the hoppers and their holds */
	char *id = sql("SELECT id FROM numbers WHERE phone_number = '09320001000'");
	snprintf(path, sizeof(path), "/api/numbers/%s", id);
	free(id);
	th_call_expect(&api, "DELETE", path, root_token, NULL, 200);
	r = next_batch("?company=globex&size=10");
	assert_string_equal(batch_phone(r, 0), "09320000011");
	th_resp_free(r);

	/* acme holds numbers past globex's; a result for the second of them (its number never handed
	 * out) turns the hold into a grace: acme's next batch skips it */
	r = next_batch("?company=acme&size=1");
	TH_EXPECT_INT(json_object_get(r->json, "batch"), "size_returned", 1);
	char first[16], second[16];
	snprintf(first, sizeof(first), "%s", batch_phone(r, 0));
	snprintf(second, sizeof(second), "0932%07ld", strtol(first + 4, NULL, 10) + 1);
	th_resp_free(r);
	snprintf(body, sizeof(body),
	         "{\"company\": \"acme\", \"phone_number\": \"%s\", \"status\": \"MISSED\","
	         " \"attempted_at\": \"2026-02-18T10:00:00Z\"}",
	         second);
	r = th_call(&api, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN, body);
	TH_EXPECT_STATUS(r, 202);
	th_resp_free(r);
	char q[160];
	snprintf(q, sizeof(q), "SELECT count(*) FROM call_attempts WHERE phone_number = '%s'", second);
	expect_sql_soon(q, "1");
	r = next_batch("?company=acme&size=1");
	TH_EXPECT_INT(json_object_get(r->json, "batch"), "size_returned", 1);
	if (!strcmp(batch_phone(r, 0), second))
		fail_msg("%s was handed out after its result", second);
	th_resp_free(r);
	assert_int_equal(th_proc_stop(results), 0);
}

/* The API's count of hopper refills (its /metrics, every loop thread). */
static long long refills(void)
{
	struct th_resp *r = th_call(&api, "GET", "/metrics", NULL, NULL);
	const char *line = r->body ? strstr(r->body, "\ndialer_hopper_refills_total{") : NULL;
	const char *v = line ? strstr(line, "} ") : NULL;
	assert_non_null(v);
	long long n = strtoll(v + 2, NULL, 10);
	th_resp_free(r);
	return n;
}

/* A pool larger than a refill's read whose every number is locked (handed out, its batch not yet
 * mirrored): refills walk it once round, find nothing, and the company rests; they do not read it
 * over and over. */
static void test_locked_pool(void **state)
{
	struct th_resp *r;

	(void)state;
	unlock_all();
	park_all(); /* the others */
	free(sql("INSERT INTO numbers (phone_number) SELECT '0930' || lpad(g::text, 7, '0')"
	         " FROM generate_series(1, 25000) g"));
	char *lo = sql("SELECT min(id) FROM numbers WHERE phone_number LIKE '0930%'");
	char *hi = sql("SELECT max(id) FROM numbers WHERE phone_number LIKE '0930%'");
	free(th_redis_cli("EVAL",
	                  "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do"
	                  " redis.call('ZADD', 'dialer:locks', 9999999999999, i) end",
	                  "0", lo, hi, NULL));
	free(lo);
	free(hi);
	r = next_batch("?company=acme&size=10");
	TH_EXPECT_INT(json_object_get(r->json, "batch"), "size_returned", 0);
	th_resp_free(r);
	long long before = refills();
	for (int i = 0; i < 5; i++) {
		r = next_batch("?company=acme&size=10");
		TH_EXPECT_INT(json_object_get(r->json, "batch"), "size_returned", 0);
		th_resp_free(r);
	}
	long long after = refills();
	print_message("refills of the locked pool during 5 batches: %lld\n", after - before);
	/* a round of 25,000 at up to 20,000 a read, then 1 s of rest, and so on: a handful a second */
	if (after - before > 30)
		fail_msg("%lld refills of a pool with nothing to hand out", after - before);
	unlock_all();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_blocked),         cmocka_unit_test(test_batch),
	    cmocka_unit_test(test_selection_rules), cmocka_unit_test(test_published_state),
	    cmocka_unit_test(test_default_company), cmocka_unit_test(test_concurrent),
	    cmocka_unit_test(test_admin_changes),   cmocka_unit_test(test_holds),
	    cmocka_unit_test(test_locked_pool),
	};

	return cmocka_run_group_tests_name("dialer_next_batch", tests, group_setup, group_teardown);
}
