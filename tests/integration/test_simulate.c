/* `dialerctl simulate` against the real dialer-api (issue 5 item 5): at --rate 200 for 3 s it
 * fetches batches, reports every number it fetched (all accepted, each one in the results
 * stream), exits 0 and says so in its summary; against a company that may not dial it waits
 * out retry_after_seconds instead of polling, reports nothing and still exits 0; a wrong token
 * ends it at once with 1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "harness.h"
#include "rds.h"

static struct th_api api;
static struct th_proc *sched; /* records the batches handed out */
static char *db_url;
static char *root_token;
static redisContext *rc;

static int group_setup(void **state)
{
	(void)state;
	if (th_setup_api(&api, &db_url, &root_token, NULL) < 0)
		return -1;
	rc = rds_connect_sync(th_env("REDIS_URL"), NULL);
	if (rc == NULL)
		return -1;
	sched = th_dialer_start("dialer-scheduler", db_url, NULL, NULL);
	if (sched == NULL)
		return -1;
	/* the default company (the agents send no company) may dial, with agents, scenarios and lines */
	th_open_company(&api, root_token, TH_DEFAULT_COMPANY, 100000000);
	th_call_expect(&api, "POST", "/api/" TH_DEFAULT_COMPANY "/admins", root_token,
	               "{\"username\": \"out1\", \"password\": \"secret-pass-1\", \"role\": \"AGENT\","
	               " \"agent_type\": \"OUTBOUND\", \"phone_number\": \"09351112233\"}",
	               200);
	th_call_expect(&api, "POST", "/api/" TH_DEFAULT_COMPANY "/admins", root_token,
	               "{\"username\": \"both1\", \"password\": \"secret-pass-1\", \"role\": \"AGENT\","
	               " \"first_name\": \"Sara\", \"last_name\": \"Rad\"}",
	               200);
	th_create_company(&api, root_token, "broke", "Broke", true);
	th_call_expect(&api, "POST", "/api/dialer/register-outbound-lines", TH_DIALER_TOKEN,
	               "{\"outbound_lines\": [{\"phone_number\": \"0211\", \"display_name\": \"L1\"}]}", 200);
	th_call_expect(&api, "POST", "/api/dialer/register-scenarios", TH_DIALER_TOKEN,
	               "{\"scenarios\": [{\"name\": \"sales\", \"display_name\": \"Sales\"}]}", 200);
	free(th_sql_get(db_url,
	                "INSERT INTO numbers (phone_number) SELECT '0912' || lpad(g::text, 7, '0')"
	                " FROM generate_series(1, 5000) g",
	                NULL));
	return 0;
}

static int group_teardown(void **state)
{
	int st;

	(void)state;
	st = th_proc_stop(sched);
	if (rc)
		redisFree(rc);
	if (th_teardown_api(&api, &db_url, &root_token) != 0)
		st = -1;
	return st == 0 ? 0 : -1;
}

static long long xlen(void)
{
	redisReply *r = redisCommand(rc, "XLEN dialer:results");
	long long n;

	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	n = r->integer;
	freeReplyObject(r);
	return n;
}

/* Runs dialerctl simulate with the given extra arguments (NULL-terminated, at most 8);
 * returns the exit status and the captured stdout (caller frees). */
static int simulate(char **out, const char *token, ...)
{
	char path[600];
	const char *argv[24] = {path, "simulate", "--url", api.base_url, "--token", token};
	size_t n = 6;
	va_list ap;
	int st;

	snprintf(path, sizeof(path), "%s/dialerctl", th_env("DIALER_BIN_DIR"));
	va_start(ap, token);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 22;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	st = th_run(argv, NULL, 120000, out);
	print_message("dialerctl simulate exited %d:\n%s", st, *out ? *out : "");
	return st;
}

/* The number after `label` in text, or -1. */
static long long number_after(const char *text, const char *label)
{
	const char *p = text ? strstr(text, label) : NULL;

	return p ? strtoll(p + strlen(label), NULL, 10) : -1;
}

static void test_simulate_runs(void **state)
{
	char *out = NULL, *v = NULL;
	long long before = xlen(), reported, accepted, numbers;
	long long t0 = th_now_ms();
	int st;

	(void)state;
	st = simulate(&out, TH_DIALER_TOKEN, "--rate", "200", "--duration", "3", "--seed", "7", NULL);
	print_message("took %lld ms\n", th_now_ms() - t0);
	assert_int_equal(st, 0);
	reported = number_after(out, "\nresults: ");
	accepted = number_after(strstr(out, "\nresults: "), "reported");
	numbers = number_after(out, ", numbers: ");
	assert_true(reported > 0);
	/* every fetched number was called and reported, every report accepted and in the stream */
	assert_int_equal(reported, numbers);
	assert_non_null(strstr(out, "report-result  "));
	assert_int_equal(number_after(strstr(out, "report-result "), "202 "), reported);
	assert_int_equal(xlen() - before, reported);
	assert_null(strstr(out, "left unreported"));
	/* about 200/s over 3 s (a loaded machine under ASan may fall short, never far over) */
	assert_true(reported >= 200 && reported <= 1200);
	/* a realistic mix: several statuses, reports with agents, batch ids and nulls */
	assert_non_null(strstr(out, "statuses: "));
	assert_non_null(strstr(out, " CONNECTED "));
	assert_non_null(strstr(out, " MISSED "));
	(void)accepted;
	free(out);

	/* the locks it took are its batches' numbers (recorded by the scheduler within moments) */
	for (int i = 0; i < 100; i++) {
		free(v);
		v = NULL;
		assert_int_equal(
		    th_sql(db_url, "SELECT COALESCE(sum(returned_size), 0) FROM dialer_batches", 0, NULL, &v), 0);
		if (strtoll(v, NULL, 10) == numbers)
			break;
		th_sleep_ms(100);
	}
	assert_int_equal(strtoll(v, NULL, 10), numbers);
	free(v);
}

