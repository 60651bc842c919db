/*
 * dialer-stats: counts applied call results into the rollup tables (schema/011_stats.sql) from
 * its own consumer group "stats" on the results stream, exactly once, and folds the number
 * counters' deltas. One copy applies at a time (the holder of a PostgreSQL advisory lock), in
 * stream order, so "the last entry applied" committed with the counts is the whole idempotence
 * record; other copies wait to take over. Design: docs/architecture.md, "Stats".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "metrics.h"
#include "rds.h"
#include "util.h"
#include "worker.h"

#define GROUP              "stats"
#define RESULTS_GROUP      "results"
#define LOCK_SQL           "SELECT pg_try_advisory_lock(74232, 1)" /* (class, key): the one applying copy */
#define READ_BLOCK_MS      100    /* an idle read returns after this; SIGTERM is seen within it */
#define STANDBY_MS         1000   /* a copy without the lock tries again this often */
#define WAIT_MIN_MS        10     /* entries not applied yet: first wait, doubling ... */
#define WAIT_MAX_MS        200    /* ... up to this */
#define CLAIM_COUNT        "1000" /* XAUTOCLAIM page when taking over */
#define FOLD_EVERY_TICKS   1      /* seconds between folds of the number counters' deltas */
#define PRUNE_EVERY_TICKS  60     /* seconds between prunes of the minute rollups */
#define REPORT_EVERY_TICKS 10     /* seconds between progress lines */
#define CHECK_EVERY_TICKS  5      /* seconds between looks for a requested rebuild (idle or not) */
#define GC_EVERY_TICKS     300    /* seconds between dead-consumer clean-ups */

/*
 * The results group's frontier and the stats group's pending entries held by other consumers,
 * in one round trip. Returns {kind, id, others}: kind "p" when the results group has pending
 * entries (id = its oldest: every entry before it is finished), "d" when it has none (id = its
 * last delivered entry: every entry up to it is finished), "" when there is no such group; others
 * = entries of this group pending on a consumer other than ARGV[3].
 */
static const char frontier_lua[] = "local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])\n"
                                   "local kind, id = '', ''\n"
                                   "if ok then\n"
                                   "  for _, g in ipairs(groups) do\n"
                                   "    local f = {}\n"
                                   "    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
                                   "    if f['name'] == ARGV[1] then\n"
                                   "      if f['pending'] > 0 then\n"
                                   "        kind, id = 'p', redis.call('XPENDING', KEYS[1], ARGV[1])[2]\n"
                                   "      else\n"
                                   "        kind, id = 'd', f['last-delivered-id']\n"
                                   "      end\n"
                                   "    end\n"
                                   "  end\n"
                                   "end\n"
                                   "local others = 0\n"
                                   "local ok2, p = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[2])\n"
                                   "if ok2 and type(p[4]) == 'table' then\n"
                                   "  for _, c in ipairs(p[4]) do\n"
                                   "    if c[1] ~= ARGV[3] then others = others + tonumber(c[2]) end\n"
                                   "  end\n"
                                   "end\n"
                                   "return {kind, id, others}\n";

/*
 * Before a rebuild, atomically (no trim can run in between): B = the last entry the results
 * group has finished (its last delivered one when nothing is pending, else the one just before
 * its oldest pending one), then this group re-created at B (its consumers and pending entries
 * dropped). Every entry up to B is then in PostgreSQL (counted by the rebuild), every later one
 * will be delivered to this group, and the stream is never trimmed past what this group has
 * not acknowledged. Returns B, or nil when the stream or the results group does not exist.
 * (Before "<ms>-0" comes "<ms-1>-<2^63-1>": a sequence number beyond that, which PostgreSQL's
 * bigint could not hold, would take 2^63 entries within one millisecond.)
 */
