/*
 * Events stream: emitters (blocking, pipelined batch, async) and the reader's parser. The
 * contract is in events.h; every emitter writes the same four fields with the same XADD.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "events.h"
#include "metrics.h"
#include "util.h"
#include "worker.h"

const char *const events_types[] = {
    EVENTS_RESULT_INGESTED,  EVENTS_NUMBER_UPDATED,   EVENTS_IMPORT_PROGRESS, EVENTS_IMPORT_COMPLETED,
    EVENTS_EXPORT_COMPLETED, EVENTS_SCHEDULE_CHANGED, EVENTS_DIALER_STATE,    NULL,
};

_Static_assert(ARRAY_LEN(events_types) == EVENTS_NTYPES + 1, "EVENTS_NTYPES must count events_types");

static atomic_int inflight; /* async emits awaiting their reply, all loops */

int events_type_index(const char *type)
{
	for (int i = 0; type && events_types[i]; i++)
		if (!strcmp(type, events_types[i]))
			return i;
	return -1;
}

/* The data's text (steals data), or NULL when it is too big or not an object (logged). Caller frees. */
static char *data_text(const char *type, json_t *data)
{
	char *s = NULL;
	if (!data)
		data = json_object();
	if (json_is_object(data))
		s = json_dumps(data, EVENTS_JSON_FLAGS);
	json_decref(data);
	if (!s || strlen(s) > EVENTS_DATA_MAX) {
		log_warn("event=event_dropped type=%s reason=\"%s\"", type,
		         s ? "data too large" : "data not an object");
		metrics_count("events_dropped", 1);
		free(s);
		return NULL;
	}
	return s;
}

/* XADD STREAM_EVENTS MAXLEN ~ <len> * type <t> company_id <n> data <json> at <ms>: 14 arguments;
 * bufs hold the numbers' text. */
#define XADD_ARGC 14
static void xadd_full(const char *argv[XADD_ARGC], size_t lens[XADD_ARGC], char bufs[3][24], const char *type,
                      long company_id, const char *data)
{
	snprintf(bufs[0], 24, "%ld", cfg.events_stream_len);
	snprintf(bufs[1], 24, "%ld", company_id > 0 ? company_id : 0);
	snprintf(bufs[2], 24, "%lld", (long long)(util_wall_us() / 1000));
	const char *v[XADD_ARGC] = {"XADD", STREAM_EVENTS, "MAXLEN", "~",    bufs[0], "*",  "type",
	                            type,   "company_id",  bufs[1],  "data", data,    "at", bufs[2]};
	for (int i = 0; i < XADD_ARGC; i++) {
		argv[i] = v[i];
		lens[i] = strlen(v[i]);
	}
}

static bool reply_ok(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_STRING;
}

void events_emit_new(redisContext *redis, const char *type, long company_id, json_t *data)
{
	struct events_batch b = {0};
	events_batch_add_new(&b, type, company_id, data);
	events_batch_send(redis, &b);
	events_batch_free(&b);
}

void events_batch_add_new(struct events_batch *b, const char *type, long company_id, json_t *data)
{
	char *s = data_text(type, data);
	if (!s)
		return;
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 8;
		b->data = xrealloc(b->data, b->cap * sizeof(*b->data));
		b->type = xrealloc(b->type, b->cap * sizeof(*b->type));
		b->company_id = xrealloc(b->company_id, b->cap * sizeof(*b->company_id));
	}
	b->data[b->n] = s;
	b->type[b->n] = type;
	b->company_id[b->n] = company_id;
	b->n++;
}

