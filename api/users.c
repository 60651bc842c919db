/*
 * Company users (COMPAT §2.4, /api/{company}/admins) and seed 000's roster
 * (/api/admins). Changes that could leave a company without an active admin run
 * in a transaction holding the company row lock, so two concurrent demotions
 * cannot both pass the check.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "authn.h"
#include "pgjson.h"
#include "phone.h"

static const char *const roles[] = {"ADMIN", "AGENT", NULL};
static const char *const agent_types[] = {"INBOUND", "OUTBOUND", "BOTH", NULL};

#define SELECT_USER_BY_COMPANY "SELECT " USER_COLUMNS " FROM users u LEFT JOIN companies c ON c.id = u.company_id "

struct uform {
	const char *username, *password, *first, *last, *phone_in, *role, *agent_type;
	int active;
	char phone[12];
	char *hash;
	long id;
	char ids[24], cids[24];
	json_t *out;
};

static void uform_free(void *p)
{
	struct uform *f = p;
	free(f->hash);
	json_decref(f->out);
	free(f);
}

static struct uform *uform_new(struct http_ctx *c)
{
	struct uform *f = xcalloc(1, sizeof(*f));
	c->state = f;
	c->state_free = uform_free;
	return f;
}

/* Shared fields of create and update; phone "" means none. */
static int uform_fields_or_reply(struct http_ctx *c, struct uform *f)
{
	if (field_str_or_reply(c, "first_name", 0, 255, false, &f->first) ||
	    field_str_or_reply(c, "last_name", 0, 255, false, &f->last) ||
	    field_str_or_reply(c, "phone_number", 0, PHONE_INPUT_MAX, false, &f->phone_in) ||
	    field_bool_or_reply(c, "is_active", &f->active) || field_enum_or_reply(c, "role", roles, &f->role) ||
	    field_enum_or_reply(c, "agent_type", agent_types, &f->agent_type))
		return -1;
	if (f->phone_in && *f->phone_in && phone_normalize(f->phone_in, f->phone)) {
		http_error(c, 400, "INVALID_PHONE", "Invalid phone number");
		return -1;
	}
	return 0;
}

static void hash_password(void *state)
{
	struct uform *f = state;
	f->hash = authn_password_hash(f->password, BCRYPT_COST);
}

/* ------------------------------------------------------------------- list */

static void list_company(struct http_ctx *c)
{
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[1] = {cid};
	http_db(c, SELECT_USER_BY_COMPANY "WHERE u.company_id = $1 AND NOT u.is_superuser ORDER BY u.id", 1, p,
	        rows_reply_done);
}

static void list(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, list_company);
}

/* Seed 000's roster for call centers: an admin sees their company's users; a
 * superuser sees every company's (or one, with ?company=). */
static void roster(struct http_ctx *c)
{
	char cid[24];
	const char *company = http_query(c, "company");
	if (!require_admin_or_reply(c))
		return;
	if (!c->user.is_superuser) {
		snprintf(cid, sizeof(cid), "%ld", c->user.company_id);
		const char *p[1] = {cid};
		http_db(c, SELECT_USER_BY_COMPANY "WHERE u.company_id = $1 AND NOT u.is_superuser ORDER BY u.id", 1, p,
		        rows_reply_done);
		return;
	}
	const char *p[1] = {company};
	http_db(c,
	        SELECT_USER_BY_COMPANY "WHERE NOT u.is_superuser AND ($1::text IS NULL OR c.name = $1) "
	                               "ORDER BY u.company_id, u.id",
	        1, p, rows_reply_done);
}

/* ----------------------------------------------------------------- create */

static void created(struct http_ctx *c, PGresult *res)
{
	if (user_conflict_or_reply(c, res) || !http_db_ok_or_reply(c, res))
		return;
	log_info("event=user_created company=%s user=%s", c->company, PQgetvalue(res, 0, 1));
	http_reply_json(c, 200, pgjson_row(res, 0));
}

