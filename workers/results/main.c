/*
 * dialer-results: applies reported call results from the results stream to
 * PostgreSQL, exactly once. Reads its consumer group in batches, applies each
 * batch in one transaction (apply.c), acknowledges only after COMMIT, claims
 * what dead consumers left pending, dead-letters what cannot apply, and trims
 * the stream below what every group still needs. Any number of copies may run.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apply.h"
#include "callstate.h"
#include "config.h"
#include "emit.h"
#include "entry.h"
#include "hopper.h"
#include "metrics.h"
#include "rds.h"
#include "util.h"
#include "worker.h"

#define GROUP               "results"
#define RECOVER_PENDING_MAX 100000 /* XPENDING rows besides the claimed ones */
#define READ_BLOCK_MS       100    /* an idle read returns after this; SIGTERM is seen within it */
#define TRANSIENT_RETRIES   3      /* deadlocks and the like: the same batch again */
#define CLAIM_ROUNDS        10     /* XAUTOCLAIM calls per tick at most */
#define TRIM_EVERY_TICKS    10     /* seconds between trims */
#define REPORT_EVERY_TICKS  10     /* seconds between progress lines */
#define GC_EVERY_TICKS      300    /* seconds between dead-consumer clean-ups */

/* Process-wide state (one worker per process). */
static struct {
	unsigned epoch;        /* the worker_ctx epoch the connections were prepared for */
	bool recover;          /* re-read this consumer's own pending entries before new ones */
	char recover_from[48]; /* cursor through them */
	struct result_entry *entries;
	size_t cap;
	unsigned long ticks;
	/* since the last progress line */
	uint64_t applied, dups, dead, batches, lag_n;
	int64_t lag_sum_us, lag_max_us;
	uint64_t since_ns;
} rs;

/* Per-connection set-up, again after every reconnect. */
static int prepare(struct worker_ctx *w)
{
	if (rs.epoch == w->epoch)
		return 0;
	if (apply_prepare(w->db))
		return -1;
	rs.epoch = w->epoch;
	/* whatever this consumer read but did not acknowledge before the failure: again, now */
	rs.recover = true;
	snprintf(rs.recover_from, sizeof(rs.recover_from), "0");
	return 0;
}

/* XACK the entries; they stay pending (and come back as duplicates) when this fails. */
static int ack(struct worker_ctx *w, const struct result_entry *e, int n)
{
	const char **ids = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(*ids));
	for (int i = 0; i < n; i++)
		ids[i] = e[i].id;
	int rc = rds_xack_ids(w->redis, STREAM_RESULTS, GROUP, ids, (size_t)n);
	free(ids);
	return rc;
}

/* The dialer path reads a company's call-allowed state from Redis: drop it for
 * the companies a charge disabled, so the next next-batch decides afresh. */
static void drop_callstate(struct worker_ctx *w, const struct apply_summary *s)
{
	int n = s->ndisabled < APPLY_DISABLED_MAX ? s->ndisabled : APPLY_DISABLED_MAX;
	if (n == 0)
		return;
	char(*keys)[40] = xcalloc((size_t)n, sizeof(*keys));
	const char **argv = xmalloc((size_t)(n + 1) * sizeof(*argv));
	argv[0] = "DEL";
	for (int i = 0; i < n; i++) {
		snprintf(keys[i], sizeof(keys[i]), CALLSTATE_KEY_FMT, s->disabled[i]);
		argv[i + 1] = keys[i];
		log_info("event=company_disabled company_id=%ld reason=insufficient_funds", s->disabled[i]);
	}
	redisReply *r = redisCommandArgv(w->redis, n + 1, argv, NULL);
	if (!r || r->type == REDIS_REPLY_ERROR) /* the scheduler republishes within a second anyway */
		log_warn("event=callstate_drop_failed error=\"%s\"", r && r->str ? r->str : w->redis->errstr);
	freeReplyObject(r);
	free(argv);
	free(keys);
}

