/* Auth against the real dialer-api (COMPAT §1.4, §2.2; issue 3 item 6): login by JSON and
 * form, /me, forged tokens, logout, inactive users, profile edits, bcrypt hashes made
 * elsewhere, and the slow-down of repeated failed logins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>

#include "harness.h"

static struct th_api api;
static char *db_url;
static char *root_token;

/* Source addresses: each test that makes logins fail uses its own, so the per-IP failed-login
 * counter of one test never reaches another (all tests share 127.0.0.1 otherwise). */
#define IP_BAD_LOGIN "127.0.1.1"
#define IP_INACTIVE  "127.0.1.2"
#define IP_PASSWORD  "127.0.1.3"
#define IP_BCRYPT    "127.0.1.4"
#define IP_MALFORMED "127.0.1.5"
#define IP_PER_IP    "127.0.3.1"

static int group_setup(void **state)
{
	(void)state;
	return th_setup_api(&api, &db_url, &root_token, NULL);
}

static int group_teardown(void **state)
{
	(void)state;
	return th_teardown_api(&api, &db_url, &root_token);
}

static int test_setup(void **state)
{
	(void)state;
	th_set_source_ip(NULL);
	return 0;
}

/* Creates a user of the default company through the API as root; returns its id. */
static long long create_user(const char *username, const char *password, const char *role)
{
	json_t *req =
	    json_pack("{s:s, s:s, s:b, s:s, s:s, s:n, s:n, s:n}", "username", username, "password", password,
	              "is_active", 1, "role", role, "agent_type", "BOTH", "first_name", "last_name", "phone_number");
	char *body = json_dumps(req, 0);
	struct th_resp *r = th_call(&api, "POST", "/api/" TH_DEFAULT_COMPANY "/admins", root_token, body);
	long long id = -1;

	free(body);
	json_decref(req);
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);
	return id;
}

/* POST /api/auth/login with a JSON body; caller frees the response. */
static struct th_resp *login_json(const char *user, const char *pass)
{
	return th_login_call(&api, user, pass);
}

static void expect_login_fails(const char *user, const char *pass)
{
	struct th_resp *r = login_json(user, pass);

	TH_EXPECT_ERROR(r, 401, "Invalid credentials");
	th_resp_free(r);
}

static void expect_login_works(const char *user, const char *pass)
{
	struct th_resp *r = login_json(user, pass);

	TH_EXPECT_STATUS(r, 200);
	assert_non_null(th_json_str(r->json, "access_token"));
	th_resp_free(r);
}

/* GET /api/auth/me must answer 401 "Could not validate credentials" with
 * WWW-Authenticate: Bearer for this token. */
static void expect_token_refused(const char *token)
{
	struct th_resp *r = th_call(&api, "GET", "/api/auth/me", token, NULL);
	const char *www;

	TH_EXPECT_ERROR(r, 401, "Could not validate credentials");
	www = th_resp_header(r, "WWW-Authenticate");
	assert_non_null(www);
	assert_string_equal(www, "Bearer");
	th_resp_free(r);
}

/* GET /api/auth/me must answer 200 for token, as username. */
static void expect_token_accepted(const char *token, const char *username)
{
	struct th_resp *r = th_call(&api, "GET", "/api/auth/me", token, NULL);

	TH_EXPECT_STATUS(r, 200);
	assert_non_null(th_json_str(r->json, "username"));
	TH_EXPECT_STR(r->json, "username", username);
	th_resp_free(r);
}

/* base64url without padding, as JWT segments are written. Caller frees. */
static char *b64url(const char *s)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *in = (const unsigned char *)s;
	size_t n = strlen(s), o = 0;
	char *out = malloc(n / 3 * 4 + 5);

	assert_non_null(out);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = tbl[(v >> 18) & 63];
		out[o++] = tbl[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = tbl[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = tbl[v & 63];
	}
	out[o] = '\0';
	return out;
}

