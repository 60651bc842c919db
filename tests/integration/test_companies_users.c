/* Companies, company users, the roster and dialer tokens against the real dialer-api
 * (COMPAT §1.5, §1.6, §2.3, §2.4; issue 3 item 7), with company and role isolation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct th_api api;
static char *db_url;
static char *root_token;

/* Two companies made in group setup, each with one ADMIN and one AGENT. */
static long long acme_id, globex_id;
static long long acme_admin_id, acme_agent_id, globex_admin_id;
static char *acme_admin_token, *acme_agent_token, *globex_admin_token;

/* POST /api/companies as root; returns the new company's id. */
static long long create_company(const char *name, const char *display_name)
{
	return th_create_company(&api, root_token, name, display_name, true);
}

/* POST /api/{company}/admins as root with the panel's full body; returns the response. */
static struct th_resp *post_user(const char *company, const char *username, const char *role, const char *phone)
{
	json_t *req = json_pack("{s:s, s:s, s:b, s:s, s:s, s:s, s:n, s:o}", "username", username, "password",
	                        "secret-pass-1", "is_active", 1, "role", role, "agent_type", "BOTH", "first_name",
	                        "First", "last_name", "phone_number", phone ? json_string(phone) : json_null());
	char *body = json_dumps(req, 0);
	char path[128];
	struct th_resp *r;

	snprintf(path, sizeof(path), "/api/%s/admins", company);
	r = th_call(&api, "POST", path, root_token, body);
	free(body);
	json_decref(req);
	return r;
}

/* post_user() that must succeed; returns the id. */
static long long create_user(const char *company, const char *username, const char *role)
{
	struct th_resp *r = post_user(company, username, role, NULL);
	long long id = -1;

	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);
	return id;
}

/* Makes the two companies and their users the tests use (called from group setup). */
static void make_fixture(void)
{
	acme_id = create_company("acme", "Acme Calls");
	globex_id = create_company("globex", "Globex Dialing");
	assert_true(acme_id != globex_id);
	acme_admin_id = create_user("acme", "acme-admin", "ADMIN");
	acme_agent_id = create_user("acme", "acme-agent", "AGENT");
	globex_admin_id = create_user("globex", "globex-admin", "ADMIN");
	acme_admin_token = th_login(&api, "acme-admin", "secret-pass-1");
	acme_agent_token = th_login(&api, "acme-agent", "secret-pass-1");
	globex_admin_token = th_login(&api, "globex-admin", "secret-pass-1");
	assert_non_null(acme_admin_token);
	assert_non_null(acme_agent_token);
	assert_non_null(globex_admin_token);
}

static int group_setup(void **state)
{
	(void)state;
	if (th_setup_api(&api, &db_url, &root_token, NULL) < 0)
		return -1;
	make_fixture();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free(acme_admin_token);
	free(acme_agent_token);
	free(globex_admin_token);
	return th_teardown_api(&api, &db_url, &root_token);
}

static void expect_company_out(const json_t *c)
{
	assert_true(json_is_object(c));
	assert_true(json_is_integer(json_object_get(c, "id")));
	assert_true(json_is_string(json_object_get(c, "name")));
	assert_true(json_is_string(json_object_get(c, "display_name")));
	assert_true(json_is_boolean(json_object_get(c, "is_active")));
	assert_true(json_is_object(json_object_get(c, "settings")));
	assert_true(th_is_datetime(th_json_str(c, "created_at")));
	assert_true(th_is_datetime(th_json_str(c, "updated_at")));
}

/* The element of array arr whose key equals the string value, or NULL. Borrowed. */
static json_t *find_by_str(const json_t *arr, const char *key, const char *value)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v)
	{
		const char *s = th_json_str(v, key);

		if (s != NULL && strcmp(s, value) == 0)
			return v;
	}
	return NULL;
}

/* The element of array arr whose "id" is id, or NULL. Borrowed. */
static json_t *find_by_id(const json_t *arr, long long id)
{
	size_t i;
	json_t *v;
	long long x;

	json_array_foreach(arr, i, v)
	{
		if (th_json_int(v, "id", &x) == 0 && x == id)
			return v;
	}
	return NULL;
}

