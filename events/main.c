/*
 * dialer-events: fans the events stream (dialer:events) out to Server-Sent Events and WebSocket
 * clients. The API authenticates GET /api/events and GET /ws/updates on PORT and hands each
 * client's socket over on the Unix socket EVENTS_SOCKET (SCM_RIGHTS); from then on this process
 * alone talks to the client. One reader (XREAD BLOCK on its own Redis connection) renders each
 * event once and offers it to every client; scoping by company and role is in hub.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/listener.h>
#include <event2/thread.h>

#include "config.h"
#include "hub.h"
#include "metrics.h"
#include "rds.h"
#include "util.h"
#include "worker.h"

#define READ_COUNT      "64"   /* entries per XREAD: the loop writes to the clients between reads */
#define READ_BLOCK_MS   "1000" /* an idle XREAD returns after this */
#define HANDOFF_MAX     65536  /* bytes of one handoff header */
#define HANDOFF_TIMEOUT 5      /* seconds the API's message may take to arrive */
#define REPORT_EVERY    10     /* seconds between progress lines */
/* Kernel send buffer of a client socket. Fixed, not autotuned: on loopback or a fast link Linux
 * grows it to megabytes, which would hide a client that does not read (and cost that much kernel
 * memory per client); EVENTS_CLIENT_BUFFER_BYTES in this process is the buffer that counts. */
#define CLIENT_SNDBUF 131072
#define DRAIN_MS      1000 /* at SIGTERM, the SSE clients' goodbyes get this long to go out */

static struct {
	struct event_base *base;
	struct rds *reader; /* XREAD BLOCK only: a blocked connection can do nothing else */
	struct rds *ranges; /* catch-ups (XRANGE) */
	struct evconnlistener *listener;
	struct event *retry;
	char live[EVENTS_ID_MAX]; /* the last id read; the listener is enabled once it is known */
	int ticks;
	bool stopping;            /* draining at SIGTERM: handoffs still in flight are refused */
	int draining;             /* transports whose clients are still closing */
	struct event *ws_drained; /* made active from the WebSocket thread once its clients are gone */
	uint64_t read, skipped;
	uint64_t since_ns;
} st;

static void read_next(void);
static void ws_drained_cb(evutil_socket_t fd, short what, void *arg);

/* ---- the stream ---- */

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	UNUSED(fd);
	UNUSED(what);
	UNUSED(arg);
	read_next();
}

static void retry_later(void)
{
	struct timeval tv = {0, 500000};
	evtimer_add(st.retry, &tv);
}

static void read_cb(redisReply *r, void *arg)
{
	UNUSED(arg);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		if (r)
			log_warn("event=events_read_failed error=\"%s\"", r->str);
		retry_later(); /* the connection comes back by itself (rds) */
		return;
	}
	const redisReply *list = rds_xread_entries(r); /* NULL: nothing within the block time */
	for (size_t i = 0; list && i < list->elements; i++) {
		const redisReply *el = list->element[i];
		const char *id = hub_entry_id(el);
		struct event_msg ev;
		if (id)
			snprintf(st.live, sizeof(st.live), "%s", id);
		st.read++;
		if (events_parse(el, &ev)) {
			st.skipped++;
			metrics_count("events_skipped", 1);
			continue;
		}
		struct emsg *m = emsg_new(&ev);
		events_msg_clear(&ev);
		if (!m) {
			st.skipped++;
			continue;
		}
		sse_broadcast(m);
		ws_broadcast(m);
		emsg_unref(m);
	}
	if (list) {
		metrics_count("events_read", list->elements);
		sse_live_at(st.live);
	}
	read_next();
}

static void read_next(void)
{
	const char *argv[] = {"XREAD", "COUNT", READ_COUNT, "BLOCK", READ_BLOCK_MS, "STREAMS", STREAM_EVENTS, st.live};
	rds_command(st.reader, read_cb, NULL, (int)ARRAY_LEN(argv), argv, NULL);
}

static void find_start(void);

static void start_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	UNUSED(fd);
	UNUSED(what);
	UNUSED(arg);
	find_start();
}

/* Where live reading starts: the newest entry now (clients that resume read what is older). */
static void start_cb(redisReply *r, void *arg)
{
	UNUSED(arg);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		if (r && r->type == REDIS_REPLY_ERROR)
			log_warn("event=events_start_failed error=\"%s\"", r->str);
		struct timeval tv = {0, 500000};
		event_base_once(st.base, -1, EV_TIMEOUT, start_retry_cb, NULL, &tv);
		return;
	}
	const char *newest = hub_first_id(r);
	snprintf(st.live, sizeof(st.live), "%s", newest ? newest : "0-0");
	sse_live_at(st.live);
	evconnlistener_enable(st.listener);
	log_info("event=events_reading stream=%s from=%s", STREAM_EVENTS, st.live);
	read_next();
}

