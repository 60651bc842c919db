/*
 * The leader's per-second pass: every active company's call-allowed decision
 * into Redis for next-batch, with one statement for the database and one
 * pipelined round trip for Redis, whatever the number of companies.
 *
 * Why a compare-and-set and not a plain SET: whoever changes a decision's
 * inputs (schedule or billing PUT, a report's call_allowed) commits, then
 * deletes the key, then answers; a next-batch that starts after that answer
 * must not see the old decision. A plain SET from a pass whose read began
 * before that commit, landing after the delete, would bring the old decision
 * back for a second. So each key is written only when it still holds what
 * this process wrote there on its previous pass (that write came before this
 * pass's read, so no delete slipped between the read and this write);
 * otherwise a marker goes there, which readers take as "unknown" (they decide
 * from the database), and the decision follows on the next pass, which the
 * caller runs at once (its read starts after the marker's write). Cost: a
 * second pass in the tick after a change, and readers fall back to the
 * database for those few milliseconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callstate.h"
#include "config.h"
#include "db.h"
#include "events.h"
#include "hopper.h"
#include "metrics.h"
#include "scheduler.h"
#include "tz.h"
#include "util.h"

/* KEYS[1] the company's key; ARGV[1] what this process wrote there last ("" when
 * nothing), ARGV[2] the decision, ARGV[3] the marker, ARGV[4] the TTL (ms).
 * 1: the decision was written; 0: the marker was. */
static const char PUBLISH_LUA[] = "local cur = redis.call('GET', KEYS[1]) "
                                  "if cur and ARGV[1] ~= '' and cur == ARGV[1] then "
                                  "  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4]) return 1 end "
                                  "redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4]) return 0";

/* What this process last wrote to one company's key, and the reason it published. */
struct written {
	long company_id;
	char *value; /* owned */
	int reason;  /* enum callrule_reason last published, -1 when none yet */
};

/* One company of a pass. */
struct company {
	long id;
	struct callstate cs;
	bool ok;      /* cs is filled and may be published */
	char *value;  /* decision JSON (owned) */
	char *marker; /* owned */
	int reason;
};

static struct {
	struct written *w; /* sorted by company_id */
	size_t n;
	char sha[48];           /* PUBLISH_LUA's SHA1 once loaded */
	unsigned epoch;         /* the connection (worker_ctx.epoch) it was loaded on; 0: not loaded */
	unsigned long long seq; /* pass number, for unique markers */
	bool tz_ready;
} st;

/* A company's published decision changed: its dialer.state event (the published JSON, plus the
 * reason before, null when this leader had not published one: a new leader announces every
 * company once). */
static void sched_state_event(struct events_batch *b, long company_id, const char *value, int was)
{
	json_t *d = json_loads(value, 0, NULL);
	if (!json_is_object(d)) {
		json_decref(d);
		return;
	}
	json_object_set_new(d, "previous_reason",
	                    was < 0   ? json_null()
	                    : was > 0 ? json_string(callrule_reason_str((enum callrule_reason)was))
	                              : json_string("allowed"));
	events_batch_add_new(b, EVENTS_DIALER_STATE, company_id, d);
}

static void written_free(struct written *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(w[i].value);
	free(w);
}

void sched_publish_reset(void)
{
	written_free(st.w, st.n);
	st.w = NULL;
	st.n = 0;
	st.sha[0] = '\0';
	st.epoch = 0;
}

