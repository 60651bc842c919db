/*
 * Worker skeleton: connect (with backoff, never exit on a down server), create
 * the consumer group (MKSTREAM; BUSYGROUP means it exists), then run a libevent
 * loop with a 1 s tick, a metrics push timer and, for workers that consume
 * continuously, a run event re-armed every loop turn, until SIGTERM/SIGINT.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "db.h"
#include "metrics.h"
#include "rds.h"
#include "util.h"
#include "worker.h"

static volatile int stopping;

struct wstate {
	const struct worker_def *def;
	struct worker_ctx w;
	struct event_base *base;
	struct event *tick_ev, *run_ev;
	bool group_ready, draining;
	char group_from[RDS_ID_MAX]; /* where a lost group is created again ("": def->group_start) */
	int since_push;
};

static void on_signal_early(int sig)
{
	UNUSED(sig);
	stopping = 1;
}

static bool ensure_group(struct wstate *s)
{
	if (!s->def->stream)
		s->group_ready = true; /* nothing to join: ready once connected */
	if (s->group_ready)
		return true;
	const char *start = *s->group_from ? s->group_from : s->def->group_start ? s->def->group_start : "$";
	redisReply *r =
	    redisCommand(s->w.redis, "XGROUP CREATE %s %s %s MKSTREAM", s->def->stream, s->def->group, start);
	bool ok = r && (r->type == REDIS_REPLY_STATUS || (r->type == REDIS_REPLY_ERROR && strstr(r->str, "BUSYGROUP")));
	if (ok) {
		log_info("event=group_joined stream=%s group=%s consumer=%s", s->def->stream, s->def->group,
		         s->w.consumer);
		s->group_ready = true;
		s->group_from[0] = '\0';
	} else {
		log_warn("event=group_failed stream=%s error=\"%s\"", s->def->stream, r ? r->str : s->w.redis->errstr);
	}
	freeReplyObject(r);
	return ok;
}

bool worker_group_lost(struct worker_ctx *w, const redisReply *r, const char *from)
{
	if (!r || r->type != REDIS_REPLY_ERROR || !strstr(r->str, "NOGROUP"))
		return false;
	struct wstate *s = (struct wstate *)(void *)((char *)w - offsetof(struct wstate, w));
	snprintf(s->group_from, sizeof(s->group_from), "%s", from ? from : "");
	log_warn("event=group_lost stream=%s group=%s from=%s", s->def->stream, s->def->group,
	         *s->group_from ? s->group_from : "start");
	s->group_ready = false; /* ensure_group creates it again before the next run */
	return true;
}

/* Re-opens whatever is down, without blocking for long: one attempt per tick. */
/* Per-session limits: a statement or a lock wait that hangs fails instead of
 * stalling the process (the API's pool sets its own). */
static PGconn *worker_db_connect(volatile int *stop)
{
	PGconn *db = db_connect(cfg.database_url, stop);
	if (db) {
		PGresult *r = PQexec(db, "SET statement_timeout = '120s'; SET lock_timeout = '30s'");
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			log_warn("event=db_session_setup_failed error=\"%s\"", db_error_message(db, r));
		PQclear(r);
	}
	return db;
}

static void ensure_connections(struct wstate *s)
{
	if (s->w.redis && s->w.redis->err) {
		redisFree(s->w.redis);
		s->w.redis = NULL;
		s->group_ready = false;
	}
	if (!s->w.redis) {
		s->w.redis = rds_connect_sync(cfg.redis_url, NULL);
		if (s->w.redis)
			s->w.epoch++;
	}
	if (s->w.redis)
		ensure_group(s);
	if (s->def->needs_db) {
		if (s->w.db && PQstatus(s->w.db) != CONNECTION_OK) {
			PQfinish(s->w.db);
			s->w.db = NULL;
		}
		if (!s->w.db) {
			s->w.db = worker_db_connect(NULL);
			if (s->w.db)
				s->w.epoch++;
		}
	}
}

static bool ready(const struct wstate *s)
{
	return s->w.redis && !s->w.redis->err && s->group_ready && (!s->def->needs_db || s->w.db);
}

static void run(evutil_socket_t fd, short what, void *arg)
{
	struct wstate *s = arg;
	static const struct timeval now = {0, 0}, later = {1, 0};
	UNUSED(fd);
	UNUSED(what);
	int rc = ready(s) ? s->def->run(&s->w) : -1;
	/* a zero timeout: the next call comes after the loop has polled signals and timers */
	if (rc > 0) {
		struct timeval wait = {rc / 1000, (rc % 1000) * 1000};
		event_add(s->run_ev, &wait);
		return;
	}
	event_add(s->run_ev, rc == 0 ? &now : &later);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct wstate *s = arg;
	UNUSED(fd);
	UNUSED(what);
	ensure_connections(s);
	if (s->w.redis && ++s->since_push >= cfg.metrics_push_seconds) {
		s->since_push = 0;
		if (metrics_push(s->w.redis, s->def->type, cfg.metrics_push_seconds))
			log_warn("event=metrics_push_failed");
	}
	if (ready(s) && s->def->tick)
		s->def->tick(&s->w);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct wstate *s = arg;
	UNUSED(what);
	log_info("event=stopping signal=%s", sig == SIGTERM ? "TERM" : "INT");
	if (s->def->drain && !s->draining) {
		s->draining = true;
		event_del(s->tick_ev);
		if (s->run_ev)
			event_del(s->run_ev);
		int ms = s->def->drain(&s->w);
		if (ms > 0) {
			struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
			event_base_loopexit(s->base, &tv);
			return;
		}
	}
	event_base_loopbreak(s->base);
}

