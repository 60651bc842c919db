/*
 * Table-driven tests of the numbers selection builder: which predicates each
 * filter adds, that user values only ever travel as bound parameters, the
 * sort whitelist, search patterns and limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "selection.h"

static bool has_param(const struct selection_query *q, const char *v)
{
	for (int i = 0; i < q->nparams; i++)
		if (q->params[i] && !strcmp(q->params[i], v))
			return true;
	return false;
}

/* The highest $n in the text equals nparams: PostgreSQL refuses a mismatch. */
static void expect_params_match(const struct selection_query *q)
{
	int max = 0;
	char *text = NULL;
	size_t len = strlen(q->from_where) + strlen(q->order_by) + 2;
	text = malloc(len);
	snprintf(text, len, "%s %s", q->from_where, q->order_by);
	for (const char *p = strchr(text, '$'); p; p = strchr(p + 1, '$')) {
		int n = atoi(p + 1);
		if (n > max)
			max = n;
	}
	free(text);
	assert_int_equal(max, q->nparams);
}

static void test_company_and_filters(void **state)
{
	struct selection f = {0};
	struct selection_query q;
	(void)state;
	f.select_all = true;
	f.company_id = 7;
	f.status = "MISSED";
	f.global_status = "ACTIVE";
	assert_int_equal(selection_build(&f, &q), 0);
	assert_non_null(strstr(q.from_where, "LEFT JOIN number_state s ON s.company_id = $1"));
	assert_non_null(strstr(q.from_where, "s.status = $"));
	assert_non_null(strstr(q.from_where, "n.global_status = $"));
	assert_true(has_param(&q, "7"));
	assert_true(has_param(&q, "MISSED"));
	assert_true(has_param(&q, "ACTIVE"));
	assert_string_equal(q.order_by, "ORDER BY n.id DESC");
	expect_params_match(&q);
	selection_query_free(&q);

	/* IN_QUEUE = no state row; no company = status ignored, per-company columns NULL */
	f.status = "IN_QUEUE";
	assert_int_equal(selection_build(&f, &q), 0);
	assert_non_null(strstr(q.from_where, "s.number_id IS NULL"));
	assert_false(has_param(&q, "IN_QUEUE"));
	selection_query_free(&q);
	f.company_id = 0;
	f.status = "MISSED";
	assert_int_equal(selection_build(&f, &q), 0);
	assert_non_null(strstr(q.from_where, "ON false"));
	assert_null(strstr(q.from_where, "s.status"));
	expect_params_match(&q);
	selection_query_free(&q);
}

static void test_ids_and_dates(void **state)
{
	static const long long ids[] = {3, 1, 2};
	static const long long ex[] = {9};
	struct selection f = {0};
	struct selection_query q;
	(void)state;
	/* not select_all and no ids: nothing */
	assert_int_equal(selection_build(&f, &q), 0);
	assert_non_null(strstr(q.from_where, "AND false"));
	selection_query_free(&q);

	f.ids = ids;
	f.nids = 3;
	f.excluded = ex;
	f.nexcluded = 1;
	f.company_id = 4;
	f.has_start = f.has_end = true;
	f.start = 1771360200; /* 2026-02-18T00:00+03:30 */
	f.end = 1771446600;
	assert_int_equal(selection_build(&f, &q), 0);
	assert_true(has_param(&q, "{3,1,2}"));
	assert_true(has_param(&q, "{9}"));
	assert_true(has_param(&q, "1771360200"));
	assert_true(has_param(&q, "1771446600"));
	assert_non_null(strstr(q.from_where, "NOT (n.id = ANY ("));
	assert_non_null(strstr(q.from_where, "EXISTS (SELECT 1 FROM call_attempts a WHERE a.company_id = $1"));
	expect_params_match(&q);
	selection_query_free(&q);

	/* select_all ignores ids; without a company the dates are on last_called_at */
	f.select_all = true;
	f.company_id = 0;
	assert_int_equal(selection_build(&f, &q), 0);
	assert_false(has_param(&q, "{3,1,2}"));
	assert_non_null(strstr(q.from_where, "n.last_called_at >= to_timestamp($"));
	expect_params_match(&q);
	selection_query_free(&q);

	/* limits */
	f.nexcluded = SELECTION_IDS_MAX + 1;
	assert_int_equal(selection_build(&f, &q), -1);
}

