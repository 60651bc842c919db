/* The results worker end to end (issue 5 items 3 and 6): reports go through the real dialer-api
 * into the results stream, the real dialer-results applies them (COMPAT §3.5, §3.6 charging):
 * status, attempts, lock, agent by id and by phone, user_message, global status, wallet and the
 * company disabled at zero, unknown numbers created, dead letters (and GET .../dead-letters),
 * redelivered entries applied once, a failing entry dead-lettered after MAX_DELIVERIES without
 * holding back its batch, malformed entries kept, Redis and PostgreSQL restarted while reports
 * flow, SIGKILL in the middle of 50,000 results, and two copies sharing the load — every result
 * applied exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"

#define BIG_RUN  50000 /* results in the SIGKILL run */
#define PAIR_RUN 20000 /* results in the two-copies run */

static struct th_api api;
static char *db_url;
static char *root_token;
static char *acme_admin_token;
static char *beta_admin_token;
static struct th_proc *worker;
static long long acme_id, beta_id;
static long long agent1, agent2, agent_off, admin1, beta_agent;

/* ---- helpers ---- */

/* First column of the first row of a printf-formatted query (caller frees; NULL for SQL NULL),
 * and the same as an integer that must not be NULL. */
#define q(...)  th_sqlf(db_url, __VA_ARGS__)
#define qi(...) th_sqlf_int(db_url, __VA_ARGS__)

/* "(integer) N" → N */
static long long redis_int(char *out)
{
	const char *p = strstr(out, "(integer) ");
	long long n = strtoll(p ? p + 10 : out, NULL, 10);

	free(out);
	return n;
}

static struct th_proc *worker_start(void)
{
	/* claims after 1 s and dead letters after 2 failed deliveries keep the test short */
	struct th_proc *p = th_dialer_start("dialer-results", db_url, "results", "LOG_LEVEL=info", "CLAIM_IDLE_MS=1000",
	                                    "MAX_DELIVERIES=2", "METRICS_PUSH_SECONDS=1", NULL);

	assert_non_null(p);
	return p;
}

/* Posts a report for company acme (body fields after "company"); expects 202 and returns the
 * stream id (caller frees). */
static char *report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *report(const char *fmt, ...)
{
	char body[2048], fields[1900];
	va_list ap;
	struct th_resp *r;
	char *id;

	va_start(ap, fmt);
	vsnprintf(fields, sizeof(fields), fmt, ap);
	va_end(ap);
	snprintf(body, sizeof(body), "{\"company\": \"acme\", %s}", fields);
	r = th_call(&api, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN, body);
	TH_EXPECT_STATUS(r, 202);
	id = strdup(th_json_str(r->json, "stream_id"));
	th_resp_free(r);
	return id;
}

/* Waits until the entry with this stream id is applied. */
static void wait_applied(const char *stream_id)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM call_attempts WHERE stream_id = '%s'", stream_id);
	TH_WAIT_SQL(db_url, sql, "1", 15000);
}

static long long create_user(const char *token, const char *company, const char *body)
{
	char path[128];
	struct th_resp *r;
	long long id = 0;

	snprintf(path, sizeof(path), "/api/%s/admins", company);
	r = th_call(&api, "POST", path, token, body);
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);
	return id;
}

/* An agent straight in SQL (agents never log in here, and bcrypt under ASan is slow). */
static long long sql_agent(long long company, const char *username, const char *phone, bool active)
{
	return qi("INSERT INTO users (username, hashed_password, role, company_id, phone_number, is_active)"
	          " VALUES ('%s', 'x', 'AGENT', %lld, %s%s%s, %s) RETURNING id",
	          username, company, phone ? "'" : "", phone ? phone : "NULL", phone ? "'" : "",
	          active ? "true" : "false");
}

static int group_setup(void **state)
{
	(void)state;
	if (th_setup_api(&api, &db_url, &root_token, NULL) < 0)
		return -1;
	acme_id = th_create_company(&api, root_token, "acme", "Acme", true);
	beta_id = th_create_company(&api, root_token, "beta", "Beta", true);
	admin1 = create_user(root_token, "acme",
	                     "{\"username\": \"acme-admin\", \"password\": \"adminpass1\", \"role\": \"ADMIN\","
	                     " \"phone_number\": \"09125550009\"}");
	create_user(root_token, "beta", "{\"username\": \"beta-admin\", \"password\": \"adminpass1\"}");
	acme_admin_token = th_login(&api, "acme-admin", "adminpass1");
	beta_admin_token = th_login(&api, "beta-admin", "adminpass1");
	if (!acme_admin_token || !beta_admin_token)
		return -1;
	agent1 = sql_agent(acme_id, "agent1", "09125550001", true);
	agent2 = sql_agent(acme_id, "agent2", "09125550002", true);
	agent_off = sql_agent(acme_id, "agent-off", "09125550003", false);
	beta_agent = sql_agent(beta_id, "beta-agent", "09125550004", true);
	/* wallet 400, 150 per billable call: two full charges, one partial (100), then disabled */
	th_call_expect(&api, "PUT", "/api/acme/billing", root_token,
	               "{\"wallet_balance\": 400, \"cost_per_connected\": 150}", 200);
	worker = worker_start();
	return 0;
}

static int group_teardown(void **state)
{
	int st, wst;

	(void)state;
	wst = th_proc_stop(worker); /* 0: SIGTERM drained and exited, and LeakSanitizer found nothing */
	free(acme_admin_token);
	free(beta_admin_token);
	st = th_teardown_api(&api, &db_url, &root_token);
	if (wst != 0)
		fprintf(stderr, "dialer-results exited with %d\n", wst);
	return st == 0 && wst == 0 ? 0 : -1;
}