/* A JWT signed by libjwt: {"sub": sub (omitted when NULL), "exp": exp}. Caller frees. */
static char *make_jwt(jwt_alg_t alg, const char *key, const char *sub, long long exp)
{
	jwt_t *jwt = NULL;
	char *tok;

	assert_int_equal(jwt_new(&jwt), 0);
	if (sub != NULL)
		assert_int_equal(jwt_add_grant(jwt, "sub", sub), 0);
	assert_int_equal(jwt_add_grant_int(jwt, "exp", (long)exp), 0);
	assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key, (int)strlen(key)), 0);
	tok = jwt_encode_str(jwt);
	assert_non_null(tok);
	jwt_free(jwt);
	return tok;
}

/* An unsigned token written by hand: base64url(header).base64url(payload).signature */
static char *make_unsigned(const char *header_json, const char *payload_json, const char *sig)
{
	char *h = b64url(header_json), *p = b64url(payload_json), *tok = NULL;

	assert_true(asprintf(&tok, "%s.%s.%s", h, p, sig) > 0);
	free(h);
	free(p);
	return tok;
}

static void test_login_good(void **state)
{
	static const char *const stale[] = {"Authorization: Bearer stale.token.value", NULL};
	struct th_resp *r;
	const char *tok, *tt;
	json_t *user;
	long long exp_in;
	char *url;

	(void)state;
	r = login_json(TH_ROOT_USER, TH_ROOT_PASS);
	TH_EXPECT_STATUS(r, 200);
	tok = th_json_str(r->json, "access_token");
	assert_non_null(tok);
	assert_true(strlen(tok) > 20);
	tt = th_json_str(r->json, "token_type");
	assert_non_null(tt);
	assert_string_equal(tt, "bearer");
	/* issue 3 item 6 allows expires_in and user; when present they must be right. */
	if (json_object_get(r->json, "expires_in") != NULL) {
		assert_int_equal(th_json_int(r->json, "expires_in", &exp_in), 0);
		assert_true(exp_in > 0 && exp_in <= 1440 * 60);
	}
	user = json_object_get(r->json, "user");
	if (user != NULL) {
		TH_EXPECT_STR(user, "username", TH_ROOT_USER);
		assert_null(json_object_get(user, "hashed_password"));
	}
	expect_token_accepted(tok, TH_ROOT_USER);
	th_resp_free(r);

	/* The panel sends its stored, maybe stale, token with the login itself (COMPAT §6). */
	assert_true(asprintf(&url, "%s/api/auth/login", api.base_url) > 0);
	r = th_http("POST", url, NULL, "application/json",
	            "{\"username\":\"" TH_ROOT_USER "\",\"password\":\"" TH_ROOT_PASS "\"}", stale);
	TH_EXPECT_STATUS(r, 200);
	assert_non_null(th_json_str(r->json, "access_token"));
	th_resp_free(r);

	/* A charset parameter on the content type changes nothing. */
	r = th_http("POST", url, NULL, "application/json; charset=utf-8",
	            "{\"username\":\"" TH_ROOT_USER "\",\"password\":\"" TH_ROOT_PASS "\"}", NULL);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	free(url);
}

static void test_login_bad(void **state)
{
	(void)state;
	th_set_source_ip(IP_BAD_LOGIN);
	expect_login_fails(TH_ROOT_USER, "wrong-password");
	expect_login_fails("no-such-user-anywhere", "whatever123");
	expect_login_fails(TH_ROOT_USER, "");
}

static void test_login_form(void **state)
{
	struct th_resp *r;
	char *url;
	const char *tok;

	(void)state;
	/* A password with the characters form encoding changes: '@', ' ', '+', '%', '&', '='. */
	create_user("form-user", "p@ss word+%&=x", "AGENT");
	assert_true(asprintf(&url, "%s/api/auth/login", api.base_url) > 0);
	r = th_http("POST", url, NULL, "application/x-www-form-urlencoded",
	            "username=form-user&password=p%40ss+word%2B%25%26%3Dx", NULL);
	TH_EXPECT_STATUS(r, 200);
	tok = th_json_str(r->json, "access_token");
	assert_non_null(tok);
	TH_EXPECT_STR(r->json, "token_type", "bearer");
	expect_token_accepted(tok, "form-user");
	th_resp_free(r);
	free(url);
}

