/* Scenarios and outbound lines against the real dialer-api (COMPAT §1.6, §2.7, §2.8 and the
 * preface's points 3, 4, 5, 10): every endpoint, the role table, company isolation, bad input
 * that changes nothing, trailing slashes, and the 409 on deleting what results point to. */
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
static char *root_token;

/* acme and globex are active, sleepy is not; acme has an ADMIN and an AGENT, globex an ADMIN. */
static long long acme_id, globex_id, sleepy_id;
static char *acme_admin_token, *acme_agent_token, *globex_admin_token;

/* The six callers of the role table (COMPAT §1.6). */
enum { ROOT, ACME_ADMIN, GLOBEX_ADMIN, ACME_AGENT, NO_TOKEN, BAD, N_ACTORS };
static const char *const actor_names[N_ACTORS] = {"root",  "acme-admin", "globex-admin",
                                                  "agent", "no-token",   "bad-token"};

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

/* First column of the first row of sql with up to three text parameters (NULL: no more), as a
 * string the caller frees ("" for NULL or no row). */
static char *sql_value(const char *sql, const char *p1, const char *p2, const char *p3)
{
	char *v = th_sql_get(db_url, sql, p1, p2, p3, NULL);

	return v ? v : strdup("");
}

/* sql_value() as an integer; it must not be NULL. */
static long long sql_int(const char *sql, const char *p1, const char *p2)
{
	return th_sql_int(db_url, sql, p1, p2, NULL);
}

/* sql's value must be expected (NULL: no row, or SQL NULL). */
static void expect_sql(const char *expected, const char *sql, const char *p1, const char *p2)
{
	TH_EXPECT_SQL(db_url, expected, sql, p1, p2, NULL);
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
	sleepy_id = th_create_company(&api, root_token, "sleepy", "sleepy", false);
	acme_admin_token = create_user("acme", "acme-admin", "ADMIN");
	acme_agent_token = create_user("acme", "acme-agent", "AGENT");
	globex_admin_token = create_user("globex", "globex-admin", "ADMIN");
	if (!acme_admin_token || !acme_agent_token || !globex_admin_token)
		return -1;
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

/* The two resources share their shape; this describes what differs. */
struct kind {
	const char *path;      /* "scenarios" or "outbound-lines" */
	const char *table;     /* SQL table */
	const char *key;       /* "name" or "phone_number" */
	size_t key_max;        /* 128 or 32 */
	const char *not_found; /* COMPAT's 404 detail */
	const char *exists;    /* COMPAT's duplicate detail */
	const char *ref_col;   /* call_attempts column pointing at it */
};

static const struct kind scenarios = {
    "scenarios",  "scenarios", "name", 128, "Scenario not found", "Scenario name already exists for this company",
    "scenario_id"};
static const struct kind lines = {"outbound-lines",
                                  "outbound_lines",
                                  "phone_number",
                                  32,
                                  "Outbound line not found",
                                  "Phone number already exists for this company",
                                  "outbound_line_id"};

/* POST as token; returns the response. */
static struct th_resp *post_item(const struct kind *k, const char *company, const char *token, const char *key,
                                 long long company_id)
{
	char path[96];

	snprintf(path, sizeof(path), "/api/%s/%s", company, k->path);
	return th_callf(&api, "POST", path, token, "{\"%s\": \"%s\", \"display_name\": \"D %s\", \"company_id\": %lld}",
	                k->key, key, key, company_id);
}

/* post_item() as root that must succeed; returns the id. */
static long long make_item(const struct kind *k, const char *company, const char *key, long long company_id)
{
	struct th_resp *r = post_item(k, company, root_token, key, company_id);
	long long id = -1;

	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);
	return id;
}

static long long count_items(const struct kind *k, long long company_id)
{
	char sql[128], cid[24];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE company_id = $1", k->table);
	snprintf(cid, sizeof(cid), "%lld", company_id);
	return sql_int(sql, cid, NULL);
}

