/*
 * The scheduler leader's periodic work: publishing every active company's
 * call-allowed decision into Redis (publish.c) and returning expired batch
 * locks to the queue (locks.c). main.c holds the lease and calls these on the
 * leader only, from the worker skeleton's 1 s libevent tick.
 */
#ifndef DIALER_SCHEDULER_H
#define DIALER_SCHEDULER_H

#include "common.h"
#include "worker.h"

/* How often the leader returns expired locks, and at most how many batches
 * one pass releases (a bigger backlog is drained on the following ticks, so
 * that one statement never holds the tick, and the lease renewal, for long:
 * a batch holds at most MAX_BATCH_SIZE numbers). */
#define SCHED_SWEEP_SECONDS    30
#define SCHED_SWEEP_BATCHES    1000
#define SCHED_BATCH_KEEP_DAYS  30    /* released batches are history for this long, then deleted */
#define SCHED_BATCH_DELETE_MAX 10000 /* per sweep */

/*
 * One publishing pass: reads every active company's config, windows and the
 * holidays in one statement (CALLSTATE_ALL_SQL), persists COMPAT §3.6's
 * auto-disable for the enabled ones whose wallet is <= 0 (one UPDATE), and
 * writes each decision to CALLSTATE_KEY_FMT with PX CALLSTATE_TTL_MS in one
 * pipelined round trip. A key that changed since this process last wrote it
 * (the API deleted it after a schedule, billing or switch change, or another
 * scheduler wrote it) gets a short-lived marker instead of the decision; a
 * pass run right after writes the decision (see publish.c for why). Returns
 * how many companies got a marker (run another pass when > 0), or -1 when
 * the pass failed (logged; the next tick tries again).
 */
int sched_publish(struct worker_ctx *w) MUSTCHECK;

/* Forgets what was written (after losing the lease or a connection): the
 * next pass writes markers first. */
void sched_publish_reset(void);

/*
 * Returns locks older than ASSIGNMENT_TIMEOUT_MINUTES to the queue, found
 * through the open batches older than that (at most SCHED_SWEEP_BATCHES, in
 * one statement): each one's numbers still locked by it are unlocked and the
 * batch is marked released. *returned gets the numbers unlocked, *batches the
 * batches released. Counted in the metrics and logged. Returns 0 or -1.
 */
int sched_return_locks(struct worker_ctx *w, long long *returned, long long *batches) MUSTCHECK;

/* Drops the Redis locks (HOPPER_LOCKS) past their expiry: the dialer never
 * reported, or a released lock's grace is over. Returns 0 or -1 (logged). */
int sched_expire_redis_locks(struct worker_ctx *w) MUSTCHECK;

/* At most this many batch records per read (SCHED_RECORD_MAX × MAX_BATCH_SIZE locks mirrored per statement). */
#define SCHED_RECORD_MAX 200

/*
 * Copies the batches next-batch handed out (the HOPPER_BATCHES stream) into
 * dialer_batches and mirrors their locks into number_locks in one
 * statement, then deletes them from the stream. Waits up to block_ms for a
 * first entry. Returns the count of entries taken, or -1 (logged).
 */
int sched_record_batches(struct worker_ctx *w, int block_ms) MUSTCHECK;

#endif
