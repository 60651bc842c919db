/*
 * The skeleton every background process shares: configuration, connections
 * with backoff, its consumer group on its stream, periodic metrics push, a
 * per-second tick, and a clean stop on SIGTERM/SIGINT. All timers are libevent.
 */
#ifndef DIALER_WORKER_H
#define DIALER_WORKER_H

#include <hiredis/hiredis.h>
#include <event2/event.h>
#include <libpq-fe.h>

#include "common.h"

/* Stream names shared by the API and the workers. */
#define STREAM_RESULTS     "dialer:results"
#define STREAM_JOBS_IMPORT "dialer:jobs:import"
#define STREAM_JOBS_EXPORT "dialer:jobs:export"
#define STREAM_JOBS_BULK   "dialer:jobs:bulk"
#define STREAM_EVENTS      "dialer:events"

struct worker_ctx {
	redisContext *redis;     /* NULL while disconnected; the skeleton reconnects */
	PGconn *db;              /* NULL while disconnected; the skeleton reconnects */
	const char *consumer;    /* this process's consumer name: <host>-<pid>-<random> */
	unsigned epoch;          /* bumped whenever redis or db is (re)connected: per-connection setup */
	struct event_base *base; /* the process's libevent loop (for processes with their own events) */
	void *user;
};

struct worker_def {
	const char *type;   /* process type, as in the Procfile: "results" */
	const char *stream; /* stream to join, or NULL */
	const char *group;  /* consumer group on stream */
	/* Where a newly created group starts: NULL = "$" (entries added from now on);
	 * "0" = every entry still in the stream (no entry appended before the group
	 * existed is missed). */
	const char *group_start;
	bool needs_db;
	/* Called once a second with live connections; may be NULL (the process idles). */
	void (*tick)(struct worker_ctx *w);
	/*
	 * Called again and again with live connections, one call per loop turn, so
	 * signals and the tick still run between calls; it may block briefly (e.g.
	 * XREADGROUP BLOCK 100) and should do one bounded unit of work. Returns 0
	 * (call again at once), a number of milliseconds > 0 to wait before the
	 * next call (nothing to do yet: a timer, not a sleep), or -1 after a
	 * failure: the skeleton then waits for the next tick (which re-opens broken
	 * connections) before calling it again. May be NULL. A SIGTERM lets the
	 * call in progress finish, then the process stops.
	 */
	int (*run)(struct worker_ctx *w);
	/* Called once with the loop created (w->base), before it runs; may add its own events
	 * (listeners, async connections). Returns 0, or -1 to stop the process (exit status 1).
	 * May be NULL. */
	int (*init)(struct worker_ctx *w);
	/*
	 * Called once, from the loop, at the first SIGTERM/SIGINT, for a process with something to
	 * finish before it stops (goodbyes to its clients): from then on tick and run are no longer
	 * called, and the loop goes on for at most the milliseconds returned (0: it stops at once).
	 * The process ends it sooner, once done, with event_base_loopexit(w->base, NULL). A second
	 * signal stops it at once. May be NULL: the loop stops at the signal.
	 */
	int (*drain)(struct worker_ctx *w);
	/* Called once before exit with whatever connections are up; may be NULL. */
	void (*stop)(struct worker_ctx *w);
};

/*
 * When r is Redis's NOGROUP error (the stream or the group was deleted: Redis lost its data, or an
 * operator): the group is created again before run is called next, at from (the last entry this
 * copy read, so that nothing after it is missed and nothing before it replayed), or at the def's
 * group_start when from is NULL or empty; returns true. Otherwise false.
 */
bool worker_group_lost(struct worker_ctx *w, const redisReply *r, const char *from);

/* Runs the process until SIGTERM/SIGINT. Returns the exit status for main. */
int worker_main(const struct worker_def *def);

/*
 * Removes the consumers of group on stream that have nothing pending and have been idle
 * longer than idle_ms, except w's own (every restart of a copy is a new consumer). One Lua
 * script, so that no consumer receives an entry between the check and the removal. Returns
 * the number removed, or -1 (logged).
 */
int worker_consumers_gc(struct worker_ctx *w, const char *stream, const char *group, long idle_ms);

/* The idle time after which the stream workers remove a consumer with nothing pending (every
 * restart of a copy is a new consumer). */
#define WORKER_CONSUMER_GC_IDLE_MS 3600000

#endif
