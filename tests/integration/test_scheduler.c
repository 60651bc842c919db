/* dialer-scheduler against the real API, PostgreSQL and Redis (issue 5 items 4 and 6): each
 * active company's call-allowed decision appears in Redis within about two seconds with the
 * right allowed/reason/version and a TTL, follows a schedule change, is absent for an inactive
 * company; a wallet at zero is published as insufficient_funds, and the dialer's next next-batch
 * persists the auto-disable (COMPAT §3.6 step 1: the dialer path, not the scheduler); a lock older than
 * ASSIGNMENT_TIMEOUT_MINUTES returns to the queue and a fresh one does not; of two schedulers exactly one holds the
 * lease, and when it is SIGKILLed the other takes over within a few seconds and publishing goes on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "harness.h"
#include "rds.h"

#define LEASE_KEY "dialer:scheduler:leader"
#define BETA_STATE                                                                               \
	"SELECT enabled || ' ' || disabled_by_dialer || ' ' || version || ' ' || wallet_balance" \
	" FROM company_config WHERE company_id = $1::integer"

static struct th_api api;
static char *db_url;
static char *root_token;
static redisContext *rc;
static long long acme_id, beta_id, gamma_id, delta_id;
static long long acme_version;
static struct th_proc *sched1, *sched2;
static char sched1_log[512], sched2_log[512];

static long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* which: "sched1" or "sched2" (its log is sched1_log or sched2_log). */
static struct th_proc *sched_start(const char *which)
{
	return th_dialer_start("dialer-scheduler", db_url, which, "ASSIGNMENT_TIMEOUT_MINUTES=60", "LOG_LEVEL=debug",
	                       NULL);
}

/* GET key, or NULL (caller frees). */
static char *rget(const char *key)
{
	redisReply *r = redisCommand(rc, "GET %s", key);
	char *v = NULL;

	assert_non_null(r);
	if (r->type == REDIS_REPLY_STRING)
		v = strdup(r->str);
	freeReplyObject(r);
	return v;
}

static long long rpttl(const char *key)
{
	redisReply *r = redisCommand(rc, "PTTL %s", key);
	long long v;

	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	v = r->integer;
	freeReplyObject(r);
	return v;
}

static char *sql(const char *q)
{
	return th_sql_get(db_url, q, NULL);
}

/* q with $1 = company id `id` (and $2, $3 = a, b when not NULL): the first value (caller frees). */
static char *sqlp(const char *q, long long id, const char *a, const char *b)
{
	char ids[24];

	snprintf(ids, sizeof(ids), "%lld", id);
	return th_sql_get(db_url, q, ids, a, b, NULL);
}

/* The published decision of company id once it has schedule_version `version` (any when < 0)
 * and was computed after `after_ms` (wall clock), or NULL after timeout_ms. Caller decrefs. */
static json_t *wait_state(long long id, long long version, long long after_ms, int timeout_ms)
{
	char key[48];
	long long deadline = th_now_ms() + timeout_ms;

	snprintf(key, sizeof(key), "dialer:callstate:%lld", id);
	for (;;) {
		char *v = rget(key);
		json_t *o = v ? json_loads(v, 0, NULL) : NULL;
		long long ver = -1, at = 0;

		free(v);
		if (json_is_object(o) && json_object_get(o, "allowed") &&
		    th_json_int(o, "schedule_version", &ver) == 0 && th_json_int(o, "computed_at", &at) == 0 &&
		    (version < 0 || ver == version) && at > after_ms)
			return o;
		json_decref(o);
		if (th_now_ms() >= deadline)
			return NULL;
		th_sleep_ms(100);
	}
}

static long long create_company(const char *name, bool active)
{
	return th_create_company(&api, root_token, name, name, active);
}

/* Funds the company and opens every day from 00:00:00 to 23:59:59, holidays ignored; returns the
 * version. */
static long long open_all_week(const char *name)
{
	return th_open_company(&api, root_token, name, 1000000);
}

