/*
 * Request framework on evhttp: request ids, limits, CORS, routing with path
 * parameters, JSON bodies, auth, async DB/Redis/CPU steps, and the single
 * reply path with its access log line and metrics.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sys/queue.h>
#include <event2/thread.h>

#include "api.h"
#include "authn.h"
#include "config.h"
#include "events.h"
#include "http.h"
#include "metrics.h"
#include "pgjson.h"
#include "util.h"
#include "workq.h"

/* ------------------------------------------------------------------ routes */

#define ROUTES_MAX   (METRICS_ROUTES_MAX - 1)
#define SEGS_MAX     8
#define LOG_PATH_MAX 256 /* bytes of a request path in the access log */

struct croute {
	const struct route *r;
	int nsegs;
	char *segs[SEGS_MAX]; /* NULL = parameter */
};

static struct croute croutes[ROUTES_MAX];
static int ncroutes;

void http_routes_add(const struct route *routes, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct croute *cr = &croutes[ncroutes];
		char *pat = xstrdup(routes[i].pattern), *save = NULL;
		if (ncroutes >= ROUTES_MAX) {
			log_error("event=too_many_routes");
			abort();
		}
		cr->r = &routes[i];
		for (char *s = strtok_r(pat, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
			if (cr->nsegs >= SEGS_MAX)
				abort();
			cr->segs[cr->nsegs++] = s[0] == '{' ? NULL : xstrdup(s);
		}
		free(pat);
		metrics_route_name(ncroutes, routes[i].pattern);
		ncroutes++;
	}
}

/* Literal segments beat parameters, earliest position first. */
static bool more_specific(const struct croute *a, const struct croute *b)
{
	for (int i = 0; i < a->nsegs; i++) {
		if (a->segs[i] && !b->segs[i])
			return true;
		if (!a->segs[i] && b->segs[i])
			return false;
	}
	return false;
}

/* Finds the route for method and the decoded segments; *path_known tells a 405 from a 404. */
static int route_match(const char *method, char **segs, int nsegs, bool *path_known)
{
	int best = -1;
	*path_known = false;
	for (int i = 0; i < ncroutes; i++) {
		const struct croute *cr = &croutes[i];
		if (cr->nsegs != nsegs)
			continue;
		int k;
		for (k = 0; k < nsegs; k++)
			if (cr->segs[k] && strcmp(cr->segs[k], segs[k]))
				break;
		if (k != nsegs)
			continue;
		*path_known = true;
		if (strcmp(cr->r->method, method))
			continue;
		if (best < 0 || more_specific(cr, &croutes[best]))
			best = i;
	}
	return best;
}

/* A match of a different method may be more specific than the best of ours
 * ("/api/companies/x" PUT vs "/api/{company}/admins"): the path belongs to the
 * most specific pattern, whatever its methods. */
