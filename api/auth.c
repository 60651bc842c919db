/*
 * /api/auth: login (JSON or form; failed attempts throttled per username and
 * per client in Redis; bcrypt off the loop), me, profile update, logout
 * (revokes the token in Redis until it would expire).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "authn.h"
#include "config.h"
#include "pgjson.h"
#include "phone.h"
#include "util.h"

static char *dummy_hash; /* verified against for unknown users, so timing does not tell */

void auth_init(void)
{
	dummy_hash = authn_password_hash("not-a-real-password", BCRYPT_COST);
	if (!dummy_hash) {
		log_error("event=bcrypt_unavailable");
		abort();
	}
}

void auth_cleanup(void)
{
	free(dummy_hash);
	dummy_hash = NULL;
}

/* ------------------------------------------------------------------ login */

/* KEYS: failure counters; ARGV[1]: limit. Returns the longest TTL of a counter at the limit, else 0. */
static const char THROTTLE_CHECK[] = "local r = 0 "
                                     "for _, k in ipairs(KEYS) do "
                                     "  local n = tonumber(redis.call('GET', k) or '0') "
                                     "  if n >= tonumber(ARGV[1]) then "
                                     "    local t = redis.call('TTL', k) if t > r then r = t end "
                                     "  end "
                                     "end return r";
/* KEYS: failure counters; ARGV[1]: window seconds. */
static const char THROTTLE_FAIL[] = "for _, k in ipairs(KEYS) do "
                                    "  if redis.call('INCR', k) == 1 then redis.call('EXPIRE', k, ARGV[1]) end "
                                    "end return 0";

struct login {
	char *username;
	char *password;
	char *hash;
	json_t *user; /* UserOut of the matched user */
	bool active;
	bool ok;
	char ukey[80], ikey[96];
};

static void login_free(void *p)
{
	struct login *l = p;
	free(l->username);
	if (l->password) {
		explicit_bzero(l->password, strlen(l->password));
		free(l->password);
	}
	free(l->hash);
	json_decref(l->user);
	free(l);
}

static void login_reply_failed(struct http_ctx *c, redisReply *r)
{
	UNUSED(r); /* the counter is best effort once the attempt failed */
	http_error(c, 401, "INVALID_CREDENTIALS", "Invalid credentials");
}

static void login_reply_ok(struct http_ctx *c, redisReply *r)
{
	struct login *l = c->state;
	long exp;
	UNUSED(r);
	char *tok = authn_jwt_issue(cfg.secret_key, l->username, (long)cfg.access_token_expire_minutes * 60, &exp);
	if (!tok) {
		http_error(c, 500, "INTERNAL_ERROR", "Internal Server Error");
		return;
	}
	json_t *body = json_pack("{s:s, s:s, s:i, s:O}", "access_token", tok, "token_type", "bearer", "expires_in",
	                         (json_int_t)cfg.access_token_expire_minutes * 60, "user", l->user);
	free(tok);
	log_info("event=login_ok user=%s", l->username);
	http_reply_json(c, 200, body);
}

static void login_verify(void *state)
{
	struct login *l = state;
	l->ok = authn_password_verify(l->password, l->hash ? l->hash : dummy_hash) && l->hash;
}

static void login_verified(struct http_ctx *c)
{
	struct login *l = c->state;
	if (l->ok && l->active) {
		const char *argv[2] = {"DEL", l->ukey};
		http_redis(c, login_reply_ok, 2, argv, NULL);
		return;
	}
	char window[16];
	snprintf(window, sizeof(window), "%d", cfg.login_window_seconds);
	const char *argv[6] = {"EVAL", THROTTLE_FAIL, "2", l->ukey, l->ikey, window};
	log_info("event=login_failed user=%s peer=%s", l->username, c->peer);
	http_redis(c, login_reply_failed, 6, argv, NULL);
}