static void create_hashed(struct http_ctx *c)
{
	struct uform *f = c->state;
	if (!f->hash) {
		http_error(c, 500, "INTERNAL_ERROR", "cannot hash password");
		return;
	}
	snprintf(f->cids, sizeof(f->cids), "%ld", c->company_id);
	const char *p[9] = {f->username,
	                    f->hash,
	                    f->active == 0 ? "false" : "true",
	                    f->role ? f->role : "ADMIN",
	                    f->first && *f->first ? f->first : NULL,
	                    f->last && *f->last ? f->last : NULL,
	                    f->phone_in && *f->phone_in ? f->phone : NULL,
	                    f->cids,
	                    f->agent_type ? f->agent_type : "BOTH"};
	http_db(
	    c,
	    "WITH u AS (INSERT INTO users (username, hashed_password, is_active, role, first_name, last_name,"
	    " phone_number, company_id, agent_type, is_superuser) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false)"
	    " RETURNING *) SELECT " USER_COLUMNS " FROM u LEFT JOIN companies c ON c.id = u.company_id",
	    9, p, created);
}

static void create_company(struct http_ctx *c)
{
	struct uform *f = uform_new(c);
	if (field_object_or_reply(c, true) || field_str_or_reply(c, "username", 1, 150, true, &f->username) ||
	    field_str_or_reply(c, "password", 1, 1024, true, &f->password) || uform_fields_or_reply(c, f))
		return;
	if (strlen(f->password) > AUTHN_PASSWORD_MAX) {
		http_invalid(c, "password", "must be at most 72 bytes");
		return;
	}
	if (!http_offload_or_reply(c, hash_password, create_hashed))
		return;
}

static void create(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, create_company);
}

/* --------------------------------------------------- update and delete */

static bool is_delete(struct http_ctx *c)
{
	return !strcmp(c->route->method, "DELETE");
}

static void finished(struct http_ctx *c, PGresult *res)
{
	struct uform *f = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	if (is_delete(c)) {
		log_info("event=user_deleted company=%s id=%ld", c->company, f->id);
		http_reply_json(c, 200, json_pack("{s:b, s:I}", "deleted", 1, "id", (json_int_t)f->id));
	} else {
		http_reply_json(c, 200, json_incref(f->out));
	}
}

static void written(struct http_ctx *c, PGresult *res)
{
	struct uform *f = c->state;
	if (user_conflict_or_reply(c, res) || !http_db_ok_or_reply(c, res))
		return;
	if (!is_delete(c))
		f->out = pgjson_row(res, 0);
	http_tx_commit(c, finished);
}

static void target_loaded(struct http_ctx *c, PGresult *res)
{
	struct uform *f = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "User not found in this company");
		return;
	}
	bool superuser = PQgetvalue(res, 0, 0)[0] == 't';
	bool active_admin = PQgetvalue(res, 0, 1)[0] == 't';
	long others = strtol(PQgetvalue(res, 0, 2), NULL, 10);
	if (superuser) {
		http_error(c, 400, "SUPERUSER", "Superuser cannot be managed from company users page");
		return;
	}
	bool loses_admin = is_delete(c) || (f->role && strcmp(f->role, "ADMIN")) || f->active == 0;
	if (active_admin && loses_admin && others == 0) {
		http_error(c, 400, "LAST_ADMIN", "At least one active admin is required");
		return;
	}
	if (is_delete(c)) {
		const char *p[1] = {f->ids};
		http_db(c, "DELETE FROM users WHERE id = $1", 1, p, written);
		return;
	}
	const char *p[9] = {f->ids,
	                    f->hash,
	                    f->active < 0 ? NULL
	                    : f->active   ? "true"
	                                  : "false",
	                    f->role,
	                    f->first,
	                    f->last,
	                    f->phone_in ? f->phone : NULL,
	                    f->agent_type,
	                    NULL};
	if (f->phone_in && !*f->phone_in)
		p[6] = ""; /* "" clears the phone (preface point 5) */
	http_db(c,
	        "WITH u AS (UPDATE users SET"
	        " hashed_password = COALESCE($2, hashed_password),"
	        " is_active = COALESCE($3::boolean, is_active),"
	        " role = COALESCE($4, role),"
	        " first_name = CASE WHEN $5::text IS NULL THEN first_name ELSE NULLIF($5, '') END,"
	        " last_name = CASE WHEN $6::text IS NULL THEN last_name ELSE NULLIF($6, '') END,"
	        " phone_number = CASE WHEN $7::text IS NULL THEN phone_number ELSE NULLIF($7, '') END,"
	        " agent_type = COALESCE($8, agent_type),"
	        " updated_at = now() WHERE id = $1 RETURNING *)"
	        " SELECT " USER_COLUMNS " FROM u LEFT JOIN companies c ON c.id = u.company_id",
	        8, p, written);
}