static bool path_owned_by_other(int best, const char *method, char **segs, int nsegs)
{
	for (int i = 0; i < ncroutes; i++) {
		const struct croute *cr = &croutes[i];
		if (cr->nsegs != nsegs || !strcmp(cr->r->method, method))
			continue;
		int k;
		for (k = 0; k < nsegs; k++)
			if (cr->segs[k] && strcmp(cr->segs[k], segs[k]))
				break;
		if (k == nsegs && more_specific(cr, &croutes[best]))
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------ replies */

static const char *status_code_name(int status)
{
	switch (status) {
	case 400:
		return "BAD_REQUEST";
	case 401:
		return "UNAUTHORIZED";
	case 403:
		return "FORBIDDEN";
	case 404:
		return "NOT_FOUND";
	case 405:
		return "METHOD_NOT_ALLOWED";
	case 408:
		return "REQUEST_TIMEOUT";
	case 409:
		return "CONFLICT";
	case 413:
		return "PAYLOAD_TOO_LARGE";
	case 414:
		return "URI_TOO_LONG";
	case 422:
		return "VALIDATION_ERROR";
	case 429:
		return "RATE_LIMITED";
	case 431:
		return "HEADERS_TOO_LARGE";
	case 503:
		return "SERVICE_UNAVAILABLE";
	default:
		return status >= 500 ? "INTERNAL_ERROR" : "ERROR";
	}
}

static const char *status_phrase(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Request Entity Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	default:
		return status >= 500 ? "Internal Server Error" : "Error";
	}
}

static json_t *error_body(int status, const char *code, json_t *details, const char *msg)
{
	return json_pack("{s:s, s:{s:s, s:s, s:o}}", "detail", msg, "error", "code",
	                 code ? code : status_code_name(status), "message", msg, "details",
	                 details ? details : json_object());
}

/*
 * libevent 2.1 answers protocol errors (oversized body or headers, bad request
 * line, unknown method) with evhttp_send_error, which writes an HTML page and
 * cannot be hooked. Defining the symbol here (exported, see the Makefile) makes
 * libevent's PLT call land in this JSON version instead.
 */
void evhttp_send_error(struct evhttp_request *req, int error, const char *reason)
{
	const char *phrase = reason ? reason : status_phrase(error);
	/* When not even the request line was parsed (an oversized or garbled first
	 * line), libevent would answer "HTTP/0.0", which no client reads: close
	 * instead. Nothing in libevent 2.1 touches the connection after this call
	 * on that path (evhttp_read_firstline → evhttp_connection_fail_). */
	if (!evhttp_request_get_uri(req) && TAILQ_EMPTY(evhttp_request_get_input_headers(req))) {
		log_info("event=http_protocol_error status=%d action=close reason=\"%s\"", error, phrase);
		metrics_observe(METRICS_ROUTES_MAX - 1, error, 0);
		evhttp_connection_free(evhttp_request_get_connection(req));
		return;
	}
	json_t *body = error_body(error, NULL, NULL, phrase);
	char *s = json_dumps(body, JSON_COMPACT);
	struct evbuffer *buf = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evbuffer_add(buf, s, strlen(s));
	evhttp_remove_header(h, "Content-Type");
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Connection", "close");
	log_info("event=http_protocol_error status=%d reason=\"%s\"", error, phrase);
	metrics_observe(METRICS_ROUTES_MAX - 1, error, 0);
	evhttp_send_reply(req, error, phrase, buf);
	evbuffer_free(buf);
	free(s);
	json_decref(body);
}

/* uri's path for the access log: without the query string (it may carry tokens), quotes and
 * control characters replaced, cut to fit path. */
static void log_path(const char *uri, char path[LOG_PATH_MAX])
{
	size_t pl = strcspn(uri ? uri : "", "?");
	if (pl >= LOG_PATH_MAX)
		pl = LOG_PATH_MAX - 1;
	memcpy(path, uri ? uri : "", pl);
	path[pl] = '\0';
	for (char *p = path; *p; p++)
		if (*p == '"' || (unsigned char)*p < 0x20)
			*p = '?';
}

const char *http_cors_origin(struct http_ctx *c)
{
	const char *origin = http_header(c, "Origin");
	if (!origin || !cfg.cors_origins)
		return NULL;
	for (char **o = cfg.cors_origins; *o; o++)
		if (!strcmp(*o, origin) || !strcmp(*o, "*"))
			return origin;
	return NULL;
}

static void ctx_free(struct http_ctx *c)
{
	if (c->tx)
		pgpool_release(c->tx);
	if (c->state && c->state_free)
		c->state_free(c->state);
	if (c->aux && c->aux_free)
		c->aux_free(c->aux);
	for (int i = 0; i < c->nparams; i++)
		free(c->params[i]);
	evhttp_clear_headers(&c->query);
	json_decref(c->body);
	free(c->user.username);
	free(c->user.company_name);
	json_decref(c->user.json);
	free(c->dialer_company);
	free(c->company);
	atomic_fetch_sub(&c->thr->inflight, 1);
	free(c);
}

static void finish(struct http_ctx *c, int status, struct evbuffer *buf, const char *content_type)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
	const char *origin = http_cors_origin(c);
	const char *uri = evhttp_request_get_uri(c->req);
	size_t bytes = evbuffer_get_length(buf);
	char path[LOG_PATH_MAX];

	if (c->replied) {
		log_error("event=double_reply status=%d", status);
		abort();
	}
	c->replied = true;
	if (c->req_lost) {
		/* the connection and its request are gone (http_watch_close): nothing to send */
		double lost_dur = (double)(util_now_ns() - c->t0) / 1e9;
		evbuffer_free(buf);
		metrics_observe(c->route ? c->route_idx : METRICS_ROUTES_MAX - 1, 499, lost_dur);
		log_set_ctx(c->rid);
		log_info("event=http method=%s route=\"%s\" status=499 dur_ms=%.2f peer=%s user=%s reason=client_gone",
		         c->route ? c->route->method : "-", c->route ? c->route->pattern : "-", lost_dur * 1e3, c->peer,
		         c->user.username ? c->user.username : "-");
		log_set_ctx(NULL);
		ctx_free(c);
		return;
	}
	if (c->on_gone) {
		struct evhttp_connection *evc = evhttp_request_get_connection(c->req);
		if (evc)
			evhttp_connection_set_closecb(evc, NULL, NULL);
		c->on_gone = NULL;
	}
	if (content_type)
		evhttp_add_header(h, "Content-Type", content_type);
	evhttp_add_header(h, "X-Request-Id", c->rid);
	if (origin) {
		evhttp_add_header(h, "Access-Control-Allow-Origin", origin);
		evhttp_add_header(h, "Access-Control-Allow-Credentials", "true");
		evhttp_add_header(h, "Vary", "Origin");
	}
	/* copy the path (without the query string: it may carry tokens) before
	 * sending: a request whose client is gone is freed inside evhttp_send_reply */
	log_path(uri, path);
	evhttp_send_reply(c->req, status, NULL, buf);
	evbuffer_free(buf);
	c->req = NULL;

	double dur = (double)(util_now_ns() - c->t0) / 1e9;
	metrics_observe(c->route ? c->route_idx : METRICS_ROUTES_MAX - 1, status, dur);
	log_set_ctx(c->rid);
	log_info("event=http method=%s path=\"%s\" route=\"%s\" status=%d dur_ms=%.2f bytes=%zu peer=%s user=%s",
	         c->route ? c->route->method : "-", path, c->route ? c->route->pattern : "-", status, dur * 1e3, bytes,
	         c->peer, c->user.username ? c->user.username : "-");
	log_set_ctx(NULL);
	ctx_free(c);
}

