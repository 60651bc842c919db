/* Billing and the wallet ledger against the real dialer-api (COMPAT §1.6, §2.6, §3.6, §6):
 * lazy defaults, the role table, integral JavaScript numbers, version and disabled_by_dialer
 * rules, ledger rows, the call-state cache invalidation (also with Redis refusing it), and the
 * transactions list's filters, local-day bounds in Persian digits, and paging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hiredis/hiredis.h>

#include "harness.h"
#include "rds.h"

static struct th_api api;
static char *db_url;
static char *root_token;
static char root_id[24];

static long long acme_id, globex_id;
static char *acme_admin_token, *acme_agent_token, *globex_admin_token;

enum { ROOT, ACME_ADMIN, GLOBEX_ADMIN, ACME_AGENT, NO_TOKEN, BAD, N_ACTORS };

static const char *actor_token(int a)
{
	switch (a) {
	case ROOT:
		return root_token;
	case ACME_ADMIN:
		return acme_admin_token;
	case GLOBEX_ADMIN:
		return globex_admin_token;
	case ACME_AGENT:
		return acme_agent_token;
	case BAD:
		return TH_BAD_TOKEN;
	default:
		return NULL;
	}
}

/* sql's value must be expected (NULL: no row, or SQL NULL); p1, p2: its parameters (NULL: none). */
static void expect_sql(const char *expected, const char *sql, const char *p1, const char *p2)
{
	TH_EXPECT_SQL(db_url, expected, sql, p1, p2, NULL);
}

static void exec_sql(const char *sql, const char *p1, const char *p2)
{
	free(th_sql_get(db_url, sql, p1, p2, NULL));
}

static long long create_company(const char *name)
{
	return th_create_company(&api, root_token, name, name, true);
}

static char *create_user(const char *company, const char *username, const char *role)
{
	return th_create_user(&api, root_token, company, username, "secret-pass-1", role);
}

static int group_setup(void **state)
{
	(void)state;
	if (th_setup_api(&api, &db_url, &root_token, NULL) < 0)
		return -1;
	acme_id = create_company("acme");
	globex_id = create_company("globex");
	acme_admin_token = create_user("acme", "acme-admin", "ADMIN");
	acme_agent_token = create_user("acme", "acme-agent", "AGENT");
	globex_admin_token = create_user("globex", "globex-admin", "ADMIN");
	if (!acme_admin_token || !acme_agent_token || !globex_admin_token)
		return -1;
	snprintf(root_id, sizeof(root_id), "%lld",
	         th_sql_int(db_url, "SELECT id FROM users WHERE username = 'root'", NULL));
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free(acme_admin_token);
	free(acme_agent_token);
	free(globex_admin_token);
	return th_teardown_api(&api, &db_url, &root_token);
}

/* ------------------------------------------------------------------ helpers */

/* BillingInfo (COMPAT §2.1) with these values, exactly four keys. */
static void expect_billing(const json_t *b, long long wallet, long long cost, bool disabled)
{
	assert_true(json_is_object(b));
	assert_int_equal(json_object_size(b), 4);
	assert_true(json_is_integer(json_object_get(b, "wallet_balance")));
	assert_true(json_is_integer(json_object_get(b, "cost_per_connected")));
	TH_EXPECT_INT(b, "wallet_balance", wallet);
	TH_EXPECT_INT(b, "cost_per_connected", cost);
	TH_EXPECT_STR(b, "currency", "Toman");
	assert_true(json_is_boolean(json_object_get(b, "disabled_by_dialer")));
	assert_int_equal(json_is_true(json_object_get(b, "disabled_by_dialer")), disabled);
}

/* PUT /api/{company}/billing as root with body; returns the response. */
static struct th_resp *put_billing(const char *company, const char *body)
{
	char path[96];

	snprintf(path, sizeof(path), "/api/%s/billing", company);
	return th_call(&api, "PUT", path, root_token, body);
}

