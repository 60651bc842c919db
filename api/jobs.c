/*
 * Jobs on the API (declared in api/api.h): starting one from a request, the sync-wait (an evtimer polling
 * the row, never blocking the loop), and GET /api/jobs[/{id}[/download]] for the job's company
 * (superusers: any). A job of another company is answered as unknown (404).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "api.h"
#include "config.h"
#include "jobs.h"
#include "pgjson.h"
#include "util.h"

#define WAIT_FIRST_MS 20
#define WAIT_MAX_MS   500

/* One job row for the wait and the download: the wire JSON, then what the server needs. */
#define JOB_ROW_SQL                                                                                      \
	"SELECT " JOBS_JSON_SQL ", j.kind, j.state, j.error, j.file_path, j.file_name, j.content_type, " \
	"COALESCE(j.expires_at < now(), false) FROM jobs j "
/* Visibility: $2 superuser, $3 the user's company (NULL: none). */
#define JOB_VISIBLE_SQL "($2::boolean OR j.company_id = $3::integer)"

/* The state of jobs_start and jobs_wait (c->aux). */
struct job_wait {
	long long id;
	char ids[24];
	enum job_kind kind;
	job_finished_fn finished;
	struct event *timer;
	uint64_t deadline_ns;
	int delay_ms;
	bool querying; /* a poll's query is out: its callback replies if the client went */
	bool gone;
	char last_state[16];
	/* jobs_start: what to create */
	char *params, *file_path, *file_name, *content_type;
	long company_id;
};

static void wait_free(void *p)
{
	struct job_wait *w = p;
	if (w->timer)
		event_free(w->timer);
	free(w->params);
	free(w->file_path);
	free(w->file_name);
	free(w->content_type);
	free(w);
}

static struct job_wait *wait_state(struct http_ctx *c)
{
	if (!c->aux) {
		c->aux = xcalloc(1, sizeof(struct job_wait));
		c->aux_free = wait_free;
	}
	return c->aux;
}

/* ------------------------------------------------------------- job rows */

/* Fills row from result res (JOB_ROW_SQL's columns) at row 0; row->json is then owned by the
 * caller (json_decref). */
static void row_from(struct job_row *row, PGresult *res)
{
	memset(row, 0, sizeof(*row));
	row->json = pgjson_cell(res, 0, 0);
	row->id = (long long)json_integer_value(json_object_get(row->json, "id"));
	if (jobs_kind_parse(PQgetvalue(res, 0, 1), &row->kind))
		row->kind = JOB_IMPORT;
	row->state = PQgetvalue(res, 0, 2);
	row->error = PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3);
	row->file_path = PQgetisnull(res, 0, 4) ? NULL : PQgetvalue(res, 0, 4);
	row->file_name = PQgetisnull(res, 0, 5) ? NULL : PQgetvalue(res, 0, 5);
	row->content_type = PQgetisnull(res, 0, 6) ? NULL : PQgetvalue(res, 0, 6);
	row->expired = !strcmp(PQgetvalue(res, 0, 7), "t");
	row->result = json_object_get(row->json, "result");
}

static const char *job_url(long long id, char *buf, size_t n)
{
	snprintf(buf, n, "/api/jobs/%lld", id);
	return buf;
}

/* ------------------------------------------------------ finished replies */

void jobs_reply_failed(struct http_ctx *c, const struct job_row *job)
{
	http_error_details(c, 400, "JOB_FAILED", json_pack("{s:I}", "job_id", (json_int_t)job->id), "%s",
	                   job->error ? job->error : "The job failed");
}

void jobs_reply_result(struct http_ctx *c, const struct job_row *job)
{
	if (strcmp(job->state, "completed")) {
		jobs_reply_failed(c, job);
		return;
	}
	http_reply_json(c, 200, json_incref(job->result));
}

