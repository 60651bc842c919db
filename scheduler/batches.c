/*
 * The batches next-batch handed out (HOPPER_BATCHES, appended by the API's pop
 * script) into dialer_batches (COMPAT §3.3 step 6), and their locks mirrored
 * into number_locks (what NumberOut shows, what refills and the lock sweep
 * read in the database; schema 019). One statement per read, entries deleted from
 * the stream after the commit; a batch recorded twice (a crash between the
 * commit and the XDEL) conflicts on its id and is skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "hopper.h"
#include "metrics.h"
#include "rds.h"
#include "scheduler.h"
#include "util.h"

/* The mirror skips a number reported since the batch (its result cleared the
 * lock already), a number deleted meanwhile, and a company deleted meanwhile
 * (its batches are gone). A number in two of the batches read (its lock
 * expired or was released in between) keeps the newer lock: ON CONFLICT may
 * touch a row once per statement. */
static const char RECORD_SQL[] =
    "WITH b AS (SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::bigint[], $6::text[])"
    "  AS t(id, company_id, requested, returned, at_ms, ids)"
    "  WHERE EXISTS (SELECT 1 FROM companies c WHERE c.id = t.company_id)),"
    " ins AS (INSERT INTO dialer_batches (id, company_id, requested_size, returned_size, number_ids, created_at)"
    "  SELECT id, company_id, requested, returned, COALESCE(string_to_array(NULLIF(ids, ''), ',')::bigint[], '{}'),"
    "   'epoch'::timestamptz + at_ms * interval '1 millisecond' FROM b"
    "  ON CONFLICT (id) DO NOTHING RETURNING id, company_id, number_ids, created_at),"
    " m AS (INSERT INTO number_locks (number_id, batch_id, company_id, assigned_at)"
    "  SELECT DISTINCT ON (i.number_id) i.number_id, i.id, i.company_id, i.created_at"
    "  FROM (SELECT id, company_id, created_at, unnest(number_ids) AS number_id FROM ins) i"
    "  JOIN numbers n ON n.id = i.number_id"
    "  WHERE n.last_called_at IS NULL OR n.last_called_at < i.created_at"
    "  ORDER BY i.number_id, i.created_at DESC, i.id DESC"
    "  ON CONFLICT (number_id) DO UPDATE SET batch_id = EXCLUDED.batch_id,"
    "   company_id = EXCLUDED.company_id, assigned_at = EXCLUDED.assigned_at"
    "  RETURNING 1)"
    " SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM m)";

/* Only digits (and commas, for ids): anything else in an entry is not ours. */
static bool digits(const redisReply *v, bool commas)
{
	if (!v)
		return false;
	for (size_t i = 0; i < v->len; i++)
		if (!(v->str[i] >= '0' && v->str[i] <= '9') && !(commas && v->str[i] == ','))
			return false;
	return v->len > 0 || commas;
}

int sched_record_batches(struct worker_ctx *w, int block_ms)
{
	redisReply *r =
	    redisCommand(w->redis, "XREAD COUNT %d BLOCK %d STREAMS %s 0", SCHED_RECORD_MAX, block_ms, HOPPER_BATCHES);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		log_warn("event=batch_record_read_failed error=\"%s\"", r && r->str ? r->str : w->redis->errstr);
		freeReplyObject(r);
		return -1;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 1) { /* nil: nothing within block_ms */
		freeReplyObject(r);
		return 0;
	}
	const redisReply *entries = r->element[0]->element[1];
	struct buf c[6] = {{0}};
	const char **del = xmalloc((entries->elements + 2) * sizeof(*del));
	int ndel = 0, n = 0;
	del[ndel++] = "XDEL";
	del[ndel++] = HOPPER_BATCHES;
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i], *kv = e->element[1];
		const redisReply *id = rds_entry_field(kv, "id"), *co = rds_entry_field(kv, "company"),
		                 *rq = rds_entry_field(kv, "requested"), *rt = rds_entry_field(kv, "returned"),
		                 *at = rds_entry_field(kv, "at"), *ids = rds_entry_field(kv, "ids");
		del[ndel++] = e->element[0]->str;
		if (!id || id->len != 32 || !digits(co, false) || !digits(rq, false) || !digits(rt, false) ||
		    !digits(at, false) || !digits(ids, true)) {
			log_warn("event=batch_record_malformed stream_id=%s", e->element[0]->str);
			continue;
		}
		const redisReply *vals[6] = {id, co, rq, rt, at, ids};
		for (int k = 0; k < 6; k++)
			buf_array_elem(&c[k], vals[k]->str);
		n++;
	}
	int rc = 0;
	if (n > 0) {
		const char *p[6];
		struct buf lit[6] = {{0}};
		for (int k = 0; k < 6; k++) {
			buf_add(&lit[k], "{", 1);
			buf_add(&lit[k], c[k].p, c[k].len);
			buf_add(&lit[k], "}", 1);
			free(c[k].p);
			c[k] = lit[k];
			p[k] = c[k].p;
		}
		PGresult *res = db_exec(w->db, RECORD_SQL, 6, p);
		if (!res) {
			log_warn("event=batch_record_failed count=%d error=\"see the sql_failed line before\"", n);
			rc = -1;
		} else {
			long long recorded = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			long long locked = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
			metrics_count("scheduler_batches_recorded", (uint64_t)recorded);
			metrics_count("scheduler_locks_mirrored", (uint64_t)locked);
			log_debug("event=batches_recorded count=%lld numbers=%lld", recorded, locked);
			PQclear(res);
		}
	}
	if (rc == 0) {
		redisReply *d = redisCommandArgv(w->redis, ndel, del, NULL);
		if (!d || d->type != REDIS_REPLY_INTEGER) /* recorded again next time: the ids conflict */
			log_warn("event=batch_record_xdel_failed error=\"%s\"",
			         d && d->str ? d->str : w->redis->errstr);
		freeReplyObject(d);
		rc = (int)entries->elements;
	}
	for (int k = 0; k < 6; k++)
		free(c[k].p);
	free(del);
	freeReplyObject(r);
	return rc;
}