/* Column col of row id, as text ("" when the row is gone). */
static char *item_col(const struct kind *k, long long id, const char *col)
{
	char sql[160], ids[24];

	snprintf(sql, sizeof(sql), "SELECT %s::text FROM %s WHERE id = $1", col, k->table);
	snprintf(ids, sizeof(ids), "%lld", id);
	return sql_value(sql, ids, NULL, NULL);
}

static void expect_item_col(const struct kind *k, long long id, const char *col, const char *expected)
{
	char *v = item_col(k, id, col);

	if (strcmp(v, expected) != 0) {
		fprintf(stderr, "%s %lld %s: expected \"%s\", got \"%s\"\n", k->table, id, col, expected, v);
		free(v);
		fail();
	}
	free(v);
}

/* ScenarioOut / OutboundLineOut (COMPAT §2.1): exactly these six keys. */
static void expect_item_out(const struct kind *k, const json_t *o)
{
	assert_true(json_is_object(o));
	assert_int_equal(json_object_size(o), 6);
	assert_true(json_is_integer(json_object_get(o, "id")));
	assert_true(json_is_integer(json_object_get(o, "company_id")));
	assert_true(json_is_string(json_object_get(o, k->key)));
	assert_true(json_is_string(json_object_get(o, "display_name")));
	assert_true(json_is_boolean(json_object_get(o, "is_active")));
	assert_true(th_is_datetime(th_json_str(o, "created_at")));
}

/* Records a call attempt pointing at item id of kind k (the trigger sets has_results). */
static void add_attempt(const struct kind *k, long long company_id, long long id, const char *phone)
{
	char sql[320], cid[24], ids[24];
	char *num;

	num = sql_value("INSERT INTO numbers (phone_number) VALUES ($1) RETURNING id", phone, NULL, NULL);
	snprintf(cid, sizeof(cid), "%lld", company_id);
	snprintf(ids, sizeof(ids), "%lld", id);
	snprintf(sql, sizeof(sql),
	         "INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at, %s)"
	         " VALUES ($1, $2, $3, 'CONNECTED', now(), $4)",
	         k->ref_col);
	{
		const char *params[4] = {cid, num, phone, ids};

		assert_int_equal(th_sql(db_url, sql, 4, params, NULL), 0);
	}
	free(num);
	expect_item_col(k, id, "has_results", "true");
}

/* ------------------------------------------------------------ shared tests */

/* Create: both path forms, defaults, bad input refused with nothing stored, duplicates,
 * the company id check, the same key in another company. */
