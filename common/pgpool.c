/*
 * Non-blocking libpq pool driven by libevent: PQconnectStartParams/PQconnectPoll
 * to connect, PQsendQueryParams + PQflush on EV_WRITE to send,
 * PQconsumeInput/PQisBusy/PQgetResult on EV_READ to complete. Lost connections
 * come back with exponential backoff; while none is up, queries fail at once.
 */
#include <stdlib.h>
#include <string.h>

#include "pgpool.h"

#define QUEUE_MAX         20000
#define CONNECT_TIMEOUT_S 5
#define BACKOFF_MIN_MS    100
#define BACKOFF_MAX_MS    5000

struct job {
	struct job *next;
	char *sql; /* NULL for an acquire job */
	int nparams;
	char **vals;
	pgpool_cb cb;
	pgpool_acquire_cb acb;
	void *arg;
	struct pgpool *pool;
};

enum cstate { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

struct pgconn {
	struct pgpool *pool;
	PGconn *pg;
	enum cstate st;
	bool pinned;
	bool rollback_on_idle;
	struct event *io;
	struct event *timer; /* connect timeout, or reconnect backoff */
	int backoff_ms;
	struct job *cur;
	PGresult *res;
	struct job *pin_head, *pin_tail; /* queries waiting on a pinned, busy conn */
};

struct pgpool {
	struct event_base *base;
	char *conninfo;
	char options[128];
	int size;
	struct pgconn *conns;
	struct job *head, *tail;
	int qlen;
	struct event *kick;
	bool down_logged;
};

static void conn_start(struct pgconn *c);
static void conn_fail(struct pgconn *c, const char *why);
static void dispatch(struct pgpool *pool);

static void job_free(struct job *j)
{
	if (!j)
		return;
	for (int i = 0; i < j->nparams; i++)
		free(j->vals[i]);
	free(j->vals);
	free(j->sql);
	free(j);
}

static struct job *job_new(struct pgpool *pool, const char *sql, int n, const char *const *values, pgpool_cb cb,
                           void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->pool = pool;
	j->sql = sql ? xstrdup(sql) : NULL;
	j->nparams = n;
	j->cb = cb;
	j->arg = arg;
	if (n > 0) {
		j->vals = xcalloc((size_t)n, sizeof(char *));
		for (int i = 0; i < n; i++)
			j->vals[i] = values[i] ? xstrdup(values[i]) : NULL;
	}
	return j;
}

/* Completes a job with "unavailable" (NULL) from a fresh loop turn. */
static void job_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	UNUSED(fd);
	UNUSED(what);
	if (j->sql) {
		if (j->cb)
			j->cb(NULL, j->arg);
	} else if (j->acb) {
		j->acb(NULL, j->arg);
	}
	job_free(j);
}

static void job_fail_later(struct pgpool *pool, struct job *j)
{
	static const struct timeval zero = {0, 0};
	if (event_base_once(pool->base, -1, EV_TIMEOUT, job_fail_cb, j, &zero) != 0)
		job_fail_cb(-1, 0, j);
}

static void unwatch(struct pgconn *c)
{
	if (c->io) {
		event_free(c->io);
		c->io = NULL;
	}
}

static void conn_io(evutil_socket_t fd, short what, void *arg);

static void watch(struct pgconn *c, short what)
{
	unwatch(c);
	if (!c->pg || PQsocket(c->pg) < 0)
		return;
	c->io = event_new(c->pool->base, PQsocket(c->pg), what, conn_io, c);
	event_add(c->io, NULL);
}

static void accumulate(struct pgconn *c, PGresult *r)
{
	if (!c->res) {
		c->res = r;
	} else if (PQresultStatus(c->res) == PGRES_FATAL_ERROR) {
		PQclear(r);
	} else {
		PQclear(c->res);
		c->res = r;
	}
}

static void send_job(struct pgconn *c, struct job *j)
{
	c->cur = j;
	c->st = C_BUSY;
	if (!PQsendQueryParams(c->pg, j->sql, j->nparams, NULL, (const char *const *)j->vals, NULL, NULL, 0)) {
		conn_fail(c, PQerrorMessage(c->pg));
		return;
	}
	int f = PQflush(c->pg);
	if (f < 0) {
		conn_fail(c, PQerrorMessage(c->pg));
		return;
	}
	watch(c, EV_READ | EV_PERSIST | (f == 1 ? EV_WRITE : 0));
}

