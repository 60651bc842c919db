/*
 * Bulk worker (dialer-bulk): claims bulk jobs (common/jobs), the bulk actions
 * of POST /api/numbers/bulk over more than BULK_SYNC_LIMIT numbers. The
 * action's statement is the API's own (common/numaction), run chunk by chunk
 * in id order, each chunk its own transaction: row locks are held briefly,
 * progress moves, and the result has the synchronous answer's shape. After
 * each chunk that changed numbers the dialer's hoppers are flushed, as the
 * API does after its synchronous bulk.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "hopper.h"
#include "jobs.h"
#include "numaction.h"
#include "selection.h"
#include "worker.h"

static int parse_action(const char *s, enum numaction *out)
{
	static const enum numaction all[] = {NUMACTION_STATUS, NUMACTION_DELETE, NUMACTION_RESET};
	for (size_t i = 0; s && i < ARRAY_LEN(all); i++)
		if (!strcmp(s, numaction_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	return -1;
}

/* The selection's size, for progress. */
static long count_selected(PGconn *db, const struct selection *sel)
{
	struct selection_query q;
	long n = -1;
	if (selection_build(sel, &q))
		return -1;
	char *sql = xasprintf("SELECT count(*) %s", q.from_where);
	PGresult *r = db_exec(db, sql, q.nparams, q.params);
	if (r)
		n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	free(sql);
	selection_query_free(&q);
	return n;
}

static int run_bulk(struct job_ctx *j)
{
	struct selection sel;
	struct selection_arrays arr;
	enum numaction act;
	const char *status = json_string_value(json_object_get(j->params, "status"));
	bool superuser = json_is_true(json_object_get(j->params, "superuser"));
	char after[24] = "0";
	long matched = 0, changed = 0;
	int rc = -1;

	if (selection_from_json(json_object_get(j->params, "selection"), &sel, &arr) ||
	    parse_action(json_string_value(json_object_get(j->params, "action")), &act) ||
	    (act == NUMACTION_STATUS && !selection_status_valid(status)) ||
	    (act != NUMACTION_DELETE && !j->company_id)) {
		snprintf(j->err, sizeof(j->err), "invalid bulk parameters");
		goto out;
	}
	sel.company_id = j->company_id;
	long total = count_selected(j->w->db, &sel);
	if (total < 0) {
		snprintf(j->err, sizeof(j->err), "database error while counting the selection");
		goto out;
	}
	if (job_progress(j, 0, total))
		goto out;
	for (;;) {
		struct selection_query q;
		if (selection_build(&sel, &q)) {
			snprintf(j->err, sizeof(j->err), "invalid bulk parameters");
			goto out;
		}
		char *sql = numaction_sql(&q, act, superuser, j->company_id, status, NUMACTION_CHUNK, after);
		PGresult *r = db_exec(j->w->db, sql, q.nparams, q.params);
		free(sql);
		selection_query_free(&q);
		if (!r) {
			snprintf(
			    j->err, sizeof(j->err),
			    "database error after %ld of %ld numbers (those are done; run the action again for the "
			    "rest)",
			    matched, total);
			goto out;
		}
		long m = strtol(PQgetvalue(r, 0, 0), NULL, 10), c = strtol(PQgetvalue(r, 0, 1), NULL, 10);
		matched += m;
		changed += c;
		/* as the API after its own bulk: candidates read before this chunk's commit are not
		 * dispatched after it (common/hopper.h); a failure is logged, and those entries are
		 * dropped after HOPPER_MAX_AGE_MS anyway */
		if (c > 0 && hopper_flush_sync(j->w->redis, 0))
			log_warn("event=hopper_flush_failed job_id=%lld", j->id);
		if (!PQgetisnull(r, 0, 3))
			snprintf(after, sizeof(after), "%s", PQgetvalue(r, 0, 3));
		PQclear(r);
		if (job_progress(j, matched, total > matched ? total : matched))
			goto out;
		if (m < NUMACTION_CHUNK)
			break;
	}
	log_info("event=numbers_bulk action=%s company=%ld matched=%ld done=%ld job_id=%lld", numaction_name(act),
	         j->company_id, matched, changed, j->id);
	json_t *result = numaction_result(act, matched, changed);
	rc = job_complete(j, NULL, result, NULL, NULL, NULL, 0) == 0 ? 0 : -1;
	json_decref(result);
out:
	selection_arrays_free(&arr);
	return rc;
}

static const struct job_runner runner = {.kind = JOB_BULK, .run = run_bulk};

int main(void)
{
	return jobs_worker_main(&runner);
}