void http_reply_raw(struct http_ctx *c, int status, const char *content_type, const void *data, size_t len)
{
	struct evbuffer *buf = evbuffer_new();
	evbuffer_add(buf, data, len);
	finish(c, status, buf, content_type);
}

void http_reply_file(struct http_ctx *c, int status, const char *content_type, int fd, size_t len)
{
	struct evbuffer *buf = evbuffer_new();
	if (evbuffer_add_file(buf, fd, 0, (ev_off_t)len)) { /* closes fd on failure too */
		evbuffer_free(buf);
		http_error(c, 500, "INTERNAL_ERROR", "cannot send the file");
		return;
	}
	finish(c, status, buf, content_type);
}

static void conn_closed(struct evhttp_connection *evc, void *arg)
{
	struct http_ctx *c = arg;
	void (*gone)(struct http_ctx *) = c->on_gone;
	UNUSED(evc);
	/* evhttp_connection_free is running: a request still queued on the connection is freed
	 * right after this returns (one detached earlier is not, and a reply frees it) */
	if (evhttp_request_get_connection(c->req))
		c->req_lost = true;
	c->on_gone = NULL;
	if (gone)
		gone(c);
}

void http_watch_close(struct http_ctx *c, void (*gone)(struct http_ctx *c))
{
	struct evhttp_connection *evc = evhttp_request_get_connection(c->req);
	if (!evc)
		return;
	c->on_gone = gone;
	evhttp_connection_set_closecb(evc, conn_closed, c);
}

bool http_client_closed(struct http_ctx *c)
{
	struct evhttp_connection *evc = c->req_lost ? NULL : evhttp_request_get_connection(c->req);
	struct bufferevent *bev = evc ? evhttp_connection_get_bufferevent(evc) : NULL;
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
	char b;
	if (fd < 0)
		return true;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

int http_handoff(struct http_ctx *c, int log_status, int (*send)(int fd, void *arg), void *arg)
{
	struct evhttp_connection *evc = c->req_lost ? NULL : evhttp_request_get_connection(c->req);
	struct bufferevent *bev = evc ? evhttp_connection_get_bufferevent(evc) : NULL;
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
	int dup_fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	int devnull = -1;
	if (dup_fd < 0 || send(dup_fd, arg)) {
		if (dup_fd >= 0)
			close(dup_fd);
		return -1; /* the caller answers: how depends on what the client can read */
	}
	close(dup_fd); /* the other process holds its own reference now */
	/*
	 * libevent's evhttp_connection_free shuts the socket down (SHUT_WR) before closing it, which
	 * would end the connection for the other process too. So: stop watching it (epoll forgets
	 * it while the descriptor still names the socket), then put /dev/null under the same
	 * descriptor number: libevent's shutdown then fails harmlessly (ENOTSOCK) and its close
	 * closes /dev/null, while the socket lives on in the other process.
	 */
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0 || dup3(devnull, fd, O_CLOEXEC) < 0) {
		/* cannot happen short of running out of descriptors: the client loses its stream */
		log_error("event=handoff_detach_failed error=\"%s\"", strerror(errno));
	}
	if (devnull >= 0)
		close(devnull);
	c->replied = true;
	double dur = (double)(util_now_ns() - c->t0) / 1e9;
	const char *uri = evhttp_request_get_uri(c->req);
	char path[LOG_PATH_MAX];
	log_path(uri, path);
	if (c->on_gone) {
		evhttp_connection_set_closecb(evc, NULL, NULL);
		c->on_gone = NULL;
	}
	evhttp_connection_free(evc); /* frees c->req too */
	c->req = NULL;
	metrics_observe(c->route_idx, log_status, dur);
	log_set_ctx(c->rid);
	log_info("event=http method=%s path=\"%s\" route=\"%s\" status=%d dur_ms=%.2f bytes=0 peer=%s user=%s "
	         "handoff=events",
	         c->route->method, path, c->route->pattern, log_status, dur * 1e3, c->peer,
	         c->user.username ? c->user.username : "-");
	log_set_ctx(NULL);
	ctx_free(c);
	return 0;
}

