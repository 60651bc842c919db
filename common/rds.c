/*
 * hiredis async over libevent with reconnect: AUTH and SELECT are pipelined
 * first after every connect; a disconnect fails the in-flight callbacks with
 * NULL (hiredis does that) and schedules a reconnect with backoff. A command
 * that cannot be sent waits in the connection's failed list for the next loop
 * turn (or rds_free) to fail it with NULL.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>

#include "log.h"
#include "rds.h"
#include "util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct pending {
	rds_cb cb;
	void *arg;
	struct pending *next; /* in struct rds's failed list */
};

struct rds {
	struct event_base *base;
	struct rds_url url;
	redisAsyncContext *ac;
	bool connected;
	bool freeing;
	bool down_logged;
	int backoff_ms;
	struct event *retry;
	struct event *fail_ev;                 /* fails the failed list, the loop turn after */
	struct pending *failed, **failed_tail; /* commands that could not be sent, oldest first */
};

int rds_url_parse(const char *url, struct rds_url *out)
{
	const char *p, *at, *slash, *colon;
	memset(out, 0, sizeof(*out));
	out->port = 6379;
	if (strncmp(url, "redis://", 8))
		return -1;
	p = url + 8;
	at = strrchr(p, '@');
	if (at) {
		const char *pw = memchr(p, ':', (size_t)(at - p));
		pw = pw ? pw + 1 : p;
		if ((size_t)(at - pw) >= sizeof(out->password))
			return -1;
		memcpy(out->password, pw, (size_t)(at - pw));
		p = at + 1;
	}
	slash = strchr(p, '/');
	size_t hl = slash ? (size_t)(slash - p) : strlen(p);
	colon = memchr(p, ':', hl);
	if (colon) {
		long port;
		char buf[16];
		size_t pl = hl - (size_t)(colon - p) - 1;
		if (pl == 0 || pl >= sizeof(buf))
			return -1;
		memcpy(buf, colon + 1, pl);
		buf[pl] = '\0';
		if (util_parse_long(buf, 1, 65535, &port))
			return -1;
		out->port = (int)port;
		hl = (size_t)(colon - p);
	}
	if (hl == 0 || hl >= sizeof(out->host))
		return -1;
	memcpy(out->host, p, hl);
	if (slash && slash[1]) {
		long db;
		if (util_parse_long(slash + 1, 0, 1000, &db))
			return -1;
		out->db = (int)db;
	}
	return 0;
}

static void start(struct rds *r);

static void schedule_retry(struct rds *r)
{
	struct timeval tv = {r->backoff_ms / 1000, (r->backoff_ms % 1000) * 1000};
	evtimer_add(r->retry, &tv);
	r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rds *r = ac->data;
	if (status != REDIS_OK) {
		/* hiredis frees ac after this callback */
		if (!r->down_logged)
			log_warn("event=redis_down error=\"%s\" retry_ms=%d", ac->errstr, r->backoff_ms);
		r->down_logged = true;
		r->ac = NULL;
		r->connected = false;
		if (!r->freeing)
			schedule_retry(r);
		return;
	}
	r->connected = true;
	r->backoff_ms = BACKOFF_MIN_MS;
	if (r->down_logged)
		log_info("event=redis_up msg=\"redis connection restored\"");
	r->down_logged = false;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rds *r = ac->data;
	UNUSED(status);
	r->ac = NULL;
	r->connected = false;
	if (r->freeing)
		return;
	if (!r->down_logged)
		log_warn("event=redis_down error=\"%s\" retry_ms=%d", ac->errstr[0] ? ac->errstr : "connection closed",
		         r->backoff_ms);
	r->down_logged = true;
	schedule_retry(r);
}

static void ignore_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	UNUSED(ac);
	UNUSED(priv);
	redisReply *rep = reply;
	if (rep && rep->type == REDIS_REPLY_ERROR)
		log_error("event=redis_setup_failed error=\"%s\"", rep->str);
}

static void start(struct rds *r)
{
	redisAsyncContext *ac = redisAsyncConnect(r->url.host, r->url.port);
	if (!ac) {
		schedule_retry(r);
		return;
	}
	if (ac->err) {
		if (!r->down_logged)
			log_warn("event=redis_down error=\"%s\"", ac->errstr);
		r->down_logged = true;
		redisAsyncFree(ac);
		schedule_retry(r);
		return;
	}
	ac->data = r;
	r->ac = ac;
	redisLibeventAttach(ac, r->base);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	if (r->url.password[0])
		redisAsyncCommand(ac, ignore_reply, NULL, "AUTH %s", r->url.password);
	if (r->url.db)
		redisAsyncCommand(ac, ignore_reply, NULL, "SELECT %d", r->url.db);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	UNUSED(fd);
	UNUSED(what);
	start(arg);
}

