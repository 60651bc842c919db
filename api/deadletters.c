/*
 * A company's dead letters (GET /api/{company}/dead-letters): the reported
 * results the results worker could not apply, with the entry as it was
 * reported and why, newest first. For the company's admins and superusers.
 */
#include <stdlib.h>

#include "api.h"
#include "config.h"
#include "pgjson.h"
#include "util.h"

struct page {
	long skip, limit;
};

/* Query integer in min..max, def when absent or empty. -1 after a 422. */
static int query_long_or_reply(struct http_ctx *c, const char *name, long min, long max, long def, long *out)
{
	const char *s = http_query(c, name);
	char msg[96];
	*out = def;
	if (!s || !*s)
		return 0;
	if (util_parse_long(s, min, max, out)) {
		snprintf(msg, sizeof(msg), "must be an integer from %ld to %ld", min, max);
		http_invalid(c, name, msg);
		return -1;
	}
	return 0;
}

static void listed(struct http_ctx *c, PGresult *res)
{
	struct page *pg = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	json_t *out = json_object();
	json_object_set_new(out, "items", pgjson_cell(res, 0, 1));
	json_object_set_new(out, "total", pgjson_cell(res, 0, 0));
	json_object_set_new(out, "skip", json_integer(pg->skip));
	json_object_set_new(out, "limit", json_integer(pg->limit));
	http_reply_json(c, 200, out);
}

static void list_company(struct http_ctx *c)
{
	struct page *pg = xcalloc(1, sizeof(*pg));
	char cid[24], skip[24], limit[24];
	c->state = pg;
	c->state_free = free;
	if (query_long_or_reply(c, "skip", 0, 2147483647L, 0, &pg->skip) ||
	    query_long_or_reply(c, "limit", 1, cfg.list_max, 50 < cfg.list_max ? 50 : cfg.list_max, &pg->limit))
		return;
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	snprintf(skip, sizeof(skip), "%ld", pg->skip);
	snprintf(limit, sizeof(limit), "%ld", pg->limit);
	const char *p[3] = {cid, skip, limit};
	/* the page walks dead_letters_company_idx (company_id, created_at, id) backwards */
	http_db(c,
	        "SELECT (SELECT count(*) FROM dead_letters WHERE company_id = $1) AS total,"
	        " (SELECT COALESCE(json_agg(json_build_object('id', id, 'company_id', company_id,"
	        "   'stream_id', stream_id, 'entry', entry, 'reason', reason, 'deliveries', deliveries,"
	        "   'created_at', api_ts(created_at)) ORDER BY created_at DESC, id DESC), '[]'::json)"
	        "  FROM (SELECT * FROM dead_letters WHERE company_id = $1"
	        "   ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT $3) t) AS items",
	        3, p, listed);
}

/* The company's admins, and superusers. */
static void list(struct http_ctx *c)
{
	if (!c->user.is_superuser && !require_admin_or_reply(c))
		return;
	company_from_path(c, list_company);
}

static const struct route routes[] = {
    {"GET", "/api/{company}/dead-letters", list, AUTH_JWT, 0},
};

void deadletters_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