static int group_setup(void **state)
{
	(void)state;
	if (th_setup_api(&api, &db_url, &root_token, NULL) < 0)
		return -1;
	rc = rds_connect_sync(th_env("REDIS_URL"), NULL);
	if (rc == NULL)
		return -1;
	acme_id = create_company("acme", true);
	beta_id = create_company("beta", true);
	gamma_id = create_company("gamma", false);
	delta_id = create_company("delta", true);
	/* configured before the scheduler runs, so that it never sees acme or delta unfunded */
	acme_version = open_all_week("acme");
	open_all_week("delta");
	snprintf(sched1_log, sizeof(sched1_log), "%s/test_scheduler-sched1.log", th_tmp_dir());
	snprintf(sched2_log, sizeof(sched2_log), "%s/test_scheduler-sched2.log", th_tmp_dir());
	unlink(sched1_log);
	unlink(sched2_log);
	sched1 = sched_start("sched1");
	return sched1 ? 0 : -1;
}

static int group_teardown(void **state)
{
	int st1, st2, st;

	(void)state;
	st1 = th_proc_stop(sched1);
	st2 = th_proc_stop(sched2);
	if (rc)
		redisFree(rc);
	st = th_teardown_api(&api, &db_url, &root_token);
	if (st1 != 0 || st2 != 0)
		print_error("scheduler exit status %d / %d (see %s, %s)\n", st1, st2, sched1_log, sched2_log);
	return st == 0 && st1 == 0 && st2 == 0 ? 0 : -1;
}

/* acme is open all week: allowed, no reason, its version, a TTL; within about two seconds. */
static void test_published_allowed(void **state)
{
	long long t0 = th_now_ms(), since = wall_ms(), v;
	json_t *o;
	char key[48];

	(void)state;
	/* a fresh leader writes a marker first, the decision on its next pass */
	o = wait_state(acme_id, -1, 0, 5000);
	assert_non_null(o);
	print_message("first decision after %lld ms\n", th_now_ms() - t0);
	json_decref(o);

	/* steady state: a new decision each second */
	t0 = th_now_ms();
	o = wait_state(acme_id, acme_version, since, 2500);
	assert_non_null(o);
	print_message("fresh decision after %lld ms\n", th_now_ms() - t0);
	assert_true(json_is_true(json_object_get(o, "allowed")));
	assert_true(json_is_null(json_object_get(o, "reason")));
	assert_true(json_is_null(json_object_get(o, "retry_after")));
	TH_EXPECT_INT(o, "schedule_version", acme_version);
	TH_EXPECT_STR(o, "timezone", "Asia/Tehran");
	assert_int_equal(th_json_int(o, "computed_at", &v), 0);
	assert_true(v > wall_ms() - 3000 && v <= wall_ms() + 1000);
	json_decref(o);
	snprintf(key, sizeof(key), "dialer:callstate:%lld", acme_id);
	v = rpttl(key);
	print_message("PTTL %lld\n", v);
	assert_true(v > 0 && v <= 5000);
}

/* gamma is inactive: nothing published, and no config row created for it. */
static void test_inactive_absent(void **state)
{
	char key[48], *v;

	(void)state;
	th_sleep_ms(1500); /* at least one more pass */
	snprintf(key, sizeof(key), "dialer:callstate:%lld", gamma_id);
	v = rget(key);
	assert_null(v);
	v = sqlp("SELECT count(*) FROM company_config WHERE company_id = $1::integer", gamma_id, NULL, NULL);
	assert_string_equal(v, "0");
	free(v);
}

/* The dialer's next-batch for `company`: its reason and schedule_version. */
static void expect_next_batch(const char *company, const char *reason, long long version)
{
	char path[96];
	struct th_resp *r;

	snprintf(path, sizeof(path), "/api/dialer/next-batch?company=%s", company);
	r = th_call(&api, "GET", path, TH_DIALER_TOKEN, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "reason", reason);
	TH_EXPECT_INT(r->json, "schedule_version", version);
	th_resp_free(r);
}

/* beta was never configured: its config is created with the defaults (wallet 0) and published as
 * insufficient_funds with the short retry; the scheduler persists nothing. The dialer's next-batch
 * then disables it (enabled false, disabled_by_dialer true, version 1 + 1), once. */