static void complete(struct pgconn *c)
{
	struct job *j = c->cur;
	PGresult *res = c->res;
	c->cur = NULL;
	c->res = NULL;
	c->st = C_IDLE;
	watch(c, EV_READ | EV_PERSIST);
	if (j && j->cb)
		j->cb(res, j->arg);
	PQclear(res);
	job_free(j);
	/* the callback may have released or re-used this conn */
	if (c->st != C_IDLE)
		return;
	if (c->pinned) {
		struct job *n = c->pin_head;
		if (n) {
			c->pin_head = n->next;
			if (!c->pin_head)
				c->pin_tail = NULL;
			send_job(c, n);
		}
		return;
	}
	if (c->rollback_on_idle) {
		c->rollback_on_idle = false;
		if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
			send_job(c, job_new(c->pool, "ROLLBACK", 0, NULL, NULL, NULL));
			return;
		}
	}
	dispatch(c->pool);
}

static void conn_io(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn *c = arg;
	UNUSED(fd);
	if (c->st == C_CONNECTING) {
		switch (PQconnectPoll(c->pg)) {
		case PGRES_POLLING_READING:
			watch(c, EV_READ);
			return;
		case PGRES_POLLING_WRITING:
			watch(c, EV_WRITE);
			return;
		case PGRES_POLLING_OK:
			evtimer_del(c->timer);
			if (PQsetnonblocking(c->pg, 1) != 0) {
				conn_fail(c, "cannot set non-blocking mode");
				return;
			}
			c->st = C_IDLE;
			c->backoff_ms = BACKOFF_MIN_MS;
			if (c->pool->down_logged) {
				log_info("event=db_up msg=\"database connection restored\"");
				c->pool->down_logged = false;
			}
			watch(c, EV_READ | EV_PERSIST);
			dispatch(c->pool);
			return;
		default:
			conn_fail(c, PQerrorMessage(c->pg));
			return;
		}
	}
	if (what & EV_WRITE) {
		int f = PQflush(c->pg);
		if (f < 0) {
			conn_fail(c, PQerrorMessage(c->pg));
			return;
		}
		if (f == 0)
			watch(c, EV_READ | EV_PERSIST);
	}
	if (what & EV_READ) {
		if (!PQconsumeInput(c->pg)) {
			conn_fail(c, PQerrorMessage(c->pg));
			return;
		}
		PGnotify *n;
		while ((n = PQnotifies(c->pg)))
			PQfreemem(n);
		if (c->st != C_BUSY) {
			if (PQstatus(c->pg) == CONNECTION_BAD)
				conn_fail(c, "server closed the connection");
			return;
		}
		while (!PQisBusy(c->pg)) {
			PGresult *r = PQgetResult(c->pg);
			if (!r) {
				complete(c);
				return;
			}
			accumulate(c, r);
		}
		if (PQstatus(c->pg) == CONNECTION_BAD)
			conn_fail(c, PQerrorMessage(c->pg));
	}
}

static void conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn *c = arg;
	UNUSED(fd);
	UNUSED(what);
	if (c->st == C_CONNECTING)
		conn_fail(c, "connect timed out");
	else if (c->st == C_DOWN)
		conn_start(c);
}

static void conn_fail(struct pgconn *c, const char *why)
{
	struct pgpool *pool = c->pool;
	struct job *j = c->cur;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", why ? why : "unknown");
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '"')
			*p = ' ';
	if (!pool->down_logged || c->st == C_BUSY)
		log_warn("event=db_down error=\"%s\" retry_ms=%d", msg, c->backoff_ms);
	pool->down_logged = true;
	unwatch(c);
	if (c->pg)
		PQfinish(c->pg);
	c->pg = NULL;
	c->st = C_DOWN;
	c->cur = NULL;
	PQclear(c->res);
	c->res = NULL;
	c->rollback_on_idle = false;
	struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
	c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
	if (j)
		job_fail_later(pool, j);
	for (struct job *p = c->pin_head, *nx; p; p = nx) {
		nx = p->next;
		job_fail_later(pool, p);
	}
	c->pin_head = c->pin_tail = NULL;
	dispatch(pool);
}

static void conn_start(struct pgconn *c)
{
	const char *kw[] = {"dbname", "application_name", "options", NULL};
	const char *vals[] = {c->pool->conninfo, "dialer", c->pool->options, NULL};
	c->pg = PQconnectStartParams(kw, vals, 1);
	if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_fail(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
		return;
	}
	c->st = C_CONNECTING;
	struct timeval tv = {CONNECT_TIMEOUT_S, 0};
	evtimer_add(c->timer, &tv);
	watch(c, EV_WRITE);
}

