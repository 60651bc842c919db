/*
 * Jobs: files under DATA_DIR, blocking creation (CLI), and the job worker's loop — claim under
 * an advisory lock, throttled progress, fenced completion, the dead-worker sweep. See jobs.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "events.h"
#include "jobs.h"
#include "rds.h"
#include "util.h"

/* The lock key of job $1, as SQL: (JOBS_LOCK_CLASS, id folded into an int4). */
#define SQL_INT_(n) #n
#define SQL_INT(n)  SQL_INT_(n)
#define LOCK_KEY(p) SQL_INT(JOBS_LOCK_CLASS) ", (" p "::bigint % 2147483648)::integer"

#define PROGRESS_EVERY_NS   500000000ULL /* job_progress writes at most this often */
#define SWEEP_EVERY_NS      2000000000ULL
#define EXPIRE_EVERY_NS     60000000000ULL
#define AUTOCLAIM_EVERY_NS  10000000000ULL
#define AUTOCLAIM_IDLE_MS   "60000"
#define REENQUEUE_AFTER_SQL "interval '5 minutes'"

static const char *const kind_names[] = {"import", "export", "bulk"};
static const char *const kind_streams[] = {STREAM_JOBS_IMPORT, STREAM_JOBS_EXPORT, STREAM_JOBS_BULK};

const char *jobs_kind_name(enum job_kind kind)
{
	return kind_names[kind];
}

int jobs_kind_parse(const char *s, enum job_kind *out)
{
	for (size_t i = 0; s && i < ARRAY_LEN(kind_names); i++)
		if (!strcmp(s, kind_names[i])) {
			*out = (enum job_kind)i;
			return 0;
		}
	return -1;
}

const char *jobs_stream(enum job_kind kind)
{
	return kind_streams[kind];
}

/* ------------------------------------------------------------------- files */