/* A worker's pushed counter (metrics:proc:results:<pid>@<host>), 0 when not pushed yet. */
static long long worker_metric(struct th_proc *p, const char *name)
{
	char host[128], key[256];
	char *out;
	long long n;

	if (gethostname(host, sizeof(host)))
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	snprintf(key, sizeof(key), "metrics:proc:results:%d@%s", (int)th_proc_pid(p), host);
	out = th_redis_cli("HGET", key, name, NULL);
	n = strtoll(out[0] == '"' ? out + 1 : out, NULL, 10);
	free(out);
	return n;
}

static long long pending_count(void)
{
	return redis_int(th_redis_cli("XPENDING", "dialer:results", "results", NULL));
}

static const char *const statuses[] = {
    "IN_QUEUE", "MISSED",    "CONNECTED", "FAILED",  "NOT_INTERESTED", "HANGUP",     "DISCONNECTED",
    "BUSY",     "POWER_OFF", "BANNED",    "UNKNOWN", "INBOUND_CALL",   "COMPLAINED",
};

static bool billable(const char *s)
{
	return !strcmp(s, "CONNECTED") || !strcmp(s, "NOT_INTERESTED") || !strcmp(s, "HANGUP") ||
	       !strcmp(s, "UNKNOWN") || !strcmp(s, "DISCONNECTED") || !strcmp(s, "FAILED");
}

static void resp_arg(FILE *f, const char *s)
{
	fprintf(f, "$%zu\r\n%s\r\n", strlen(s), s);
}

/* Appends n results for acme, phones 09 + (first + i), to the stream with `redis-cli --pipe`
 * (as fast as Redis takes them). Returns how many are billable. */
static long long pipe_results(long long first, int n)
{
	char path[512], cmd[1200], cid[24], phone[16], now[24];
	long long bill = 0;
	struct timeval tv;
	FILE *f;

	snprintf(path, sizeof(path), "%s/results-%lld.resp", th_tmp_dir(), first);
	snprintf(cid, sizeof(cid), "%lld", acme_id);
	f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < n; i++) {
		const char *st = statuses[i % 13];
		gettimeofday(&tv, NULL);
		snprintf(phone, sizeof(phone), "09%09lld", first + i);
		snprintf(now, sizeof(now), "%lld", (long long)tv.tv_sec * 1000000 + tv.tv_usec);
		fprintf(f, "*23\r\n");
		resp_arg(f, "XADD");
		resp_arg(f, "dialer:results");
		resp_arg(f, "*");
		const char *kv[] = {"v",
		                    "1",
		                    "company_id",
		                    cid,
		                    "company",
		                    "acme",
		                    "phone",
		                    phone,
		                    "phone_raw",
		                    phone,
		                    "status",
		                    st,
		                    "attempted_at",
		                    "1771408800123456",
		                    "user_message",
		                    "load",
		                    "rid",
		                    "pipe",
		                    "accepted_at",
		                    now};
		for (size_t k = 0; k < sizeof(kv) / sizeof(kv[0]); k++)
			resp_arg(f, kv[k]);
		bill += billable(st);
	}
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "redis-cli -u '%s' --pipe < '%s' > /dev/null", th_env("REDIS_URL"), path);
	const char *argv[] = {"sh", "-c", cmd, NULL};
	assert_int_equal(th_run(argv, NULL, 60000, NULL), 0);
	unlink(path);
	return bill;
}

/* ---- tests ---- */

/* One number through several reports: state, attempts, lock, log, agents, message, global status,
 * wallet, ledger, and the company disabled at zero. */
