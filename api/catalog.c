/*
 * A company's scenarios (COMPAT §2.7, /api/{company}/scenarios) and outbound
 * lines (§2.8, /api/{company}/outbound-lines): the same resource over two
 * tables, so one set of handlers and a descriptor per table (the route's arg).
 * Scenarios: every member lists, an ADMIN of the company (or a superuser)
 * writes; lines: superusers only, the phone stored as given. One that call
 * attempts point at is kept: its delete is a 409.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pgjson.h"

struct catalog {
	const char *noun;   /* "Scenario", "Outbound line": the start of the errors */
	const char *event;  /* log event prefix */
	const char *key;    /* the item's identity, immutable: body field and column */
	size_t key_max;     /* its length limit */
	const char *exists; /* 400 on a duplicate key, COMPAT's text */
	const char *exists_code;
	const char *id_param; /* path parameter name */
	bool superuser_only;  /* lines: every route; scenarios: writes need ADMIN, reads membership */
	const char *sql_list, *sql_insert, *sql_update, *sql_delete;
};

/* ScenarioOut / OutboundLineOut (COMPAT §2.1) and the statements, per table. */
#define CATALOG_SQL(table, key)                                                                                        \
	.sql_list = "SELECT id, company_id, " key ", display_name, is_active, api_ts(created_at) AS created_at"        \
	            " FROM " table " WHERE company_id = $1 ORDER BY id",                                               \
	.sql_insert = "INSERT INTO " table " (company_id, " key ", display_name, is_active) VALUES ($1, $2, $3, $4)"   \
	              " RETURNING id, company_id, " key ", display_name, is_active,"                                   \
	              " api_ts(created_at) AS created_at",                                                             \
	.sql_update =                                                                                                  \
	    "UPDATE " table " SET display_name = COALESCE($3, display_name),"                                          \
	    " is_active = COALESCE($4::boolean, is_active), updated_at = now()"                                        \
	    " WHERE id = $1 AND company_id = $2 RETURNING id, company_id, " key ", display_name,"                      \
	    " is_active, api_ts(created_at) AS created_at", /* one statement: the row lock the delete takes is the one \
	                                                     * the attempts trigger takes to set has_results, so an    \
	                                                     * attempt committed first makes the re-checked "NOT       \
	                                                     * has_results" false */                                   \
	    .sql_delete =                                                                                              \
	        "WITH t AS (SELECT id FROM " table " WHERE id = $1 AND company_id = $2),"                              \
	        " d AS (DELETE FROM " table " s USING t WHERE s.id = t.id AND NOT s.has_results RETURNING s.id)"       \
	        " SELECT t.id, (SELECT count(*) FROM d) FROM t"

static const struct catalog scenarios = {
    .noun = "Scenario",
    .event = "scenario",
    .key = "name",
    .key_max = 128,
    .exists = "Scenario name already exists for this company",
    .exists_code = "SCENARIO_EXISTS",
    .id_param = "scenario_id",
    .superuser_only = false,
    CATALOG_SQL("scenarios", "name"),
};

static const struct catalog lines = {
    .noun = "Outbound line",
    .event = "outbound_line",
    .key = "phone_number",
    .key_max = 32,
    .exists = "Phone number already exists for this company",
    .exists_code = "LINE_EXISTS",
    .id_param = "line_id",
    .superuser_only = true,
    CATALOG_SQL("outbound_lines", "phone_number"),
};

static const struct catalog *of(struct http_ctx *c)
{
	return c->route->arg;
}

/* Role first, then company and membership (the original checks no membership
 * on scenario writes; we do): lines need a superuser, scenario writes an ADMIN. */
static void start(struct http_ctx *c, bool write, void (*next)(struct http_ctx *c))
{
	if (of(c)->superuser_only ? !require_superuser_or_reply(c) : write && !require_admin_or_reply(c))
		return;
	company_from_path(c, next);
}

/* ------------------------------------------------------------------- list */

static void list_company(struct http_ctx *c)
{
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[1] = {cid};
	http_db(c, of(c)->sql_list, 1, p, rows_reply_done);
}

static void list(struct http_ctx *c)
{
	start(c, false, list_company);
}

/* ---------------------------------------------------------- create, update */

