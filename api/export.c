/*
 * Numbers work that runs as a job (SPEC §4 "Long work is a job"): the export
 * (workers/export) and bulk actions over more than BULK_SYNC_LIMIT numbers
 * (workers/bulk). api/numbers.c parses and scopes the selection; this file
 * turns it into the job's params and waits for the job (api/jobs.c).
 */
#include <stdlib.h>

#include "api.h"
#include "selection.h"

void numbers_export_start(struct http_ctx *c, const struct selection *sel)
{
	json_t *params = json_pack("{s:o}", "selection", selection_to_json(sel));
	struct job_new spec = {.kind = JOB_EXPORT, .company_id = sel->company_id, .params = params};
	log_info("event=export_requested company=%ld select_all=%d ids=%zu", sel->company_id, sel->select_all,
	         sel->nids);
	jobs_start(c, &spec, jobs_reply_file);
	json_decref(params);
}

void numbers_bulk_job_start(struct http_ctx *c, const struct selection *sel, enum numaction action,
                            const char *new_status)
{
	json_t *params = json_pack("{s:o, s:s, s:s?, s:b}", "selection", selection_to_json(sel), "action",
	                           numaction_name(action), "status", new_status, "superuser", c->user.is_superuser);
	struct job_new spec = {.kind = JOB_BULK, .company_id = sel->company_id, .params = params};
	log_info("event=bulk_job_requested company=%ld action=%s", sel->company_id, numaction_name(action));
	jobs_start(c, &spec, jobs_reply_result);
	json_decref(params);
}
