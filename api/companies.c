/*
 * /api/companies (COMPAT §2.3): superuser CRUD, lookup by slug for members,
 * delete with confirm_name through company_delete() (the one cascade).
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pgjson.h"

/* Slugs that would shadow our own top-level paths under /api. */
static const char *const reserved[] = {"auth",   "companies", "numbers",  "dialer",  "stats", "jobs", "admins",
                                       "health", "events",    "holidays", "metrics", "ws",    NULL};

/* A slug travels in URL paths: no separators, spaces or escapes. */
static int slug_or_reply(struct http_ctx *c, const char *name)
{
	for (const char *p = name; *p; p++)
		if (strchr("/?#%\\ \t\r\n", *p) || (unsigned char)*p < 0x20) {
			http_invalid(c, "name", "must not contain '/', '?', '#', '%', '\\\\' or spaces");
			return -1;
		}
	for (const char *const *r = reserved; *r; r++)
		if (!strcmp(*r, name)) {
			http_error(c, 400, "RESERVED_NAME", "Company name is reserved");
			return -1;
		}
	return 0;
}

static bool conflict_or_reply(struct http_ctx *c, PGresult *res)
{
	if (res && !strcmp(pgpool_sqlstate(res), "23505")) {
		http_error(c, 400, "COMPANY_EXISTS", "Company name already exists");
		return true;
	}
	return false;
}

static void list(struct http_ctx *c)
{
	if (!require_superuser_or_reply(c))
		return;
	http_db(c, "SELECT " COMPANY_COLUMNS " FROM companies ORDER BY id", 0, NULL, rows_reply_done);
}

static void one_done(struct http_ctx *c, PGresult *res)
{
	if (conflict_or_reply(c, res) || !http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Company not found");
		return;
	}
	json_t *co = pgjson_row(res, 0);
	if (!http_user_in_company(c, (long)json_integer_value(json_object_get(co, "id")))) {
		json_decref(co);
		http_error(c, 403, "FORBIDDEN", "Access denied to this company");
		return;
	}
	http_reply_json(c, 200, co);
}

static void get_by_name(struct http_ctx *c)
{
	const char *p[1] = {c->params[0]};
	http_db(c, "SELECT " COMPANY_COLUMNS " FROM companies WHERE name = $1", 1, p, one_done);
}

static int settings_or_reply(struct http_ctx *c, char **out)
{
	json_t *s = json_object_get(c->body, "settings");
	*out = NULL;
	if (!s || json_is_null(s))
		return 0;
	if (!json_is_object(s)) {
		http_invalid(c, "settings", "must be an object");
		return -1;
	}
	*out = json_dumps(s, JSON_COMPACT);
	if (strlen(*out) > 65536) {
		free(*out);
		*out = NULL;
		http_invalid(c, "settings", "must be at most 64 KiB");
		return -1;
	}
	return 0;
}

static void create(struct http_ctx *c)
{
	const char *name, *display;
	int active;
	char *settings = NULL;
	if (!require_superuser_or_reply(c) || field_object_or_reply(c, true) ||
	    field_str_or_reply(c, "name", 1, 64, true, &name) ||
	    field_str_or_reply(c, "display_name", 1, 255, true, &display) ||
	    field_bool_or_reply(c, "is_active", &active) || settings_or_reply(c, &settings))
		return;
	if (slug_or_reply(c, name)) {
		free(settings);
		return;
	}
	const char *p[4] = {name, display, active == 0 ? "false" : "true", settings ? settings : "{}"};
	http_db(c,
	        "INSERT INTO companies (name, display_name, is_active, settings) VALUES ($1, $2, $3, $4) "
	        "RETURNING " COMPANY_COLUMNS,
	        4, p, one_done);
	free(settings);
}

static void update(struct http_ctx *c)
{
	const char *name, *display;
	int active;
	long id;
	char *settings = NULL, ids[24];
	if (!require_superuser_or_reply(c) || param_id_or_reply(c, 0, "company_id", &id) ||
	    field_object_or_reply(c, false) || field_str_or_reply(c, "name", 1, 64, false, &name) ||
	    field_str_or_reply(c, "display_name", 1, 255, false, &display) ||
	    field_bool_or_reply(c, "is_active", &active) || settings_or_reply(c, &settings))
		return;
	if (name && slug_or_reply(c, name)) {
		free(settings);
		return;
	}
	snprintf(ids, sizeof(ids), "%ld", id);
	const char *p[5] = {ids, name, display, active < 0 ? NULL : active ? "true" : "false", settings};
	http_db(c,
	        "UPDATE companies SET name = COALESCE($2, name), display_name = COALESCE($3, display_name),"
	        " is_active = COALESCE($4::boolean, is_active), settings = COALESCE($5::jsonb, settings),"
	        " updated_at = now() WHERE id = $1 RETURNING " COMPANY_COLUMNS,
	        5, p, one_done);
	free(settings);
}

static void deleted_reply(struct http_ctx *c)
{
	http_reply_json(
	    c, 200, json_pack("{s:b, s:I, s:s}", "deleted", 1, "id", (json_int_t)c->company_id, "name", c->company));
}

static void deleted(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	log_info("event=company_deleted id=%ld name=%s", c->company_id, c->company);
	hopper_flush_then(c, deleted_reply); /* its hopper's candidates are no longer held apart */
}

static void delete_loaded(struct http_ctx *c, PGresult *res)
{
	const char *confirm = json_string_value(json_object_get(c->body, "confirm_name"));
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Company not found");
		return;
	}
	c->company_id = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	c->company = xstrdup(PQgetvalue(res, 0, 1));
	if (strcmp(confirm, c->company)) {
		http_error(c, 400, "CONFIRMATION_MISMATCH", "Company name confirmation does not match");
		return;
	}
	const char *p[1] = {PQgetvalue(res, 0, 0)};
	http_db(c, "SELECT company_delete($1)", 1, p, deleted);
}

static void delete (struct http_ctx *c)
{
	const char *confirm;
	long id;
	char ids[24];
	if (!require_superuser_or_reply(c) || param_id_or_reply(c, 0, "company_id", &id) ||
	    field_object_or_reply(c, true) || field_str_or_reply(c, "confirm_name", 1, 64, true, &confirm))
		return;
	snprintf(ids, sizeof(ids), "%ld", id);
	const char *p[1] = {ids};
	http_db(c, "SELECT id, name FROM companies WHERE id = $1", 1, p, delete_loaded);
}

static const struct route routes[] = {
    {"GET", "/api/companies", list, AUTH_JWT, 0},
    {"POST", "/api/companies", create, AUTH_JWT, RF_JSON},
    {"GET", "/api/companies/{company_name}", get_by_name, AUTH_JWT, 0},
    {"PUT", "/api/companies/{company_id}", update, AUTH_JWT, RF_JSON},
    {"DELETE", "/api/companies/{company_id}", delete, AUTH_JWT, RF_JSON},
};

void companies_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