static const struct written *written_find(long id)
{
	size_t lo = 0, hi = st.n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (st.w[mid].company_id == id)
			return &st.w[mid];
		if (st.w[mid].company_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int load_script(struct worker_ctx *w)
{
	redisContext *ctx = w->redis;
	redisReply *r = redisCommand(ctx, "SCRIPT LOAD %s", PUBLISH_LUA);
	int rc = -1;
	if (r && r->type == REDIS_REPLY_STRING && r->len < sizeof(st.sha)) {
		memcpy(st.sha, r->str, r->len);
		st.sha[r->len] = '\0';
		st.epoch = w->epoch;
		rc = 0;
	} else {
		log_warn("event=script_load_failed error=\"%s\"",
		         r && r->type == REDIS_REPLY_ERROR ? r->str : ctx->errstr);
	}
	freeReplyObject(r);
	return rc;
}

/* Reads the pass's companies from res. Row 0 owns the holidays; the other rows
 * borrow them (cleared again before callstate_free). */
static struct company *read_companies(const PGresult *res, size_t *out_n)
{
	size_t n = (size_t)PQntuples(res);
	struct company *c = xcalloc(n ? n : 1, sizeof(*c));
	int col_id = PQfnumber(res, "company_id");

	for (size_t i = 0; i < n; i++) {
		c[i].id = strtol(PQgetvalue(res, (int)i, col_id), NULL, 10);
		c[i].reason = -1;
		if (callstate_from_result(res, (int)i, &c[i].cs)) {
			log_error("event=callstate_unreadable company_id=%ld", c[i].id);
			if (i == 0)
				break; /* without the holidays nobody can be decided */
			continue;
		}
		c[i].ok = true;
		if (i > 0) {
			c[i].cs.holidays = c[0].cs.holidays;
			c[i].cs.titles = c[0].cs.titles;
			c[i].cs.ntitles = c[0].cs.ntitles;
		}
	}
	*out_n = n;
	return c;
}

static void companies_free(struct company *c, size_t n)
{
	/* borrowers first: row 0 owns the holidays */
	for (size_t i = n; i-- > 0;) {
		if (i > 0) {
			memset(&c[i].cs.holidays, 0, sizeof(c[i].cs.holidays));
			c[i].cs.titles = NULL;
			c[i].cs.ntitles = 0;
		}
		callstate_free(&c[i].cs);
		free(c[i].value);
		free(c[i].marker);
	}
	free(c);
}

int sched_publish(struct worker_ctx *w)
{
	uint64_t t0 = util_now_ns();
	const char *p[1] = {cfg.skip_holidays ? "true" : "false"};
	PGresult *res = NULL;
	struct company *c = NULL;
	struct written *next = NULL;
	size_t n = 0, nnext = 0, sent = 0, published = 0, deferred = 0, nblocked = 0;
	long *blocked = NULL;
	struct events_batch states = {0};
	char key[48], ttl[16];
	int rc = -1;

	if (!st.tz_ready) {
		if (tz_init(cfg.timezone)) {
			log_error("event=timezone_unknown zone=%s", cfg.timezone);
			return -1;
		}
		st.tz_ready = true;
	}
	if (st.epoch != w->epoch) { /* a new connection (a restarted Redis may have lost the script) */
		sched_publish_reset();
		if (load_script(w))
			return -1;
	}
	res = db_exec(w->db, CALLSTATE_ALL_SQL, 1, p);
	if (!res)
		goto out;
	/* an empty wallet is only published here: persisting the auto-disable (COMPAT §3.6 step 1) is
	 * the dialer path's, at its next next-batch, as in the original */
	c = read_companies(res, &n);

	time_t now = time(NULL);
	long long now_ms = (util_wall_us() / 1000);
	st.seq++;
	snprintf(ttl, sizeof(ttl), "%d", CALLSTATE_TTL_MS);
	for (size_t i = 0; i < n; i++) {
		struct callstate_result r;
		const struct written *prev = written_find(c[i].id);
		if (!c[i].ok)
			continue;
		callstate_decide(&c[i].cs, now, cfg.short_retry_seconds, cfg.long_retry_seconds, &r);
		c[i].value = callstate_published_json(&c[i].cs, &r, now_ms);
		c[i].marker = xasprintf("{\"pending\":\"%s:%llu\"}", w->consumer, st.seq);
		c[i].reason = (int)r.decision.reason;
		snprintf(key, sizeof(key), CALLSTATE_KEY_FMT, c[i].id);
		const char *argv[] = {"EVALSHA",  st.sha,      "1", key, prev ? prev->value : "",
		                      c[i].value, c[i].marker, ttl};
		if (redisAppendCommandArgv(w->redis, (int)ARRAY_LEN(argv), argv, NULL) != REDIS_OK)
			goto out;
		sent++;
	}

	/* The replies, in company order; what each key now holds becomes the next
	 * pass's expectation. Companies not sent this pass keep their old one. */
	next = xcalloc(n ? n : 1, sizeof(*next));
	for (size_t i = 0; i < n; i++) {
		const struct written *prev = written_find(c[i].id);
		redisReply *r = NULL;
		if (!c[i].ok) {
			if (prev)
				next[nnext++] = (struct written){c[i].id, xstrdup(prev->value), prev->reason};
			continue;
		}
		if (redisGetReply(w->redis, (void **)&r) != REDIS_OK || !r) {
			log_warn("event=callstate_publish_failed error=\"%s\"", w->redis->errstr);
			sent = 0;
			goto out;
		}
		sent--;
		if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
			int was = prev ? prev->reason : -1;
			if (was != c[i].reason && c[i].reason) {
				blocked = xrealloc(blocked, (nblocked + 1) * sizeof(*blocked));
				blocked[nblocked++] = c[i].id;
			}
			if (was != c[i].reason) {
				log_info("event=callstate_changed company_id=%ld reason=%s version=%ld", c[i].id,
				         c[i].reason ? callrule_reason_str((enum callrule_reason)c[i].reason)
				                     : "allowed",
				         c[i].cs.version);
				sched_state_event(&states, c[i].id, c[i].value, was);
			}
			next[nnext++] = (struct written){c[i].id, c[i].value, c[i].reason};
			c[i].value = NULL;
			published++;
		} else if (r->type == REDIS_REPLY_INTEGER) {
			next[nnext++] = (struct written){c[i].id, c[i].marker, prev ? prev->reason : -1};
			c[i].marker = NULL;
			deferred++;
		} else {
			/* NOSCRIPT after a Redis restart, or anything else: load again next pass */
			log_warn("event=callstate_publish_failed company_id=%ld error=\"%s\"", c[i].id,
			         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			st.epoch = 0;
		}
		freeReplyObject(r);
	}
	written_free(st.w, st.n);
	st.w = next;
	st.n = nnext;
	next = NULL;
	if (!st.epoch)
		sched_publish_reset();
	rc = (int)deferred;
	/* a company just blocked hands its hopper's candidates back (to other companies, and so
	 * that they are read afresh when it opens again) */
	for (size_t i = 0; i < nblocked; i++)
		if (hopper_flush_sync(w->redis, blocked[i]))
			break;
	events_batch_send(w->redis, &states); /* dialer.state of the companies that changed: one round trip */

	uint64_t us = (util_now_ns() - t0) / 1000;
	metrics_count("scheduler_publish_passes", 1);
	metrics_count("scheduler_publish_us", us);
	metrics_count("scheduler_callstate_published", published);
	metrics_count("scheduler_callstate_deferred", deferred);
	log_debug("event=callstate_pass companies=%zu published=%zu deferred=%zu us=%llu", n, published, deferred,
	          (unsigned long long)us);
out:
	if (rc < 0) {
		metrics_count("scheduler_publish_failed", 1);
		/* replies still owed would desynchronize the connection: drop it */
		if (sent && w->redis && !w->redis->err) {
			for (; sent > 0; sent--) {
				redisReply *r = NULL;
				if (redisGetReply(w->redis, (void **)&r) != REDIS_OK)
					break;
				freeReplyObject(r);
			}
		}
		sched_publish_reset();
	}
	free(blocked);
	events_batch_free(&states);
	if (next)
		written_free(next, nnext);
	if (c)
		companies_free(c, n);
	PQclear(res);
	return rc;
}