/* Content-Disposition for name: an ASCII fallback plus the exact UTF-8 name (RFC 6266). */
static void set_disposition(struct http_ctx *c, const char *name)
{
	char ascii[256], ext[3 * 255 + 1], *out;
	size_t a = 0, e = 0;
	static const char hex[] = "0123456789ABCDEF";
	if (!name || !*name)
		name = "download";
	for (const unsigned char *p = (const unsigned char *)name; *p && a < 200; p++) {
		bool safe = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		            *p == '.' || *p == '-' || *p == '_';
		ascii[a++] = safe ? (char)*p : '_';
		if (e + 3 < sizeof(ext)) {
			if (safe) {
				ext[e++] = (char)*p;
			} else {
				ext[e++] = '%';
				ext[e++] = hex[*p >> 4];
				ext[e++] = hex[*p & 15];
			}
		}
	}
	ascii[a] = '\0';
	ext[e] = '\0';
	out = xasprintf("attachment; filename=\"%s\"; filename*=UTF-8''%s", ascii, ext);
	http_add_header(c, "Content-Disposition", out);
	free(out);
}

void jobs_reply_file(struct http_ctx *c, const struct job_row *job)
{
	char path[4096];
	struct stat st;
	int fd;
	if (strcmp(job->state, "completed")) {
		if (!strcmp(job->state, "failed"))
			jobs_reply_failed(c, job);
		else
			http_error_details(c, 409, "JOB_NOT_FINISHED",
			                   json_pack("{s:I}", "job_id", (json_int_t)job->id), "Job not finished yet");
		return;
	}
	if (job->expired || !job->file_path) {
		if (job->expired || job->kind == JOB_EXPORT)
			http_error(c, 410, "GONE", "The job's file has expired");
		else
			http_error(c, 404, "NOT_FOUND", "This job has no file");
		return;
	}
	if (jobs_path(path, sizeof(path), job->file_path)) {
		http_error(c, 500, "INTERNAL_ERROR", "bad job file path");
		return;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	int err = fd < 0 ? errno : fstat(fd, &st) ? errno : S_ISREG(st.st_mode) ? 0 : EINVAL;
	if (err) {
		if (fd >= 0)
			close(fd);
		if (err == ENOENT) {
			http_error(c, 410, "GONE", "The job's file has expired");
		} else {
			log_error("event=job_file_open_failed job_id=%lld path=%s error=\"%s\"", job->id,
			          job->file_path, strerror(err));
			http_error(c, 500, "INTERNAL_ERROR", "cannot open the job's file");
		}
		return;
	}
	set_disposition(c, job->file_name);
	http_add_header(c, "Cache-Control", "no-store");
	http_reply_file(c, 200, job->content_type ? job->content_type : "application/octet-stream", fd,
	                (size_t)st.st_size);
}

/* ----------------------------------------------------------- the wait */

static void reply_accepted(struct http_ctx *c)
{
	struct job_wait *w = c->aux;
	char url[48];
	job_url(w->id, url, sizeof(url));
	http_add_header(c, "Location", url);
	http_reply_json(c, 202,
	                json_pack("{s:I, s:s, s:s}", "job_id", (json_int_t)w->id, "job_url", url, "status",
	                          w->last_state[0] ? w->last_state : "queued"));
}

static void poll_cb(evutil_socket_t fd, short what, void *arg);

static void schedule_poll(struct http_ctx *c)
{
	struct job_wait *w = c->aux;
	uint64_t now = util_now_ns();
	if (now >= w->deadline_ns) {
		reply_accepted(c);
		return;
	}
	uint64_t left_ms = (w->deadline_ns - now) / 1000000;
	int ms = w->delay_ms;
	if ((uint64_t)ms > left_ms)
		ms = (int)left_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(w->timer, &tv);
	w->delay_ms = w->delay_ms * 2 > WAIT_MAX_MS ? WAIT_MAX_MS : w->delay_ms * 2;
}

static void polled(struct http_ctx *c, PGresult *res)
{
	struct job_wait *w = c->aux;
	w->querying = false;
	if (w->gone) {
		reply_accepted(c); /* only frees: the request went with its connection */
		return;
	}
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		/* the job exists; its state is one GET away: no reason to fail the request */
		log_warn("event=job_wait_poll_failed job_id=%lld", w->id);
		reply_accepted(c);
		return;
	}
	const char *state = PQgetvalue(res, 0, 2);
	snprintf(w->last_state, sizeof(w->last_state), "%s", state);
	if (!strcmp(state, "completed") || !strcmp(state, "failed")) {
		struct job_row row;
		row_from(&row, res);
		w->finished(c, &row);
		json_decref(row.json);
		return;
	}
	schedule_poll(c);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_ctx *c = arg;
	struct job_wait *w = c->aux;
	UNUSED(fd);
	UNUSED(what);
	log_set_ctx(c->rid);
	if (http_client_closed(c)) {
		log_info("event=job_wait_client_gone job_id=%lld", w->id);
		reply_accepted(c);
	} else {
		const char *p[1] = {w->ids};
		w->querying = true;
		http_db(c, JOB_ROW_SQL "WHERE j.id = $1", 1, p, polled);
	}
	log_set_ctx(NULL);
}