static void free_ref(const void *data, size_t len, void *extra)
{
	UNUSED(len);
	UNUSED(extra);
	free((void *)data);
}

void http_reply_json(struct http_ctx *c, int status, json_t *body)
{
	struct evbuffer *buf = evbuffer_new();
	/* 15 significant digits (as the events): a percentage rounded to 2 decimals reads 33.33, not
	 * jansson's default 17-digit 33.329999999999998 */
	char *s = body ? json_dumps(body, EVENTS_JSON_FLAGS | JSON_ENCODE_ANY) : NULL;
	json_decref(body);
	if (!s) {
		/* a body that cannot be encoded (json_pack failed, invalid UTF-8): never an empty 2xx */
		static const char fail[] =
		    "{\"detail\":\"Internal Server Error\",\"error\":{\"code\":\"INTERNAL_ERROR\","
		    "\"message\":\"cannot encode the response\",\"details\":{}}}";
		log_error("event=http_error status=500 code=INTERNAL_ERROR msg=\"cannot encode the response\"");
		evbuffer_add(buf, fail, sizeof(fail) - 1);
		finish(c, 500, buf, "application/json");
		return;
	}
	evbuffer_add_reference(buf, s, strlen(s), free_ref, NULL); /* buf owns s now */
	finish(c, status, buf, "application/json");
}

static void verror(struct http_ctx *c, int status, const char *code, json_t *details, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (status >= 500)
		log_error("event=http_error status=%d code=%s msg=\"%s\"", status,
		          code ? code : status_code_name(status), msg);
	if (status == 401 && !evhttp_find_header(evhttp_request_get_output_headers(c->req), "WWW-Authenticate"))
		http_add_header(c, "WWW-Authenticate", "Bearer");
	http_reply_json(c, status, error_body(status, code, details, msg));
}

void http_error(struct http_ctx *c, int status, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(c, status, code, NULL, fmt, ap);
	va_end(ap);
}

void http_error_details(struct http_ctx *c, int status, const char *code, json_t *details, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(c, status, code, details, fmt, ap);
	va_end(ap);
}

void http_invalid(struct http_ctx *c, const char *field, const char *msg)
{
	http_error_details(c, 422, "VALIDATION_ERROR", json_pack("{s:s}", "field", field), "%s: %s", field, msg);
}

void http_add_header(struct http_ctx *c, const char *name, const char *value)
{
	evhttp_add_header(evhttp_request_get_output_headers(c->req), name, value);
}

const char *http_header(struct http_ctx *c, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(c->req), name);
}

const char *http_query(struct http_ctx *c, const char *name)
{
	return evhttp_find_header(&c->query, name);
}

const char *http_bearer(struct http_ctx *c)
{
	const char *h = http_header(c, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7))
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return *h ? h : NULL;
}

bool http_user_in_company(const struct http_ctx *c, long company_id)
{
	return c->user.is_superuser || (c->user.company_id && c->user.company_id == company_id);
}

/* ------------------------------------------------------------- async steps */

struct step {
	struct http_ctx *c;
	http_db_cb dcb;
	http_redis_cb rcb;
	void (*work)(void *state);
	void (*done)(struct http_ctx *c);
};

static void db_step_cb(PGresult *res, void *arg)
{
	struct step *s = arg;
	log_set_ctx(s->c->rid);
	s->dcb(s->c, res);
	log_set_ctx(NULL);
	free(s);
}

void http_db(struct http_ctx *c, const char *sql, int n, const char *const *params, http_db_cb cb)
{
	struct step *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->dcb = cb;
	if (c->tx)
		pgpool_query_on(c->tx, sql, n, params, db_step_cb, s);
	else
		pgpool_query(c->thr->db, sql, n, params, db_step_cb, s);
}

