/* Stats end to end (issue 7 items 1, 2 and 5's rollup test): reports go through the real
 * dialer-api, the real dialer-results applies them and the real dialer-stats counts them into the
 * rollups. Every /api/stats endpoint's shape, numbers, buckets (Tehran days and hours, zero-filled)
 * and errors on a small known load; numbers-summary exact after every path that changes
 * number_state or numbers (results, bulk and single status update, reset, delete, add, company
 * delete); a random load (statuses, companies, agents, scenarios, lines, days and hours across a
 * Tehran midnight, dead letters) during which dialer-stats is SIGKILLed twice and left down across
 * the results stream's trimming, after which every rollup equals a recount from call_attempts;
 * results of a company deleted before they were counted; and the rebuilds (attempts written by
 * SQL, `dialerctl stats-rebuild`, the group lost as when Redis loses its data, and dialer-stats
 * SIGKILLed in the middle of that rebuild). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "harness.h"
#include "jalali.h"
#include "tz.h"

#define TZ_NAME     "Asia/Tehran"
#define RANDOM_LOAD 3000 /* reports of the SIGKILL run */
#define KNOWN_MAX   64

static struct th_api api;
static char *db_url;
static char *root_token, *acme_admin_token, *beta_admin_token, *agent_token;
static struct th_proc *results, *stats;
static long long acme_id, beta_id, ghost_id;
static long long sc_sales, sc_alpha, sc_beta, ln_a, ln_b;
static long long ag1, ag2, ag_off, beta_ag;

#define q(...)  th_sqlf(db_url, __VA_ARGS__)
#define qi(...) th_sqlf_int(db_url, __VA_ARGS__)

/* The 13 statuses, sorted by name as every status list of the API. */
static const char *const sorted[13] = {
    "BANNED",       "BUSY",     "COMPLAINED", "CONNECTED",      "DISCONNECTED", "FAILED",  "HANGUP",
    "INBOUND_CALL", "IN_QUEUE", "MISSED",     "NOT_INTERESTED", "POWER_OFF",    "UNKNOWN",
};

static int sidx(const char *s)
{
	for (int i = 0; i < 13; i++)
		if (!strcmp(sorted[i], s))
			return i;
	fail_msg("unknown status %s", s);
	return -1;
}

static bool is_connected(int i)
{
	const char *s = sorted[i];
	return !strcmp(s, "CONNECTED") || !strcmp(s, "DISCONNECTED") || !strcmp(s, "FAILED") ||
	       !strcmp(s, "NOT_INTERESTED") || !strcmp(s, "HANGUP") || !strcmp(s, "UNKNOWN");
}

/* ---- the known load, as sent ---- */

struct att {
	long long at_us;
	int st; /* index in sorted */
	long long company, sc, ln, ag;
};
static struct att known[KNOWN_MAX];
static int nknown;

static long long now_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000000 + tv.tv_usec;
}

/* µs since the epoch as the agents send it: 2026-02-18T10:00:00.123456+00:00 */
static void iso_us(long long us, char out[40])
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%06lld+00:00", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	         tm.tm_hour, tm.tm_min, tm.tm_sec, us % 1000000);
}

/* "YYYY-MM-DDTHH:MM:SS(+|-)HH:MM" → seconds since the epoch. */
static long long parse_offset_time(const char *s)
{
	struct tm tm = {0};
	int oh, om;
	char sign;
	assert_non_null(s);
	assert_int_equal(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	                        &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &sign, &oh, &om),
	                 9);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	long long off = (oh * 3600 + om * 60) * (sign == '-' ? -1 : 1);
	return (long long)timegm(&tm) - off;
}

/* Posts one report (through the API); the company by slug; 0 = field absent. Returns the stream id
 * (caller frees). */
static char *send_report(const char *company, long long at_us, const char *status, const char *phone, long long sc,
                         long long ln, long long ag)
{
	char at[40], extra[160] = "";
	size_t k = 0;
	iso_us(at_us, at);
	if (sc)
		k += (size_t)snprintf(extra + k, sizeof(extra) - k, ", \"scenario_id\": %lld", sc);
	if (ln)
		k += (size_t)snprintf(extra + k, sizeof(extra) - k, ", \"outbound_line_id\": %lld", ln);
	if (ag)
		snprintf(extra + k, sizeof(extra) - k, ", \"agent_id\": %lld", ag);
	struct th_resp *r = th_callf(&api, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN,
	                             "{\"company\": \"%s\", \"phone_number\": \"%s\", \"status\": \"%s\","
	                             " \"attempted_at\": \"%s\", \"batch_id\": null%s}",
	                             company, phone, status, at, extra);
	TH_EXPECT_STATUS(r, 202);
	char *id = strdup(th_json_str(r->json, "stream_id"));
	th_resp_free(r);
	return id;
}

/* A report of the known load (company acme or beta), recorded for the expectations. */
static void known_report(long long company, long long at_us, const char *status, long long sc, long long ln,
                         long long ag)
{
	char phone[24];
	assert_true(nknown < KNOWN_MAX);
	snprintf(phone, sizeof(phone), "0912700%04d", nknown);
	free(send_report(company == acme_id ? "acme" : "beta", at_us, status, phone, sc, ln, ag));
	known[nknown++] = (struct att){at_us, sidx(status), company, sc, ln, ag};
}

/* Counts of the known load: company (0 = every one), attempted in [from, to) seconds. */
static long long expect(long long company, long long from, long long to, long long counts[13])
{
	long long total = 0;
	memset(counts, 0, 13 * sizeof(*counts));
	for (int i = 0; i < nknown; i++) {
		const struct att *a = &known[i];
		if ((company && a->company != company) || a->at_us < from * 1000000 || a->at_us >= to * 1000000)
			continue;
		counts[a->st]++;
		total++;
	}
	return total;
}

static double pct(long long n, long long total)
{
	return total ? round((double)n * 10000.0 / (double)total) / 100.0 : 0.0;
}

/* A [StatusShare × 13] list: sorted statuses, the counts, their percentages of total. */
static void check_shares(const json_t *arr, const long long counts[13], long long total)
{
	assert_true(json_is_array(arr));
	assert_int_equal(json_array_size(arr), 13);
	for (int i = 0; i < 13; i++) {
		const json_t *e = json_array_get(arr, i);
		TH_EXPECT_STR(e, "status", sorted[i]);
		TH_EXPECT_INT(e, "count", counts[i]);
		const json_t *p = json_object_get(e, "percentage");
		assert_true(json_is_real(p));
		if (fabs(json_real_value(p) - pct(counts[i], total)) > 1e-9)
			fail_msg("%s: percentage %f, want %f", sorted[i], json_real_value(p), pct(counts[i], total));
	}
}

#define get(token, ...) th_getf(&api, (token), __VA_ARGS__)

/* ---- the recount ---- */

/* Rows of every rollup that differ from a recount of call_attempts (of existing companies): 0 when
 * they agree. The minute tables over what they keep: 24 hours, and 100 minutes for the groups. */