static void create_cases(const struct kind *k, const char *token)
{
	char path[96], long_key[200], long_display[300];
	struct th_resp *r;
	long long before, id = -1;

	snprintf(path, sizeof(path), "/api/acme/%s/", k->path); /* trailing slash */
	r = th_callf(&api, "POST", path, token,
	             "{\"%s\": \"c-%s-1\", \"display_name\": \"First\", \"company_id\": %lld, \"ignored\": 1}", k->key,
	             k->path, acme_id);
	TH_EXPECT_STATUS(r, 200);
	expect_item_out(k, r->json);
	TH_EXPECT_INT(r->json, "company_id", acme_id);
	TH_EXPECT_STR(r->json, "display_name", "First");
	assert_true(json_is_true(json_object_get(r->json, "is_active"))); /* default */
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);

	snprintf(path, sizeof(path), "/api/acme/%s", k->path);
	/* is_active false, and company_id as JavaScript may send it (2.0) */
	r = th_callf(&api, "POST", path, token,
	             "{\"%s\": \"c-%s-2\", \"display_name\": \"Second\", \"is_active\": false, \"company_id\": %lld.0}",
	             k->key, k->path, acme_id);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_false(json_object_get(r->json, "is_active")));
	th_resp_free(r);

	/* Duplicates in the company: 400, nothing stored. */
	before = count_items(k, acme_id);
	r = th_callf(&api, "POST", path, token,
	             "{\"%s\": \"c-%s-1\", \"display_name\": \"Again\", \"company_id\": %lld}", k->key, k->path,
	             acme_id);
	TH_EXPECT_ERROR(r, 400, k->exists);
	th_resp_free(r);
	expect_item_col(k, id, "display_name", "First");

	/* Another company's id: 400 "Company ID mismatch". */
	r = th_callf(&api, "POST", path, token, "{\"%s\": \"c-%s-x\", \"display_name\": \"X\", \"company_id\": %lld}",
	             k->key, k->path, globex_id);
	TH_EXPECT_ERROR(r, 400, "Company ID mismatch");
	th_resp_free(r);

	/* Bad input: 422 naming the field. */
	memset(long_key, 'k', k->key_max + 1);
	long_key[k->key_max + 1] = '\0';
	memset(long_display, 'd', 256);
	long_display[256] = '\0';
	{
		struct {
			const char *field;
			char body[600];
		} cases[16];
		size_t n = 0;

#define CASE(f, ...)                                                         \
	do {                                                                 \
		cases[n].field = (f);                                        \
		snprintf(cases[n].body, sizeof(cases[n].body), __VA_ARGS__); \
		n++;                                                         \
	} while (0)
		CASE(k->key, "{\"display_name\": \"D\", \"company_id\": %lld}", acme_id);
		CASE(k->key, "{\"%s\": \"\", \"display_name\": \"D\", \"company_id\": %lld}", k->key, acme_id);
		CASE(k->key, "{\"%s\": \"%s\", \"display_name\": \"D\", \"company_id\": %lld}", k->key, long_key,
		     acme_id);
		CASE(k->key, "{\"%s\": 12, \"display_name\": \"D\", \"company_id\": %lld}", k->key, acme_id);
		CASE("display_name", "{\"%s\": \"b1\", \"company_id\": %lld}", k->key, acme_id);
		CASE("display_name", "{\"%s\": \"b2\", \"display_name\": \"\", \"company_id\": %lld}", k->key, acme_id);
		CASE("display_name", "{\"%s\": \"b3\", \"display_name\": \"%s\", \"company_id\": %lld}", k->key,
		     long_display, acme_id);
		CASE("company_id", "{\"%s\": \"b4\", \"display_name\": \"D\"}", k->key);
		CASE("company_id", "{\"%s\": \"b5\", \"display_name\": \"D\", \"company_id\": \"%lld\"}", k->key,
		     acme_id);
		CASE("company_id", "{\"%s\": \"b6\", \"display_name\": \"D\", \"company_id\": true}", k->key);
		CASE("company_id", "{\"%s\": \"b7\", \"display_name\": \"D\", \"company_id\": %lld.5}", k->key,
		     acme_id);
		CASE("company_id", "{\"%s\": \"b8\", \"display_name\": \"D\", \"company_id\": null}", k->key);
		CASE("is_active",
		     "{\"%s\": \"b9\", \"display_name\": \"D\", \"is_active\": \"yes\", \"company_id\": %lld}", k->key,
		     acme_id);
		CASE("body", "[]");
		CASE(NULL, "{\"%s\": ", k->key); /* malformed JSON */
#undef CASE
		for (size_t i = 0; i < n; i++) {
			r = th_call(&api, "POST", path, token, cases[i].body);
			TH_EXPECT_INVALID(r, cases[i].field);
			th_resp_free(r);
		}
		r = th_call(&api, "POST", path, token, NULL); /* no body at all */
		TH_EXPECT_INVALID(r, "body");
		th_resp_free(r);
	}
	assert_int_equal(count_items(k, acme_id), before);

	/* The same key in another company is fine (unique per company). */
	snprintf(path, sizeof(path), "/api/globex/%s", k->path);
	r = th_callf(&api, "POST", path, root_token,
	             "{\"%s\": \"c-%s-1\", \"display_name\": \"G\", \"company_id\": %lld}", k->key, k->path, globex_id);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "company_id", globex_id);
	th_resp_free(r);
}

