/*
 * `dialerctl import` (cli/import.h): the file is copied into DATA_DIR/uploads and the job created
 * with jobs_create, as the API does, then followed through its row (jobs_get) every 200 ms, its
 * progress shown by cli/progress.
 * Direct rather than through the API: an operator on the server needs no account or token, and a
 * file of any size goes in without UPLOAD_MAX_BYTES.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "import.h"
#include "jobs.h"
#include "progress.h"
#include "rds.h"
#include "util.h"

/* Copies path into a new DATA_DIR/uploads file; rel gets its relative name. */
static int copy_in(const char *path, char *rel, size_t rellen)
{
	char buf[1 << 16];
	int in = open(path, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
	ssize_t n;
	if (in < 0) {
		fprintf(stderr, "dialerctl: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	out = jobs_file_create("uploads", ".upload", rel, rellen);
	if (out < 0) {
		fprintf(stderr, "dialerctl: cannot create a file under %s/uploads: %s\n", cfg.data_dir,
		        strerror(errno));
		goto done;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w <= 0) {
				fprintf(stderr, "dialerctl: cannot copy %s: %s\n", path, strerror(errno));
				goto done;
			}
			off += w;
		}
	if (n < 0) {
		fprintf(stderr, "dialerctl: cannot read %s: %s\n", path, strerror(errno));
		goto done;
	}
	rc = 0;
done:
	close(in);
	if (out >= 0 && close(out))
		rc = -1;
	if (rc && out >= 0)
		jobs_file_remove(rel);
	return rc;
}

static long company_id_of(PGconn *db, const char *company)
{
	const char *p[1] = {company};
	PGresult *res = db_exec(db, "SELECT id FROM companies WHERE name = $1 OR id::text = $1", 1, p);
	long id = res && PQntuples(res) == 1 ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	return id;
}

int import_main(int argc, char **argv)
{
	const char *file = NULL, *company = NULL;
	char rel[128];
	PGconn *db = NULL;
	redisContext *redis = NULL;
	long long id = 0;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--company") && i + 1 < argc)
			company = argv[++i];
		else if (argv[i][0] != '-' && !file)
			file = argv[i];
		else {
			fprintf(stderr, "usage:\n" IMPORT_USAGE);
			return 2;
		}
	}
	if (!file) {
		fprintf(stderr, "usage:\n" IMPORT_USAGE);
		return 2;
	}
	db = db_connect(cfg.database_url, NULL);
	redis = rds_connect_sync(cfg.redis_url, NULL);
	if (!db || !redis) {
		fprintf(stderr, "dialerctl: cannot connect to %s\n", !db ? "DATABASE_URL" : "REDIS_URL");
		goto out;
	}
	long cid = 0;
	if (company && !(cid = company_id_of(db, company))) {
		fprintf(stderr, "dialerctl: company not found: %s\n", company);
		goto out;
	}
	if (copy_in(file, rel, sizeof(rel)))
		goto out;
	const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
	json_t *params = json_pack("{s:s}", "source", "dialerctl");
	int crc = jobs_create(db, redis, JOB_IMPORT, cid, params, rel, base, NULL, 0, &id);
	json_decref(params);
	if (crc) {
		/* jobs_create deleted the copy */
		fprintf(stderr, "dialerctl: cannot create the job (see the log line above)\n");
		goto out;
	}
	/* times and rates from here: the wait for a worker is part of what the operator waits for */
	struct progress bar;
	char label[48];
	snprintf(label, sizeof(label), "import job %lld", id);
	progress_init(&bar, stderr, label);
	fprintf(stderr, "%s queued\n", label);
	for (;;) {
		json_t *job = jobs_get(db, id);
		if (!job) {
			if (PQstatus(db) == CONNECTION_OK) { /* the row is gone (its company was deleted) */
				fprintf(stderr, "dialerctl: job %lld no longer exists\n", id);
				goto out;
			}
			PQreset(db);
			usleep(500000);
			continue;
		}
		const char *status = json_string_value(json_object_get(job, "status"));
		json_t *pr = json_object_get(job, "progress");
		long done = (long)json_integer_value(json_object_get(pr, "done"));
		long total = (long)json_integer_value(json_object_get(pr, "total"));
		bool final = status && (!strcmp(status, "completed") || !strcmp(status, "failed"));
		if (final) {
			if (!strcmp(status, "completed")) {
				progress_finish(&bar, done, total);
				char *s = json_dumps(json_object_get(job, "result"), JSON_INDENT(2));
				printf("%s\n", s);
				free(s);
				fprintf(stderr, "%s completed in %.1f s\n", label, progress_elapsed(&bar));
				rc = 0;
			} else {
				if (bar.drawn)
					fputc('\n', stderr);
				fprintf(stderr, "dialerctl: import failed: %s\n",
				        json_string_value(json_object_get(job, "error")));
			}
			json_decref(job);
			break;
		}
		if (status && !strcmp(status, "running"))
			progress_update(&bar, done, total);
		json_decref(job);
		usleep(200000);
	}
out:
	if (redis)
		redisFree(redis);
	PQfinish(db);
	return rc;
}
