/*
 * Export worker (dialer-export): claims export jobs (common/jobs) and writes
 * each selection to DATA_DIR/exports/ with common/xlsxexport: the rows into
 * job-<id>.xlsx.part, renamed onto the job's file name once complete, so a
 * download never sees half a file. The files expire after EXPORT_TTL_HOURS
 * (the jobs core's sweep deletes them; their download answers 410).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "jobs.h"
#include "selection.h"
#include "worker.h"
#include "xlsxexport.h"

/* Progress every this many rows; job_progress itself writes at most every 500 ms. */
#define PROGRESS_ROWS 2000

static int on_progress(void *arg, long done, long total)
{
	return job_progress(arg, done, total);
}

static int run_export(struct job_ctx *j)
{
	struct selection sel;
	struct selection_arrays arr;
	char rel[128] = "", path[4096], part[4096], dir[4096], partrel[64], err[256];
	long rows = 0;
	int rc = -1, fd;

	if (selection_from_json(json_object_get(j->params, "selection"), &sel, &arr)) {
		snprintf(j->err, sizeof(j->err), "invalid export parameters");
		return -1;
	}
	sel.company_id = j->company_id; /* the job's company, whatever the params say */
	fd = jobs_file_create("exports", ".xlsx", rel, sizeof(rel));
	snprintf(partrel, sizeof(partrel), "exports/job-%lld.xlsx.part", j->id);
	if (fd < 0 || jobs_path(path, sizeof(path), rel) || jobs_path(part, sizeof(part), partrel) ||
	    jobs_path(dir, sizeof(dir), "exports")) {
		snprintf(j->err, sizeof(j->err), "cannot create the export file under DATA_DIR: %m");
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);

	struct xlsxexport_opts opts = {
	    .path = part, .tmpdir = dir, .every = PROGRESS_ROWS, .progress = on_progress, .arg = j};
	if (xlsxexport_write(j->w->db, &sel, &opts, &rows, err, sizeof(err))) {
		snprintf(j->err, sizeof(j->err), "export failed: %s", err);
		goto out;
	}
	if (rename(part, path)) {
		snprintf(j->err, sizeof(j->err), "cannot rename the export file: %m");
		unlink(part);
		goto out;
	}
	json_t *result = json_pack("{s:I, s:s}", "rows", (json_int_t)rows, "file_name", XLSXEXPORT_FILE_NAME);
	int done =
	    job_complete(j, NULL, result, rel, XLSXEXPORT_FILE_NAME, XLSXEXPORT_CONTENT_TYPE, cfg.export_ttl_hours);
	json_decref(result);
	if (done == 0) {
		log_info("event=export_written job_id=%lld rows=%ld file=%s", j->id, rows, rel);
		rc = 0;
	}
out:
	if (rc)
		jobs_file_remove(rel[0] ? rel : NULL);
	selection_arrays_free(&arr);
	return rc;
}

static const struct job_runner runner = {.kind = JOB_EXPORT, .run = run_export};

int main(void)
{
	return jobs_worker_main(&runner);
}