static void company_locked(struct http_ctx *c, PGresult *res)
{
	struct uform *f = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	/* a fresh statement, so a fresh snapshot: the count sees committed changes */
	const char *p[2] = {f->ids, f->cids};
	http_db(c,
	        "SELECT u.is_superuser, u.role = 'ADMIN' AND u.is_active,"
	        " (SELECT count(*) FROM users o WHERE o.company_id = $2 AND o.id <> u.id AND o.role = 'ADMIN'"
	        "  AND o.is_active AND NOT o.is_superuser)"
	        " FROM users u WHERE u.id = $1 AND u.company_id = $2 FOR UPDATE",
	        2, p, target_loaded);
}

static void tx_started(struct http_ctx *c, PGresult *res)
{
	struct uform *f = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	const char *p[1] = {f->cids};
	http_db(c, "SELECT 1 FROM companies WHERE id = $1 FOR UPDATE", 1, p, company_locked);
}

static void modify_begin(struct http_ctx *c)
{
	struct uform *f = c->state;
	if (!is_delete(c) && f->password && !f->hash) {
		http_error(c, 500, "INTERNAL_ERROR", "cannot hash password");
		return;
	}
	snprintf(f->ids, sizeof(f->ids), "%ld", f->id);
	snprintf(f->cids, sizeof(f->cids), "%ld", c->company_id);
	http_tx_begin(c, tx_started);
}

static void modify_company(struct http_ctx *c)
{
	struct uform *f = uform_new(c);
	if (param_id_or_reply(c, 1, "user_id", &f->id))
		return;
	if (is_delete(c)) {
		modify_begin(c);
		return;
	}
	if (field_object_or_reply(c, true))
		return;
	if (field_given(c, "username")) {
		http_error(c, 400, "BAD_REQUEST", "Username cannot be changed from company users page");
		return;
	}
	if (field_given(c, "is_superuser")) {
		http_error(c, 400, "BAD_REQUEST", "Superuser flag cannot be changed from company users page");
		return;
	}
	if (field_given(c, "company_id")) {
		http_error(c, 400, "BAD_REQUEST", "Company assignment cannot be changed from company users page");
		return;
	}
	if (field_str_or_reply(c, "password", 0, 1024, false, &f->password) || uform_fields_or_reply(c, f))
		return;
	if (f->password && strlen(f->password) > AUTHN_PASSWORD_MAX) {
		http_invalid(c, "password", "must be at most 72 bytes");
		return;
	}
	if (f->password && !*f->password)
		f->password = NULL; /* empty means unchanged */
	if (f->password) {
		if (!http_offload_or_reply(c, hash_password, modify_begin))
			return;
		return;
	}
	modify_begin(c);
}

static void modify(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, modify_company);
}

static const struct route routes[] = {
    {"GET", "/api/admins", roster, AUTH_JWT, 0},
    {"GET", "/api/{company}/admins", list, AUTH_JWT, 0},
    {"POST", "/api/{company}/admins", create, AUTH_JWT, RF_JSON},
    {"PUT", "/api/{company}/admins/{user_id}", modify, AUTH_JWT, RF_JSON},
    {"DELETE", "/api/{company}/admins/{user_id}", modify, AUTH_JWT, 0},
};

void users_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