/* The company's config column as text (NULL: no config row yet). */
static void expect_config(long long company_id, const char *col, const char *expected)
{
	char sql[128], cid[24];

	snprintf(sql, sizeof(sql), "SELECT %s::text FROM company_config WHERE company_id = $1", col);
	snprintf(cid, sizeof(cid), "%lld", company_id);
	expect_sql(expected, sql, cid, NULL);
}

static void expect_ledger_count(long long company_id, const char *expected)
{
	char cid[24];

	snprintf(cid, sizeof(cid), "%lld", company_id);
	expect_sql(expected, "SELECT count(*) FROM wallet_ledger WHERE company_id = $1", cid, NULL);
}

/* GET .../billing/transactions?query as token; returns the response. */
static struct th_resp *get_ledger(const char *company, const char *token, const char *query)
{
	char path[512];

	snprintf(path, sizeof(path), "/api/%s/billing/transactions%s%s", company, query ? "?" : "", query ? query : "");
	return th_call(&api, "GET", path, token, NULL);
}

/* Percent-encodes s (UTF-8) for a query string into out. */
static void url_encode(const char *s, char *out, size_t len)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p && n + 4 < len; p++) {
		if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '-')
			out[n++] = (char)*p;
		else
			n += (size_t)snprintf(out + n, len - n, "%%%02X", *p);
	}
	out[n] = '\0';
}

/* A Redis connection to url (redis://host:port/db). Caller frees with redisFree. */
static redisContext *redis_open(const char *url)
{
	struct rds_url u;
	redisContext *rc;
	redisReply *rep;

	assert_int_equal(rds_url_parse(url, &u), 0);
	rc = redisConnect(u.host, u.port);
	assert_non_null(rc);
	assert_int_equal(rc->err, 0);
	rep = redisCommand(rc, "SELECT %d", u.db);
	assert_non_null(rep);
	freeReplyObject(rep);
	return rc;
}

/* Runs a command that must not fail; returns the integer reply (0 for others). */
static long long redis_do(redisContext *rc, const char *fmt, const char *arg)
{
	redisReply *rep = redisCommand(rc, fmt, arg);
	long long v = 0;

	assert_non_null(rep);
	if (rep->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "redis: %s: %s\n", fmt, rep->str);
		freeReplyObject(rep);
		fail();
	}
	if (rep->type == REDIS_REPLY_INTEGER)
		v = rep->integer;
	freeReplyObject(rep);
	return v;
}

/* -------------------------------------------------------------------- tests */

/* A company with no config yet: GET creates it with COMPAT §3.6's defaults. */
static void test_billing_defaults(void **state)
{
	struct th_resp *r;
	long long id;

	(void)state;
	id = create_company("fresh");
	expect_config(id, "version", NULL);
	r = th_call(&api, "GET", "/api/fresh/billing", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 0, 150, false);
	th_resp_free(r);
	expect_config(id, "version", "1");
	expect_config(id, "enabled", "true");
	expect_config(id, "skip_holidays", "true");                        /* SKIP_HOLIDAYS's default */
	r = th_call(&api, "GET", "/api/fresh/billing/", root_token, NULL); /* trailing slash */
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 0, 150, false);
	th_resp_free(r);
	expect_config(id, "version", "1"); /* reads change nothing */
	expect_ledger_count(id, "0");

	/* The first PUT may be the first touch as well. */
	create_company("fresh-put");
	r = put_billing("fresh-put", "{\"wallet_balance\": 10}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 10, 150, false);
	th_resp_free(r);
}

