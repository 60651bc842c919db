/*
 * Batch locks older than ASSIGNMENT_TIMEOUT_MINUTES go back to the queue
 * (SPEC §3 Locks): the dialer that took them never reported. Found through
 * the batches: dialer_batches records each batch's numbers and its open ones
 * are indexed by time (schema 007); number_locks (schema 019) is keyed by
 * number only.
 */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "db.h"
#include "hopper.h"
#include "util.h"
#include "metrics.h"
#include "scheduler.h"

/* The oldest open batches past the timeout (dialer_batches_open_idx); their
 * numbers still held by that very batch are unlocked (a number reported and
 * locked again by a newer batch is left alone); the batches are marked
 * released (their number list emptied) so that the next pass skips them. A
 * batch another transaction holds is skipped. Released batches older than
 * SCHED_BATCH_KEEP_DAYS are deleted, a bounded chunk per sweep. */
static const char RETURN_SQL[] =
    "WITH old AS (SELECT id, number_ids FROM dialer_batches"
    "  WHERE NOT released AND returned_size > 0 AND created_at < now() - make_interval(mins => $1::integer)"
    "  ORDER BY created_at LIMIT $2::integer FOR UPDATE SKIP LOCKED),"
    " held AS (SELECT o.id AS batch_id, unnest(o.number_ids) AS number_id FROM old o),"
    " freed AS (DELETE FROM number_locks l USING held h WHERE l.number_id = h.number_id"
    "  AND l.batch_id = h.batch_id AND l.assigned_at < now() - make_interval(mins => $1::integer)"
    "  RETURNING l.number_id),"
    " rel AS (UPDATE dialer_batches b SET released = true, number_ids = '{}' FROM old o WHERE b.id = o.id"
    "  RETURNING b.id),"
    " gone AS (DELETE FROM dialer_batches WHERE id IN (SELECT id FROM dialer_batches WHERE released"
    "  AND created_at < now() - make_interval(days => $3::integer) ORDER BY created_at LIMIT $4::integer)"
    "  RETURNING 1)"
    " SELECT (SELECT count(*) FROM freed), (SELECT count(*) FROM rel), (SELECT count(*) FROM gone)";

int sched_return_locks(struct worker_ctx *w, long long *returned, long long *batches)
{
	char mins[16], limit[16], keep[16], del[16];
	PGresult *res;

	*returned = *batches = 0;
	snprintf(mins, sizeof(mins), "%d", cfg.assignment_timeout_minutes);
	snprintf(limit, sizeof(limit), "%d", SCHED_SWEEP_BATCHES);
	snprintf(keep, sizeof(keep), "%d", SCHED_BATCH_KEEP_DAYS);
	snprintf(del, sizeof(del), "%d", SCHED_BATCH_DELETE_MAX);
	const char *p[4] = {mins, limit, keep, del};
	res = db_exec(w->db, RETURN_SQL, 4, p);
	if (!res) {
		log_warn("event=lock_sweep_failed error=\"see the sql_failed line before\"");
		metrics_count("scheduler_lock_sweeps_failed", 1);
		return -1;
	}
	*returned = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	*batches = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	long long deleted = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	PQclear(res);
	if (deleted > 0)
		log_info("event=batches_deleted count=%lld keep_days=%d", deleted, SCHED_BATCH_KEEP_DAYS);
	metrics_count("scheduler_batches_deleted", (uint64_t)deleted);
	metrics_count("scheduler_lock_sweeps", 1);
	metrics_count("scheduler_locks_returned", (uint64_t)*returned);
	metrics_count("scheduler_batches_released", (uint64_t)*batches);
	if (*returned > 0)
		log_info("event=locks_returned count=%lld batches=%lld timeout_minutes=%d", *returned, *batches,
		         cfg.assignment_timeout_minutes);
	else
		log_debug("event=locks_returned count=0 batches=%lld timeout_minutes=%d", *batches,
		          cfg.assignment_timeout_minutes);
	return 0;
}

int sched_expire_redis_locks(struct worker_ctx *w)
{
	redisReply *r =
	    redisCommand(w->redis, "ZREMRANGEBYSCORE %s -inf %lld", HOPPER_LOCKS, (long long)(util_wall_us() / 1000));
	int ok = r && r->type == REDIS_REPLY_INTEGER;
	if (ok && r->integer > 0)
		log_info("event=redis_locks_expired count=%lld", r->integer);
	else if (!ok)
		log_warn("event=redis_lock_sweep_failed error=\"%s\"", r && r->str ? r->str : w->redis->errstr);
	if (ok)
		metrics_count("scheduler_redis_locks_expired", (uint64_t)r->integer);
	freeReplyObject(r);
	return ok ? 0 : -1;
}
