/*
 * dialerctl export: the operator's way to export numbers without the API. The
 * company and the filters mean what they mean on POST /api/numbers/export
 * (the same selection builder); the work is done here, not by a job, so it
 * needs nothing running but PostgreSQL (docs/decisions.md).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "export.h"
#include "progress.h"
#include "selection.h"
#include "tz.h"
#include "util.h"
#include "xlsxexport.h"

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	UNUSED(sig);
	interrupted = 1;
}

static int on_progress(void *arg, long done, long total)
{
	progress_update(arg, done, total);
	return interrupted ? -1 : 0;
}

static int usage_error(const char *what, const char *value)
{
	fprintf(stderr, "dialerctl export: %s%s%s\nusage:\n" EXPORT_USAGE, what, value ? ": " : "", value ? value : "");
	return 2;
}

/* The company's id from a number or a slug; 0 after printing why not. */
static long company_lookup(PGconn *pg, const char *company)
{
	const char *p[1] = {company};
	long id = 0;
	PGresult *r =
	    db_exec(pg, "SELECT id FROM companies WHERE id::text = $1 OR name = $1 ORDER BY id::text = $1 DESC", 1, p);
	if (r && PQntuples(r) > 0)
		id = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	else if (r)
		fprintf(stderr, "dialerctl export: company not found: %s\n", company);
	PQclear(r);
	return id;
}

/* The company's users the search names (selection.h); *out caller frees. */
static int search_agents(PGconn *pg, long company, const char *search, long long **out, size_t *n)
{
	char *phone, *name, cid[24];
	*out = NULL;
	*n = 0;
	if (!company || selection_search_patterns(search, &phone, &name))
		return 0;
	snprintf(cid, sizeof(cid), "%ld", company);
	const char *p[3] = {cid, name, phone};
	PGresult *r = db_exec(pg, SELECTION_SEARCH_AGENTS_SQL, 3, p);
	free(phone);
	free(name);
	if (!r)
		return -1;
	*n = (size_t)PQntuples(r);
	*out = xmalloc((*n ? *n : 1) * sizeof(**out));
	for (size_t i = 0; i < *n; i++)
		(*out)[i] = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
	PQclear(r);
	return 0;
}

/* The directory part of path ("." when it has none). Caller frees. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

int export_main(int argc, char **argv)
{
	struct selection sel = {.select_all = true};
	const char *out = NULL, *company = NULL, *sort_by = NULL, *sort_order = NULL, *start = NULL, *end = NULL;
	PGconn *pg = NULL;
	long long *agents = NULL;
	char *part = NULL, *dir = NULL, err[256];
	int rc = 1;
	long rows = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char **slot = !strcmp(a, "--out")             ? &out
		                    : !strcmp(a, "--company")       ? &company
		                    : !strcmp(a, "--status")        ? &sel.status
		                    : !strcmp(a, "--global-status") ? &sel.global_status
		                    : !strcmp(a, "--search")        ? &sel.search
		                    : !strcmp(a, "--start-date")    ? &start
		                    : !strcmp(a, "--end-date")      ? &end
		                    : !strcmp(a, "--sort-by")       ? &sort_by
		                    : !strcmp(a, "--sort-order")    ? &sort_order
		                                                    : NULL;
		if (!strcmp(a, "--agent-id")) {
			long id;
			if (!v || util_parse_long(v, 1, 2147483647L, &id))
				return usage_error("--agent-id needs a positive integer", v);
			sel.agent_id = id;
			i++;
			continue;
		}
		if (!slot)
			return usage_error("unknown argument", a);
		if (!v)
			return usage_error("missing value for", a);
		*slot = v;
		i++;
	}
	if (!out || !*out)
		return usage_error("--out FILE is required", NULL);
	if (sel.status && !selection_status_valid(sel.status))
		return usage_error("unknown --status", sel.status);
	if (sel.global_status && !selection_global_status_valid(sel.global_status))
		return usage_error("unknown --global-status", sel.global_status);
	if (sel.search && util_utf8_chars(sel.search) > SELECTION_SEARCH_MAX)
		return usage_error("--search is longer than 100 characters", NULL);
	if (selection_parse_sort(sort_by, sort_order, &sel.sort, &sel.ascending))
		return usage_error("--sort-by must be created_at, last_attempt_at or status, --sort-order asc or desc",
		                   NULL);
	if (start && tz_local_day_start(start, 0, &sel.start))
		return usage_error("invalid --start-date", start);
	if (end && tz_local_day_start(end, 1, &sel.end))
		return usage_error("invalid --end-date", end);
	sel.has_start = start != NULL;
	sel.has_end = end != NULL;

	pg = db_connect(cfg.database_url, NULL);
	if (!pg) {
		fprintf(stderr, "dialerctl export: cannot connect to DATABASE_URL\n");
		return 1;
	}
	PQclear(db_exec(pg, "SET statement_timeout = 0", 0, NULL));
	if (company && !(sel.company_id = company_lookup(pg, company)))
		goto out;
	if (search_agents(pg, sel.company_id, sel.search, &agents, &sel.nsearch_agents))
		goto out;
	sel.search_agents = agents;

	part = xasprintf("%s.part", out);
	dir = dir_of(out);
	struct progress pr;
	progress_init(&pr, stderr, "export");
	struct xlsxexport_opts opts = {.path = part, .tmpdir = dir, .every = 5000, .progress = on_progress, .arg = &pr};
	signal(SIGINT, on_interrupt);
	signal(SIGTERM, on_interrupt);
	if (xlsxexport_write(pg, &sel, &opts, &rows, err, sizeof(err))) {
		if (pr.drawn)
			fputc('\n', stderr);
		fprintf(stderr, "dialerctl export: %s\n", err);
		goto out;
	}
	if (rename(part, out)) {
		fprintf(stderr, "dialerctl export: cannot rename %s to %s: %m\n", part, out);
		unlink(part);
		goto out;
	}
	progress_finish(&pr, rows, rows);
	printf("exported %ld rows to %s in %.2f s\n", rows, out, progress_elapsed(&pr));
	rc = 0;
out:
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	free(part);
	free(dir);
	free(agents);
	PQfinish(pg);
	return rc;
}