static void account(const struct result_entry *e, int n, const struct apply_summary *s, uint64_t took_ns)
{
	int64_t now = util_wall_us(), sum = 0, max = 0;
	int counted = 0;
	for (int i = 0; i < n; i++) {
		if (e[i].accepted_us <= 0)
			continue;
		int64_t lag = now - e[i].accepted_us;
		sum += lag > 0 ? lag : 0;
		max = lag > max ? lag : max;
		counted++;
	}
	metrics_count("results_batches", 1);
	metrics_count("results_applied", (uint64_t)s->applied);
	metrics_count("results_duplicates", (uint64_t)s->duplicates);
	metrics_count("results_dead_lettered", (uint64_t)s->dead);
	metrics_count("results_unknown_refs", (uint64_t)s->unknown_refs);
	metrics_count("results_lag_us", (uint64_t)sum);
	metrics_count("results_lag_count", (uint64_t)counted);
	rs.applied += (uint64_t)s->applied;
	rs.dups += (uint64_t)s->duplicates;
	rs.dead += (uint64_t)s->dead;
	rs.batches++;
	rs.lag_sum_us += sum;
	rs.lag_n += (uint64_t)counted;
	rs.lag_max_us = max > rs.lag_max_us ? max : rs.lag_max_us;
	log_debug("event=batch size=%d applied=%d duplicates=%d dead=%d ms=%.1f lag_max_ms=%.1f", n, s->applied,
	          s->duplicates, s->dead, (double)took_ns / 1e6, (double)max / 1e3);
}

/*
 * Applies e[0..n) and acknowledges what committed. A batch that fails on its
 * data is split in halves until the entry that fails is alone: the rest
 * commits, and that entry stays pending, to be claimed again (and counted as
 * a delivery) after CLAIM_IDLE_MS, and dead-lettered once it has failed
 * MAX_DELIVERIES times. Returns 0, or -1 when a connection is lost.
 */
static int apply_range(struct worker_ctx *w, struct result_entry *e, int n)
{
	struct apply_summary s;
	int rc = APPLY_TRANSIENT;
	for (int attempt = 0; attempt < TRANSIENT_RETRIES && rc == APPLY_TRANSIENT; attempt++) {
		uint64_t t0 = util_now_ns();
		rc = apply_batch(w->db, e, n, &s);
		if (rc == APPLY_OK) {
			account(e, n, &s, util_now_ns() - t0);
			drop_callstate(w, &s);
			results_emit(w, e, n, &s); /* result.ingested, after the commit (workers/results/emit.c) */
			/* after the commit: a refill that read the database before it is kept off by the grace */
			int released = hopper_release_sync(w->redis, s.numbers, s.nnumbers);
			free(s.numbers);
			if (released)
				return -1; /* Redis is failing: the entries stay pending and come back as duplicates */
			return ack(w, e, n);
		}
		free(s.numbers);
		log_warn("event=batch_failed size=%d attempt=%d rc=%d error=\"%s\"", n, attempt + 1, rc, s.error);
	}
	if (rc == APPLY_LOST) {
		/* a connection that is up but not idle (a protocol state we did not expect) is dropped:
		 * the skeleton connects again (with its session settings); prepare() runs again either way */
		if (PQstatus(w->db) == CONNECTION_OK && PQtransactionStatus(w->db) != PQTRANS_IDLE) {
			log_warn("event=db_reset error=\"connection not idle\"");
			PQfinish(w->db);
			w->db = NULL;
		}
		rs.epoch = 0;
		return -1;
	}
	if (rc == APPLY_TRANSIENT) {
		/* the database, not the data (deadlock, lock timeout, out of space): back off and read
		 * again; splitting would only count deliveries against entries that are fine */
		rs.epoch = 0;
		return -1;
	}
	if (n == 1) {
		metrics_count("results_failed", 1);
		log_warn("event=result_failed stream_id=%s deliveries=%d error=\"%s\"", e->id, e->deliveries, s.error);
		if (!e->last_chance)
			return 0; /* stays pending, comes back through XAUTOCLAIM */
		/* Dead-lettered only now that this delivery failed too, not for its count alone: a
		 * stalled copy still applying the entry would make this one's insert wait for it and then
		 * skip it as a duplicate, instead of the entry ending up both applied and dead */
		e->last_chance = false;
		snprintf(e->bad, sizeof(e->bad), "failed to apply in %d deliveries", e->deliveries);
		return apply_range(w, e, 1);
	}
	int half = n / 2;
	if (apply_range(w, e, half))
		return -1;
	return apply_range(w, e + half, n - half);
}

