/*
 * Batch locks older than ASSIGNMENT_TIMEOUT_MINUTES go back to the queue
 * (SPEC §3 Locks): the dialer that took them never reported. In bulk, through
 * the partial index on numbers.assigned_at.
 */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "db.h"
#include "metrics.h"
#include "scheduler.h"

/* Oldest first, through numbers_assigned_at_idx; a row another transaction
 * holds (a result being applied, which clears the lock itself) is skipped. */
static const char RETURN_SQL[] =
    "UPDATE numbers n SET assigned_at = NULL, assigned_batch_id = NULL, assigned_company_id = NULL"
    " FROM (SELECT id FROM numbers WHERE assigned_at < now() - make_interval(mins => $1::integer)"
    "        ORDER BY assigned_at LIMIT $2::integer FOR UPDATE SKIP LOCKED) s"
    " WHERE n.id = s.id";

int sched_return_locks(struct worker_ctx *w, long long *returned)
{
	char mins[16], limit[16];
	PGresult *res;

	*returned = 0;
	snprintf(mins, sizeof(mins), "%d", cfg.assignment_timeout_minutes);
	snprintf(limit, sizeof(limit), "%d", SCHED_SWEEP_BATCH);
	const char *p[2] = {mins, limit};
	res = db_exec(w->db, RETURN_SQL, 2, p);
	if (!res) {
		metrics_count("scheduler_lock_sweeps_failed", 1);
		return -1;
	}
	*returned = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	metrics_count("scheduler_lock_sweeps", 1);
	metrics_count("scheduler_locks_returned", (uint64_t)*returned);
	if (*returned > 0)
		log_info("event=locks_returned count=%lld timeout_minutes=%d", *returned,
		         cfg.assignment_timeout_minutes);
	else
		log_debug("event=locks_returned count=0 timeout_minutes=%d", cfg.assignment_timeout_minutes);
	return 0;
}