int jobs_path(char *out, size_t outlen, const char *rel)
{
	if (!rel || !*rel || rel[0] == '/' || strstr(rel, ".."))
		return -1;
	int n = snprintf(out, outlen, "%s/%s", cfg.data_dir, rel);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* mkdir -p for DATA_DIR/dir (mode 0700). */
static int make_dirs(const char *path)
{
	char tmp[4096];
	int n = snprintf(tmp, sizeof(tmp), "%s", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(tmp, 0700) && errno != EEXIST ? -1 : 0;
}

int jobs_file_create(const char *dir, const char *ext, char *rel, size_t rellen)
{
	char path[4096], dirpath[4096], rnd[33];
	if (util_random_hex(rnd, 16)) {
		errno = EIO;
		return -1;
	}
	int n = snprintf(rel, rellen, "%s/%s%s", dir, rnd, ext ? ext : "");
	if (n < 0 || (size_t)n >= rellen || jobs_path(path, sizeof(path), rel) ||
	    jobs_path(dirpath, sizeof(dirpath), dir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (make_dirs(dirpath))
		return -1;
	return open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

void jobs_file_remove(const char *rel)
{
	char path[4096];
	if (!rel || !*rel)
		return;
	if (jobs_path(path, sizeof(path), rel)) {
		log_warn("event=job_file_remove_refused path=\"%s\"", rel);
		return;
	}
	if (unlink(path) && errno != ENOENT)
		log_warn("event=job_file_remove_failed path=\"%s\" error=\"%s\"", rel, strerror(errno));
}

/* --------------------------------------------------------- blocking helpers */

int jobs_enqueue(redisContext *redis, enum job_kind kind, long long id)
{
	char ids[24];
	snprintf(ids, sizeof(ids), "%lld", id);
	const char *argv[] = {"XADD", jobs_stream(kind), "MAXLEN", "~", JOBS_STREAM_LEN, "*", "job_id", ids};
	redisReply *r = redisCommandArgv(redis, (int)ARRAY_LEN(argv), argv, NULL);
	int rc = r && r->type == REDIS_REPLY_STRING ? 0 : -1;
	if (rc)
		log_warn("event=job_enqueue_failed job_id=%lld error=\"%s\"", id,
		         r && r->type == REDIS_REPLY_ERROR ? r->str : redis->errstr);
	freeReplyObject(r);
	return rc;
}

int jobs_create(PGconn *db, redisContext *redis, enum job_kind kind, long company_id, json_t *params,
                const char *file_path, const char *file_name, const char *content_type, long created_by, long long *id)
{
	char cid[24], uid[24], ids[24];
	char *ptext = params ? json_dumps(params, JSON_COMPACT) : NULL;
	snprintf(cid, sizeof(cid), "%ld", company_id);
	snprintf(uid, sizeof(uid), "%ld", created_by);
	const char *p[7] = {jobs_kind_name(kind), company_id ? cid : NULL, ptext, file_path, file_name,
	                    content_type,         created_by ? uid : NULL};
	PGresult *res = db_exec(db, JOBS_INSERT_SQL, 7, p);
	free(ptext);
	if (!res) {
		jobs_file_remove(file_path);
		return -1;
	}
	*id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (jobs_enqueue(redis, kind, *id) == 0)
		return 0;
	snprintf(ids, sizeof(ids), "%lld", *id);
	const char *q[1] = {ids};
	res = db_exec(db, JOBS_ENQUEUE_FAILED_SQL, 1, q);
	if (res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		jobs_file_remove(PQgetvalue(res, 0, 0));
	PQclear(res);
	return -1;
}

json_t *jobs_get(PGconn *db, long long id)
{
	char ids[24];
	snprintf(ids, sizeof(ids), "%lld", id);
	const char *p[1] = {ids};
	PGresult *res = db_exec(db, "SELECT " JOBS_JSON_SQL " FROM jobs j WHERE j.id = $1", 1, p);
	json_t *out = NULL;
	if (res && PQntuples(res) == 1)
		out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	PQclear(res);
	return out;
}

/* ----------------------------------------------------------- worker side */

/* The control connection: claims, progress, completion and sweeps, never inside the
 * callback's transaction; it holds the advisory lock of the job being run. */
static PGconn *ctl;
static uint64_t last_sweep_ns, last_expire_ns, last_autoclaim_ns;

static PGconn *ctl_db(void)
{
	if (ctl && PQstatus(ctl) != CONNECTION_OK) {
		PQfinish(ctl);
		ctl = NULL;
	}
	if (!ctl) {
		ctl = db_connect(cfg.database_url, NULL);
		if (ctl)
			PQclear(db_exec(ctl, "SET statement_timeout = '30s'; SET lock_timeout = '10s'", 0, NULL));
	}
	return ctl;
}

void jobs_worker_stop(struct worker_ctx *w)
{
	UNUSED(w);
	if (ctl)
		PQfinish(ctl);
	ctl = NULL;
}

static void ids_of(const struct job_ctx *j, char ids[24])
{
	snprintf(ids, 24, "%lld", j->id);
}

int job_progress(struct job_ctx *j, long long done, long long total)
{
	uint64_t now = util_now_ns();
	if (j->lost)
		return -1;
	if (j->progress_ns && now - j->progress_ns < PROGRESS_EVERY_NS && !(done == total && j->progress_done != done))
		return 0;
	char ids[24], dones[24], totals[24];
	ids_of(j, ids);
	snprintf(dones, sizeof(dones), "%lld", done < 0 ? 0 : done);
	snprintf(totals, sizeof(totals), "%lld", total);
	const char *p[4] = {ids, dones, total < 0 ? NULL : totals, j->w->consumer};
	PGconn *db = ctl_db();
	PGresult *res = db ? db_exec(db,
	                             "UPDATE jobs SET done = $2, total = $3, heartbeat_at = now() "
	                             "WHERE id = $1 AND state = 'running' AND worker = $4",
	                             4, p)
	                   : NULL;
	int rc = res && !strcmp(PQcmdTuples(res), "1") ? 0 : -1;
	if (rc) {
		j->lost = true;
		log_warn("event=job_lost job_id=%lld reason=\"%s\"", j->id,
		         res ? "taken over by another worker" : "control connection failed");
	}
	PQclear(res);
	j->progress_ns = now;
	j->progress_done = done;
	j->progress_total = total;
	if (rc == 0 && j->kind == JOB_IMPORT) /* at most as often as the row is written (500 ms) */
		events_emit_new(j->w->redis, EVENTS_IMPORT_PROGRESS, j->company_id,
		                json_pack("{s:I, s:s, s:I, s:o, s:o}", "job_id", (json_int_t)j->id, "kind", "import",
		                          "done", (json_int_t)(done < 0 ? 0 : done), "total",
		                          total < 0 ? json_null() : json_integer((json_int_t)total), "percent",
		                          total > 0
		                              ? json_real((double)(done > total ? total : done) * 100.0 / (double)total)
		                              : json_null()));
	return rc;
}

int job_complete(struct job_ctx *j, PGconn *conn, json_t *result, const char *out_path, const char *out_name,
                 const char *content_type, int ttl_hours)
{
	char ids[24], ttl[24];
	char *rtext = result ? json_dumps(result, JSON_COMPACT) : NULL;
	ids_of(j, ids);
	snprintf(ttl, sizeof(ttl), "%d", ttl_hours);
	const char *p[7] = {ids, j->w->consumer, rtext, out_path, out_name, content_type, ttl_hours > 0 ? ttl : NULL};
	PGconn *db = conn ? conn : ctl_db();
	/* done = total, so that the last progress reads as whole */
	PGresult *res =
	    db ? db_exec(db,
	                 "UPDATE jobs SET state = 'completed', result = $3::jsonb, file_path = $4, "
	                 "file_name = COALESCE($5, file_name), content_type = $6, finished_at = clock_timestamp(), "
	                 "heartbeat_at = now(), done = COALESCE(total, done), error = NULL, expires_at = "
	                 "now() + make_interval(hours => $7::integer) "
	                 "WHERE id = $1 AND state = 'running' AND worker = $2",
	                 7, p)
	       : NULL;
	free(rtext);
	if (!res)
		return -1;
	int rc = strcmp(PQcmdTuples(res), "1") ? 1 : 0;
	PQclear(res);
	if (rc)
		j->lost = true;
	else
		j->final = true;
	return rc;
}

int job_fail(struct job_ctx *j, const char *fmt, ...)
{
	char msg[JOBS_ERROR_MAX + 1], ids[24];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one line, fit for the wire's detail and a key="value" log: the message may quote a
	 * database error (multi-line) or bytes of the file */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
		else if (*p == '"')
			*p = '\'';
	/* never cut a UTF-8 sequence in two: the column is text */
	size_t n = strlen(msg);
	while (n > 0 && (!util_utf8_valid(msg, n) || msg[n - 1] == ' '))
		msg[--n] = '\0';
	ids_of(j, ids);
	const char *p[3] = {ids, j->w->consumer, msg};
	PGconn *db = ctl_db();
	PGresult *res =
	    db ? db_exec(db,
	                 "UPDATE jobs j SET state = 'failed', error = $3, finished_at = clock_timestamp(), file_path = "
	                 "NULL FROM (SELECT id, file_path FROM jobs WHERE id = $1 FOR UPDATE) old "
	                 "WHERE j.id = old.id AND j.state = 'running' AND j.worker = $2 "
	                 "RETURNING old.file_path",
	                 3, p)
	       : NULL;
	if (!res)
		return -1;
	int rc = PQntuples(res) == 1 ? 0 : 1;
	if (rc == 0) {
		if (!PQgetisnull(res, 0, 0))
			jobs_file_remove(PQgetvalue(res, 0, 0));
		j->final = true;
		log_info("event=job_failed job_id=%lld kind=%s error=\"%s\"", j->id, jobs_kind_name(j->kind), msg);
	} else {
		j->lost = true;
	}
	PQclear(res);
	return rc;
}

/* The entries of an XREADGROUP reply (streams → [name, entries]) or an XAUTOCLAIM one
 * ([next, entries, deleted]): the entries array, or NULL. */
static redisReply *entries_of(redisReply *r, bool autoclaim)
{
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return NULL;
	if (autoclaim)
		return r->elements >= 2 && r->element[1]->type == REDIS_REPLY_ARRAY ? r->element[1] : NULL;
	if (r->elements < 1 || r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements < 2)
		return NULL;
	redisReply *e = r->element[0]->element[1];
	return e->type == REDIS_REPLY_ARRAY ? e : NULL;
}

static int ack(struct worker_ctx *w, enum job_kind kind, const char *entry_id)
{
	redisReply *r = redisCommand(w->redis, "XACK %s %s %s", jobs_stream(kind), jobs_kind_name(kind), entry_id);
	int rc = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
	if (rc)
		log_warn("event=job_ack_failed entry=%s", entry_id);
	freeReplyObject(r);
	return rc;
}

static void unlock(PGconn *db, const char *ids)
{
	const char *p[1] = {ids};
	PQclear(db_exec(db, "SELECT pg_advisory_unlock(" LOCK_KEY("$1") ")", 1, p));
}

/*
 * The event of a finished job (committed by now): import.completed / export.completed with the
 * job's wire shape (its state "completed" or "failed", result, error, download_url), or, for a
 * bulk job, number.updated with its action and result. One read of the row, once per job.
 */
static void emit_finished(struct worker_ctx *w, const struct job_ctx *j)
{
	PGconn *db = ctl_db();
	json_t *job = db ? jobs_get(db, j->id) : NULL;
	if (!job) {
		log_warn("event=event_emit_failed job_id=%lld reason=\"cannot read the job\"", j->id);
		return;
	}
	switch (j->kind) {
	case JOB_IMPORT:
		events_emit_new(w->redis, EVENTS_IMPORT_COMPLETED, j->company_id, job);
		break;
	case JOB_EXPORT:
		events_emit_new(w->redis, EVENTS_EXPORT_COMPLETED, j->company_id, job);
		break;
	case JOB_BULK: {
		json_t *result = json_object_get(job, "result");
		const char *state = json_string_value(json_object_get(job, "status"));
		if (!state || strcmp(state, "completed")) { /* a failed bulk changed nothing */
			json_decref(job);
			break;
		}
		json_t *d = json_pack("{s:s?, s:n, s:O?, s:b, s:I, s:O}", "action",
		                      json_string_value(json_object_get(j->params, "action")), "number_id", "status",
		                      json_object_get(j->params, "status"), "bulk", 1, "job_id", (json_int_t)j->id,
		                      "result", result ? result : json_null());
		json_decref(job);
		events_emit_new(w->redis, EVENTS_NUMBER_UPDATED, j->company_id, d);
		break;
	}
	}
}

/*
 * Claims job ids (lock, then queued → running) and runs it. Returns 0 when the entry may be
 * acknowledged (the job is final, someone else's, or not claimable), -1 when not (a database
 * failure: the entry stays pending and the sweep or XAUTOCLAIM brings the job back).
 */
static int claim_and_run(struct worker_ctx *w, const struct job_runner *r, const char *ids)
{
	PGconn *db = ctl_db();
	PGresult *res = NULL;
	const char *p[3] = {ids, w->consumer, jobs_kind_name(r->kind)};
	int rc = -1;
	bool locked = false;
	struct job_ctx j = {.w = w, .kind = r->kind};
	char idbuf[24];

	if (!db)
		return -1;
	res = db_exec(db, "SELECT pg_try_advisory_lock(" LOCK_KEY("$1") ")", 1, p);
	if (!res)
		goto out;
	locked = !strcmp(PQgetvalue(res, 0, 0), "t");
	PQclear(res);
	res = NULL;
	if (!locked) { /* a live worker runs it: this entry is a duplicate */
		log_debug("event=job_skip job_id=%s reason=locked", ids);
		rc = 0;
		goto out;
	}
	res = db_exec(db,
	              "UPDATE jobs SET state = 'running', worker = $2, attempts = attempts + 1, started_at = now(), "
	              "heartbeat_at = now(), done = 0, error = NULL "
	              "WHERE id = $1 AND state = 'queued' AND kind = $3 "
	              "RETURNING COALESCE(company_id, 0), COALESCE(created_by, 0), params, file_path, file_name, "
	              "attempts",
	              3, p);
	if (!res)
		goto out;
	if (PQntuples(res) != 1) { /* finished, failed, or not this kind: nothing to do */
		log_debug("event=job_skip job_id=%s reason=not_queued", ids);
		rc = 0;
		goto out;
	}
	j.id = strtoll(ids, NULL, 10);
	j.company_id = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	j.created_by = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	j.params = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
	if (!j.params)
		j.params = json_object();
	j.file_path = PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3);
	j.file_name = PQgetisnull(res, 0, 4) ? NULL : PQgetvalue(res, 0, 4);
	j.attempt = (int)strtol(PQgetvalue(res, 0, 5), NULL, 10);
	snprintf(idbuf, sizeof(idbuf), "job-%lld", j.id);
	log_set_ctx(idbuf);
	log_info("event=job_started job_id=%lld kind=%s attempt=%d", j.id, jobs_kind_name(j.kind), j.attempt);

	uint64_t t0 = util_now_ns();
	int run_rc = r->run(&j);
	if (!j.final && !j.lost) {
		if (run_rc == 0)
			log_error("event=job_not_completed job_id=%lld error=\"run returned 0 without job_complete\"",
			          j.id);
		if (job_fail(&j, "%s", j.err[0] ? j.err : "internal error") < 0)
			goto out; /* the database is away: the sweep hands the job back */
	}
	log_info("event=job_ended job_id=%lld kind=%s status=%s ms=%.1f", j.id, jobs_kind_name(j.kind),
	         j.lost                     ? "lost"
	         : run_rc == 0 && !j.err[0] ? "completed"
	                                    : "failed",
	         (double)(util_now_ns() - t0) / 1e6);
	if (!j.lost)
		emit_finished(w, &j);
	rc = 0;
out:
	log_set_ctx(NULL);
	json_decref(j.params);
	PQclear(res);
	if (locked && ctl && PQstatus(ctl) == CONNECTION_OK)
		unlock(ctl, ids);
	return rc;
}

/* Handles the entries of one read; returns -1 when one could not be settled. */
static int handle_entries(struct worker_ctx *w, const struct job_runner *r, redisReply *entries)
{
	int rc = 0;
	for (size_t i = 0; entries && i < entries->elements; i++) {
		redisReply *e = entries->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		const char *entry_id = e->element[0]->str;
		const redisReply *job = rds_entry_field(e->element[1], "job_id");
		const char *ids = job ? job->str : NULL;
		long long id = 0;
		char *end = NULL;
		if (ids)
			id = strtoll(ids, &end, 10);
		if (!ids || id <= 0 || *end) {
			log_warn("event=job_entry_malformed entry=%s", entry_id);
			ack(w, r->kind, entry_id);
			continue;
		}
		if (claim_and_run(w, r, ids) == 0)
			ack(w, r->kind, entry_id);
		else
			rc = -1;
	}
	return rc;
}

int jobs_worker_run(struct worker_ctx *w, const struct job_runner *r)
{
	const char *stream = jobs_stream(r->kind), *group = jobs_kind_name(r->kind);
	uint64_t now = util_now_ns();
	redisReply *rep;
	int rc = 0;

	if (now - last_autoclaim_ns >= AUTOCLAIM_EVERY_NS) {
		last_autoclaim_ns = now;
		rep = redisCommand(w->redis, "XAUTOCLAIM %s %s %s " AUTOCLAIM_IDLE_MS " 0-0 COUNT 10", stream, group,
		                   w->consumer);
		if (!rep)
			return -1;
		redisReply *entries = entries_of(rep, true);
		if (entries && entries->elements)
			log_info("event=jobs_reclaimed count=%zu", entries->elements);
		rc = handle_entries(w, r, entries);
		freeReplyObject(rep);
		if (rc)
			return rc;
	}
	rep =
	    redisCommand(w->redis, "XREADGROUP GROUP %s %s COUNT 1 BLOCK 100 STREAMS %s >", group, w->consumer, stream);
	if (!rep)
		return -1;
	if (rep->type == REDIS_REPLY_ERROR) {
		log_warn("event=job_read_failed error=\"%s\"", rep->str);
		freeReplyObject(rep);
		return -1;
	}
	rc = handle_entries(w, r, entries_of(rep, false));
	freeReplyObject(rep);
	return rc;
}

/* Hands back the kind's running jobs whose worker is gone: nobody holds their lock (its session
 * ended), or no heartbeat for JOBS_HUNG_SECONDS. Those with attempts left go back to queued and
 * are enqueued again; the others fail, and their file is deleted. */
static void sweep_dead(struct worker_ctx *w, PGconn *db, const struct job_runner *r)
{
	char maxs[16], hung[16];
	snprintf(maxs, sizeof(maxs), "%d", JOBS_MAX_ATTEMPTS);
	snprintf(hung, sizeof(hung), "%d", JOBS_HUNG_SECONDS);
	const char *p[3] = {jobs_kind_name(r->kind), maxs, hung};
	/* candidates first (MATERIALIZED): the lock is tried only on running rows that have not
	 * just beaten; a transaction-level lock is released at this statement's end */
	PGresult *res = db_exec(
	    db,
	    "WITH cand AS MATERIALIZED (SELECT id FROM jobs WHERE kind = $1 AND state = 'running' "
	    "AND heartbeat_at < now() - interval '2 seconds'), "
	    "old AS (SELECT j.id, j.file_path, j.worker FROM jobs j JOIN cand USING (id) WHERE j.state = 'running' "
	    "AND (pg_try_advisory_xact_lock(" LOCK_KEY(
	        "j.id") ") OR j.heartbeat_at < now() - make_interval(secs => "
	                "$3::integer)) FOR UPDATE OF j SKIP LOCKED) "
	                "UPDATE jobs j SET state = CASE WHEN j.attempts >= $2::integer THEN 'failed' ELSE 'queued' "
	                "END, "
	                "error = CASE WHEN j.attempts >= $2::integer THEN format('the worker running this job stopped "
	                "%s times "
	                "(last: %s); giving up', j.attempts, old.worker) END, "
	                "finished_at = CASE WHEN j.attempts >= $2::integer THEN now() END, "
	                "file_path = CASE WHEN j.attempts >= $2::integer THEN NULL ELSE j.file_path END, "
	                "worker = NULL, heartbeat_at = NULL, done = 0, enqueued_at = now() "
	                "FROM old WHERE j.id = old.id RETURNING j.id, j.state, old.file_path, old.worker",
	    3, p);
	for (int i = 0; res && i < PQntuples(res); i++) {
		long long id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		bool failed = !strcmp(PQgetvalue(res, i, 1), "failed");
		log_warn("event=job_worker_dead job_id=%lld worker=%s action=%s", id, PQgetvalue(res, i, 3),
		         failed ? "failed" : "requeued");
		if (failed) {
			if (!PQgetisnull(res, i, 2))
				jobs_file_remove(PQgetvalue(res, i, 2));
		} else if (jobs_enqueue(w->redis, r->kind, id)) {
			/* stays queued; the re-enqueue below retries in 5 minutes */
		}
	}
	PQclear(res);

	/* queued jobs whose wake-up was lost (the API died between INSERT and XADD, a trimmed
	 * stream): enqueue again; a duplicate entry is harmless (the claim is conditional) */
	res = db_exec(db,
	              "UPDATE jobs SET enqueued_at = now() WHERE id IN (SELECT id FROM jobs WHERE kind = $1 AND "
	              "state = 'queued' AND enqueued_at < now() - " REENQUEUE_AFTER_SQL
	              " ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED) RETURNING id",
	              1, p);
	for (int i = 0; res && i < PQntuples(res); i++) {
		long long id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		log_warn("event=job_reenqueued job_id=%lld", id);
		if (jobs_enqueue(w->redis, r->kind, id))
			break;
	}
	PQclear(res);
}

/* Deletes output files past their life (bounded per pass). */
static void expire_files(PGconn *db, const struct job_runner *r)
{
	const char *p[1] = {jobs_kind_name(r->kind)};
	PGresult *res = db_exec(db,
	                        "WITH x AS (SELECT id, file_path FROM jobs WHERE kind = $1 AND file_path IS NOT NULL "
	                        "AND expires_at < now() ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED) "
	                        "UPDATE jobs j SET file_path = NULL FROM x WHERE j.id = x.id RETURNING x.file_path",
	                        1, p);
	for (int i = 0; res && i < PQntuples(res); i++)
		jobs_file_remove(PQgetvalue(res, i, 0));
	if (res && PQntuples(res))
		log_info("event=job_files_expired count=%d", PQntuples(res));
	PQclear(res);
}

void jobs_worker_tick(struct worker_ctx *w, const struct job_runner *r)
{
	uint64_t now = util_now_ns();
	PGconn *db;
	if (now - last_sweep_ns < SWEEP_EVERY_NS)
		return;
	last_sweep_ns = now;
	db = ctl_db();
	if (!db)
		return;
	sweep_dead(w, db, r);
	if (now - last_expire_ns >= EXPIRE_EVERY_NS) {
		last_expire_ns = now;
		expire_files(db, r);
	}
}

static const struct job_runner *main_runner;

static int main_run(struct worker_ctx *w)
{
	return jobs_worker_run(w, main_runner);
}

static void main_tick(struct worker_ctx *w)
{
	jobs_worker_tick(w, main_runner);
}

int jobs_worker_main(const struct job_runner *r)
{
	main_runner = r;
	const struct worker_def def = {
	    .type = jobs_kind_name(r->kind),
	    .stream = jobs_stream(r->kind),
	    .group = jobs_kind_name(r->kind),
	    .group_start = "0",
	    .needs_db = true,
	    .tick = main_tick,
	    .run = main_run,
	    .stop = jobs_worker_stop,
	};
	return worker_main(&def);
}
