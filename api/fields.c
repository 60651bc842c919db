/*
 * Request-body field validation shared by the resource modules: types and
 * sizes checked, a 422 naming the field otherwise. Also company resolution and
 * role checks, which every company-scoped route begins with.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "callstate.h"
#include "hopper.h"
#include "config.h"
#include "pgjson.h"
#include "util.h"

int field_object_or_reply(struct http_ctx *c, bool required)
{
	if (!c->body) {
		if (required) {
			http_invalid(c, "body", "field required");
			return -1;
		}
		c->body = json_object();
		return 0;
	}
	if (!json_is_object(c->body)) {
		http_invalid(c, "body", "must be a JSON object");
		return -1;
	}
	return 0;
}

bool field_given(struct http_ctx *c, const char *name)
{
	json_t *v = json_object_get(c->body, name);
	return v && !json_is_null(v);
}

int field_str_in_or_reply(struct http_ctx *c, json_t *obj, const char *key, const char *label, size_t min, size_t max,
                          bool required, const char **out)
{
	json_t *v = json_object_get(obj, key);
	char msg[96];
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required) {
			http_invalid(c, label, "field required");
			return -1;
		}
		return 0;
	}
	if (!json_is_string(v)) {
		http_invalid(c, label, "must be a string");
		return -1;
	}
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		http_invalid(c, label, "must not contain NUL characters");
		return -1;
	}
	size_t n = util_utf8_chars(json_string_value(v));
	if (n < min || n > max) {
		snprintf(msg, sizeof(msg), "must be %zu to %zu characters", min, max);
		http_invalid(c, label, msg);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int field_str_or_reply(struct http_ctx *c, const char *name, size_t min, size_t max, bool required, const char **out)
{
	return field_str_in_or_reply(c, c->body, name, name, min, max, required, out);
}

int field_bool_or_reply(struct http_ctx *c, const char *name, int *out)
{
	json_t *v = json_object_get(c->body, name);
	*out = -1;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v)) {
		http_invalid(c, name, "must be a boolean");
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

int field_int_or_reply(struct http_ctx *c, const char *name, long long min, long long max, bool required, bool *given,
                       long long *out)
{
	json_t *v = json_object_get(c->body, name);
	char msg[96];
	*given = false;
	*out = 0;
	if (!v || json_is_null(v)) {
		if (required) {
			http_invalid(c, name, "field required");
			return -1;
		}
		return 0;
	}
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		/* range first, so that the cast below is defined */
		if (!isfinite(d) || d < (double)min || d > (double)max)
			goto range;
		if ((double)(long long)d != d) {
			http_invalid(c, name, "must be an integer");
			return -1;
		}
		*out = (long long)d;
	} else {
		http_invalid(c, name, "must be an integer");
		return -1;
	}
	if (*out < min || *out > max)
		goto range;
	*given = true;
	return 0;
range:
	*out = 0;
	snprintf(msg, sizeof(msg), "must be between %lld and %lld", min, max);
	http_invalid(c, name, msg);
	return -1;
}

int field_enum_or_reply(struct http_ctx *c, const char *name, const char *const *allowed, const char **out)
{
	const char *s;
	char msg[256];
	size_t n = 0;
	if (field_str_or_reply(c, name, 1, 64, false, &s))
		return -1;
	*out = NULL;
	if (!s)
		return 0;
	for (const char *const *a = allowed; *a; a++)
		if (!strcmp(*a, s)) {
			*out = *a;
			return 0;
		}
	n = (size_t)snprintf(msg, sizeof(msg), "must be one of");
	for (const char *const *a = allowed; *a && n < sizeof(msg); a++)
		n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s %s", a == allowed ? "" : ",", *a);
	http_invalid(c, name, msg);
	return -1;
}

int param_id_or_reply(struct http_ctx *c, int i, const char *name, long *out)
{
	if (i >= c->nparams || util_parse_long(c->params[i], 1, 2147483647L, out)) {
		http_invalid(c, name, "must be a positive integer");
		return -1;
	}
	return 0;
}

int query_long_or_reply(struct http_ctx *c, const char *name, long min, long max, long def, long *out)
{
	const char *v = http_query(c, name);
	char msg[96];
	*out = def;
	if (!v || !*v)
		return 0;
	if (util_parse_long(v, min, max, out)) {
		snprintf(msg, sizeof(msg), "must be an integer from %ld to %ld", min, max);
		http_invalid(c, name, msg);
		return -1;
	}
	return 0;
}