static void test_applied(void **state)
{
	char *id, *v, *attempt;
	long long num;
	char want[256], key[64];

	(void)state;
	num = qi("WITH n AS (INSERT INTO numbers (phone_number) VALUES ('09121000001') RETURNING id),"
	         " l AS (INSERT INTO number_locks (number_id, batch_id, company_id, assigned_at)"
	         " SELECT id, 'batch-1', %lld, now() FROM n) SELECT id FROM n",
	         acme_id);

	/* by number_id (with the same phone), agent by id, a message */
	id = report("\"phone_number\": \"+98 912 100 0001\", \"number_id\": %lld, \"status\": \"CONNECTED\","
	            " \"attempted_at\": \"2026-02-18T10:00:00.123456+00:00\", \"agent_id\": %lld,"
	            " \"user_message\": \"salam\", \"reason\": \"answered\", \"batch_id\": \"batch-1\","
	            " \"scenario_id\": null, \"call_allowed\": null",
	            num, agent1);
	wait_applied(id);
	v = q("SELECT status || '/' || total_attempts || '/' || assigned_agent_id || '/' || last_user_message"
	      " FROM number_state WHERE company_id = %lld AND number_id = %lld",
	      acme_id, num);
	snprintf(want, sizeof(want), "CONNECTED/1/%lld/salam", agent1);
	assert_string_equal(v, want);
	free(v);
	v = q("SELECT number_id || '/' || status || '/' || agent_id || '/' || user_message || '/' || reason || '/'"
	      " || batch_id || '/' || api_ts(attempted_at) FROM call_attempts WHERE stream_id = '%s'",
	      id);
	snprintf(want, sizeof(want), "%lld/CONNECTED/%lld/salam/answered/batch-1/2026-02-18T10:00:00.123456Z", num,
	         agent1);
	assert_string_equal(v, want);
	free(v);
	/* the lock is cleared, the call recorded on the number */
	v = q("SELECT (NOT EXISTS (SELECT 1 FROM number_locks WHERE number_id = n.id)) || '/'"
	      " || global_status || '/' || api_ts(last_called_at) || '/' || last_called_company_id"
	      " FROM numbers n WHERE id = %lld",
	      num);
	snprintf(want, sizeof(want), "true/ACTIVE/2026-02-18T10:00:00.123456Z/%lld", acme_id);
	assert_string_equal(v, want);
	free(v);
	/* charged 150 of 400, with a ledger row naming the attempt */
	v = q("SELECT wallet_balance || '/' || enabled || '/' || version FROM company_config WHERE company_id = %lld",
	      acme_id);
	assert_string_equal(v, "250/true/2");
	free(v);
	attempt = q("SELECT id FROM call_attempts WHERE stream_id = '%s'", id);
	v = q("SELECT amount || '/' || balance_after || '/' || cost_per_connected || '/' || attempt_id"
	      " FROM wallet_ledger WHERE company_id = %lld AND kind = 'charge' ORDER BY id DESC LIMIT 1",
	      acme_id);
	snprintf(want, sizeof(want), "-150/250/150/%s", attempt);
	assert_string_equal(v, want);
	free(v);
	free(attempt);
	free(id);

	/* POWER_OFF by phone alone, agent by phone (any accepted form): global POWER_OFF, not billable */
	id = report("\"phone_number\": \"0912-100-0001\", \"status\": \"POWER_OFF\","
	            " \"attempted_at\": \"2026-02-18T13:35:00+03:30\", \"agent_phone\": \"+98 912 555 0002\"");
	wait_applied(id);
	v = q("SELECT n.global_status || '/' || s.status || '/' || s.total_attempts || '/' || s.assigned_agent_id"
	      " FROM numbers n JOIN number_state s ON s.number_id = n.id AND s.company_id = %lld WHERE n.id = %lld",
	      acme_id, num);
	snprintf(want, sizeof(want), "POWER_OFF/POWER_OFF/2/%lld", agent2);
	assert_string_equal(v, want);
	free(v);
	assert_int_equal(qi("SELECT wallet_balance FROM company_config WHERE company_id = %lld", acme_id), 250);
	free(id);

	/* COMPLAINED, with another company's agent id: ignored */
	id = report("\"phone_number\": \"09121000001\", \"status\": \"COMPLAINED\","
	            " \"attempted_at\": \"2026-02-18T10:10:00Z\", \"agent_id\": %lld, \"user_message\": \"stop\"",
	            beta_agent);
	wait_applied(id);
	v = q("SELECT n.global_status || '/' || s.status || '/' || COALESCE(s.assigned_agent_id::text, '-') || '/'"
	      " || s.last_user_message FROM numbers n JOIN number_state s ON s.number_id = n.id"
	      " AND s.company_id = %lld WHERE n.id = %lld",
	      acme_id, num);
	assert_string_equal(v, "COMPLAINED/COMPLAINED/-/stop");
	free(v);
	free(id);

	/* any other status clears the flag (COMPAT §3.4); an admin's id names no agent */
	id = report(
	    "\"phone_number\": \"09121000001\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T10:15:00Z\","
	    " \"agent_id\": %lld",
	    admin1);
	wait_applied(id);
	v = q("SELECT n.global_status || '/' || s.status || '/' || s.total_attempts || '/'"
	      " || COALESCE(s.assigned_agent_id::text, '-') FROM numbers n JOIN number_state s"
	      " ON s.number_id = n.id AND s.company_id = %lld WHERE n.id = %lld",
	      acme_id, num);
	assert_string_equal(v, "ACTIVE/MISSED/4/-");
	free(v);
	free(id);

	/* 250 → 100 → 0 (a partial charge of 100, then disabled), then at 0: disabled again, no charge */
	snprintf(key, sizeof(key), "dialer:callstate:%lld", acme_id);
	free(th_redis_cli("SET", key, "{\"stale\": true}", NULL));
	free(report(
	    "\"phone_number\": \"09121000001\", \"status\": \"HANGUP\", \"attempted_at\": \"2026-02-18T10:20:00Z\""));
	free(report("\"phone_number\": \"09121000001\", \"status\": \"CONNECTED\", \"attempted_at\": "
	            "\"2026-02-18T10:25:00Z\""));
	id = report(
	    "\"phone_number\": \"09121000001\", \"status\": \"UNKNOWN\", \"attempted_at\": \"2026-02-18T10:30:00Z\"");
	wait_applied(id);
	free(id);
	v = q("SELECT wallet_balance || '/' || enabled || '/' || disabled_by_dialer || '/' || version"
	      " FROM company_config WHERE company_id = %lld",
	      acme_id);
	assert_string_equal(v, "0/false/true/4");
	free(v);
	v = q("SELECT string_agg(amount || ':' || balance_after, ',' ORDER BY id) FROM wallet_ledger"
	      " WHERE company_id = %lld AND kind = 'charge'",
	      acme_id);
	assert_string_equal(v, "-150:250,-150:100,-100:0");
	free(v);
	assert_int_equal(redis_int(th_redis_cli("EXISTS", key, NULL)), 0); /* the dialer path decides afresh */
	struct th_resp *r = th_call(&api, "GET", "/api/acme/schedule/status", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_false(json_object_get(r->json, "call_allowed")));
	TH_EXPECT_STR(r->json, "reason", "insufficient_funds");
	th_resp_free(r);
}