bool http_db_ok_or_reply(struct http_ctx *c, PGresult *res)
{
	if (!res) {
		http_add_header(c, "Retry-After", "1");
		http_error(c, 503, "DATABASE_UNAVAILABLE", "Database unavailable");
		return false;
	}
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return true;
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '"')
			*p = ' ';
	log_error("event=sql_failed sqlstate=%s error=\"%s\"", pgpool_sqlstate(res), msg);
	http_error(c, 500, "INTERNAL_ERROR", "Internal Server Error");
	return false;
}

static void tx_acquired(struct pgconn *conn, void *arg)
{
	struct step *s = arg;
	struct http_ctx *c = s->c;
	if (!conn) {
		log_set_ctx(c->rid);
		s->dcb(c, NULL);
		log_set_ctx(NULL);
		free(s);
		return;
	}
	c->tx = conn;
	pgpool_query_on(conn, "BEGIN", 0, NULL, db_step_cb, s);
}

void http_tx_begin(struct http_ctx *c, http_db_cb cb)
{
	struct step *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->dcb = cb;
	pgpool_acquire(c->thr->db, tx_acquired, s);
}

static void commit_cb(PGresult *res, void *arg)
{
	struct step *s = arg;
	struct http_ctx *c = s->c;
	if (res && PQresultStatus(res) == PGRES_COMMAND_OK && c->tx) {
		pgpool_release(c->tx);
		c->tx = NULL;
	}
	db_step_cb(res, arg);
}

void http_tx_commit(struct http_ctx *c, http_db_cb cb)
{
	struct step *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->dcb = cb;
	pgpool_query_on(c->tx, "COMMIT", 0, NULL, commit_cb, s);
}

static void redis_step_cb(redisReply *reply, void *arg)
{
	struct step *s = arg;
	log_set_ctx(s->c->rid);
	s->rcb(s->c, reply);
	log_set_ctx(NULL);
	free(s);
}

void http_redis(struct http_ctx *c, http_redis_cb cb, int argc, const char **argv, const size_t *lens)
{
	struct step *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->rcb = cb;
	rds_command(c->thr->redis, redis_step_cb, s, argc, argv, lens);
}

static void offload_work(void *arg)
{
	struct step *s = arg;
	s->work(s->c->state);
}

static void offload_done(void *arg)
{
	struct step *s = arg;
	log_set_ctx(s->c->rid);
	s->done(s->c);
	log_set_ctx(NULL);
	free(s);
}

bool http_offload_or_reply(struct http_ctx *c, void (*work)(void *state), void (*done)(struct http_ctx *c))
{
	struct step *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->work = work;
	s->done = done;
	if (workq_submit(c->thr->base, offload_work, offload_done, s)) {
		free(s);
		http_add_header(c, "Retry-After", "1");
		http_error(c, 503, "BUSY", "Server busy, retry shortly");
		return false;
	}
	return true;
}

/* --------------------------------------------------------------------- auth */

static void run_handler(struct http_ctx *c)
{
	c->route->fn(c);
}

static void jwt_user_loaded(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 401, "INVALID_TOKEN", "Could not validate credentials");
		return;
	}
	json_t *u = pgjson_row(res, 0);
	if (!json_is_true(json_object_get(u, "is_active"))) {
		json_decref(u);
		http_error(c, 400, "INACTIVE_USER", "Inactive user");
		return;
	}
	c->user.json = u;
	free(c->user.username);
	c->user.id = (long)json_integer_value(json_object_get(u, "id"));
	c->user.username = xstrdup(json_string_value(json_object_get(u, "username")));
	c->user.is_superuser = json_is_true(json_object_get(u, "is_superuser"));
	c->user.is_admin = !strcmp(json_string_value(json_object_get(u, "role")), "ADMIN");
	c->user.company_id = (long)json_integer_value(json_object_get(u, "company_id"));
	const char *cn = json_string_value(json_object_get(u, "company_name"));
	c->user.company_name = cn ? xstrdup(cn) : NULL;
	run_handler(c);
}

static void jwt_revocation_checked(struct http_ctx *c, redisReply *r)
{
	if (!r || r->type == REDIS_REPLY_ERROR) {
		http_add_header(c, "Retry-After", "1");
		http_error(c, 503, "REDIS_UNAVAILABLE", "Token store unavailable");
		return;
	}
	if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
		http_error(c, 401, "TOKEN_REVOKED", "Could not validate credentials");
		return;
	}
	const char *p[1] = {c->user.username};
	http_db(c,
	        "SELECT " USER_COLUMNS
	        " FROM users u LEFT JOIN companies c ON c.id = u.company_id WHERE u.username = $1",
	        1, p, jwt_user_loaded);
}