static void test_new_company_auto_disabled(void **state)
{
	json_t *o;
	char *v;

	(void)state;
	o = wait_state(beta_id, 1, 0, 5000);
	assert_non_null(o);
	assert_true(json_is_false(json_object_get(o, "allowed")));
	TH_EXPECT_STR(o, "reason", "insufficient_funds");
	TH_EXPECT_INT(o, "retry_after", 300);
	json_decref(o);
	th_sleep_ms(1500);
	v = sqlp(BETA_STATE, beta_id, NULL, NULL);
	assert_string_equal(v, "true false 1 0");
	free(v);
	expect_next_batch("beta", "insufficient_funds", 2);
	v = sqlp(BETA_STATE, beta_id, NULL, NULL);
	assert_string_equal(v, "false true 2 0");
	free(v);
	o = wait_state(beta_id, 2, 0, 5000);
	assert_non_null(o);
	TH_EXPECT_STR(o, "reason", "insufficient_funds");
	json_decref(o);
	/* once disabled it stays so, with no further version bump */
	expect_next_batch("beta", "insufficient_funds", 2);
	v = sqlp(BETA_STATE, beta_id, NULL, NULL);
	assert_string_equal(v, "false true 2 0");
	free(v);
}

/* delta is funded and open; its wallet drops to 0 (billing PUT: version + 1, still enabled); the
 * scheduler publishes insufficient_funds, and the dialer's next-batch disables it (version + 1). */
static void test_wallet_zero_auto_disabled(void **state)
{
	struct th_resp *r;
	json_t *o;
	char *v, *ver;
	long long version;
	char want[64];

	(void)state;
	o = wait_state(delta_id, -1, 0, 5000);
	assert_non_null(o);
	assert_true(json_is_true(json_object_get(o, "allowed")));
	json_decref(o);

	r = th_call(&api, "PUT", "/api/delta/billing", root_token, "{\"wallet_balance\": 0}");
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	ver = sqlp("SELECT version FROM company_config WHERE company_id = $1::integer", delta_id, NULL, NULL);
	version = strtoll(ver, NULL, 10);
	free(ver);

	o = wait_state(delta_id, version, 0, 5000);
	assert_non_null(o);
	assert_true(json_is_false(json_object_get(o, "allowed")));
	TH_EXPECT_STR(o, "reason", "insufficient_funds");
	TH_EXPECT_INT(o, "retry_after", 300);
	json_decref(o);
	expect_next_batch("delta", "insufficient_funds", version + 1);
	v = sqlp("SELECT enabled || ' ' || disabled_by_dialer || ' ' || version FROM company_config"
	         " WHERE company_id = $1::integer",
	         delta_id, NULL, NULL);
	snprintf(want, sizeof(want), "false true %lld", version + 1);
	assert_string_equal(v, want);
	free(v);
}

/* A schedule change (no windows at all) shows up with its version: no_window, long retry; and
 * once the PUT has answered, the old decision never comes back (the publish is a compare-and-set
 * against the API's delete). */
static void test_schedule_change(void **state)
{
	struct th_resp *r;
	json_t *o;
	long long v = -1, t0, first_new = -1;

	(void)state;
	r = th_call(&api, "PUT", "/api/acme/schedule", root_token, "{\"intervals\": []}");
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "version", &v), 0);
	th_resp_free(r);
	assert_int_equal(v, acme_version + 1);
	t0 = th_now_ms();
	/* from the 200 on, the key never holds the old decision: absent, a marker, or the new one */
	{
		char key[48];

		snprintf(key, sizeof(key), "dialer:callstate:%lld", acme_id);
		while (th_now_ms() - t0 < 1500) {
			char *val = rget(key);
			json_t *seen = val ? json_loads(val, 0, NULL) : NULL;
			long long ver = -1;

			if (th_json_int(seen, "schedule_version", &ver) == 0 && ver < v)
				fail_msg("old decision after the schedule PUT: %s", val);
			if (ver == v && first_new < 0)
				first_new = th_now_ms() - t0;
			json_decref(seen);
			free(val);
			th_sleep_ms(2);
		}
	}
	o = wait_state(acme_id, v, 0, 3000);
	assert_non_null(o);
	print_message("new version published %lld ms after the PUT's answer\n",
	              first_new >= 0 ? first_new : th_now_ms() - t0);
	assert_true(json_is_false(json_object_get(o, "allowed")));
	TH_EXPECT_STR(o, "reason", "no_window");
	TH_EXPECT_INT(o, "retry_after", 900);
	json_decref(o);

	/* back to open, for the tests that follow */
	acme_version = open_all_week("acme");
	assert_true(acme_version > v);
	o = wait_state(acme_id, acme_version, 0, 4000);
	assert_non_null(o);
	assert_true(json_is_true(json_object_get(o, "allowed")));
	json_decref(o);
}