static void login_user_loaded(struct http_ctx *c, PGresult *res)
{
	struct login *l = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) == 1) {
		int hc = PQfnumber(res, "hashed_password");
		l->hash = xstrdup(PQgetvalue(res, 0, hc));
		l->user = pgjson_row(res, 0);
		json_object_del(l->user, "hashed_password");
		l->active = json_is_true(json_object_get(l->user, "is_active"));
	}
	if (!http_offload_or_reply(c, login_verify, login_verified))
		return;
}

static void login_throttle_checked(struct http_ctx *c, redisReply *r)
{
	struct login *l = c->state;
	if (!r || r->type != REDIS_REPLY_INTEGER) {
		http_add_header(c, "Retry-After", "1");
		http_error(c, 503, "REDIS_UNAVAILABLE", "Login temporarily unavailable");
		return;
	}
	if (r->integer > 0) {
		char ra[24];
		snprintf(ra, sizeof(ra), "%lld", r->integer);
		http_add_header(c, "Retry-After", ra);
		log_warn("event=login_throttled user=%s peer=%s retry_after=%s", l->username, c->peer, ra);
		http_error(c, 429, "TOO_MANY_LOGIN_ATTEMPTS", "Too many failed login attempts, retry in %lld seconds",
		           r->integer);
		return;
	}
	const char *p[1] = {l->username};
	http_db(c,
	        "SELECT u.hashed_password, " USER_COLUMNS
	        " FROM users u LEFT JOIN companies c ON c.id = u.company_id WHERE u.username = $1",
	        1, p, login_user_loaded);
}

static void login(struct http_ctx *c)
{
	const char *user, *pass;
	char h[65];
	if (field_object_or_reply(c, true) || field_str_or_reply(c, "username", 0, 150, true, &user) ||
	    field_str_or_reply(c, "password", 0, 1024, true, &pass))
		return;
	struct login *l = xcalloc(1, sizeof(*l));
	c->state = l;
	c->state_free = login_free;
	l->username = xstrdup(user);
	l->password = xstrdup(pass);
	util_sha256_hex(user, strlen(user), h);
	snprintf(l->ukey, sizeof(l->ukey), "loginfail:u:%.40s", h);
	snprintf(l->ikey, sizeof(l->ikey), "loginfail:ip:%s", c->peer);
	char limit[16];
	snprintf(limit, sizeof(limit), "%d", cfg.login_max_failures);
	const char *argv[6] = {"EVAL", THROTTLE_CHECK, "2", l->ukey, l->ikey, limit};
	http_redis(c, login_throttle_checked, 6, argv, NULL);
}

/* -------------------------------------------------------------------- me */

static void me_get(struct http_ctx *c)
{
	http_reply_json(c, 200, json_incref(c->user.json));
}

struct me_update {
	const char *username, *password, *first, *last, *phone_in;
	char phone[12];
	char *hash;
};

static void me_update_free(void *p)
{
	struct me_update *m = p;
	free(m->hash);
	free(m);
}

/* Maps a unique violation on users to COMPAT's text; false when it is not one. */
bool user_conflict_or_reply(struct http_ctx *c, PGresult *res)
{
	if (!res || strcmp(pgpool_sqlstate(res), "23505"))
		return false;
	const char *cons = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
	if (cons && strstr(cons, "phone"))
		http_error(c, 400, "PHONE_IN_USE", "Phone number already in use");
	else
		http_error(c, 400, "USERNAME_EXISTS", "Username already exists");
	return true;
}

static void me_updated(struct http_ctx *c, PGresult *res)
{
	if (user_conflict_or_reply(c, res) || !http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 401, "INVALID_TOKEN", "Could not validate credentials");
		return;
	}
	http_reply_json(c, 200, pgjson_row(res, 0));
}

