/*
 * Table-driven tests of the events stream contract (common/events): stream ids, their order,
 * which entries are well-formed events, the data text the emitters write, and the SSE "dropped"
 * event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "events.h"

static void test_ids(void **state)
{
	static const struct {
		const char *s;
		int ok;
	} cases[] = {
	    {"0-0", 1},
	    {"1795409600232-0", 1},
	    {"1-18446744073709551615", 1},
	    {"", 0},
	    {"-1-0", 0},
	    {"12", 0},
	    {"12-", 0},
	    {"12-x", 0},
	    {"a-1", 0},
	    {"1-2-3", 0},
	    {"1 -2", 0},
	    {"$", 0},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rds_stream_id id;
		assert_int_equal(rds_id_parse(cases[i].s, &id) == 0, cases[i].ok);
	}
	assert_int_equal(rds_id_cmp("1-0", "1-0"), 0);
	assert_int_equal(rds_id_cmp("1-1", "1-0"), 1);
	assert_int_equal(rds_id_cmp("9-5", "10-0"), -1); /* numeric, not text, order */
	assert_int_equal(rds_id_cmp("10-0", "9-5"), 1);
}

/* A stream entry [id, [field, value, ...]] as hiredis builds it. */
static redisReply *str(const char *s)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_STRING;
	r->str = strdup(s);
	r->len = strlen(s);
	return r;
}

static redisReply *entry(const char *id, const char *const *kv, size_t n)
{
	redisReply *e = calloc(1, sizeof(*e)), *f = calloc(1, sizeof(*f));
	e->type = f->type = REDIS_REPLY_ARRAY;
	e->elements = 2;
	e->element = calloc(2, sizeof(*e->element));
	e->element[0] = str(id);
	e->element[1] = f;
	f->elements = n;
	f->element = calloc(n ? n : 1, sizeof(*f->element));
	for (size_t i = 0; i < n; i++)
		f->element[i] = str(kv[i]);
	return e;
}

static void test_parse(void **state)
{
	static const struct {
		const char *kv[8];
		int ok;
	} cases[] = {
	    {{"type", "schedule.changed", "company_id", "2", "data", "{\"a\":1}", "at", "5"}, 1},
	    {{"type", "dialer.state", "company_id", "0", "data", "{}", "at", "5"}, 1},
	    {{"type", "nope", "company_id", "2", "data", "{}", "at", "5"}, 0},          /* unknown type */
	    {{"type", "dialer.state", "company_id", "-1", "data", "{}", "at", "5"}, 0}, /* bad company */
	    {{"type", "dialer.state", "company_id", "x", "data", "{}", "at", "5"}, 0},
	    {{"type", "dialer.state", "company_id", "2", "data", "[1]", "at", "5"}, 0}, /* not an object */
	    {{"type", "dialer.state", "company_id", "2", "other", "{}", "at", "5"}, 0}, /* no data */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redisReply *e = entry("7-1", cases[i].kv, 8);
		struct event_msg m;
		int rc = events_parse(e, &m);
		assert_int_equal(rc == 0, cases[i].ok);
		if (rc == 0) {
			assert_string_equal(m.id, "7-1");
			assert_int_equal(m.at_ms, 5);
			assert_string_equal(m.type, cases[i].kv[1]);
			assert_string_equal(m.data, cases[i].kv[5]);
			events_msg_clear(&m);
		}
		freeReplyObject(e);
	}
	assert_int_equal(events_type_index("result.ingested"), 0);
	assert_int_equal(events_type_index("dialer.state"), 6);
	assert_int_equal(events_type_index("x"), -1);
	assert_null(events_types[7]);
}

/* The data text an emitter writes: compact, reals with 15 significant digits. */
static void test_data_text(void **state)
{
	static const struct {
		double v;
		const char *text;
	} cases[] = {
	    {10.1, "{\"percent\":10.1}"}, /* not 10.099999999999999 */
	    {33.33, "{\"percent\":33.33}"},
	    {100.0, "{\"percent\":100.0}"},
	    {0.5, "{\"percent\":0.5}"},
	};
	(void)state;
	struct events_batch b = {0};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		events_batch_add_new(&b, EVENTS_IMPORT_PROGRESS, 1, json_pack("{s:f}", "percent", cases[i].v));
	assert_int_equal(b.n, sizeof(cases) / sizeof(cases[0]));
	for (size_t i = 0; i < b.n; i++)
		assert_string_equal(b.data[i], cases[i].text);
	events_batch_free(&b);
}

static void test_sse_dropped(void **state)
{
	static const struct {
		const char *reason, *last_id, *text;
	} cases[] = {
	    {"shutdown", "7-1", "event: dropped\ndata: {\"reason\":\"shutdown\",\"last_event_id\":\"7-1\"}\n\n"},
	    {"unavailable", "", "event: dropped\ndata: {\"reason\":\"unavailable\",\"last_event_id\":null}\n\n"},
	    {"slow_client", NULL, "event: dropped\ndata: {\"reason\":\"slow_client\",\"last_event_id\":null}\n\n"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = events_sse_dropped(cases[i].reason, cases[i].last_id);
		assert_string_equal(s, cases[i].text);
		free(s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ids),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_data_text),
	    cmocka_unit_test(test_sse_dropped),
	};
	return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