/* An unknown phone is created (ACTIVE), as the original does for inbound calls. */
static void test_autocreate(void **state)
{
	char *id, *v;

	(void)state;
	assert_int_equal(qi("SELECT count(*) FROM numbers WHERE phone_number = '09121000099'"), 0);
	id = report("\"phone_number\": \"۰۹۱۲۱۰۰۰۰۹۹\", \"status\": \"INBOUND_CALL\", \"attempted_at\": "
	            "\"2026-02-18T11:00:00Z\"");
	wait_applied(id);
	v = q("SELECT n.global_status || '/' || s.status || '/' || s.total_attempts FROM numbers n"
	      " JOIN number_state s ON s.number_id = n.id WHERE n.phone_number = '09121000099'");
	assert_string_equal(v, "ACTIVE/INBOUND_CALL/1");
	free(v);
	free(id);
}

/* What cannot apply goes to dead_letters, the rest of its batch applies; admins read them. */
static void test_dead_letters(void **state)
{
	char *good1, *good2, *inactive, *missing, *scen, *v;
	struct th_resp *r;
	json_t *items, *it;
	char want[64];

	(void)state;
	/* stopped, so that the five land in one batch */
	assert_int_equal(th_proc_stop(worker), 0);
	good1 = report(
	    "\"phone_number\": \"09121000101\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T11:00:00Z\"");
	inactive = report("\"phone_number\": \"09121000102\", \"status\": \"MISSED\", \"attempted_at\": "
	                  "\"2026-02-18T11:00:00Z\", \"agent_id\": %lld",
	                  agent_off);
	missing = report("\"phone_number\": \"\", \"number_id\": 999999999, \"status\": \"BUSY\","
	                 " \"attempted_at\": \"2026-02-18T11:00:00Z\"");
	scen = report(
	    "\"phone_number\": \"09121000103\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T11:00:00Z\","
	    " \"scenario_id\": 424242, \"outbound_line_id\": 434343");
	good2 = report(
	    "\"phone_number\": \"09121000104\", \"status\": \"BUSY\", \"attempted_at\": \"2026-02-18T11:00:00Z\"");
	worker = worker_start();
	wait_applied(good2);
	wait_applied(good1);
	wait_applied(scen);
	/* unknown scenario and line ids are stored as NULL: the call still happened */
	assert_int_equal(qi("SELECT count(*) FROM call_attempts WHERE stream_id = '%s' AND scenario_id IS NULL"
	                    " AND outbound_line_id IS NULL",
	                    scen),
	                 1);
	v = q("SELECT string_agg(stream_id || '=' || reason || '/' || deliveries, ',' ORDER BY id) FROM dead_letters");
	char *expect = NULL;
	assert_true(asprintf(&expect, "%s=Agent is inactive/1,%s=Number not found/1", inactive, missing) > 0);
	assert_string_equal(v, expect);
	free(expect);
	free(v);
	assert_int_equal(qi("SELECT count(*) FROM call_attempts WHERE stream_id IN ('%s', '%s')", inactive, missing),
	                 0);
	/* as in the original, the number auto-created before the agent check stays */
	assert_int_equal(qi("SELECT count(*) FROM numbers WHERE phone_number = '09121000102'"), 1);

	/* the API: newest first, paged, for the company's admins and superusers only */
	r = th_call(&api, "GET", "/api/acme/dead-letters", acme_admin_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 2);
	items = json_object_get(r->json, "items");
	assert_int_equal(json_array_size(items), 2);
	it = json_array_get(items, 0);
	TH_EXPECT_STR(it, "stream_id", missing);
	TH_EXPECT_STR(it, "reason", "Number not found");
	TH_EXPECT_INT(it, "deliveries", 1);
	TH_EXPECT_INT(it, "company_id", acme_id);
	assert_true(th_is_datetime(th_json_str(it, "created_at")));
	TH_EXPECT_STR(json_object_get(it, "entry"), "number_id", "999999999");
	TH_EXPECT_STR(json_object_get(it, "entry"), "status", "BUSY");
	it = json_array_get(items, 1);
	TH_EXPECT_STR(it, "reason", "Agent is inactive");
	snprintf(want, sizeof(want), "%lld", agent_off);
	TH_EXPECT_STR(json_object_get(it, "entry"), "agent_id", want);
	TH_EXPECT_STR(json_object_get(it, "entry"), "phone", "09121000102");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/dead-letters/?skip=1&limit=1", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 2);
	TH_EXPECT_INT(r->json, "skip", 1);
	TH_EXPECT_INT(r->json, "limit", 1);
	assert_int_equal(json_array_size(json_object_get(r->json, "items")), 1);
	TH_EXPECT_STR(json_array_get(json_object_get(r->json, "items"), 0), "stream_id", inactive);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/dead-letters?limit=0", root_token, NULL);
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/dead-letters?limit=1001", root_token, NULL);
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/dead-letters", beta_admin_token, NULL);
	TH_EXPECT_ERROR(r, 403, NULL);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/dead-letters", NULL, NULL);
	TH_EXPECT_ERROR(r, 401, NULL);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/beta/dead-letters", beta_admin_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 0);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/nope/dead-letters", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	free(good1);
	free(good2);
	free(inactive);
	free(missing);
	free(scen);
}