static const char recount_sql[] =
    "WITH a AS (SELECT * FROM call_attempts WHERE company_id IN (SELECT id FROM companies)),"
    " rd AS (SELECT v.c, (a.attempted_at AT TIME ZONE '" TZ_NAME "')::date, a.status, count(*)::bigint"
    "   FROM a, LATERAL (VALUES (a.company_id), (0)) v(c) GROUP BY 1, 2, 3),"
    " td AS (SELECT company_id, day, status, attempts FROM stats_daily WHERE attempts <> 0),"
    " rh AS (SELECT v.c, date_trunc('hour', a.attempted_at, '" TZ_NAME "'), a.status, count(*)::bigint"
    "   FROM a, LATERAL (VALUES (a.company_id), (0)) v(c) GROUP BY 1, 2, 3),"
    " th AS (SELECT company_id, hour, status, attempts FROM stats_hourly WHERE attempts <> 0),"
    " rm AS (SELECT v.c, date_trunc('minute', a.attempted_at), a.status, count(*)::bigint"
    "   FROM a, LATERAL (VALUES (a.company_id), (0)) v(c) WHERE date_trunc('minute', a.attempted_at) >= now() - "
    "interval '24 hours'"
    "  GROUP BY 1, 2, 3),"
    " tm AS (SELECT company_id, minute, status, attempts FROM stats_minutely"
    "   WHERE attempts <> 0 AND minute >= now() - interval '24 hours'),"
    " rg AS (SELECT a.company_id, g.grp, (a.attempted_at AT TIME ZONE '" TZ_NAME "')::date, g.id, a.status,"
    "   count(*)::bigint FROM a, LATERAL (VALUES (1::smallint, a.scenario_id), (2::smallint, a.outbound_line_id)) "
    "g(grp, id)"
    "  WHERE g.id IS NOT NULL GROUP BY 1, 2, 3, 4, 5),"
    " tg AS (SELECT company_id, grp, day, group_id, status, attempts FROM stats_daily_groups),"
    " rmg AS (SELECT a.company_id, g.grp, date_trunc('minute', a.attempted_at), g.id, a.status, count(*)::bigint"
    "   FROM a, LATERAL (VALUES (1::smallint, a.scenario_id), (2::smallint, a.outbound_line_id)) g(grp, id)"
    "  WHERE g.id IS NOT NULL AND date_trunc('minute', a.attempted_at) >= date_trunc('minute', now() - interval "
    "'100 minutes')"
    "  GROUP BY 1, 2, 3, 4, 5),"
    " tmg AS (SELECT company_id, grp, minute, group_id, status, attempts FROM stats_minutely_groups"
    "   WHERE minute >= date_trunc('minute', now() - interval '100 minutes')),"
    " ra AS (SELECT a.company_id, (a.attempted_at AT TIME ZONE '" TZ_NAME "')::date, a.agent_id, count(*)::bigint,"
    "   count(*) FILTER (WHERE a.status IN ('CONNECTED', 'DISCONNECTED', 'FAILED', 'NOT_INTERESTED', 'HANGUP',"
    "    'UNKNOWN'))::bigint, max(a.attempted_at) FROM a WHERE a.agent_id IS NOT NULL GROUP BY 1, 2, 3),"
    " ta AS (SELECT company_id, day, agent_id, attempts, connected, last_at FROM stats_agents_daily)"
    " SELECT (SELECT count(*) FROM ((TABLE rd EXCEPT ALL TABLE td) UNION ALL (TABLE td EXCEPT ALL TABLE rd)) x)"
    "  + (SELECT count(*) FROM ((TABLE rh EXCEPT ALL TABLE th) UNION ALL (TABLE th EXCEPT ALL TABLE rh)) x)"
    "  + (SELECT count(*) FROM ((TABLE rm EXCEPT ALL TABLE tm) UNION ALL (TABLE tm EXCEPT ALL TABLE rm)) x)"
    "  + (SELECT count(*) FROM ((TABLE rg EXCEPT ALL TABLE tg) UNION ALL (TABLE tg EXCEPT ALL TABLE rg)) x)"
    "  + (SELECT count(*) FROM ((TABLE rmg EXCEPT ALL TABLE tmg) UNION ALL (TABLE tmg EXCEPT ALL TABLE rmg)) x)"
    "  + (SELECT count(*) FROM ((TABLE ra EXCEPT ALL TABLE ta) UNION ALL (TABLE ta EXCEPT ALL TABLE ra)) x)";

/* Waits until the stats worker has counted everything applied, and the rollups equal the recount. */
static void wait_recount(int timeout_ms)
{
	TH_WAIT_SQL(db_url, recount_sql, "0", timeout_ms);
	/* and nothing is rollup-only (a company's rows left behind) */
	TH_EXPECT_SQL(db_url, "0",
	              "SELECT (SELECT count(*) FROM stats_daily WHERE company_id <> 0 AND company_id NOT IN"
	              " (SELECT id FROM companies)) + (SELECT count(*) FROM stats_agents_daily WHERE company_id NOT IN"
	              " (SELECT id FROM companies))",
	              NULL);
}

/* numbers-summary for company (slug) against a recount of numbers and number_state. */
static void check_numbers_summary(const char *token, const char *company, long long company_id)
{
	long long counts[13] = {0}, total = qi("SELECT count(*) FROM numbers"), called = 0;
	for (int i = 0; i < 13; i++) {
		if (!strcmp(sorted[i], "IN_QUEUE"))
			continue;
		counts[i] = qi("SELECT count(*) FROM number_state WHERE company_id = %lld AND status = '%s'",
		               company_id, sorted[i]);
		called += counts[i];
	}
	counts[sidx("IN_QUEUE")] = total - called;
	struct th_resp *r = get(token, "/api/stats/numbers-summary?company=%s", company);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total_numbers", total);
	check_shares(json_object_get(r->json, "status_counts"), counts, total);
	th_resp_free(r);
}

/* ---- processes ---- */

static struct th_proc *stats_start(void)
{
	struct th_proc *p = th_dialer_start("dialer-stats", db_url, "stats", "LOG_LEVEL=info", "METRICS_PUSH_SECONDS=1",
	                                    "STATS_BATCH_SIZE=200", NULL);
	assert_non_null(p);
	return p;
}

/* Stops dialer-stats (SIGKILL when kill9, else SIGTERM) and checks how it ended. */
static void stats_stop(bool kill9)
{
	struct th_proc *p = stats;
	stats = NULL; /* the teardown must not stop it again */
	if (kill9)
		assert_int_equal(kill(th_proc_pid(p), SIGKILL), 0);
	assert_int_equal(th_proc_stop(p), kill9 ? 128 + SIGKILL : 0);
}

/* A group's `pending` and `lag` from XINFO GROUPS dialer:results (redis-cli's nested output:
 * the tokens after the list numbering); -1 when the group is not there. */
static void group_state(const char *group, long long *pending, long long *lag)
{
	char *out = th_redis_cli("XINFO", "GROUPS", "dialer:results", NULL), *save = NULL;
	char *tok[512];
	int n = 0;
	*pending = *lag = -1;
	for (char *line = strtok_r(out, "\n", &save); line && n < 512; line = strtok_r(NULL, "\n", &save)) {
		char *t = line;
		for (;;) { /* " 1)  3) " */
			while (*t == ' ')
				t++;
			char *d = t;
			while (*d >= '0' && *d <= '9')
				d++;
			if (d > t && *d == ')') {
				t = d + 1;
				continue;
			}
			break;
		}
		if (*t == '"') {
			t++;
			t[strcspn(t, "\"")] = '\0';
		} else if (!strncmp(t, "(integer) ", 10)) {
			t += 10;
		}
		tok[n++] = t;
	}
	for (int i = 0; i + 1 < n; i++) {
		if (strcmp(tok[i], "name") || strcmp(tok[i + 1], group))
			continue;
		for (int k = i + 2; k + 1 < n && strcmp(tok[k], "name"); k++) {
			if (!strcmp(tok[k], "pending"))
				*pending = strtoll(tok[k + 1], NULL, 10);
			if (!strcmp(tok[k], "lag"))
				*lag = strtoll(tok[k + 1], NULL, 10);
		}
		break;
	}
	free(out);
}

