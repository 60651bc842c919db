/*
 * The dialer's hopper (VICIdial's design; docs/architecture.md "next-batch"):
 * a Redis list of candidate numbers per company, refilled in bulk from
 * PostgreSQL by the API itself when it runs low, so that a batch is one
 * Redis round trip (HOPPER_POP_LUA) instead of a database transaction.
 *
 * The lock of a dispatched number is the ZSET HOPPER_LOCKS (member: number
 * id, score: the lock's expiry in ms), taken atomically by the pop script.
 * A refill holds the numbers it pushes in the same ZSET (a score ending in
 * .5: the entry's expiry), so that the hoppers of several companies, which
 * draw from one pool, hold different numbers; a refill that saw the whole
 * pool takes held numbers over. An entry whose number is locked, held by
 * another entry, or older than HOPPER_MAX_AGE_MS is dropped when popped.
 * Every batch is appended to the stream HOPPER_BATCHES in the same script; the scheduler
 * copies it into dialer_batches and mirrors the lock into number_locks
 * (the durable copy, which refills also respect). A reported result releases
 * the Redis lock to a short grace (HOPPER_GRACE_MS), which keeps a refill
 * that read the database before the result's commit from taking the number
 * again. An admin change to numbers flushes the hoppers (HOPPER_FLUSH_LUA):
 * entries read before it are never dispatched after it.
 */
#ifndef DIALER_HOPPER_H
#define DIALER_HOPPER_H

#include <hiredis/hiredis.h>

#include "common.h"

#define HOPPER_LOCKS   "dialer:locks"
#define HOPPER_BATCHES "dialer:batches"
#define HOPPER_EPOCH   "dialer:hopper:epoch"
#define HOPPER_SET     "dialer:hoppers"
/* per company: the list, its refill meta (cursor), the refill lock, the dry marker */
#define HOPPER_LIST_FMT   "dialer:hopper:%ld"
#define HOPPER_META_FMT   "dialer:hopper:%ld:meta"
#define HOPPER_REFILL_FMT "dialer:hopper:%ld:refill"
#define HOPPER_DRY_FMT    "dialer:hopper:%ld:dry"

/* An entry popped this long after its refill read the database is dropped (it may be stale). */
#define HOPPER_MAX_AGE_MS 20000
/* A released lock stays this long, longer than any refill query may take (HOPPER_REFILL_LOCK_MS). */
#define HOPPER_GRACE_MS 30000
/* A refill holds the company's refill lock at most this long (a crashed refill frees it then). */
#define HOPPER_REFILL_LOCK_MS 10000
/* After a refill found nothing, refills of that company pause this long. */
#define HOPPER_DRY_MS 1000
/* Bounds of one refill (numbers read from the database and pushed). */
#define HOPPER_REFILL_MIN 200
#define HOPPER_REFILL_MAX 20000

/*
 * Pop: KEYS list, locks, batches, dry; ARGV n, now_ms, lock_ms, max_age_ms,
 * batch_id, company_id, requested, record (1: always append the batch record;
 * 2: only when n were popped), previous ids (comma-separated, already popped
 * for this batch), previous count. Returns {remaining, dry, dropped,
 * {id, phone, id, phone, ...}}.
 */
extern const char HOPPER_POP_LUA[];
/*
 * Refill begin: KEYS refill lock, epoch, meta, dry, list; ARGV lock_ms.
 * Returns {0} when another refill runs or the company is dry, else {1, epoch,
 * cursor, after, at, chase, steal, length}: the list's length after the last
 * refill and when that refill pushed (nil before the first), how far the next
 * refill reads at least and whether it takes held numbers over (nil: no
 * minimum, no), and the list's length now.
 */
extern const char HOPPER_BEGIN_LUA[];
/*
 * Fill, one part of a refill: KEYS list, locks, epoch, meta, refill lock, dry,
 * hoppers set; ARGV epoch seen, now_ms, fill_ms, new cursor, whole (1: the read
 * saw the whole pool: mark the company dry when its list is left empty),
 * company_id, dry_ms, steal (1: numbers other hoppers merely hold are taken
 * too), last (1: the last part, which frees the refill lock and sets the
 * cursor and the list's length), hold_ms (HOPPER_MAX_AGE_MS), then the ids,
 * then the entries "id:phone:fill_ms" in the same order. Pushes the free
 * numbers and holds them until fill_ms + hold_ms (+ 0.5: a hold, not a lock).
 * Returns the count pushed, or -1 when a flush happened since HOPPER_BEGIN_LUA.
 */
extern const char HOPPER_FILL_LUA[];
/*
 * Flush: KEYS epoch, hoppers set, locks; ARGV company_id, or "" for every
 * company, then hold_ms (HOPPER_MAX_AGE_MS). Drops the lists (and their
 * cursors), giving back the numbers their entries hold; bumps the epoch so
 * that a refill in flight pushes nothing. A company without a hopper is left
 * alone. Returns the count of hoppers dropped.
 */
extern const char HOPPER_FLUSH_LUA[];

/* The flush's command (HOPPER_FLUSH_LUA) for company_id (0: every company), in a. */
#define HOPPER_FLUSH_ARGC 8
struct hopper_flush_args {
	char cid[24], age[16];
	const char *argv[HOPPER_FLUSH_ARGC];
};
void hopper_flush_argv(struct hopper_flush_args *a, long company_id);

/* The candidate numbers of a refill: $1 company, $2 limit, $3 cooldown days, $4 cursor.
 * Columns: id, phone_number, wrapped (the walk restarted from the lowest id). */
extern const char HOPPER_CANDIDATES_SQL[];

/*
 * Releases the Redis locks of ids[0..n) to a HOPPER_GRACE_MS grace (never
 * lengthens a lock; a number a hopper merely holds gets the grace, so that its
 * entry is not dispatched) on a blocking connection. Returns 0 or -1.
 */
int hopper_release_sync(redisContext *rc, const long long *ids, int n) MUSTCHECK;

/* Flushes the hopper of company_id (0: every company) on a blocking connection. Returns 0 or -1. */
int hopper_flush_sync(redisContext *rc, long company_id) MUSTCHECK;

#endif