/* libevent is freeing the connection (http_watch_close): end now unless a query is out. */
static void wait_gone(struct http_ctx *c)
{
	struct job_wait *w = c->aux;
	w->gone = true;
	if (!w->querying) {
		event_del(w->timer);
		reply_accepted(c);
	}
}

void jobs_wait(struct http_ctx *c, long long id, job_finished_fn finished)
{
	struct job_wait *w = wait_state(c);
	w->id = id;
	snprintf(w->ids, sizeof(w->ids), "%lld", id);
	w->finished = finished;
	if (cfg.job_wait_seconds <= 0) {
		reply_accepted(c);
		return;
	}
	w->deadline_ns = util_now_ns() + (uint64_t)cfg.job_wait_seconds * 1000000000ULL;
	w->delay_ms = WAIT_FIRST_MS;
	w->timer = evtimer_new(c->thr->base, poll_cb, c);
	http_watch_close(c, wait_gone);
	schedule_poll(c);
}

/* ----------------------------------------------------------- creation */

static void enqueue_failed_marked(struct http_ctx *c, PGresult *res)
{
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		jobs_file_remove(PQgetvalue(res, 0, 0));
	http_add_header(c, "Retry-After", "1");
	http_error(c, 503, "QUEUE_UNAVAILABLE", "Job queue unavailable");
}

static void enqueued(struct http_ctx *c, redisReply *reply)
{
	struct job_wait *w = c->aux;
	if (!reply || reply->type != REDIS_REPLY_STRING) {
		log_warn("event=job_enqueue_failed job_id=%lld error=\"%s\"", w->id,
		         reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "redis unavailable");
		const char *p[1] = {w->ids};
		http_db(c, JOBS_ENQUEUE_FAILED_SQL, 1, p, enqueue_failed_marked);
		return;
	}
	log_info("event=job_created job_id=%lld kind=%s company_id=%ld", w->id, jobs_kind_name(w->kind), w->company_id);
	jobs_wait(c, w->id, w->finished);
}

static void inserted(struct http_ctx *c, PGresult *res)
{
	struct job_wait *w = c->aux;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		jobs_file_remove(w->file_path); /* the file was to become the job's */
		if (http_db_ok_or_reply(c, res))
			http_error(c, 500, "INTERNAL_ERROR", "Internal Server Error");
		return;
	}
	w->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	snprintf(w->ids, sizeof(w->ids), "%lld", w->id);
	const char *argv[] = {"XADD", jobs_stream(w->kind), "MAXLEN", "~", JOBS_STREAM_LEN, "*", "job_id", w->ids};
	http_redis(c, enqueued, (int)ARRAY_LEN(argv), argv, NULL);
}

void jobs_start(struct http_ctx *c, const struct job_new *spec, job_finished_fn finished)
{
	struct job_wait *w = wait_state(c);
	char cid[24], uid[24];
	w->kind = spec->kind;
	w->finished = finished;
	w->company_id = spec->company_id;
	w->params = spec->params ? json_dumps(spec->params, JSON_COMPACT) : NULL;
	w->file_path = spec->file_path ? xstrdup(spec->file_path) : NULL;
	w->file_name = spec->file_name ? xstrdup(spec->file_name) : NULL;
	w->content_type = spec->content_type ? xstrdup(spec->content_type) : NULL;
	snprintf(cid, sizeof(cid), "%ld", spec->company_id);
	snprintf(uid, sizeof(uid), "%ld", c->user.id);
	const char *p[7] = {jobs_kind_name(spec->kind),
	                    spec->company_id ? cid : NULL,
	                    w->params,
	                    w->file_path,
	                    w->file_name,
	                    w->content_type,
	                    c->user.id ? uid : NULL};
	http_db(c, JOBS_INSERT_SQL, 7, p, inserted);
}