void events_batch_send(redisContext *redis, struct events_batch *b)
{
	size_t sent = 0, ok = 0;
	for (size_t i = 0; redis && !redis->err && i < b->n; i++) {
		const char *argv[XADD_ARGC];
		size_t lens[XADD_ARGC];
		char bufs[3][24];
		xadd_full(argv, lens, bufs, b->type[i], b->company_id[i], b->data[i]);
		if (redisAppendCommandArgv(redis, XADD_ARGC, argv, lens) != REDIS_OK)
			break;
		sent++;
	}
	/* every reply owed is read, so the connection stays in step with its caller's commands */
	for (size_t i = 0; i < sent; i++) {
		redisReply *r = NULL;
		if (redisGetReply(redis, (void **)&r) != REDIS_OK) {
			log_warn("event=event_emit_failed error=\"%s\"", redis->errstr);
			break;
		}
		if (reply_ok(r))
			ok++;
		else
			log_warn("event=event_emit_failed type=%s error=\"%s\"", b->type[i],
			         r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		freeReplyObject(r);
	}
	if (b->n > ok) {
		metrics_count("events_emit_failed", b->n - ok);
		if (!redis || redis->err)
			log_warn("event=event_emit_failed count=%zu error=\"%s\"", b->n - ok,
			         redis ? redis->errstr : "no redis connection");
	}
	metrics_count("events_emitted", ok);
	for (size_t i = 0; i < b->n; i++)
		free(b->data[i]);
	b->n = 0;
}

void events_batch_free(struct events_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->data[i]);
	free(b->data);
	free(b->type);
	free(b->company_id);
	memset(b, 0, sizeof(*b));
}

static void async_done(redisReply *r, void *arg)
{
	const char *type = arg; /* static string (events_types) */
	atomic_fetch_sub(&inflight, 1);
	if (reply_ok(r)) {
		metrics_count("events_emitted", 1);
		return;
	}
	metrics_count("events_emit_failed", 1);
	log_warn("event=event_emit_failed type=%s error=\"%s\"", type,
	         r && r->type == REDIS_REPLY_ERROR ? r->str : "redis unavailable");
}

void events_emit_async_new(struct rds *redis, const char *type, long company_id, json_t *data)
{
	int k = events_type_index(type);
	char *s = data_text(type, data);
	if (!s)
		return;
	if (k < 0 || atomic_fetch_add(&inflight, 1) >= EVENTS_INFLIGHT_MAX) {
		if (k >= 0)
			atomic_fetch_sub(&inflight, 1);
		log_warn("event=event_dropped type=%s reason=\"%s\"", type,
		         k < 0 ? "unknown type" : "too many in flight");
		metrics_count("events_dropped", 1);
		free(s);
		return;
	}
	const char *argv[XADD_ARGC];
	size_t lens[XADD_ARGC];
	char bufs[3][24];
	xadd_full(argv, lens, bufs, type, company_id, s);
	rds_command(redis, async_done, (void *)events_types[k], XADD_ARGC, argv, lens);
	free(s);
}

/* ---- reading ---- */

void events_msg_clear(struct event_msg *m)
{
	free(m->data);
	memset(m, 0, sizeof(*m));
}

int events_parse(const redisReply *el, struct event_msg *out)
{
	struct rds_stream_id id;
	memset(out, 0, sizeof(*out));
	if (!el || el->type != REDIS_REPLY_ARRAY || el->elements < 2 || el->element[0]->type != REDIS_REPLY_STRING ||
	    rds_id_parse(el->element[0]->str, &id))
		return -1;
	snprintf(out->id, sizeof(out->id), "%s", el->element[0]->str);
	const redisReply *f = el->element[1];
	const redisReply *type = rds_entry_field(f, "type"), *company = rds_entry_field(f, "company_id"),
	                 *data = rds_entry_field(f, "data"), *at = rds_entry_field(f, "at");
	long cid;
	if (!type || events_type_index(type->str) < 0 || !company ||
	    util_parse_long(company->str, 0, 2147483647L, &cid) || !data || data->len > EVENTS_DATA_MAX ||
	    data->len < 2 || data->str[0] != '{' || !util_utf8_valid(data->str, data->len))
		return -1;
	snprintf(out->type, sizeof(out->type), "%s", type->str);
	out->company_id = cid;
	out->at_ms = at ? strtoll(at->str, NULL, 10) : (long long)id.ms;
	out->data = xstrndup(data->str, data->len);
	out->data_len = data->len;
	return 0;
}

/* ---- SSE ---- */

char *events_sse_dropped(const char *reason, const char *last_id)
{
	bool id = last_id && *last_id;
	return xasprintf("event: dropped\ndata: {\"reason\":\"%s\",\"last_event_id\":%s%s%s}\n\n", reason,
	                 id ? "\"" : "", id ? last_id : "null", id ? "\"" : "");
}