/*
 * Delivery count of id in an XPENDING range reply, or 0. Both the entries and
 * XPENDING's rows come in id order, so *pos only moves forward: one pass over
 * the reply for the whole list.
 */
static int deliveries_of(const redisReply *pending, size_t *pos, const char *id)
{
	struct rds_stream_id want, have;
	if (!pending || pending->type != REDIS_REPLY_ARRAY || rds_id_parse(id, &want))
		return 0;
	for (; *pos < pending->elements; (*pos)++) {
		const redisReply *p = pending->element[*pos];
		if (p->type != REDIS_REPLY_ARRAY || p->elements < 4 || p->element[0]->type != REDIS_REPLY_STRING ||
		    rds_id_parse(p->element[0]->str, &have))
			continue;
		if (rds_id_less(have, want))
			continue;
		if (rds_id_less(want, have))
			return 0;
		return (int)p->element[3]->integer;
	}
	return 0;
}

/* XPENDING of this consumer over list's id range (at most count rows), for
 * the delivery counts; NULL when the list is empty or the call fails. */
static redisReply *pending_of(struct worker_ctx *w, const redisReply *list, size_t count)
{
	const redisReply *first = list->elements ? list->element[0] : NULL;
	const redisReply *last = list->elements ? list->element[list->elements - 1] : NULL;
	if (!first || first->type != REDIS_REPLY_ARRAY || !first->elements || last->type != REDIS_REPLY_ARRAY ||
	    !last->elements || first->element[0]->type != REDIS_REPLY_STRING ||
	    last->element[0]->type != REDIS_REPLY_STRING)
		return NULL;
	char pcount[24];
	snprintf(pcount, sizeof(pcount), "%zu", count);
	const char *argv[] = {"XPENDING", STREAM_RESULTS, GROUP, first->element[0]->str, last->element[0]->str,
	                      pcount,     w->consumer};
	redisReply *p = redisCommandArgv(w->redis, (int)ARRAY_LEN(argv), argv, NULL);
	if (p && p->type == REDIS_REPLY_ARRAY)
		return p;
	freeReplyObject(p);
	return NULL;
}

/* Parses and applies a list of entries; pending (XPENDING's reply, may be
 * NULL) gives their delivery counts. Returns 0 or -1 (connection lost). */
static int process(struct worker_ctx *w, const redisReply *list, const redisReply *pending)
{
	int n = 0;
	size_t pos = 0;
	if (list->elements > rs.cap) {
		rs.cap = list->elements;
		rs.entries = xrealloc(rs.entries, rs.cap * sizeof(*rs.entries));
	}
	for (size_t i = 0; i < list->elements; i++) {
		struct result_entry *e = &rs.entries[n];
		if (entry_parse(list->element[i], e))
			continue;
		if (pending) {
			int d = deliveries_of(pending, &pos, e->id);
			e->deliveries = d > 0 ? d : 1;
		}
		e->last_chance = e->deliveries > cfg.max_deliveries && !e->bad[0];
		n++;
	}
	return n ? apply_range(w, rs.entries, n) : 0;
}