/* ------------------------------------------------------------- routes */

/* $2, $3 of JOB_VISIBLE_SQL for c's user, into the two buffers. */
static void visibility(struct http_ctx *c, const char **su, const char **cid, char *buf, size_t n)
{
	*su = c->user.is_superuser ? "true" : "false";
	snprintf(buf, n, "%ld", c->user.company_id);
	*cid = c->user.company_id ? buf : NULL;
}

static void got_one(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Job not found");
		return;
	}
	http_reply_json(c, 200, pgjson_cell(res, 0, 0));
}

static void got_for_download(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Job not found");
		return;
	}
	struct job_row row;
	row_from(&row, res);
	jobs_reply_file(c, &row);
	json_decref(row.json);
}

static void one_query(struct http_ctx *c, http_db_cb done)
{
	long id;
	char buf[24], ids[24];
	const char *su, *cid;
	if (!require_admin_or_reply(c) || param_id_or_reply(c, 0, "job_id", &id))
		return;
	snprintf(ids, sizeof(ids), "%ld", id);
	visibility(c, &su, &cid, buf, sizeof(buf));
	const char *p[3] = {ids, su, cid};
	http_db(c, JOB_ROW_SQL "WHERE j.id = $1 AND " JOB_VISIBLE_SQL, 3, p, done);
}

static void get_one(struct http_ctx *c)
{
	one_query(c, got_one);
}

static void download(struct http_ctx *c)
{
	one_query(c, got_for_download);
}

/* The list, once the `company` filter (if any) is resolved into c->company_id. */
static void list_query(struct http_ctx *c)
{
	struct list_page *pg = c->state;
	const char *kind = http_query(c, "kind");
	char buf[24], skips[24], limits[24], cids[24];
	const char *su, *cid;
	snprintf(skips, sizeof(skips), "%ld", pg->skip);
	snprintf(limits, sizeof(limits), "%ld", pg->limit);
	snprintf(cids, sizeof(cids), "%ld", c->company_id);
	visibility(c, &su, &cid, buf, sizeof(buf));
	const char *p[6] = {kind && *kind ? kind : NULL, su, cid, skips, limits, c->company_id ? cids : NULL};
#define LIST_WHERE                                                                                                    \
	"WHERE ($1::text IS NULL OR j.kind = $1) AND " JOB_VISIBLE_SQL " AND ($6::integer IS NULL OR j.company_id = " \
	"$6)"
	http_db(c,
	        "SELECT (SELECT count(*) FROM jobs j " LIST_WHERE "), COALESCE((SELECT json_agg(x.o ORDER BY x.id "
	        "DESC) FROM (SELECT j.id, " JOBS_JSON_SQL " AS o FROM jobs j " LIST_WHERE
	        " ORDER BY j.id DESC OFFSET $4 LIMIT $5) x), '[]'::json)",
	        6, p, list_page_done);
#undef LIST_WHERE
}

static void list(struct http_ctx *c)
{
	const char *kind = http_query(c, "kind"), *company = http_query(c, "company");
	enum job_kind k;
	long skip, limit;
	if (!require_admin_or_reply(c) || query_page_or_reply(c, &skip, &limit))
		return;
	if (kind && *kind && jobs_kind_parse(kind, &k)) {
		http_invalid(c, "kind", "must be one of import, export, bulk");
		return;
	}
	struct list_page *pg = xcalloc(1, sizeof(*pg));
	pg->skip = skip;
	pg->limit = limit;
	c->state = pg;
	c->state_free = free;
	/* COMPAT §1.5's rules for a named company: 404 unknown, 403 another company's */
	if (company && *company)
		company_by_name(c, company, false, list_query);
	else
		list_query(c);
}

static const struct route routes[] = {
    {"GET", "/api/jobs", list, AUTH_JWT, 0},
    {"GET", "/api/jobs/{job_id}", get_one, AUTH_JWT, 0},
    {"GET", "/api/jobs/{job_id}/download", download, AUTH_JWT, 0},
};

void jobs_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