/* The stream entries the simulator caused look like the agents' reports: batch ids, agents by
 * id and by phone, scenarios and lines, unnormalized phones, attempted_at with microseconds. */
static void test_reports_look_like_agents(void **state)
{
	redisReply *r = redisCommand(rc, "XREVRANGE dialer:results + - COUNT 300");
	bool batch_id = false, agent_id = false, agent_phone = false, micro = false, raw = false, scenario = false,
	     line = false;

	(void)state;
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_true(r->elements > 0);
	for (size_t i = 0; i < r->elements; i++) {
		redisReply *fields = r->element[i]->element[1];

		for (size_t k = 0; k + 1 < fields->elements; k += 2) {
			const char *f = fields->element[k]->str, *val = fields->element[k + 1]->str;

			batch_id |= strcmp(f, "batch_id") == 0 && strlen(val) == 32;
			agent_id |= strcmp(f, "agent_id") == 0 && *val;
			agent_phone |= strcmp(f, "agent_phone") == 0 && strcmp(val, "09351112233") == 0;
			micro |= strcmp(f, "attempted_at") == 0 && strtoll(val, NULL, 10) % 1000000 != 0;
			raw |= strcmp(f, "phone_raw") == 0 && strncmp(val, "+98 9", 5) == 0;
			scenario |= strcmp(f, "scenario_id") == 0 && *val;
			line |= strcmp(f, "outbound_line_id") == 0 && *val;
		}
	}
	freeReplyObject(r);
	assert_true(batch_id);
	assert_true(agent_id);
	assert_true(agent_phone);
	assert_true(micro);
	assert_true(raw);
	assert_true(scenario);
	assert_true(line);
}

/* broke has no money: next-batch says insufficient_funds with a 300 s retry; the simulator waits
 * instead of polling, reports nothing, and still exits 0. */
static void test_simulate_obeys_block(void **state)
{
	char *out = NULL;
	long long t0 = th_now_ms(), took;
	int st;

	(void)state;
	st = simulate(&out, TH_DIALER_TOKEN, "--rate", "200", "--duration", "2", "--company", "broke", NULL);
	took = th_now_ms() - t0;
	assert_int_equal(st, 0);
	assert_int_equal(number_after(out, "\nresults: "), 0);
	assert_int_equal(number_after(out, ", blocked: "), 1);
	assert_non_null(strstr(out, "last: insufficient_funds"));
	assert_int_equal(number_after(out, "\nnext-batch "), 1); /* one request, then it waited */
	assert_true(took >= 1500 && took < 30000);
	free(out);
}

static void test_simulate_bad_token(void **state)
{
	char *out = NULL;
	int st;

	(void)state;
	st = simulate(&out, "wrong-token", "--rate", "10", "--duration", "30", NULL);
	assert_int_equal(st, 1);
	assert_int_equal(number_after(out, "\nresults: "), 0);
	free(out);
}

/* One report-result request at a time cannot keep up with thousands of calls ending a second:
 * the live line says how many results are overdue and names --concurrency. (Last: it uses up the
 * pool.) */
static void test_simulate_behind(void **state)
{
	char *out = NULL;

	(void)state;
	/* its own numbers: whatever the tests before it left, thousands of calls end within the run */
	free(th_sql_get(db_url,
	                "INSERT INTO numbers (phone_number) SELECT '0913' || lpad(g::text, 7, '0')"
	                " FROM generate_series(1, 20000) g",
	                NULL));
	int st = simulate(&out, TH_DIALER_TOKEN, "--rate", "10000", "--duration", "2", "--concurrency", "1", "--seed",
	                  "9", NULL);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "behind: "));
	assert_non_null(strstr(out, " results overdue (--concurrency 1)"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simulate_runs),        cmocka_unit_test(test_reports_look_like_agents),
	    cmocka_unit_test(test_simulate_obeys_block), cmocka_unit_test(test_simulate_bad_token),
	    cmocka_unit_test(test_simulate_behind),
	};

	return cmocka_run_group_tests_name("simulate", tests, group_setup, group_teardown);
}
