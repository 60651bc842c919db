/*
 * Real-time events: the contract of the Redis stream STREAM_EVENTS ("dialer:events") that
 * dialer-events fans out (SSE, WebSocket) and the webhooks worker consumes, the emitters every
 * process uses, and the reader's parser.
 *
 * An event is one stream entry, added with
 *   XADD dialer:events MAXLEN ~ <EVENTS_STREAM_LEN> * type <t> company_id <n> data <json> at <ms>
 * type: one of EVENTS_TYPES ("result.ingested", ...); company_id: decimal, 0 = not
 * company-scoped (superusers only); data: a JSON object as text; at: ms since the epoch when
 * it was emitted. The stream id is the event id (SSE "id:").
 *
 * Emitting never fails the caller's work: it runs after the caller's commit, a Redis error is
 * logged and counted (metrics events_emitted, events_emit_failed, events_dropped), never
 * returned; the async emitter bounds what it has in flight and drops beyond it.
 */
#ifndef DIALER_EVENTS_H
#define DIALER_EVENTS_H

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "common.h"
#include "rds.h"

/* The event types, in the order docs/api.md lists them. */
#define EVENTS_RESULT_INGESTED  "result.ingested"
#define EVENTS_NUMBER_UPDATED   "number.updated"
#define EVENTS_IMPORT_PROGRESS  "import.progress"
#define EVENTS_IMPORT_COMPLETED "import.completed"
#define EVENTS_EXPORT_COMPLETED "export.completed"
#define EVENTS_SCHEDULE_CHANGED "schedule.changed"
#define EVENTS_DIALER_STATE     "dialer.state"

#define EVENTS_NTYPES 7 /* how many types above */

/* NULL-terminated list of every type above. */
extern const char *const events_types[];
/* Index of type in events_types, or -1 when it is none. */
int events_type_index(const char *type);

#define EVENTS_DATA_MAX     65536      /* bytes of one event's data JSON; a bigger event is dropped (logged) */
#define EVENTS_INFLIGHT_MAX 10000      /* async emits awaiting Redis's reply, all threads together */
#define EVENTS_ID_MAX       RDS_ID_MAX /* "<ms>-<seq>" with its NUL, with room */

/*
 * How an event's JSON is written (its data by the emitters, its envelope by dialer-events) and
 * the API's replies too: compact (an SSE data: line holds no raw newline) with 15 significant
 * digits, so that 10.1 reads 10.1 and not jansson's default 17-digit 10.099999999999999.
 */
#define EVENTS_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* ---- emitting ---- */

/*
 * Emits one event on a blocking connection (workers, scheduler, CLI): one XADD, one round
 * trip. data is stolen (NULL counts as {}). Never fails the caller: errors are logged and
 * counted. redis may be NULL (nothing is sent; counted as failed).
 */
void events_emit_new(redisContext *redis, const char *type, long company_id, json_t *data);

/* Several events in one pipelined round trip (the results worker's batch: one per company). */
struct events_batch {
	char **data; /* JSON texts, owned */
	const char **type;
	long *company_id;
	size_t n, cap;
};
/* Adds an event (data stolen; NULL counts as {}); an oversized one is dropped and logged. */
void events_batch_add_new(struct events_batch *b, const char *type, long company_id, json_t *data);
/* Sends every event added (XADD × n, then the n replies) and empties b (reusable; free with
 * events_batch_free). Errors are logged and counted, never returned. */
void events_batch_send(redisContext *redis, struct events_batch *b);
void events_batch_free(struct events_batch *b);

/*
 * Emits one event through the API loop's async connection: data stolen (NULL counts as {}),
 * the XADD goes out with whatever else this loop turn sends (pipelined), the reply is only
 * checked for errors. Beyond EVENTS_INFLIGHT_MAX unanswered emits (Redis slow or away) the
 * event is dropped and counted. Call after the change has committed.
 */
void events_emit_async_new(struct rds *redis, const char *type, long company_id, json_t *data);

/* ---- reading ---- */

/* One event as read back from the stream. Strings owned by the struct. */
struct event_msg {
	char id[EVENTS_ID_MAX];
	char type[32];
	long company_id;
	long long at_ms;
	char *data; /* the JSON object's text, as stored */
	size_t data_len;
};

/*
 * Parses one XREAD/XRANGE element ([id, [field, value, ...]]) into *out. Returns 0, or -1
 * when it is not a well-formed event (unknown type, bad company_id, data not a JSON object);
 * the reader skips those. Free out with events_msg_clear.
 */
int events_parse(const redisReply *el, struct event_msg *out) MUSTCHECK;
void events_msg_clear(struct event_msg *m);

/* ---- SSE (dialer-events' streams, and the API's answer when it cannot hand one over) ---- */

/* The first lines of every SSE answer's body: EventSource's reconnect delay. */
#define EVENTS_SSE_RETRY "retry: 2000\n\n"

/*
 * The SSE event that ends a stream: "event: dropped" with {"reason", "last_event_id"} (null when
 * last_id is NULL or ""), and no id: line, so the client's Last-Event-ID stays where it was; its
 * EventSource reconnects after the retry delay. Both are written as they are: reason a word of
 * ours ("shutdown", "unavailable", ...), last_id a stream id (rds_id_parse). Caller frees.
 */
char *events_sse_dropped(const char *reason, const char *last_id);

#endif
