/*
 * dialer-webhooks, the stream side. Per batch of dialer:events entries: one query for the
 * batch's companies that have an active webhook, with the event types those subscribe to; the
 * data parsed and the body built (jansson) only for the events some webhook wants; then one
 * statement that stores the events and inserts a pending delivery for every matching webhook
 * (backlog capped per webhook), then XACK. A crash anywhere before the XACK leaves the entries
 * pending: they are read again (own pending after a reconnect, others' through XAUTOCLAIM), and
 * the unique keys make the second insert a no-op.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "db.h"
#include "events.h"
#include "ingest.h"
#include "metrics.h"
#include "rds.h"
#include "util.h"
#include "webhook.h"

#define READ_COUNT   256 /* entries per batch */
#define CLAIM_ROUNDS 10  /* XAUTOCLAIM calls per tick at most */

/* One stream entry of a batch. */
struct event {
	struct event_msg m; /* the contract's parse of it (common/events); owns its strings */
	int type;           /* index of m.type in events_types */
	json_t *data;       /* owned; parsed only when some webhook wants the event */
	char *body;         /* owned; NULL unless some webhook wants the event */
	bool ok;
};

/* A company of the batch with an active webhook: the event types its active webhooks
 * subscribe to, as bits (1 << index in events_types; every bit for "*"). */
struct company {
	long id;
	const char *name; /* borrowed from the query's result */
	unsigned types;
};

static struct {
	bool recover;                  /* re-read this consumer's own pending entries before new ones */
	char recover_from[RDS_ID_MAX]; /* cursor through them */
	char last_read[RDS_ID_MAX];    /* the newest entry read: where a lost group is created again */
	unsigned long read, bad, dropped;
} is;

void ingest_reset(void)
{
	is.recover = true;
	snprintf(is.recover_from, sizeof(is.recover_from), "0");
}

void ingest_take_counts(unsigned long *read, unsigned long *bad, unsigned long *dropped)
{
	*read = is.read;
	*bad = is.bad;
	*dropped = is.dropped;
	is.read = is.bad = is.dropped = 0;
}

/* Fills e from one [id, [field, value, ...]] entry with the events contract's parser (its
 * data is parsed later, only when some webhook wants the event); e->ok false (and logged) when
 * malformed: an unknown type, a bad company_id, data that does not look like a JSON object, a
 * pending entry trimmed from the stream (no fields). */
static void parse_entry(const redisReply *entry, struct event *e)
{
	struct rds_stream_id sid;

	memset(e, 0, sizeof(*e));
	if (events_parse(entry, &e->m) == 0) {
		e->type = events_type_index(e->m.type);
		e->ok = e->type >= 0;
		/* at: the emitter's clock; the id's time when it is missing or absurd */
		if (e->m.at_ms <= 0 || e->m.at_ms > 32503680000000LL) /* year 3000 */
			e->m.at_ms = rds_id_parse(e->m.id, &sid) ? 0 : (long long)sid.ms;
	}
	if (!e->ok) {
		const char *id =
		    entry->type == REDIS_REPLY_ARRAY && entry->elements && entry->element[0]->type == REDIS_REPLY_STRING
		        ? entry->element[0]->str
		        : "-";
		is.bad++;
		metrics_count("webhooks_events_malformed", 1);
		log_warn("event=event_malformed stream_id=%s error=\"%s\"", id,
		         entry->type == REDIS_REPLY_ARRAY && entry->elements >= 2 &&
		                 entry->element[1]->type != REDIS_REPLY_ARRAY
		             ? "entry deleted from the stream before it was read"
		             : "not an event of the contract (type, company_id, data object)");
	}
}

static void events_free(struct event *ev, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_decref(ev[i].data);
		free(ev[i].body);
		events_msg_clear(&ev[i].m);
	}
	free(ev);
}

/* The body every delivery of e sends and signs (caller frees), or NULL when too large. */
static char *build_body(const struct event *e, const char *company)
{
	char at[32];
	util_iso_us((int64_t)e->m.at_ms * 1000, at);
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(e->m.id));
	json_object_set_new(o, "type", json_string(e->m.type));
	json_object_set_new(o, "company_id", json_integer(e->m.company_id));
	json_object_set_new(o, "company", json_string(company));
	json_object_set(o, "data", e->data);
	json_object_set_new(o, "at", json_string(at));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s && strlen(s) > WEBHOOK_BODY_MAX) {
		free(s);
		return NULL;
	}
	return s;
}

/* A PostgreSQL result that must be TUPLES_OK; logs and clears it otherwise. */
static PGresult *tuples_or_log(PGresult *r, const char *what)
{
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		return r;
	log_warn("event=%s_failed error=\"%s\"", what, db_error_message(NULL, r));
	PQclear(r);
	return NULL;
}