/* An applied entry delivered again (put back in the group's pending list, as when a worker dies
 * between COMMIT and XACK) is recognised by its stream id: acknowledged, not applied again. */
static void test_redelivery(void **state)
{
	char *id;
	long long attempts, dups;

	(void)state;
	id = report(
	    "\"phone_number\": \"09121000201\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T12:00:00Z\"");
	wait_applied(id);
	attempts = qi("SELECT count(*) FROM call_attempts");
	dups = worker_metric(worker, "results_duplicates");
	free(th_redis_cli("XCLAIM", "dialer:results", "results", "ghost", "0", id, "FORCE", NULL));
	assert_int_equal(pending_count(), 1);
	long long deadline = th_now_ms() + 15000;
	while (pending_count() > 0 && th_now_ms() < deadline)
		th_sleep_ms(100);
	assert_int_equal(pending_count(), 0);
	assert_int_equal(qi("SELECT count(*) FROM call_attempts"), attempts);
	assert_int_equal(qi("SELECT total_attempts FROM number_state WHERE number_id = (SELECT id FROM numbers"
	                    " WHERE phone_number = '09121000201')"),
	                 1);
	deadline = th_now_ms() + 5000;
	while (worker_metric(worker, "results_duplicates") <= dups && th_now_ms() < deadline)
		th_sleep_ms(100);
	assert_true(worker_metric(worker, "results_duplicates") > dups);
	free(id);
}

/* An entry that failed MAX_DELIVERIES (2) times is not dead-lettered for its count alone: its next
 * delivery is tried once more, and when it applies (here: the trigger that refused it is gone) it
 * is applied, not dead. (A stalled copy still applying it would make that try wait for its insert
 * and skip it: an entry is never both applied and dead.) */
static void test_last_chance(void **state)
{
	char *flaky;

	(void)state;
	free(q("CREATE FUNCTION test_flaky() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
	       " IF EXISTS (SELECT 1 FROM new_rows WHERE user_message = 'flaky') THEN RAISE EXCEPTION 'flaky'; END IF;"
	       " RETURN NULL; END $$"));
	free(q("CREATE TRIGGER test_flaky AFTER INSERT ON call_attempts REFERENCING NEW TABLE AS new_rows"
	       " FOR EACH STATEMENT EXECUTE FUNCTION test_flaky()"));
	long long failed = worker_metric(worker, "results_failed");
	flaky = report(
	    "\"phone_number\": \"09121000311\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T12:00:00Z\","
	    " \"user_message\": \"flaky\"");
	long long deadline = th_now_ms() + 20000;
	while (worker_metric(worker, "results_failed") < failed + 2 && th_now_ms() < deadline)
		th_sleep_ms(50);
	assert_int_equal(worker_metric(worker, "results_failed"), failed + 2);
	free(q("DROP TRIGGER test_flaky ON call_attempts"));
	free(q("DROP FUNCTION test_flaky()"));
	wait_applied(flaky);
	assert_int_equal(qi("SELECT count(*) FROM dead_letters WHERE stream_id = '%s'", flaky), 0);
	assert_int_equal(worker_metric(worker, "results_failed"), failed + 2);
	free(flaky);
}

/* An entry whose application fails (here: a test trigger refuses it) does not hold back the rest
 * of its batch; after MAX_DELIVERIES (2 here) failed deliveries it becomes a dead letter. */
static void test_max_deliveries(void **state)
{
	char *a, *boom, *c, *v;

	(void)state;
	free(q("CREATE FUNCTION test_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
	       " IF EXISTS (SELECT 1 FROM new_rows WHERE user_message = 'boom') THEN RAISE EXCEPTION 'boom'; END IF;"
	       " RETURN NULL; END $$"));
	free(q("CREATE TRIGGER test_boom AFTER INSERT ON call_attempts REFERENCING NEW TABLE AS new_rows"
	       " FOR EACH STATEMENT EXECUTE FUNCTION test_boom()"));
	assert_int_equal(th_proc_stop(worker), 0);
	a = report(
	    "\"phone_number\": \"09121000301\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T12:00:00Z\"");
	boom = report(
	    "\"phone_number\": \"09121000302\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T12:00:00Z\","
	    " \"user_message\": \"boom\"");
	c = report(
	    "\"phone_number\": \"09121000303\", \"status\": \"MISSED\", \"attempted_at\": \"2026-02-18T12:00:00Z\"");
	worker = worker_start();
	wait_applied(a);
	wait_applied(c);
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT reason || '/' || deliveries FROM dead_letters WHERE stream_id = '%s'", boom);
	/* two failed deliveries, then a third (the last chance) that failed too */
	TH_WAIT_SQL(db_url, sql, "failed to apply in 3 deliveries/3", 20000);
	assert_int_equal(qi("SELECT count(*) FROM call_attempts WHERE stream_id = '%s'", boom), 0);
	v = q("SELECT entry->>'user_message' FROM dead_letters WHERE stream_id = '%s'", boom);
	assert_string_equal(v, "boom");
	free(v);
	free(q("DROP TRIGGER test_boom ON call_attempts"));
	free(q("DROP FUNCTION test_boom()"));
	long long deadline = th_now_ms() + 5000;
	while (pending_count() > 0 && th_now_ms() < deadline)
		th_sleep_ms(100);
	assert_int_equal(pending_count(), 0);
	free(a);
	free(boom);
	free(c);
}