static const char regroup_lua[] =
    "local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])\n"
    "if not ok then return false end\n"
    "local b = nil\n"
    "for _, g in ipairs(groups) do\n"
    "  local f = {}\n"
    "  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
    "  if f['name'] == ARGV[1] then\n"
    "    if f['pending'] > 0 then\n"
    "      local ms, seq = string.match(redis.call('XPENDING', KEYS[1], ARGV[1])[2], '^(%d+)-(%d+)$')\n"
    "      if seq ~= '0' then\n"
    "        b = ms .. '-' .. string.format('%.0f', tonumber(seq) - 1)\n"
    "      else\n"
    "        b = string.format('%.0f', tonumber(ms) - 1) .. '-9223372036854775807'\n"
    "      end\n"
    "    else\n"
    "      b = f['last-delivered-id']\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if not b then return false end\n"
    "pcall(redis.call, 'XGROUP', 'DESTROY', KEYS[1], ARGV[2])\n"
    "redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[2], b)\n"
    "return b\n";

/* Process-wide state (one worker per process). */
static struct {
	unsigned epoch;                  /* the worker_ctx epoch the connections were prepared for */
	bool holder;                     /* this copy holds the lock (on the current database session) */
	bool check_group;                /* look whether the group still exists (rebuild when it does not) */
	bool check_rebuild;              /* ask stats_rebuild_needed before the next read */
	bool claim;                      /* take every pending entry of the group before reading */
	char claim_cursor[RDS_ID_MAX];   /* where claim_all goes on ("" or "0-0": from the start) */
	bool pending;                    /* this consumer may have pending entries: read those ("0") before new ones */
	bool said_waiting, said_standby; /* log those states once, not every second */
	int wait_ms;                     /* current wait for entries the results worker has not applied yet */
	unsigned long ticks;
	/* since the last progress line */
	uint64_t entries, applied, batches, waits, lag_n;
	int64_t lag_sum_us, lag_max_us;
	uint64_t since_ns;
} st;

/* Runs sql on the worker's connection; the result when it is COMMAND_OK or TUPLES_OK (caller
 * clears), else NULL with the error logged. */
static PGresult *exec(struct worker_ctx *w, const char *what, const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(w->db, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType s = PQresultStatus(r);
	if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
		return r;
	log_warn("event=db_failed what=%s error=\"%s\"", what, db_error_message(w->db, r));
	PQclear(r);
	return NULL;
}

/* True when the stream has this group. -1 when Redis fails. */
static int group_exists(struct worker_ctx *w)
{
	redisReply *r = redisCommand(w->redis, "XINFO GROUPS %s", STREAM_RESULTS);
	int found = 0;
	if (!r || (r->type == REDIS_REPLY_ERROR && !strstr(r->str, "no such key"))) {
		log_warn("event=groups_failed error=\"%s\"", r && r->str ? r->str : w->redis->errstr);
		found = -1;
	}
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *name = rds_entry_field(r->element[i], "name");
		if (name && !strcmp(name->str, GROUP))
			found = 1;
	}
	freeReplyObject(r);
	return found;
}

/* After any reconnect: the lock lives on the database session, so it is taken again (and the
 * group looked at again, as on every take-over: Redis may have lost it). */
static void prepare(struct worker_ctx *w)
{
	if (st.epoch == w->epoch)
		return;
	st.epoch = w->epoch;
	st.holder = false;
}

/* Tries to become the applying copy. Returns true when this copy holds the lock; on becoming
 * it, the group and the need for a rebuild are looked at, and a previous holder's pending
 * entries are taken, before anything is read. */
static bool take_lock(struct worker_ctx *w)
{
	if (st.holder)
		return true;
	PGresult *r = exec(w, "lock", LOCK_SQL, 0, NULL);
	bool asked = r != NULL, got = r && PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 0), "t");
	PQclear(r);
	if (!got && asked && !st.said_standby) {
		log_info("event=standby reason=\"another copy is applying\"");
		st.said_standby = true;
	}
	if (got) {
		st.said_standby = false;
		st.holder = true;
		st.check_group = true;
		st.check_rebuild = true;
		st.claim = true; /* a previous holder's pending entries come first */
		st.claim_cursor[0] = '\0';
		log_info("event=applying consumer=%s", w->consumer);
	}
	return got;
}

/* Takes every entry of the group pending on another consumer (a previous holder's), so that
 * this copy's own pending list holds everything delivered and not acknowledged, in order. At most
 * CLAIM_ROUNDS pages a call, so that a huge pending list does not hold the loop: the cursor is
 * kept, and the next call goes on. Returns 0 when all is taken, 1 when there is more, or -1. */