static bool log_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t cap = 0;
	bool found;

	if (f == NULL)
		return false;
	found = getdelim(&text, &cap, '\0', f) > 0 && strstr(text, needle) != NULL;
	free(text);
	fclose(f);
	return found;
}

/* The id of a batch of `size` numbers that next-batch gives acme (caller frees). */
static char *take_batch(int size)
{
	char path[96];
	struct th_resp *r;
	char *id = NULL;

	snprintf(path, sizeof(path), "/api/dialer/next-batch?company=acme&size=%d", size);
	r = th_call(&api, "GET", path, TH_DIALER_TOKEN, NULL);
	TH_EXPECT_STATUS(r, 200);
	json_t *batch = json_object_get(r->json, "batch");
	if (!json_is_true(json_object_get(r->json, "call_allowed")) || !json_is_object(batch))
		fail_msg("next-batch did not dispatch: %s", r->body);
	TH_EXPECT_INT(batch, "size_returned", size);
	id = strdup(th_json_str(batch, "batch_id"));
	th_resp_free(r);
	/* the leader records it (and mirrors its locks) from the batches stream */
	for (int i = 0; i < 100; i++) {
		char *v = sqlp("SELECT count(*) FROM number_locks WHERE batch_id = $2 AND company_id = $1::int",
		               acme_id, id, NULL);
		bool done = strtol(v, NULL, 10) == size;
		free(v);
		if (done)
			break;
		th_sleep_ms(100);
	}
	return id;
}

/* Locks taken by next-batch two hours ago return to the queue (the number_locks row deleted, the
 * batch marked released); a number of that old batch that a newer batch holds now stays with
 * the newer one; a fresh batch keeps its lock. A new leader sweeps at once, so the scheduler is
 * restarted after the locks are aged. */
static void test_expired_locks_returned(void **state)
{
	char *old_batch, *fresh_batch, *v, want[600];
	long long deadline;

	(void)state;
	free(sql("INSERT INTO numbers (phone_number) VALUES ('09120000001'), ('09120000002'), ('09120000003'),"
	         " ('09120000004')"));
	old_batch = take_batch(2);   /* 09120000001, 09120000002 */
	fresh_batch = take_batch(1); /* 09120000003 */
	free(sqlp("WITH b AS (UPDATE dialer_batches SET created_at = now() - interval '2 hours' WHERE id = $2"
	          "  AND company_id = $1::integer RETURNING id)"
	          " UPDATE number_locks SET assigned_at = now() - interval '2 hours'"
	          " WHERE batch_id IN (SELECT id FROM b)",
	          acme_id, old_batch, NULL));
	/* 09120000002 was reported meanwhile and is now in a newer batch */
	free(sql("UPDATE number_locks SET assigned_at = now(), batch_id = 'cccccccccccccccccccccccccccccccc'"
	         " WHERE number_id = (SELECT id FROM numbers WHERE phone_number = '09120000002')"));
	/* history: a released batch past SCHED_BATCH_KEEP_DAYS (30) goes, a younger one stays */
	free(sqlp("INSERT INTO dialer_batches (id, company_id, requested_size, returned_size, released, created_at)"
	          " VALUES ('old-released', $1::integer, 1, 1, true, now() - interval '31 days'),"
	          " ('young-released', $1::integer, 1, 1, true, now() - interval '29 days')",
	          acme_id, NULL, NULL));

	assert_int_equal(th_proc_stop(sched1), 0);
	sched1 = sched_start("sched1");
	assert_non_null(sched1);

	deadline = th_now_ms() + 8000;
	for (;;) {
		v = sql("SELECT count(*) FROM numbers n WHERE phone_number = '09120000001'"
		        " AND NOT EXISTS (SELECT 1 FROM number_locks l WHERE l.number_id = n.id)");
		bool done = strcmp(v, "1") == 0;
		free(v);
		if (done || th_now_ms() >= deadline)
			break;
		th_sleep_ms(100);
	}
	v = sql("SELECT string_agg(phone_number || ':' || coalesce(l.batch_id, '-') || ':' ||"
	        " coalesce(l.company_id::text, '-'), ' ' ORDER BY phone_number)"
	        " FROM numbers n LEFT JOIN number_locks l ON l.number_id = n.id");
	snprintf(
	    want, sizeof(want),
	    "09120000001:-:- 09120000002:cccccccccccccccccccccccccccccccc:%lld 09120000003:%s:%lld 09120000004:-:-",
	    acme_id, fresh_batch, acme_id);
	if (strcmp(v, want) != 0)
		fail_msg("locks are\n  %s\nnot\n  %s", v, want);
	free(v);
	v = sqlp("SELECT string_agg(released::text, ' ' ORDER BY id = $2 DESC) FROM dialer_batches"
	         " WHERE company_id = $1::integer AND id IN ($2, $3)",
	         acme_id, old_batch, fresh_batch);
	assert_string_equal(v, "true false");
	free(v);
	v = sqlp("SELECT string_agg(id || ':' || cardinality(number_ids), ' ' ORDER BY id) FROM dialer_batches"
	         " WHERE company_id = $1::integer AND (released OR id LIKE '%-released')",
	         acme_id, NULL, NULL);
	char want_rel[128];
	snprintf(want_rel, sizeof(want_rel), "%s:0 young-released:0", old_batch);
	assert_string_equal(v, want_rel); /* the released batch's list emptied; the 31-day-old one deleted */
	free(v);
	assert_true(log_has(sched1_log, "event=locks_returned count=1 batches=1 "));
	free(old_batch);
	free(fresh_batch);
}

