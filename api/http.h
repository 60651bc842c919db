/*
 * The API's request framework: per-thread loops, the request context, routing,
 * auth, and the one reply path (http_reply_* / http_error) every request ends in.
 */
#ifndef DIALER_API_HTTP_H
#define DIALER_API_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <pthread.h>

#include "common.h"
#include "pgpool.h"
#include "rds.h"

/* One loop per thread, each with its own listener (SO_REUSEPORT), database
 * pool and Redis connection: nothing is shared between loops but counters. */
struct api_thread {
	int idx;
	struct event_base *base;
	struct evhttp *http;
	struct evconnlistener *listener;
	struct pgpool *db;
	struct rds *redis;
	pthread_t tid;
	atomic_int inflight;
	char rid_prefix[9];
	uint64_t rid_seq;
};

enum auth_kind {
	AUTH_NONE,   /* public */
	AUTH_JWT,    /* Bearer JWT; c->user is loaded before the handler runs */
	AUTH_DIALER, /* Bearer DIALER_TOKEN or a per-company dialer token */
};

enum {
	RF_JSON = 1 << 0,        /* parse the body as JSON (or a form) before auth; 422 when malformed */
	RF_LARGE_BODY = 1 << 1,  /* the body may reach UPLOAD_MAX_BYTES (others: HTTP_MAX_BODY_BYTES) */
	RF_TOKEN_QUERY = 1 << 2, /* AUTH_JWT also takes the token from ?token= (EventSource and browsers'
	                          * WebSocket cannot set headers); the header wins when both are given */
};

struct http_ctx;
typedef void (*http_handler)(struct http_ctx *c);

struct route {
	const char *method;  /* "GET", "POST", ... */
	const char *pattern; /* "/api/{company}/admins/{id}" */
	http_handler fn;
	enum auth_kind auth;
	unsigned flags;
	const void *arg; /* handler's own data (c->route->arg), e.g. which table a shared handler serves */
};

/* The authenticated user (AUTH_JWT). */
struct http_user {
	long id;
	char *username;
	bool is_superuser;
	bool is_admin;   /* role == ADMIN */
	long company_id; /* 0: none */
	char *company_name;
	json_t *json; /* UserOut */
};

#define HTTP_MAX_PARAMS 4

struct http_ctx {
	struct evhttp_request *req;
	struct api_thread *thr;
	char rid[72];
	uint64_t t0;
	const struct route *route;
	int route_idx;
	char *params[HTTP_MAX_PARAMS]; /* decoded path parameters, in pattern order */
	int nparams;
	struct evkeyvalq query;
	json_t *body; /* RF_JSON routes: the parsed body, or NULL when empty */
	struct http_user user;
	long dialer_company_id; /* AUTH_DIALER with a company token; 0 for the global token */
	char *dialer_company;
	char token_hash[65]; /* SHA-256 of the bearer token (for logout/revocation) */
	long token_exp;
	struct pgconn *tx; /* pinned connection while a transaction is open */
	void *state;       /* handler-owned; freed with state_free after the reply */
	void (*state_free)(void *);
	char peer[64];
	long company_id; /* target company, once resolved by a handler */
	char *company;
	void (*next)(struct http_ctx *c); /* continuation for shared steps (company_from_path) */
	void *aux; /* a shared step's own state beside the handler's (api/jobs.c: job creation and
	            * the sync-wait); freed with aux_free after the reply */
	void (*aux_free)(void *);
	void (*on_gone)(struct http_ctx *c); /* http_watch_close */
	bool replied;
	bool req_lost; /* libevent freed the request with its connection: the reply only frees c */
};

/* Result of a database step; res borrowed. See http_db_ok_or_reply. */
typedef void (*http_db_cb)(struct http_ctx *c, PGresult *res);
/* Reply of a Redis step; reply borrowed, NULL when Redis is unavailable. */
typedef void (*http_redis_cb)(struct http_ctx *c, redisReply *reply);

/* ---- replies: exactly one per request; the context is freed after it ---- */

/* Sends body (stolen) as JSON with status. */
void http_reply_json(struct http_ctx *c, int status, json_t *body);
/* Sends raw bytes with a content type. */
void http_reply_raw(struct http_ctx *c, int status, const char *content_type, const void *data, size_t len);
/* Sends len bytes of the open file fd (taken: closed after sending, also on failure) with a
 * content type; libevent sends it with sendfile, never reading it into memory. */
