/*
 * Server-Sent Events clients on dialer-events' libevent loop. Each client has a queue of
 * references to rendered events (struct refq in hub.c; struct emsg, shared by every client) and
 * a bufferevent that holds at most ~64 KiB of them at a time; what is queued plus what is
 * buffered is bounded by EVENTS_CLIENT_BUFFER_BYTES, past which the client is dropped and told
 * so ("event: dropped").
 * A client resuming with Last-Event-ID first reads (id, live] from the stream with XRANGE while
 * the live events that arrive meanwhile wait in its pending list: nothing lost, nothing twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "config.h"
#include "hub.h"
#include "metrics.h"
#include "rds.h"
#include "worker.h"

#define PUMP_HIGH     65536 /* bytes handed to the bufferevent at a time */
#define PUMP_LOW      16384 /* refill below this */
#define RANGE_COUNT   500   /* entries per catch-up XRANGE */
#define CLOSE_GRACE_S 5     /* a dropped client's last words get this long to go out */
#define TEXT_(n)      #n
#define TEXT(n)       TEXT_(n) /* a number macro's digits, as a string (a command argument) */

enum sse_state { SC_CATCHUP, SC_LIVE, SC_CLOSING };

struct sse_client {
	TAILQ_ENTRY(sse_client) link;
	struct bufferevent *bev;
	struct scope s;
	enum sse_state state;
	struct refq q;             /* to send */
	struct refq pending;       /* live events that came during the catch-up */
	char after[EVENTS_ID_MAX]; /* catch-up: read after this id … */
	char upto[EVENTS_ID_MAX];  /* … up to this one */
	char last_sent[EVENTS_ID_MAX];
	time_t last_write, closing_at;
	const char *why; /* SC_CLOSING: why it was dropped (static), what its close is logged with */
	bool range_inflight, zombie;
};

static TAILQ_HEAD(, sse_client) clients = TAILQ_HEAD_INITIALIZER(clients);
static struct event_base *base;
static struct rds *redis;
static char live[EVENTS_ID_MAX] = "0-0";
/* shutdown: clients still writing their goodbye, and what runs once none is */
static size_t closing_left;
static void (*on_drained)(void);

void sse_init(struct event_base *b, struct rds *r)
{
	base = b;
	redis = r;
}

void sse_live_at(const char *last_id)
{
	snprintf(live, sizeof(live), "%s", last_id);
}

/* ---- clients ---- */

/* A client's connection closed, at shutdown: the last one ends the drain. */
static void closed_at_shutdown(void)
{
	if (on_drained && --closing_left == 0) {
		void (*done)(void) = on_drained;
		on_drained = NULL;
		done();
	}
}

/* Frees c (or leaves it to its pending XRANGE's callback), logging why it closed: a dropped
 * client's drop reason, whatever ended its connection. */
static void client_free(struct sse_client *c, const char *why)
{
	if (c->range_inflight) { /* the XRANGE callback frees it */
		c->zombie = true;
		if (c->bev) {
			bufferevent_free(c->bev);
			c->bev = NULL;
			closed_at_shutdown();
		}
		return;
	}
	TAILQ_REMOVE(&clients, c, link);
	if (c->bev) {
		bufferevent_free(c->bev);
		closed_at_shutdown();
	}
	refq_clear(&c->q);
	refq_clear(&c->pending);
	atomic_fetch_sub(&hub_clients, 1);
	metrics_count("events_clients_closed", 1);
	log_set_ctx(c->s.rid);
	log_info("event=client_closed transport=sse user=%s company_id=%ld reason=%s last_event_id=%s", c->s.username,
	         c->s.company_id, c->why ? c->why : why, c->last_sent[0] ? c->last_sent : "-");
	log_set_ctx(NULL);
	free(c);
}

static size_t backlog(const struct sse_client *c)
{
	return c->q.bytes + c->pending.bytes + (c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0);
}

static void unref_cleanup(const void *data, size_t len, void *extra)
{
	UNUSED(data);
	UNUSED(len);
	emsg_unref(extra);
}

/*
 * Moves queued events into the bufferevent until it holds PUMP_HIGH bytes; libevent writes them
 * to the socket from the loop, and its write callback (below PUMP_LOW) pumps on. (No write to the
 * socket from here: a socket bufferevent's output can be drained only inside libevent's own write
 * callback, and evbuffer_write on it elsewhere writes nothing.) So "unsent" is what is queued
 * plus what the bufferevent holds: a client that reads keeps up with any burst its backlog limit
 * absorbs; one that does not is dropped.
 */