/* XADD through redis-cli; the new entry's id (caller frees). args end with NULL. */
static char *xadd(const char *a1, ...)
{
	const char *argv[32] = {"redis-cli", "-u", th_env("REDIS_URL"), "--raw", "XADD", "dialer:results", "*"};
	size_t n = 7;
	const char *a;
	va_list ap;
	char *out = NULL;

	argv[n++] = a1;
	va_start(ap, a1);
	while ((a = va_arg(ap, const char *)) != NULL && n < 31)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(th_run(argv, NULL, 20000, &out), 0);
	out[strcspn(out, "\r\n")] = '\0';
	return out;
}

/* Entries not written by a compatible API (added straight to the stream) are kept with what is
 * wrong, never applied, never dropped. */
static void test_malformed(void **state)
{
	char cid[24], sql[256], want[96], *bad_status, *bad_version;

	(void)state;
	snprintf(cid, sizeof(cid), "%lld", acme_id);
	bad_status = xadd("v", "1", "company_id", cid, "phone", "09121000401", "status", "ANSWERED", "attempted_at",
	                  "1771408800000000", NULL);
	bad_version = xadd("v", "2", "company_id", cid, "phone", "09121000402", "status", "MISSED", "attempted_at",
	                   "1771408800000000", NULL);
	snprintf(sql, sizeof(sql), "SELECT reason FROM dead_letters WHERE stream_id = '%s'", bad_status);
	TH_WAIT_SQL(db_url, sql, "malformed entry: bad status", 15000);
	snprintf(sql, sizeof(sql),
	         "SELECT reason || '/' || (entry->>'phone') || '/' || company_id FROM dead_letters"
	         " WHERE stream_id = '%s'",
	         bad_version);
	snprintf(want, sizeof(want), "malformed entry: unsupported version/09121000402/%lld", acme_id);
	TH_WAIT_SQL(db_url, sql, want, 15000);
	assert_int_equal(qi("SELECT count(*) FROM numbers WHERE phone_number IN ('09121000401', '09121000402')"), 0);
	free(bad_status);
	free(bad_version);
}

/* Runs scripts/<script> with args (ending with NULL); fails the test unless it exits 0. */
static void run_script(const char *script, ...)
{
	char path[512];
	const char *argv[8];
	size_t n = 0;
	const char *a;
	va_list ap;

	snprintf(path, sizeof(path), "%s/scripts/%s", th_env("DIALER_ROOT"), script);
	argv[n++] = path;
	va_start(ap, script);
	while ((a = va_arg(ap, const char *)) != NULL && n < 7)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(th_run(argv, NULL, 60000, NULL), 0);
}

/* Redis, then PostgreSQL, restarted while reports flow: every report that got a 202 is applied,
 * once (the worker reconnects with backoff and re-reads what it had read but not acknowledged). */
static void test_restarts(void **state)
{
	const long long first = 500000000;
	const int total = 900;
	long long accepted = 0, retried = 0;
	char want[32], sql[256];

	(void)state;
	for (int i = 0; i < total; i++) {
		char body[256];
		if (i == total / 3) {
			run_script("redis.sh", "stop", th_env("TEST_REDIS_DIR"), NULL);
			run_script("redis.sh", "start", th_env("TEST_REDIS_DIR"), th_env("TEST_REDIS_PORT"), NULL);
		}
		if (i == 2 * total / 3) {
			run_script("pg.sh", "stop", th_env("TEST_PG_DIR"), NULL);
			run_script("pg.sh", "start", th_env("TEST_PG_DIR"), th_env("TEST_PG_PORT"), NULL);
		}
		snprintf(body, sizeof(body),
		         "{\"company\": \"acme\", \"phone_number\": \"09%lld\", \"status\": \"MISSED\","
		         " \"attempted_at\": \"2026-02-18T12:00:00Z\"}",
		         first + i);
		/* as a dialer does: a 503 is retried (the API reconnects with backoff) */
		long long deadline = th_now_ms() + 20000;
		for (;;) {
			struct th_resp *r = th_call(&api, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN, body);
			long st = r->status;
			if (st != 202 && st != 503)
				fail_msg("report answered %ld: %s", st, r->body);
			th_resp_free(r);
			if (st == 202) {
				accepted++;
				break;
			}
			retried++;
			if (th_now_ms() > deadline)
				break;
			th_sleep_ms(100);
		}
	}
	print_message("%lld of %d reports accepted across the restarts (%lld retries after a 503)\n", accepted, total,
	              retried);
	assert_int_equal(accepted, total);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM call_attempts WHERE phone_number BETWEEN '09%lld' AND '09%lld'", first,
	         first + total - 1);
	snprintf(want, sizeof(want), "%lld", accepted);
	TH_WAIT_SQL(db_url, sql, want, 60000);
	assert_int_equal(qi("SELECT count(*) FROM number_state s JOIN numbers n ON n.id = s.number_id"
	                    " WHERE n.phone_number BETWEEN '09%lld' AND '09%lld' AND s.total_attempts = 1",
	                    first, first + total - 1),
	                 accepted);
	long long deadline = th_now_ms() + 10000;
	while (pending_count() > 0 && th_now_ms() < deadline)
		th_sleep_ms(100);
	assert_int_equal(pending_count(), 0);
}

/* 50,000 results (1,000 through the API, the rest straight into the stream); the worker is
 * SIGKILLed in the middle and restarted: every one is applied, charged and counted exactly once. */