static int results_run(struct worker_ctx *w)
{
	if (prepare(w))
		return -1;
	char count[16], block[16];
	snprintf(count, sizeof(count), "%d", cfg.results_batch_size);
	snprintf(block, sizeof(block), "%d", READ_BLOCK_MS);
	/* own pending entries (after a reconnect) are read from a cursor; BLOCK does not apply to them */
	const char *argv[] = {"XREADGROUP",
	                      "GROUP",
	                      GROUP,
	                      w->consumer,
	                      "COUNT",
	                      count,
	                      "BLOCK",
	                      block,
	                      "STREAMS",
	                      STREAM_RESULTS,
	                      rs.recover ? rs.recover_from : ">"};
	redisReply *r = redisCommandArgv(w->redis, (int)ARRAY_LEN(argv), argv, NULL);
	int rc = 0;
	if (!r) {
		log_warn("event=read_failed error=\"%s\"", w->redis->errstr);
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		log_warn("event=read_failed error=\"%s\"", r->str);
		worker_group_lost(w, r, NULL); /* created again from 0: what is in the stream is applied */
		freeReplyObject(r);
		return -1;
	}
	const redisReply *list = rds_xread_entries(r);
	if (list && list->elements) {
		/* re-read own pending entries carry a delivery count that the read raised: take it, so that
		 * an entry that keeps failing this way still reaches MAX_DELIVERIES (the list is exactly this
		 * consumer's pending entries in that range) */
		redisReply *pending = rs.recover ? pending_of(w, list, list->elements) : NULL;
		rc = process(w, list, pending);
		freeReplyObject(pending);
	}
	if (rs.recover && rc == 0) {
		if (!list || !list->elements) {
			rs.recover = false;
		} else {
			const redisReply *last = list->element[list->elements - 1];
			if (last->type == REDIS_REPLY_ARRAY && last->elements &&
			    last->element[0]->type == REDIS_REPLY_STRING)
				snprintf(rs.recover_from, sizeof(rs.recover_from), "%s", last->element[0]->str);
			else
				rs.recover = false;
		}
	}
	freeReplyObject(r);
	return rc;
}

/* Claims entries other consumers (dead, or stalled) left pending longer than
 * CLAIM_IDLE_MS, with their delivery counts, and applies them. */
static void claim(struct worker_ctx *w)
{
	char cursor[RDS_ID_MAX] = "0-0", idle[16], count[16];
	snprintf(idle, sizeof(idle), "%d", cfg.claim_idle_ms);
	snprintf(count, sizeof(count), "%d", cfg.results_batch_size);
	for (int round = 0; round < CLAIM_ROUNDS; round++) {
		redisReply *r = rds_autoclaim(w->redis, STREAM_RESULTS, GROUP, w->consumer, idle, count, false, cursor);
		if (!r)
			return;
		const redisReply *list = r->element[1];
		int rc = 0;
		if (list->elements) {
			/* this consumer may hold other pending entries in the same id range (at most a batch it
			 * read and has not acknowledged): room for them too */
			redisReply *p = pending_of(w, list, list->elements + (size_t)cfg.results_batch_size);
			log_info("event=claimed count=%zu", list->elements);
			metrics_count("results_claimed", list->elements);
			rc = process(w, list, p);
			freeReplyObject(p);
		}
		freeReplyObject(r);
		if (rc || !strcmp(cursor, "0-0"))
			return;
	}
}

/*
 * XTRIM MINID below the oldest entry any group still needs: its oldest
 * pending entry, or the one after its last delivered. Entries below that are
 * acknowledged by every group; nothing unprocessed is ever trimmed (so a
 * group nobody reads holds the stream back — see docs/architecture.md).
 */
