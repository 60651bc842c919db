/*
 * Per-company dialer tokens (/api/{company}/dialer-tokens): created with the
 * plaintext shown once, stored as SHA-256, listed without the secret, revoked.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "authn.h"
#include "pgjson.h"

#define TOKEN_COLUMNS                                                                                            \
	"id, company_id, name, prefix, api_ts(created_at) AS created_at, api_ts(last_used_at) AS last_used_at, " \
	"api_ts(revoked_at) AS revoked_at"

static void list_company(struct http_ctx *c)
{
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[1] = {cid};
	http_db(c, "SELECT " TOKEN_COLUMNS " FROM dialer_tokens WHERE company_id = $1 ORDER BY id", 1, p,
	        rows_reply_done);
}

static void list(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, list_company);
}

static void created(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	json_t *t = pgjson_row(res, 0);
	json_object_set_new(t, "token", json_string(c->state));
	log_info("event=dialer_token_created company=%s id=%s prefix=%s", c->company, PQgetvalue(res, 0, 0),
	         PQgetvalue(res, 0, 3));
	http_reply_json(c, 200, t);
}

static void create_company(struct http_ctx *c)
{
	const char *name;
	char tok[64], hash[65], prefix[16], cid[24], uid[24];
	if (field_object_or_reply(c, false) || field_str_or_reply(c, "name", 1, 128, false, &name))
		return;
	if (authn_token_new(tok)) {
		http_error(c, 500, "INTERNAL_ERROR", "cannot generate a token");
		return;
	}
	authn_token_hash(tok, hash);
	snprintf(prefix, sizeof(prefix), "%.12s", tok);
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	snprintf(uid, sizeof(uid), "%ld", c->user.id);
	c->state = xstrdup(tok);
	c->state_free = free;
	const char *p[5] = {cid, name ? name : "dialer", hash, prefix, uid};
	http_db(c,
	        "INSERT INTO dialer_tokens (company_id, name, token_hash, prefix, created_by)"
	        " VALUES ($1, $2, $3, $4, $5) RETURNING " TOKEN_COLUMNS,
	        5, p, created);
}

static void create(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, create_company);
}

static void revoked(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Dialer token not found");
		return;
	}
	log_info("event=dialer_token_revoked company=%s id=%s", c->company, PQgetvalue(res, 0, 0));
	http_reply_json(
	    c, 200, json_pack("{s:b, s:I}", "deleted", 1, "id", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10)));
}

static void revoke_company(struct http_ctx *c)
{
	long id;
	char ids[24], cid[24];
	if (param_id_or_reply(c, 1, "token_id", &id))
		return;
	snprintf(ids, sizeof(ids), "%ld", id);
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[2] = {ids, cid};
	http_db(c,
	        "UPDATE dialer_tokens SET revoked_at = COALESCE(revoked_at, now())"
	        " WHERE id = $1 AND company_id = $2 RETURNING id",
	        2, p, revoked);
}

static void revoke(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, revoke_company);
}

static const struct route routes[] = {
    {"GET", "/api/{company}/dialer-tokens", list, AUTH_JWT, 0},
    {"POST", "/api/{company}/dialer-tokens", create, AUTH_JWT, RF_JSON},
    {"DELETE", "/api/{company}/dialer-tokens/{token_id}", revoke, AUTH_JWT, 0},
};

void tokens_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