static void test_sigkill(void **state)
{
	const long long first = 300000000;
	const int via_api = 1000, via_pipe = BIG_RUN - via_api;
	long long base, base_ledger, bill = 0, at_kill, accepted = 0;
	char sql[512];

	(void)state;
	free(q("INSERT INTO numbers (phone_number) SELECT '09' || g FROM generate_series(%lld, %lld) g", first,
	       first + BIG_RUN - 1));
	free(q("UPDATE company_config SET wallet_balance = 1000000000, enabled = true, disabled_by_dialer = false"
	       " WHERE company_id = %lld",
	       acme_id));
	base = qi("SELECT count(*) FROM call_attempts");
	base_ledger = qi("SELECT count(*) FROM wallet_ledger WHERE kind = 'charge'");
	for (int i = 0; i < via_api; i++) {
		const char *st = statuses[i % 13];
		char body[300];
		snprintf(body, sizeof(body),
		         "{\"company\": \"acme\", \"phone_number\": \"09%lld\", \"status\": \"%s\","
		         " \"attempted_at\": \"2026-02-18T12:00:00Z\"}",
		         first + i, st);
		struct th_resp *r = th_call(&api, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN, body);
		if (r->status == 202) {
			accepted++;
			bill += billable(st);
		}
		th_resp_free(r);
	}
	assert_int_equal(accepted, via_api);
	bill += pipe_results(first + via_api, via_pipe);

	/* kill it mid-run: some batches committed, one perhaps between COMMIT and XACK */
	long long deadline = th_now_ms() + 60000;
	while ((at_kill = qi("SELECT count(*) FROM call_attempts")) < base + 8000 && th_now_ms() < deadline)
		th_sleep_ms(20);
	assert_int_equal(kill(th_proc_pid(worker), SIGKILL), 0);
	assert_int_equal(th_proc_stop(worker), 128 + SIGKILL);
	at_kill = qi("SELECT count(*) FROM call_attempts");
	print_message("killed with %lld of %d applied\n", at_kill - base, BIG_RUN);
	assert_true(at_kill < base + BIG_RUN);

	worker = worker_start(); /* a new consumer: claims what the dead one left pending */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM call_attempts");
	char want[32];
	snprintf(want, sizeof(want), "%lld", base + BIG_RUN);
	TH_WAIT_SQL(db_url, sql, want, 90000);
	deadline = th_now_ms() + 10000;
	while (pending_count() > 0 && th_now_ms() < deadline)
		th_sleep_ms(100);
	assert_int_equal(pending_count(), 0);
	/* once each: one attempt per number, one charge per billable result, the balance to match */
	assert_int_equal(qi("SELECT count(*) FROM number_state s JOIN numbers n ON n.id = s.number_id"
	                    " WHERE n.phone_number BETWEEN '09%lld' AND '09%lld' AND s.total_attempts = 1",
	                    first, first + BIG_RUN - 1),
	                 BIG_RUN);
	assert_int_equal(qi("SELECT count(*) FROM wallet_ledger WHERE kind = 'charge'") - base_ledger, bill);
	assert_int_equal(qi("SELECT wallet_balance FROM company_config WHERE company_id = %lld", acme_id),
	                 1000000000LL - 150 * bill);
	assert_int_equal(qi("SELECT count(*) FROM dead_letters"), 5);
}

/* A second copy shares the load: both apply some, together all, each once. Two fresh copies, so
 * that each one's pushed counter is its share. */
static void test_two_workers(void **state)
{
	const long long first = 400000000;
	struct th_proc *second;
	long long base, d1 = 0, d2 = 0;
	char want[32];

	(void)state;
	free(q("INSERT INTO numbers (phone_number) SELECT '09' || g FROM generate_series(%lld, %lld) g", first,
	       first + PAIR_RUN - 1));
	assert_int_equal(th_proc_stop(worker), 0);
	worker = worker_start();
	second = worker_start();
	th_sleep_ms(300);
	base = qi("SELECT count(*) FROM call_attempts");
	pipe_results(first, PAIR_RUN);
	snprintf(want, sizeof(want), "%lld", base + PAIR_RUN);
	TH_WAIT_SQL(db_url, "SELECT count(*) FROM call_attempts", want, 60000);
	long long deadline = th_now_ms() + 5000;
	while (th_now_ms() < deadline) { /* counters are pushed every second */
		d1 = worker_metric(worker, "results_applied");
		d2 = worker_metric(second, "results_applied");
		if (d1 + d2 == PAIR_RUN)
			break;
		th_sleep_ms(200);
	}
	print_message("first copy applied %lld, second %lld\n", d1, d2);
	assert_int_equal(th_proc_stop(second), 0);
	assert_int_equal(d1 + d2, PAIR_RUN);
	assert_true(d1 > 0);
	assert_true(d2 > 0);
	assert_int_equal(qi("SELECT sum(s.total_attempts) FROM number_state s JOIN numbers n ON n.id = s.number_id"
	                    " WHERE n.phone_number BETWEEN '09%lld' AND '09%lld'",
	                    first, first + PAIR_RUN - 1),
	                 PAIR_RUN);
}

/* The group deleted under the worker (an operator, or Redis lost its data): it is created again
 * and what is reported next is applied. */
static void test_group_lost(void **state)
{
	char *id;

	(void)state;
	free(th_redis_cli("XGROUP", "DESTROY", "dialer:results", "results", NULL));
	id = report("\"phone_number\": \"09121000076\", \"status\": \"MISSED\", \"attempted_at\": "
	            "\"2026-02-18T11:00:00Z\"");
	wait_applied(id);
	free(id);
}

