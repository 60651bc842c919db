/*
 * A company's webhooks (/api/{company}/webhooks): create, list, read, update, delete, and the
 * delivery log of one webhook (every attempt, newest first). For the company's admins and
 * superusers. The secret is never returned: only its first characters (secret_hint), or once,
 * at creation, when the server generated it. dialer-webhooks (workers/webhooks) delivers.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config.h"
#include "events.h"
#include "pgjson.h"
#include "util.h"
#include "webhook.h"

#define EVENTS_MAX 16

/* WebhookOut, from webhooks w. pending: deliveries waiting to be sent (or being sent). */
#define WEBHOOK_COLUMNS                                                                                              \
	"w.id, w.company_id, w.url, to_json(w.events) AS events, w.description,"                                     \
	" left(w.secret, 4) || '…' AS secret_hint, w.is_active,"                                                   \
	" (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'pending') AS pending," \
	" w.dropped, api_ts(w.failing_since) AS failing_since, api_ts(w.created_at) AS created_at,"                  \
	" api_ts(w.updated_at) AS updated_at"

/* A create or update request's validated fields. Strings borrowed from c->body except the
 * owned ones. */
struct wform {
	const char *url, *secret, *description;
	bool description_given;
	int active;        /* -1: not given */
	char *events;      /* owned: a PostgreSQL text[] literal, NULL when not given */
	char *secret_made; /* owned: a secret the server generated, shown once */
	char id[24], cid[24], uid[24], max[16];
};

static void wform_free(void *p)
{
	struct wform *f = p;
	if (!f)
		return;
	free(f->events);
	free(f->secret_made);
	free(f);
}

/* body.events: a non-empty array of known event types or "*", into f->events as a text[]
 * literal (duplicates dropped; "*" alone when present). -1 after replying 422. */
static int events_or_reply(struct http_ctx *c, bool required, struct wform *f)
{
	json_t *v = json_object_get(c->body, "events"), *it;
	const char *seen[EVENTS_MAX];
	size_t n = 0, i;
	char label[32], msg[256];
	bool star = false;

	if (!v || json_is_null(v)) {
		if (required) {
			http_invalid(c, "events", "field required");
			return -1;
		}
		return 0;
	}
	if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > EVENTS_MAX) {
		http_invalid(c, "events", "must be an array of 1 to 16 event types, or [\"*\"] for all");
		return -1;
	}
	json_array_foreach(v, i, it)
	{
		const char *s = json_string_value(it);
		snprintf(label, sizeof(label), "events[%zu]", i);
		if (!s || (strcmp(s, "*") && events_type_index(s) < 0)) {
			size_t m = (size_t)snprintf(msg, sizeof(msg), "must be \"*\" or one of");
			for (size_t k = 0; events_types[k] && m < sizeof(msg); k++)
				m += (size_t)snprintf(msg + m, sizeof(msg) - m, "%s %s", k ? "," : "", events_types[k]);
			http_invalid(c, label, msg);
			return -1;
		}
		star = star || !strcmp(s, "*");
		bool dup = false;
		for (size_t k = 0; k < n; k++)
			dup = dup || !strcmp(seen[k], s);
		if (!dup)
			seen[n++] = s;
	}
	struct buf b = {0};
	if (star)
		buf_array_elem(&b, "*");
	for (size_t k = 0; !star && k < n; k++)
		buf_array_elem(&b, seen[k]);
	f->events = xasprintf("{%s}", b.p);
	free(b.p);
	return 0;
}

/* The fields of a create (required true) or update request into a new c->state. -1 after
 * replying 422. */
static int form_or_reply(struct http_ctx *c, bool create, struct wform **out)
{
	struct wform *f = xcalloc(1, sizeof(*f));
	const char *why;

	c->state = f;
	c->state_free = wform_free;
	*out = f;
	if (field_object_or_reply(c, create) || field_str_or_reply(c, "url", 1, WEBHOOK_URL_MAX, create, &f->url) ||
	    events_or_reply(c, create, f) ||
	    field_str_or_reply(c, "secret", WEBHOOK_SECRET_MIN, WEBHOOK_SECRET_MAX, false, &f->secret) ||
	    field_str_or_reply(c, "description", 0, WEBHOOK_DESC_MAX, false, &f->description) ||
	    field_bool_or_reply(c, "is_active", &f->active))
		return -1;
	if (f->url && (why = webhook_url_check(f->url))) {
		http_invalid(c, "url", why);
		return -1;
	}
	f->description_given = json_object_get(c->body, "description") != NULL;
	if (create && !f->secret) {
		char hex[65];
		if (util_random_hex(hex, 32)) {
			http_error(c, 500, "INTERNAL_ERROR", "cannot generate a secret");
			return -1;
		}
		f->secret_made = xstrdup(hex);
		f->secret = f->secret_made;
	}
	snprintf(f->cid, sizeof(f->cid), "%ld", c->company_id);
	snprintf(f->uid, sizeof(f->uid), "%ld", c->user.id);
	snprintf(f->max, sizeof(f->max), "%d", cfg.webhooks_per_company);
	return 0;
}