void http_reply_file(struct http_ctx *c, int status, const char *content_type, int fd, size_t len);
/* Sends {"detail": msg, "error": {"code", "message", "details"}}; logs it. */
void http_error(struct http_ctx *c, int status, const char *code, const char *fmt, ...) PRINTF_LIKE(4, 5);
/* Same with a details object (stolen, may be NULL). */
void http_error_details(struct http_ctx *c, int status, const char *code, json_t *details, const char *fmt, ...)
    PRINTF_LIKE(5, 6);
/* 422 VALIDATION_ERROR naming a field: detail "field: msg", details {"field": field}. */
void http_invalid(struct http_ctx *c, const char *field, const char *msg);

/* Adds a response header (copied). */
void http_add_header(struct http_ctx *c, const char *name, const char *value);
/* Request header or NULL (borrowed). */
const char *http_header(struct http_ctx *c, const char *name);
/* Query parameter (decoded, '+' as space) or NULL (borrowed). */
const char *http_query(struct http_ctx *c, const char *name);

/* ---- async steps: at most one outstanding per request ---- */

/* Runs a statement (on the open transaction, if any); cb gets the result. */
void http_db(struct http_ctx *c, const char *sql, int n, const char *const *params, http_db_cb cb);
/*
 * False after replying: 503 when res is NULL (database unavailable), 500 when
 * res is an error. Use after checking any SQLSTATE the handler maps itself.
 */
bool http_db_ok_or_reply(struct http_ctx *c, PGresult *res) MUSTCHECK;
/* Opens a transaction on a pinned connection; cb gets BEGIN's result. It is
 * rolled back at the reply unless http_tx_commit ran. */
void http_tx_begin(struct http_ctx *c, http_db_cb cb);
/* Commits and unpins; cb gets COMMIT's result. */
void http_tx_commit(struct http_ctx *c, http_db_cb cb);

/* Sends a Redis command (argv copied). */
void http_redis(struct http_ctx *c, http_redis_cb cb, int argc, const char **argv, const size_t *lens);

/* Runs work(c->state) on the CPU pool, then done(c) on this loop; replies 503
 * itself (and returns false) when the pool is full. */
bool http_offload_or_reply(struct http_ctx *c, void (*work)(void *state), void (*done)(struct http_ctx *c)) MUSTCHECK;

/*
 * Watches the client's connection while the handler waits for something long (a job): if
 * libevent frees the connection before the reply (shutdown, a failed write), gone(c) runs
 * once; the handler must still end the request with exactly one reply call (http_reply_json,
 * http_error, ...), which then only frees the context. Undone by the reply.
 */
void http_watch_close(struct http_ctx *c, void (*gone)(struct http_ctx *c));
/* True when the client has closed its side of the connection (libevent 2.1 does not notice
 * while a request is being handled: this peeks at the socket). */
bool http_client_closed(struct http_ctx *c);

/*
 * Hands the client's connection over to another process and ends the request without a reply
 * from here: send(fd, arg) gets a duplicate of the connection's socket (borrowed: close nothing;
 * send it with SCM_RIGHTS) and returns 0 once the other side has it, or -1. On 0 this process
 * lets go of the socket without shutting it down (the other process now owns the connection),
 * logs the request with log_status (e.g. 200 for SSE, 101 for a WebSocket upgrade) and frees c:
 * the handler must not touch c again. On -1 nothing is sent and c is still the handler's: it
 * must reply (once, as always). Returns send's result. Bytes the client sent after the request
 * (pipelining) are dropped.
 */
int http_handoff(struct http_ctx *c, int log_status, int (*send)(int fd, void *arg), void *arg);

/* ---- server ---- */

/* Registers routes (static storage); call before http_thread_start. */
void http_routes_add(const struct route *routes, size_t n);
/* Creates the thread's loop, listener, pool and Redis connection. Returns 0 or -1. */
int http_thread_init(struct api_thread *t, int idx) MUSTCHECK;
/* Stops accepting (thread-safe: runs on the thread's loop). */
void http_thread_stop_accepting(struct api_thread *t);
void http_thread_free(struct api_thread *t);

/* Shared helpers for handlers */

/* The user may act on company_id: superuser, or a member. */
bool http_user_in_company(const struct http_ctx *c, long company_id);
/* The request's Origin when CORS_ORIGINS allows it (for Access-Control-Allow-Origin), or NULL.
 * Borrowed from the request. */
const char *http_cors_origin(struct http_ctx *c);
/* Extracts the bearer token of the Authorization header, or NULL. Borrowed. */
const char *http_bearer(struct http_ctx *c);

#endif