/* COMPAT §1.6: billing is superuser only; the ledger is also for the company's own admins. */
static void test_billing_roles(void **state)
{
	static const struct th_expect billing[N_ACTORS] = {TH_OK,         TH_SUPERUSERS, TH_SUPERUSERS,
	                                                   TH_SUPERUSERS, TH_NO_AUTH,    TH_BAD_AUTH};
	static const struct th_expect ledger[N_ACTORS] = {TH_OK, TH_OK, TH_DENIED, TH_ADMINS, TH_NO_AUTH, TH_BAD_AUTH};
	struct th_resp *r;

	(void)state;
	r = put_billing("acme", "{\"wallet_balance\": 100}");
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	expect_config(acme_id, "version", "2");
	for (int a = 0; a < N_ACTORS; a++) {
		r = th_call(&api, "GET", "/api/acme/billing", actor_token(a), NULL);
		TH_EXPECT_ANSWER(r, &billing[a]);
		if (a == ROOT)
			expect_billing(r->json, 100, 150, false);
		th_resp_free(r);

		r = th_call(&api, "PUT", "/api/acme/billing", actor_token(a), "{\"wallet_balance\": 999}");
		TH_EXPECT_ANSWER(r, &billing[a]);
		th_resp_free(r);
		if (a == ROOT) { /* put it back */
			r = put_billing("acme", "{\"wallet_balance\": 100}");
			TH_EXPECT_STATUS(r, 200);
			th_resp_free(r);
		}
		expect_config(acme_id, "wallet_balance", "100");

		r = get_ledger("acme", actor_token(a), NULL);
		TH_EXPECT_ANSWER(r, &ledger[a]);
		if (ledger[a].status == 200) {
			long long total;

			assert_int_equal(th_json_int(r->json, "total", &total), 0);
			assert_int_equal(total, 3); /* 100, 999, back to 100 */
		}
		th_resp_free(r);
	}
	expect_config(acme_id, "version", "4");
	expect_ledger_count(acme_id, "3");

	/* Unknown or inactive companies: 401 without a token, then role, then company. */
	r = th_call(&api, "GET", "/api/nope/billing", NULL, NULL);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/nope/billing", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = put_billing("nope", "{\"wallet_balance\": 1}");
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/nope/billing", acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);
	r = get_ledger("nope", acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = get_ledger("nope", acme_agent_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	{
		char path[64];

		snprintf(path, sizeof(path), "/api/companies/%lld", create_company("asleep"));
		r = th_call(&api, "PUT", path, root_token, "{\"is_active\": false}");
		TH_EXPECT_STATUS(r, 200);
		th_resp_free(r);
	}
	r = th_call(&api, "GET", "/api/asleep/billing", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = get_ledger("asleep", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
}

/* Values, version and ledger rows over several PUTs. */
static void test_billing_put(void **state)
{
	struct th_resp *r;
	long long id;
	char cid[24];
	json_t *items, *it;

	(void)state;
	id = create_company("wallet-co");
	snprintf(cid, sizeof(cid), "%lld", id);

	r = put_billing("wallet-co", "{\"wallet_balance\": 1000}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 1000, 150, false);
	th_resp_free(r);
	expect_config(id, "version", "2");

	r = put_billing("wallet-co", "{\"cost_per_connected\": 200, \"note\": \"new rate\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 1000, 200, false);
	th_resp_free(r);
	expect_config(id, "version", "3");

	r = put_billing("wallet-co", "{\"wallet_balance\": 700, \"cost_per_connected\": 250, \"note\": \"both\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 700, 250, false);
	th_resp_free(r);
	expect_config(id, "version", "4");

	/* A present field bumps the version even unchanged, but writes no ledger row. */
	r = put_billing("wallet-co", "{\"wallet_balance\": 700}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 700, 250, false);
	th_resp_free(r);
	expect_config(id, "version", "5");
	expect_ledger_count(id, "4");

	/* Nothing given (or only nulls): no change at all. */
	r = put_billing("wallet-co", "{}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 700, 250, false);
	th_resp_free(r);
	r = put_billing("wallet-co", "{\"wallet_balance\": null, \"cost_per_connected\": null, \"extra\": 1}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 700, 250, false);
	th_resp_free(r);
	expect_config(id, "version", "5");

	/* Negatives are accepted, as in the original. */
	r = put_billing("wallet-co", "{\"wallet_balance\": -50}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, -50, 250, false);
	th_resp_free(r);
	expect_config(id, "version", "6");
	expect_ledger_count(id, "5");

	/* The rows, oldest first: each adjustment's amount is new - old, balance_after the new
	 * balance; rate rows carry the new cost; who did it is recorded. */
	expect_sql(
	    "adjustment:1000:1000::|rate:0:1000:200:new rate|adjustment:-300:700::both|rate:0:700:250:both|"
	    "adjustment:-750:-50::",
	    "SELECT string_agg(concat_ws(':', kind, amount, balance_after, coalesce(cost_per_connected::text, ''),"
	    " coalesce(note, '')), '|' ORDER BY id) FROM wallet_ledger WHERE company_id = $1",
	    cid, NULL);
	expect_sql("5", "SELECT count(*) FROM wallet_ledger WHERE company_id = $1 AND user_id = $2", cid, root_id);
	expect_sql("-50", "SELECT sum(amount) FROM wallet_ledger WHERE company_id = $1", cid, NULL);

	/* The same through the API, newest first. */
	r = get_ledger("wallet-co", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 5);
	TH_EXPECT_INT(r->json, "skip", 0);
	TH_EXPECT_INT(r->json, "limit", 50);
	items = json_object_get(r->json, "items");
	assert_int_equal(json_array_size(items), 5);
	it = json_array_get(items, 0);
	assert_int_equal(json_object_size(it), 9);
	TH_EXPECT_STR(it, "kind", "adjustment");
	TH_EXPECT_INT(it, "amount", -750);
	TH_EXPECT_INT(it, "balance_after", -50);
	assert_true(json_is_null(json_object_get(it, "cost_per_connected")));
	assert_true(json_is_null(json_object_get(it, "attempt_id")));
	assert_true(json_is_null(json_object_get(it, "note")));
	TH_EXPECT_INT(it, "user_id", strtoll(root_id, NULL, 10));
	assert_true(th_is_datetime(th_json_str(it, "created_at")));
	it = json_array_get(items, 1); /* same request as the next: rate after adjustment */
	TH_EXPECT_STR(it, "kind", "rate");
	TH_EXPECT_INT(it, "cost_per_connected", 250);
	TH_EXPECT_STR(it, "note", "both");
	TH_EXPECT_STR(json_array_get(items, 2), "kind", "adjustment");
	TH_EXPECT_STR(json_array_get(items, 4), "kind", "adjustment");
	TH_EXPECT_INT(json_array_get(items, 4), "amount", 1000);
	th_resp_free(r);
}

/* JavaScript numbers: 1000.0 is an integer, 1000.5 is not; strings, booleans and values beyond
 * ±10^15 are refused; a refused PUT changes nothing. */
static void test_billing_numbers(void **state)
{
	static const struct {
		const char *body, *field;
	} bad[] = {
	    {"{\"wallet_balance\": 1000.5}", "wallet_balance"},
	    {"{\"wallet_balance\": \"1000\"}", "wallet_balance"},
	    {"{\"wallet_balance\": true}", "wallet_balance"},
	    {"{\"wallet_balance\": [1]}", "wallet_balance"},
	    {"{\"wallet_balance\": {\"v\": 1}}", "wallet_balance"},
	    {"{\"wallet_balance\": 1000000000000001}", "wallet_balance"},
	    {"{\"wallet_balance\": -1000000000000001}", "wallet_balance"},
	    {"{\"wallet_balance\": 1e16}", "wallet_balance"},
	    {"{\"wallet_balance\": -1.0e300}", "wallet_balance"},
	    {"{\"cost_per_connected\": 1.5}", "cost_per_connected"},
	    {"{\"cost_per_connected\": false}", "cost_per_connected"},
	    {"{\"wallet_balance\": 5, \"cost_per_connected\": \"7\"}", "cost_per_connected"},
	    {"{\"wallet_balance\": 5, \"note\": \"\"}", "note"},
	    {"{\"wallet_balance\": 5, \"note\": 3}", "note"},
	    {"{\"wallet_balance\": 99999999999999999999}", NULL}, /* beyond 64 bits: not parsed */
	    {"[]", "body"},
	    {"{\"wallet_balance\": ", NULL},
	};
	struct th_resp *r;
	long long id;
	char note[600];

	(void)state;
	id = create_company("numbers-co");
	r = put_billing("numbers-co", "{\"wallet_balance\": 1000.0, \"cost_per_connected\": 120.0}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 1000, 120, false); /* integers in the answer */
	th_resp_free(r);
	expect_config(id, "version", "2");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = put_billing("numbers-co", bad[i].body);
		TH_EXPECT_INVALID(r, bad[i].field);
		th_resp_free(r);
	}
	r = put_billing("numbers-co", NULL);
	TH_EXPECT_INVALID(r, "body");
	th_resp_free(r);
	memset(note, 'n', 501);
	note[501] = '\0';
	r = th_callf(&api, "PUT", "/api/numbers-co/billing", root_token, "{\"wallet_balance\": 1, \"note\": \"%s\"}",
	             note);
	TH_EXPECT_INVALID(r, "note");
	th_resp_free(r);
	expect_config(id, "version", "2");
	expect_config(id, "wallet_balance", "1000");
	expect_config(id, "cost_per_connected", "120");
	expect_ledger_count(id, "2");

	/* The bounds themselves are accepted. */
	r = put_billing("numbers-co",
	                "{\"wallet_balance\": 1000000000000000, \"cost_per_connected\": -1000000000000000}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 1000000000000000LL, -1000000000000000LL, false);
	th_resp_free(r);
	r = put_billing("numbers-co", "{\"wallet_balance\": -1e15}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, -1000000000000000LL, -1000000000000000LL, false);
	th_resp_free(r);
	expect_config(id, "version", "4");
}

/* disabled_by_dialer is cleared only when the resulting wallet is positive and the company is
 * enabled; a PUT never enables the company. */
static void test_billing_disabled_by_dialer(void **state)
{
	struct th_resp *r;
	long long id;
	char cid[24];

	(void)state;
	id = create_company("dial-co");
	snprintf(cid, sizeof(cid), "%lld", id);
	r = th_call(&api, "GET", "/api/dial-co/billing", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);

	/* Enabled, disabled by the dialer at 0: a recharge clears the flag. */
	exec_sql("UPDATE company_config SET enabled = true, disabled_by_dialer = true, wallet_balance = 0"
	         " WHERE company_id = $1",
	         cid, NULL);
	r = th_call(&api, "GET", "/api/dial-co/billing", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 0, 150, true);
	th_resp_free(r);
	r = put_billing("dial-co", "{\"wallet_balance\": 500}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 500, 150, false);
	th_resp_free(r);
	expect_config(id, "enabled", "true");
	expect_config(id, "version", "2");

	/* Switched off (as the dialer path does at 0): the flag stays, the switch stays off. */
	exec_sql("UPDATE company_config SET enabled = false, disabled_by_dialer = true WHERE company_id = $1", cid,
	         NULL);
	r = put_billing("dial-co", "{\"wallet_balance\": 800}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 800, 150, true);
	th_resp_free(r);
	expect_config(id, "enabled", "false");
	expect_config(id, "version", "3");

	/* Enabled but the result is not positive: the flag stays. */
	exec_sql("UPDATE company_config SET enabled = true, disabled_by_dialer = true WHERE company_id = $1", cid,
	         NULL);
	r = put_billing("dial-co", "{\"wallet_balance\": 0}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 0, 150, true);
	th_resp_free(r);
	r = put_billing("dial-co", "{\"wallet_balance\": -5}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, -5, 150, true);
	th_resp_free(r);
	expect_config(id, "version", "5");

	/* A cost change alone also clears it when the (unchanged) wallet is positive. */
	exec_sql("UPDATE company_config SET wallet_balance = 300 WHERE company_id = $1", cid, NULL);
	r = put_billing("dial-co", "{\"cost_per_connected\": 100}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 300, 100, false);
	th_resp_free(r);
	expect_config(id, "enabled", "true");
	expect_config(id, "version", "6");
}

/* A committed change deletes the company's cached call state; reads and empty PUTs do not. */
static void test_billing_callstate(void **state)
{
	redisContext *rc;
	char key[64];
	long long id;
	struct th_resp *r;

	(void)state;
	id = create_company("cache-co");
	snprintf(key, sizeof(key), "dialer:callstate:%lld", id);
	rc = redis_open(th_env("REDIS_URL"));

	redis_do(rc, "SET %s stale", key);
	r = th_call(&api, "GET", "/api/cache-co/billing", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	r = put_billing("cache-co", "{}");
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	r = put_billing("cache-co", "{\"wallet_balance\": \"x\"}");
	TH_EXPECT_INVALID(r, "wallet_balance");
	th_resp_free(r);
	assert_int_equal(redis_do(rc, "EXISTS %s", key), 1);

	r = put_billing("cache-co", "{\"wallet_balance\": 10}");
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	assert_int_equal(redis_do(rc, "EXISTS %s", key), 0);

	redis_do(rc, "SET %s stale", key);
	r = put_billing("cache-co", "{\"cost_per_connected\": 10}");
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	assert_int_equal(redis_do(rc, "EXISTS %s", key), 0);
	redisFree(rc);
}

/* A second API with its own Redis that refuses DEL (ACL), SKIP_HOLIDAYS=false and LIST_MAX=3:
 * the PUT still answers 200 with the change committed; the lazy config takes SKIP_HOLIDAYS;
 * limit is capped by LIST_MAX. */
static void test_billing_redis_refuses(void **state)
{
	struct th_api a2;
	struct th_proc *redis;
	redisContext *rc;
	char dir[512], url[64], *token;
	int port;
	long long id;
	struct th_resp *r;

	(void)state;
	id = create_company("acl-co");
	snprintf(dir, sizeof(dir), "%s/test_billing-redis", th_tmp_dir());
	assert_true(mkdir(dir, 0755) == 0 || errno == EEXIST);
	port = th_free_port();
	assert_true(port > 0);
	redis = th_redis_start(dir, port);
	assert_non_null(redis);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
	rc = redis_open(url);
	redis_do(rc, "ACL SETUSER default %s", "-del");
	assert_int_equal(th_api_start(&a2, db_url, url, "SKIP_HOLIDAYS=false", "LIST_MAX=3", NULL), 0);
	token = th_login(&a2, TH_ROOT_USER, TH_ROOT_PASS);
	assert_non_null(token);

	r = th_call(&a2, "PUT", "/api/acl-co/billing", token, "{\"wallet_balance\": 4242}");
	TH_EXPECT_STATUS(r, 200);
	expect_billing(r->json, 4242, 150, false);
	th_resp_free(r);
	expect_config(id, "wallet_balance", "4242");
	expect_config(id, "skip_holidays", "false");
	expect_ledger_count(id, "1");

	r = th_call(&a2, "GET", "/api/acl-co/billing/transactions?limit=4", token, NULL);
	TH_EXPECT_INVALID(r, "limit");
	th_resp_free(r);
	r = th_call(&a2, "GET", "/api/acl-co/billing/transactions", token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "limit", 3);
	TH_EXPECT_INT(r->json, "total", 1);
	th_resp_free(r);

	free(token);
	redisFree(rc);
	assert_int_equal(th_api_stop(&a2), 0);
	assert_int_equal(th_redis_stop(redis), 0);
}

/* The ledger list: local (Tehran, +03:30) calendar days, inclusive, in ASCII, Persian or
 * Arabic-Indic digits; kind; paging; newest first; bad parameters. */
static void test_billing_transactions(void **state)
{
	/* 23:59:59 and 00:00:00 local on each side of 2026-02-18 (Tehran), plus one later. */
	static const char *const rows[][2] = {
	    {"charge", "2026-02-17 20:29:59+00"},     /* a: 02-17 local */
	    {"charge", "2026-02-17 20:30:00+00"},     /* b: 02-18 00:00 local */
	    {"adjustment", "2026-02-18 20:29:59+00"}, /* c: 02-18 23:59:59 local */
	    {"rate", "2026-02-18 20:30:00+00"},       /* d: 02-19 00:00 local */
	    {"charge", "2026-02-20 10:00:00+00"},     /* e */
	};
	static const struct {
		const char *query;
		const char *expect; /* notes of the items, in order */
		long long total;
	} cases[] = {
	    {"start_date=2026-02-18&end_date=2026-02-18", "c,b", 2},
	    {"start_date=2026-2-18&end_date=2026-02-18", "c,b", 2},
	    {"start_date=2026-02-19", "e,d", 2},
	    {"end_date=2026-02-17", "a", 1},
	    {"start_date=&end_date=&kind=", "e,d,c,b,a", 5},
	    {"kind=charge", "e,b,a", 3},
	    {"kind=charge&start_date=2026-02-18", "e,b", 2},
	    {"kind=rate&end_date=2026-02-18", "", 0},
	    {"start_date=2026-02-21", "", 0},
	    {"start_date=2026-02-19&end_date=2026-02-18", "", 0},
	    {"skip=0&limit=2", "e,d", 5},
	    {"skip=2&limit=2", "c,b", 5},
	    {"skip=4&limit=2", "a", 5},
	    {"skip=10", "", 5},
	    {"limit=1000", "e,d,c,b,a", 5},
	};
	static const char *const bad_dates[] = {"2026-02-30",       "2026-13-01",  "2026-00-10",  "20260218",
	                                        "2026-02-18T00:00", "abc",         "2026-02-1x",  "02-18-2026",
	                                        "2026--02-18",      "2026-02-18-", "12026-02-18", "2026-002-18"};
	static const struct {
		const char *query, *field;
	} bad_params[] = {
	    {"limit=0", "limit"}, {"limit=1001", "limit"}, {"limit=abc", "limit"},  {"skip=-1", "skip"},
	    {"skip=1.5", "skip"}, {"kind=refund", "kind"}, {"kind=CHARGE", "kind"},
	};
	struct th_resp *r;
	long long id;
	char cid[24], q[512], enc[200];

	(void)state;
	id = create_company("ledger-co");
	snprintf(cid, sizeof(cid), "%lld", id);
	for (size_t i = 0; i < 5; i++) {
		const char *params[4] = {cid, rows[i][0], rows[i][1], NULL};
		char note[2] = {(char)('a' + i), '\0'};

		params[3] = note;
		assert_int_equal(
		    th_sql(db_url,
		           "INSERT INTO wallet_ledger (company_id, kind, amount, balance_after, created_at, note)"
		           " VALUES ($1, $2, -10, 100, $3, $4)",
		           4, params, NULL),
		    0);
	}

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *v;
		size_t k;
		char got[64] = "";

		r = get_ledger("ledger-co", root_token, cases[i].query);
		TH_EXPECT_STATUS(r, 200);
		TH_EXPECT_INT(r->json, "total", cases[i].total);
		json_array_foreach(json_object_get(r->json, "items"), k, v)
		{
			if (k > 0)
				strcat(got, ",");
			strcat(got, th_json_str(v, "note"));
		}
		if (strcmp(got, cases[i].expect) != 0) {
			fprintf(stderr, "%s: expected %s, got %s\n", cases[i].query, cases[i].expect, got);
			fail();
		}
		th_resp_free(r);
	}

	/* Persian and Arabic-Indic digits (percent-encoded UTF-8, as the panel sends them). */
	{
		const char *const days[] = {"\xdb\xb2\xdb\xb0\xdb\xb2\xdb\xb6-\xdb\xb0\xdb\xb2-\xdb\xb1\xdb\xb8",
		                            "\xd9\xa2\xd9\xa0\xd9\xa2\xd9\xa6-\xd9\xa0\xd9\xa2-\xd9\xa1\xd9\xa8",
		                            "\xdb\xb2\xdb\xb0\x32\x36-0\xdb\xb2-\xd9\xa1\xdb\xb8"}; /* mixed */

		for (size_t i = 0; i < 3; i++) {
			url_encode(days[i], enc, sizeof(enc));
			snprintf(q, sizeof(q), "start_date=%s&end_date=%s", enc, enc);
			r = get_ledger("ledger-co", root_token, q);
			TH_EXPECT_STATUS(r, 200);
			TH_EXPECT_INT(r->json, "total", 2);
			TH_EXPECT_STR(json_array_get(json_object_get(r->json, "items"), 0), "note", "c");
			th_resp_free(r);
		}
	}

	for (size_t i = 0; i < sizeof(bad_dates) / sizeof(bad_dates[0]); i++) {
		url_encode(bad_dates[i], enc, sizeof(enc));
		snprintf(q, sizeof(q), "start_date=%s", enc);
		r = get_ledger("ledger-co", root_token, q);
		TH_EXPECT_ERROR(r, 400, "Invalid start_date");
		th_resp_free(r);
		snprintf(q, sizeof(q), "start_date=2026-02-18&end_date=%s", enc);
		r = get_ledger("ledger-co", root_token, q);
		TH_EXPECT_ERROR(r, 400, "Invalid end_date");
		th_resp_free(r);
	}
	url_encode("\xdb\xb2\xdb\xb0\xdb\xb2\xdb\xb6-\xdb\xb0\xdb\xb2", enc, sizeof(enc)); /* no day */
	snprintf(q, sizeof(q), "start_date=%s", enc);
	r = get_ledger("ledger-co", root_token, q);
	TH_EXPECT_ERROR(r, 400, "Invalid start_date");
	th_resp_free(r);

	for (size_t i = 0; i < sizeof(bad_params) / sizeof(bad_params[0]); i++) {
		r = get_ledger("ledger-co", root_token, bad_params[i].query);
		TH_EXPECT_INVALID(r, bad_params[i].field);
		th_resp_free(r);
	}

	/* Paging fields echo the request; the trailing slash form answers too. */
	r = th_call(&api, "GET", "/api/ledger-co/billing/transactions/?skip=1&limit=3", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "skip", 1);
	TH_EXPECT_INT(r->json, "limit", 3);
	TH_EXPECT_INT(r->json, "total", 5);
	assert_int_equal(json_array_size(json_object_get(r->json, "items")), 3);
	th_resp_free(r);

	/* Isolation: another company's admin is refused, and acme's list has none of these rows. */
	r = get_ledger("ledger-co", acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = get_ledger("acme", acme_admin_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 3); /* test_billing_roles' own */
	th_resp_free(r);
	r = get_ledger("acme", acme_admin_token, "start_date=2026-02-17&end_date=2026-02-20");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 0);
	assert_true(json_is_array(json_object_get(r->json, "items")));
	th_resp_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_billing_defaults),
	    cmocka_unit_test(test_billing_roles),
	    cmocka_unit_test(test_billing_put),
	    cmocka_unit_test(test_billing_numbers),
	    cmocka_unit_test(test_billing_disabled_by_dialer),
	    cmocka_unit_test(test_billing_callstate),
	    cmocka_unit_test(test_billing_redis_refuses),
	    cmocka_unit_test(test_billing_transactions),
	};

	return cmocka_run_group_tests_name("billing", tests, group_setup, group_teardown);
}