/* Waits until group has read and acknowledged every entry of the stream. */
static void wait_drained(const char *group, int timeout_ms)
{
	long long pending = -1, lag = -1, deadline = th_now_ms() + timeout_ms;
	while (th_now_ms() < deadline) {
		group_state(group, &pending, &lag);
		if (pending == 0 && lag == 0)
			return;
		th_sleep_ms(100);
	}
	fail_msg("group %s not drained: pending %lld, lag %lld", group, pending, lag);
}

static long long sql_agent(long long company, const char *username, const char *first, bool active)
{
	return qi("INSERT INTO users (username, hashed_password, role, company_id, first_name, last_name, is_active)"
	          " VALUES ('%s', 'x', 'AGENT', %lld, %s%s%s, %s, %s) RETURNING id",
	          username, company, first ? "'" : "", first ? first : "NULL", first ? "'" : "",
	          first ? "'Ahmadi'" : "NULL", active ? "true" : "false");
}

static int group_setup(void **state)
{
	(void)state;
	/* this process's local days and hours (tz.h) are Tehran's too */
	if (tz_init(TZ_NAME) || th_setup_api(&api, &db_url, &root_token, NULL) < 0)
		return -1;
	acme_id = th_create_company(&api, root_token, "acme", "Acme", true);
	beta_id = th_create_company(&api, root_token, "beta", "Beta", true);
	ghost_id = th_create_company(&api, root_token, "ghost", "Ghost", false);
	th_call_expect(&api, "POST", "/api/acme/admins", root_token,
	               "{\"username\": \"acme-admin\", \"password\": \"adminpass1\", \"role\": \"ADMIN\"}", 200);
	th_call_expect(&api, "POST", "/api/beta/admins", root_token,
	               "{\"username\": \"beta-admin\", \"password\": \"adminpass1\", \"role\": \"ADMIN\"}", 200);
	acme_admin_token = th_login(&api, "acme-admin", "adminpass1");
	beta_admin_token = th_login(&api, "beta-admin", "adminpass1");
	agent_token = th_create_user(&api, root_token, "acme", "acme-agent", "agentpass1", "AGENT");
	if (!acme_admin_token || !beta_admin_token || !agent_token)
		return -1;
	ag1 = sql_agent(acme_id, "ali", "Ali", true);
	ag2 = qi("SELECT id FROM users WHERE username = 'acme-agent'");
	ag_off = sql_agent(acme_id, "off", NULL, false);
	beta_ag = sql_agent(beta_id, "beta-agent", NULL, true);
	sc_sales =
	    qi("INSERT INTO scenarios (company_id, name, display_name) VALUES (%lld, 'sales', 'Sales') RETURNING id",
	       acme_id);
	sc_alpha =
	    qi("INSERT INTO scenarios (company_id, name, display_name) VALUES (%lld, 'alpha', 'Alpha') RETURNING id",
	       acme_id);
	sc_beta =
	    qi("INSERT INTO scenarios (company_id, name, display_name) VALUES (%lld, 'b', 'Beta one') RETURNING id",
	       beta_id);
	ln_a = qi("INSERT INTO outbound_lines (company_id, phone_number, display_name) VALUES (%lld, '0211', 'Line A')"
	          " RETURNING id",
	          acme_id);
	ln_b = qi("INSERT INTO outbound_lines (company_id, phone_number, display_name) VALUES (%lld, '0212', 'Line B')"
	          " RETURNING id",
	          beta_id);
	th_call_expect(&api, "PUT", "/api/acme/billing", root_token,
	               "{\"wallet_balance\": 1000000000, \"cost_per_connected\": 200}", 200);
	th_call_expect(&api, "PUT", "/api/beta/billing", root_token, "{\"wallet_balance\": 1000000000}", 200);
	results = th_dialer_start("dialer-results", db_url, "results", "LOG_LEVEL=info", "CLAIM_IDLE_MS=1000",
	                          "METRICS_PUSH_SECONDS=1", NULL);
	stats = stats_start();
	return results && stats ? 0 : -1;
}

static int group_teardown(void **state)
{
	int st, sst, rst;
	(void)state;
	sst = th_proc_stop(stats); /* 0: SIGTERM handled, and LeakSanitizer found nothing */
	rst = th_proc_stop(results);
	free(acme_admin_token);
	free(beta_admin_token);
	free(agent_token);
	st = th_teardown_api(&api, &db_url, &root_token);
	if (sst || rst)
		fprintf(stderr, "dialer-stats exited with %d, dialer-results with %d\n", sst, rst);
	return st == 0 && sst == 0 && rst == 0 ? 0 : -1;
}

/* ---- the known load and every endpoint ---- */

/* Today's local midnight (seconds), from PostgreSQL's clock and zone data. */
static long long local_midnight(void)
{
	return qi("SELECT extract(epoch FROM date_trunc('day', now() AT TIME ZONE '" TZ_NAME "') AT TIME ZONE '" TZ_NAME
	          "')::bigint");
}

static void test_known_load(void **state)
{
	(void)state;
	long long now = now_us(), m0 = local_midnight() * 1000000;
	/* across yesterday's midnight: one attempt a minute before it, one a minute after */
	known_report(acme_id, m0 - 86400000000LL - 60000000, "CONNECTED", sc_sales, ln_a, ag1);
	known_report(acme_id, m0 - 86400000000LL + 60000000, "BUSY", sc_alpha, 0, ag2);
	known_report(acme_id, now - 5400000000LL, "MISSED", sc_sales, 0, ag1);
	known_report(acme_id, now - 120000000, "CONNECTED", sc_sales, ln_a, ag1);
	known_report(acme_id, now - 119000000, "CONNECTED", sc_sales, ln_a, ag1);
	known_report(acme_id, now - 118000000, "NOT_INTERESTED", sc_alpha, 0, ag2);
	known_report(acme_id, now - 117000000, "INBOUND_CALL", sc_sales, 0, 0);
	known_report(acme_id, now - 116000000, "HANGUP", 0, ln_a, 0);
	known_report(acme_id, now - 115000000, "FAILED", 0, 0, 0);
	known_report(acme_id, now - 114000000, "IN_QUEUE", 0, 0, 0);
	known_report(beta_id, now - 60000000, "CONNECTED", sc_beta, ln_b, beta_ag);
	known_report(beta_id, now - 59000000, "BUSY", sc_beta, 0, 0);
	/* an inactive agent: dead-lettered by the results worker, never counted */
	free(send_report("acme", now - 100000000, "CONNECTED", "09127009999", sc_sales, 0, ag_off));
	TH_WAIT_SQL(db_url, "SELECT count(*) FROM dead_letters", "1", 20000);
	wait_recount(30000);
	assert_int_equal(qi("SELECT COALESCE(sum(attempts), 0) FROM stats_daily WHERE company_id = 0"), nknown);
}

/* The buckets of attempt-trend: span of them, step seconds apart (a Tehran day or hour), the last
 * one now's, each with the counts of the attempts it spans. */
static void check_buckets(const json_t *buckets, long span, long step, long long company)
{
	long long prev = 0, counts[13];
	assert_int_equal(json_array_size(buckets), span);
	for (long b = 0; b < span; b++) {
		const json_t *e = json_array_get(buckets, (size_t)b);
		const char *s = th_json_str(e, "bucket");
		if (step == 86400)
			assert_string_equal(s + 10, "T00:00:00+03:30"); /* Tehran midnight */
		else
			assert_string_equal(s + 13, ":00:00+03:30"); /* a Tehran hour */
		long long t = parse_offset_time(s);
		if (b)
			assert_int_equal(t - prev, step);
		prev = t;
		long long total = expect(company, t, t + step, counts);
		TH_EXPECT_INT(e, "total_attempts", total);
		check_shares(json_object_get(e, "status_counts"), counts, total);
	}
	long long now = time(NULL);
	assert_true(prev <= now && now < prev + step); /* the last bucket is now's */
}