/* number_state and wallet_ledger have no foreign keys (schema 016): a deleted number takes its
 * number_state rows with it, a deleted company its number_state and ledger rows; and a number
 * deleted while its result is being applied dead-letters the result instead of leaving a row for a
 * number that is gone. */
static void test_deletes(void **state)
{
	char *id, path[96];
	long long nid, gone;

	(void)state;
	/* a number */
	id = report("\"phone_number\": \"09121000077\", \"status\": \"MISSED\", \"attempted_at\": "
	            "\"2026-02-18T11:00:00Z\"");
	wait_applied(id);
	free(id);
	nid = qi("SELECT id FROM numbers WHERE phone_number = '09121000077'");
	assert_int_equal(qi("SELECT count(*) FROM number_state WHERE number_id = %lld", nid), 1);
	/* locked by a later batch (schema 019: the lock is a row of its own) */
	free(q("INSERT INTO number_locks (number_id, batch_id, company_id, assigned_at)"
	       " VALUES (%lld, 'batch-77', %lld, now())",
	       nid, acme_id));
	snprintf(path, sizeof(path), "/api/numbers/%lld", nid);
	th_call_expect(&api, "DELETE", path, root_token, NULL, 200);
	assert_int_equal(qi("SELECT count(*) FROM number_state WHERE number_id = %lld", nid), 0);
	assert_int_equal(qi("SELECT count(*) FROM number_locks WHERE number_id = %lld", nid), 0);

	/* a company, with a charged result and a funded wallet */
	gone = th_create_company(&api, root_token, "gone", "Gone", true);
	th_open_company(&api, root_token, "gone", 100000);
	struct th_resp *r = th_call(&api, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN,
	                            "{\"company\": \"gone\", \"phone_number\": \"09121000078\", \"status\": "
	                            "\"CONNECTED\", \"attempted_at\": \"2026-02-18T11:00:00Z\"}");
	TH_EXPECT_STATUS(r, 202);
	id = strdup(th_json_str(r->json, "stream_id"));
	th_resp_free(r);
	wait_applied(id);
	free(id);
	assert_int_equal(qi("SELECT count(*) FROM number_state WHERE company_id = %lld", gone), 1);
	assert_true(qi("SELECT count(*) FROM wallet_ledger WHERE company_id = %lld AND kind = 'charge'", gone) == 1);
	free(q("INSERT INTO number_locks (number_id, batch_id, company_id, assigned_at)"
	       " SELECT id, 'batch-78', %lld, now() FROM numbers WHERE phone_number = '09121000078'",
	       gone));
	snprintf(path, sizeof(path), "/api/companies/%lld", gone);
	th_call_expect(&api, "DELETE", path, root_token, "{\"confirm_name\": \"gone\"}", 200);
	assert_int_equal(qi("SELECT count(*) FROM number_state WHERE company_id = %lld", gone), 0);
	assert_int_equal(qi("SELECT count(*) FROM wallet_ledger WHERE company_id = %lld", gone), 0);
	assert_int_equal(qi("SELECT count(*) FROM number_locks WHERE company_id = %lld", gone), 0);

	/* a number deleted while the worker waits for its lock: this session holds it, the worker
	 * found the number and waits at its lock (step 9), the delete commits, the lock skips it */
	free(q("INSERT INTO numbers (phone_number) VALUES ('09121000079')"));
	PGconn *pg = PQconnectdb(db_url);
	assert_int_equal(PQstatus(pg), CONNECTION_OK);
	PQclear(PQexec(pg, "BEGIN"));
	PGresult *res = PQexec(pg, "SELECT id FROM numbers WHERE phone_number = '09121000079' FOR UPDATE");
	assert_int_equal(PQntuples(res), 1);
	PQclear(res);
	id = report("\"phone_number\": \"09121000079\", \"status\": \"BUSY\", \"attempted_at\": "
	            "\"2026-02-18T11:00:00Z\"");
	char sql[256];
	/* the worker is waiting on this session's lock */
	TH_WAIT_SQL(db_url,
	            "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
	            " WHERE NOT l.granted AND a.query LIKE '%FOR UPDATE%'",
	            "t", 15000);
	PQclear(PQexec(pg, "DELETE FROM numbers WHERE phone_number = '09121000079'"));
	res = PQexec(pg, "COMMIT");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	PQfinish(pg);
	snprintf(sql, sizeof(sql), "SELECT reason FROM dead_letters WHERE stream_id = '%s'", id);
	TH_WAIT_SQL(db_url, sql, "Number deleted while the result was applied", 15000);
	assert_int_equal(qi("SELECT count(*) FROM call_attempts WHERE stream_id = '%s'", id), 0);
	assert_int_equal(qi("SELECT count(*) FROM number_state s WHERE NOT EXISTS (SELECT 1 FROM numbers n WHERE n.id "
	                    "= s.number_id)"),
	                 0);
	free(id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_applied),        cmocka_unit_test(test_autocreate),
	    cmocka_unit_test(test_dead_letters),   cmocka_unit_test(test_redelivery),
	    cmocka_unit_test(test_max_deliveries), cmocka_unit_test(test_last_chance),
	    cmocka_unit_test(test_malformed),      cmocka_unit_test(test_restarts),
	    cmocka_unit_test(test_sigkill),        cmocka_unit_test(test_two_workers),
	    cmocka_unit_test(test_deletes),        cmocka_unit_test(test_group_lost),
	};

	return cmocka_run_group_tests_name("results", tests, group_setup, group_teardown);
}