/* Calls back (with NULL) and frees the commands that could not be sent so far; those they send
 * and cannot go on the list again, for the next call. */
static void fail_failed(struct rds *r)
{
	struct pending *p = r->failed;
	r->failed = NULL;
	r->failed_tail = &r->failed;
	while (p) {
		struct pending *next = p->next;
		if (p->cb)
			p->cb(NULL, p->arg);
		free(p);
		p = next;
	}
}

static void fail_cb(evutil_socket_t fd, short what, void *arg)
{
	UNUSED(fd);
	UNUSED(what);
	fail_failed(arg);
}

struct rds *rds_new(struct event_base *base, const char *url)
{
	struct rds *r = xcalloc(1, sizeof(*r));
	r->base = base;
	r->backoff_ms = BACKOFF_MIN_MS;
	if (rds_url_parse(url, &r->url))
		log_error("event=redis_url_invalid msg=\"using defaults\"");
	r->retry = evtimer_new(base, retry_cb, r);
	r->fail_ev = evtimer_new(base, fail_cb, r);
	r->failed_tail = &r->failed;
	start(r);
	return r;
}

void rds_free(struct rds *r)
{
	if (!r)
		return;
	r->freeing = true;
	if (r->ac)
		redisAsyncFree(r->ac); /* calls pending callbacks with NULL */
	/* and so are the commands that could not be sent (the loop may never run again), and those
	 * these callbacks send (hiredis refuses them now) */
	while (r->failed)
		fail_failed(r);
	event_free(r->fail_ev);
	event_free(r->retry);
	free(r);
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct pending *p = priv;
	UNUSED(ac);
	if (p->cb)
		p->cb(reply, p->arg);
	free(p);
}

void rds_command(struct rds *r, rds_cb cb, void *arg, int argc, const char **argv, const size_t *lens)
{
	static const struct timeval zero = {0, 0};
	struct pending *p = xmalloc(sizeof(*p));
	p->cb = cb;
	p->arg = arg;
	p->next = NULL;
	/* while connecting, hiredis buffers the command; a failed connect fails it */
	if (!r->ac || redisAsyncCommandArgv(r->ac, reply_cb, p, argc, argv, lens) != REDIS_OK) {
		/* failed from the loop, never inside this call; rds_free fails what is left */
		*r->failed_tail = p;
		r->failed_tail = &p->next;
		if (!r->freeing)
			evtimer_add(r->fail_ev, &zero);
	}
}

bool rds_connected(const struct rds *r)
{
	return r->connected;
}

redisContext *rds_connect_sync(const char *url, volatile int *stop)
{
	struct rds_url u;
	int backoff = BACKOFF_MIN_MS;
	bool logged = false;
	if (rds_url_parse(url, &u)) {
		log_error("event=redis_url_invalid");
		return NULL;
	}
	for (;;) {
		struct timeval tv = {5, 0};
		redisContext *c = redisConnectWithTimeout(u.host, u.port, tv);
		if (c && !c->err) {
			redisReply *rep = NULL;
			bool ok = true;
			if (u.password[0]) {
				rep = redisCommand(c, "AUTH %s", u.password);
				ok = rep && rep->type != REDIS_REPLY_ERROR;
				freeReplyObject(rep);
			}
			if (ok && u.db) {
				rep = redisCommand(c, "SELECT %d", u.db);
				ok = rep && rep->type != REDIS_REPLY_ERROR;
				freeReplyObject(rep);
			}
			/* a read or write that hangs (a stuck server) fails after this, instead of blocking the process
			 */
			struct timeval rw = {RDS_SYNC_TIMEOUT_S, 0};
			if (ok && redisSetTimeout(c, rw) != REDIS_OK)
				ok = false;
			if (ok) {
				if (logged)
					log_info("event=redis_up");
				return c;
			}
		}
		if (!logged)
			log_warn("event=redis_down error=\"%s\" retry=true", c ? c->errstr : "cannot allocate");
		logged = true;
		if (c)
			redisFree(c);
		if (!stop || *stop)
			return NULL;
		usleep((useconds_t)backoff * 1000);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
		if (*stop)
			return NULL;
	}
}