static void auth_jwt(struct http_ctx *c)
{
	const char *tok = http_bearer(c);
	char *sub = NULL;
	if (!tok && (c->route->flags & RF_TOKEN_QUERY)) {
		tok = http_query(c, "token");
		if (tok && !*tok)
			tok = NULL;
	}
	if (!tok) {
		http_error(c, 401, "NOT_AUTHENTICATED", "Not authenticated");
		return;
	}
	if (authn_jwt_verify(cfg.secret_key, tok, &sub, &c->token_exp)) {
		http_error(c, 401, "INVALID_TOKEN", "Could not validate credentials");
		return;
	}
	c->user.username = sub; /* the subject until the row is loaded */
	authn_token_hash(tok, c->token_hash);
	char key[80];
	snprintf(key, sizeof(key), "revoked:%s", c->token_hash);
	const char *argv[2] = {"EXISTS", key};
	http_redis(c, jwt_revocation_checked, 2, argv, NULL);
}

static void dialer_token_loaded(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 401, "INVALID_DIALER_TOKEN", "Invalid dialer token");
		return;
	}
	c->dialer_company_id = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	c->dialer_company = xstrdup(PQgetvalue(res, 0, 1));
	run_handler(c);
}

static void auth_dialer(struct http_ctx *c)
{
	const char *tok = http_bearer(c);
	if (!tok || strlen(tok) > AUTHN_TOKEN_MAX) {
		http_error(c, 401, "INVALID_DIALER_TOKEN", "Invalid dialer token");
		return;
	}
	if (util_ct_streq(tok, cfg.dialer_token)) {
		run_handler(c);
		return;
	}
	/* company tokens are looked up by their SHA-256: equality on a hash of a
	 * 192-bit random secret leaks nothing useful through timing */
	authn_token_hash(tok, c->token_hash);
	const char *p[1] = {c->token_hash};
	http_db(c,
	        "UPDATE dialer_tokens t SET last_used_at = now() FROM companies c "
	        "WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND c.id = t.company_id "
	        "RETURNING t.company_id, c.name",
	        1, p, dialer_token_loaded);
}

/* ---------------------------------------------------------------- requests */

static void set_request_id(struct http_ctx *c)
{
	const char *in = http_header(c, "X-Request-Id");
	if (in) {
		size_t n = strlen(in);
		bool ok = n >= 1 && n <= 64;
		for (size_t i = 0; ok && i < n; i++)
			ok = isalnum((unsigned char)in[i]) || strchr("-_.:", in[i]);
		if (ok) {
			memcpy(c->rid, in, n + 1);
			return;
		}
	}
	snprintf(c->rid, sizeof(c->rid), "%s%08llx", c->thr->rid_prefix, (unsigned long long)++c->thr->rid_seq);
}

static void set_peer(struct http_ctx *c)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(c->req);
	char *addr = NULL;
	ev_uint16_t port = 0;
	if (conn)
		evhttp_connection_get_peer(conn, &addr, &port);
	snprintf(c->peer, sizeof(c->peer), "%s", addr ? addr : "-");
}

static const char *method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET:
	case EVHTTP_REQ_HEAD:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	default:
		return "OTHER";
	}
}

static int split_path(const char *path, char **segs, int max)
{
	int n = 0;
	const char *p = path;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (n >= max)
			goto fail;
		char *raw = xstrndup(p, len);
		size_t dl = 0;
		char *dec = evhttp_uridecode(raw, 0, &dl);
		free(raw);
		if (!dec || strlen(dec) != dl || !util_utf8_valid(dec, dl)) {
			free(dec);
			goto fail;
		}
		segs[n++] = dec;
		p += len;
	}
	return n;
fail:
	while (n > 0)
		free(segs[--n]);
	return -1;
}

static bool parse_body(struct http_ctx *c)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
	size_t len = evbuffer_get_length(in);
	const char *ct = http_header(c, "Content-Type");
	if (len == 0)
		return true;
	const char *data = (const char *)evbuffer_pullup(in, -1);
	if (ct && !strncasecmp(ct, "application/x-www-form-urlencoded", 33)) {
		struct evkeyvalq q;
		char *s = xstrndup(data, len);
		TAILQ_INIT(&q);
		if (evhttp_parse_query_str(s, &q)) {
			free(s);
			http_invalid(c, "body", "malformed form data");
			return false;
		}
		c->body = json_object();
		for (struct evkeyval *kv = q.tqh_first; kv; kv = kv->next.tqe_next)
			json_object_set_new(c->body, kv->key, json_string(kv->value));
		evhttp_clear_headers(&q);
		free(s);
		return true;
	}
	json_error_t err;
	c->body = json_loadb(data, len, JSON_DECODE_ANY, &err);
	if (!c->body) {
		http_error_details(
		    c, 422, "VALIDATION_ERROR",
		    json_pack("{s:s, s:i, s:i}", "field", "body", "line", err.line, "column", err.column),
		    "body: invalid JSON (%s)", err.text);
		return false;
	}
	return true;
}