#define CLAIM_ROUNDS 100

static int claim_all(struct worker_ctx *w)
{
	char *claim_cursor = st.claim_cursor;
	if (!*claim_cursor)
		snprintf(claim_cursor, RDS_ID_MAX, "0-0");
	for (int round = 0; round < CLAIM_ROUNDS; round++) {
		redisReply *r =
		    rds_autoclaim(w->redis, STREAM_RESULTS, GROUP, w->consumer, "0", CLAIM_COUNT, true, claim_cursor);
		if (!r)
			return -1;
		if (r->element[1]->elements)
			log_info("event=claimed count=%zu", r->element[1]->elements);
		freeReplyObject(r);
		if (!strcmp(claim_cursor, "0-0")) {
			claim_cursor[0] = '\0';
			return 0;
		}
	}
	log_info("event=claim_continues cursor=%s", claim_cursor);
	return 1;
}

/* Whether the rollups must be rebuilt before any entry is read, when st says to look: the group is
 * gone (Redis lost its data, a new installation, an operator: what it had delivered is unknown),
 * or stats_rebuild_needed says so (requested, a new installation, another TIMEZONE). Returns 1,
 * 0, or -1. */
static int rebuild_needed(struct worker_ctx *w)
{
	if (st.check_group) {
		int g = group_exists(w);
		if (g < 0)
			return -1;
		if (!g) {
			log_info("event=group_missing stream=%s group=%s", STREAM_RESULTS, GROUP);
			return 1;
		}
		st.check_group = false;
	}
	if (!st.check_rebuild)
		return 0;
	const char *p[1] = {cfg.timezone};
	PGresult *r = exec(w, "check", "SELECT stats_rebuild_needed($1)", 1, p);
	if (!r)
		return -1;
	bool needed = !strcmp(PQgetvalue(r, 0, 0), "t");
	PQclear(r);
	st.check_rebuild = needed; /* when needed: asked again until the rebuild commits */
	return needed;
}

/*
 * Counts the rollups again from call_attempts: the request committed first
 * (stats_rebuild_request), then the group re-created at B (regroup_lua), then one transaction
 * stats_rebuild(B). The request comes first so that the group is only ever re-created while
 * PostgreSQL says a rebuild is needed: a copy that dies before the rebuild's COMMIT leaves it
 * needed, and the next holder rebuilds again (from a new B) instead of reading the new group and
 * never counting the entries between the last one counted and B. Returns 0, a wait in ms (no
 * results group yet), or -1.
 */
static int rebuild(struct worker_ctx *w)
{
	st.check_rebuild = true; /* until the rebuild commits */
	PGresult *q = exec(w, "request", "SELECT stats_rebuild_request()", 0, NULL);
	if (!q)
		return -1;
	PQclear(q);
	const char *argv[] = {"EVAL", regroup_lua, "1", STREAM_RESULTS, RESULTS_GROUP, GROUP};
	redisReply *r = redisCommandArgv(w->redis, (int)ARRAY_LEN(argv), argv, NULL);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		log_warn("event=regroup_failed error=\"%s\"", r && r->str ? r->str : w->redis->errstr);
		freeReplyObject(r);
		return -1;
	}
	if (r->type != REDIS_REPLY_STRING) {
		/* the results worker creates its group at its start: until then nothing is known applied */
		if (!st.said_waiting)
			log_info("event=waiting_for_results_group stream=%s", STREAM_RESULTS);
		st.said_waiting = true;
		freeReplyObject(r);
		return STANDBY_MS;
	}
	st.said_waiting = false;
	char upto[RDS_ID_MAX];
	snprintf(upto, sizeof(upto), "%s", r->str);
	freeReplyObject(r);

	uint64_t t0 = util_now_ns();
	log_info("event=rebuild_started upto=%s timezone=%s", upto, cfg.timezone);
	const char *p[2] = {upto, cfg.timezone};
	/* one transaction, without the session's statement timeout: it reads all of call_attempts */
	PGresult *b = PQexec(w->db, "BEGIN; SET LOCAL statement_timeout = '1h'");
	PGresult *res = NULL, *c = NULL;
	int rc = -1;
	if (PQresultStatus(b) != PGRES_COMMAND_OK) {
		log_warn("event=db_failed what=begin error=\"%s\"", PQerrorMessage(w->db));
		goto out;
	}
	res = exec(w, "rebuild", "SELECT stats_rebuild($1, $2)", 2, p);
	c = res ? exec(w, "commit", "COMMIT", 0, NULL) : NULL;
	if (c) {
		log_info("event=rebuilt rows=%s upto=%s ms=%.0f", PQgetvalue(res, 0, 0), upto,
		         (double)(util_now_ns() - t0) / 1e6);
		metrics_count("stats_rebuilds", 1);
		st.check_group = st.check_rebuild = false;
		st.claim = st.pending = false; /* the group was re-created: nothing is pending */
		rc = 0;
	}