static void me_write(struct http_ctx *c)
{
	struct me_update *m = c->state;
	char id[24];
	snprintf(id, sizeof(id), "%ld", c->user.id);
	const char *p[7] = {id, m->username, m->hash, m->first, m->last, m->phone_in ? m->phone : NULL, NULL};
	http_db(c,
	        "WITH u AS (UPDATE users SET "
	        " username = COALESCE($2, username),"
	        " hashed_password = COALESCE($3, hashed_password),"
	        " first_name = CASE WHEN $4::text IS NULL THEN first_name ELSE NULLIF($4, '') END,"
	        " last_name = CASE WHEN $5::text IS NULL THEN last_name ELSE NULLIF($5, '') END,"
	        " phone_number = CASE WHEN $6::text IS NULL THEN phone_number ELSE NULLIF($6, '') END,"
	        " updated_at = now() WHERE id = $1 RETURNING *) "
	        "SELECT " USER_COLUMNS " FROM u LEFT JOIN companies c ON c.id = u.company_id",
	        6, p, me_updated);
}

static void me_hash(void *state)
{
	struct me_update *m = state;
	m->hash = authn_password_hash(m->password, BCRYPT_COST);
}

static void me_hashed(struct http_ctx *c)
{
	struct me_update *m = c->state;
	if (!m->hash) {
		http_error(c, 500, "INTERNAL_ERROR", "cannot hash password");
		return;
	}
	me_write(c);
}

static void me_put(struct http_ctx *c)
{
	struct me_update *m = xcalloc(1, sizeof(*m));
	c->state = m;
	c->state_free = me_update_free;
	if (field_object_or_reply(c, true) || field_str_or_reply(c, "username", 0, 150, false, &m->username) ||
	    field_str_or_reply(c, "password", 0, AUTHN_PASSWORD_MAX, false, &m->password) ||
	    field_str_or_reply(c, "first_name", 0, 255, false, &m->first) ||
	    field_str_or_reply(c, "last_name", 0, 255, false, &m->last) ||
	    field_str_or_reply(c, "phone_number", 0, PHONE_INPUT_MAX, false, &m->phone_in))
		return;
	/* as in the original: an empty username or password means "unchanged" */
	if (m->username && !*m->username)
		m->username = NULL;
	if (m->password && strlen(m->password) > AUTHN_PASSWORD_MAX) {
		http_invalid(c, "password", "must be at most 72 bytes");
		return;
	}
	if (m->phone_in && *m->phone_in && phone_normalize(m->phone_in, m->phone)) {
		http_error(c, 400, "INVALID_PHONE", "Invalid phone number");
		return;
	}
	if (m->password && *m->password) {
		if (!http_offload_or_reply(c, me_hash, me_hashed))
			return;
		return;
	}
	me_write(c);
}

/* ---------------------------------------------------------------- logout */

static void logout_done(struct http_ctx *c, redisReply *r)
{
	if (!r || r->type == REDIS_REPLY_ERROR) {
		http_add_header(c, "Retry-After", "1");
		http_error(c, 503, "REDIS_UNAVAILABLE", "Token store unavailable");
		return;
	}
	log_info("event=logout user=%s", c->user.username);
	http_reply_json(c, 200, json_pack("{s:s, s:b}", "detail", "Logged out", "revoked", 1));
}

static void logout(struct http_ctx *c)
{
	char key[80], ttl[24];
	long left = c->token_exp - (long)time(NULL);
	snprintf(key, sizeof(key), "revoked:%s", c->token_hash);
	snprintf(ttl, sizeof(ttl), "%ld", left > 0 ? left : 1);
	const char *argv[5] = {"SET", key, "1", "EX", ttl};
	http_redis(c, logout_done, 5, argv, NULL);
}

static const struct route routes[] = {
    {"POST", "/api/auth/login", login, AUTH_NONE, RF_JSON},
    {"GET", "/api/auth/me", me_get, AUTH_JWT, 0},
    {"PUT", "/api/auth/me", me_put, AUTH_JWT, RF_JSON},
    {"POST", "/api/auth/logout", logout, AUTH_JWT, 0},
};

void auth_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
