/*
 * GET /api/events (Server-Sent Events) and GET /ws/updates (WebSocket): the API authenticates
 * and checks the request like any other, then hands the client's socket to dialer-events over
 * the Unix socket EVENTS_SOCKET (SCM_RIGHTS, one SOCK_SEQPACKET message: a JSON header and the
 * descriptor), which streams to it from then on. Why a handoff: docs/architecture.md, "Events".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "events.h"
#include "util.h"

#define TYPES_PARAM_MAX 512 /* bytes of ?types= */

enum ev_kind { EV_SSE, EV_WS };

struct evreq {
	enum ev_kind kind;
	json_t *types; /* array of type names, or NULL: every type */
	char last_id[EVENTS_ID_MAX];
};

static void evreq_free(void *p)
{
	struct evreq *r = p;
	json_decref(r->types);
	free(r);
}

/* The WebSocket handshake to replay in dialer-events (libwebsockets parses it again): the path
 * without its query (the token stays here) and only the headers the handshake needs, so that it
 * is small whatever cookies the browser sends. Caller frees. */
static char *raw_request(struct http_ctx *c)
{
	static const char *const keep[] = {"Host",
	                                   "Upgrade",
	                                   "Connection",
	                                   "Origin",
	                                   "Sec-WebSocket-Key",
	                                   "Sec-WebSocket-Version",
	                                   "Sec-WebSocket-Protocol",
	                                   NULL};
	struct buf b = {0};
	buf_add(&b, "GET /ws/updates HTTP/1.1\r\n", 26);
	struct evkeyvalq *h = evhttp_request_get_input_headers(c->req);
	for (struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
		bool wanted = false;
		for (int i = 0; keep[i] && !wanted; i++)
			wanted = !strcasecmp(kv->key, keep[i]);
		if (!wanted || strlen(kv->value) > 256)
			continue;
		buf_add(&b, kv->key, strlen(kv->key));
		buf_add(&b, ": ", 2);
		buf_add(&b, kv->value, strlen(kv->value));
		buf_add(&b, "\r\n", 2);
	}
	buf_add(&b, "\r\n", 2);
	return b.p;
}