static void test_companies_list(void **state)
{
	static const char *const paths[] = {"/api/companies", "/api/companies/"};

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct th_resp *r = th_call(&api, "GET", paths[i], root_token, NULL);
		json_t *c;

		TH_EXPECT_STATUS(r, 200); /* both forms, no redirect */
		assert_true(json_is_array(r->json));
		c = find_by_str(r->json, "name", TH_DEFAULT_COMPANY);
		assert_non_null(c);
		expect_company_out(c);
		assert_true(json_is_true(json_object_get(c, "is_active")));
		c = find_by_str(r->json, "name", "acme");
		assert_non_null(c);
		expect_company_out(c);
		TH_EXPECT_INT(c, "id", acme_id);
		TH_EXPECT_STR(c, "display_name", "Acme Calls");
		th_resp_free(r);
	}
}

static void test_company_crud(void **state)
{
	struct th_resp *r;
	long long id;
	char path[96];

	(void)state;
	/* Create, with and without the trailing slash; defaults is_active=true, settings={}. */
	r = th_call(&api, "POST", "/api/companies/", root_token,
	            "{\"name\": \"crud-co\", \"display_name\": \"CRUD Co\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_company_out(r->json);
	TH_EXPECT_STR(r->json, "name", "crud-co");
	TH_EXPECT_STR(r->json, "display_name", "CRUD Co");
	assert_true(json_is_true(json_object_get(r->json, "is_active")));
	assert_int_equal(json_object_size(json_object_get(r->json, "settings")), 0);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);
	create_company("crud-other", "CRUD Other");

	r = th_call(&api, "POST", "/api/companies", root_token, "{\"name\": \"crud-co\", \"display_name\": \"Again\"}");
	TH_EXPECT_ERROR(r, 400, "Company name already exists");
	th_resp_free(r);

	r = th_call(&api, "GET", "/api/companies/crud-co", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	expect_company_out(r->json);
	TH_EXPECT_INT(r->json, "id", id);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/companies/no-such-company", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);

	snprintf(path, sizeof(path), "/api/companies/%lld", id);
	r = th_call(&api, "PUT", path, root_token, "{\"display_name\": \"CRUD Renamed\", \"settings\": {\"k\": 1}}");
	TH_EXPECT_STATUS(r, 200);
	expect_company_out(r->json);
	TH_EXPECT_STR(r->json, "name", "crud-co");
	TH_EXPECT_STR(r->json, "display_name", "CRUD Renamed");
	TH_EXPECT_INT(json_object_get(r->json, "settings"), "k", 1);
	th_resp_free(r);

	r = th_call(&api, "PUT", path, root_token, "{\"name\": \"crud-other\"}");
	TH_EXPECT_ERROR(r, 400, "Company name already exists");
	th_resp_free(r);
	r = th_call(&api, "PUT", "/api/companies/999999", root_token, "{\"display_name\": \"x\"}");
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);

	/* Deactivated: still found by GET /api/companies/{name} and in the list, but the
	 * company-path routes resolve active companies only (COMPAT §1.5). */
	r = th_call(&api, "PUT", path, root_token, "{\"is_active\": false}");
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_false(json_object_get(r->json, "is_active")));
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/companies/crud-co", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_false(json_object_get(r->json, "is_active")));
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/companies", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_non_null(find_by_str(r->json, "name", "crud-co"));
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/crud-co/admins", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
}

static void test_company_delete(void **state)
{
	struct th_resp *r;
	long long id;
	char path[96];

	(void)state;
	id = create_company("doomed-co", "Doomed");
	create_user("doomed-co", "doomed-agent", "AGENT");
	snprintf(path, sizeof(path), "/api/companies/%lld", id);

	r = th_call(&api, "DELETE", path, root_token, "{\"confirm_name\": \"doomed\"}");
	TH_EXPECT_ERROR(r, 400, "Company name confirmation does not match");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/companies/doomed-co", root_token, NULL);
	TH_EXPECT_STATUS(r, 200); /* the refused delete changed nothing */
	th_resp_free(r);

	r = th_call(&api, "DELETE", path, root_token, "{\"confirm_name\": \"doomed-co\"}");
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_true(json_object_get(r->json, "deleted")));
	TH_EXPECT_INT(r->json, "id", id);
	TH_EXPECT_STR(r->json, "name", "doomed-co");
	th_resp_free(r);

	r = th_call(&api, "GET", "/api/companies/doomed-co", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = th_call(&api, "DELETE", path, root_token, "{\"confirm_name\": \"doomed-co\"}");
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);

	/* Its non-superuser users went with it (COMPAT §2.3 cascade step 4). */
	{
		const char *params[] = {"doomed-agent"};
		char *n = NULL;

		assert_int_equal(th_sql(db_url, "SELECT count(*) FROM users WHERE username = $1", 1, params, &n), 0);
		assert_non_null(n);
		assert_string_equal(n, "0");
		free(n);
	}
}

