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

static void list_company(struct http_ctx *c)
{
	struct list_page *pg = xcalloc(1, sizeof(*pg));
	char cid[24], skip[24], limit[24];
	c->state = pg;
	c->state_free = free;
	if (query_page_or_reply(c, &pg->skip, &pg->limit))
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
	        3, p, list_page_done);
}

/* The company's admins, and superusers. */
static void list(struct http_ctx *c)
{
	if (!require_admin_or_reply(c))
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
