/*
 * Blocking libpq helpers and the migration runner. Migrations are plain SQL
 * files applied in name order; each runs inside BEGIN/COMMIT together with its
 * schema_migrations row, all under pg_advisory_lock.
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"

#define MIGRATE_LOCK_KEY "7423100001"

PGconn *db_connect(const char *conninfo, volatile int *stop)
{
	int backoff = 100;
	bool logged = false;
	/* a dead server or network fails the call within ~30 s instead of blocking forever */
	const char *kw[] = {
	    "dbname",          "application_name",    "options",          "connect_timeout",  "keepalives",
	    "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout", NULL};
	const char *vals[] = {conninfo, "dialer", "-c TimeZone=UTC", "5", "1", "30", "10", "3", "30000", NULL};
	for (;;) {
		PGconn *pg = PQconnectdbParams(kw, vals, 1);
		if (pg && PQstatus(pg) == CONNECTION_OK) {
			if (logged)
				log_info("event=db_up");
			return pg;
		}
		if (!logged) {
			char msg[256];
			snprintf(msg, sizeof(msg), "%s", pg ? PQerrorMessage(pg) : "out of memory");
			for (char *p = msg; *p; p++)
				if (*p == '\n' || *p == '"')
					*p = ' ';
			log_warn("event=db_down error=\"%s\"", msg);
		}
		logged = true;
		PQfinish(pg);
		if (!stop || *stop)
			return NULL;
		usleep((useconds_t)backoff * 1000);
		backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
		if (*stop)
			return NULL;
	}
}

const char *db_error_message(PGconn *pg, const PGresult *r)
{
	const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (m)
		return m;
	m = pg ? PQerrorMessage(pg) : NULL;
	return m && *m ? m : "connection lost";
}

PGresult *db_exec(PGconn *pg, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '"')
			*p = ' ';
	log_error("event=sql_failed error=\"%s\"", msg);
	PQclear(res);
	return NULL;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *default_schema_dir(void)
{
	const char *env = getenv("DIALER_SCHEMA_DIR");
	char exe[PATH_MAX];
	if (env && *env)
		return xstrdup(env);
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return xstrdup("schema");
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	/* bin/ → ../schema; build/asan/bin → ../../../schema */
	const char *ups[] = {"/../schema", "/../../../schema"};
	for (size_t i = 0; i < ARRAY_LEN(ups); i++) {
		char *cand = xasprintf("%s%s", exe, ups[i]);
		if (access(cand, R_OK) == 0)
			return cand;
		free(cand);
	}
	return xstrdup("schema");
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = xmalloc((size_t)n + 1);
		if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		} else {
			buf[n] = '\0';
		}
	}
	fclose(f);
	return buf;
}

static bool exec_simple(PGconn *pg, const char *sql, const char *what)
{
	PGresult *res = PQexec(pg, sql);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
		for (char *p = msg; *p; p++)
			if (*p == '\n' || *p == '"')
				*p = ' ';
		log_error("event=migrate_failed step=%s error=\"%s\"", what, msg);
	}
	PQclear(res);
	return ok;
}

int db_migrate(PGconn *pg, const char *dir_in)
{
	char *dir = dir_in ? xstrdup(dir_in) : default_schema_dir();
	char **names = NULL;
	size_t n = 0, cap = 0;
	int applied = 0, rc = -1;
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d) {
		log_error("event=migrate_failed error=\"cannot open schema dir %s\"", dir);
		free(dir);
		return -1;
	}
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l < 5 || strcmp(e->d_name + l - 4, ".sql") || e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			names = xrealloc(names, cap * sizeof(char *));
		}
		names[n++] = xstrdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(char *), name_cmp);

	if (!exec_simple(pg, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "lock"))
		goto out;
	if (!exec_simple(pg,
	                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
	                 " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
	                 "bootstrap"))
		goto unlock;
	for (size_t i = 0; i < n; i++) {
		const char *p[1] = {names[i]};
		PGresult *res = db_exec(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, p);
		if (!res)
			goto unlock;
		int have = PQntuples(res);
		PQclear(res);
		if (have)
			continue;
		char *path = xasprintf("%s/%s", dir, names[i]);
		char *sql = read_file(path);
		free(path);
		if (!sql) {
			log_error("event=migrate_failed file=%s error=\"cannot read\"", names[i]);
			goto unlock;
		}
		bool ok = exec_simple(pg, "BEGIN", "begin") && exec_simple(pg, sql, names[i]);
		free(sql);
		if (ok) {
			res = db_exec(pg, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, p);
			ok = res != NULL;
			PQclear(res);
		}
		if (!ok || !exec_simple(pg, "COMMIT", "commit")) {
			exec_simple(pg, "ROLLBACK", "rollback");
			goto unlock;
		}
		log_info("event=migration_applied version=%s", names[i]);
		applied++;
	}
	rc = applied;
unlock:
	exec_simple(pg, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", "unlock");
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(dir);
	return rc;
}