static void test_default_company(void **state)
{
	struct th_resp *r;

	(void)state;
	r = th_call(&api, "GET", "/api/companies/" TH_DEFAULT_COMPANY, root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	expect_company_out(r->json);
	TH_EXPECT_STR(r->json, "name", TH_DEFAULT_COMPANY);
	assert_true(json_is_true(json_object_get(r->json, "is_active")));
	th_resp_free(r);
}

static void expect_user_out(const json_t *u)
{
	static const char *const keys[] = {"id",         "username",   "is_active",    "is_superuser", "role",
	                                   "first_name", "last_name",  "phone_number", "company_id",   "company_name",
	                                   "agent_type", "created_at", "updated_at"};

	assert_true(json_is_object(u));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (json_object_get(u, keys[i]) == NULL)
			print_error("UserOut lacks %s\n", keys[i]);
		assert_non_null(json_object_get(u, keys[i]));
	}
	assert_true(th_is_datetime(th_json_str(u, "created_at")));
	assert_null(json_object_get(u, "hashed_password"));
}

static void test_admins_create(void **state)
{
	struct th_resp *r;
	json_t *req;
	char *body;

	(void)state;
	/* The panel's body; is_superuser and company_id are ignored (COMPAT §2.4). */
	req = json_pack("{s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:s, s:b, s:I}", "username", "acme-new-admin", "password",
	                "secret-pass-2", "is_active", 1, "role", "ADMIN", "agent_type", "OUTBOUND", "first_name",
	                "Sara", "last_name", "Karimi", "phone_number", "0912 111 2233", "is_superuser", 1, "company_id",
	                (json_int_t)globex_id);
	body = json_dumps(req, 0);
	r = th_call(&api, "POST", "/api/acme/admins/", root_token, body);
	free(body);
	json_decref(req);
	TH_EXPECT_STATUS(r, 200);
	expect_user_out(r->json);
	TH_EXPECT_STR(r->json, "username", "acme-new-admin");
	TH_EXPECT_STR(r->json, "role", "ADMIN");
	TH_EXPECT_STR(r->json, "agent_type", "OUTBOUND");
	TH_EXPECT_STR(r->json, "first_name", "Sara");
	TH_EXPECT_STR(r->json, "last_name", "Karimi");
	TH_EXPECT_STR(r->json, "phone_number", "09121112233");
	TH_EXPECT_STR(r->json, "company_name", "acme");
	TH_EXPECT_INT(r->json, "company_id", acme_id);
	assert_true(json_is_false(json_object_get(r->json, "is_superuser")));
	assert_true(json_is_true(json_object_get(r->json, "is_active")));
	th_resp_free(r);

	/* Defaults: role ADMIN, agent_type BOTH, is_active true. */
	r = th_call(&api, "POST", "/api/acme/admins", root_token,
	            "{\"username\": \"acme-defaults\", \"password\": \"secret-pass-3\"}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "role", "ADMIN");
	TH_EXPECT_STR(r->json, "agent_type", "BOTH");
	assert_true(json_is_true(json_object_get(r->json, "is_active")));
	th_resp_free(r);

	/* Usernames are unique across companies. */
	r = post_user("acme", "acme-new-admin", "AGENT", NULL);
	TH_EXPECT_ERROR(r, 400, "Username already exists");
	th_resp_free(r);
	r = post_user("globex", "acme-new-admin", "AGENT", NULL);
	TH_EXPECT_ERROR(r, 400, "Username already exists");
	th_resp_free(r);
	r = post_user("acme", "acme-bad-phone", "AGENT", "12345");
	TH_EXPECT_ERROR(r, 400, "Invalid phone number");
	th_resp_free(r);
	r = post_user("globex", "globex-same-phone", "AGENT", "+989121112233");
	TH_EXPECT_ERROR(r, 400, "Phone number already in use");
	th_resp_free(r);

	/* An ADMIN of the company may create users there too. */
	r = th_call(&api, "POST", "/api/acme/admins", acme_admin_token,
	            "{\"username\": \"acme-by-admin\", \"password\": \"secret-pass-4\", "
	            "\"role\": \"AGENT\", \"agent_type\": \"INBOUND\"}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "company_name", "acme");
	TH_EXPECT_STR(r->json, "agent_type", "INBOUND");
	th_resp_free(r);
}

static void test_admins_list(void **state)
{
	static const char *const paths[] = {"/api/acme/admins", "/api/acme/admins/"};

	(void)state;
	for (size_t p = 0; p < 2; p++) {
		struct th_resp *r = th_call(&api, "GET", paths[p], root_token, NULL);
		size_t i;
		json_t *u;

		TH_EXPECT_STATUS(r, 200);
		assert_true(json_is_array(r->json));
		assert_non_null(find_by_id(r->json, acme_admin_id));
		assert_non_null(find_by_id(r->json, acme_agent_id));
		assert_null(find_by_id(r->json, globex_admin_id));
		assert_null(find_by_str(r->json, "username", TH_ROOT_USER));
		json_array_foreach(r->json, i, u)
		{
			expect_user_out(u);
			assert_true(json_is_false(json_object_get(u, "is_superuser")));
			TH_EXPECT_STR(u, "company_name", "acme");
			TH_EXPECT_INT(u, "company_id", acme_id);
		}
		th_resp_free(r);
	}
	/* The company's ADMIN sees the same list. */
	{
		struct th_resp *r = th_call(&api, "GET", "/api/acme/admins", acme_admin_token, NULL);

		TH_EXPECT_STATUS(r, 200);
		assert_non_null(find_by_id(r->json, acme_agent_id));
		th_resp_free(r);
	}
}

static void test_admins_update(void **state)
{
	struct th_resp *r;
	long long id;
	char path[96], *tok;

	(void)state;
	id = create_user("acme", "acme-toggle", "AGENT");
	snprintf(path, sizeof(path), "/api/acme/admins/%lld", id);

	r = th_call(&api, "PUT", path, root_token, "{\"is_active\": false}");
	TH_EXPECT_STATUS(r, 200);
	expect_user_out(r->json);
	assert_true(json_is_false(json_object_get(r->json, "is_active")));
	TH_EXPECT_STR(r->json, "first_name", "First"); /* untouched */
	th_resp_free(r);
	r = th_call(&api, "PUT", path, root_token, "{\"is_active\": true}");
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_true(json_object_get(r->json, "is_active")));
	th_resp_free(r);

	/* The panel's full edit: nulls mean unchanged, password changes. */
	r = th_call(&api, "PUT", path, acme_admin_token,
	            "{\"password\": \"changed-pass-9\", \"is_active\": true, \"role\": \"AGENT\", "
	            "\"agent_type\": \"INBOUND\", \"first_name\": null, \"last_name\": \"Moradi\", "
	            "\"phone_number\": \"09124445566\"}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "agent_type", "INBOUND");
	TH_EXPECT_STR(r->json, "first_name", "First");
	TH_EXPECT_STR(r->json, "last_name", "Moradi");
	TH_EXPECT_STR(r->json, "phone_number", "09124445566");
	th_resp_free(r);
	tok = th_login(&api, "acme-toggle", "changed-pass-9");
	assert_non_null(tok);
	free(tok);

	r = th_call(&api, "PUT", path, root_token, "{\"username\": \"acme-toggle-2\"}");
	TH_EXPECT_ERROR(r, 400, "Username cannot be changed from company users page");
	th_resp_free(r);
	r = th_call(&api, "PUT", path, root_token, "{\"is_superuser\": true}");
	TH_EXPECT_ERROR(r, 400, "Superuser flag cannot be changed from company users page");
	th_resp_free(r);
	r = th_callf(&api, "PUT", path, root_token, "{\"company_id\": %lld}", globex_id);
	TH_EXPECT_ERROR(r, 400, "Company assignment cannot be changed from company users page");
	th_resp_free(r);
	r = th_call(&api, "PUT", path, root_token, "{\"phone_number\": \"0912\"}");
	TH_EXPECT_ERROR(r, 400, "Invalid phone number");
	th_resp_free(r);

	/* None of the refused edits changed anything. */
	r = th_call(&api, "GET", "/api/acme/admins", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	{
		json_t *u = find_by_id(r->json, id);

		assert_non_null(u);
		TH_EXPECT_STR(u, "username", "acme-toggle");
		assert_true(json_is_false(json_object_get(u, "is_superuser")));
		TH_EXPECT_INT(u, "company_id", acme_id);
		TH_EXPECT_STR(u, "phone_number", "09124445566");
	}
	th_resp_free(r);
}

static void test_admins_delete(void **state)
{
	struct th_resp *r;
	long long id;
	char path[96];

	(void)state;
	id = create_user("acme", "acme-delete-me", "AGENT");
	snprintf(path, sizeof(path), "/api/acme/admins/%lld", id);
	r = th_call(&api, "DELETE", path, root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_true(json_object_get(r->json, "deleted")));
	TH_EXPECT_INT(r->json, "id", id);
	th_resp_free(r);
	r = th_call(&api, "DELETE", path, root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "User not found in this company");
	th_resp_free(r);

	r = th_call(&api, "GET", "/api/acme/admins", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_null(find_by_id(r->json, id));
	th_resp_free(r);
}

static void test_user_of_other_company(void **state)
{
	struct th_resp *r;
	char path[96];
	long long root_id = -1;

	(void)state;
	snprintf(path, sizeof(path), "/api/acme/admins/%lld", globex_admin_id);
	r = th_call(&api, "PUT", path, root_token, "{\"first_name\": \"X\"}");
	TH_EXPECT_ERROR(r, 404, "User not found in this company");
	th_resp_free(r);
	r = th_call(&api, "DELETE", path, root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "User not found in this company");
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/admins/99999999");
	r = th_call(&api, "PUT", path, root_token, "{\"first_name\": \"X\"}");
	TH_EXPECT_ERROR(r, 404, "User not found in this company");
	th_resp_free(r);

	/* The superuser (no company) is not a user of acme either. */
	r = th_call(&api, "GET", "/api/auth/me", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &root_id), 0);
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/admins/%lld", root_id);
	r = th_call(&api, "DELETE", path, root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "User not found in this company");
	th_resp_free(r);

	/* globex's admin is untouched. */
	r = th_call(&api, "GET", "/api/globex/admins", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_non_null(find_by_id(r->json, globex_admin_id));
	th_resp_free(r);
}

static void test_last_active_admin(void **state)
{
	struct th_resp *r;
	long long a1, a2;
	char p1[96], p2[96];

	(void)state;
	/* A company with a single ADMIN; other companies' admins and the superuser do not count
	 * (COMPAT preface 5). */
	create_company("solo-co", "Solo");
	a1 = create_user("solo-co", "solo-admin-1", "ADMIN");
	create_user("solo-co", "solo-agent", "AGENT");
	snprintf(p1, sizeof(p1), "/api/solo-co/admins/%lld", a1);

	r = th_call(&api, "PUT", p1, root_token, "{\"is_active\": false}");
	TH_EXPECT_ERROR(r, 400, "At least one active admin is required");
	th_resp_free(r);
	r = th_call(&api, "PUT", p1, root_token, "{\"role\": \"AGENT\"}");
	TH_EXPECT_ERROR(r, 400, "At least one active admin is required");
	th_resp_free(r);
	r = th_call(&api, "DELETE", p1, root_token, NULL);
	TH_EXPECT_ERROR(r, 400, "At least one active admin is required");
	th_resp_free(r);

	/* Still an active ADMIN after the refusals. */
	r = th_call(&api, "GET", "/api/solo-co/admins", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	{
		json_t *u = find_by_id(r->json, a1);

		assert_non_null(u);
		assert_true(json_is_true(json_object_get(u, "is_active")));
		TH_EXPECT_STR(u, "role", "ADMIN");
	}
	th_resp_free(r);

	/* With a second active ADMIN the first may go inactive; then the second is the last. */
	a2 = create_user("solo-co", "solo-admin-2", "ADMIN");
	snprintf(p2, sizeof(p2), "/api/solo-co/admins/%lld", a2);
	r = th_call(&api, "PUT", p1, root_token, "{\"is_active\": false}");
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	r = th_call(&api, "PUT", p2, root_token, "{\"is_active\": false}");
	TH_EXPECT_ERROR(r, 400, "At least one active admin is required");
	th_resp_free(r);
	r = th_call(&api, "PUT", p2, root_token, "{\"role\": \"AGENT\"}");
	TH_EXPECT_ERROR(r, 400, "At least one active admin is required");
	th_resp_free(r);
	r = th_call(&api, "DELETE", p2, root_token, NULL);
	TH_EXPECT_ERROR(r, 400, "At least one active admin is required");
	th_resp_free(r);

	/* The inactive ADMIN may be deleted. */
	r = th_call(&api, "DELETE", p1, root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "id", a1);
	th_resp_free(r);
}

static void test_isolation(void **state)
{
	struct th_resp *r;
	char path[96];

	(void)state;
	/* An ADMIN of acme in globex. */
	r = th_call(&api, "GET", "/api/globex/admins", acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/globex/admins", acme_admin_token,
	            "{\"username\": \"intruder\", \"password\": \"intruder-pass\"}");
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/globex/admins/%lld", globex_admin_id);
	r = th_call(&api, "PUT", path, acme_admin_token, "{\"is_active\": false}");
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = th_call(&api, "DELETE", path, acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/companies/globex", acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/companies/acme", acme_admin_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "id", acme_id);
	th_resp_free(r);

	/* Superuser-only company management. */
	r = th_call(&api, "GET", "/api/companies", acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/companies", acme_admin_token,
	            "{\"name\": \"sneaky\", \"display_name\": \"Sneaky\"}");
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/companies/%lld", acme_id);
	r = th_call(&api, "PUT", path, acme_admin_token, "{\"display_name\": \"Mine\"}");
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);
	r = th_call(&api, "DELETE", path, acme_admin_token, "{\"confirm_name\": \"acme\"}");
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);

	/* An AGENT: no user management even in its own company; its company is readable. */
	r = th_call(&api, "GET", "/api/acme/admins", acme_agent_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/acme/admins", acme_agent_token,
	            "{\"username\": \"agent-made\", \"password\": \"agent-made-pass\"}");
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/companies/acme", acme_agent_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/companies", acme_agent_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Superuser only");
	th_resp_free(r);

	/* Order of checks on admins routes: token → role → company exists → access
	 * (COMPAT §1.6). */
	r = th_call(&api, "GET", "/api/acme/admins", NULL, NULL);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/no-such-co/admins", NULL, NULL);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/no-such-co/admins", acme_agent_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/no-such-co/admins", acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/no-such-co/admins", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/companies/no-such-co", acme_admin_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);

	/* Company slugs match exactly (case-sensitive). */
	r = th_call(&api, "GET", "/api/ACME/admins", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
}

static void test_roster(void **state)
{
	static const char *const keys[] = {"id",        "username",     "role",     "first_name",
	                                   "last_name", "phone_number", "is_active"};
	struct th_resp *r;
	size_t i;
	json_t *u;

	(void)state;
	r = th_call(&api, "GET", "/api/admins", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_array(r->json));
	assert_non_null(find_by_id(r->json, acme_admin_id));
	assert_non_null(find_by_id(r->json, acme_agent_id));
	assert_non_null(find_by_id(r->json, globex_admin_id));
	json_array_foreach(r->json, i, u)
	{
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			if (json_object_get(u, keys[k]) == NULL)
				print_error("roster entry lacks %s\n", keys[k]);
			assert_non_null(json_object_get(u, keys[k]));
		}
		assert_null(json_object_get(u, "hashed_password"));
	}
	th_resp_free(r);

	/* An ADMIN sees their own company only. */
	r = th_call(&api, "GET", "/api/admins/", acme_admin_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_array(r->json));
	assert_non_null(find_by_id(r->json, acme_admin_id));
	assert_non_null(find_by_id(r->json, acme_agent_id));
	assert_null(find_by_id(r->json, globex_admin_id));
	assert_null(find_by_str(r->json, "username", TH_ROOT_USER));
	th_resp_free(r);

	r = th_call(&api, "GET", "/api/admins", acme_agent_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/admins", NULL, NULL);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
}

static void test_dialer_tokens(void **state)
{
	struct th_resp *r;
	char *plain = NULL, *plain2 = NULL;
	long long id = -1, id2 = -1;
	char path[96];
	size_t i;
	json_t *t;

	(void)state;
	r = th_call(&api, "POST", "/api/acme/dialer-tokens", root_token, "{\"name\": \"cc-1\"}");
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	assert_non_null(th_json_str(r->json, "token"));
	plain = strdup(th_json_str(r->json, "token"));
	assert_non_null(plain);
	assert_true(strlen(plain) >= 20);
	TH_EXPECT_STR(r->json, "name", "cc-1");
	th_resp_free(r);

	r = th_call(&api, "POST", "/api/acme/dialer-tokens/", root_token, "{\"name\": \"cc-2\"}");
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id2), 0);
	assert_non_null(th_json_str(r->json, "token"));
	plain2 = strdup(th_json_str(r->json, "token"));
	assert_non_null(plain2);
	assert_string_not_equal(plain, plain2);
	assert_true(id != id2);
	th_resp_free(r);

	/* Listed by id and name; the plaintext is never shown again. */
	r = th_call(&api, "GET", "/api/acme/dialer-tokens", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_array(r->json));
	assert_non_null(find_by_id(r->json, id));
	TH_EXPECT_STR(find_by_id(r->json, id), "name", "cc-1");
	assert_non_null(find_by_id(r->json, id2));
	assert_null(strstr(r->body, plain));
	assert_null(strstr(r->body, plain2));
	json_array_foreach(r->json, i, t)
	{
		assert_null(json_object_get(t, "token"));
	}
	th_resp_free(r);

	/* Stored hashed: the plaintext is in no column of any table. */
	{
		const char *params[] = {plain};
		char *n = NULL;

		assert_int_equal(th_sql(db_url,
		                        "SELECT count(*) FROM (SELECT to_jsonb(t)::text AS row FROM dialer_tokens t) x "
		                        "WHERE strpos(row, $1) > 0",
		                        1, params, &n),
		                 0);
		assert_non_null(n);
		assert_string_equal(n, "0");
		free(n);
	}

	/* Another company sees none of them and cannot revoke them. */
	r = th_call(&api, "GET", "/api/globex/dialer-tokens", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_null(find_by_id(r->json, id));
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/globex/dialer-tokens/%lld", id);
	r = th_call(&api, "DELETE", path, root_token, NULL);
	TH_EXPECT_ERROR(r, 404, NULL);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/dialer-tokens", globex_admin_token, NULL);
	TH_EXPECT_ERROR(r, 403, NULL);
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/acme/dialer-tokens", globex_admin_token, "{\"name\": \"stolen\"}");
	TH_EXPECT_ERROR(r, 403, NULL);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/dialer-tokens", acme_agent_token, NULL);
	TH_EXPECT_ERROR(r, 403, NULL);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/dialer-tokens", NULL, NULL);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);

	/* Revoke: the token leaves the list, or stays in it marked revoked (an audit trail);
	 * the other one is untouched. */
	snprintf(path, sizeof(path), "/api/acme/dialer-tokens/%lld", id);
	r = th_call(&api, "DELETE", path, root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_object(r->json));
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/dialer-tokens", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	t = find_by_id(r->json, id);
	if (t != NULL)
		assert_true(th_is_datetime(th_json_str(t, "revoked_at")));
	t = find_by_id(r->json, id2);
	assert_non_null(t);
	assert_true(json_object_get(t, "revoked_at") == NULL || json_is_null(json_object_get(t, "revoked_at")));
	th_resp_free(r);
	free(plain);
	free(plain2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_companies_list),
	    cmocka_unit_test(test_company_crud),
	    cmocka_unit_test(test_company_delete),
	    cmocka_unit_test(test_default_company),
	    cmocka_unit_test(test_admins_create),
	    cmocka_unit_test(test_admins_list),
	    cmocka_unit_test(test_admins_update),
	    cmocka_unit_test(test_admins_delete),
	    cmocka_unit_test(test_user_of_other_company),
	    cmocka_unit_test(test_last_active_admin),
	    cmocka_unit_test(test_isolation),
	    cmocka_unit_test(test_roster),
	    cmocka_unit_test(test_dialer_tokens),
	};

	return cmocka_run_group_tests_name("companies_users", tests, group_setup, group_teardown);
}