/* Update: null means unchanged, the key is immutable, bad input changes nothing, 404s. */
static void update_cases(const struct kind *k, const char *token)
{
	char path[128], slash[160], key[64];
	struct th_resp *r;
	long long id, other;

	snprintf(key, sizeof(key), "u-%s", k->path);
	id = make_item(k, "acme", key, acme_id);
	other = make_item(k, "globex", key, globex_id);
	snprintf(path, sizeof(path), "/api/acme/%s/%lld", k->path, id);
	snprintf(slash, sizeof(slash), "%s/", path);

	r = th_call(&api, "PUT", path, token, "{\"display_name\": \"Renamed\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_item_out(k, r->json);
	TH_EXPECT_STR(r->json, "display_name", "Renamed");
	TH_EXPECT_STR(r->json, k->key, key);
	assert_true(json_is_true(json_object_get(r->json, "is_active")));
	th_resp_free(r);

	r = th_callf(&api, "PUT", slash, token, "{\"display_name\": null, \"is_active\": false, \"%s\": \"other\"}",
	             k->key);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "display_name", "Renamed"); /* null: unchanged */
	TH_EXPECT_STR(r->json, k->key, key);               /* immutable, ignored */
	assert_true(json_is_false(json_object_get(r->json, "is_active")));
	th_resp_free(r);

	r = th_call(&api, "PUT", path, token, "{}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "display_name", "Renamed");
	assert_true(json_is_false(json_object_get(r->json, "is_active")));
	th_resp_free(r);

	/* Bad input: 422, nothing changed. */
	r = th_call(&api, "PUT", path, token, "{\"display_name\": \"\", \"is_active\": true}");
	TH_EXPECT_INVALID(r, "display_name");
	th_resp_free(r);
	r = th_call(&api, "PUT", path, token, "{\"display_name\": 5}");
	TH_EXPECT_INVALID(r, "display_name");
	th_resp_free(r);
	r = th_call(&api, "PUT", path, token, "{\"display_name\": \"Fine\", \"is_active\": \"no\"}");
	TH_EXPECT_INVALID(r, "is_active");
	th_resp_free(r);
	r = th_call(&api, "PUT", path, token, "[true]");
	TH_EXPECT_INVALID(r, "body");
	th_resp_free(r);
	r = th_call(&api, "PUT", path, token, NULL);
	TH_EXPECT_INVALID(r, "body");
	th_resp_free(r);
	expect_item_col(k, id, "display_name", "Renamed");
	expect_item_col(k, id, "is_active", "false");

	/* Ids: not a number → 422; unknown, or another company's → 404 and untouched. */
	snprintf(path, sizeof(path), "/api/acme/%s/abc", k->path);
	r = th_call(&api, "PUT", path, token, "{\"display_name\": \"X\"}");
	TH_EXPECT_INVALID(r, k == &scenarios ? "scenario_id" : "line_id");
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/%s/0", k->path);
	r = th_call(&api, "PUT", path, token, "{\"display_name\": \"X\"}");
	TH_EXPECT_INVALID(r, NULL);
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/%s/99999999", k->path);
	r = th_call(&api, "PUT", path, token, "{\"display_name\": \"X\"}");
	TH_EXPECT_ERROR(r, 404, k->not_found);
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/%s/%lld", k->path, other);
	r = th_call(&api, "PUT", path, token, "{\"display_name\": \"Stolen\", \"is_active\": false}");
	TH_EXPECT_ERROR(r, 404, k->not_found);
	th_resp_free(r);
	snprintf(key, sizeof(key), "D u-%s", k->path);
	expect_item_col(k, other, "display_name", key);
	expect_item_col(k, other, "is_active", "true");
}

/* Delete: the reply, 404 afterwards and for another company's, 409 once results point at it. */
static void delete_cases(const struct kind *k, const char *token, const char *phone)
{
	char path[128], key[64];
	struct th_resp *r;
	long long id, used, other;

	snprintf(key, sizeof(key), "d-%s", k->path);
	id = make_item(k, "acme", key, acme_id);
	snprintf(key, sizeof(key), "d-%s-used", k->path);
	used = make_item(k, "acme", key, acme_id);
	other = make_item(k, "globex", key, globex_id);

	snprintf(path, sizeof(path), "/api/acme/%s/%lld/", k->path, id); /* trailing slash */
	r = th_call(&api, "DELETE", path, token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(json_object_size(r->json), 2);
	assert_true(json_is_true(json_object_get(r->json, "deleted")));
	TH_EXPECT_INT(r->json, "id", id);
	th_resp_free(r);
	expect_item_col(k, id, "id", "");
	r = th_call(&api, "DELETE", path, token, NULL);
	TH_EXPECT_ERROR(r, 404, k->not_found);
	th_resp_free(r);

	/* Another company's id under acme's path: 404, still there. */
	snprintf(path, sizeof(path), "/api/acme/%s/%lld", k->path, other);
	r = th_call(&api, "DELETE", path, token, NULL);
	TH_EXPECT_ERROR(r, 404, k->not_found);
	th_resp_free(r);
	snprintf(key, sizeof(key), "%lld", globex_id);
	expect_item_col(k, other, "company_id", key);

	/* Results point at it: 409 with a clear detail, nothing deleted; it can still be
	 * deactivated. */
	add_attempt(k, acme_id, used, phone);
	snprintf(path, sizeof(path), "/api/acme/%s/%lld", k->path, used);
	r = th_call(&api, "DELETE", path, token, NULL);
	TH_EXPECT_ERROR(r, 409, NULL);
	assert_non_null(strstr(th_json_str(r->json, "detail"), "call results"));
	th_resp_free(r);
	expect_item_col(k, used, "has_results", "true");
	r = th_call(&api, "PUT", path, token, "{\"is_active\": false}");
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_false(json_object_get(r->json, "is_active")));
	th_resp_free(r);

	snprintf(path, sizeof(path), "/api/acme/%s/x1", k->path);
	r = th_call(&api, "DELETE", path, token, NULL);
	TH_EXPECT_INVALID(r, NULL);
	th_resp_free(r);
}

/* List: a bare array of the company's rows, active or not, ordered by id, with and without
 * the trailing slash. */
static void list_cases(const struct kind *k, const char *token)
{
	char path[96];

	static int calls;
	char key[32];

	snprintf(key, sizeof(key), "l-globex-%d", ++calls);
	make_item(k, "globex", key, globex_id); /* never in acme's list */
	for (size_t f = 0; f < 2; f++) {
		struct th_resp *r;
		json_t *v;
		size_t i;
		long long prev = 0, id, cid;
		bool inactive = false;

		snprintf(path, sizeof(path), "/api/acme/%s%s", k->path, f ? "/" : "");
		r = th_call(&api, "GET", path, token, NULL);
		TH_EXPECT_STATUS(r, 200);
		assert_true(json_is_array(r->json));
		assert_int_equal((long long)json_array_size(r->json), count_items(k, acme_id));
		assert_true(json_array_size(r->json) > 0);
		json_array_foreach(r->json, i, v)
		{
			expect_item_out(k, v);
			assert_int_equal(th_json_int(v, "id", &id), 0);
			assert_int_equal(th_json_int(v, "company_id", &cid), 0);
			assert_true(id > prev);
			assert_int_equal(cid, acme_id);
			prev = id;
			inactive |= json_is_false(json_object_get(v, "is_active"));
		}
		assert_true(inactive); /* "c-...-2" was created inactive */
		th_resp_free(r);
	}
}

/* The role table of COMPAT §1.6 (with membership on writes) for one resource under acme: every
 * caller on every endpoint, and a check that refused calls changed nothing. */
static void role_table(const struct kind *k, const struct th_expect *read, const struct th_expect *write)
{
	char path[128], key[64], current[96], sql[160], cid[24];
	long long fixed;

	snprintf(key, sizeof(key), "r-fixed-%s", k->path);
	fixed = make_item(k, "acme", key, acme_id);
	snprintf(current, sizeof(current), "D %s", key);
	snprintf(cid, sizeof(cid), "%lld", acme_id);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE company_id = $1 AND %s = $2", k->table, k->key);

	for (int a = 0; a < N_ACTORS; a++) {
		const char *token = actor_token(a);
		struct th_resp *r;
		long long victim;

		snprintf(path, sizeof(path), "/api/acme/%s", k->path);
		r = th_call(&api, "GET", path, token, NULL);
		TH_EXPECT_ANSWER(r, &read[a]);
		if (read[a].status == 200)
			assert_true(json_is_array(r->json));
		th_resp_free(r);

		snprintf(key, sizeof(key), "r-%s", actor_names[a]);
		r = post_item(k, "acme", token, key, acme_id);
		TH_EXPECT_ANSWER(r, &write[a]);
		th_resp_free(r);
		assert_int_equal(sql_int(sql, cid, key), write[a].status == 200 ? 1 : 0);

		snprintf(path, sizeof(path), "/api/acme/%s/%lld", k->path, fixed);
		r = th_callf(&api, "PUT", path, token, "{\"display_name\": \"by %s\"}", actor_names[a]);
		TH_EXPECT_ANSWER(r, &write[a]);
		th_resp_free(r);
		if (write[a].status == 200)
			snprintf(current, sizeof(current), "by %s", actor_names[a]);
		expect_item_col(k, fixed, "display_name", current);

		snprintf(key, sizeof(key), "r-victim-%s", actor_names[a]);
		victim = make_item(k, "acme", key, acme_id);
		snprintf(path, sizeof(path), "/api/acme/%s/%lld", k->path, victim);
		r = th_call(&api, "DELETE", path, token, NULL);
		TH_EXPECT_ANSWER(r, &write[a]);
		th_resp_free(r);
		snprintf(key, sizeof(key), "%lld", victim);
		expect_item_col(k, victim, "id", write[a].status == 200 ? "" : key);
	}
}

/* Unknown and inactive companies: 401 without a valid token (we do not tell anonymous callers
 * which companies exist), 404 "Company not found" once the role check has passed. */
static void company_cases(const struct kind *k)
{
	static const char *const methods[] = {"GET", "POST", "PUT", "DELETE"};
	char path[128];
	struct th_resp *r;

	for (size_t m = 0; m < 4; m++) {
		const char *const companies[] = {"nope", "sleepy"};

		for (size_t co = 0; co < 2; co++) {
			const char *body = NULL;
			char json[160];

			if (!strcmp(methods[m], "POST") || !strcmp(methods[m], "PUT")) {
				snprintf(json, sizeof(json),
				         "{\"%s\": \"zz\", \"display_name\": \"Z\", \"company_id\": %lld}", k->key,
				         sleepy_id);
				body = json;
			}
			if (m < 2)
				snprintf(path, sizeof(path), "/api/%s/%s", companies[co], k->path);
			else
				snprintf(path, sizeof(path), "/api/%s/%s/1", companies[co], k->path);
			r = th_call(&api, methods[m], path, NULL, body);
			TH_EXPECT_ERROR(r, 401, "Not authenticated");
			th_resp_free(r);
			r = th_call(&api, methods[m], path, TH_BAD_TOKEN, body);
			TH_EXPECT_ERROR(r, 401, "Could not validate credentials");
			th_resp_free(r);
			r = th_call(&api, methods[m], path, root_token, body);
			TH_EXPECT_ERROR(r, 404, "Company not found");
			th_resp_free(r);
		}
	}
	assert_int_equal(count_items(k, sleepy_id), 0);
}

/* ------------------------------------------------------------------ scenarios */

static const struct th_expect scenario_read[N_ACTORS] = {TH_OK, TH_OK, TH_DENIED, TH_OK, TH_NO_AUTH, TH_BAD_AUTH};
static const struct th_expect scenario_write[N_ACTORS] = {TH_OK, TH_OK, TH_DENIED, TH_ADMINS, TH_NO_AUTH, TH_BAD_AUTH};

static void test_scenarios_create(void **state)
{
	char name[600], *p = name;
	struct th_resp *r;

	(void)state;
	create_cases(&scenarios, acme_admin_token);

	/* Lengths count characters: 128 Persian letters (256 bytes) fit, 129 do not. */
	for (int i = 0; i < 128; i++)
		p += sprintf(p, "\xd8\xb3");
	r = post_item(&scenarios, "acme", acme_admin_token, name, acme_id);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "name", name);
	th_resp_free(r);
	sprintf(p, "\xd8\xb3");
	r = post_item(&scenarios, "acme", acme_admin_token, name, acme_id);
	TH_EXPECT_INVALID(r, "name");
	th_resp_free(r);
}