/* A unique violation on (company_id, url): 400. False (nothing sent) otherwise. */
static bool url_conflict_or_reply(struct http_ctx *c, PGresult *res)
{
	if (!res || strcmp(pgpool_sqlstate(res), "23505"))
		return false;
	http_error(c, 400, "WEBHOOK_EXISTS", "A webhook with this URL already exists for this company");
	return true;
}

/* ---- list ---- */

static void list_company(struct http_ctx *c)
{
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[1] = {cid};
	http_db(c, "SELECT " WEBHOOK_COLUMNS " FROM webhooks w WHERE w.company_id = $1 ORDER BY w.id", 1, p,
	        rows_reply_done);
}

static void list(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, list_company);
}

/* ---- create ---- */

static void created(struct http_ctx *c, PGresult *res)
{
	struct wform *f = c->state;
	if (url_conflict_or_reply(c, res) || !http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		http_error(c, 400, "WEBHOOK_LIMIT", "This company already has %d webhooks (WEBHOOKS_PER_COMPANY)",
		           cfg.webhooks_per_company);
		return;
	}
	json_t *out = pgjson_row(res, 0);
	if (f->secret_made) /* generated here: the one time it is shown */
		json_object_set_new(out, "secret", json_string(f->secret_made));
	log_info("event=webhook_created company=%s id=%s events=%s secret=%s", c->company, PQgetvalue(res, 0, 0),
	         f->events, f->secret_made ? "generated" : "given");
	http_reply_json(c, 200, out);
}

static void create_company(struct http_ctx *c)
{
	struct wform *f;
	if (form_or_reply(c, true, &f))
		return;
	const char *p[8] = {f->cid, f->url, f->events, f->secret, f->description, f->active == 0 ? "false" : "true",
	                    f->uid, f->max};
	http_db(c, "SELECT " WEBHOOK_COLUMNS " FROM webhook_create($1, $2, $3, $4, $5, $6, $7, $8) w", 8, p, created);
}

static void create(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, create_company);
}

/* ---- read, update, delete one ---- */

/* Path parameter webhook_id and the company's id as text parameters ($1, $2). -1 after
 * replying 422. */
static int id_params_or_reply(struct http_ctx *c, char ids[24], char cid[24])
{
	long id;
	if (param_id_or_reply(c, 1, "webhook_id", &id))
		return -1;
	snprintf(ids, 24, "%ld", id);
	snprintf(cid, 24, "%ld", c->company_id);
	return 0;
}

/* The webhook of a one-row result, or 404 (not found in this company). */
static bool one_or_reply(struct http_ctx *c, PGresult *res)
{
	if (url_conflict_or_reply(c, res) || !http_db_ok_or_reply(c, res))
		return false;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Webhook not found");
		return false;
	}
	return true;
}

static void got(struct http_ctx *c, PGresult *res)
{
	if (one_or_reply(c, res))
		http_reply_json(c, 200, pgjson_row(res, 0));
}

static void updated(struct http_ctx *c, PGresult *res)
{
	if (!one_or_reply(c, res))
		return;
	log_info("event=webhook_updated company=%s id=%s", c->company, PQgetvalue(res, 0, 0));
	http_reply_json(c, 200, pgjson_row(res, 0));
}

static void get_company(struct http_ctx *c)
{
	char ids[24], cid[24];
	if (id_params_or_reply(c, ids, cid))
		return;
	const char *p[2] = {ids, cid};
	http_db(c, "SELECT " WEBHOOK_COLUMNS " FROM webhooks w WHERE w.id = $1 AND w.company_id = $2", 2, p, got);
}

static void get(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, get_company);
}

static void update_company(struct http_ctx *c)
{
	struct wform *f;
	long id;
	if (param_id_or_reply(c, 1, "webhook_id", &id) || form_or_reply(c, false, &f))
		return;
	snprintf(f->id, sizeof(f->id), "%ld", id);
	const char *p[8] = {f->id,          f->cid,
	                    f->url,         f->events,
	                    f->secret,      f->description_given ? "true" : "false",
	                    f->description, f->active < 0 ? NULL : f->active ? "true" : "false"};
	http_db(c,
	        "UPDATE webhooks w SET url = COALESCE($3, w.url), events = COALESCE($4::text[], w.events),"
	        " secret = COALESCE($5, w.secret), description = CASE WHEN $6::bool THEN $7 ELSE w.description END,"
	        " is_active = COALESCE($8::bool, w.is_active), updated_at = now()"
	        " WHERE w.id = $1 AND w.company_id = $2 RETURNING " WEBHOOK_COLUMNS,
	        8, p, updated);
}

static void update(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, update_company);
}

static void deleted(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Webhook not found");
		return;
	}
	log_info("event=webhook_deleted company=%s id=%s", c->company, PQgetvalue(res, 0, 0));
	http_reply_json(
	    c, 200, json_pack("{s:b, s:I}", "deleted", 1, "id", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10)));
}