static void test_login_malformed(void **state)
{
	static const char *const stale[] = {"Authorization: Bearer garbage", NULL};
	struct th_resp *r;
	char *url;

	(void)state;
	th_set_source_ip(IP_MALFORMED);
	assert_true(asprintf(&url, "%s/api/auth/login", api.base_url) > 0);
	r = th_http("POST", url, NULL, "application/json", "{\"username\": \"root\", \"password\": ", stale);
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	free(url);

	/* Both fields are required. */
	r = th_call(&api, "POST", "/api/auth/login", NULL, "{\"username\": \"root\"}");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/auth/login", NULL, "[1, 2]");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);

	/* Malformed JSON is a 422 before authentication (COMPAT §6). */
	r = th_call(&api, "PUT", "/api/auth/me", NULL, "{\"first_name\": ");
	TH_EXPECT_ERROR(r, 422, NULL);
	th_resp_free(r);
}

static void expect_user_out(const json_t *u)
{
	static const char *const keys[] = {"id",         "username",   "is_active",    "is_superuser", "role",
	                                   "first_name", "last_name",  "phone_number", "company_id",   "company_name",
	                                   "agent_type", "created_at", "updated_at"};
	const json_t *v;

	assert_true(json_is_object(u));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (json_object_get(u, keys[i]) == NULL)
			print_error("UserOut lacks %s\n", keys[i]);
		assert_non_null(json_object_get(u, keys[i]));
	}
	assert_null(json_object_get(u, "hashed_password"));
	assert_true(json_is_integer(json_object_get(u, "id")));
	assert_true(json_is_string(json_object_get(u, "username")));
	assert_true(json_is_boolean(json_object_get(u, "is_active")));
	assert_true(json_is_boolean(json_object_get(u, "is_superuser")));
	assert_true(json_is_string(json_object_get(u, "role")));
	v = json_object_get(u, "agent_type");
	assert_true(json_is_null(v) || json_is_string(v));
	if (json_is_string(v))
		assert_true(strcmp(json_string_value(v), "INBOUND") == 0 ||
		            strcmp(json_string_value(v), "OUTBOUND") == 0 || strcmp(json_string_value(v), "BOTH") == 0);
	assert_true(th_is_datetime(th_json_str(u, "created_at")));
	v = json_object_get(u, "updated_at");
	assert_true(json_is_null(v) || th_is_datetime(json_string_value(v)));
	for (size_t i = 5; i < 8; i++) {
		v = json_object_get(u, keys[i]);
		assert_true(json_is_null(v) || json_is_string(v));
	}
}