static void one_done(struct http_ctx *c, PGresult *res)
{
	const struct catalog *k = of(c);
	if (res && !strcmp(pgpool_sqlstate(res), "23505")) {
		http_error(c, 400, k->exists_code, "%s", k->exists);
		return;
	}
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "%s not found", k->noun);
		return;
	}
	log_info("event=%s_%s company=%s id=%s", k->event, strcmp(c->route->method, "POST") ? "updated" : "created",
	         c->company, PQgetvalue(res, 0, 0));
	http_reply_json(c, 200, pgjson_row(res, 0));
}

static void create_company(struct http_ctx *c)
{
	const struct catalog *k = of(c);
	const char *key, *display;
	int active;
	bool given;
	long long cid;
	char cids[24];
	if (field_object_or_reply(c, true) || field_str_or_reply(c, k->key, 1, k->key_max, true, &key) ||
	    field_str_or_reply(c, "display_name", 1, 255, true, &display) ||
	    field_bool_or_reply(c, "is_active", &active) ||
	    field_int_or_reply(c, "company_id", INT32_MIN, INT32_MAX, true, &given, &cid))
		return;
	if (cid != c->company_id) {
		http_error(c, 400, "COMPANY_ID_MISMATCH", "Company ID mismatch");
		return;
	}
	snprintf(cids, sizeof(cids), "%ld", c->company_id);
	const char *p[4] = {cids, key, display, active == 0 ? "false" : "true"};
	http_db(c, k->sql_insert, 4, p, one_done);
}

static void create(struct http_ctx *c)
{
	start(c, true, create_company);
}

static void update_company(struct http_ctx *c)
{
	const char *display;
	int active;
	long id;
	char ids[24], cids[24];
	if (param_id_or_reply(c, 1, of(c)->id_param, &id) || field_object_or_reply(c, true) ||
	    field_str_or_reply(c, "display_name", 1, 255, false, &display) ||
	    field_bool_or_reply(c, "is_active", &active))
		return;
	snprintf(ids, sizeof(ids), "%ld", id);
	snprintf(cids, sizeof(cids), "%ld", c->company_id);
	/* null means unchanged (COMPAT preface 5); the key is immutable */
	const char *p[4] = {ids, cids, display, active < 0 ? NULL : active ? "true" : "false"};
	http_db(c, of(c)->sql_update, 4, p, one_done);
}

static void update(struct http_ctx *c)
{
	start(c, true, update_company);
}

/* ----------------------------------------------------------------- delete */

static void deleted(struct http_ctx *c, PGresult *res)
{
	const struct catalog *k = of(c);
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "%s not found", k->noun);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "1")) {
		http_error(c, 409, "HAS_RESULTS", "%s has call results and cannot be deleted; deactivate it instead",
		           k->noun);
		return;
	}
	log_info("event=%s_deleted company=%s id=%s", k->event, c->company, PQgetvalue(res, 0, 0));
	http_reply_json(
	    c, 200, json_pack("{s:b, s:I}", "deleted", 1, "id", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10)));
}

static void delete_company(struct http_ctx *c)
{
	long id;
	char ids[24], cids[24];
	if (param_id_or_reply(c, 1, of(c)->id_param, &id))
		return;
	snprintf(ids, sizeof(ids), "%ld", id);
	snprintf(cids, sizeof(cids), "%ld", c->company_id);
	const char *p[2] = {ids, cids};
	http_db(c, of(c)->sql_delete, 2, p, deleted);
}

static void delete (struct http_ctx *c)
{
	start(c, true, delete_company);
}

static const struct route routes[] = {
    {"GET", "/api/{company}/scenarios", list, AUTH_JWT, 0, &scenarios},
    {"POST", "/api/{company}/scenarios", create, AUTH_JWT, RF_JSON, &scenarios},
    {"PUT", "/api/{company}/scenarios/{scenario_id}", update, AUTH_JWT, RF_JSON, &scenarios},
    {"DELETE", "/api/{company}/scenarios/{scenario_id}", delete, AUTH_JWT, 0, &scenarios},
    {"GET", "/api/{company}/outbound-lines", list, AUTH_JWT, 0, &lines},
    {"POST", "/api/{company}/outbound-lines", create, AUTH_JWT, RF_JSON, &lines},
    {"PUT", "/api/{company}/outbound-lines/{line_id}", update, AUTH_JWT, RF_JSON, &lines},
    {"DELETE", "/api/{company}/outbound-lines/{line_id}", delete, AUTH_JWT, 0, &lines},
};

void catalog_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