static void trim(struct worker_ctx *w)
{
	redisReply *g = redisCommand(w->redis, "XINFO GROUPS %s", STREAM_RESULTS);
	struct rds_stream_id bound = {UINT64_MAX, UINT64_MAX};
	bool found = false, usable = g && g->type == REDIS_REPLY_ARRAY;
	for (size_t i = 0; usable && i < g->elements; i++) {
		const redisReply *name = rds_flat_field(g->element[i], "name"),
		                 *pend = rds_flat_field(g->element[i], "pending"),
		                 *last = rds_flat_field(g->element[i], "last-delivered-id");
		struct rds_stream_id cand;
		if (!name || !pend || !last || name->type != REDIS_REPLY_STRING || last->type != REDIS_REPLY_STRING) {
			usable = false;
			break;
		}
		if (pend->integer > 0) {
			redisReply *p = redisCommand(w->redis, "XPENDING %s %s", STREAM_RESULTS, name->str);
			usable = p && p->type == REDIS_REPLY_ARRAY && p->elements >= 2 &&
			         p->element[1]->type == REDIS_REPLY_STRING && !rds_id_parse(p->element[1]->str, &cand);
			freeReplyObject(p);
		} else {
			char next[RDS_ID_MAX];
			usable = !rds_id_next(last->str, next) && !rds_id_parse(next, &cand);
		}
		if (usable && rds_id_less(cand, bound)) {
			bound = cand;
			found = true;
		}
	}
	freeReplyObject(g);
	if (!usable || !found)
		return;
	char min[48];
	snprintf(min, sizeof(min), "%" PRIu64 "-%" PRIu64, bound.ms, bound.seq);
	redisReply *t = redisCommand(w->redis, "XTRIM %s MINID ~ %s", STREAM_RESULTS, min);
	if (t && t->type == REDIS_REPLY_INTEGER && t->integer > 0) {
		metrics_count("results_trimmed", (uint64_t)t->integer);
		log_debug("event=trimmed count=%lld below=%s", t->integer, min);
	}
	freeReplyObject(t);
}

static void report(void)
{
	uint64_t now = util_now_ns();
	if (rs.batches) {
		double secs = (double)(now - rs.since_ns) / 1e9;
		log_info("event=progress applied=%" PRIu64 " per_s=%.0f duplicates=%" PRIu64 " dead=%" PRIu64
		         " batches=%" PRIu64 " lag_avg_ms=%.1f lag_max_ms=%.1f",
		         rs.applied, secs > 0 ? (double)rs.applied / secs : 0.0, rs.dups, rs.dead, rs.batches,
		         rs.lag_n ? (double)rs.lag_sum_us / (double)rs.lag_n / 1e3 : 0.0, (double)rs.lag_max_us / 1e3);
	}
	rs.applied = rs.dups = rs.dead = rs.batches = rs.lag_n = 0;
	rs.lag_sum_us = rs.lag_max_us = 0;
	rs.since_ns = now;
}

static void results_tick(struct worker_ctx *w)
{
	if (prepare(w))
		return;
	rs.ticks++;
	claim(w);
	if (rs.ticks % TRIM_EVERY_TICKS == 0)
		trim(w);
	if (rs.ticks % GC_EVERY_TICKS == 0)
		/* every restart of a copy is a new consumer: drop those idle an hour with nothing pending */
		(void)worker_consumers_gc(w, STREAM_RESULTS, GROUP, WORKER_CONSUMER_GC_IDLE_MS);
	if (rs.ticks % REPORT_EVERY_TICKS == 0)
		report();
}

static void results_stop(struct worker_ctx *w)
{
	UNUSED(w);
	report();
	free(rs.entries);
	rs.entries = NULL;
}

int main(void)
{
	static const struct worker_def def = {
	    .type = "results",
	    .stream = STREAM_RESULTS,
	    .group = GROUP,
	    .group_start = "0", /* reports accepted before the group existed are applied too */
	    .needs_db = true,
	    .tick = results_tick,
	    .run = results_run,
	    .stop = results_stop,
	};
	rs.since_ns = util_now_ns();
	return worker_main(&def);
}
