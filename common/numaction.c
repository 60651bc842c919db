/*
 * The numbers actions' statement: cur = the selected numbers, locked, with the
 * target company's status; ok = those the caller may change; the change
 * applied to ok; then the counts (numaction.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "numaction.h"

const char *numaction_name(enum numaction act)
{
	return act == NUMACTION_DELETE ? "delete" : act == NUMACTION_RESET ? "reset" : "update_status";
}

char *numaction_sql(struct selection_query *q, enum numaction act, bool superuser, long company_id,
                    const char *new_status, long chunk, const char *after_id)
{
	char cid[24], lim[24], *change, *cur, *sql;
	snprintf(cid, sizeof(cid), "%ld", company_id);
	/* only parameters the statement uses: PostgreSQL counts them from the text */
	int ks = selection_param(q, superuser ? "true" : "false");
	int kc = act == NUMACTION_DELETE ? 0 : selection_param(q, cid);
	int kt = act == NUMACTION_STATUS ? selection_param(q, new_status) : 0;
	switch (act) {
	case NUMACTION_DELETE:
		change = xasprintf("d AS (DELETE FROM numbers WHERE id IN (SELECT id FROM ok) RETURNING 1)");
		break;
	case NUMACTION_RESET:
		change = xasprintf("d AS (DELETE FROM number_state WHERE company_id = $%d::int AND number_id IN"
		                   " (SELECT id FROM ok) RETURNING 1), u AS (DELETE FROM number_locks"
		                   " WHERE number_id IN (SELECT id FROM ok) RETURNING 1)",
		                   kc);
		break;
	default:
		/* IN_QUEUE makes a number dialable again, as a reset does (COMPAT preface 5) */
		change = xasprintf("d AS (DELETE FROM number_state WHERE $%d = 'IN_QUEUE' AND company_id = $%d::int"
		                   " AND number_id IN (SELECT id FROM ok) RETURNING 1), "
		                   "co AS (SELECT id FROM companies WHERE id = $%d::int FOR KEY SHARE), "
		                   "i AS (INSERT INTO number_state (company_id, number_id, status)"
		                   " SELECT co.id, ok.id, $%d FROM ok, co WHERE $%d <> 'IN_QUEUE'"
		                   " ON CONFLICT (company_id, number_id) DO UPDATE SET status = EXCLUDED.status,"
		                   " updated_at = now() RETURNING 1), "
		                   "u AS (UPDATE numbers SET global_status = global_status_for($%d)"
		                   " WHERE id IN (SELECT id FROM ok) RETURNING 1), "
		                   "l AS (DELETE FROM number_locks WHERE $%d = 'IN_QUEUE'"
		                   " AND number_id IN (SELECT id FROM ok) RETURNING 1)",
		                   kt, kc, kc, kt, kt, kt, kt);
	}
	if (chunk > 0) {
		snprintf(lim, sizeof(lim), "%ld", chunk);
		int ka = selection_param(q, after_id);
		int kl = selection_param(q, lim);
		cur =
		    xasprintf("SELECT n.id, s.status %s AND n.id > $%d::bigint ORDER BY n.id LIMIT $%d FOR UPDATE OF n",
		              q->from_where, ka, kl);
	} else {
		cur = xasprintf("SELECT n.id, s.status %s FOR UPDATE OF n", q->from_where);
	}
	sql = xasprintf("WITH cur AS (%s), ok AS (SELECT id FROM cur"
	                " WHERE $%d::boolean OR status IS NULL OR status IN " SELECTION_MUTABLE_SQL "), %s"
	                " SELECT (SELECT count(*) FROM cur), (SELECT count(*) FROM ok),"
	                " (SELECT status FROM cur LIMIT 1), (SELECT max(id) FROM cur)",
	                cur, ks, change);
	free(cur);
	free(change);
	return sql;
}

json_t *numaction_result(enum numaction act, long matched, long changed)
{
	return json_pack("{s:I, s:I, s:I, s:I}", "updated", (json_int_t)(act == NUMACTION_STATUS ? changed : 0),
	                 "reset", (json_int_t)(act == NUMACTION_RESET ? changed : 0), "deleted",
	                 (json_int_t)(act == NUMACTION_DELETE ? changed : 0), "skipped_immutable",
	                 (json_int_t)(matched - changed));
}