static void delete_company(struct http_ctx *c)
{
	char ids[24], cid[24];
	if (id_params_or_reply(c, ids, cid))
		return;
	const char *p[2] = {ids, cid};
	/* its pending deliveries and its log go with it (ON DELETE CASCADE); a request in flight
	 * finishes, and its outcome finds no row to update */
	http_db(c, "DELETE FROM webhooks WHERE id = $1 AND company_id = $2 RETURNING id", 2, p, deleted);
}

static void remove_one(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, delete_company);
}

/* ---- the delivery log ---- */

/* list_page_done's reply (total, items), or 404 when column 2 says the webhook is not the
 * company's. */
static void log_done(struct http_ctx *c, PGresult *res)
{
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && !strcmp(PQgetvalue(res, 0, 2), "0")) {
		http_error(c, 404, "NOT_FOUND", "Webhook not found");
		return;
	}
	list_page_done(c, res);
}

/* The attempts of webhook $1 that the filters keep ($5 event id, $6 outcome; NULL = any). */
#define LOG_FILTER                                                                                      \
	"a.webhook_id = $1 AND ($5::text IS NULL OR a.delivery_id = (SELECT id FROM webhook_deliveries" \
	" WHERE webhook_id = $1 AND event_id = $5)) AND ($6::text IS NULL OR a.outcome = $6)"

static void log_company(struct http_ctx *c)
{
	static const char *const outcomes[] = {"delivered", "retry", "failed", NULL};
	struct list_page *pg = xcalloc(1, sizeof(*pg));
	const char *event_id = http_query(c, "event_id"), *outcome = http_query(c, "outcome");
	char ids[24], cid[24], skip[24], limit[24];
	struct rds_stream_id id;
	size_t i;

	c->state = pg;
	c->state_free = free;
	if (id_params_or_reply(c, ids, cid) || query_page_or_reply(c, &pg->skip, &pg->limit))
		return;
	if (event_id && !*event_id)
		event_id = NULL;
	if (event_id && rds_id_parse(event_id, &id)) {
		http_invalid(c, "event_id", "must be a stream id such as 1712345678901-0");
		return;
	}
	if (outcome && !*outcome)
		outcome = NULL;
	for (i = 0; outcome && outcomes[i] && strcmp(outcome, outcomes[i]); i++)
		;
	if (outcome && !outcomes[i]) {
		http_invalid(c, "outcome", "must be one of delivered, retry, failed");
		return;
	}
	snprintf(skip, sizeof(skip), "%ld", pg->skip);
	snprintf(limit, sizeof(limit), "%ld", pg->limit);
	const char *p[6] = {ids, cid, skip, limit, event_id, outcome};
	/* the page walks webhook_attempts_log_idx (webhook_id, id) backwards; attempted_at is when the
	 * worker started the attempt (attempts logged before schema 018: derived from the recording
	 * time) */
	http_db(c,
	        "SELECT (SELECT count(*) FROM webhook_attempts a WHERE " LOG_FILTER ") AS total,"
	        " (SELECT COALESCE(json_agg(json_build_object('id', a.id, 'delivery_id', a.delivery_id,"
	        "   'event_id', d.event_id, 'event_type', e.type, 'attempt', a.attempt, 'status_code', a.status_code,"
	        "   'error', a.error, 'duration_ms', a.duration_ms, 'outcome', a.outcome,"
	        "   'next_retry_at', api_ts(a.next_retry_at),"
	        "   'attempted_at', api_ts(COALESCE(a.attempted_at,"
	        "    a.created_at - a.duration_ms * interval '1 millisecond')),"
	        "   'delivery_state', d.state) ORDER BY a.id DESC), '[]'::json)"
	        "  FROM (SELECT * FROM webhook_attempts a WHERE " LOG_FILTER " ORDER BY a.id DESC OFFSET $3 LIMIT $4) a"
	        "  JOIN webhook_deliveries d ON d.id = a.delivery_id JOIN webhook_events e ON e.event_id = d.event_id)"
	        " AS items, (SELECT count(*) FROM webhooks WHERE id = $1 AND company_id = $2) AS found",
	        6, p, log_done);
}

static void delivery_log(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, log_company);
}

static const struct route routes[] = {
    {"GET", "/api/{company}/webhooks", list, AUTH_JWT, 0},
    {"POST", "/api/{company}/webhooks", create, AUTH_JWT, RF_JSON},
    {"GET", "/api/{company}/webhooks/{webhook_id}", get, AUTH_JWT, 0},
    {"PUT", "/api/{company}/webhooks/{webhook_id}", update, AUTH_JWT, RF_JSON},
    {"DELETE", "/api/{company}/webhooks/{webhook_id}", remove_one, AUTH_JWT, 0},
    {"GET", "/api/{company}/webhooks/{webhook_id}/deliveries", delivery_log, AUTH_JWT, 0},
};

void webhooks_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