/* Sends the header and fd as one message; 0 once it is queued to dialer-events. */
static int send_to_events(int fd, void *arg)
{
	const char *msg = arg;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
	int s = -1, rc = -1;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg.events_socket);
	/* non-blocking: a Unix connect completes at once or fails (no listener, backlog full) */
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa))) {
		log_warn("event=events_handoff_failed step=connect socket=%s error=\"%s\"", cfg.events_socket,
		         strerror(errno));
		goto out;
	}
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	if (sendmsg(s, &mh, MSG_NOSIGNAL) != (ssize_t)iov.iov_len) {
		log_warn("event=events_handoff_failed step=send error=\"%s\"", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (s >= 0)
		close(s);
	return rc;
}

/*
 * dialer-events did not take the client (it is not running, or is restarting). A WebSocket
 * client gets 503 EVENTS_UNAVAILABLE. An SSE client gets a stream that ends at once: 200, the
 * retry delay and "event: dropped" (reason unavailable, its own Last-Event-ID), since EventSource
 * never retries an answer other than 200 (it closes for good) but reconnects after a stream that
 * ends; dialer-events answers a client it refuses the same way (events/hub.c).
 */
static void reply_unavailable(struct http_ctx *c)
{
	struct evreq *r = c->state;
	if (r->kind == EV_WS) {
		http_add_header(c, "Retry-After", "1");
		http_error(c, 503, "EVENTS_UNAVAILABLE", "Events service unavailable");
		return;
	}
	char *bye = events_sse_dropped("unavailable", r->last_id);
	char *body = xasprintf(EVENTS_SSE_RETRY "%s", bye);
	http_add_header(c, "Cache-Control", "no-cache, no-store");
	http_reply_raw(c, 200, "text/event-stream; charset=utf-8", body, strlen(body));
	free(body);
	free(bye);
}

static void hand_over(struct http_ctx *c)
{
	struct evreq *r = c->state;
	const char *origin = http_cors_origin(c);
	char *req = r->kind == EV_WS ? raw_request(c) : NULL;
	json_t *m = json_pack(
	    "{s:i, s:s, s:I, s:s, s:b, s:I, s:I, s:O?, s:s?, s:I, s:s?, s:s, s:s, s:s?}", "v", 1, "kind",
	    r->kind == EV_WS ? "ws" : "sse", "user_id", (json_int_t)c->user.id, "username", c->user.username,
	    "is_superuser", c->user.is_superuser, "user_company_id", (json_int_t)c->user.company_id, "company_id",
	    (json_int_t)c->company_id, "types", r->types, "last_event_id", r->last_id[0] ? r->last_id : NULL,
	    "token_exp", (json_int_t)c->token_exp, "origin", origin, "rid", c->rid, "peer", c->peer, "request", req);
	free(req);
	char *msg = m ? json_dumps(m, EVENTS_JSON_FLAGS) : NULL;
	json_decref(m);
	if (!msg) {
		http_error(c, 500, "INTERNAL_ERROR", "cannot encode the handoff");
		return;
	}
	log_info("event=events_handoff kind=%s company_id=%ld superuser=%d", r->kind == EV_WS ? "ws" : "sse",
	         c->company_id, c->user.is_superuser);
	/* c is freed by http_handoff once handed over; else it is still to be answered */
	int rc = http_handoff(c, r->kind == EV_WS ? 101 : 200, send_to_events, msg);
	free(msg);
	if (rc)
		reply_unavailable(c);
}

/* ?types=a,b: each a known event type; *out an array, or NULL when absent. */
static bool types_or_reply(struct http_ctx *c, json_t **out)
{
	const char *q = http_query(c, "types");
	*out = NULL;
	if (!q || !*q)
		return true;
	if (strlen(q) > TYPES_PARAM_MAX) {
		http_invalid(c, "types", "too long");
		return false;
	}
	char *copy = xstrdup(q), *save = NULL;
	json_t *a = json_array();
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		if (events_type_index(t) < 0) {
			char msg[96];
			snprintf(msg, sizeof(msg), "unknown event type (one of %s, %s, ...)", events_types[0],
			         events_types[1]);
			free(copy);
			json_decref(a);
			http_invalid(c, "types", msg);
			return false;
		}
		json_array_append_new(a, json_string(t));
	}
	free(copy);
	*out = a;
	return true;
}

static void start(struct http_ctx *c, enum ev_kind kind)
{
	struct evreq *r = xcalloc(1, sizeof(*r));
	c->state = r;
	c->state_free = evreq_free;
	r->kind = kind;
	/* agents see only their own numbers: the company-wide stream is for admins */
	if (!require_admin_or_reply(c))
		return;
	if (kind == EV_WS) {
		const char *up = http_header(c, "Upgrade");
		if (!up || strcasecmp(up, "websocket")) {
			http_error(c, 400, "UPGRADE_REQUIRED", "WebSocket upgrade required (Upgrade: websocket)");
			return;
		}
	}
	if (!types_or_reply(c, &r->types))
		return;
	const char *last = http_header(c, "Last-Event-ID");
	if (!last || !*last)
		last = http_query(c, "last_event_id");
	if (last && *last) {
		struct rds_stream_id id;
		if (rds_id_parse(last, &id)) {
			http_invalid(c, "Last-Event-ID", "must be an event id (<ms>-<seq>)");
			return;
		}
		snprintf(r->last_id, sizeof(r->last_id), "%s", last);
	}
	const char *company = http_query(c, "company");
	if (company && *company) {
		company_by_name(c, company, true, hand_over); /* 404 unknown, 403 another company's */
		return;
	}
	/* no company named: a company user's own, a superuser's every company */
	c->company_id = c->user.is_superuser ? 0 : c->user.company_id;
	if (!c->user.is_superuser && !c->company_id) {
		http_error(c, 403, "FORBIDDEN", "Access denied to this company");
		return;
	}
	hand_over(c);
}

static void sse(struct http_ctx *c)
{
	start(c, EV_SSE);
}

static void ws(struct http_ctx *c)
{
	start(c, EV_WS);
}

static const struct route routes[] = {
    {"GET", "/api/events", sse, AUTH_JWT, RF_TOKEN_QUERY, NULL},
    {"GET", "/ws/updates", ws, AUTH_JWT, RF_TOKEN_QUERY, NULL},
};

void events_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
