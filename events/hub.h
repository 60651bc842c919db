/*
 * dialer-events: what its parts share. main.c reads the events stream and takes the clients the
 * API hands over; sse.c streams to Server-Sent Events clients on the main libevent loop; ws.c
 * runs libwebsockets on its own thread for the WebSocket clients. An event is rendered once
 * (struct emsg) and shared, by reference, by every client that receives it.
 */
#ifndef DIALER_EVENTS_HUB_H
#define DIALER_EVENTS_HUB_H

#include <stdatomic.h>

#include <event2/event.h>
#include <jansson.h>

#include "common.h"
#include "events.h"

#define HUB_WS_PRE 16 /* room before a WebSocket payload (libwebsockets' LWS_PRE; checked in ws.c) */

/* One event, rendered for both transports; immutable once made, shared between threads. */
struct emsg {
	atomic_int refs;
	char id[EVENTS_ID_MAX];
	int type_idx; /* index in events_types */
	long company_id;
	char *sse; /* "id: …\nevent: …\ndata: <envelope>\n\n" */
	size_t sse_len;
	unsigned char *ws; /* HUB_WS_PRE bytes, then the envelope JSON (the WebSocket text message) */
	size_t ws_len;     /* of the envelope */
};

/* Renders ev (borrowed) as {"event", "type", "id", "company_id", "at", "data"}; one reference,
 * or NULL when its data is not a JSON object. */
struct emsg *emsg_new(const struct event_msg *ev);
struct emsg *emsg_ref(struct emsg *m);
void emsg_unref(struct emsg *m);

/*
 * A client's queue of references to events, oldest first (both transports): a ring that grows
 * by doubling, and the bytes the queued events take in the client's rendering. All zero is an
 * empty queue that counts the SSE rendering; a WebSocket client's sets kind first.
 */
enum refq_kind { REFQ_SSE, REFQ_WS };

struct refq {
	struct emsg **v;
	size_t head, len, cap;
	size_t bytes; /* of the queued events, as kind renders them */
	enum refq_kind kind;
};

/* Appends m; its reference moves into q. */
void refq_push(struct refq *q, struct emsg *m);
/* Appends m (its reference moves in) unless backlog (all the client holds unsent, q's bytes
 * included) plus m would go over EVENTS_CLIENT_BUFFER_BYTES: then m is released and false is
 * returned, and the client, too slow, is to be dropped (and told why) by its transport. */
bool refq_offer(struct refq *q, struct emsg *m, size_t backlog) MUSTCHECK;
/* Takes the oldest out (its reference is the caller's), or NULL when q is empty. */
struct emsg *refq_pop(struct refq *q);
/* Releases every queued reference and the ring; q stays usable (empty, of the same kind). */
void refq_clear(struct refq *q);

/* Who a client is and what it asked for (from the API's handoff header). */
struct scope {
	long user_id;
	char username[72];
	bool superuser;
	long company_id;     /* 0: every company and the unscoped events (superusers only) */
	unsigned types;      /* bit per events_types index */
	long long token_exp; /* unix s; the connection ends then */
	char rid[72];
	char peer[64];
};

/* Fills *s from the handoff header. Returns 0, or -1 when it is malformed. */
int scope_from_json(const json_t *h, struct scope *s) MUSTCHECK;
/* Whether the client of s receives an event of type type_idx (index in events_types, -1: none)
 * and company_id: checked before an event is rendered for one client (a resume's catch-up) as
 * well as for a rendered one (m->type_idx, m->company_id). */
bool scope_sees(const struct scope *s, int type_idx, long company_id);

/* The id of a stream entry ([id, [field, value, ...]], of an XREAD or XRANGE reply), or NULL
 * when el is not one. Borrowed from el. */
const char *hub_entry_id(const redisReply *el);
/* The id of the first entry of an XRANGE/XREVRANGE reply (with COUNT 1: the stream's oldest or
 * newest), or NULL when it has none. Borrowed from r. */
const char *hub_first_id(const redisReply *r);

/* Counters shared by both transports (main thread reads them for the log). */
extern atomic_int hub_clients; /* connected SSE + WebSocket clients */

/* ---- sse.c (main loop) ---- */

/* Takes over a handed-off connection: fd (taken) with scope s; last_id ("" = live only). */
void sse_adopt(struct event_base *base, int fd, const struct scope *s, const char *last_id, const char *origin);
/* A new event from the live read: to every SSE client that sees it. */
void sse_broadcast(struct emsg *m);
/* The live reader's position moved: resumes waiting on it can go on. */
void sse_live_at(const char *last_id);
/* Once a second: heartbeats, token expiry, drop timeouts. */
void sse_tick(void);
/* Shutdown, from the loop: every client is told ("event: dropped", reason shutdown) and closed
 * once that is written (logged once, as it closes). Returns how many are still to close; when
 * that is not 0, drained runs (from the loop) once the last of them has closed. */
size_t sse_shutdown(void (*drained)(void));
/* Frees every client left, whatever it has not been sent (at exit, the loop stopped). */
void sse_close_all(void);
/* The async Redis connection sse.c reads catch-ups through (set by main.c). */
struct rds;
void sse_init(struct event_base *base, struct rds *redis);

/* ---- ws.c (its own thread) ---- */

/* Starts the libwebsockets thread. Returns 0 or -1. */
int ws_start(void);
/* Stops it and frees everything (joins the thread). */
void ws_stop(void);
/* Hands a connection to the WebSocket thread: fd (taken), request = the handshake to replay. */
void ws_adopt(int fd, const struct scope *s, const char *request);
/* A new event to every WebSocket client that sees it (takes a reference). */
void ws_broadcast(struct emsg *m);
/* Once a second (token expiry). */
void ws_tick(void);
/* Shutdown: every WebSocket client is closed with 1001 "shutdown" (logged once, as it closes),
 * and drained runs, on the WebSocket thread, once none is left (at once when there is none). */
void ws_shutdown(void (*drained)(void));

/* The head of an SSE answer: "HTTP/1.1 200", its headers (CORS ones for origin, when not NULL or
 * ""; X-Request-Id rid), the blank line and EVENTS_SSE_RETRY. Caller frees. */
char *hub_sse_head(const char *rid, const char *origin);

/* Refusals before streaming: a complete response is written to fd (blocking briefly, best
 * effort) and fd is closed. A WebSocket client (or one of no known kind) gets an HTTP error
 * (the API's JSON, Retry-After: 1). */
void hub_reject(int fd, int status, const char *code, const char *msg);
/* An SSE client gets a stream that ends at once instead: 200, the retry delay and "event:
 * dropped" with reason and last_id (the client's Last-Event-ID, a stream id, or NULL), since
 * EventSource never retries an answer other than 200 (it closes for good) but does reconnect
 * after a stream that ends. rid, origin: as for hub_sse_head. */
void hub_reject_sse(int fd, const char *reason, const char *rid, const char *origin, const char *last_id);

#endif
