/*
 * A company's scenarios (COMPAT §2.7, /api/{company}/scenarios): every member
 * lists them; an ADMIN of that company (or a superuser) creates, edits and
 * deletes them. One that call attempts point at is kept: its delete is a 409.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pgjson.h"

/* ScenarioOut (COMPAT §2.1). */
#define SCENARIO_COLUMNS "id, company_id, name, display_name, is_active, api_ts(created_at) AS created_at"

/* ------------------------------------------------------------------- list */

static void rows_done(struct http_ctx *c, PGresult *res)
{
	if (http_db_ok_or_reply(c, res))
		http_reply_json(c, 200, pgjson_rows(res));
}

static void list_company(struct http_ctx *c)
{
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[1] = {cid};
	http_db(c, "SELECT " SCENARIO_COLUMNS " FROM scenarios WHERE company_id = $1 ORDER BY id", 1, p, rows_done);
}

static void list(struct http_ctx *c)
{
	company_from_path(c, list_company);
}

/* ---------------------------------------------------------- create, update */

static void one_done(struct http_ctx *c, PGresult *res)
{
	if (res && !strcmp(pgpool_sqlstate(res), "23505")) {
		http_error(c, 400, "SCENARIO_EXISTS", "Scenario name already exists for this company");
		return;
	}
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Scenario not found");
		return;
	}
	log_info("event=scenario_%s company=%s id=%s", strcmp(c->route->method, "POST") ? "updated" : "created",
	         c->company, PQgetvalue(res, 0, 0));
	http_reply_json(c, 200, pgjson_row(res, 0));
}

static void create_company(struct http_ctx *c)
{
	const char *name, *display;
	int active;
	bool given;
	long long cid;
	char cids[24];
	if (field_object_or_reply(c, true) || field_str_or_reply(c, "name", 1, 128, true, &name) ||
	    field_str_or_reply(c, "display_name", 1, 255, true, &display) ||
	    field_bool_or_reply(c, "is_active", &active) ||
	    field_int_or_reply(c, "company_id", INT32_MIN, INT32_MAX, true, &given, &cid))
		return;
	if (cid != c->company_id) {
		http_error(c, 400, "COMPANY_ID_MISMATCH", "Company ID mismatch");
		return;
	}
	snprintf(cids, sizeof(cids), "%ld", c->company_id);
	const char *p[4] = {cids, name, display, active == 0 ? "false" : "true"};
	http_db(c,
	        "INSERT INTO scenarios (company_id, name, display_name, is_active) VALUES ($1, $2, $3, $4)"
	        " RETURNING " SCENARIO_COLUMNS,
	        4, p, one_done);
}

static void create(struct http_ctx *c)
{
	/* role, then company and membership (the original checks no membership) */
	if (require_admin_or_reply(c))
		company_from_path(c, create_company);
}

static void update_company(struct http_ctx *c)
{
	const char *display;
	int active;
	long id;
	char ids[24], cids[24];
	if (param_id_or_reply(c, 1, "scenario_id", &id) || field_object_or_reply(c, true) ||
	    field_str_or_reply(c, "display_name", 1, 255, false, &display) ||
	    field_bool_or_reply(c, "is_active", &active))
		return;
	snprintf(ids, sizeof(ids), "%ld", id);
	snprintf(cids, sizeof(cids), "%ld", c->company_id);
	/* null means unchanged (COMPAT preface 5); name is immutable */
	const char *p[4] = {ids, cids, display, active < 0 ? NULL : active ? "true" : "false"};
	http_db(c,
	        "UPDATE scenarios SET display_name = COALESCE($3, display_name),"
	        " is_active = COALESCE($4::boolean, is_active), updated_at = now()"
	        " WHERE id = $1 AND company_id = $2 RETURNING " SCENARIO_COLUMNS,
	        4, p, one_done);
}

static void update(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, update_company);
}

/* ----------------------------------------------------------------- delete */

static void deleted(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Scenario not found");
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "1")) {
		http_error(c, 409, "HAS_RESULTS",
		           "Scenario has call results and cannot be deleted; deactivate it instead");
		return;
	}
	log_info("event=scenario_deleted company=%s id=%s", c->company, PQgetvalue(res, 0, 0));
	http_reply_json(
	    c, 200, json_pack("{s:b, s:I}", "deleted", 1, "id", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10)));
}

static void delete_company(struct http_ctx *c)
{
	long id;
	char ids[24], cids[24];
	if (param_id_or_reply(c, 1, "scenario_id", &id))
		return;
	snprintf(ids, sizeof(ids), "%ld", id);
	snprintf(cids, sizeof(cids), "%ld", c->company_id);
	const char *p[2] = {ids, cids};
	/* One statement: the row lock the delete takes is the one the attempts
	 * trigger takes to set has_results, so an attempt committed first makes the
	 * re-checked "NOT has_results" false and nothing is deleted. */
	http_db(c,
	        "WITH t AS (SELECT id FROM scenarios WHERE id = $1 AND company_id = $2),"
	        " d AS (DELETE FROM scenarios s USING t WHERE s.id = t.id AND NOT s.has_results RETURNING s.id)"
	        " SELECT t.id, (SELECT count(*) FROM d) FROM t",
	        2, p, deleted);
}

static void delete (struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, delete_company);
}

static const struct route routes[] = {
    {"GET", "/api/{company}/scenarios", list, AUTH_JWT, 0},
    {"POST", "/api/{company}/scenarios", create, AUTH_JWT, RF_JSON},
    {"PUT", "/api/{company}/scenarios/{scenario_id}", update, AUTH_JWT, RF_JSON},
    {"DELETE", "/api/{company}/scenarios/{scenario_id}", delete, AUTH_JWT, 0},
};

void scenarios_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