int query_page_or_reply(struct http_ctx *c, long *skip, long *limit)
{
	return query_long_or_reply(c, "skip", 0, 2147483647L, 0, skip) ||
	               query_long_or_reply(c, "limit", 1, cfg.list_max, cfg.list_max < 50 ? cfg.list_max : 50, limit)
	           ? -1
	           : 0;
}

void rows_reply_done(struct http_ctx *c, PGresult *res)
{
	if (http_db_ok_or_reply(c, res))
		http_reply_json(c, 200, pgjson_rows(res));
}

void list_page_done(struct http_ctx *c, PGresult *res)
{
	struct list_page *pg = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	json_t *out = json_object();
	json_object_set_new(out, "items", pgjson_cell(res, 0, 1));
	json_object_set_new(out, "total", pgjson_cell(res, 0, 0));
	json_object_set_new(out, "skip", json_integer(pg->skip));
	json_object_set_new(out, "limit", json_integer(pg->limit));
	http_reply_json(c, 200, out);
}

bool company_config_ok_or_reply(struct http_ctx *c, PGresult *res)
{
	if ((res && !strcmp(pgpool_sqlstate(res), "23503")) ||
	    (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) != 1)) {
		http_error(c, 404, "NOT_FOUND", "Company not found");
		return false;
	}
	return http_db_ok_or_reply(c, res);
}

static void callstate_dropped(struct http_ctx *c, redisReply *reply)
{
	if (!reply || reply->type == REDIS_REPLY_ERROR)
		log_warn("event=callstate_invalidate_failed company=%s error=\"%s\"", c->company,
		         reply ? reply->str : "redis unavailable");
	c->next(c);
}

void company_callstate_drop_then(struct http_ctx *c, void (*next)(struct http_ctx *c))
{
	char key[48];
	snprintf(key, sizeof(key), CALLSTATE_KEY_FMT, c->company_id);
	const char *argv[2] = {"DEL", key};
	c->next = next;
	http_redis(c, callstate_dropped, 2, argv, NULL);
}

static void hopper_flushed(struct http_ctx *c, redisReply *reply)
{
	if (!reply || reply->type != REDIS_REPLY_INTEGER) /* its entries are dropped after HOPPER_MAX_AGE_MS anyway */
		log_warn("event=hopper_flush_failed error=\"%s\"",
		         reply && reply->str ? reply->str : "redis unavailable");
	c->next(c);
}

void hopper_flush_then(struct http_ctx *c, void (*next)(struct http_ctx *c))
{
	struct hopper_flush_args a; /* the command is formatted by the call: a may go then */
	hopper_flush_argv(&a, 0);
	c->next = next;
	http_redis(c, hopper_flushed, HOPPER_FLUSH_ARGC, a.argv, NULL);
}

bool require_admin_or_reply(struct http_ctx *c)
{
	if (!c->user.is_admin) {
		http_error(c, 403, "FORBIDDEN", "Admins only");
		return false;
	}
	return true;
}

bool require_superuser_or_reply(struct http_ctx *c)
{
	if (!c->user.is_superuser) {
		http_error(c, 403, "FORBIDDEN", "Superuser only");
		return false;
	}
	return true;
}

static void company_loaded(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Company not found");
		return;
	}
	c->company_id = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	c->company = xstrdup(PQgetvalue(res, 0, 1));
	if (!http_user_in_company(c, c->company_id)) {
		http_error(c, 403, "FORBIDDEN", "Access denied to this company");
		return;
	}
	c->next(c);
}

void company_by_name(struct http_ctx *c, const char *name, bool active_only, void (*next)(struct http_ctx *c))
{
	const char *p[1] = {name};
	c->next = next;
	http_db(c,
	        active_only ? "SELECT id, name FROM companies WHERE name = $1 AND is_active"
	                    : "SELECT id, name FROM companies WHERE name = $1",
	        1, p, company_loaded);
}

void company_or_own_then(struct http_ctx *c, const char *name, bool active_only, void (*next)(struct http_ctx *c))
{
	if (name && *name) {
		company_by_name(c, name, active_only, next);
		return;
	}
	if (!c->user.is_superuser && !c->user.company_id) {
		http_error(c, 403, "FORBIDDEN", "User is not assigned to a company");
		return;
	}
	c->company_id = c->user.company_id;
	if (c->company_id && !c->company)
		c->company = xstrdup(c->user.company_name ? c->user.company_name : "");
	next(c);
}

void company_from_path(struct http_ctx *c, void (*next)(struct http_ctx *c))
{
	company_by_name(c, c->params[0], true, next);
}
