/*
 * dialerctl: the operator CLI. migrate (schema + default company), bootstrap
 * (first superuser when there are no users), create-admin, config (effective
 * configuration, secrets masked), simulate (a call center against the API,
 * cli/simulate.c), import (a number file as an import job, cli/import.c), export (numbers to
 * XLSX, cli/export.c), stats-rebuild (the stats rollups and number counters counted again).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authn.h"
#include "config.h"
#include "db.h"
#include "export.h"
#include "import.h"
#include "simulate.h"
#include "util.h"

#define BCRYPT_COST 12

static int usage(void)
{
	fprintf(stderr, "usage: dialerctl migrate\n"
	                "       dialerctl bootstrap\n"
	                "       dialerctl create-admin USERNAME PASSWORD [--role ADMIN|AGENT] [--company SLUG]"
	                " [--superuser]\n"
	                "       dialerctl config\n"
	                "       dialerctl stats-rebuild [--numbers]\n" SIMULATE_USAGE IMPORT_USAGE EXPORT_USAGE
	                "The first user ever created is a superuser. Configuration comes from the environment"
	                " and .env.\n");
	return 2;
}

static PGconn *connect_or_die(void)
{
	PGconn *pg = db_connect(cfg.database_url, NULL);
	if (!pg)
		fprintf(stderr, "dialerctl: cannot connect to DATABASE_URL\n");
	return pg;
}

static int cmd_migrate(void)
{
	PGconn *pg = connect_or_die();
	int rc = 1;
	if (!pg)
		return 1;
	int n = db_migrate(pg, NULL);
	if (n >= 0) {
		const char *p[1] = {cfg.default_company};
		PGresult *res = db_exec(pg,
		                        "INSERT INTO companies (name, display_name) VALUES ($1, $1)"
		                        " ON CONFLICT (name) DO NOTHING",
		                        1, p);
		if (res) {
			printf("migrations applied: %d; default company \"%s\" ready\n", n, cfg.default_company);
			rc = 0;
		}
		PQclear(res);
	}
	PQfinish(pg);
	return rc;
}

/* No user exists yet (the first one becomes a superuser); -1 when the query failed. */
static int no_users(PGconn *pg)
{
	PGresult *res = db_exec(pg, "SELECT count(*) FROM users", 0, NULL);
	int rc = res ? !strcmp(PQgetvalue(res, 0, 0), "0") : -1;
	PQclear(res);
	return rc;
}

/* Inserts a user (a superuser, with no company, when asked). */
static int create_user(PGconn *pg, const char *user, const char *pass, const char *role, const char *company,
                       bool superuser)
{
	char *hash = NULL;
	PGresult *res = NULL;
	int rc = 1;
	if (strlen(pass) > AUTHN_PASSWORD_MAX || !*pass || !*user) {
		fprintf(stderr, "dialerctl: username and password must be non-empty; password at most 72 bytes\n");
		return 1;
	}
	if (strcmp(role, "ADMIN") && strcmp(role, "AGENT")) {
		fprintf(stderr, "dialerctl: --role must be ADMIN or AGENT\n");
		return 1;
	}
	hash = authn_password_hash(pass, BCRYPT_COST);
	if (!hash) {
		fprintf(stderr, "dialerctl: cannot hash the password\n");
		goto out;
	}
	const char *p[5] = {user, hash, superuser ? "ADMIN" : role, superuser ? "true" : "false",
	                    superuser ? NULL : company};
	res = PQexecParams(pg,
	                   "INSERT INTO users (username, hashed_password, role, is_superuser, company_id)"
	                   " VALUES ($1, $2, $3, $4, (SELECT id FROM companies WHERE name = $5)) RETURNING id",
	                   5, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (state && !strcmp(state, "23505"))
			fprintf(stderr, "dialerctl: username %s already exists\n", user);
		else
			fprintf(stderr, "dialerctl: cannot create user: %s", PQresultErrorMessage(res));
		goto out;
	}
	printf("created %s %s (id %s)%s%s\n", superuser ? "superuser" : role, user, PQgetvalue(res, 0, 0),
	       superuser ? "" : " in company ", superuser ? "" : company);
	rc = 0;
out:
	PQclear(res);
	free(hash);
	return rc;
}