static void test_attempt_trend(void **state)
{
	struct th_resp *r;
	(void)state;
	/* default: 14 days */
	r = get(acme_admin_token, "/api/stats/attempt-trend?company=acme");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "granularity", "day");
	check_buckets(json_object_get(r->json, "buckets"), 14, 86400, acme_id);
	th_resp_free(r);
	r = get(acme_admin_token, "/api/stats/attempt-trend?company=acme&granularity=day&span=3");
	TH_EXPECT_STATUS(r, 200);
	check_buckets(json_object_get(r->json, "buckets"), 3, 86400, acme_id);
	th_resp_free(r);
	r = get(acme_admin_token, "/api/stats/attempt-trend?company=acme&granularity=hour&span=30");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "granularity", "hour");
	check_buckets(json_object_get(r->json, "buckets"), 30, 3600, acme_id);
	th_resp_free(r);
	/* without a company: every company for a superuser, the own one for a company's admin */
	r = get(root_token, "/api/stats/attempt-trend?span=240");
	TH_EXPECT_STATUS(r, 200);
	check_buckets(json_object_get(r->json, "buckets"), 240, 86400, 0);
	th_resp_free(r);
	r = get(beta_admin_token, "/api/stats/attempt-trend?span=2&granularity=hour");
	TH_EXPECT_STATUS(r, 200);
	check_buckets(json_object_get(r->json, "buckets"), 2, 3600, beta_id);
	th_resp_free(r);
}

static void check_summary(const char *token, const char *query, long long company, long long from)
{
	long long counts[13], conn = 0;
	long long total = expect(company, from, 1LL << 40, counts);
	struct th_resp *r = get(token, "/api/stats/attempts-summary%s", query);
	TH_EXPECT_STATUS(r, 200);
	for (int i = 0; i < 13; i++)
		conn += is_connected(i) ? counts[i] : 0;
	TH_EXPECT_INT(r->json, "total_attempts", total);
	check_shares(json_object_get(r->json, "status_counts"), counts, total);
	TH_EXPECT_INT(r->json, "connected_count", conn);
	assert_true(fabs(json_real_value(json_object_get(r->json, "connected_percentage")) - pct(conn, total)) < 1e-9);
	th_resp_free(r);
}

static void test_attempts_summary(void **state)
{
	long long m0 = local_midnight(), now = time(NULL);
	(void)state;
	/* hours=1: from now − 1 h to the minute (the attempts are minutes away from that edge) */
	check_summary(acme_admin_token, "?company=acme&hours=1", acme_id, (now - 3600) / 60 * 60);
	check_summary(acme_admin_token, "?company=acme&hours=2", acme_id, (now - 7200) / 60 * 60);
	check_summary(acme_admin_token, "?company=acme&hours=24", acme_id, (now - 24 * 3600) / 60 * 60);
	/* beyond 24 hours: from the start of the local hour */
	struct tz_local l;
	tz_local_from_utc((time_t)(now - 720 * 3600), &l);
	check_summary(acme_admin_token, "?company=acme&hours=720", acme_id, now - 720 * 3600 - (l.mm * 60 + l.ss));
	tz_local_from_utc((time_t)(now - 26 * 3600), &l);
	check_summary(acme_admin_token, "?company=acme&hours=26", acme_id, now - 26 * 3600 - (l.mm * 60 + l.ss));
	/* days=N: from local midnight N−1 days ago; hours wins over days */
	check_summary(acme_admin_token, "?company=acme&days=1", acme_id, m0);
	check_summary(acme_admin_token, "?company=acme&days=2", acme_id, m0 - 86400);
	check_summary(acme_admin_token, "?company=acme&days=3&hours=1", acme_id, (now - 3600) / 60 * 60);
	check_summary(acme_admin_token, "?company=acme", acme_id, 0);
	check_summary(root_token, "?days=365", 0, m0 - 364 * 86400);
	check_summary(beta_admin_token, "", beta_id, 0);
}

static void test_costs(void **state)
{
	long long counts[13], day = 0, month = 0;
	long long m0 = local_midnight(),
	          m1 = qi("SELECT extract(epoch FROM date_trunc('month', now() AT TIME ZONE '" TZ_NAME
	                  "') AT TIME ZONE '" TZ_NAME "')::bigint");
	(void)state;
	expect(acme_id, m0, 1LL << 40, counts);
	for (int i = 0; i < 13; i++)
		day += is_connected(i) ? counts[i] : 0;
	expect(acme_id, m1, 1LL << 40, counts);
	for (int i = 0; i < 13; i++)
		month += is_connected(i) ? counts[i] : 0;
	struct th_resp *r = get(acme_admin_token, "/api/stats/costs?company=acme");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "currency", "Toman");
	TH_EXPECT_INT(r->json, "cost_per_connected", 200); /* the billing rate (COMPAT preface 6) */
	TH_EXPECT_INT(r->json, "daily_count", day);
	TH_EXPECT_INT(r->json, "daily_cost", day * 200);
	TH_EXPECT_INT(r->json, "monthly_count", month);
	TH_EXPECT_INT(r->json, "monthly_cost", month * 200);
	th_resp_free(r);
}

/* dashboard-stats for acme against the known load in [from, to). */
static void check_dashboard(const char *query, bool by_line, long long from, long long to)
{
	struct {
		long long id;
		const char *name;
		long long c[13];
	} g[3] = {{0}};
	int ng;
	if (by_line) {
		g[0].id = ln_a, g[0].name = "Line A";
		ng = 1;
	} else {
		g[0].id = sc_alpha, g[0].name = "Alpha"; /* sorted by name */
		g[1].id = sc_sales, g[1].name = "Sales";
		ng = 2;
	}
	long long tot[13] = {0};
	for (int i = 0; i < nknown; i++) {
		const struct att *a = &known[i];
		long long id = by_line ? a->ln : a->sc;
		if (a->company != acme_id || !id || a->at_us < from * 1000000 || a->at_us >= to * 1000000)
			continue;
		for (int k = 0; k < ng; k++)
			if (g[k].id == id)
				g[k].c[a->st]++;
		tot[a->st]++;
	}
	struct th_resp *r = get(acme_admin_token, "/api/stats/dashboard-stats?company=acme%s", query);
	TH_EXPECT_STATUS(r, 200);
	const json_t *groups = json_object_get(r->json, "groups");
	size_t k = 0;
	for (int j = 0; j < ng; j++) {
		long long total = 0, bill = 0;
		for (int i = 0; i < 13; i++) {
			total += g[j].c[i];
			bill += is_connected(i) ? g[j].c[i] : 0;
		}
		if (!total)
			continue; /* groups without attempts in the window are not listed */
		const json_t *e = json_array_get(groups, k++);
		assert_non_null(e);
		TH_EXPECT_INT(e, "id", g[j].id);
		TH_EXPECT_STR(e, "name", g[j].name);
		TH_EXPECT_STR(e, "display_name", g[j].name);
		TH_EXPECT_INT(e, "total", total);
		TH_EXPECT_INT(e, "billable", bill);
		TH_EXPECT_INT(e, "inbound", g[j].c[sidx("INBOUND_CALL")]);
		const json_t *st = json_object_get(e, "statuses");
		assert_int_equal(json_object_size(st), 13);
		for (int i = 0; i < 13; i++)
			TH_EXPECT_INT(st, sorted[i], g[j].c[i]);
	}
	assert_int_equal(json_array_size(groups), k);
	const json_t *t = json_object_get(r->json, "totals");
	long long total = 0, bill = 0;
	for (int i = 0; i < 13; i++) {
		TH_EXPECT_INT(t, sorted[i], tot[i]);
		total += tot[i];
		bill += is_connected(i) ? tot[i] : 0;
	}
	TH_EXPECT_INT(t, "total", total);
	TH_EXPECT_INT(t, "billable", bill);
	TH_EXPECT_INT(t, "inbound", tot[sidx("INBOUND_CALL")]);
	th_resp_free(r);
}