static void test_scenarios_list(void **state)
{
	(void)state;
	list_cases(&scenarios, acme_agent_token); /* AGENTs read scenarios too */
	list_cases(&scenarios, root_token);
}

static void test_scenarios_update(void **state)
{
	(void)state;
	update_cases(&scenarios, acme_admin_token);
}

static void test_scenarios_delete(void **state)
{
	(void)state;
	delete_cases(&scenarios, acme_admin_token, "09120000001");
}

static void test_scenarios_roles(void **state)
{
	(void)state;
	role_table(&scenarios, scenario_read, scenario_write);
}

static void test_scenarios_company(void **state)
{
	struct th_resp *r;

	(void)state;
	company_cases(&scenarios);
	/* Order: role before company, company before membership. */
	r = post_item(&scenarios, "nope", acme_agent_token, "o1", acme_id);
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/nope/scenarios", globex_admin_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	/* An admin of globex writing acme's scenarios: 403 even with acme's id in the body
	 * (the original let this through). */
	r = post_item(&scenarios, "acme", globex_admin_token, "o2", acme_id);
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	/* ... and with globex's own id under acme's path. */
	r = post_item(&scenarios, "acme", globex_admin_token, "o3", globex_id);
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	expect_sql("0", "SELECT count(*) FROM scenarios WHERE name IN ('o1', 'o2', 'o3')", NULL, NULL);
}