out:
	if (rc && PQstatus(w->db) == CONNECTION_OK && PQtransactionStatus(w->db) != PQTRANS_IDLE)
		PQclear(PQexec(w->db, "ROLLBACK"));
	PQclear(b);
	PQclear(res);
	PQclear(c);
	return rc;
}

/* XREADGROUP from this consumer's pending entries ("0") or new ones (">"). NULL on failure
 * (logged; a deleted group is looked at, and the rollups rebuilt). */
static redisReply *read_group(struct worker_ctx *w, bool pending)
{
	char count[16], block[16];
	snprintf(count, sizeof(count), "%d", cfg.stats_batch_size);
	snprintf(block, sizeof(block), "%d", READ_BLOCK_MS);
	const char *argv[] = {"XREADGROUP", "GROUP",   GROUP,          w->consumer,        "COUNT", count, "BLOCK",
	                      block,        "STREAMS", STREAM_RESULTS, pending ? "0" : ">"};
	redisReply *r = redisCommandArgv(w->redis, (int)ARRAY_LEN(argv), argv, NULL);
	if (!r) {
		log_warn("event=read_failed error=\"%s\"", w->redis->errstr);
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		log_warn("event=read_failed error=\"%s\"", r->str);
		/* the stream or the group is gone (Redis lost its data, or an operator): what this group
		 * had delivered is unknown, so count everything again (rebuild re-creates the group) */
		if (strstr(r->str, "NOGROUP"))
			st.check_group = true;
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

/* The first entry the results group has not finished, into out ("0-1" when it has finished
 * nothing or does not exist); *others = entries of this group pending on other consumers.
 * Returns 0 or -1. */
static int frontier(struct worker_ctx *w, char out[RDS_ID_MAX], long long *others)
{
	const char *argv[] = {"EVAL", frontier_lua, "1", STREAM_RESULTS, RESULTS_GROUP, GROUP, w->consumer};
	redisReply *r = redisCommandArgv(w->redis, (int)ARRAY_LEN(argv), argv, NULL);
	int rc = -1;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_INTEGER) {
		log_warn("event=frontier_failed error=\"%s\"", r && r->str ? r->str : w->redis->errstr);
		goto out;
	}
	*others = r->element[2]->integer;
	const char *kind = r->element[0]->str, *id = r->element[1]->str;
	if (!strcmp(kind, "p")) {
		snprintf(out, RDS_ID_MAX, "%s", id);
		rc = 0;
	} else if (!strcmp(kind, "d")) {
		rc = rds_id_next(id, out);
	} else {
		snprintf(out, RDS_ID_MAX, "0-1"); /* no results group: nothing is known finished */
		rc = 0;
	}
out:
	freeReplyObject(r);
	return rc;
}

/* Lag from the API's 202 (accepted_at) to now, over the first n entries of list. */
static void account(const redisReply *list, int n, int applied)
{
	int64_t now = util_wall_us(), sum = 0, max = 0;
	uint64_t counted = 0;
	for (int i = 0; i < n; i++) {
		const redisReply *el = list->element[i];
		const redisReply *v = el->elements >= 2 ? rds_entry_field(el->element[1], "accepted_at") : NULL;
		long us;
		if (!v || util_parse_long(v->str, 1, INT64_MAX, &us))
			continue;
		int64_t lag = now - us > 0 ? now - us : 0;
		sum += lag;
		max = lag > max ? lag : max;
		counted++;
	}
	metrics_count("stats_batches", 1);
	metrics_count("stats_entries", (uint64_t)n);
	metrics_count("stats_applied", (uint64_t)applied);
	metrics_count("stats_lag_us", (uint64_t)sum);
	metrics_count("stats_lag_count", counted);
	st.entries += (uint64_t)n;
	st.applied += (uint64_t)applied;
	st.batches++;
	st.lag_sum_us += sum;
	st.lag_n += counted;
	st.lag_max_us = max > st.lag_max_us ? max : st.lag_max_us;
}

/* The next wait for entries the results worker has not finished: 10 ms, doubling to 200 ms. */
static int backoff(void)
{
	metrics_count("stats_waits", 1);
	st.waits++;
	st.wait_ms = st.wait_ms ? st.wait_ms * 2 : WAIT_MIN_MS;
	if (st.wait_ms > WAIT_MAX_MS)
		st.wait_ms = WAIT_MAX_MS;
	return st.wait_ms;
}

/*
 * Counts one read batch (in stream order). Only the entries before the results group's frontier
 * go to PostgreSQL: they are committed or dead-lettered already, so nothing is looked up twice
 * while the results worker is still on it (this worker usually reads an entry before that
 * worker has committed it). stats_apply counts the prefix it can settle and records its last
 * entry; that prefix is acknowledged after COMMIT. Whatever is left unacknowledged sets
 * st.pending, so that it is read again first. Returns 0 (progress: read again at once), a wait in
 * ms (nothing finished yet: the entries stay pending and are read again), or -1.
 */
static int process(struct worker_ctx *w, const redisReply *list)
{
	int n = 0, m = 0;
	for (size_t i = 0; i < list->elements; i++) {
		const redisReply *el = list->element[i];
		if (el->type != REDIS_REPLY_ARRAY || el->elements < 1 || el->element[0]->type != REDIS_REPLY_STRING)
			break; /* not an entry: stop before it (it stays pending) */
		n++;
	}
	if (n < (int)list->elements)
		st.pending = true;
	if (n == 0)
		return 0;

	char fin[RDS_ID_MAX];
	long long others = 0;
	struct rds_stream_id f, e;
	if (frontier(w, fin, &others) || rds_id_parse(fin, &f))
		return -1;
	if (others > 0) {
		/* a previous holder (or one that lost its database session) still holds entries, older
		 * than these: they are taken and everything is read again in order */
		st.claim = true;
		st.claim_cursor[0] = '\0';
		return 0;
	}
	while (m < n && !rds_id_parse(list->element[m]->element[0]->str, &e) && rds_id_less(e, f))
		m++;
	if (m == 0) {
		st.pending = true;
		return backoff();
	}

	struct buf elems = {0};
	for (int i = 0; i < m; i++)
		buf_array_elem(&elems, list->element[i]->element[0]->str);
	char *ids = xasprintf("{%s}", elems.p);
	free(elems.p);
	const char *p[3] = {ids, fin, cfg.timezone};
	uint64_t t0 = util_now_ns();
	PGresult *r = exec(w, "apply", "SELECT o_status, o_done, o_applied FROM stats_apply($1::text[], $2, $3)", 3, p);
	free(ids);
	if (!r)
		return -1;
	int rc = 0;
	if (!strcmp(PQgetvalue(r, 0, 0), "rebuild")) {
		st.check_rebuild = st.pending = true;
		goto out;
	}
	int done = atoi(PQgetvalue(r, 0, 1)), applied = atoi(PQgetvalue(r, 0, 2));
	if (done > 0) {
		/* on failure they come back from the pending list, and are skipped */
		if (rds_xack(w->redis, STREAM_RESULTS, GROUP, list, (size_t)done))
			st.pending = true;
		account(list, done, applied);
		st.wait_ms = 0;
	}
	if (done < n)
		st.pending = true; /* the rest waits in the pending list */
	log_debug("event=batch size=%d finished=%d done=%d applied=%d ms=%.1f", n, m, done, applied,
	          (double)(util_now_ns() - t0) / 1e6);
	if (done == 0)
		rc = backoff(); /* not expected before the frontier; kept safe: wait as for the rest */
out:
	PQclear(r);
	return rc;
}

static int stats_run(struct worker_ctx *w)
{
	prepare(w);
	if (!take_lock(w))
		return STANDBY_MS;
	int needed = rebuild_needed(w);
	if (needed)
		return needed < 0 ? -1 : rebuild(w);
	if (st.claim) {
		int more = claim_all(w);
		if (more < 0)
			return -1;
		if (more)
			return 0; /* the next turn goes on from the cursor */
		st.claim = false;
		st.pending = true;
	}
	/* this consumer's pending entries first (waiting for the results worker, or claimed), so
	 * that entries are always counted in stream order, until none is left; then new ones */
	redisReply *r = NULL;
	const redisReply *list = NULL;
	if (st.pending) {
		r = read_group(w, true);
		list = rds_xread_entries(r);
		if (r && (!list || !list->elements)) {
			freeReplyObject(r);
			r = NULL;
			st.pending = false;
		}
	}
	if (!st.pending) {
		r = read_group(w, false);
		list = rds_xread_entries(r);
	}
	if (!r) {
		st.pending = true;
		return -1;
	}
	int rc = list && list->elements ? process(w, list) : 0;
	freeReplyObject(r);
	if (rc < 0)
		st.pending = true;
	return rc;
}

static void report(void)
{
	uint64_t now = util_now_ns();
	if (st.batches) {
		double secs = (double)(now - st.since_ns) / 1e9;
		log_info("event=progress entries=%" PRIu64 " applied=%" PRIu64 " per_s=%.0f batches=%" PRIu64
		         " waits=%" PRIu64 " lag_avg_ms=%.1f lag_max_ms=%.1f",
		         st.entries, st.applied, secs > 0 ? (double)st.entries / secs : 0.0, st.batches, st.waits,
		         st.lag_n ? (double)st.lag_sum_us / (double)st.lag_n / 1e3 : 0.0, (double)st.lag_max_us / 1e3);
	}
	st.entries = st.applied = st.batches = st.waits = st.lag_n = 0;
	st.lag_sum_us = st.lag_max_us = 0;
	st.since_ns = now;
}

/* Folds the number counters' deltas (schema: stats_number_fold). */
static void fold(struct worker_ctx *w)
{
	PGresult *r = exec(w, "fold", "SELECT stats_number_fold()", 0, NULL);
	if (r && PQntuples(r) == 1)
		metrics_count("stats_number_deltas_folded", strtoull(PQgetvalue(r, 0, 0), NULL, 10));
	PQclear(r);
}

static void prune(struct worker_ctx *w)
{
	PGresult *r = exec(w, "prune", "SELECT stats_prune()", 0, NULL);
	if (r && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "0"))
		log_debug("event=pruned rows=%s", PQgetvalue(r, 0, 0));
	PQclear(r);
}

static void stats_tick(struct worker_ctx *w)
{
	prepare(w);
	if (!st.holder)
		return;
	st.ticks++;
	if (st.ticks % FOLD_EVERY_TICKS == 0)
		fold(w);
	if (st.ticks % PRUNE_EVERY_TICKS == 1)
		prune(w);
	if (st.ticks % GC_EVERY_TICKS == 0)
		(void)worker_consumers_gc(w, STREAM_RESULTS, GROUP, WORKER_CONSUMER_GC_IDLE_MS);
	if (st.ticks % REPORT_EVERY_TICKS == 0)
		report();
	if (st.ticks % CHECK_EVERY_TICKS == 0)
		st.check_rebuild = true; /* `dialerctl stats-rebuild`, seen even when no result arrives */
}

static void stats_stop(struct worker_ctx *w)
{
	UNUSED(w);
	report();
}

int main(void)
{
	/* no .stream: the group is this worker's own business (created by rebuild, at the entry the
	 * rollups already hold), not the skeleton's */
	static const struct worker_def def = {
	    .type = "stats",
	    .needs_db = true,
	    .tick = stats_tick,
	    .run = stats_run,
	    .stop = stats_stop,
	};
	st.since_ns = util_now_ns();
	return worker_main(&def);
}
