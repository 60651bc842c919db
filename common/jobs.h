/*
 * Jobs (imports, exports, bulk actions): what the API, the job workers and the CLI share.
 *
 * The `jobs` row (schema/009_jobs.sql) is the truth; the kind's stream (STREAM_JOBS_<KIND>, one
 * entry `job_id <id>` per enqueue) only wakes a worker. Lifecycle:
 *
 *   queued ──claim──> running ──job_complete──> completed      (result, optional output file)
 *                        │    ──job_fail──────> failed         (error; its file deleted)
 *                        └── worker died ──sweep──> queued again, or failed after
 *                                                   JOBS_MAX_ATTEMPTS claims
 *
 * A running job is owned by the worker whose control connection holds the session advisory
 * lock (JOBS_LOCK_CLASS, id). A dead worker's connection, and so its lock, goes away; every job
 * worker's tick sweeps its kind for running rows whose lock nobody holds (or whose heartbeat is
 * older than JOBS_HUNG_SECONDS) and hands them back. Every write by a worker is fenced on
 * (worker = its consumer name, state = running), so a worker that lost its job changes nothing.
 *
 * Files live under DATA_DIR and the row stores their path relative to it ("uploads/…",
 * "exports/…"), so a row never names a file outside DATA_DIR.
 */
#ifndef DIALER_JOBS_H
#define DIALER_JOBS_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "common.h"
#include "worker.h"

enum job_kind { JOB_IMPORT, JOB_EXPORT, JOB_BULK };

#define JOBS_LOCK_CLASS   74231   /* advisory lock (JOBS_LOCK_CLASS, id): the running worker */
#define JOBS_MAX_ATTEMPTS 3       /* claims before a job whose workers keep dying is failed */
#define JOBS_HUNG_SECONDS 300     /* a running job with no heartbeat this long is taken over */
#define JOBS_ERROR_MAX    2000    /* characters of jobs.error */
#define JOBS_STREAM_LEN   "10000" /* XADD MAXLEN ~ of the job streams */

/* "import", "export", "bulk". */
const char *jobs_kind_name(enum job_kind kind);
/* Parses a kind name. Returns 0, or -1 when s is none. */
int jobs_kind_parse(const char *s, enum job_kind *out) MUSTCHECK;
/* The kind's stream (STREAM_JOBS_IMPORT, …); its consumer group is jobs_kind_name(kind). */
const char *jobs_stream(enum job_kind kind);

/*
 * The wire shape of a job, as one SQL expression over `jobs j`:
 * {"id", "kind", "status", "progress": {"done", "total", "percent"}, "result", "error",
 *  "file_name", "download_url", "company_id", "created_at", "started_at", "finished_at",
 *  "expires_at", "attempts"}. percent is 100 once completed, null while total is unknown.
 */
#define JOBS_JSON_SQL                                                                                             \
	"json_build_object('id', j.id, 'kind', j.kind, 'status', j.state, 'progress', json_build_object('done', " \
	"j.done, 'total', j.total, 'percent', CASE WHEN j.state = 'completed' THEN 100 WHEN j.total > 0 THEN "    \
	"round(100.0 * LEAST(j.done, j.total) / j.total, 1) WHEN j.total = 0 THEN 0 END), 'result', j.result, "   \
	"'error', j.error, 'file_name', j.file_name, 'download_url', CASE WHEN j.state = 'completed' AND "        \
	"j.file_path IS NOT NULL THEN '/api/jobs/' || j.id || '/download' END, 'company_id', j.company_id, "      \
	"'created_at', api_ts(j.created_at), 'started_at', api_ts(j.started_at), 'finished_at', "                 \
	"api_ts(j.finished_at), 'expires_at', api_ts(j.expires_at), 'attempts', j.attempts)"

/*
 * Inserts a queued job: $1 kind, $2 company_id (NULL: none), $3 params (json text, NULL: {}),
 * $4 file_path (relative to DATA_DIR, NULL: none), $5 file_name, $6 content_type, $7 created_by
 * (NULL: none). Returns one row: id.
 */
#define JOBS_INSERT_SQL                                                                                \
	"INSERT INTO jobs (kind, company_id, params, file_path, file_name, content_type, created_by) " \
	"VALUES ($1, $2::integer, COALESCE($3::jsonb, '{}'), $4, $5, $6, $7::integer) RETURNING id"

/* Marks a queued job failed because it could not be enqueued: $1 id. Returns one row: the file
 * path it had (the caller deletes the file), read before the UPDATE clears it (RETURNING alone
 * would answer the new value, NULL). */
#define JOBS_ENQUEUE_FAILED_SQL                                                                                 \
	"UPDATE jobs j SET state = 'failed', error = 'could not queue the job (Redis unavailable)', "           \
	"finished_at = now(), file_path = NULL FROM (SELECT id, file_path FROM jobs WHERE id = $1 FOR UPDATE) " \
	"old WHERE j.id = old.id AND j.state = 'queued' RETURNING old.file_path"

/* ---- files under DATA_DIR ---- */

/* Writes DATA_DIR/rel into out. Returns 0, or -1 when it does not fit or rel is unsafe
 * (absolute, or containing ".."). */
int jobs_path(char *out, size_t outlen, const char *rel) MUSTCHECK;

/*
 * Creates a new file DATA_DIR/<dir>/<32 random hex><ext> (dir created when missing, mode 0700;
 * the file 0600, O_EXCL). Writes its relative path into rel. Returns an fd open for writing
 * (caller closes), or -1 with errno set.
 */