static void preflight(struct http_ctx *c)
{
	const char *origin = http_cors_origin(c);
	const char *req_headers = http_header(c, "Access-Control-Request-Headers");
	if (!origin) {
		http_error(c, 400, "CORS_DISALLOWED", "Disallowed CORS origin");
		return;
	}
	http_add_header(c, "Access-Control-Allow-Methods", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT");
	if (req_headers)
		http_add_header(c, "Access-Control-Allow-Headers", req_headers);
	http_add_header(c, "Access-Control-Max-Age", "600");
	http_reply_raw(c, 200, "text/plain; charset=utf-8", "OK", 2);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct api_thread *t = arg;
	struct http_ctx *c = xcalloc(1, sizeof(*c));
	char *segs[SEGS_MAX + 1] = {0};
	int nsegs = 0;
	const char *uri = evhttp_request_get_uri(req);
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);

	c->req = req;
	c->thr = t;
	c->t0 = util_now_ns();
	TAILQ_INIT(&c->query);
	atomic_fetch_add(&t->inflight, 1);
	set_request_id(c);
	set_peer(c);
	log_set_ctx(c->rid);

	if (uri && strlen(uri) > (size_t)cfg.http_max_url_bytes) {
		http_error(c, 414, NULL, "URI Too Long");
		goto out;
	}
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (cmd == EVHTTP_REQ_OPTIONS && http_header(c, "Origin") && http_header(c, "Access-Control-Request-Method")) {
		preflight(c);
		goto out;
	}
	const char *q = u ? evhttp_uri_get_query(u) : NULL;
	if (q && evhttp_parse_query_str(q, &c->query)) {
		http_invalid(c, "query", "malformed query string");
		goto out;
	}
	nsegs = split_path(u && evhttp_uri_get_path(u) ? evhttp_uri_get_path(u) : "/", segs, SEGS_MAX);
	if (nsegs < 0) {
		nsegs = 0;
		http_error(c, 404, NULL, "Not Found");
		goto out;
	}
	bool known;
	int idx = route_match(method_name(cmd), segs, nsegs, &known);
	if (idx >= 0 && path_owned_by_other(idx, method_name(cmd), segs, nsegs)) {
		idx = -1;
	}
	if (idx < 0) {
		if (known)
			http_error(c, 405, NULL, "Method Not Allowed");
		else
			http_error(c, 404, NULL, "Not Found");
		goto out;
	}
	c->route = croutes[idx].r;
	c->route_idx = idx;
	for (int i = 0; i < croutes[idx].nsegs; i++)
		if (!croutes[idx].segs[i] && c->nparams < HTTP_MAX_PARAMS) {
			c->params[c->nparams++] = segs[i];
			segs[i] = NULL;
		}
	if ((c->route->flags & RF_JSON) && !parse_body(c))
		goto out;
	switch (c->route->auth) {
	case AUTH_NONE:
		run_handler(c);
		break;
	case AUTH_JWT:
		auth_jwt(c);
		break;
	case AUTH_DIALER:
		auth_dialer(c);
		break;
	}
out:
	for (int i = 0; i < nsegs; i++)
		free(segs[i]);
	log_set_ctx(NULL);
}

/* ------------------------------------------------------- body size per route */

/*
 * libevent 2.1 checks a request body against its connection's limit while it reads it, and
 * offers no hook between the request line and the body (evhttp_set_newreqcb comes in 2.2). So
 * dialer-api defines evhttp_parse_firstline_, libevent's internal parser of the request line
 * (exported in the dynamic table, see the Makefile, so that libevent's PLT call lands here),
 * calls the real one, and sets the connection's limit for the request just parsed: its route's
 * (RF_LARGE_BODY: UPLOAD_MAX_BYTES), else HTTP_MAX_BODY_BYTES. Every other route keeps the small
 * limit, and a keep-alive connection gets it back on its next request.
 * tests/integration/test_upload.c checks both sides.
 */
typedef int (*firstline_fn)(struct evhttp_request *, struct evbuffer *);
static firstline_fn real_firstline;
static pthread_once_t firstline_once = PTHREAD_ONCE_INIT;

