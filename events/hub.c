/*
 * dialer-events' shared pieces: rendering an event once for every client (struct emsg), a
 * client's queue of references to them (struct refq), a client's scope and who sees what, the
 * ids in stream replies, and the answers before streaming (an SSE head, refusals).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "hub.h"

atomic_int hub_clients;

struct emsg *emsg_new(const struct event_msg *ev)
{
	json_error_t err;
	json_t *data = json_loadb(ev->data, ev->data_len, 0, &err);
	if (!json_is_object(data)) {
		json_decref(data);
		return NULL;
	}
	json_t *env = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o}", "event", ev->type, "type", ev->type, "id", ev->id,
	                        "company_id", (json_int_t)ev->company_id, "at", (json_int_t)ev->at_ms, "data", data);
	/* compact: no raw newline, so the envelope is one SSE data: line */
	char *s = env ? json_dumps(env, EVENTS_JSON_FLAGS) : NULL;
	json_decref(env);
	if (!s)
		return NULL;
	size_t n = strlen(s);
	struct emsg *m = xcalloc(1, sizeof(*m));
	atomic_init(&m->refs, 1);
	snprintf(m->id, sizeof(m->id), "%s", ev->id);
	m->type_idx = events_type_index(ev->type);
	m->company_id = ev->company_id;
	m->sse = xasprintf("id: %s\nevent: %s\ndata: %s\n\n", ev->id, ev->type, s);
	m->sse_len = strlen(m->sse);
	m->ws = xmalloc(HUB_WS_PRE + n + 1);
	memcpy(m->ws + HUB_WS_PRE, s, n + 1);
	m->ws_len = n;
	free(s);
	return m;
}

struct emsg *emsg_ref(struct emsg *m)
{
	atomic_fetch_add(&m->refs, 1);
	return m;
}

void emsg_unref(struct emsg *m)
{
	if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
		free(m->sse);
		free(m->ws);
		free(m);
	}
}

/* ---- a client's queue of references ---- */

static size_t refq_size(const struct refq *q, const struct emsg *m)
{
	return q->kind == REFQ_WS ? m->ws_len : m->sse_len;
}

void refq_push(struct refq *q, struct emsg *m)
{
	if (q->len == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 16;
		struct emsg **v = xmalloc(ncap * sizeof(*v));
		for (size_t i = 0; i < q->len; i++)
			v[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = v;
		q->cap = ncap;
		q->head = 0;
	}
	q->v[(q->head + q->len) % q->cap] = m;
	q->len++;
	q->bytes += refq_size(q, m);
}

bool refq_offer(struct refq *q, struct emsg *m, size_t backlog)
{
	if (backlog + refq_size(q, m) > (size_t)cfg.events_client_buffer_bytes) {
		emsg_unref(m);
		return false;
	}
	refq_push(q, m);
	return true;
}

struct emsg *refq_pop(struct refq *q)
{
	if (!q->len)
		return NULL;
	struct emsg *m = q->v[q->head];
	q->head = (q->head + 1) % q->cap;
	q->len--;
	q->bytes -= refq_size(q, m);
	return m;
}

void refq_clear(struct refq *q)
{
	struct emsg *m;
	while ((m = refq_pop(q)))
		emsg_unref(m);
	free(q->v);
	q->v = NULL;
	q->head = q->cap = 0;
}

/* ---- scopes ---- */

int scope_from_json(const json_t *h, struct scope *s)
{
	json_t *types = json_object_get(h, "types");
	const char *user = json_string_value(json_object_get(h, "username"));
	const char *rid = json_string_value(json_object_get(h, "rid"));
	const char *peer = json_string_value(json_object_get(h, "peer"));
	memset(s, 0, sizeof(*s));
	if (!json_is_integer(json_object_get(h, "user_id")) || !json_is_integer(json_object_get(h, "company_id")) ||
	    !json_is_boolean(json_object_get(h, "is_superuser")))
		return -1;
	s->user_id = (long)json_integer_value(json_object_get(h, "user_id"));
	s->superuser = json_is_true(json_object_get(h, "is_superuser"));
	s->company_id = (long)json_integer_value(json_object_get(h, "company_id"));
	s->token_exp = (long long)json_integer_value(json_object_get(h, "token_exp"));
	/* the API never hands over a company user without their company; refuse it here too */
	if (!s->superuser && s->company_id <= 0)
		return -1;
	snprintf(s->username, sizeof(s->username), "%s", user ? user : "-");
	snprintf(s->rid, sizeof(s->rid), "%s", rid ? rid : "-");
	snprintf(s->peer, sizeof(s->peer), "%s", peer ? peer : "-");
	if (json_is_array(types)) {
		size_t i;
		json_t *t;
		json_array_foreach(types, i, t)
		{
			int k = events_type_index(json_string_value(t));
			if (k < 0)
				return -1;
			s->types |= 1u << k;
		}
	} else {
		s->types = ~0u;
	}
	return 0;
}

bool scope_sees(const struct scope *s, int type_idx, long company_id)
{
	if (type_idx < 0 || !(s->types & (1u << type_idx)))
		return false;
	if (s->company_id == 0)
		return s->superuser; /* every company's, and the unscoped ones */
	return company_id == s->company_id;
}

/* ---- stream replies ---- */

const char *hub_entry_id(const redisReply *el)
{
	if (!el || el->type != REDIS_REPLY_ARRAY || el->elements < 1 || el->element[0]->type != REDIS_REPLY_STRING)
		return NULL;
	return el->element[0]->str;
}

const char *hub_first_id(const redisReply *r)
{
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1)
		return NULL;
	return hub_entry_id(r->element[0]);
}

/* ---- answers before streaming ---- */

char *hub_sse_head(const char *rid, const char *origin)
{
	bool cors = origin && *origin;
	return xasprintf("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
	                 "Cache-Control: no-cache, no-store\r\nConnection: close\r\nX-Accel-Buffering: no\r\n"
	                 "X-Request-Id: %s\r\n%s%s%s\r\n" EVENTS_SSE_RETRY,
	                 rid, cors ? "Access-Control-Allow-Origin: " : "", cors ? origin : "",
	                 cors ? "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n" : "");
}

/* Writes text to a connection handed over moments ago and closes it. Its send buffer, empty,
 * takes a few KiB at once: nothing more is tried (the loop, or the WebSocket thread, never waits
 * on a client). */
static void send_and_close(int fd, const char *text)
{
	(void)!send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

void hub_reject(int fd, int status, const char *code, const char *msg)
{
	char body[512];
	int bl = snprintf(body, sizeof(body),
	                  "{\"detail\":\"%s\",\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"details\":{}}}", msg,
	                  code, msg);
	char *all = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
	                      "Connection: close\r\nRetry-After: 1\r\n\r\n%s",
	                      status, status == 503 ? "Service Unavailable" : "Error", bl, body);
	send_and_close(fd, all);
	free(all);
}

void hub_reject_sse(int fd, const char *reason, const char *rid, const char *origin, const char *last_id)
{
	char *head = hub_sse_head(rid ? rid : "-", origin), *bye = events_sse_dropped(reason, last_id);
	char *all = xasprintf("%s%s", head, bye);
	send_and_close(fd, all);
	free(all);
	free(bye);
	free(head);
}