int jobs_file_create(const char *dir, const char *ext, char *rel, size_t rellen) MUSTCHECK;

/* Deletes DATA_DIR/rel (NULL or already gone: nothing); logs other failures. */
void jobs_file_remove(const char *rel);

/* ---- blocking helpers (CLI, workers) ---- */

/* XADD <stream> MAXLEN ~ JOBS_STREAM_LEN * job_id <id>. Returns 0 or -1. */
int jobs_enqueue(redisContext *redis, enum job_kind kind, long long id) MUSTCHECK;

/*
 * Creates a queued job and enqueues it (JOBS_INSERT_SQL's parameters; company_id and
 * created_by 0 = none; params borrowed, may be NULL). file_path (an input under DATA_DIR)
 * becomes the job's: on failure it is deleted, and when the enqueue fails the row is marked
 * failed. Returns 0 with *id set, or -1 (logged; *id set when the row exists).
 */
int jobs_create(PGconn *db, redisContext *redis, enum job_kind kind, long company_id, json_t *params,
                const char *file_path, const char *file_name, const char *content_type, long created_by,
                long long *id) MUSTCHECK;

/* The job's wire JSON (JOBS_JSON_SQL), or NULL when there is no such job or the query failed.
 * Caller decrefs. */
json_t *jobs_get(PGconn *db, long long id);

/* ---- the worker side ---- */

/* What a kind's run callback gets. Everything is borrowed and valid during the call. */
struct job_ctx {
	struct worker_ctx *w; /* w->db is the callback's own connection (transactions, COPY) */
	long long id;
	enum job_kind kind;
	long company_id;       /* 0: none */
	long created_by;       /* 0: none (the user was deleted) */
	json_t *params;        /* the job's params object */
	const char *file_path; /* relative to DATA_DIR (the input, e.g. the upload), or NULL */
	const char *file_name; /* the client's name for it, or NULL */
	int attempt;           /* 1 for the first claim */
	char err[512];         /* run may leave its failure here (see struct job_runner) */
	/* private to common/jobs.c */
	uint64_t progress_ns;
	long long progress_done, progress_total;
	bool final, lost;
};

/*
 * Records progress (done of total; total < 0 = unknown) and the heartbeat. Safe to call for
 * every row: it writes at most every 500 ms (so at least once a second while work moves) —
 * through jobs.c's own control connection, so a transaction open on w->db does not hide it.
 * Returns 0, or -1 when the job is no longer this worker's (taken over after a stall) or the
 * control connection failed: the callback should stop and return -1.
 */
int job_progress(struct job_ctx *j, long long done, long long total) MUSTCHECK;

/*
 * Completes the job: result (borrowed; the wire's "result"), the output file (relative path,
 * NULL: none — an input file_path is then cleared: the callback deletes its input itself),
 * its download name and content type, and how long the file lives (hours, 0: no expiry).
 * conn: the connection to run on — w->db inside the callback's open transaction makes the
 * completion atomic with the work (COMMIT is then the callback's); NULL: the control
 * connection. Returns 0; 1 when the job is no longer this worker's (nothing written: roll
 * back); -1 on a database error (logged).
 */
int job_complete(struct job_ctx *j, PGconn *conn, json_t *result, const char *out_path, const char *out_name,
                 const char *content_type, int ttl_hours) MUSTCHECK;

/* Fails the job with a clear error (printf-style; truncated to JOBS_ERROR_MAX, made one line,
 * double quotes turned single), deleting its file (an input upload or a partial output).
 * Returns 0, 1 (no longer ours) or -1. */
int job_fail(struct job_ctx *j, const char *fmt, ...) PRINTF_LIKE(2, 3);

/*
 * A kind's worker. run does the job and returns 0 after a successful job_complete, or -1: the
 * loop then fails the job with j->err (or "internal error") unless it is already final, or no
 * longer this worker's.
 */
struct job_runner {
	enum job_kind kind;
	int (*run)(struct job_ctx *j);
};

/*
 * The worker skeleton's run hook for a job worker: reads one entry of the kind's stream
 * (XREADGROUP … COUNT 1 BLOCK 100, and every 10 s first re-claims entries idle for 60 s on a
 * dead consumer with XAUTOCLAIM), claims the job (its advisory lock, then queued → running),
 * runs it, makes sure the row is final, releases the lock and XACKs the entry. An entry whose
 * job is not claimable (finished, running elsewhere, unknown) is acknowledged at once.
 * Returns 0, or -1 when a connection failed (the skeleton then waits for its tick).
 */
int jobs_worker_run(struct worker_ctx *w, const struct job_runner *r);

/*
 * The skeleton's tick hook for a job worker: every 2 s hands back the kind's running jobs
 * whose worker died (queued again and re-enqueued, or failed after JOBS_MAX_ATTEMPTS claims,
 * their file deleted); re-enqueues queued jobs not enqueued for 5 minutes (a lost wake-up);
 * every 60 s deletes output files past their expires_at.
 */
void jobs_worker_tick(struct worker_ctx *w, const struct job_runner *r);

/* The skeleton's stop hook: closes the control connection. */
void jobs_worker_stop(struct worker_ctx *w);

/*
 * The whole main() of a job worker: the worker skeleton with r's kind as its
 * type, stream and group (from "0": a job queued before the group existed is
 * run too), jobs_worker_run/tick/stop as its hooks. r must outlive the call.
 * Returns the exit status.
 */
int jobs_worker_main(const struct job_runner *r);

#endif
