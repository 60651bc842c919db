/*
 * What the API's resource modules share: route tables, SQL column lists for
 * the wire shapes, body-field validation, and company resolution.
 */
#ifndef DIALER_API_API_H
#define DIALER_API_API_H

#include "http.h"
#include "jobs.h" /* common/jobs.h */
#include "numaction.h"

/* UserOut (COMPAT §2.1) from users u LEFT JOIN companies c. */
#define USER_COLUMNS                                                                                         \
	"u.id, u.username, u.is_active, u.is_superuser, u.role, u.first_name, u.last_name, u.phone_number, " \
	"u.company_id, c.name AS company_name, u.agent_type, api_ts(u.created_at) AS created_at, "           \
	"api_ts(u.updated_at) AS updated_at"

/* CompanyOut (COMPAT §2.1) from companies. */
#define COMPANY_COLUMNS                                                                   \
	"id, name, display_name, is_active, settings, api_ts(created_at) AS created_at, " \
	"api_ts(updated_at) AS updated_at"

#define BCRYPT_COST 12

/* Route tables, one per resource module. */
void auth_routes(void);
void companies_routes(void);
void users_routes(void);
void tokens_routes(void);
void ops_routes(void);
void schedule_routes(void); /* api/schedule.c: /api/{company}/schedule[/status] */
void holidays_routes(void); /* api/holidays.c: /api/holidays */
void billing_routes(void);  /* api/billing.c: /api/{company}/billing[/transactions] */
void catalog_routes(void);  /* api/catalog.c: /api/{company}/scenarios, /outbound-lines */
void numbers_routes(void);  /* api/numbers.c: /api/numbers */
void upload_routes(void);   /* api/upload.c: POST /api/numbers/upload */
void dialer_routes(void);   /* api/dialer.c: /api/dialer */
/* Frees the calling loop thread's next-batch caches; called as the thread ends. */
void dialer_thread_exit(void);
/* api/events.c: GET /api/events (SSE), GET /ws/updates (WebSocket), handed to dialer-events */
void events_routes(void);
/* api/deadletters.c: /api/{company}/dead-letters */
void deadletters_routes(void);
/* api/stats.c: /api/stats (COMPAT §2.11's five, agents, daily) */
void stats_routes(void);
/* api/webhooks.c: /api/{company}/webhooks[/{id}[/deliveries]] */
void webhooks_routes(void);

/* Prepares login (dummy hash for unknown users); call once at start. */
void auth_init(void);
void auth_cleanup(void);

/* ---- body fields (api/fields.c). Each returns 0, or -1 after replying 422. ---- */

/* The body must be a JSON object (an empty body counts as {} when !required). */
int field_object_or_reply(struct http_ctx *c, bool required) MUSTCHECK;
/* String of min..max characters; *out NULL when absent or null (then 422 if required). Borrowed. */
int field_str_or_reply(struct http_ctx *c, const char *name, size_t min, size_t max, bool required,
                       const char **out) MUSTCHECK;
/* The same for obj[key] (a nested object), the 422 naming label (e.g. "scenarios[2].name"). */
int field_str_in_or_reply(struct http_ctx *c, json_t *obj, const char *key, const char *label, size_t min, size_t max,
                          bool required, const char **out) MUSTCHECK;
/* Boolean; *out = -1 when absent or null, else 0/1. */
int field_bool_or_reply(struct http_ctx *c, const char *name, int *out) MUSTCHECK;
/*
 * Integer in min..max; a JSON number without a fraction (1000.0, as JavaScript
 * sends it) counts as one, strings and booleans do not. *given false when
 * absent or null (then 422 if required). min and max within ±2^53.
 */
int field_int_or_reply(struct http_ctx *c, const char *name, long long min, long long max, bool required, bool *given,
                       long long *out) MUSTCHECK;
/* One of a NULL-terminated list; *out NULL when absent or null. */
int field_enum_or_reply(struct http_ctx *c, const char *name, const char *const *allowed, const char **out) MUSTCHECK;
/* True when the field is present and not null. */
bool field_given(struct http_ctx *c, const char *name);
/* Path parameter i as an integer id (422 naming it otherwise). */
int param_id_or_reply(struct http_ctx *c, int i, const char *name, long *out) MUSTCHECK;
/* Query integer in [min, max], def when absent or empty; 422 naming it otherwise. */
int query_long_or_reply(struct http_ctx *c, const char *name, long min, long max, long def, long *out) MUSTCHECK;
/* The paging of every list: skip >= 0 (default 0), limit 1..LIST_MAX (default 50, or LIST_MAX when
 * smaller); 422 naming the parameter otherwise. */
int query_page_or_reply(struct http_ctx *c, long *skip, long *limit) MUSTCHECK;

/* Replies the rows of res as a bare JSON array (the panel's lists), or the database error. */
void rows_reply_done(struct http_ctx *c, PGresult *res);

/* A paged list's state: set it as c->state (freed with free). */
struct list_page {
	long skip, limit;
};
/* Replies {"items": <column 1>, "total": <column 0>, "skip", "limit"} from a one-row result whose
 * first column is the count and second a JSON array; c->state is a struct list_page. */
void list_page_done(struct http_ctx *c, PGresult *res);

/*
 * Resolves c->params[0] as an active company (404 "Company not found"), then
 * checks the user may act on it (403 "Access denied to this company"). On
 * success sets c->company_id / c->company and calls next(c).
 */
void company_from_path(struct http_ctx *c, void (*next)(struct http_ctx *c));
/* The same for a company named elsewhere (query or body); active_only false
 * also finds inactive companies (COMPAT §2.9's numbers endpoints). */