/* Hostile text never reaches the SQL text. */
static void test_injection(void **state)
{
	static const char *const evil[] = {
	    "'; DROP TABLE numbers; --", "0912' OR '1'='1", "$99", "\\", "%_%", "\") OR true --",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
		static const long long agents[] = {5};
		struct selection f = {0};
		struct selection_query q;
		f.select_all = true;
		f.company_id = 2;
		f.search = evil[i];
		f.search_agents = agents;
		f.nsearch_agents = 1;
		f.status = evil[i]; /* the API validates statuses; the builder binds them anyway */
		f.global_status = evil[i];
		assert_int_equal(selection_build(&f, &q), 0);
		assert_null(strstr(q.from_where, evil[i]));
		assert_null(strstr(q.from_where, "DROP"));
		assert_null(strstr(q.from_where, "'1'"));
		expect_params_match(&q);
		selection_query_free(&q);
	}
}

static void test_search_patterns(void **state)
{
	static const struct {
		const char *in;
		const char *phone; /* NULL: not a phone search */
		const char *name;  /* NULL: blank search */
	} cases[] = {
	    {"912", "%912%", "%912%"},
	    {" 0912-345 ", "%0912345%", "%0912-345%"},
	    {"+98 (912)", "%98912%", "%+98 (912)%"},
	    {"\xdb\xb0\xdb\xb9\xdb\xb1\xdb\xb2", "%0912%", "%0912%"}, /* Persian digits */
	    {"\xd9\xa1\xd9\xa2", "%12%", "%12%"},                     /* Arabic-Indic */
	    {"zahra", NULL, "%zahra%"},
	    {"912_", NULL, "%912\\_%"},
	    {"50%", NULL, "%50\\%%"},
	    {"a\\b", NULL, "%a\\\\b%"},
	    {"   ", NULL, NULL},
	    {"", NULL, NULL},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *phone, *name;
		int rc = selection_search_patterns(cases[i].in, &phone, &name);
		if (!cases[i].name) {
			assert_int_equal(rc, -1);
			assert_null(phone);
			assert_null(name);
			continue;
		}
		assert_int_equal(rc, 0);
		if (cases[i].phone)
			assert_string_equal(phone, cases[i].phone);
		else
			assert_null(phone);
		assert_string_equal(name, cases[i].name);
		free(phone);
		free(name);
	}
	/* 101 characters is too long */
	char longs[102];
	memset(longs, '1', 101);
	longs[101] = '\0';
	char *p, *n;
	assert_int_equal(selection_search_patterns(longs, &p, &n), -1);
}

static void test_search_predicate(void **state)
{
	static const long long agents[] = {11, 12};
	struct selection f = {0};
	struct selection_query q;
	(void)state;
	f.select_all = true;
	f.company_id = 3;
	f.search = "zahra"; /* letters, no matching agent: nothing */
	assert_int_equal(selection_build(&f, &q), 0);
	assert_non_null(strstr(q.from_where, "AND (false)"));
	selection_query_free(&q);
	f.search_agents = agents;
	f.nsearch_agents = 2;
	assert_int_equal(selection_build(&f, &q), 0);
	assert_non_null(strstr(q.from_where, "AND (s.assigned_agent_id = ANY ($"));
	assert_true(has_param(&q, "{11,12}"));
	expect_params_match(&q);
	selection_query_free(&q);
	f.search = "0912";
	assert_int_equal(selection_build(&f, &q), 0);
	assert_non_null(strstr(q.from_where, "n.phone_number LIKE $"));
	assert_non_null(strstr(q.from_where, " OR s.assigned_agent_id = ANY ($"));
	assert_true(has_param(&q, "%0912%"));
	expect_params_match(&q);
	selection_query_free(&q);
	f.search = "  "; /* blank: no predicate */
	assert_int_equal(selection_build(&f, &q), 0);
	assert_null(strstr(q.from_where, "LIKE"));
	selection_query_free(&q);
}

static void test_sort(void **state)
{
	static const struct {
		const char *by, *order;
		int rc;
		enum selection_sort sort;
		bool asc;
	} cases[] = {
	    {NULL, NULL, 0, SELECTION_SORT_CREATED_AT, false},
	    {"created_at", "asc", 0, SELECTION_SORT_CREATED_AT, true},
	    {"last_attempt_at", "desc", 0, SELECTION_SORT_LAST_ATTEMPT_AT, false},
	    {"status", "asc", 0, SELECTION_SORT_STATUS, true},
	    {"phone_number", NULL, -1, 0, false},
	    {"id; DROP TABLE numbers", NULL, -1, 0, false},
	    {NULL, "ASC", -1, 0, false},
	    {NULL, "sideways", -1, 0, false},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum selection_sort s;
		bool asc;
		assert_int_equal(selection_parse_sort(cases[i].by, cases[i].order, &s, &asc), cases[i].rc);
		if (cases[i].rc == 0) {
			assert_int_equal(s, cases[i].sort);
			assert_int_equal(asc, cases[i].asc);
		}
	}
	struct selection f = {0};
	struct selection_query q;
	f.select_all = true;
	f.company_id = 1;
	f.sort = SELECTION_SORT_LAST_ATTEMPT_AT;
	f.ascending = true;
	assert_int_equal(selection_build(&f, &q), 0);
	assert_string_equal(q.order_by, "ORDER BY s.last_attempt_at ASC NULLS LAST, n.id ASC");
	selection_query_free(&q);
	f.sort = SELECTION_SORT_STATUS;
	f.company_id = 0; /* no company: falls back to id */
	assert_int_equal(selection_build(&f, &q), 0);
	assert_string_equal(q.order_by, "ORDER BY n.id ASC");
	selection_query_free(&q);
}