/* Runs a statement without parameters that returns no rows; false (logged) when it fails. */
static bool command_ok(PGconn *db, const char *sql)
{
	PGresult *r = PQexec(db, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		log_warn("event=statement_failed sql=\"%.20s\" error=\"%s\"", sql, db_error_message(db, r));
	PQclear(r);
	return ok;
}

static int company_cmp(const void *a, const void *b)
{
	long x = ((const struct company *)a)->id, y = ((const struct company *)b)->id;
	return (x > y) - (x < y);
}

/* The companies of r (rows id, name, type; ordered by id) into out[] (at most r's rows): one
 * per id, with its types as bits. Returns how many. */
static size_t companies_of(PGresult *r, struct company *out)
{
	size_t n = 0;
	for (int k = 0; k < PQntuples(r); k++) {
		long id = strtol(PQgetvalue(r, k, 0), NULL, 10);
		const char *type = PQgetvalue(r, k, 2);
		if (!n || out[n - 1].id != id)
			out[n++] = (struct company){.id = id, .name = PQgetvalue(r, k, 1)};
		if (!strcmp(type, "*")) {
			out[n - 1].types = ~0u;
		} else {
			int t = events_type_index(type); /* a type this build no longer knows: nothing */
			if (t >= 0)
				out[n - 1].types |= 1u << t;
		}
	}
	return n;
}

/* Parses e's data; false (counted and logged as malformed) when it is not a JSON object. */
static bool data_ok(struct event *e)
{
	e->data = json_loadb(e->m.data, e->m.data_len, JSON_REJECT_DUPLICATES, NULL);
	if (json_is_object(e->data))
		return true;
	is.bad++;
	metrics_count("webhooks_events_malformed", 1);
	log_warn("event=event_malformed stream_id=%s error=\"data is not a JSON object\"", e->m.id);
	return false;
}

/*
 * The batch's companies that have an active webhook, with the event types those webhooks
 * subscribe to (one query), then the body of each event some webhook wants: only those have
 * their data parsed. Returns how many events got a body, or -1 (database failure).
 */
static int build_bodies(PGconn *db, struct event *ev, size_t n)
{
	struct buf ids = {0};
	struct company *co = NULL;
	char *lit = NULL;
	int built = 0;
	PGresult *r = NULL;

	_Static_assert(EVENTS_NTYPES <= sizeof(unsigned) * 8, "one bit per event type");
	for (size_t i = 0; i < n; i++) {
		char num[24];
		if (!ev[i].ok || ev[i].m.company_id == 0) /* 0: not company-scoped; webhooks belong to companies */
			continue;
		snprintf(num, sizeof(num), "%ld", ev[i].m.company_id);
		buf_array_elem(&ids, num);
	}
	if (!ids.len)
		goto out;
	lit = xasprintf("{%s}", ids.p);
	const char *p[1] = {lit};
	r = tuples_or_log(PQexecParams(db,
	                               "SELECT DISTINCT c.id, c.name, t.type FROM companies c"
	                               " JOIN webhooks w ON w.company_id = c.id AND w.is_active"
	                               " CROSS JOIN unnest(w.events) AS t(type)"
	                               " WHERE c.id = ANY ($1::int[]) ORDER BY c.id",
	                               1, NULL, p, NULL, NULL, 0),
	                  "webhook_companies");
	if (!r) {
		built = -1;
		goto out;
	}
	co = xcalloc((size_t)PQntuples(r), sizeof(*co));
	size_t nco = companies_of(r, co);
	for (size_t i = 0; i < n && nco; i++) {
		struct company key = {.id = ev[i].m.company_id};
		const struct company *c = ev[i].ok ? bsearch(&key, co, nco, sizeof(*co), company_cmp) : NULL;
		if (!c || !(c->types & (1u << ev[i].type)) || !data_ok(&ev[i]))
			continue;
		ev[i].body = build_body(&ev[i], c->name);
		if (ev[i].body) {
			built++;
		} else {
			is.bad++;
			log_warn("event=event_malformed stream_id=%s error=\"body over %d bytes\"", ev[i].m.id,
			         WEBHOOK_BODY_MAX);
		}
	}
out:
	PQclear(r);
	free(co);
	free(ids.p);
	free(lit);
	return built;
}

/*
 * One statement: the events with a body are stored (the exact bytes every delivery sends), and
 * each gets a pending delivery, due now, for every active webhook of its company whose events
 * include its type or "*". A webhook whose backlog holds WEBHOOK_MAX_PENDING deliveries takes
 * no more: what does not fit is counted in webhooks.dropped (the count runs once per webhook:
 * MATERIALIZED, else the planner repeats it per event). Re-running it for the same entries
 * changes nothing (unique keys).
 */
static const char RECORD_SQL[] =
    "WITH ev AS ("
    "  SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[]) WITH ORDINALITY"
    "   AS e(event_id, company_id, type, body, ord)),"
    " m AS ("
    "  SELECT ev.event_id, ev.ord, w.id AS webhook_id FROM ev JOIN webhooks w"
    "   ON w.company_id = ev.company_id AND w.is_active AND (ev.type = ANY (w.events) OR '*' = ANY (w.events))),"
    " room AS MATERIALIZED ("
    "  SELECT t.webhook_id, $5::int - (SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries d"
    "   WHERE d.webhook_id = t.webhook_id AND d.state = 'pending' LIMIT $5::int) x) AS room"
    "  FROM (SELECT DISTINCT webhook_id FROM m) t),"
    " ranked AS ("
    "  SELECT m.*, row_number() OVER (PARTITION BY m.webhook_id ORDER BY m.ord) <= r.room AS fits"
    "  FROM m JOIN room r USING (webhook_id)),"
    " ins_e AS ("
    "  INSERT INTO webhook_events (event_id, company_id, type, body)"
    "  SELECT ev.event_id, ev.company_id, ev.type, ev.body FROM ev"
    "  WHERE ev.event_id IN (SELECT event_id FROM ranked WHERE fits)"
    "  ON CONFLICT (event_id) DO NOTHING),"
    " ins_d AS ("
    "  INSERT INTO webhook_deliveries (webhook_id, event_id, next_attempt_at)"
    "  SELECT webhook_id, event_id, now() FROM ranked WHERE fits ORDER BY ord"
    "  ON CONFLICT (webhook_id, event_id) DO NOTHING RETURNING 1),"
    " dropped AS ("
    "  UPDATE webhooks w SET dropped = w.dropped + k.n"
    "  FROM (SELECT webhook_id, count(*) AS n FROM ranked WHERE NOT fits GROUP BY webhook_id) k"
    "  WHERE w.id = k.webhook_id RETURNING w.id, k.n)"
    " SELECT (SELECT count(*) FROM ins_d),"
    "  (SELECT COALESCE(sum(n), 0) FROM dropped),"
    "  (SELECT string_agg(id || ':' || n, ',') FROM dropped)";

/* Stores the events that have a body. Returns 0 (*queued = deliveries created) or -1. */
static int record(PGconn *db, const struct event *ev, size_t n, long *queued)
{
	struct buf a[4] = {{0}};
	char *lit[4], cap[24];
	int rc = -1;

	for (size_t i = 0; i < n; i++) {
		char num[24];
		if (!ev[i].body)
			continue;
		snprintf(num, sizeof(num), "%ld", ev[i].m.company_id);
		buf_array_elem(&a[0], ev[i].m.id);
		buf_array_elem(&a[1], num);
		buf_array_elem(&a[2], ev[i].m.type);
		buf_array_elem(&a[3], ev[i].body);
	}
	for (int k = 0; k < 4; k++)
		lit[k] = xasprintf("{%s}", a[k].p ? a[k].p : "");
	snprintf(cap, sizeof(cap), "%d", cfg.webhook_max_pending);
	const char *p[5] = {lit[0], lit[1], lit[2], lit[3], cap};
	/* the session commits asynchronously (claims and outcomes may be forgotten by a database
	 * crash: sent again); this commit must be durable, the entries are acknowledged after it */
	PGresult *r = NULL;
	if (!command_ok(db, "BEGIN; SET LOCAL synchronous_commit = on"))
		goto out;
	r = tuples_or_log(PQexecParams(db, RECORD_SQL, 5, NULL, p, NULL, NULL, 0), "record");
	if (!r) {
		if (PQstatus(db) == CONNECTION_OK)
			command_ok(db, "ROLLBACK");
		goto out;
	}
	if (command_ok(db, "COMMIT")) {
		long dropped = strtol(PQgetvalue(r, 0, 1), NULL, 10);
		*queued += strtol(PQgetvalue(r, 0, 0), NULL, 10);
		if (dropped > 0) {
			is.dropped += (unsigned long)dropped;
			metrics_count("webhooks_dropped", (uint64_t)dropped);
			/* webhook id:count pairs; the backlog is full because the receiver keeps failing */
			log_warn("event=deliveries_dropped reason=backlog_full max_pending=%d webhooks=%s",
			         cfg.webhook_max_pending, PQgetvalue(r, 0, 2));
		}
		rc = 0;
	}
out:
	PQclear(r);
	for (int k = 0; k < 4; k++) {
		free(a[k].p);
		free(lit[k]);
	}
	return rc;
}

/* Records a list of entries, then acknowledges them. Returns 0 or -1. */
static int process(struct worker_ctx *w, const redisReply *list, long *queued)
{
	size_t n = list->elements;
	struct event *ev = xcalloc(n ? n : 1, sizeof(*ev));
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		parse_entry(list->element[i], &ev[i]);
	is.read += n;
	metrics_count("webhooks_events_read", n);
	int built = build_bodies(w->db, ev, n);
	if (built < 0 || (built > 0 && record(w->db, ev, n, queued))) {
		rc = -1;
		goto out;
	}
	/* on failure they stay pending, and are recorded again, harmlessly */
	rc = rds_xack(w->redis, STREAM_EVENTS, WEBHOOKS_GROUP, list, list->elements);
out:
	events_free(ev, n);
	return rc;
}

int ingest_run(struct worker_ctx *w, int block_ms, long *queued, bool *full)
{
	char count[16], block[16];
	const char *argv[11];
	int argc = 0;
	snprintf(count, sizeof(count), "%d", READ_COUNT);
	snprintf(block, sizeof(block), "%d", block_ms);
	argv[argc++] = "XREADGROUP";
	argv[argc++] = "GROUP";
	argv[argc++] = WEBHOOKS_GROUP;
	argv[argc++] = w->consumer;
	argv[argc++] = "COUNT";
	argv[argc++] = count;
	if (block_ms > 0 && !is.recover) { /* BLOCK 0 would wait forever: left out to not wait */
		argv[argc++] = "BLOCK";
		argv[argc++] = block;
	}
	argv[argc++] = "STREAMS";
	argv[argc++] = STREAM_EVENTS;
	argv[argc++] = is.recover ? is.recover_from : ">"; /* own pending entries: from a cursor */
	redisReply *r = redisCommandArgv(w->redis, argc, argv, NULL);
	int rc = 0;
	if (!r) {
		log_warn("event=read_failed error=\"%s\"", w->redis->errstr);
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		log_warn("event=read_failed error=\"%s\"", r->str);
		/* the stream or the group was deleted: on from the newest entry read (nothing replayed that
		 * was read; entries added meanwhile delivered), or from now after a restart */
		if (worker_group_lost(w, r, is.last_read))
			is.recover = false; /* its pending entries went with it */
		freeReplyObject(r);
		return -1;
	}
	const redisReply *list = rds_xread_entries(r);
	*full = list && list->elements >= READ_COUNT;
	const redisReply *newest = list && list->elements ? list->element[list->elements - 1] : NULL;
	const char *newest_id = newest && newest->type == REDIS_REPLY_ARRAY && newest->elements &&
	                                newest->element[0]->type == REDIS_REPLY_STRING
	                            ? newest->element[0]->str
	                            : NULL;
	if (list && list->elements)
		rc = process(w, list, queued);
	if (rc == 0 && newest_id && rds_id_cmp(newest_id, is.last_read) > 0)
		snprintf(is.last_read, sizeof(is.last_read), "%s", newest_id);
	if (is.recover && rc == 0) {
		if (newest_id)
			snprintf(is.recover_from, sizeof(is.recover_from), "%s", newest_id);
		else
			is.recover = false;
	}
	freeReplyObject(r);
	return rc;
}

void ingest_claim(struct worker_ctx *w, long *queued)
{
	char cursor[RDS_ID_MAX] = "0-0", idle[16], count[16];
	snprintf(idle, sizeof(idle), "%d", cfg.claim_idle_ms);
	snprintf(count, sizeof(count), "%d", READ_COUNT);
	for (int round = 0; round < CLAIM_ROUNDS; round++) {
		redisReply *r =
		    rds_autoclaim(w->redis, STREAM_EVENTS, WEBHOOKS_GROUP, w->consumer, idle, count, false, cursor);
		if (!r)
			return;
		const redisReply *list = r->element[1];
		int rc = 0;
		if (list->elements) {
			log_info("event=claimed count=%zu", list->elements);
			metrics_count("webhooks_events_claimed", list->elements);
			rc = process(w, list, queued);
		}
		freeReplyObject(r);
		if (rc || !strcmp(cursor, "0-0"))
			return;
	}
}

void ingest_check_lag(struct worker_ctx *w)
{
	redisReply *r = redisCommand(w->redis, "XINFO GROUPS %s", STREAM_EVENTS);
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *name = rds_entry_field(r->element[i], "name"),
		                 *lag = rds_flat_field(r->element[i], "lag");
		if (!name || strcmp(name->str, WEBHOOKS_GROUP))
			continue;
		/* lag is nil when Redis cannot tell: entries the group had not read were trimmed */
		if (lag && lag->type == REDIS_REPLY_INTEGER && lag->integer > cfg.events_stream_len / 2)
			log_warn("event=falling_behind lag=%lld stream_len=%ld (entries beyond it are trimmed unread)",
			         lag->integer, cfg.events_stream_len);
		else if (lag && lag->type == REDIS_REPLY_NIL)
			log_warn("event=falling_behind lag=unknown (entries may have been trimmed unread)");
	}
	freeReplyObject(r);
}