void company_by_name(struct http_ctx *c, const char *name, bool active_only, void (*next)(struct http_ctx *c));

/* The named company (company_by_name), else the user's own (c->company_id, c->company): a user of
 * no company gets 403 "User is not assigned to a company" unless a superuser, who gets none (0).
 * Then calls next(c), or replies. */
void company_or_own_then(struct http_ctx *c, const char *name, bool active_only, void (*next)(struct http_ctx *c));

/* For a statement over company_config_get (which creates the company's config row): false after
 * replying 404 "Company not found" when the company went away meanwhile (the insert's foreign key,
 * or no row), or what http_db_ok_or_reply replies. */
bool company_config_ok_or_reply(struct http_ctx *c, PGresult *res) MUSTCHECK;

/* Deletes the company's published call-allowed state (CALLSTATE_KEY_FMT) so that the next
 * next-batch decides afresh from the database, then calls next(c) whatever Redis answered (a
 * failure is logged: the change is committed, and the value expires within seconds anyway). */
void company_callstate_drop_then(struct http_ctx *c, void (*next)(struct http_ctx *c));

/* After an admin change to numbers (delete, status, reset): drops every
 * company's hopper, so that no candidate read before the change is
 * dispatched after it (common/hopper.h), then continues with next. */
void hopper_flush_then(struct http_ctx *c, void (*next)(struct http_ctx *c));

/* Maps a unique violation on users (username, phone) to COMPAT's 400 text;
 * false (nothing sent) when res is not one. */
bool user_conflict_or_reply(struct http_ctx *c, PGresult *res) MUSTCHECK;

/* Role checks: false after replying 403 with COMPAT's text. */
bool require_admin_or_reply(struct http_ctx *c) MUSTCHECK;
bool require_superuser_or_reply(struct http_ctx *c) MUSTCHECK;

/* ---- jobs (api/jobs.c): starting a job from a request, the sync-wait, /api/jobs ---- */
/* A finished (completed or failed) job, as a job_finished_fn or the download sees it.
 * Everything borrowed, valid during the call. */
struct job_row {
	long long id;
	enum job_kind kind;
	const char *state;     /* "completed" or "failed" (the download: any) */
	json_t *json;          /* the wire shape (JOBS_JSON_SQL) */
	json_t *result;        /* json["result"]: JSON null when none */
	const char *error;     /* NULL unless failed */
	const char *file_path; /* relative to DATA_DIR; NULL when none, deleted or expired */
	const char *file_name; /* download name, or NULL */
	const char *content_type;
	bool expired; /* expires_at has passed */
};

/* Replies for a finished job. It must end the request (one reply), like any handler step. */
typedef void (*job_finished_fn)(struct http_ctx *c, const struct job_row *job);

/* What jobs_start creates. Borrowed for the duration of the call only (copied). */
struct job_new {
	enum job_kind kind;
	long company_id;          /* 0: none (a superuser without a target company) */
	json_t *params;           /* the job's parameters, or NULL */
	const char *file_path;    /* input file relative to DATA_DIR, or NULL; becomes the job's
	                           * (deleted with it, or at once if the job cannot be created) */
	const char *file_name;    /* the client's name for the input, or the download name */
	const char *content_type; /* of file_path, or NULL */
};

/*
 * Creates a queued job for c's user (INSERT, then XADD to the kind's stream), then waits for it
 * as jobs_wait does. Replies by itself on failure: 503 when PostgreSQL or Redis is unavailable
 * (a row already inserted is marked failed), 500 on another database error.
 */
void jobs_start(struct http_ctx *c, const struct job_new *spec, job_finished_fn finished);

/*
 * The sync-wait. Without blocking the loop (an evtimer polls the row, 20 ms doubling to
 * 500 ms), waits up to JOB_WAIT_SECONDS for job id to finish, then calls finished(c, job)
 * to reply; past the wait (or at once when JOB_WAIT_SECONDS is 0), or when the client has
 * gone, replies 202 {"job_id", "job_url", "status"} with a Location header. A client that
 * disconnects is noticed at the next poll; libevent freeing the connection meanwhile is
 * handled too (http_watch_close). Uses c->aux: the caller must not.
 */
void jobs_wait(struct http_ctx *c, long long id, job_finished_fn finished);

/* Ready-made finished replies: */
/* 200 with job->result (import, bulk); a failed job as jobs_reply_failed. */
void jobs_reply_result(struct http_ctx *c, const struct job_row *job);
/* 200 with the job's file (export), Content-Type and Content-Disposition: attachment with its
 * name; 410 once expired or deleted; a failed job as jobs_reply_failed. */
void jobs_reply_file(struct http_ctx *c, const struct job_row *job);
/* 400 JOB_FAILED: {"detail": <the job's error>, "error": {…, "details": {"job_id"}}}. */
void jobs_reply_failed(struct http_ctx *c, const struct job_row *job);

/* GET /api/jobs, /api/jobs/{id}, /api/jobs/{id}/download. */
void jobs_routes(void);

/* ---- numbers work as jobs (api/export.c); the selection is built by api/numbers.c ---- */

/* POST /api/numbers/export's job for sel (borrowed; copied into the job's params) and its
 * sync-wait: the XLSX file inline (200), else 202 with the job's URL. */
void numbers_export_start(struct http_ctx *c, const struct selection *sel);
/* A bulk action over more than BULK_SYNC_LIMIT numbers as a job (kind bulk), with the same
 * sync-wait and result shape {updated, reset, deleted, skipped_immutable}. new_status only for
 * NUMACTION_STATUS. */
void numbers_bulk_job_start(struct http_ctx *c, const struct selection *sel, enum numaction action,
                            const char *new_status);

#endif