static void firstline_init(void)
{
	real_firstline = (firstline_fn)dlsym(RTLD_NEXT, "evhttp_parse_firstline_");
	if (!real_firstline) {
		log_error("event=libevent_symbol_missing symbol=evhttp_parse_firstline_");
		abort();
	}
}

static bool large_body_route(struct evhttp_request *req)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	char *segs[SEGS_MAX + 1] = {0};
	bool known, large = false;
	int nsegs = split_path(path ? path : "/", segs, SEGS_MAX);
	if (nsegs < 0)
		return false;
	const char *method = method_name(evhttp_request_get_command(req));
	int idx = route_match(method, segs, nsegs, &known);
	if (idx >= 0 && !path_owned_by_other(idx, method, segs, nsegs))
		large = (croutes[idx].r->flags & RF_LARGE_BODY) != 0;
	for (int i = 0; i < nsegs; i++)
		free(segs[i]);
	return large;
}

int evhttp_parse_firstline_(struct evhttp_request *req, struct evbuffer *buf);
int evhttp_parse_firstline_(struct evhttp_request *req, struct evbuffer *buf)
{
	pthread_once(&firstline_once, firstline_init);
	int rc = real_firstline(req, buf);
	struct evhttp_connection *evc = evhttp_request_get_connection(req);
	/* 1 = ALL_DATA_READ; only our server's connections (not a client's) */
	if (rc == 1 && evc && evhttp_connection_get_server(evc) && evhttp_request_get_uri(req))
		evhttp_connection_set_max_body_size(evc, large_body_route(req) ? cfg.upload_max_bytes
		                                                               : cfg.http_max_body_bytes);
	return rc;
}

/* ------------------------------------------------------------------ threads */

int http_thread_init(struct api_thread *t, int idx)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	char addr[128];
	snprintf(addr, sizeof(addr), strchr(cfg.bind_address, ':') ? "[%s]:%d" : "%s:%d", cfg.bind_address, cfg.port);
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen)) {
		log_error("event=bind_failed error=\"cannot parse %s\"", addr);
		return -1;
	}
	t->idx = idx;
	if (util_random_hex(t->rid_prefix, 4))
		snprintf(t->rid_prefix, sizeof(t->rid_prefix), "%08x", (unsigned)idx);
	t->base = event_base_new();
	if (!t->base)
		return -1;
	/* every loop binds the same port: the kernel spreads connections (SO_REUSEPORT) */
	t->listener = evconnlistener_new_bind(t->base, NULL, NULL,
	                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
	                                          LEV_OPT_CLOSE_ON_EXEC,
	                                      1024, (struct sockaddr *)&ss, sslen);
	if (!t->listener) {
		log_error("event=bind_failed addr=%s error=\"%s\"", addr, strerror(errno));
		return -1;
	}
	/*
	 * No Nagle: a response larger than one segment would otherwise wait for
	 * the client's delayed ACK (40 ms) before its last segment goes out.
	 * Accepted sockets inherit the option from the listener on Linux.
	 */
	int one = 1;
	if (setsockopt(evconnlistener_get_fd(t->listener), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		log_warn("event=setsockopt_failed option=TCP_NODELAY error=\"%s\"", strerror(errno));
	t->http = evhttp_new(t->base);
	evhttp_set_max_body_size(t->http, cfg.http_max_body_bytes);
	evhttp_set_max_headers_size(t->http, cfg.http_max_header_bytes);
	evhttp_set_timeout(t->http, cfg.http_timeout_seconds);
	evhttp_set_allowed_methods(t->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
	                                        EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(t->http, on_request, t);
	if (!evhttp_bind_listener(t->http, t->listener)) {
		log_error("event=bind_failed addr=%s", addr);
		return -1;
	}
	t->db = pgpool_new(t->base, cfg.database_url, cfg.db_pool_size, cfg.http_timeout_seconds * 1000);
	t->redis = rds_new(t->base, cfg.redis_url);
	return 0;
}

static void stop_accepting_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api_thread *t = arg;
	UNUSED(fd);
	UNUSED(what);
	if (t->listener)
		evconnlistener_disable(t->listener);
}

void http_thread_stop_accepting(struct api_thread *t)
{
	static const struct timeval zero = {0, 0};
	event_base_once(t->base, -1, EV_TIMEOUT, stop_accepting_cb, t, &zero);
}

void http_thread_free(struct api_thread *t)
{
	/* evhttp_free frees the bound listener too */
	if (t->http)
		evhttp_free(t->http);
	t->listener = NULL;
	pgpool_free(t->db);
	rds_free(t->redis);
	if (t->base)
		event_base_free(t->base);
}