static void test_me(void **state)
{
	struct th_resp *r;
	char *tok;
	long long id, cid;

	(void)state;
	r = th_call(&api, "GET", "/api/auth/me", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	expect_user_out(r->json);
	TH_EXPECT_STR(r->json, "username", TH_ROOT_USER);
	assert_true(json_is_true(json_object_get(r->json, "is_active")));
	assert_true(json_is_true(json_object_get(r->json, "is_superuser")));
	TH_EXPECT_STR(r->json, "role", "ADMIN");
	assert_true(json_is_null(json_object_get(r->json, "company_id")));
	assert_true(json_is_null(json_object_get(r->json, "company_name")));
	th_resp_free(r);

	/* A company user carries company_id and company_name (the slug). */
	id = create_user("me-agent", "agentpass1", "AGENT");
	tok = th_login(&api, "me-agent", "agentpass1");
	assert_non_null(tok);
	r = th_call(&api, "GET", "/api/auth/me", tok, NULL);
	TH_EXPECT_STATUS(r, 200);
	expect_user_out(r->json);
	assert_int_equal(th_json_int(r->json, "id", &cid), 0);
	assert_int_equal(cid, id);
	TH_EXPECT_STR(r->json, "role", "AGENT");
	assert_true(json_is_false(json_object_get(r->json, "is_superuser")));
	assert_int_equal(th_json_int(r->json, "company_id", &cid), 0);
	TH_EXPECT_STR(r->json, "company_name", TH_DEFAULT_COMPANY);
	TH_EXPECT_STR(r->json, "agent_type", "BOTH");
	th_resp_free(r);
	free(tok);
}

static void test_no_token(void **state)
{
	static const char *const basic[] = {"Authorization: Basic cm9vdDpyb290cGFzczEyMw==", NULL};
	struct th_resp *r;
	char *url;

	(void)state;
	r = th_call(&api, "GET", "/api/auth/me", NULL, NULL);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	assert_non_null(th_resp_header(r, "WWW-Authenticate"));
	assert_string_equal(th_resp_header(r, "WWW-Authenticate"), "Bearer");
	th_resp_free(r);

	/* Not a Bearer scheme counts as no credentials. */
	assert_true(asprintf(&url, "%s/api/auth/me", api.base_url) > 0);
	r = th_http("GET", url, NULL, NULL, NULL, basic);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	assert_non_null(th_resp_header(r, "WWW-Authenticate"));
	th_resp_free(r);
	free(url);
}

static void test_forged_tokens(void **state)
{
	long long now = (long long)time(NULL);
	char payload[128];
	char *tok, *good, *dot;

	(void)state;
	/* Control: a token exactly as the original issues it ({sub, exp}, HS256, SECRET_KEY) is
	 * accepted, so each refusal below is for the one thing changed. */
	good = make_jwt(JWT_ALG_HS256, TH_SECRET_KEY, TH_ROOT_USER, now + 3600);
	expect_token_accepted(good, TH_ROOT_USER);

	tok = make_jwt(JWT_ALG_HS256, "another-secret-key-0123456789abcd", TH_ROOT_USER, now + 3600);
	expect_token_refused(tok);
	free(tok);

	/* The good token with its last signature character changed. */
	tok = strdup(good);
	assert_non_null(tok);
	tok[strlen(tok) - 2] = tok[strlen(tok) - 2] == 'A' ? 'B' : 'A';
	expect_token_refused(tok);
	free(tok);

	snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"exp\":%lld}", TH_ROOT_USER, now + 3600);
	tok = make_unsigned("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, "");
	expect_token_refused(tok);
	free(tok);
	tok = make_unsigned("{\"alg\":\"None\",\"typ\":\"JWT\"}", payload, "");
	expect_token_refused(tok);
	free(tok);
	/* alg none with the good token's signature kept. */
	dot = strrchr(good, '.');
	assert_non_null(dot);
	tok = make_unsigned("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, dot + 1);
	expect_token_refused(tok);
	free(tok);

	/* Right key, other HMAC algorithms. */
	tok = make_jwt(JWT_ALG_HS512, TH_SECRET_KEY, TH_ROOT_USER, now + 3600);
	expect_token_refused(tok);
	free(tok);
	tok = make_jwt(JWT_ALG_HS384, TH_SECRET_KEY, TH_ROOT_USER, now + 3600);
	expect_token_refused(tok);
	free(tok);

	/* Right key, expired an hour ago. */
	tok = make_jwt(JWT_ALG_HS256, TH_SECRET_KEY, TH_ROOT_USER, now - 3600);
	expect_token_refused(tok);
	free(tok);

	/* Right key, unknown user; right key, no sub at all. */
	tok = make_jwt(JWT_ALG_HS256, TH_SECRET_KEY, "nobody-by-this-name", now + 3600);
	expect_token_refused(tok);
	free(tok);
	tok = make_jwt(JWT_ALG_HS256, TH_SECRET_KEY, NULL, now + 3600);
	expect_token_refused(tok);
	free(tok);

	expect_token_refused("garbage");
	expect_token_refused("a.b.c");
	free(good);
}

static void test_logout(void **state)
{
	struct th_resp *r;
	char *a, *b;

	(void)state;
	create_user("logout-user", "logoutpass1", "AGENT");
	a = th_login(&api, "logout-user", "logoutpass1");
	b = th_login(&api, "logout-user", "logoutpass1");
	assert_non_null(a);
	assert_non_null(b);
	/* Two logins are two sessions: logging one out must not end the other. */
	assert_string_not_equal(a, b);

	r = th_call(&api, "POST", "/api/auth/logout", a, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_object(r->json));
	th_resp_free(r);

	expect_token_refused(a);
	expect_token_accepted(b, "logout-user");

	r = th_call(&api, "POST", "/api/auth/logout", a, NULL);
	TH_EXPECT_ERROR(r, 401, "Could not validate credentials");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/auth/logout", NULL, NULL);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
	free(a);
	free(b);
}

static void test_inactive_user(void **state)
{
	struct th_resp *r;
	char path[96], *tok;
	long long id;

	(void)state;
	th_set_source_ip(IP_INACTIVE);
	id = create_user("inactive-user", "inactivepass1", "AGENT");
	tok = th_login(&api, "inactive-user", "inactivepass1");
	assert_non_null(tok);
	expect_token_accepted(tok, "inactive-user");

	snprintf(path, sizeof(path), "/api/%s/admins/%lld", TH_DEFAULT_COMPANY, id);
	r = th_call(&api, "PUT", path, root_token, "{\"is_active\": false}");
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_false(json_object_get(r->json, "is_active")));
	th_resp_free(r);

	r = th_call(&api, "GET", "/api/auth/me", tok, NULL);
	TH_EXPECT_ERROR(r, 400, "Inactive user");
	th_resp_free(r);
	expect_login_fails("inactive-user", "inactivepass1");
	free(tok);
}

static void test_update_profile(void **state)
{
	struct th_resp *r;
	char *tok;

	(void)state;
	create_user("profile-user", "profilepass1", "AGENT");
	create_user("phone-holder", "phonepass1", "AGENT");
	tok = th_login(&api, "profile-user", "profilepass1");
	assert_non_null(tok);

	r = th_call(&api, "PUT", "/api/auth/me", tok,
	            "{\"first_name\": \"Ali\", \"phone_number\": \"+98 912 345 6789\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_user_out(r->json);
	TH_EXPECT_STR(r->json, "first_name", "Ali");
	TH_EXPECT_STR(r->json, "phone_number", "09123456789");
	th_resp_free(r);

	/* What PUT answered is what GET sees. */
	r = th_call(&api, "GET", "/api/auth/me", tok, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "first_name", "Ali");
	TH_EXPECT_STR(r->json, "phone_number", "09123456789");
	th_resp_free(r);

	/* null means unchanged (COMPAT preface 5). */
	r = th_call(&api, "PUT", "/api/auth/me", tok,
	            "{\"first_name\": null, \"last_name\": \"Rezaei\", \"phone_number\": null}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "first_name", "Ali");
	TH_EXPECT_STR(r->json, "last_name", "Rezaei");
	TH_EXPECT_STR(r->json, "phone_number", "09123456789");
	th_resp_free(r);

	/* Persian digits are mapped before normalizing (COMPAT preface 9). */
	r = th_call(&api, "PUT", "/api/auth/me", tok,
	            "{\"phone_number\": \"\xdb\xb0\xdb\xb9\xdb\xb1\xdb\xb2\xdb\xb3\xdb\xb4\xdb\xb5"
	            "\xdb\xb6\xdb\xb7\xdb\xb8\xdb\xb8\"}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "phone_number", "09123456788");
	th_resp_free(r);

	r = th_call(&api, "PUT", "/api/auth/me", tok, "{\"phone_number\": \"12345\"}");
	TH_EXPECT_ERROR(r, 400, "Invalid phone number");
	th_resp_free(r);
	r = th_call(&api, "PUT", "/api/auth/me", tok, "{\"phone_number\": \"071234567890\"}");
	TH_EXPECT_ERROR(r, 400, "Invalid phone number");
	th_resp_free(r);

	/* Held by another user. */
	{
		char *other = th_login(&api, "phone-holder", "phonepass1");

		assert_non_null(other);
		r = th_call(&api, "PUT", "/api/auth/me", other, "{\"phone_number\": \"09121110000\"}");
		TH_EXPECT_STATUS(r, 200);
		th_resp_free(r);
		free(other);
	}
	r = th_call(&api, "PUT", "/api/auth/me", tok, "{\"phone_number\": \"0912 111 0000\"}");
	TH_EXPECT_ERROR(r, 400, "Phone number already in use");
	th_resp_free(r);

	/* The failed edits changed nothing. */
	r = th_call(&api, "GET", "/api/auth/me", tok, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "phone_number", "09123456788");
	th_resp_free(r);

	r = th_call(&api, "PUT", "/api/auth/me", tok, "{\"username\": \"" TH_ROOT_USER "\"}");
	TH_EXPECT_ERROR(r, 400, "Username already exists");
	th_resp_free(r);
	free(tok);
}

static void test_change_password(void **state)
{
	struct th_resp *r;
	char *tok;

	(void)state;
	th_set_source_ip(IP_PASSWORD);
	create_user("pw-user", "oldpass123", "AGENT");
	tok = th_login(&api, "pw-user", "oldpass123");
	assert_non_null(tok);

	/* An empty password means no change. */
	r = th_call(&api, "PUT", "/api/auth/me", tok, "{\"password\": \"\"}");
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	expect_login_works("pw-user", "oldpass123");

	r = th_call(&api, "PUT", "/api/auth/me", tok, "{\"password\": \"newpass456\"}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "username", "pw-user");
	th_resp_free(r);
	expect_login_works("pw-user", "newpass456");
	expect_login_fails("pw-user", "oldpass123");

	/* The hash stored is bcrypt $2b$ with cost 12 or more (issue 3 item 6). */
	{
		const char *params[] = {"pw-user"};
		char *hash = NULL;
		int cost;

		assert_int_equal(
		    th_sql(db_url, "SELECT hashed_password FROM users WHERE username = $1", 1, params, &hash), 0);
		assert_non_null(hash);
		assert_int_equal(strncmp(hash, "$2b$", 4), 0);
		cost = atoi(hash + 4);
		assert_true(cost >= 12);
		assert_int_equal(strlen(hash), 60);
		assert_null(strstr(hash, "newpass456"));
		free(hash);
	}
	free(tok);
}

static void test_change_username(void **state)
{
	struct th_resp *r;
	char *tok, *tok2;

	(void)state;
	create_user("rename-me", "renamepass1", "AGENT");
	tok = th_login(&api, "rename-me", "renamepass1");
	assert_non_null(tok);
	r = th_call(&api, "PUT", "/api/auth/me", tok, "{\"username\": \"renamed-user\"}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "username", "renamed-user");
	th_resp_free(r);

	/* The token names the old username: it no longer validates (COMPAT §1.4). */
	expect_token_refused(tok);
	tok2 = th_login(&api, "renamed-user", "renamepass1");
	assert_non_null(tok2);
	expect_token_accepted(tok2, "renamed-user");
	free(tok2);
	free(tok);
}

/* Sets a user's stored hash directly, as if the original Python system had written it. */
static void set_hash(const char *username, const char *hash)
{
	const char *params[] = {hash, username};
	char *n = NULL;

	assert_int_equal(th_sql(db_url,
	                        "WITH u AS (UPDATE users SET hashed_password = $1 "
	                        "WHERE username = $2 RETURNING 1) SELECT count(*) FROM u",
	                        2, params, &n),
	                 0);
	assert_non_null(n);
	assert_string_equal(n, "1");
	free(n);
}

static void test_foreign_bcrypt(void **state)
{
	(void)state;
	th_set_source_ip(IP_BCRYPT);
	/* Hashes written by passlib's bcrypt handler are standard OpenBSD bcrypt strings,
	 * "$2b$<cost>$<22 salt><31 hash>". The first is the reference test vector of Solar
	 * Designer's crypt_blowfish (password "U*U"), in its original $2a$ form and rewritten as
	 * $2b$ (the two prefixes hash identically for passwords this short). */
	create_user("bcrypt-2a", "placeholder1", "AGENT");
	set_hash("bcrypt-2a", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW");
	expect_login_works("bcrypt-2a", "U*U");
	expect_login_fails("bcrypt-2a", "U*U*");

	create_user("bcrypt-2b", "placeholder1", "AGENT");
	set_hash("bcrypt-2b", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW");
	expect_login_works("bcrypt-2b", "U*U");

	/* Cost 12, as passlib writes by default; made with Python's crypt module over libxcrypt
	 * (crypt.mksalt(METHOD_BLOWFISH, rounds=4096)), password "correct horse". */
	create_user("bcrypt-12", "placeholder1", "AGENT");
	set_hash("bcrypt-12", "$2b$12$Duvy7n5JBUs6RlYfTX08ouD2WoZxx8ktLqhjK9YXWmM9XoEI4RNTK");
	expect_login_works("bcrypt-12", "correct horse");
	expect_login_fails("bcrypt-12", "correct horsf");
}

static void test_failed_logins_per_username(void **state)
{
	struct th_resp *r;
	const char *ra;
	char ip[32];
	long secs;

	(void)state;
	create_user("slow-user", "slowpass123", "AGENT");
	/* Five failures from five addresses: only the username links them. */
	for (int i = 1; i <= 5; i++) {
		snprintf(ip, sizeof(ip), "127.0.2.%d", i);
		th_set_source_ip(ip);
		expect_login_fails("slow-user", "wrong-password");
	}
	/* The sixth, with the right password, from a sixth address, is slowed down. */
	th_set_source_ip("127.0.2.6");
	r = login_json("slow-user", "slowpass123");
	TH_EXPECT_ERROR(r, 429, NULL);
	ra = th_resp_header(r, "Retry-After");
	assert_non_null(ra);
	secs = strtol(ra, NULL, 10);
	assert_true(secs >= 1 && secs <= 60);
	th_resp_free(r);
}

static void test_failed_logins_per_ip(void **state)
{
	struct th_resp *r;
	char user[32];

	(void)state;
	create_user("ip-victim", "victimpass1", "AGENT");
	th_set_source_ip(IP_PER_IP);
	for (int i = 1; i <= 5; i++) {
		snprintf(user, sizeof(user), "ip-guess-%d", i);
		expect_login_fails(user, "guess-password");
	}
	r = login_json("ip-victim", "victimpass1");
	TH_EXPECT_ERROR(r, 429, NULL);
	assert_non_null(th_resp_header(r, "Retry-After"));
	th_resp_free(r);

	/* The same user from another address is not slowed: the limit was the address's. */
	th_set_source_ip("127.0.3.2");
	expect_login_works("ip-victim", "victimpass1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_login_good, test_setup),
	    cmocka_unit_test_setup(test_login_bad, test_setup),
	    cmocka_unit_test_setup(test_login_form, test_setup),
	    cmocka_unit_test_setup(test_login_malformed, test_setup),
	    cmocka_unit_test_setup(test_me, test_setup),
	    cmocka_unit_test_setup(test_no_token, test_setup),
	    cmocka_unit_test_setup(test_forged_tokens, test_setup),
	    cmocka_unit_test_setup(test_logout, test_setup),
	    cmocka_unit_test_setup(test_inactive_user, test_setup),
	    cmocka_unit_test_setup(test_update_profile, test_setup),
	    cmocka_unit_test_setup(test_change_password, test_setup),
	    cmocka_unit_test_setup(test_change_username, test_setup),
	    cmocka_unit_test_setup(test_foreign_bcrypt, test_setup),
	    cmocka_unit_test_setup(test_failed_logins_per_username, test_setup),
	    cmocka_unit_test_setup(test_failed_logins_per_ip, test_setup),
	};

	return cmocka_run_group_tests_name("auth", tests, group_setup, group_teardown);
}