static void find_start(void)
{
	const char *argv[] = {"XREVRANGE", STREAM_EVENTS, "+", "-", "COUNT", "1"};
	rds_command(st.reader, start_cb, NULL, (int)ARRAY_LEN(argv), argv, NULL);
}

/* ---- handoffs from the API ---- */

/* The header's Last-Event-ID when it is a stream id, else "" (live only). Borrowed from h. */
static const char *header_last_id(const json_t *h)
{
	const char *last = json_string_value(json_object_get(h, "last_event_id"));
	struct rds_stream_id id;
	return last && !rds_id_parse(last, &id) ? last : "";
}

/* A handed-over client that is not taken (h: its header, NULL when unreadable) is answered as
 * its kind can read it: an SSE client's EventSource must see 200 to try again (hub_reject_sse). */
static void refuse(int fd, const json_t *h)
{
	const char *kind = json_string_value(json_object_get(h, "kind"));
	if (kind && !strcmp(kind, "sse"))
		hub_reject_sse(fd, "unavailable", json_string_value(json_object_get(h, "rid")),
		               json_string_value(json_object_get(h, "origin")), header_last_id(h));
	else
		hub_reject(fd, 503, "EVENTS_UNAVAILABLE", "Events service unavailable");
}

/* Reads the one message of a handoff connection: the JSON header and the client's socket. */
static void handoff_read(evutil_socket_t conn, short what, void *arg)
{
	struct event *self = arg;
	char *buf = NULL;
	int fd = -1;
	json_t *h = NULL;
	event_free(self);
	if (what & EV_TIMEOUT) {
		log_warn("event=handoff_failed reason=timeout");
		goto out;
	}
	union {
		char b[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	buf = xmalloc(HANDOFF_MAX + 1);
	struct iovec iov = {.iov_base = buf, .iov_len = HANDOFF_MAX};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
	ssize_t n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	/* every descriptor that came is ours to close, whatever else is wrong */
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int got;
			memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fd < 0)
				fd = got;
			else
				close(got);
		}
	}
	if (n <= 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || fd < 0) {
		log_warn("event=handoff_failed reason=\"%s\"", n < 0 ? strerror(errno) : "malformed message");
		goto out;
	}
	buf[n] = '\0';
	json_error_t err;
	struct scope s;
	h = json_loads(buf, 0, &err);
	const char *kind = json_string_value(json_object_get(h, "kind"));
	if (st.stopping) { /* accepted before the drain began: the client tries again, with the next copy */
		log_set_ctx(json_string_value(json_object_get(h, "rid")));
		log_info("event=client_refused transport=%s reason=draining", kind ? kind : "-");
		log_set_ctx(NULL);
		goto out;
	}
	int sndbuf = CLIENT_SNDBUF;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)))
		log_warn("event=setsockopt_failed option=SO_SNDBUF error=\"%s\"", strerror(errno));
	if (!kind || scope_from_json(h, &s)) {
		log_warn("event=handoff_failed reason=\"malformed header\"");
		goto out;
	}
	if (!strcmp(kind, "sse")) {
		sse_adopt(st.base, fd, &s, header_last_id(h), json_string_value(json_object_get(h, "origin")));
		fd = -1;
	} else if (!strcmp(kind, "ws") && json_is_string(json_object_get(h, "request"))) {
		ws_adopt(fd, &s, json_string_value(json_object_get(h, "request")));
		fd = -1;
	} else {
		log_warn("event=handoff_failed reason=\"unknown kind\"");
	}
out:
	if (fd >= 0)
		refuse(fd, h);
	json_decref(h);
	free(buf);
	close(conn);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t conn, struct sockaddr *sa, int len, void *arg)
{
	UNUSED(l);
	UNUSED(sa);
	UNUSED(len);
	UNUSED(arg);
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	/* only this user (the API runs as the same one) may hand clients over */
	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &cl) || (cred.uid != getuid() && cred.uid != 0)) {
		log_warn("event=handoff_refused reason=\"peer uid\" uid=%d", (int)cred.uid);
		close(conn);
		return;
	}
	struct event *ev = event_new(st.base, conn, EV_READ, handoff_read, event_self_cbarg());
	struct timeval tv = {HANDOFF_TIMEOUT, 0};
	event_add(ev, &tv);
}

/* Binds EVENTS_SOCKET. A socket file left by a dead process is replaced; one a live process
 * answers on is not (one dialer-events per socket path: see docs/operations.md). */