/* --------------------------------------------------------------------- lines */

static const struct th_expect line_all[N_ACTORS] = {TH_OK,         TH_SUPERUSERS, TH_SUPERUSERS,
                                                    TH_SUPERUSERS, TH_NO_AUTH,    TH_BAD_AUTH};

static void test_lines_create(void **state)
{
	struct th_resp *r;
	const char *raw = "+98 (21) \xdb\xb1\xdb\xb2-3456"; /* stored as given */
	long long id = -1;
	char ids[24];

	(void)state;
	create_cases(&lines, root_token);
	r = post_item(&lines, "acme", root_token, raw, acme_id);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "phone_number", raw);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);
	snprintf(ids, sizeof(ids), "%lld", id);
	expect_sql(raw, "SELECT phone_number FROM outbound_lines WHERE id = $1", ids, NULL);
}

static void test_lines_list(void **state)
{
	(void)state;
	list_cases(&lines, root_token);
}

static void test_lines_update(void **state)
{
	(void)state;
	update_cases(&lines, root_token);
}

static void test_lines_delete(void **state)
{
	(void)state;
	delete_cases(&lines, root_token, "09120000002");
}

static void test_lines_roles(void **state)
{
	(void)state;
	role_table(&lines, line_all, line_all);
}

static void test_lines_company(void **state)
{
	struct th_resp *r;

	(void)state;
	company_cases(&lines);
	/* The role comes before the company, for members of no company as well. */
	r = th_call(&api, "GET", "/api/nope/outbound-lines", acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/globex/outbound-lines", acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scenarios_create), cmocka_unit_test(test_scenarios_list),
	    cmocka_unit_test(test_scenarios_update), cmocka_unit_test(test_scenarios_delete),
	    cmocka_unit_test(test_scenarios_roles),  cmocka_unit_test(test_scenarios_company),
	    cmocka_unit_test(test_lines_create),     cmocka_unit_test(test_lines_list),
	    cmocka_unit_test(test_lines_update),     cmocka_unit_test(test_lines_delete),
	    cmocka_unit_test(test_lines_roles),      cmocka_unit_test(test_lines_company),
	};

	return cmocka_run_group_tests_name("scenarios_lines", tests, group_setup, group_teardown);
}