static void pump(struct sse_client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct emsg *m;
	uint64_t n = 0;
	for (;;) {
		if (evbuffer_get_length(out) >= PUMP_HIGH)
			break; /* the write callback pumps on */
		if (!(m = refq_pop(&c->q)))
			break;
		snprintf(c->last_sent, sizeof(c->last_sent), "%s", m->id);
		/* the reference moves into the buffer; released once the bytes are sent */
		if (evbuffer_add_reference(out, m->sse, m->sse_len, unref_cleanup, m))
			emsg_unref(m);
		n++;
	}
	if (n) {
		c->last_write = time(NULL);
		metrics_count("events_delivered", n);
	}
}

/* Drops the client: what is queued is discarded, it is told why (reason: a static string), and
 * the connection closes once that is out (or after CLOSE_GRACE_S). Logged now, but at shutdown,
 * where its close is the one line (events_draining says why). */
static void drop(struct sse_client *c, const char *reason)
{
	if (c->state == SC_CLOSING)
		return;
	refq_clear(&c->q);
	refq_clear(&c->pending);
	c->state = SC_CLOSING;
	c->closing_at = time(NULL);
	c->why = reason;
	if (!strcmp(reason, "slow_client"))
		metrics_count("events_clients_dropped", 1);
	if (strcmp(reason, "shutdown")) {
		log_set_ctx(c->s.rid);
		log_info("event=client_dropped transport=sse user=%s reason=%s", c->s.username, reason);
		log_set_ctx(NULL);
	}
	if (c->bev) {
		char *bye = events_sse_dropped(reason, c->last_sent);
		evbuffer_add(bufferevent_get_output(c->bev), bye, strlen(bye));
		free(bye);
	}
}

/* Queues m for c (a reference is taken), dropping c when its backlog goes over the limit. */
static void deliver(struct sse_client *c, struct refq *q, struct emsg *m)
{
	if (!refq_offer(q, emsg_ref(m), backlog(c)))
		drop(c, "slow_client");
}

void sse_broadcast(struct emsg *m)
{
	struct sse_client *c;
	TAILQ_FOREACH(c, &clients, link)
	{
		if (c->zombie || c->state == SC_CLOSING || !scope_sees(&c->s, m->type_idx, m->company_id))
			continue;
		if (c->state == SC_CATCHUP) {
			deliver(c, &c->pending, m);
		} else {
			deliver(c, &c->q, m);
			if (c->state == SC_LIVE)
				pump(c);
		}
	}
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct sse_client *c = arg;
	UNUSED(bev);
	if (c->state == SC_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			client_free(c, c->why);
		return;
	}
	pump(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	UNUSED(arg);
	/* an SSE client has nothing to say: whatever it sends is discarded */
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct sse_client *c = arg;
	UNUSED(bev);
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_free(c, what & BEV_EVENT_EOF ? "client_closed" : "io_error");
}

/* ---- catch-up (Last-Event-ID) ---- */

static void range_next(struct sse_client *c);

static void go_live(struct sse_client *c)
{
	struct emsg *m;
	while ((m = refq_pop(&c->pending)))
		refq_push(&c->q, m);
	c->state = SC_LIVE;
	pump(c);
}

/* "event: gap": events after the client's last id may be missing (key: why, or the oldest id
 * left). No id: line, so the client's Last-Event-ID stays where it was. */
static void gap(struct sse_client *c, const char *key, const char *val)
{
	evbuffer_add_printf(bufferevent_get_output(c->bev),
	                    "event: gap\ndata: {\"last_event_id\":\"%s\",\"%s\":\"%s\"}\n\n", c->after, key, val);
}

/* The catch-up cannot be read (Redis is unavailable, or its connection is being freed at
 * shutdown): say so, and go on live. No read is tried again from here: while Redis is away rds
 * fails it at once, and during rds_free it fails whatever a callback sends, so a retry would
 * only spin (rds.h: a callback must not send again and again on NULL). */
static void resume_unavailable(struct sse_client *c)
{
	gap(c, "reason", "resume unavailable");
	go_live(c);
}

static bool zombie_reaped(struct sse_client *c)
{
	c->range_inflight = false;
	if (!c->zombie)
		return false;
	client_free(c, "client_closed");
	return true;
}

static void range_cb(redisReply *r, void *arg)
{
	struct sse_client *c = arg;
	if (zombie_reaped(c) || c->state == SC_CLOSING)
		return;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		resume_unavailable(c);
		return;
	}
	for (size_t i = 0; i < r->elements; i++) {
		const char *id = hub_entry_id(r->element[i]);
		struct event_msg ev;
		if (id)
			snprintf(c->after, sizeof(c->after), "%s", id);
		if (events_parse(r->element[i], &ev))
			continue;
		/* rendered for this client alone: only what it sees */
		struct emsg *m = scope_sees(&c->s, events_type_index(ev.type), ev.company_id) ? emsg_new(&ev) : NULL;
		events_msg_clear(&ev);
		if (m)
			deliver(c, &c->q, m);
		emsg_unref(m);
		if (c->state == SC_CLOSING)
			return;
	}
	pump(c);
	if (r->elements == RANGE_COUNT && rds_id_cmp(c->after, c->upto) < 0)
		range_next(c);
	else
		go_live(c);
}

