/*
 * dialer-scheduler: safe to run as several copies, one leader at a time. The
 * leader holds a Redis lease (SET NX PX, renewed each second only by its
 * holder) and, on the worker skeleton's 1 s tick, publishes every company's
 * call-allowed state (publish.c) and every SCHED_SWEEP_SECONDS returns
 * expired locks to the queue (locks.c). Followers only try to take the lease.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "scheduler.h"
#include "util.h"

#define LEASE_KEY "dialer:scheduler:leader"
#define LEASE_MS  "5000"

/* Renews the lease only when we still hold it. */
static const char RENEW[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                            "  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
static const char RELEASE[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                              "  return redis.call('DEL', KEYS[1]) else return 0 end";

static bool leader;
static uint64_t next_sweep_ns; /* monotonic; 0: at the first leader tick */

static void lease(struct worker_ctx *w)
{
	redisReply *r;
	bool now_leader;
	if (leader) {
		r = redisCommand(w->redis, "EVAL %s 1 %s %s %s", RENEW, LEASE_KEY, w->consumer, LEASE_MS);
		now_leader = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
	} else {
		r = redisCommand(w->redis, "SET %s %s NX PX %s", LEASE_KEY, w->consumer, LEASE_MS);
		now_leader = r && r->type == REDIS_REPLY_STATUS;
	}
	freeReplyObject(r);
	if (now_leader != leader) {
		log_info("event=%s lease=%s", now_leader ? "leader_acquired" : "leader_lost", LEASE_KEY);
		/* a new term starts from nothing: markers first, a sweep at once */
		sched_publish_reset();
		next_sweep_ns = 0;
	}
	leader = now_leader;
}

static void tick(struct worker_ctx *w)
{
	lease(w);
	if (!leader)
		return;
	/* markers written (a key changed, or a new term): the decisions follow at once */
	int deferred = sched_publish(w);
	if (deferred > 0)
		deferred = sched_publish(w);
	if (deferred < 0)
		log_warn("event=callstate_pass_failed");
	uint64_t now = util_now_ns();
	if (now >= next_sweep_ns && w->db) {
		long long n = 0, batches = 0;
		int rc = sched_return_locks(w, &n, &batches);
		if (sched_expire_redis_locks(w))
			rc = -1;
		/* a full pass means more are waiting: go on at the next tick */
		next_sweep_ns =
		    now + (rc == 0 && batches >= SCHED_SWEEP_BATCHES ? 1 : SCHED_SWEEP_SECONDS) * 1000000000ull;
	}
}

/* The leader records the batches handed out as they come (lag well under a second); the
 * others wait their turn without spinning. */
static int run(struct worker_ctx *w)
{
	if (!leader) {
		struct timespec ts = {0, 200 * 1000000L};
		nanosleep(&ts, NULL);
		return 0;
	}
	return sched_record_batches(w, 200) < 0 ? -1 : 0;
}

static void stop(struct worker_ctx *w)
{
	sched_publish_reset();
	if (!leader || !w->redis)
		return;
	redisReply *r = redisCommand(w->redis, "EVAL %s 1 %s %s", RELEASE, LEASE_KEY, w->consumer);
	freeReplyObject(r);
	log_info("event=leader_released");
}

int main(void)
{
	static const struct worker_def def = {
	    .type = "scheduler",
	    .needs_db = true,
	    .tick = tick,
	    .run = run,
	    .stop = stop,
	};
	return worker_main(&def);
}