static void test_dashboard(void **state)
{
	long long m0 = local_midnight(), now = time(NULL), end = 1LL << 40;
	(void)state;
	check_dashboard("", false, m0, end); /* defaults: scenario, today */
	check_dashboard("&group_by=scenario&time_filter=today", false, m0, end);
	check_dashboard("&group_by=line&time_filter=today", true, m0, end);
	check_dashboard("&time_filter=1h", false, (now - 3600) / 60 * 60, end);
	check_dashboard("&time_filter=yesterday", false, m0 - 86400, m0);
	check_dashboard("&group_by=line&time_filter=yesterday", true, m0 - 86400, m0);
	check_dashboard("&time_filter=7d", false, m0 - 6 * 86400, end);
	check_dashboard("&group_by=line&time_filter=30d", true, m0 - 29 * 86400, end);
	/* zero groups: the totals keys are still there (the panel reads them unguarded) */
	struct th_resp *r = get(beta_admin_token, "/api/stats/dashboard-stats?company=beta&time_filter=yesterday");
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(json_array_size(json_object_get(r->json, "groups")), 0);
	TH_EXPECT_INT(json_object_get(r->json, "totals"), "total", 0);
	TH_EXPECT_INT(json_object_get(r->json, "totals"), "billable", 0);
	th_resp_free(r);
}

static void test_numbers_summary_known(void **state)
{
	struct th_resp *r;
	(void)state;
	check_numbers_summary(acme_admin_token, "acme", acme_id);
	check_numbers_summary(root_token, "beta", beta_id);
	/* a company's admin without `company`: their own company */
	r = get(acme_admin_token, "/api/stats/numbers-summary");
	TH_EXPECT_STATUS(r, 200);
	long long in_queue = json_integer_value(json_object_get(
	    json_array_get(json_object_get(r->json, "status_counts"), (size_t)sidx("IN_QUEUE")), "count"));
	assert_int_equal(in_queue, qi("SELECT count(*) FROM numbers") -
	                               qi("SELECT count(*) FROM number_state WHERE company_id = %lld AND status <> "
	                                  "'IN_QUEUE'",
	                                  acme_id));
	th_resp_free(r);
	/* a superuser without one: every count 0, the pool's total */
	r = get(root_token, "/api/stats/numbers-summary");
	TH_EXPECT_STATUS(r, 200);
	long long zero[13] = {0};
	TH_EXPECT_INT(r->json, "total_numbers", qi("SELECT count(*) FROM numbers"));
	check_shares(json_object_get(r->json, "status_counts"), zero, qi("SELECT count(*) FROM numbers"));
	th_resp_free(r);
}

static void test_agents(void **state)
{
	(void)state;
	struct {
		long long id, attempts, conn, last_us;
	} want[3] = {{ag1, 0, 0, 0}, {ag2, 0, 0, 0}, {ag_off, 0, 0, 0}};
	for (int i = 0; i < nknown; i++)
		for (int k = 0; k < 3; k++)
			if (known[i].company == acme_id && known[i].ag == want[k].id) {
				want[k].attempts++;
				want[k].conn += is_connected(known[i].st);
				if (known[i].at_us > want[k].last_us)
					want[k].last_us = known[i].at_us;
			}
	struct th_resp *r = get(acme_admin_token, "/api/stats/agents?company=acme");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "company", "acme");
	const json_t *agents = json_object_get(r->json, "agents");
	/* ali (3), acme-agent (2), off (0, its attempt was dead-lettered) */
	assert_int_equal(json_array_size(agents), 3);
	for (int k = 0; k < 3; k++) {
		const json_t *e = json_array_get(agents, (size_t)k);
		TH_EXPECT_INT(e, "agent_id", want[k].id);
		TH_EXPECT_INT(e, "attempts", want[k].attempts);
		TH_EXPECT_INT(e, "connected", want[k].conn);
		double rate = json_real_value(json_object_get(e, "connect_rate"));
		assert_true(fabs(rate - pct(want[k].conn, want[k].attempts)) < 1e-9);
		if (want[k].last_us) {
			char *ts = q("SELECT api_ts(to_timestamp(%lld / 1e6))", want[k].last_us);
			TH_EXPECT_STR(e, "last_activity", ts);
			free(ts);
		} else {
			assert_true(json_is_null(json_object_get(e, "last_activity")));
		}
	}
	TH_EXPECT_STR(json_array_get(agents, 0), "full_name", "Ali Ahmadi");
	TH_EXPECT_STR(json_array_get(agents, 1), "full_name", "acme-agent");
	assert_true(json_is_false(json_object_get(json_array_get(agents, 2), "is_active")));
	th_resp_free(r);
	/* 2020-01-01 in Persian digits (percent-encoded UTF-8, as the panel sends it), to itself */
	r = get(acme_admin_token, "/api/stats/agents?start_date=%s&end_date=%s",
	        "%DB%B2%DB%B0%DB%B2%DB%B0-%DB%B0%DB%B1-%DB%B0%DB%B1", "2020-01-01");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "attempts", 0);
	TH_EXPECT_INT(json_array_get(json_object_get(r->json, "agents"), 0), "attempts", 0);
	th_resp_free(r);
}

static void test_daily(void **state)
{
	long long m0 = local_midnight(), counts[13];
	int y, m, d, jy, jm, jd;
	char first[16], last[16], jal[16], path[256];
	(void)state;
	struct tz_local l;
	long today;
	tz_local_from_utc((time_t)m0 + 3600, &l);
	today = l.day;
	tz_civil_from_days(today - 2, &y, &m, &d);
	snprintf(first, sizeof(first), "%04d-%02d-%02d", y, m, d);
	tz_civil_from_days(today, &y, &m, &d);
	snprintf(last, sizeof(last), "%04d-%02d-%02d", y, m, d);
	snprintf(path, sizeof(path), "/api/stats/daily?company=acme&start_date=%s&end_date=%s", first, last);
	struct th_resp *r = th_call(&api, "GET", path, acme_admin_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "start_date", first);
	TH_EXPECT_STR(r->json, "end_date", last);
	const json_t *days = json_object_get(r->json, "days");
	assert_int_equal(json_array_size(days), 3);
	long long all = 0;
	for (int k = 0; k < 3; k++) {
		const json_t *e = json_array_get(days, (size_t)k);
		tz_civil_from_days(today - 2 + k, &y, &m, &d);
		assert_int_equal(jalali_from_days(today - 2 + k, &jy, &jm, &jd), 0);
		snprintf(first, sizeof(first), "%04d-%02d-%02d", y, m, d);
		snprintf(jal, sizeof(jal), "%04d-%02d-%02d", jy, jm, jd);
		TH_EXPECT_STR(e, "date", first);
		TH_EXPECT_STR(e, "jalali_date", jal);
		long long t0 = m0 - (2 - k) * 86400LL;
		long long total = expect(acme_id, t0, t0 + 86400, counts);
		TH_EXPECT_INT(e, "total", total);
		check_shares(json_object_get(e, "status_counts"), counts, total);
		all += total;
	}
	TH_EXPECT_INT(r->json, "total_attempts", all);
	th_resp_free(r);
	/* zero-filled; the default range is the last 30 days; the own company without `company` */
	r = get(acme_admin_token, "/api/stats/daily");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "company", "acme");
	assert_int_equal(json_array_size(json_object_get(r->json, "days")), 30);
	TH_EXPECT_STR(json_array_get(json_object_get(r->json, "days"), 29), "date", last);
	th_resp_free(r);
}