static int listen_unix(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;
	int s = -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg.events_socket);
	/* its directory (".run" under make run) may not exist yet */
	char dir[sizeof(sa.sun_path)];
	snprintf(dir, sizeof(dir), "%s", sa.sun_path);
	for (char *p = dir + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(dir, 0750) && errno != EEXIST)
				break;
			*p = '/';
		}
	if (lstat(sa.sun_path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			log_error("event=listen_failed socket=%s error=\"exists and is not a socket\"", sa.sun_path);
			return -1;
		}
		int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		bool alive = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (probe >= 0)
			close(probe);
		if (alive) {
			log_error("event=listen_failed socket=%s error=\"another dialer-events listens there\"",
			          sa.sun_path);
			return -1;
		}
		unlink(sa.sun_path);
	}
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || chmod(sa.sun_path, 0660) || listen(s, 1024)) {
		log_error("event=listen_failed socket=%s error=\"%s\"", sa.sun_path, strerror(errno));
		if (s >= 0)
			close(s);
		return -1;
	}
	st.listener = evconnlistener_new(st.base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, s);
	if (!st.listener) {
		close(s);
		return -1;
	}
	evconnlistener_disable(st.listener); /* until the stream position is known */
	return 0;
}

/* ---- the skeleton's hooks ---- */

static int events_init(struct worker_ctx *w)
{
	st.base = w->base;
	st.since_ns = util_now_ns();
	snprintf(st.live, sizeof(st.live), "0-0");
	if (listen_unix())
		return -1;
	st.reader = rds_new(st.base, cfg.redis_url);
	st.ranges = rds_new(st.base, cfg.redis_url);
	st.retry = evtimer_new(st.base, retry_cb, NULL);
	st.ws_drained = event_new(st.base, -1, 0, ws_drained_cb, NULL);
	sse_init(st.base, st.ranges);
	if (ws_start())
		return -1;
	find_start();
	log_info("event=events_listening socket=%s heartbeat_s=%d client_buffer_bytes=%ld max_clients=%d",
	         cfg.events_socket, cfg.events_heartbeat_seconds, cfg.events_client_buffer_bytes,
	         cfg.events_max_clients);
	return 0;
}

static void events_tick(struct worker_ctx *w)
{
	UNUSED(w);
	sse_tick();
	ws_tick();
	if (++st.ticks % REPORT_EVERY == 0) {
		uint64_t now = util_now_ns();
		double secs = (double)(now - st.since_ns) / 1e9;
		log_info("event=progress clients=%d read=%llu per_s=%.0f skipped=%llu live=%s",
		         atomic_load(&hub_clients), (unsigned long long)st.read,
		         secs > 0 ? (double)st.read / secs : 0.0, (unsigned long long)st.skipped, st.live);
		st.read = st.skipped = 0;
		st.since_ns = now;
	}
}

static void stop_listening(void)
{
	if (st.listener) {
		evconnlistener_free(st.listener);
		st.listener = NULL;
		unlink(cfg.events_socket);
	}
}

/* The drain: each transport says once when its clients have closed; the last one ends the loop. */
static void part_drained(void)
{
	if (--st.draining == 0)
		event_base_loopexit(st.base, NULL);
}

static void ws_drained_cb(evutil_socket_t fd, short what, void *arg)
{
	UNUSED(fd);
	UNUSED(what);
	UNUSED(arg);
	part_drained();
}

/* On the WebSocket thread: back to the loop (libevent is thread-safe: evthread_use_pthreads). */
static void ws_drained(void)
{
	event_active(st.ws_drained, EV_TIMEOUT, 1);
}

/* SIGTERM: no new clients; every client is told (SSE "event: dropped", reason shutdown;
 * WebSocket close 1001 "shutdown"), and the loop runs on until each has closed, DRAIN_MS at most
 * (one that does not read is then cut). */
static int events_drain(struct worker_ctx *w)
{
	UNUSED(w);
	st.stopping = true;
	stop_listening();
	log_info("event=events_draining clients=%d", atomic_load(&hub_clients));
	st.draining = 2; /* SSE, WebSocket */
	if (!sse_shutdown(part_drained))
		st.draining--;
	ws_shutdown(ws_drained);
	return DRAIN_MS;
}

static void events_stop(struct worker_ctx *w)
{
	UNUSED(w);
	stop_listening();
	/* the Redis connections first: their pending callbacks run (with NULL) while clients exist */
	rds_free(st.reader);
	rds_free(st.ranges);
	st.reader = st.ranges = NULL;
	sse_close_all();
	ws_stop(); /* its thread joined: ws_drained is no longer made active */
	if (st.retry)
		event_free(st.retry);
	if (st.ws_drained)
		event_free(st.ws_drained);
	st.retry = st.ws_drained = NULL;
}

int main(void)
{
	static const struct worker_def def = {
	    .type = "events",
	    .stream = NULL, /* reads with XREAD (every copy sees every event), no group */
	    .needs_db = false,
	    .init = events_init,
	    .tick = events_tick,
	    .drain = events_drain,
	    .stop = events_stop,
	};
	/* before the loop is made: the WebSocket thread wakes it at shutdown (event_active) */
	if (evthread_use_pthreads()) {
		log_init(def.type);
		log_error("event=start_failed error=\"libevent threads unavailable\"");
		return 1;
	}
	return worker_main(&def);
}