static int cmd_create_admin(int argc, char **argv)
{
	const char *role = "ADMIN", *company = cfg.default_company;
	bool superuser = false;
	if (argc < 4)
		return usage();
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--role") && i + 1 < argc)
			role = argv[++i];
		else if (!strcmp(argv[i], "--company") && i + 1 < argc)
			company = argv[++i];
		else if (!strcmp(argv[i], "--superuser"))
			superuser = true;
		else
			return usage();
	}
	PGconn *pg = connect_or_die();
	if (!pg)
		return 1;
	int first = no_users(pg);
	if (first < 0) {
		PQfinish(pg);
		return 1;
	}
	superuser = superuser || first; /* the first user ever is a superuser */
	if (!superuser) {
		const char *p[1] = {company};
		PGresult *res = db_exec(pg, "SELECT 1 FROM companies WHERE name = $1", 1, p);
		bool found = res && PQntuples(res) == 1;
		PQclear(res);
		if (!found) {
			fprintf(stderr, "dialerctl: company %s not found (run dialerctl migrate first?)\n", company);
			PQfinish(pg);
			return 1;
		}
	}
	int rc = create_user(pg, argv[2], argv[3], role, company, superuser);
	PQfinish(pg);
	return rc;
}

/* First superuser for `make run`: ADMIN_USERNAME / ADMIN_PASSWORD (generated and printed when unset). */
static int cmd_bootstrap(void)
{
	PGconn *pg = connect_or_die();
	int rc = 1;
	char gen[33];
	if (!pg)
		return 1;
	int first = no_users(pg);
	if (first < 0)
		goto out;
	if (!first) {
		printf("users exist; no superuser created\n");
		rc = 0;
		goto out;
	}
	const char *pass = cfg.admin_password;
	if (!pass) {
		if (util_random_hex(gen, 12))
			goto out;
		pass = gen;
	}
	rc = create_user(pg, cfg.admin_username, pass, "ADMIN", NULL, true);
	if (rc == 0 && !cfg.admin_password)
		printf("generated password for %s: %s  (set ADMIN_PASSWORD to choose one)\n", cfg.admin_username, pass);
out:
	PQfinish(pg);
	return rc;
}

/*
 * Asks the stats worker to rebuild the rollups from call_attempts (after attempts were written
 * or removed by hand); with --numbers, counts numbers-summary's counters again now (writers of
 * numbers and number_state wait meanwhile).
 */
static int cmd_stats_rebuild(int argc, char **argv)
{
	bool numbers = false;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--numbers"))
			return usage();
		numbers = true;
	}
	PGconn *pg = connect_or_die();
	int rc = 1;
	if (!pg)
		return 1;
	PGresult *res = db_exec(pg, "SELECT stats_rebuild_request()", 0, NULL);
	if (!res)
		goto out;
	PQclear(res);
	printf("stats rebuild requested: dialer-stats counts the rollups again from call_attempts\n");
	if (numbers) {
		res = db_exec(pg, "SELECT stats_number_recount()", 0, NULL);
		if (!res)
			goto out;
		PQclear(res);
		printf("number counters counted again\n");
	}
	rc = 0;
out:
	PQfinish(pg);
	return rc;
}

int main(int argc, char **argv)
{
	int rc;
	log_init("dialerctl");
	if (argc < 2)
		return usage();
	if (config_load(0))
		return 2;
	if (!strcmp(argv[1], "migrate"))
		rc = cmd_migrate();
	else if (!strcmp(argv[1], "bootstrap"))
		rc = cmd_bootstrap();
	else if (!strcmp(argv[1], "create-admin"))
		rc = cmd_create_admin(argc, argv);
	else if (!strcmp(argv[1], "simulate"))
		rc = simulate_main(argc - 1, argv + 1);
	else if (!strcmp(argv[1], "export"))
		rc = export_main(argc - 1, argv + 1);
	else if (!strcmp(argv[1], "import"))
		rc = import_main(argc - 1, argv + 1);
	else if (!strcmp(argv[1], "stats-rebuild"))
		rc = cmd_stats_rebuild(argc, argv);
	else if (!strcmp(argv[1], "config")) {
		config_dump(stdout);
		rc = 0;
	} else
		rc = usage();
	config_free();
	return rc;
}
