/*
 * dialer-scheduler: safe to run as several copies, one leader at a time. The
 * leader holds a Redis lease (SET NX PX, renewed each second only by its
 * holder); the periodic work (call-allowed state, expired locks) runs on the
 * leader only and lands with the dialer pipeline.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "worker.h"

#define LEASE_KEY "dialer:scheduler:leader"
#define LEASE_MS  "5000"

/* Renews the lease only when we still hold it. */
static const char RENEW[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                            "  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
static const char RELEASE[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                              "  return redis.call('DEL', KEYS[1]) else return 0 end";

static bool leader;

static void tick(struct worker_ctx *w)
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
	if (now_leader != leader)
		log_info("event=%s lease=%s", now_leader ? "leader_acquired" : "leader_lost", LEASE_KEY);
	leader = now_leader;
}

static void stop(struct worker_ctx *w)
{
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
	    .stop = stop,
	};
	return worker_main(&def);
}