int worker_consumers_gc(struct worker_ctx *w, const char *stream, const char *group, long idle_ms)
{
	static const char script[] =
	    "local n = 0\n"
	    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do\n"
	    "  local f = {}\n"
	    "  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end\n"
	    "  if f['pending'] == 0 and f['idle'] > tonumber(ARGV[2]) and f['name'] ~= ARGV[3] then\n"
	    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])\n"
	    "    n = n + 1\n"
	    "  end\n"
	    "end\n"
	    "return n\n";
	char idle[24];
	int n = -1;
	snprintf(idle, sizeof(idle), "%ld", idle_ms);
	const char *argv[] = {"EVAL", script, "1", stream, group, idle, w->consumer};
	redisReply *r = redisCommandArgv(w->redis, (int)ARRAY_LEN(argv), argv, NULL);
	if (r && r->type == REDIS_REPLY_INTEGER) {
		n = (int)r->integer;
		if (n > 0)
			log_info("event=consumers_removed group=%s count=%d", group, n);
	} else {
		log_warn("event=consumers_gc_failed group=%s error=\"%s\"", group,
		         r && r->str ? r->str : w->redis->errstr);
	}
	freeReplyObject(r);
	return n;
}

int worker_main(const struct worker_def *def)
{
	struct wstate s = {.def = def};
	char consumer[160], host[128];
	struct event *st = NULL, *si = NULL;
	int rc = 0;

	log_init(def->type);
	metrics_init();
	if (config_load(0))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal_early);
	signal(SIGINT, on_signal_early);
	if (gethostname(host, sizeof(host)))
		snprintf(host, sizeof(host), "host");
	host[sizeof(host) - 1] = '\0';
	/* random too: two containers with the same host name and pid 1 must not share a name (the
	 * scheduler's lease is held by this name) */
	char rnd[9];
	if (util_random_hex(rnd, 4))
		snprintf(rnd, sizeof(rnd), "%08x", (unsigned)util_now_ns());
	snprintf(consumer, sizeof(consumer), "%s-%d-%s", host, (int)getpid(), rnd);
	s.w.consumer = consumer;

	/* the first connections wait (with backoff) so a fresh start logs once, not per tick */
	s.w.redis = rds_connect_sync(cfg.redis_url, &stopping);
	if (s.w.redis)
		ensure_group(&s);
	if (def->needs_db && !stopping)
		s.w.db = worker_db_connect(&stopping);
	s.w.epoch = 1;
	if (stopping)
		goto out;

	s.base = event_base_new();
	s.w.base = s.base;
	if (def->init && def->init(&s.w)) {
		log_error("event=start_failed");
		rc = 1;
		goto out;
	}
	s.tick_ev = event_new(s.base, -1, EV_PERSIST, tick, &s);
	st = evsignal_new(s.base, SIGTERM, on_signal, &s);
	si = evsignal_new(s.base, SIGINT, on_signal, &s);
	struct timeval one = {1, 0};
	event_add(s.tick_ev, &one);
	event_add(st, NULL);
	event_add(si, NULL);
	if (def->run) {
		static const struct timeval zero = {0, 0};
		s.run_ev = evtimer_new(s.base, run, &s);
		event_add(s.run_ev, &zero);
	}
	log_info("event=started stream=%s group=%s consumer=%s work=%s", def->stream ? def->stream : "-",
	         def->group ? def->group : "-", consumer, def->tick || def->run ? "yes" : "idle");
	/* A signal that came during init (before libevent took SIGTERM over) was only noted: the
	 * supervisor sends one TERM, so it must not be lost. */
	if (stopping) {
		log_info("event=stopping signal=early");
		goto out;
	}
	event_base_dispatch(s.base);
out:
	if (def->stop)
		def->stop(&s.w);
	if (s.run_ev)
		event_free(s.run_ev);
	if (s.tick_ev)
		event_free(s.tick_ev);
	if (st)
		event_free(st);
	if (si)
		event_free(si);
	if (s.base)
		event_base_free(s.base);
	if (s.w.redis)
		redisFree(s.w.redis);
	if (s.w.db)
		PQfinish(s.w.db);
	config_free();
	log_info("event=stopped");
	return rc;
}