static void test_statuses(void **state)
{
	(void)state;
	assert_true(selection_status_valid("INBOUND_CALL"));
	assert_false(selection_status_valid("inbound_call"));
	assert_false(selection_status_valid(NULL));
	assert_true(selection_global_status_valid("COMPLAINED"));
	assert_false(selection_global_status_valid("MISSED"));
	assert_true(selection_status_mutable(NULL));
	assert_true(selection_status_mutable("BANNED"));
	assert_false(selection_status_mutable("CONNECTED"));
	assert_false(selection_status_mutable("COMPLAINED"));
}

/* A selection survives a job's params: the same SQL text and parameters come out. */
static void test_json_roundtrip(void **state)
{
	static const long long ids[] = {5, 7, 9}, excl[] = {7}, agents[] = {3, 4};
	struct selection cases[] = {
	    {.company_id = 12,
	     .status = "MISSED",
	     .global_status = "ACTIVE",
	     .search = "0912 ۱۲",
	     .search_agents = agents,
	     .nsearch_agents = 2,
	     .has_start = true,
	     .start = 1771360200,
	     .has_end = true,
	     .end = 1771446600,
	     .select_all = true,
	     .excluded = excl,
	     .nexcluded = 1,
	     .sort = SELECTION_SORT_LAST_ATTEMPT_AT,
	     .ascending = true,
	     .agent_id = 8},
	    {.ids = ids, .nids = 3, .sort = SELECTION_SORT_STATUS},
	    {.company_id = 3, .only_agent_id = 4, .status = "IN_QUEUE", .select_all = true},
	    {.select_all = false},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct selection back;
		struct selection_arrays arr;
		struct selection_query q1, q2;
		json_t *j = selection_to_json(&cases[i]);
		char *text = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		j = json_loads(text, 0, NULL); /* as the worker reads it from the jobs row */
		free(text);
		assert_non_null(j);
		assert_int_equal(selection_from_json(j, &back, &arr), 0);
		assert_int_equal(selection_build(&cases[i], &q1), 0);
		assert_int_equal(selection_build(&back, &q2), 0);
		assert_string_equal(q1.from_where, q2.from_where);
		assert_string_equal(q1.order_by, q2.order_by);
		assert_int_equal(q1.nparams, q2.nparams);
		for (int k = 0; k < q1.nparams; k++)
			if (q1.params[k] || q2.params[k])
				assert_string_equal(q1.params[k], q2.params[k]);
		selection_query_free(&q1);
		selection_query_free(&q2);
		selection_arrays_free(&arr);
		json_decref(j);
	}
	/* malformed params are refused, nothing allocated */
	static const char *const bad[] = {
	    "[]",
	    "{\"status\": \"NOPE\"}",
	    "{\"ids\": [1, \"2\"]}",
	    "{\"sort_by\": \"phone\"}",
	    "{\"company_id\": -1}",
	    "{\"start\": \"yesterday\"}",
	    "{\"search\": 5}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct selection back;
		struct selection_arrays arr;
		json_t *j = json_loads(bad[i], 0, NULL);
		assert_non_null(j);
		assert_int_equal(selection_from_json(j, &back, &arr), -1);
		assert_null(arr.ids);
		json_decref(j);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_company_and_filters),
	    cmocka_unit_test(test_ids_and_dates),
	    cmocka_unit_test(test_injection),
	    cmocka_unit_test(test_search_patterns),
	    cmocka_unit_test(test_search_predicate),
	    cmocka_unit_test(test_sort),
	    cmocka_unit_test(test_statuses),
	    cmocka_unit_test(test_json_roundtrip),
	};
	return cmocka_run_group_tests_name("selection", tests, NULL, NULL);
}