static void test_errors(void **state)
{
	static const char *const all[] = {
	    "/api/stats/numbers-summary?company=acme",
	    "/api/stats/attempt-trend?company=acme",
	    "/api/stats/attempts-summary?company=acme",
	    "/api/stats/costs?company=acme",
	    "/api/stats/dashboard-stats?company=acme",
	    "/api/stats/agents?company=acme",
	    "/api/stats/daily?company=acme",
	};
	struct th_resp *r;
	(void)state;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		TH_EXPECT_ADMIN_GUARDS(&api, "GET", all[i], agent_token, beta_admin_token, NULL);
		char p[256];
		size_t at = (size_t)(strstr(all[i], "acme") - all[i]);
		snprintf(p, sizeof(p), "%.*snope", (int)at, all[i]);
		r = th_call(&api, "GET", p, root_token, NULL);
		TH_EXPECT_ERROR(r, 404, "Company not found");
		th_resp_free(r);
		snprintf(p, sizeof(p), "%.*sghost", (int)at, all[i]); /* inactive */
		r = th_call(&api, "GET", p, root_token, NULL);
		TH_EXPECT_ERROR(r, 404, "Company not found");
		th_resp_free(r);
	}
	/* 422 naming a parameter; 400 for a date that cannot be read ("Invalid …" below), before the
	 * company is looked at (COMPAT §6's order): an unknown one (404) or a missing one (a superuser
	 * of no company must name one: 422) */
	static const char *const invalid[][2] = {
	    {"/api/stats/attempt-trend?company=acme&span=0", "span"},
	    {"/api/stats/attempt-trend?company=acme&span=241", "span"},
	    {"/api/stats/attempt-trend?company=acme&span=x", "span"},
	    {"/api/stats/attempt-trend?company=acme&granularity=week", "granularity"},
	    {"/api/stats/attempts-summary?days=0", "days"},
	    {"/api/stats/attempts-summary?days=366", "days"},
	    {"/api/stats/attempts-summary?hours=721", "hours"},
	    {"/api/stats/costs", "company"},
	    {"/api/stats/dashboard-stats", "company"},
	    {"/api/stats/dashboard-stats?company=acme&group_by=agent", "group_by"},
	    {"/api/stats/dashboard-stats?company=acme&time_filter=2h", "time_filter"},
	    {"/api/stats/daily", "company"}, /* a superuser names one */
	    {"/api/stats/agents", "company"},
	    {"/api/stats/daily?company=acme&start_date=2026-02-10&end_date=2026-02-09", "end_date"},
	    {"/api/stats/agents?company=acme&start_date=2025-01-01&end_date=2026-01-02", "end_date"},
	    /* a required company before the other parameters; the range before a missing company */
	    {"/api/stats/dashboard-stats?group_by=agent&time_filter=2h", "company"},
	    {"/api/stats/daily?start_date=2026-02-10&end_date=2026-02-09", "end_date"},
	    {"/api/stats/daily?company=nope&start_date=2026-02-30", "Invalid start_date"},
	    {"/api/stats/agents?company=nope&end_date=yesterday", "Invalid end_date"},
	    {"/api/stats/daily?start_date=2026-02-30", "Invalid start_date"},
	    {"/api/stats/agents?start_date=2026-02-01&end_date=yesterday", "Invalid end_date"},
	};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		r = th_call(&api, "GET", invalid[i][0], root_token, NULL);
		if (!strncmp(invalid[i][1], "Invalid ", 8))
			TH_EXPECT_ERROR(r, 400, invalid[i][1]);
		else
			TH_EXPECT_INVALID(r, invalid[i][1]);
		th_resp_free(r);
	}
	/* both paths answer */
	r = get(acme_admin_token, "/api/stats/costs/?company=acme");
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);

	/* an admin of no company (only SQL makes one) never gets every company's counts */
	char *orphan = th_create_user(&api, root_token, "beta", "orphan-admin", "adminpass1", "ADMIN");
	assert_non_null(orphan);
	free(q("UPDATE users SET company_id = NULL WHERE username = 'orphan-admin'"));
	r = get(orphan, "/api/stats/attempt-trend");
	TH_EXPECT_ERROR(r, 403, "User is not assigned to a company");
	th_resp_free(r);
	r = get(orphan, "/api/stats/attempts-summary?days=3");
	TH_EXPECT_ERROR(r, 403, "User is not assigned to a company");
	th_resp_free(r);
	r = get(orphan, "/api/stats/daily");
	TH_EXPECT_INVALID(r, "company");
	th_resp_free(r);
	free(q("DELETE FROM users WHERE username = 'orphan-admin'"));
	free(orphan);
}

/* ---- numbers-summary after every path that changes number_state or numbers ---- */

static void bulk(const char *body)
{
	struct th_resp *r = th_call(&api, "POST", "/api/numbers/bulk", root_token, body);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
}

static void check_both(void)
{
	check_numbers_summary(root_token, "acme", acme_id);
	check_numbers_summary(root_token, "beta", beta_id);
}

static void test_numbers_summary_paths(void **state)
{
	char body[512], path[128];
	(void)state;
	/* add (the import's path as well: an INSERT into numbers), with duplicates */
	th_call_expect(&api, "POST", "/api/numbers", root_token,
	               "{\"phone_numbers\": [\"09127100001\", \"09127100002\", \"09127100003\", \"09127100004\","
	               " \"09127100005\", \"09127100001\", \"bad\"]}",
	               200);
	check_both();
	/* COPY, the import worker's way into numbers (a server-side program: the test's database user
	 * is a superuser) */
	free(q("COPY numbers (phone_number) FROM PROGRAM 'seq -f 0912800%%04g 1 500'"));
	check_both();
	long long n1 = qi("SELECT id FROM numbers WHERE phone_number = '09127100001'");
	long long n2 = qi("SELECT id FROM numbers WHERE phone_number = '09127100002'");
	long long n3 = qi("SELECT id FROM numbers WHERE phone_number = '09127100003'");
	long long n4 = qi("SELECT id FROM numbers WHERE phone_number = '09127100004'");
	/* bulk status update (new states, and one over an existing state) */
	snprintf(body, sizeof(body),
	         "{\"action\": \"update_status\", \"status\": \"BANNED\", \"ids\": [%lld, %lld, %lld],"
	         " \"company_name\": \"acme\"}",
	         n1, n2, n3);
	bulk(body);
	check_both();
	snprintf(body, sizeof(body),
	         "{\"action\": \"update_status\", \"status\": \"MISSED\", \"ids\": [%lld], \"company_name\": \"acme\"}",
	         n1);
	bulk(body);
	check_both();
	/* single status update, then IN_QUEUE (dialable again: the state goes) */
	snprintf(path, sizeof(path), "/api/numbers/%lld/status?company=beta", n4);
	th_call_expect(&api, "PUT", path, root_token, "{\"status\": \"POWER_OFF\"}", 200);
	check_both();
	snprintf(path, sizeof(path), "/api/numbers/%lld/status?company=acme", n2);
	th_call_expect(&api, "PUT", path, root_token, "{\"status\": \"IN_QUEUE\"}", 200);
	check_both();
	/* reset: single, then bulk */
	snprintf(path, sizeof(path), "/api/numbers/%lld/reset?company=acme", n3);
	th_call_expect(&api, "POST", path, root_token, NULL, 200);
	check_both();
	snprintf(body, sizeof(body),
	         "{\"action\": \"reset\", \"select_all\": true, \"company_name\": \"acme\","
	         " \"filter_status\": \"CONNECTED\"}");
	bulk(body);
	check_both();
	/* delete: single (its states in every company go with it), then bulk */
	snprintf(path, sizeof(path), "/api/numbers/%lld?company=beta", n4);
	th_call_expect(&api, "DELETE", path, root_token, NULL, 200);
	check_both();
	snprintf(
	    body, sizeof(body),
	    "{\"action\": \"delete\", \"select_all\": true, \"search\": \"091271000\", \"company_name\": \"acme\"}");
	bulk(body);
	check_both();
	/* results (the attempts trigger's upsert): a new state and one over an existing state */
	free(send_report("acme", now_us() - 1000000, "BUSY", "09127200001", 0, 0, 0));
	char *id = send_report("acme", now_us(), "HANGUP", "09127200001", 0, 0, 0);
	char sql[160];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM call_attempts WHERE stream_id = '%s'", id);
	TH_WAIT_SQL(db_url, sql, "1", 20000);
	free(id);
	check_both();
	/* what the worker folds adds up to the same: the deltas are folded within a couple of seconds */
	TH_WAIT_SQL(db_url, "SELECT count(*) FROM stats_number_deltas", "0", 10000);
	check_both();
}