static void range_next(struct sse_client *c)
{
	char from[EVENTS_ID_MAX + 1];
	snprintf(from, sizeof(from), "(%s", c->after);
	const char *argv[] = {"XRANGE", STREAM_EVENTS, from, c->upto, "COUNT", TEXT(RANGE_COUNT)};
	c->range_inflight = true;
	rds_command(redis, range_cb, c, (int)ARRAY_LEN(argv), argv, NULL);
}

/* The oldest entry still in the stream: older than the client's last id means events it has
 * not seen may have been trimmed (the window is EVENTS_STREAM_LEN entries). */
static void oldest_cb(redisReply *r, void *arg)
{
	struct sse_client *c = arg;
	if (zombie_reaped(c) || c->state == SC_CLOSING)
		return;
	if (!r) {
		resume_unavailable(c);
		return;
	}
	const char *oldest = hub_first_id(r);
	if (oldest && rds_id_cmp(c->after, oldest) < 0) {
		gap(c, "oldest_event_id", oldest);
		metrics_count("events_resume_gaps", 1);
	}
	range_next(c);
}

/* ---- adoption ---- */

void sse_adopt(struct event_base *b, int fd, const struct scope *s, const char *last_id, const char *origin)
{
	struct sse_client *c;
	if (atomic_load(&hub_clients) >= cfg.events_max_clients) {
		log_warn("event=client_refused transport=sse reason=too_many_clients clients=%d",
		         atomic_load(&hub_clients));
		hub_reject_sse(fd, "too_many_clients", s->rid, origin, last_id);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	c = xcalloc(1, sizeof(*c));
	c->s = *s;
	c->bev = bufferevent_socket_new(b, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		close(fd);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&clients, c, link);
	atomic_fetch_add(&hub_clients, 1);
	metrics_count("events_clients_opened", 1);
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, PUMP_LOW, 0);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	char *head = hub_sse_head(s->rid, origin);
	/* the comment after the retry delay shows curl -N users it is live */
	evbuffer_add_printf(bufferevent_get_output(c->bev), "%s: connected\n\n", head);
	free(head);
	c->last_write = time(NULL);
	log_set_ctx(s->rid);
	log_info("event=client_opened transport=sse user=%s superuser=%d company_id=%ld last_event_id=%s peer=%s",
	         s->username, s->superuser, s->company_id, last_id && *last_id ? last_id : "-", s->peer);
	log_set_ctx(NULL);
	if (last_id && *last_id && rds_id_cmp(last_id, live) < 0) {
		c->state = SC_CATCHUP;
		snprintf(c->after, sizeof(c->after), "%s", last_id);
		snprintf(c->upto, sizeof(c->upto), "%s", live);
		const char *argv[] = {"XRANGE", STREAM_EVENTS, "-", "+", "COUNT", "1"};
		c->range_inflight = true;
		rds_command(redis, oldest_cb, c, (int)ARRAY_LEN(argv), argv, NULL);
		return;
	}
	c->state = SC_LIVE;
}

void sse_tick(void)
{
	time_t now = time(NULL);
	struct sse_client *c, *next;
	for (c = TAILQ_FIRST(&clients); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->zombie)
			continue;
		if (c->state == SC_CLOSING) {
			if (now - c->closing_at >= CLOSE_GRACE_S)
				client_free(c, c->why);
			continue;
		}
		if (c->s.token_exp > 0 && now >= c->s.token_exp) {
			drop(c, "token_expired");
			continue;
		}
		if (now - c->last_write >= cfg.events_heartbeat_seconds &&
		    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
			evbuffer_add(bufferevent_get_output(c->bev), ": ping\n\n", 8);
			c->last_write = now;
		}
	}
}

size_t sse_shutdown(void (*drained)(void))
{
	struct sse_client *c;
	size_t n = 0;
	/* the goodbye: EventSource reconnects (to another copy, or this one restarted) and resumes
	 * after last_event_id; what is queued is not sent. Each connection closes once it is out (a
	 * client already dropped closes once its own goodbye is). */
	TAILQ_FOREACH(c, &clients, link)
	{
		if (!c->bev) /* a zombie: closed already, waiting for its XRANGE reply */
			continue;
		drop(c, "shutdown");
		n++;
	}
	closing_left = n;
	on_drained = n ? drained : NULL;
	return n;
}

void sse_close_all(void)
{
	struct sse_client *c;
	on_drained = NULL; /* the loop has stopped */
	while ((c = TAILQ_FIRST(&clients))) {
		/* the Redis connection is freed by now (events_stop): no callback will come */
		c->range_inflight = false;
		client_free(c, "shutdown");
	}
}