int rds_id_parse(const char *s, struct rds_stream_id *out)
{
	char *end;
	if (!s || *s < '0' || *s > '9' || strlen(s) >= RDS_ID_MAX)
		return -1;
	out->ms = strtoull(s, &end, 10);
	if (*end != '-' || end[1] < '0' || end[1] > '9')
		return -1;
	out->seq = strtoull(end + 1, &end, 10);
	return *end ? -1 : 0;
}

bool rds_id_less(struct rds_stream_id a, struct rds_stream_id b)
{
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq);
}

int rds_id_cmp(const char *a, const char *b)
{
	struct rds_stream_id x, y;
	if (rds_id_parse(a, &x) || rds_id_parse(b, &y))
		return strcmp(a, b) < 0 ? -1 : strcmp(a, b) > 0;
	return rds_id_less(x, y) ? -1 : rds_id_less(y, x);
}

int rds_id_next(const char *id, char out[RDS_ID_MAX])
{
	struct rds_stream_id v;
	if (rds_id_parse(id, &v))
		return -1;
	if (v.seq == UINT64_MAX)
		snprintf(out, RDS_ID_MAX, "%" PRIu64 "-0", v.ms + 1);
	else
		snprintf(out, RDS_ID_MAX, "%" PRIu64 "-%" PRIu64, v.ms, v.seq + 1);
	return 0;
}

const redisReply *rds_flat_field(const redisReply *flat, const char *key)
{
	for (size_t i = 0; flat && flat->type == REDIS_REPLY_ARRAY && i + 1 < flat->elements; i += 2)
		if (flat->element[i]->type == REDIS_REPLY_STRING && !strcmp(flat->element[i]->str, key))
			return flat->element[i + 1];
	return NULL;
}

const redisReply *rds_entry_field(const redisReply *fields, const char *name)
{
	const redisReply *v = rds_flat_field(fields, name);
	return v && v->type == REDIS_REPLY_STRING ? v : NULL;
}

int rds_xack_ids(redisContext *rc, const char *stream, const char *group, const char *const *ids, size_t n)
{
	if (n == 0)
		return 0;
	const char **argv = xmalloc((n + 3) * sizeof(*argv));
	argv[0] = "XACK";
	argv[1] = stream;
	argv[2] = group;
	memcpy(argv + 3, ids, n * sizeof(*ids));
	redisReply *r = redisCommandArgv(rc, (int)(n + 3), argv, NULL);
	int ok = r && r->type == REDIS_REPLY_INTEGER;
	if (!ok)
		log_warn("event=ack_failed stream=%s count=%zu error=\"%s\"", stream, n,
		         r && r->str ? r->str : rc->errstr);
	freeReplyObject(r);
	free(argv);
	return ok ? 0 : -1;
}

int rds_xack(redisContext *rc, const char *stream, const char *group, const redisReply *list, size_t n)
{
	const char **ids = xmalloc((n ? n : 1) * sizeof(*ids));
	size_t k = 0;
	for (size_t i = 0; i < n && i < list->elements; i++) {
		const redisReply *e = list->element[i];
		if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 && e->element[0]->type == REDIS_REPLY_STRING)
			ids[k++] = e->element[0]->str;
	}
	int rc_ = rds_xack_ids(rc, stream, group, ids, k);
	free(ids);
	return rc_;
}

redisReply *rds_autoclaim(redisContext *rc, const char *stream, const char *group, const char *consumer,
                          const char *idle_ms, const char *count, bool justid, char cursor[RDS_ID_MAX])
{
	const char *argv[] = {"XAUTOCLAIM", stream, group, consumer, idle_ms, cursor, "COUNT", count, "JUSTID"};
	redisReply *r = redisCommandArgv(rc, justid ? 9 : 8, argv, NULL);
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		log_warn("event=claim_failed stream=%s error=\"%s\"", stream, r && r->str ? r->str : rc->errstr);
		freeReplyObject(r);
		return NULL;
	}
	snprintf(cursor, RDS_ID_MAX, "%s", r->element[0]->str);
	return r;
}

const redisReply *rds_xread_entries(const redisReply *r)
{
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1)
		return NULL;
	const redisReply *s = r->element[0];
	if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 || s->element[1]->type != REDIS_REPLY_ARRAY)
		return NULL;
	return s->element[1];
}