/* ---- the random load, with dialer-stats SIGKILLed ---- */

static void random_reports(int n, unsigned *seed, long long m0)
{
	for (int i = 0; i < n; i++) {
		bool acme = rand_r(seed) % 3 != 0;
		long long now = now_us(), at;
		switch (rand_r(seed) % 5) {
		case 0: /* around yesterday's Tehran midnight, ± 3 h */
			at = m0 * 1000000 - 86400000000LL + ((long long)(rand_r(seed) % 21600) - 10800) * 1000000;
			break;
		case 1: /* the last 90 minutes (the minute rollups of the groups) */
			at = now - (long long)(rand_r(seed) % 5400) * 1000000;
			break;
		case 2: /* 40 days ago: past the minute rollups */
			at = now - 40 * 86400000000LL - (long long)(rand_r(seed) % 86400) * 1000000;
			break;
		case 3: /* the last 5 days */
			at = now - (long long)(rand_r(seed) % 432000) * 1000000;
			break;
		default: /* 3 to 24 hours ago */
			at = now - (3 * 3600 + (long long)(rand_r(seed) % 75600)) * 1000000;
		}
		at += rand_r(seed) % 1000000;
		long long sc = 0, ln = 0, ag = 0;
		int pick = rand_r(seed) % 4;
		if (pick == 1)
			sc = acme ? (rand_r(seed) % 2 ? sc_sales : sc_alpha) : sc_beta;
		if (pick == 2)
			sc = sc_beta; /* another company's: stored without a scenario for acme */
		if (rand_r(seed) % 2)
			ln = acme ? ln_a : ln_b;
		int a = rand_r(seed) % 4;
		if (a == 1)
			ag = acme ? ag1 : beta_ag;
		else if (a == 2)
			ag = acme ? ag2 : 0;
		else if (a == 3 && rand_r(seed) % 20 == 0)
			ag = ag_off; /* inactive: dead-lettered (acme), or another company's (ignored) */
		char phone[24];
		snprintf(phone, sizeof(phone), "0913%07d", rand_r(seed) % 2000);
		free(send_report(acme ? "acme" : "beta", at, sorted[rand_r(seed) % 13], phone, sc, ln, ag));
	}
}

static void test_random_sigkill(void **state)
{
	unsigned seed = 20260218;
	long long m0 = local_midnight();
	char us[24];
	(void)state;
	random_reports(RANDOM_LOAD / 3, &seed, m0);

	/* SIGKILL in the middle of counting, and down for longer than the results worker's trim
	 * period (10 s) while results keep arriving: nothing it has not counted may be trimmed */
	stats_stop(true);
	long long down = th_now_ms();
	random_reports(RANDOM_LOAD / 3, &seed, m0);
	/* entries the results worker dead-letters: an unknown company, a malformed entry */
	snprintf(us, sizeof(us), "%lld", now_us());
	free(th_redis_cli("XADD", "dialer:results", "*", "v", "1", "company_id", "999999", "status", "BUSY",
	                  "attempted_at", us, NULL));
	free(th_redis_cli("XADD", "dialer:results", "*", "v", "1", "company_id", "1", "status", "BUSY", NULL));
	while (th_now_ms() - down < 12000)
		th_sleep_ms(100);
	stats = stats_start();

	/* again while it catches up */
	random_reports(RANDOM_LOAD / 6, &seed, m0);
	th_sleep_ms(300);
	stats_stop(true);
	stats = stats_start();
	random_reports(RANDOM_LOAD / 6, &seed, m0);

	/* every result applied or dead-lettered; every applied one counted once, the others skipped */
	wait_drained("results", 60000);
	wait_recount(90000);
	wait_drained("stats", 30000);
	TH_EXPECT_SQL(db_url, "t",
	              "SELECT (SELECT count(*) FROM dead_letters WHERE reason LIKE 'malformed entry:%') = 2"
	              " AND (SELECT count(*) FROM dead_letters WHERE company_id IS NULL) = 1"
	              " AND (SELECT count(*) FROM dead_letters WHERE reason = 'Agent is inactive') >= 1",
	              NULL);
	check_both();
}

/* ---- a company deleted before its results were counted ---- */

static void test_company_deleted(void **state)
{
	(void)state;
	long long gamma = th_create_company(&api, root_token, "gamma", "Gamma", true);
	th_call_expect(&api, "PUT", "/api/gamma/billing", root_token, "{\"wallet_balance\": 100000}", 200);
	/* counted ones */
	for (int i = 0; i < 5; i++) {
		char phone[24];
		snprintf(phone, sizeof(phone), "0914000%04d", i);
		free(send_report("gamma", now_us(), "CONNECTED", phone, 0, 0, 0));
	}
	TH_WAIT_SQL(db_url,
	            "SELECT count(*) FROM call_attempts a JOIN companies c ON c.id = a.company_id"
	            " WHERE c.name = 'gamma'",
	            "5", 20000);
	wait_recount(30000);
	/* applied but not counted yet: the company goes before dialer-stats comes back */
	stats_stop(false);
	for (int i = 5; i < 12; i++) {
		char phone[24];
		snprintf(phone, sizeof(phone), "0914000%04d", i);
		free(send_report("gamma", now_us(), i % 2 ? "BUSY" : "CONNECTED", phone, 0, 0, 0));
	}
	TH_WAIT_SQL(db_url,
	            "SELECT count(*) FROM call_attempts a JOIN companies c ON c.id = a.company_id"
	            " WHERE c.name = 'gamma'",
	            "12", 20000);
	char path[64], cid[24];
	snprintf(path, sizeof(path), "/api/companies/%lld", gamma);
	th_call_expect(&api, "DELETE", path, root_token, "{\"confirm_name\": \"gamma\"}", 200);
	stats = stats_start();
	wait_drained("stats", 30000); /* its entries are skipped, and acknowledged */
	wait_recount(30000);
	snprintf(cid, sizeof(cid), "%lld", gamma);
	TH_EXPECT_SQL(db_url, "0",
	              "SELECT (SELECT count(*) FROM stats_number_counts WHERE company_id = $1::int)"
	              " + (SELECT count(*) FROM stats_number_deltas WHERE company_id = $1::int)"
	              " + (SELECT count(*) FROM stats_daily WHERE company_id = $1::int)"
	              " + (SELECT count(*) FROM stats_agents_daily WHERE company_id = $1::int)",
	              cid, NULL);
	check_both();
}