static void dispatch(struct pgpool *pool)
{
	bool any_up = false, any_connecting = false;
	for (int i = 0; i < pool->size; i++) {
		if (pool->conns[i].st == C_IDLE || pool->conns[i].st == C_BUSY)
			any_up = true;
		if (pool->conns[i].st == C_CONNECTING)
			any_connecting = true;
	}
	if (!any_up && !any_connecting) {
		/* nobody can run these: fail now rather than let requests hang */
		while (pool->head) {
			struct job *j = pool->head;
			pool->head = j->next;
			job_fail_later(pool, j);
		}
		pool->tail = NULL;
		pool->qlen = 0;
		return;
	}
	for (int i = 0; i < pool->size && pool->head; i++) {
		struct pgconn *c = &pool->conns[i];
		if (c->st != C_IDLE || c->pinned)
			continue;
		struct job *j = pool->head;
		pool->head = j->next;
		if (!pool->head)
			pool->tail = NULL;
		pool->qlen--;
		j->next = NULL;
		if (j->sql) {
			send_job(c, j);
		} else {
			c->pinned = true;
			pgpool_acquire_cb acb = j->acb;
			void *arg = j->arg;
			job_free(j);
			acb(c, arg);
		}
	}
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	UNUSED(fd);
	UNUSED(what);
	dispatch(arg);
}

static void enqueue(struct pgpool *pool, struct job *j)
{
	if (pool->qlen >= QUEUE_MAX) {
		log_warn("event=db_queue_full queued=%d", pool->qlen);
		job_fail_later(pool, j);
		return;
	}
	if (pool->tail)
		pool->tail->next = j;
	else
		pool->head = j;
	pool->tail = j;
	pool->qlen++;
	event_active(pool->kick, EV_TIMEOUT, 1);
}

struct pgpool *pgpool_new(struct event_base *base, const char *conninfo, int size, int statement_timeout_ms)
{
	struct pgpool *pool = xcalloc(1, sizeof(*pool));
	pool->base = base;
	pool->conninfo = xstrdup(conninfo);
	snprintf(pool->options, sizeof(pool->options), "-c statement_timeout=%d -c TimeZone=UTC", statement_timeout_ms);
	pool->size = size;
	pool->conns = xcalloc((size_t)size, sizeof(struct pgconn));
	pool->kick = event_new(base, -1, 0, kick_cb, pool);
	for (int i = 0; i < size; i++) {
		struct pgconn *c = &pool->conns[i];
		c->pool = pool;
		c->backoff_ms = BACKOFF_MIN_MS;
		c->timer = evtimer_new(base, conn_timer, c);
		conn_start(c);
	}
	return pool;
}

void pgpool_free(struct pgpool *pool)
{
	if (!pool)
		return;
	while (pool->head) {
		struct job *j = pool->head;
		pool->head = j->next;
		job_fail_cb(-1, 0, j);
	}
	for (int i = 0; i < pool->size; i++) {
		struct pgconn *c = &pool->conns[i];
		if (c->cur) {
			if (c->cur->cb)
				c->cur->cb(NULL, c->cur->arg);
			job_free(c->cur);
		}
		for (struct job *p = c->pin_head, *nx; p; p = nx) {
			nx = p->next;
			job_fail_cb(-1, 0, p);
		}
		PQclear(c->res);
		unwatch(c);
		event_free(c->timer);
		if (c->pg)
			PQfinish(c->pg);
	}
	event_free(pool->kick);
	free(pool->conns);
	free(pool->conninfo);
	free(pool);
}

void pgpool_query(struct pgpool *pool, const char *sql, int nparams, const char *const *values, pgpool_cb cb, void *arg)
{
	enqueue(pool, job_new(pool, sql, nparams, values, cb, arg));
}

void pgpool_acquire(struct pgpool *pool, pgpool_acquire_cb cb, void *arg)
{
	struct job *j = job_new(pool, NULL, 0, NULL, NULL, arg);
	j->acb = cb;
	enqueue(pool, j);
}

void pgpool_query_on(struct pgconn *c, const char *sql, int nparams, const char *const *values, pgpool_cb cb, void *arg)
{
	struct job *j = job_new(c->pool, sql, nparams, values, cb, arg);
	if (c->st == C_DOWN || c->st == C_CONNECTING) {
		job_fail_later(c->pool, j); /* the pinned session is gone */
	} else if (c->st == C_IDLE && !c->pin_head) {
		/* never complete inside the caller: sending is enough, results come later */
		send_job(c, j);
	} else {
		if (c->pin_tail)
			c->pin_tail->next = j;
		else
			c->pin_head = j;
		c->pin_tail = j;
	}
}

void pgpool_release(struct pgconn *c)
{
	c->pinned = false;
	if (c->st == C_IDLE && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		send_job(c, job_new(c->pool, "ROLLBACK", 0, NULL, NULL, NULL));
		return;
	}
	if (c->st == C_BUSY) {
		c->rollback_on_idle = true;
		return;
	}
	event_active(c->pool->kick, EV_TIMEOUT, 1);
}

bool pgpool_healthy(const struct pgpool *pool)
{
	for (int i = 0; i < pool->size; i++)
		if (pool->conns[i].st == C_IDLE || pool->conns[i].st == C_BUSY)
			return true;
	return false;
}

const char *pgpool_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}