/* The pid in the lease's value ("<host>-<pid>-<random>"), or 0 when nobody holds it. */
static int lease_pid(void)
{
	char *v = rget(LEASE_KEY);
	char *last = v ? strrchr(v, '-') : NULL;
	int pid = 0;

	if (last != NULL) {
		*last = '\0';
		if (strrchr(v, '-') != NULL)
			pid = atoi(strrchr(v, '-') + 1);
	}
	free(v);
	return pid;
}

static void test_failover(void **state)
{
	long long t0, killed_at, took;
	json_t *o;
	int st;

	(void)state;
	sched2 = sched_start("sched2");
	assert_non_null(sched2);
	/* both run for a few passes: the lease stays with the first, the second never leads */
	for (int i = 0; i < 30; i++) {
		assert_int_equal(lease_pid(), th_proc_pid(sched1));
		th_sleep_ms(100);
	}
	assert_true(th_proc_alive(sched2));
	assert_true(log_has(sched1_log, "event=leader_acquired"));
	assert_false(log_has(sched2_log, "event=leader_acquired"));
	assert_false(log_has(sched2_log, "event=callstate_pass"));
	assert_true(log_has(sched2_log, "event=started"));

	assert_int_equal(kill(th_proc_pid(sched1), SIGKILL), 0);
	killed_at = wall_ms();
	t0 = th_now_ms();
	st = th_proc_stop(sched1);
	sched1 = NULL;
	assert_int_equal(st, 128 + SIGKILL);
	while (lease_pid() != th_proc_pid(sched2) && th_now_ms() - t0 < 10000)
		th_sleep_ms(50);
	took = th_now_ms() - t0;
	print_message("second scheduler took the lease %lld ms after the SIGKILL\n", took);
	assert_int_equal(lease_pid(), th_proc_pid(sched2));
	assert_true(took <= 7000); /* the lease's 5 s expiry plus one tick */

	/* and publishes: decisions computed after the kill, for acme and beta */
	o = wait_state(acme_id, acme_version, killed_at, 5000);
	assert_non_null(o);
	assert_true(json_is_true(json_object_get(o, "allowed")));
	json_decref(o);
	o = wait_state(beta_id, -1, killed_at, 3000);
	assert_non_null(o);
	TH_EXPECT_STR(o, "reason", "insufficient_funds");
	json_decref(o);
	print_message("publishing again %lld ms after the SIGKILL\n", th_now_ms() - t0);
	assert_true(log_has(sched2_log, "event=leader_acquired"));

	/* a clean stop releases the lease at once */
	st = th_proc_stop(sched2);
	sched2 = NULL;
	assert_int_equal(st, 0);
	assert_int_equal(lease_pid(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_published_allowed),
	    cmocka_unit_test(test_inactive_absent),
	    cmocka_unit_test(test_new_company_auto_disabled),
	    cmocka_unit_test(test_wallet_zero_auto_disabled),
	    cmocka_unit_test(test_schedule_change),
	    cmocka_unit_test(test_expired_locks_returned),
	    cmocka_unit_test(test_failover),
	};

	return cmocka_run_group_tests_name("scheduler", tests, group_setup, group_teardown);
}