/* ---- rebuilds ---- */

/* The group lost (as when Redis restarts without its data) with dialer-stats down, and 20 results
 * arriving meanwhile (phones <prefix>0000..0019). */
static void lose_group(const char *prefix)
{
	stats_stop(false);
	free(th_redis_cli("XGROUP", "DESTROY", "dialer:results", "stats", NULL));
	for (int i = 0; i < 20; i++) {
		char phone[24];
		snprintf(phone, sizeof(phone), "%s%04d", prefix, i);
		free(send_report(i % 2 ? "acme" : "beta", now_us() - i * 1000000LL, sorted[i % 13], phone, 0, 0, 0));
	}
}

static void test_rebuilds(void **state)
{
	(void)state;
	/* attempts written by SQL (not through the stream) are counted by a rebuild on request */
	free(q("INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at, scenario_id,"
	       " outbound_line_id, agent_id)"
	       " SELECT %lld, 1, '09120000000', (ARRAY['CONNECTED','BUSY','MISSED','HANGUP'])[1 + g %% 4],"
	       " now() - g * interval '97 seconds', CASE WHEN g %% 3 = 0 THEN %lld END, CASE WHEN g %% 2 = 0 THEN %lld "
	       "END,"
	       " CASE WHEN g %% 5 = 0 THEN %lld END FROM generate_series(1, 5000) g",
	       acme_id, sc_sales, ln_a, ag1));
	char env_db[512];
	snprintf(env_db, sizeof(env_db), "DATABASE_URL=%s", db_url);
	const char *env[] = {env_db, NULL};
	const char *argv[] = {"sh", "-c", "\"$DIALER_BIN_DIR/dialerctl\" stats-rebuild --numbers", NULL};
	assert_int_equal(th_run(argv, env, 60000, NULL), 0);
	wait_recount(60000);
	TH_EXPECT_SQL(db_url, "t", "SELECT backfilled AND rebuilt_rows > 5000 FROM stats_state", NULL);
	check_both();

	/* the group lost, results arriving meanwhile */
	lose_group("0915000");
	long long before = qi("SELECT extract(epoch FROM rebuilt_at) * 1000 FROM stats_state");
	stats = stats_start();
	wait_recount(60000);
	assert_true(qi("SELECT extract(epoch FROM rebuilt_at) * 1000 FROM stats_state") > before);
	/* the new group holds nothing back and receives what comes next */
	free(send_report("acme", now_us(), "CONNECTED", "09150009999", sc_sales, ln_a, ag1));
	TH_WAIT_SQL(db_url, "SELECT count(*) FROM call_attempts WHERE phone_number = '09150009999'", "1", 20000);
	wait_recount(30000);

	/* rebuilt while the results group holds an entry it has not finished (its id "<ms>-0"): the
	 * rebuild counts up to just before it, and the entry is counted once it is applied */
	wait_drained("results", 20000);
	stats_stop(false);
	struct th_proc *rp = results;
	results = NULL;
	assert_int_equal(th_proc_stop(rp), 0);
	free(th_redis_cli("XGROUP", "DESTROY", "dialer:results", "stats", NULL));
	char id[48], at[24], cid[24], want[48];
	long long ms = now_us() / 1000 + 1000;
	snprintf(id, sizeof(id), "%lld-0", ms);
	snprintf(at, sizeof(at), "%lld", now_us());
	snprintf(cid, sizeof(cid), "%lld", acme_id);
	const char *xadd[] = {"redis-cli",
	                      "-u",
	                      th_env("REDIS_URL"),
	                      "XADD",
	                      "dialer:results",
	                      id,
	                      "v",
	                      "1",
	                      "company_id",
	                      cid,
	                      "phone",
	                      "09150008888",
	                      "status",
	                      "BUSY",
	                      "attempted_at",
	                      at,
	                      NULL};
	char *out = NULL;
	assert_int_equal(th_run(xadd, NULL, 20000, &out), 0);
	free(out);
	free(th_redis_cli("XREADGROUP", "GROUP", "results", "gone-consumer", "COUNT", "10", "STREAMS", "dialer:results",
	                  ">", NULL));
	stats = stats_start();
	snprintf(want, sizeof(want), "%lld-9223372036854775807/true", ms - 1);
	TH_WAIT_SQL(db_url, "SELECT last_ms || '-' || last_seq || '/' || backfilled FROM stats_state", want, 20000);
	results = th_dialer_start("dialer-results", db_url, "results", "LOG_LEVEL=info", "CLAIM_IDLE_MS=1000",
	                          "METRICS_PUSH_SECONDS=1", NULL);
	assert_non_null(results);
	TH_WAIT_SQL(db_url, "SELECT count(*) FROM call_attempts WHERE phone_number = '09150008888'", "1", 20000);
	wait_recount(30000);
	wait_drained("stats", 20000);
}

/* A crash in the middle of a rebuild forced by a lost group: dialer-stats SIGKILLed after it
 * re-created the group and before the rebuild's COMMIT (the rebuild held by a table lock, its
 * session ended after the kill). The rebuild must stay requested (stats_state.backfilled false),
 * so the next copy rebuilds: otherwise the new group delivers only what comes after its start, and
 * the results that arrived while the group was gone are never counted. */
static void test_rebuild_crash(void **state)
{
	(void)state;
	wait_recount(30000);
	lose_group("0916000");
	wait_drained("results", 20000); /* all of them before where the new group will start */
	long long before = qi("SELECT extract(epoch FROM rebuilt_at) * 1000 FROM stats_state");

	PGconn *lock = PQconnectdb(db_url);
	assert_int_equal(PQstatus(lock), CONNECTION_OK);
	PGresult *r = PQexec(lock, "BEGIN; LOCK TABLE stats_daily IN SHARE MODE");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	stats = stats_start();
	/* the group re-created, and the rebuild waiting for the lock */
	TH_WAIT_SQL(db_url,
	            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
	            " AND query LIKE '%stats_rebuild(%'",
	            "1", 20000);
	long long pending, lag;
	group_state("stats", &pending, &lag);
	assert_int_equal(pending, 0);
	stats_stop(true);
	/* the dead copy's rebuild must not commit when the lock goes: end its session */
	TH_EXPECT_SQL(db_url, "1",
	              "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
	              " AND query LIKE '%stats_rebuild(%'",
	              NULL);
	PQclear(PQexec(lock, "ROLLBACK"));
	PQfinish(lock);
	TH_EXPECT_SQL(db_url, "f", "SELECT backfilled FROM stats_state", NULL);

	stats = stats_start();
	wait_recount(60000);
	assert_true(qi("SELECT extract(epoch FROM rebuilt_at) * 1000 FROM stats_state") > before);
	TH_EXPECT_SQL(db_url, "t", "SELECT backfilled FROM stats_state", NULL);
	wait_drained("stats", 20000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_load),       cmocka_unit_test(test_attempt_trend),
	    cmocka_unit_test(test_attempts_summary), cmocka_unit_test(test_costs),
	    cmocka_unit_test(test_dashboard),        cmocka_unit_test(test_numbers_summary_known),
	    cmocka_unit_test(test_agents),           cmocka_unit_test(test_daily),
	    cmocka_unit_test(test_errors),           cmocka_unit_test(test_numbers_summary_paths),
	    cmocka_unit_test(test_random_sigkill),   cmocka_unit_test(test_company_deleted),
	    cmocka_unit_test(test_rebuilds),         cmocka_unit_test(test_rebuild_crash),
	};

	return cmocka_run_group_tests_name("stats", tests, group_setup, group_teardown);
}
